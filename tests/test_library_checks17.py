"""Audit 17 (libraries): predict's summary counts units of types outside the model's classes;
``library validate --features`` picks the feature family as ``train --family auto`` does; the same
neurons in two table folders (same lab, neuron_id and data) are refused, while sessions that reuse
ids are not; expert tables are named where libraries ignore them; a labelled unit's waveform must
have finite, not flat samples."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from test_library_tables17 import _tables

from nwb_celltype.cli import main
from nwb_celltype.errors import LibraryError
from nwb_celltype.library import create_manifest, label_file, mock_library_file, validate_library
from nwb_celltype.library.tables import import_tables

REAL = Path("/work/shared/real-c4")
needs_real = pytest.mark.skipif(not (REAL / "hull").is_dir(), reason="real C4 tables not on this machine")


def _hull_copy(dest: Path) -> Path:
    """A copy of the Hull tables (never written back to the shared folder)."""
    shutil.copytree(REAL / "hull", dest)
    return dest


# -- F1: predict counts every unit with a true label ---------------------------------------------


def _grc_hull(tmp_path: Path, n_grc: int = 5) -> Path:
    """Hull tables with the first ``n_grc`` labels set to GrC (granule cells: no class of the model)."""
    d = _hull_copy(tmp_path / "hgrc")
    for name in ("labels.csv", "units.csv"):
        lines = (d / name).read_text().splitlines()
        head = lines[0].split(",")
        col = head.index("label")
        for i in range(1, n_grc + 1):
            cells = lines[i].split(",")
            cells[col] = "GrC"
            lines[i] = ",".join(cells)
        (d / name).write_text("\n".join(lines) + "\n")
    return d


@needs_real
def test_predict_summary_counts_units_of_types_outside_the_models_classes(tmp_path):
    from nwb_celltype.classify import predict_features, summarise

    folder = _grc_hull(tmp_path)
    result = predict_features(folder)
    s = summarise(result)
    rows = result.rows()
    classes = tuple(result.predictions.classes)
    assert "GrC" not in classes
    grc = [r for r in rows if r["true_label"] == "GrC"]
    assert len(grc) == 5
    truth = [r for r in rows if r["true_label"] not in ("unlabeled", "")]
    given = [r for r in truth if r["label"] in classes]
    right = [r for r in given if r["label"] == r["true_label"]]
    # every unit with a true label is counted, the 5 granule cells included
    assert s["n_labelled"] == len(truth) == 79
    assert s["n_given_label"] == len(given)
    assert s["n_outside_classes"] == 5
    assert s["n_outside_classes_given_label"] == sum(r["label"] in classes for r in grc)
    assert s["coverage"] == pytest.approx(len(given) / len(truth))
    assert s["accuracy_of_classified"] == pytest.approx(len(right) / len(given))
    assert s["confidently_wrong"] == pytest.approx((len(given) - len(right)) / len(truth))
    assert s["per_class"]["GrC"] == {
        "n": 5,
        "labelled": s["n_outside_classes_given_label"],
        "right": 0,
    }


@needs_real
def test_predict_cli_says_how_many_units_are_of_other_types(tmp_path):
    folder = _grc_hull(tmp_path)
    res = CliRunner().invoke(main, ["predict", str(folder), "--out", str(tmp_path / "p.tsv"), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    assert s["n_labelled"] == 79 and s["n_outside_classes"] == 5
    res = CliRunner().invoke(main, ["predict", str(folder), "--out", str(tmp_path / "q.tsv")])
    assert res.exit_code == 0, res.output
    assert "units with a true label: 79, " in res.output
    assert "5 of them are of a type none of the model's classes is" in res.output
    assert "GrC 0/5" in res.output


# -- F4: validate --features picks the family ----------------------------------------------------


@needs_real
def test_validate_features_on_tables_uses_the_acg_isi_wave_family(tmp_path):
    d = _hull_copy(tmp_path / "hull")
    import_tables([d], tmp_path / "t.toml")
    rep = validate_library(tmp_path / "t.toml", check_features=True, cache_dir=tmp_path / "cache")
    assert rep.ok, rep.summary()
    assert rep.n_labelled == 79
    run = CliRunner()
    res = run.invoke(
        main,
        ["library", "validate", str(tmp_path / "t.toml"), "--features", "--cache-dir", str(tmp_path / "c")],
    )
    assert res.exit_code == 0, res.output
    res = run.invoke(
        main, ["library", "validate", str(tmp_path / "t.toml"), "--features", "--family", "c4-3d"]
    )
    assert res.exit_code == 1
    msg = res.output.strip().splitlines()[-1]
    assert "library validate --features --family acg-isi-wave" in msg
    assert "train" not in msg


def test_validate_features_family_option_on_nwb_files(tmp_path):
    f = mock_library_file(tmp_path / "raw.nwb", n_units=4, seed=1)
    f = label_file(
        f,
        _csv(tmp_path / "l.csv", "unit_id,label\n0,PkC_ss\n1,MLI\n"),
        out=tmp_path / "lab.nwb",
        evidence_type="optotagging",
        labelled_by="me",
    )
    create_manifest([f], name="n", root=tmp_path).save(tmp_path / "n.toml")
    res = CliRunner().invoke(
        main,
        [
            "library",
            "validate",
            str(tmp_path / "n.toml"),
            "--features",
            "--family",
            "acg-isi-wave",
            "--cache-dir",
            str(tmp_path / "c"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert list((tmp_path / "c" / "features").glob("*.npz"))  # features were computed


# -- F5: the same neurons in two table folders ---------------------------------------------------


def _dup_neuron_manifest(tmp_path: Path) -> Path:
    """Hull twice: the second copy's content differs (one ACG count), its neurons do not."""
    a = _hull_copy(tmp_path / "a" / "hull")
    b = _hull_copy(tmp_path / "b" / "hull")
    lines = (b / "acg.csv").read_text().splitlines()
    cells = lines[1].split(",")
    cells[0] = str(float(cells[0]) + 1)
    lines[1] = ",".join(cells)
    (b / "acg.csv").write_text("\n".join(lines) + "\n")
    import_tables([a, b], tmp_path / "dup.toml")
    return tmp_path / "dup.toml"


