"""Labels where analysis tools look: every output mode (copy, in place, derived) carries 1-D Units
columns cell_type / cell_type_probability / cell_type_confidence copied from the annotation table;
a cell_type column written by someone else is never touched (ours get model-suffixed names); the
first model fills the plain names, later ones the suffixed; --overwrite replaces our own columns;
pre-existing datasets stay byte-identical."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import pytest

from nwb_celltype.annotate import annotate, table_name_for
from nwb_celltype.inspect_file import load_annotations
from nwb_celltype.nwb import UNITS_COLUMNS, column_names
from nwb_celltype.testing.checksums import dataset_checksums

N_UNITS = 10
PLAIN = ["cell_type", "cell_type_probability", "cell_type_confidence"]


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    from nwb_celltype.simulate import simulate_recording

    path = tmp_path_factory.mktemp("rec") / "session.nwb"
    return simulate_recording(path, n_units=N_UNITS, duration_s=200.0, seed=5, labelled_fraction=0.0).path


@pytest.fixture
def rec_copy(recording, tmp_path) -> Path:
    """A fresh copy of the recording for tests that write into their input."""
    return Path(shutil.copyfile(recording, tmp_path / "in.nwb"))


@pytest.fixture(scope="module")
def second_bundle(demo_bundle, tmp_path_factory):
    """The demo weights under another name: a second model (another hash, another table)."""
    from nwb_celltype.testing.bundles import renamed_bundle

    return renamed_bundle(demo_bundle, "second-model", tmp_path_factory.mktemp("b2") / "b2")


def _units_columns(path) -> dict[str, tuple[np.ndarray, str]]:
    with h5py.File(path, "r") as f:
        units = f["units"]
        names = [c.decode() if isinstance(c, bytes) else str(c) for c in units.attrs["colnames"]]
        return {n: (units[n][()], str(units[n].attrs["description"])) for n in names if n in units}


def _assert_mirror(path, table: str, names: list[str]) -> None:
    """The Units columns ``names`` hold the table's label, top probability and confidence."""
    rec = load_annotations(path)[table]
    cols = _units_columns(path)
    label, prob, conf = (cols[n][0] for n in names)
    for n in names:
        assert cols[n][0].ndim == 1, f"{n} must be 1-D (pynapple drops 2-D columns)"
        assert f"processing/cell_types/{table}" in cols[n][1]
    rows = rec.unit_indices
    assert [x.decode() for x in label[rows]] == rec.labels.tolist()
    ok = np.isfinite(rec.probabilities).all(1)
    top = np.full(len(rec.labels), np.nan)
    top[ok] = rec.probabilities[ok].max(axis=1)
    np.testing.assert_allclose(prob[rows], top, equal_nan=True)
    np.testing.assert_allclose(conf[rows], rec.confidence, equal_nan=True)


def test_copy_has_plain_columns_mirroring_the_table(rec_copy, demo_bundle):
    before = dataset_checksums(rec_copy)
    res = annotate(rec_copy, model=demo_bundle)
    _assert_mirror(res.output_path, res.table_name, PLAIN)
    after = dataset_checksums(res.output_path)
    assert [k for k, v in before.items() if after.get(k) != v] == []


def test_in_place_overwrite_replaces_only_our_columns(rec_copy, demo_bundle):
    before = dataset_checksums(rec_copy)
    annotate(rec_copy, model=demo_bundle, in_place=True)
    first = _units_columns(rec_copy)
    annotate(rec_copy, model=demo_bundle, in_place=True, overwrite=True)
    cols = _units_columns(rec_copy)
    assert list(cols) == list(first), "overwrite must replace our columns, not add more"
    ours = [n for n in cols if n.startswith("cell_type")]
    assert ours == PLAIN
    _assert_mirror(rec_copy, table_name_for(demo_bundle), PLAIN)
    after = dataset_checksums(rec_copy)
    assert [k for k, v in before.items() if after.get(k) != v] == []


