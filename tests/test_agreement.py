"""Agreement of predicted cell types with the labels a file already holds (nwb_celltype.agreement):
counts by hand on a made-up pair of tables, and the demo's printed agreement against the written
file read back with plain pynwb."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from nwb_celltype.agreement import agreements, agreements_in_file, format_agreement
from nwb_celltype.cli import main
from nwb_celltype.nwb import AnnotationRecord


def _record(name, ids, labels, kind, classes=("A", "B", "C"), units_table="/units"):
    n = len(ids)
    status = ["classified" if x in classes else x for x in labels]
    return AnnotationRecord(
        name=name,
        classes=tuple(classes),
        unit_indices=np.arange(n),
        unit_ids=np.asarray(ids),
        labels=np.asarray(labels, dtype=object),
        ontology_ids=np.full(n, "", dtype=object),
        kinds=np.full(n, kind, dtype=object),
        status=np.asarray(status, dtype=object),
        reasons=np.full(n, "", dtype=object),
        units_table=units_table,
    )


def test_counts_with_abstentions_as_misses_and_foreign_truth_as_wrong():
    pred = _record(
        "pred",
        [1, 2, 3, 4, 5, 6, 7, 8, 10],
        ["A", "B", "unclassified", "B", "not_classifiable", "C", "A", "unclassified", "A"],
        "prediction",
    )
    # unit 9 has no prediction row, unit 10 no true label: neither is compared
    truth = _record(
        "gt", [1, 2, 3, 4, 5, 6, 7, 8, 9], ["A", "A", "A", "B", "B", "C", "GrC", "GrC", "B"], "ground_truth"
    )
    [a] = agreements({"pred": pred, "gt": truth})
    d = a.to_dict()
    assert (a.prediction, a.reference, a.reference_kind) == ("pred", "gt", "ground_truth")
    assert d["n_units"] == 8
    # labelled: units 1, 2, 4, 6, 7; right: 1, 4, 6; wrong: 2 (A called B) and 7 (a GrC called A)
    assert (d["n_labelled"], d["n_right"], d["n_wrong"]) == (5, 3, 2)
    assert (d["n_unclassified"], d["n_not_classifiable"]) == (2, 1)
    assert d["coverage"] == pytest.approx(5 / 8)
    assert d["accuracy_of_labelled"] == pytest.approx(3 / 5)
    assert d["confidently_wrong"] == pytest.approx(2 / 8)
    assert d["per_class"] == {
        "A": {"n": 3, "labelled": 2, "right": 1},
        "B": {"n": 2, "labelled": 1, "right": 1},
        "C": {"n": 1, "labelled": 1, "right": 1},
        "GrC": {"n": 2, "labelled": 1, "right": 0},
    }
    # per label given: A twice (unit 1 right, unit 7 a GrC), B twice (unit 2 wrong, unit 4 right), C once
    assert d["per_label"] == {
        "A": {"labelled": 2, "right": 1},
        "B": {"labelled": 2, "right": 1},
        "C": {"labelled": 1, "right": 1},
    }
    # over the model's classes only, the unclassified A and the not-classifiable B are misses
    assert d["balanced_recall_abstentions_as_misses"] == pytest.approx((1 / 3 + 1 / 2 + 1) / 3)
    assert d["wrong_units"] == [
        {"unit_id": 2, "truth": "A", "predicted": "B"},
        {"unit_id": 7, "truth": "GrC", "predicted": "A"},
    ]
    text = format_agreement(a)
    assert "labelled 5 of them (62%): 3 right, 2 wrong" in text and "unit 7 A (is GrC)" in text
    assert "A 1/3, B 1/2, C 1/1, GrC 0/2" in text
    assert "right / labels given per class: A 1/2, B 1/2, C 1/1" in text
    # tables without shared units, and files without ground truth, give nothing
    other = _record("gt2", [20, 21], ["A", "B"], "ground_truth")
    assert agreements({"pred": pred, "gt2": other}) == []
    assert agreements({"pred": pred}) == []


def test_mli_clustering_labels_are_right_on_mli_units():
    """C4's mli_clustering variants label MLI_A / MLI_B: on a unit whose truth is MLI, either is
    right, and MLI enters the balanced recall (it was counted wrong and left out)."""
    classes = ("GoC", "MLI_A", "MLI_B", "MFB", "PkC_ss", "PkC_cs")
    pred = _record("pred", [1, 2, 3, 4], ["MLI_A", "MLI_B", "GoC", "unclassified"], "prediction", classes)
    truth = _record("gt", [1, 2, 3, 4], ["MLI", "MLI", "MLI", "GoC"], "ground_truth", classes)
    [a] = agreements({"pred": pred, "gt": truth})
    d = a.to_dict()
    assert (d["n_labelled"], d["n_right"], d["n_wrong"]) == (3, 2, 1)
    assert d["per_class"]["MLI"] == {"n": 3, "labelled": 3, "right": 2}
    assert d["balanced_recall_abstentions_as_misses"] == pytest.approx((2 / 3 + 0) / 2)  # MLI and GoC
    assert d["wrong_units"] == [{"unit_id": 3, "truth": "MLI", "predicted": "GoC"}]


def test_demo_prints_its_agreement_with_the_simulated_truth(tmp_path):
    """The numbers the demo prints equal those counted from the written file with plain pynwb
    (the Units table's cell_type column against the ground-truth annotation table)."""
    from pynwb import NWBHDF5IO

    out = tmp_path / "demo.nwb"
    res = CliRunner().invoke(main, ["demo", "--out", str(out)])
    assert res.exit_code == 0, res.output
    m = re.search(
        r"\((\d+) units labelled in both\):\n\s+the model labelled (\d+) of them \(\d+%\): (\d+) right, (\d+) wrong",
        res.output,
    )
    assert m, res.output
    n, labelled, right, wrong = map(int, m.groups())
    with NWBHDF5IO(str(out), "r") as io:
        f = io.read()
        cell_type = dict(zip(f.units.id[:], f.units["cell_type"][:], strict=True))
        gt = f.processing["cell_types"]["ground_truth"]
        ids = f.units.id[:]
        rows = gt["units"].data[:]  # a region of the Units table: row indices, mapped to unit ids
        truth = dict(zip(ids[rows].tolist(), gt["label"][:], strict=True))
    classes = {"PkC_ss", "PkC_cs", "MLI", "GoC", "MFB"}
    pairs = [(t, cell_type[u]) for u, t in truth.items() if u in cell_type]
    assert n == len(pairs) > 0
    assert labelled == sum(p in classes for _, p in pairs)
    assert right == sum(p == t for t, p in pairs)
    assert wrong == labelled - right
    js = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "j.nwb"), "--json"])

    [ag] = json.loads(js.output)["agreement"]
    assert (ag["n_units"], ag["n_labelled"], ag["n_right"]) == (n, labelled, right)