@needs_real
def test_validate_reports_the_same_neurons_in_two_table_folders(tmp_path):
    rep = validate_library(_dup_neuron_manifest(tmp_path))
    codes = [i.code for i in rep.errors]
    assert codes == ["duplicate-neuron"], rep.summary()
    msg = rep.errors[0].message
    assert "79 neuron(s) of 'Hull lab (Duke)'" in msg and "a/hull" in msg and "\n" not in msg


@needs_real
def test_training_refuses_the_same_neurons_in_two_table_folders(tmp_path):
    from nwb_celltype.features.discharge import DischargeConfig
    from nwb_celltype.library import load_training_set

    with pytest.raises(LibraryError, match=r"79 neuron\(s\) of 'Hull lab \(Duke\)'.*both sides"):
        load_training_set(_dup_neuron_manifest(tmp_path), config=DischargeConfig())


@needs_real
def test_different_labs_neurons_are_not_duplicates(tmp_path):
    a = _hull_copy(tmp_path / "hull")
    b = shutil.copytree(REAL / "lisberger", tmp_path / "lisberger")
    import_tables([a, b], tmp_path / "two.toml")
    rep = validate_library(tmp_path / "two.toml")
    assert "duplicate-neuron" not in {i.code for i in rep.issues}, rep.summary()


def _session_tables(folder: Path, n: int, seed: int, lab: str = "One lab") -> Path:
    """A small table folder of one recording session: ``units.csv`` numbering its units 1..n (as
    per-session exports and sorters do), random ACG/ISI counts and waveforms."""
    labels = ["PkC_ss", "MLI", "GoC", "PkC_cs", "MFB"]
    return _tables(folder, [labels[i % 5] for i in range(n)], lab=lab, seed=seed, neuron_ids=range(1, n + 1))