def test_second_model_gets_suffixed_columns_first_keeps_plain(rec_copy, demo_bundle, second_bundle):
    from nwb_celltype.cli._common import format_summary

    first = annotate(rec_copy, model=demo_bundle, in_place=True)
    plain_before = dataset_checksums(rec_copy)
    second = annotate(rec_copy, model=second_bundle, in_place=True)
    t1, t2 = table_name_for(demo_bundle), table_name_for(second_bundle)
    suffixed = column_names(t2, plain=False)
    assert suffixed == [
        f"{c.base}_second-model_{second_bundle.sha256[:8]}".replace("-", "_") for c in UNITS_COLUMNS
    ]
    # the result and the printed summary name the columns actually written (it said the plain ones)
    assert first.units_columns == PLAIN and second.units_columns == suffixed
    assert f"(+ Units columns {', '.join(suffixed)})" in format_summary(second)
    assert f"(+ Units columns {', '.join(PLAIN)})" in format_summary(first)
    _assert_mirror(rec_copy, t1, PLAIN)
    _assert_mirror(rec_copy, t2, suffixed)
    after = dataset_checksums(rec_copy)
    assert [k for k, v in plain_before.items() if after.get(k) != v] == []
    # overwriting the second model replaces its suffixed columns and leaves the plain ones
    annotate(rec_copy, model=second_bundle, in_place=True, overwrite=True)
    cols = _units_columns(rec_copy)
    assert sum(n.startswith("cell_type") for n in cols) == 6
    _assert_mirror(rec_copy, t2, suffixed)


def _cellexplorer_like(path: Path) -> None:
    """A file whose Units already have a cell_type column (as NeuroConv's CellExplorer interface
    writes), plus a unit too short to classify."""
    from pynwb import NWBHDF5IO, NWBFile

    rng = np.random.default_rng(0)
    f = NWBFile("s", "ce-1", datetime(2024, 1, 1, tzinfo=timezone.utc))
    f.add_unit_column(name="cell_type", description="CellExplorer putative cell type")
    wf = np.zeros(82, np.float32)
    wf[30:40] = -np.hanning(10) * 80
    f.add_unit(spike_times=np.sort(rng.uniform(0, 300, 3000)), waveform_mean=wf, cell_type="Pyramidal Cell")
    f.add_unit(spike_times=np.array([1.0, 2.0]), waveform_mean=wf, cell_type="Narrow Interneuron")
    f.units.waveform_rate = 30000.0
    with NWBHDF5IO(path, "w") as io:
        io.write(f)


def test_foreign_cell_type_column_is_never_touched(tmp_path, demo_bundle):
    path = tmp_path / "ce.nwb"
    _cellexplorer_like(path)
    before = dataset_checksums(path)
    res = annotate(path, model=demo_bundle)
    cols = _units_columns(res.output_path)
    assert [x.decode() for x in cols["cell_type"][0]] == ["Pyramidal Cell", "Narrow Interneuron"]
    assert cols["cell_type"][1] == "CellExplorer putative cell type"
    names = column_names(res.table_name, plain=False)
    _assert_mirror(res.output_path, res.table_name, names)
    label = [x.decode() for x in cols[names[0]][0]]
    assert (
        label[1] == "not_classifiable" and np.isnan(cols[names[1]][0][1]) and np.isnan(cols[names[2]][0][1])
    )
    after = dataset_checksums(res.output_path)
    assert [k for k, v in before.items() if after.get(k) != v] == []
    # --overwrite replaces ours and still leaves theirs alone
    res = annotate(path, model=demo_bundle, out=res.output_path, overwrite=True)
    cols2 = _units_columns(res.output_path)
    assert list(cols2) == list(cols)
    assert cols2["cell_type"][1] == "CellExplorer putative cell type"


