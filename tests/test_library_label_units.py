"""``library label`` on files whose sorting is not (only) ``NWBFile.units``: a Units table in a
processing module (NeuroConv / SpikeInterface exports), found as annotate finds it or named with
``--units-table``; the labels refer to that table's rows. And ``--out`` in a missing folder is
refused, as by ``annotate --out``."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest
from click.testing import CliRunner
from pynwb import NWBHDF5IO, NWBFile
from pynwb.file import Subject
from pynwb.misc import Units

from nwb_celltype.errors import LibraryError, NotNWBError, OutputError
from nwb_celltype.library import (
    create_manifest,
    label_file,
    library_stats,
    load_training_set,
    mock_library_file,
    validate_library,
)
from nwb_celltype.nwb import read_annotations

CLI = __import__("nwb_celltype.cli", fromlist=["main"]).main
KS, CURATED = "processing/ecephys/kilosort", "processing/ecephys/curated"
EV = {"evidence_type": "optotagging", "evidence_text": "light", "labelled_by": "alice"}
IDS = [10, 11, 12, 13, 14, 15]


def _sorting_file(path, tables: dict[str, list[int]], *, main: bool = False, seed: int = 0):
    """An NWB file with Units tables ``processing/ecephys/<name>`` holding units ``tables[name]``
    (~600 spikes each, a 4-channel mean waveform at 30 kHz, a ``cell_type`` column), and
    ``NWBFile.units`` too where ``main``."""
    rng = np.random.default_rng(seed)
    f = NWBFile(
        "two sortings",
        f"sortings-{seed}",
        datetime(2024, 1, 1, tzinfo=timezone.utc),
        lab="mocklab",
        subject=Subject(subject_id="m1", species="Mus musculus", sex="U", age="P90D"),
    )
    t = np.arange(90) / 30.0
    wave = (-np.exp(-((t - 1.0) ** 2) / 0.05)[:, None] * np.array([1.0, 0.6, 0.3, 0.1])).astype(np.float32)

    def fill(units: Units, ids: list[int]) -> Units:
        units.add_column("cell_type", "the lab's label")
        for k, uid in enumerate(ids):
            spikes = np.sort(rng.uniform(0.0, 60.0, int(rng.poisson(600))))
            label = "PC" if k % 3 == 1 else ""
            units.add_unit(id=uid, spike_times=spikes, waveform_mean=wave, cell_type=label)
        return units

    if main:
        f.units = fill(Units(name="units", description="main sorting", waveform_rate=30000.0), IDS)
    mod = f.create_processing_module("ecephys", "spike sortings")
    for name, ids in tables.items():
        mod.add(fill(Units(name=name, description=f"{name} sorting", waveform_rate=30000.0), ids))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    return path


def _labels_csv(path, text="unit_id,label\n11,PkC_ss\n14,MLI\n"):
    path.write_text(text)
    return path


def _tables(path) -> dict[str, tuple[str, list[int], list[str]]]:
    """annotation table -> (its Units table, the ids of its units, its labels)."""
    with NWBHDF5IO(str(path), "r") as io:
        recs = read_annotations(io.read())
    return {n: (r.units_table, r.unit_ids.tolist(), [str(x) for x in r.labels]) for n, r in recs.items()}


def test_the_only_units_table_in_a_processing_module_is_labelled(tmp_path):
    """Before, such a file was refused: "the file has no Units table; labels need units"."""
    src = _sorting_file(tmp_path / "ks.nwb", {"kilosort": IDS})
    out = label_file(src, _labels_csv(tmp_path / "l.csv"), out=tmp_path / "o.nwb", **EV)
    assert _tables(out) == {"ground_truth": ("/" + KS, [11, 14], ["PkC_ss", "MLI"])}
    # labels from a Units column of that table, in place, next to the first table
    label_file(out, column="cell_type", mapping=["PC=PkC_ss"], in_place=True, name="lab", kind="expert", **EV)
    assert _tables(out)["lab"] == ("/" + KS, [11, 14], ["PkC_ss", "PkC_ss"])


def test_several_units_tables_need_units_table(tmp_path):
    src = _sorting_file(tmp_path / "two.nwb", {"kilosort": IDS, "curated": IDS[1:5]})
    csv = _labels_csv(tmp_path / "l.csv")
    out = tmp_path / "o.nwb"
    # the same error annotate gives, naming the tables; nothing is written
    with pytest.raises(NotNWBError, match=r"several Units tables \(/processing/ecephys/.*--units-table"):
        label_file(src, csv, out=out, **EV)
    with pytest.raises(NotNWBError, match=r"no Units table at /processing/ecephys/nope; its Units tables"):
        label_file(src, csv, out=out, units_table="processing/ecephys/nope", **EV)
    assert not out.exists()
    label_file(src, csv, out=out, units_table="/" + CURATED, **EV)
    assert _tables(out)["ground_truth"] == ("/" + CURATED, [11, 14], ["PkC_ss", "MLI"])
    # the same rows of ANOTHER sorting are other units: not refused as the same labels twice
    label_file(out, csv, in_place=True, units_table=KS, **EV)
    assert _tables(out)["ground_truth_2"] == ("/" + KS, [11, 14], ["PkC_ss", "MLI"])
    with pytest.raises(LibraryError, match="already holds these labels: table 'ground_truth_2'"):
        label_file(out, csv, in_place=True, units_table=KS, **EV)
    # a key missing from the chosen table names that table's ids
    with pytest.raises(
        LibraryError,
        match=r"rows l2\.csv:2 \(unit 15\): the ids of the file's Units table /processing/ecephys/curated are 11\.\.14",
    ):
        label_file(
            src, _labels_csv(tmp_path / "l2.csv", "unit_id,label\n15,MLI\n"), units_table=CURATED, **EV
        )


def test_units_is_the_default_beside_other_tables(tmp_path):
    src = _sorting_file(tmp_path / "both.nwb", {"curated": [0, 1]}, main=True)
    out = label_file(src, _labels_csv(tmp_path / "l.csv"), out=tmp_path / "o.nwb", **EV)
    assert _tables(out)["ground_truth"] == ("/units", [11, 14], ["PkC_ss", "MLI"])


def test_cli_units_table(tmp_path):
    src = _sorting_file(tmp_path / "two.nwb", {"kilosort": IDS, "curated": IDS[1:5]})
    args = ["library", "label", str(src), "--labels", str(_labels_csv(tmp_path / "l.csv"))]
    args += ["--evidence-type", "optotagging", "--labelled-by", "alice", "--out", str(tmp_path / "o.nwb")]
    res = CliRunner().invoke(CLI, args)
    assert res.exit_code == 1, res.output
    assert "several Units tables" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1  # one line
    res = CliRunner().invoke(CLI, [*args, "--units-table", KS])
    assert res.exit_code == 0, res.output
    assert _tables(tmp_path / "o.nwb")["ground_truth"][:2] == ("/" + KS, [11, 14])


def test_out_in_a_missing_folder_is_refused_as_by_annotate(tmp_path):
    """Before, the folder (and its parents) were created."""
    from nwb_celltype._annotate_output import check_nwb_output_path

    src = mock_library_file(tmp_path / "rec.nwb", n_units=4)
    csv = _labels_csv(tmp_path / "l.csv", "unit_id,label\n1,MLI\n")
    out = tmp_path / "missing" / "deeper" / "o.nwb"
    with pytest.raises(OutputError) as annotate_says:  # annotate's check of --out
        check_nwb_output_path(out, None)
    with pytest.raises(OutputError) as label_says:
        label_file(src, csv, out=out, **EV)
    assert str(label_says.value) == str(annotate_says.value)
    assert "output folder" in str(label_says.value) and "does not exist" in str(label_says.value)
    args = ["library", "label", str(src), "--labels", str(csv), "--out", str(out)]
    res = CliRunner().invoke(CLI, [*args, "--evidence-type", "expert", "--labelled-by", "a"])
    assert res.exit_code == 1 and "does not exist; create it or choose another --out" in res.output
    assert not (tmp_path / "missing").exists()


def test_labels_of_a_processing_module_sorting_reach_stats_validate_and_training(tmp_path):
    """Before, stats gave unit_id -1, validate "no Units table" and training an AttributeError."""
    src = _sorting_file(tmp_path / "ks.nwb", {"kilosort": IDS})
    out = label_file(src, _labels_csv(tmp_path / "l.csv"), out=tmp_path / "o.nwb", **EV)
    create_manifest([out], name="lib", root=tmp_path).save(tmp_path / "lib.toml")
    st = library_stats(tmp_path / "lib.toml")
    assert sorted((r["unit_id"], r["label"]) for r in st.records) == [(11, "PkC_ss"), (14, "MLI")]
    assert st.n_units == len(IDS)
    rep = validate_library(tmp_path / "lib.toml")
    assert rep.ok and rep.n_labelled == 2, rep.summary()
    ts = load_training_set(tmp_path / "lib.toml", cache_dir=tmp_path / "cache")
    got = dict(zip(np.asarray(ts.features.unit_ids).tolist(), ts.labels.tolist(), strict=True))
    assert got == {10: "", 11: "PkC_ss", 12: "", 13: "", 14: "MLI", 15: ""}


def test_write_ground_truth_writes_against_the_units_table_given(tmp_path):
    """Before, write_ground_truth took no Units table (labels.py had a writer of its own)."""
    from nwb_celltype.library._annotations import read_ground_truth, units_of, write_ground_truth

    src = _sorting_file(tmp_path / "ks.nwb", {"kilosort": IDS, "curated": IDS[1:5]})
    ev = {k: [v] for k, v in EV.items()} | {"labelled_at": ["2024-01-01T00:00:00+00:00"]}
    with NWBHDF5IO(str(src), "a") as io:
        nwbfile = io.read()
        units = units_of(nwbfile, "/" + CURATED)
        write_ground_truth(nwbfile, name="gt", unit_indices=[2], labels=["MLI"], evidence=ev, units=units)
        io.write(nwbfile)
    with NWBHDF5IO(str(src), "r") as io:
        (gt,) = read_ground_truth(io.read())
    assert (gt.units_table, gt.unit_indices.tolist(), gt.labels.tolist()) == ("/" + CURATED, [2], ["MLI"])
    assert _tables(src)["gt"] == ("/" + CURATED, [13], ["MLI"])


def test_labels_on_two_sortings_of_one_file(tmp_path):
    """Ground truth on two Units tables of one file (possibly the same neurons twice): stats counts
    each on its table, validate reports it, training asks for one table; named, that table is read."""
    src = _sorting_file(tmp_path / "two.nwb", {"kilosort": IDS, "curated": IDS[1:5]})
    csv = _labels_csv(tmp_path / "l.csv")
    out = label_file(src, csv, out=tmp_path / "o.nwb", units_table=CURATED, **EV)
    label_file(
        out, _labels_csv(tmp_path / "k.csv", "unit_id,label\n10,GoC\n"), in_place=True, units_table=KS, **EV
    )
    create_manifest([out], name="lib", root=tmp_path).save(tmp_path / "lib.toml")
    st = library_stats(tmp_path / "lib.toml")
    assert sorted((r["unit_id"], r["label"]) for r in st.records) == [
        (10, "GoC"),
        (11, "PkC_ss"),
        (14, "MLI"),
    ]
    assert st.n_units == len(IDS) + 4
    rep = validate_library(tmp_path / "lib.toml")
    assert [i.code for i in rep.errors] == ["several-units-tables"], rep.summary()
    assert rep.n_labelled == 3
    with pytest.raises(
        LibraryError, match=r"several Units tables \('ground_truth' -> /processing/ecephys/curated"
    ):
        load_training_set(tmp_path / "lib.toml", cache_dir=tmp_path / "cache")
    ts = load_training_set(
        tmp_path / "lib.toml", cache_dir=tmp_path / "cache", annotation_name="ground_truth"
    )
    got = dict(zip(np.asarray(ts.features.unit_ids).tolist(), ts.labels.tolist(), strict=True))
    assert got == {11: "PkC_ss", 12: "", 13: "", 14: "MLI"}