def _change_row(folder: Path, name: str, row: int, column: int) -> None:
    """Add 1 to one cell (``row`` 0-based below the header) of a table."""
    lines = (folder / name).read_text().splitlines()
    cells = lines[row + 1].split(",")
    cells[column] = f"{float(cells[column]) + 1:g}"
    lines[row + 1] = ",".join(cells)
    (folder / name).write_text("\n".join(lines) + "\n")


def test_sessions_of_one_lab_that_reuse_neuron_ids_are_different_neurons(tmp_path):
    """One folder per session, each numbering its units 1..6, one lab: different neurons (their data
    differ), so validate reports no duplicate and training reads all of them."""
    from nwb_celltype.features.discharge import DischargeConfig
    from nwb_celltype.library import load_training_set

    folders = [_session_tables(tmp_path / f"ses-{k}", 6, seed=k) for k in range(3)]
    import_tables(folders, tmp_path / "sessions.toml")
    rep = validate_library(tmp_path / "sessions.toml")
    assert not rep.errors, rep.summary()
    assert "duplicate-neuron" not in {i.code for i in rep.issues}, rep.summary()
    ts = load_training_set(tmp_path / "sessions.toml", config=DischargeConfig())
    assert len(ts.labels) == 18 and ts.neuron_ids.tolist() == [str(i) for i in range(1, 7)] * 3


@pytest.mark.parametrize(
    "change, n_same",
    [
        ([], 6),  # a relabelled copy (the labels are not content)
        ([("acg.csv", 0, 102)], 6),  # row 0's ACG at lag +1 ms differs, its waveform does not
        ([("acg.csv", 0, 102), ("waveforms.csv", 0, 20)], 5),  # row 0 differs throughout: 5 repeated
    ],
)
def test_a_copy_of_a_session_with_some_cells_changed_repeats_its_neurons(tmp_path, change, n_same):
    """The same lab and neuron_id with the same ACG/ISI counts or the same waveform is the same
    neuron: a copy of a folder with a few cells changed (or relabelled) is still caught."""
    from nwb_celltype.features.discharge import DischargeConfig
    from nwb_celltype.library import load_training_set

    a = _session_tables(tmp_path / "a" / "ses", 6, seed=1)
    b = shutil.copytree(a, tmp_path / "b" / "ses")
    (b / "units.csv").write_text((b / "units.csv").read_text().replace("MLI", "GoC"))
    for name, row, column in change:
        _change_row(b, name, row, column)
    import_tables([a, b], tmp_path / "dup.toml")
    rep = validate_library(tmp_path / "dup.toml")
    assert [i.code for i in rep.errors] == ["duplicate-neuron"], rep.summary()
    msg = rep.errors[0].message
    assert msg.startswith(f"{n_same} neuron(s) of 'One lab' (") and "a/ses" in msg
    assert ("(1, " in msg) == (n_same == 6)  # neuron 1 counts only while some of its data are the same
    with pytest.raises(LibraryError, match=rf"{n_same} neuron\(s\) of 'One lab'.*same neuron_id"):
        load_training_set(tmp_path / "dup.toml", config=DischargeConfig())


# -- F6: expert tables ---------------------------------------------------------------------------


def _csv(path, text):
    path.write_text(text)
    return path


def _expert_file(tmp_path):
    f = mock_library_file(tmp_path / "raw.nwb", n_units=4, seed=2)
    return label_file(
        f,
        _csv(tmp_path / "e.csv", "unit_id,label\n0,PkC_ss\n1,MLI\n"),
        out=tmp_path / "expert.nwb",
        kind="expert",
        evidence_type="expert",
        labelled_by="me",
    )