def test_pandas_to_dataframe_shows_the_labels(rec_copy, demo_bundle):
    from pynwb import NWBHDF5IO

    res = annotate(rec_copy, model=demo_bundle)
    with NWBHDF5IO(res.output_path, "r") as io:
        df = io.read().units.to_dataframe()
    rec = load_annotations(res.output_path)[res.table_name]
    assert df["cell_type"].tolist() == rec.labels.tolist()


@pytest.mark.network
def test_derived_file_columns_probe_and_metadata(recording, tmp_path, demo_bundle):
    from nwbinspector import inspect_nwbfile

    from nwb_celltype.testing.servers import RangeServer

    served = tmp_path / "served"
    served.mkdir()
    (served / "s.nwb").write_bytes(recording.read_bytes())
    with RangeServer(served) as files:
        res = annotate(
            files.url_for("s.nwb"), model=demo_bundle, out=tmp_path / "derived.nwb", cache_dir=False
        )
    assert res.mode == "derived"
    _assert_mirror(res.output_path, res.table_name, PLAIN)
    cols = _units_columns(res.output_path)
    # SpikeInterface drops every column ending in _index: nothing of ours may end so
    assert not [n for n in cols if n.endswith("_index")]
    assert "source_unit_index" not in cols
    np.testing.assert_array_equal(cols["source_unit_row"][0], np.arange(N_UNITS))
    with h5py.File(recording, "r") as src, h5py.File(res.output_path, "r") as f:
        np.testing.assert_array_equal(cols["source_unit_id"][0], src["units/id"][()])
        assert f["general/experiment_description"][()] and len(f["general/keywords"][()]) > 0
        el = "general/extracellular_ephys/electrodes"
        assert len(f[el + "/id"]) == len(src[el + "/id"])
        np.testing.assert_array_equal(f["units/electrodes"][()], src["units/electrodes"][()])
    msgs = [
        m.check_function_name
        for m in inspect_nwbfile(nwbfile_path=res.output_path)
        if m.check_function_name != "check_processing_module_name"  # cell_types is our module's name
    ]
    assert msgs == []
    # dandi organize (dry run) names it ..._ecephys.nwb
    org = tmp_path / "org"
    org.mkdir()
    (org / "derived.nwb").write_bytes(Path(res.output_path).read_bytes())
    (org / "dandiset.yaml").write_text("identifier: DANDI:000999\nname: t\ndescription: t\n")
    dandi = Path(sys.executable).parent / "dandi"
    proc = subprocess.run(
        [str(dandi), "organize", "-f", "dry", "."],
        cwd=org,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "DANDI_NO_ET": "1",
            "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
            "HOME": str(tmp_path),
        },
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "_ecephys.nwb" in proc.stdout + proc.stderr


def test_removing_the_only_columns_of_a_units_table_leaves_it_readable(tmp_path):
    """A Units table of ids only whose one column is ours: removing it with the public
    remove_units_columns empties colnames, which h5py could not write as an untyped empty object
    array (TypeError); pynwb then reads the 3 units with no columns. (annotate refuses a table
    without spike_times, so its --overwrite never met such a table.)"""
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.misc import Units

    from nwb_celltype.nwb import add_annotations, add_units_columns, remove_units_columns

    f = NWBFile("ids only", "ids-only", datetime(2026, 1, 1, tzinfo=timezone.utc))
    f.units = Units(name="units", description="ids only")
    for i in range(3):
        f.units.add_row(id=i)
    t = add_annotations(f, name="t1", units_region=[0, 2], labels=["MLI", "GoC"], classes=["MLI", "GoC"])
    assert add_units_columns(f, t) == ["cell_type"]
    path = tmp_path / "ids.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    with h5py.File(path, "a") as h:
        assert remove_units_columns(h, "t1") == ["cell_type"]
        assert "cell_type" not in h["units"] and list(h["units"].attrs["colnames"]) == []
    with NWBHDF5IO(str(path), "r") as io:
        units = io.read().units
        assert tuple(units.colnames) == () and len(units) == 3