def test_annotate_and_show_print_the_agreement_only_where_the_file_holds_truth(tmp_path):
    from nwb_celltype.simulate import demo_recording_path

    r = CliRunner()
    out = tmp_path / "a.nwb"
    res = r.invoke(main, ["annotate", str(demo_recording_path()), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (
        "agreement with the ground_truth labels of table 'ground_truth' (50 units labelled in both)"
        in res.output
    )
    shown = r.invoke(main, ["show", str(out), "--max-units", "0"])
    assert shown.exit_code == 0, shown.output
    assert re.search(
        r"== celltype_\S+: agreement with the ground_truth labels of table 'ground_truth'", shown.output
    )
    only_gt = r.invoke(main, ["show", str(out), "--table", "ground_truth", "--max-units", "0"])
    assert "agreement with the ground_truth labels" in only_gt.output  # the table named is one side
    # --agreement alone, as text and as JSON (what scripts checking many files read)
    text = r.invoke(main, ["show", str(out), "--agreement"]).output
    assert text.startswith("== celltype_") and "label counts" not in text
    [d] = json.loads(r.invoke(main, ["show", str(out), "--agreement", "--json"]).output)
    [a] = agreements_in_file(out)
    assert d["n_right"] == a.to_dict()["n_right"] and d["reference"] == "ground_truth"
    # a recording without ground-truth labels: no agreement is printed
    bare = tmp_path / "bare.nwb"
    sim = r.invoke(
        main, ["simulate", str(bare), "--units", "12", "--duration", "120", "--labelled-fraction", "0"]
    )
    assert sim.exit_code == 0, sim.output
    res = r.invoke(main, ["annotate", str(bare), "--out", str(tmp_path / "bare_out.nwb")])
    assert res.exit_code == 0, res.output
    assert "agreement with" not in res.output
    assert (
        json.loads(r.invoke(main, ["show", str(tmp_path / "bare_out.nwb"), "--agreement", "--json"]).output)
        == []
    )
    assert (
        "no ground-truth or expert labels"
        in r.invoke(main, ["show", str(tmp_path / "bare_out.nwb"), "--agreement"]).output
    )