def test_validate_names_the_expert_table_and_how_to_relabel(tmp_path):
    f = _expert_file(tmp_path)
    rep = validate_library(create_manifest([f], name="ex", root=tmp_path))
    [err] = rep.errors
    assert err.code == "no-ground-truth"
    assert "expert table(s) 'expert'" in err.message
    assert "--kind ground_truth --evidence-type expert" in err.message
    # naming the expert table in the manifest says the same
    m = create_manifest([f], name="ex", root=tmp_path)
    m.entries[0].annotation = "expert"
    [err] = validate_library(m).errors
    assert "--kind ground_truth --evidence-type expert" in err.message


def test_training_warns_of_expert_tables(tmp_path, caplog):
    from nwb_celltype.features.discharge import DischargeConfig
    from nwb_celltype.library import load_training_set

    f = _expert_file(tmp_path)
    create_manifest([f], name="ex", root=tmp_path).save(tmp_path / "ex.toml")
    for _ in range(2):  # computed, then from the cache
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="nwb_celltype.library.training"):
            ts = load_training_set(tmp_path / "ex.toml", config=DischargeConfig(), cache_dir=tmp_path / "c")
        assert not ts.labelled.any()
        assert "only expert table(s) 'expert'" in caplog.text and "--kind ground_truth" in caplog.text


def test_label_kind_help_says_libraries_train_on_ground_truth():
    res = CliRunner().invoke(main, ["library", "label", "--help"])
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    assert "libraries (stats, validate, train) do not read" in text


# -- F11: a labelled unit's waveform must hold finite samples -----------------------------------


@pytest.mark.parametrize(("value", "why"), [(np.nan, "no finite sample"), (0.0, "is flat")])
def test_validate_refuses_labelled_units_without_a_usable_waveform(tmp_path, value, why):
    f = mock_library_file(tmp_path / "raw.nwb", n_units=4, seed=3)
    with h5py.File(f, "r+") as h:
        h["units/waveform_mean"][1] = value
        h["units/waveform_mean"][3] = value  # not labelled: not checked
    f = label_file(
        f,
        _csv(tmp_path / "l.csv", "unit_id,label\n0,PkC_ss\n1,MLI\n2,GoC\n"),
        out=tmp_path / "lab.nwb",
        evidence_type="optotagging",
        labelled_by="me",
    )
    m = create_manifest([f], name="w", root=tmp_path)
    rep = validate_library(m)
    assert [(i.code, i.message.split(":")[0]) for i in rep.errors] == [("no-waveform", "unit 1")], (
        rep.summary()
    )
    assert why in rep.errors[0].message
    assert validate_library(m, require_waveforms=False).ok


def test_label_in_place_refuses_a_file_this_process_holds_open_for_writing(tmp_path):
    """`library label --in-place` (and a copy onto an open --out) while this process holds the file
    open for writing: the copy missed the unflushed data and the rename discarded it, as annotate
    did (audit 17, M6). Refused now; the user's data survives."""
    import h5py

    from nwb_celltype.errors import OutputError

    f = mock_library_file(tmp_path / "raw.nwb", n_units=4, seed=3)
    labels = _csv(tmp_path / "l.csv", "unit_id,label\n0,PkC_ss\n1,MLI\n")
    ev = {"evidence_type": "optotagging", "labelled_by": "me"}
    h = h5py.File(f, "a")
    try:
        h.create_dataset("mine", data=np.arange(5))
        with pytest.raises(OutputError, match="open for writing in this Python process"):
            label_file(f, labels, in_place=True, **ev)
    finally:
        h.close()
    with h5py.File(f, "r") as r:
        assert list(r["mine"][()]) == [0, 1, 2, 3, 4]
    out = tmp_path / "out.nwb"
    out.write_bytes(f.read_bytes())
    with h5py.File(out, "a") as h2:  # the --out file is the one held
        with pytest.raises(OutputError, match=f"{out.name} is open for writing"):
            label_file(f, labels, out=out, overwrite=True, **ev)
        assert h2.id.valid
    label_file(f, labels, in_place=True, **ev)  # closed: labelled
