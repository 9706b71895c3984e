"""What ``annotate`` refuses before it reads or copies anything, and what its outputs keep (audit 17):
a file this process holds open for writing (M6), a rerun of the same model (L1); a file pynwb
cannot build, refused in one line before anything is replaced, with one pynwb build per local run
(M4); an overwritten output's mode (L2); the root ``nwb_version`` pynwb's append sets
(L3); repeated unit ids in a phy export (L4); an empty ``/units`` placeholder beside the sorting
(L5); a rerun with another threshold (L6). Every file is written by pynwb (the package's
simulator, or an NWBFile built here), then broken with h5py where pynwb would not write it so."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import nwb_celltype.annotate as annotate_module
from nwb_celltype.annotate import annotate
from nwb_celltype.cli import main
from nwb_celltype.errors import (
    AnnotationExistsError,
    InvalidValueError,
    NotNWBError,
    OutputError,
    SourceError,
)


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    from nwb_celltype.simulate import simulate_recording

    path = tmp_path_factory.mktemp("rec") / "session.nwb"
    simulate_recording(path, n_units=6, duration_s=100.0, seed=3)
    return path


@pytest.fixture
def rec_copy(recording, tmp_path) -> Path:
    dst = tmp_path / "session.nwb"
    shutil.copyfile(recording, dst)
    return dst


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _boom(*args, **kwargs):
    raise AssertionError("the units were read before the refusal")


def _no_reading(monkeypatch):
    """Make reading the Units table fail loudly: a check that comes first never gets there."""
    monkeypatch.setattr(annotate_module, "collect", _boom)


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def _one_line_error(res) -> str:
    assert res.exit_code == 1, res.output
    text = res.output.strip()
    assert "Traceback" not in text and len(text.splitlines()) == 1, text
    assert text.startswith("Error: "), text
    return text


# ---------------------------------------------------------------- M4: pynwb cannot build the file


def _short_column(path: Path) -> None:
    """A Units column one value short, as some converters write it with h5py."""
    with h5py.File(path, "a") as f:
        g = f["units"]
        n = len(g["id"])
        d = g.create_dataset(
            "quality", data=np.array(["good"] * (n - 1), dtype=object), dtype=h5py.string_dtype()
        )
        d.attrs.update(
            neurodata_type="VectorData",
            namespace="hdmf-common",
            description="quality",
            object_id="11111111-2222-3333-4444-555555555555",
        )
        g.attrs["colnames"] = np.array([*g.attrs["colnames"], "quality"], dtype=object)


def _drop_electrode_column(path: Path, column: str) -> None:
    with h5py.File(path, "a") as f:
        g = f["general/extracellular_ephys/electrodes"]
        del g[column]
        g.attrs["colnames"] = np.array([c for c in g.attrs["colnames"] if c != column], dtype=object)


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (_short_column, r"/units: .*column 'quality' has 5 values for 6 rows"),
        (
            lambda p: _drop_electrode_column(p, "location"),
            r"/general/extracellular_ephys/electrodes: .*required column 'location' is missing",
        ),
        (
            lambda p: _drop_electrode_column(p, "group"),
            r"/general/extracellular_ephys/electrodes: .*required column 'group' is missing",
        ),
    ],
    ids=["units-column-short", "electrodes-no-location", "electrodes-no-group"],
)
@pytest.mark.parametrize("in_place", [False, True], ids=["copy", "in-place"])
def test_a_file_pynwb_cannot_build_is_refused_in_one_line_before_anything_is_replaced(
    rec_copy, demo_bundle, breakage, expected, in_place
):
    """A copy or an in-place run: the append's pynwb build of the copy refuses it (the input is not
    built a second time beforehand), before anything is renamed into place."""
    breakage(rec_copy)
    before = _sha(rec_copy)
    with pytest.raises(NotNWBError, match=expected) as err:
        annotate(rec_copy, model=demo_bundle, in_place=in_place)
    msg = str(err.value)
    assert "pynwb cannot read back" in msg and "nothing was written" in msg and "\n" not in msg
    assert len(msg) < 700  # not hdmf's dump of the whole builder
    assert _sha(rec_copy) == before
    assert _leftovers(rec_copy.parent, {rec_copy.name}) == []


@pytest.mark.network
def test_a_remote_file_pynwb_cannot_build_is_refused_before_its_units_are_read(
    rec_copy, demo_bundle, monkeypatch, tmp_path
):
    """A derived file is written from the source's pynwb build, made (and kept) before the units
    are read: a source pynwb cannot build is refused then, in one line."""
    import nwb_celltype.io
    from nwb_celltype.testing.servers import RangeServer

    _short_column(rec_copy)
    monkeypatch.setattr(nwb_celltype.io, "read_units", _boom)
    out = tmp_path / "out" / "derived.nwb"
    out.parent.mkdir()
    with RangeServer(rec_copy.parent) as files:
        with pytest.raises(NotNWBError, match=r"/units: .*column 'quality' has 5 values for 6 rows") as err:
            annotate(files.url_for(rec_copy.name), model=demo_bundle, out=out, cache_dir=False)
    msg = str(err.value)
    assert "no derived file can be written from it (nothing was written)" in msg and "\n" not in msg
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize("in_place", [False, True], ids=["copy", "in-place"])
def test_a_local_run_builds_the_file_with_pynwb_once(rec_copy, demo_bundle, monkeypatch, in_place):
    """The append builds the copy with pynwb; the input is not built beforehand as well (that
    doubled pynwb's work on every local run)."""
    from pynwb import NWBHDF5IO

    builds = []
    read = NWBHDF5IO.read

    def counted(self, *args, **kwargs):
        builds.append(self.source)
        return read(self, *args, **kwargs)

    monkeypatch.setattr(NWBHDF5IO, "read", counted)
    res = annotate(rec_copy, model=demo_bundle, in_place=in_place)
    assert len(builds) == 1, builds
    assert res.n_units == 6


def test_cli_gives_one_line_for_a_file_pynwb_cannot_build(rec_copy, demo_bundle, tmp_path):
    from nwb_celltype.model import save_bundle

    _short_column(rec_copy)
    bundle = save_bundle(demo_bundle, tmp_path / "bundle")
    res = CliRunner().invoke(main, ["annotate", str(rec_copy), "--model", str(bundle), "--quiet"])
    text = _one_line_error(res)
    assert "column 'quality' has 5 values for 6 rows" in text
    assert not (rec_copy.parent / "session.celltype.nwb").exists()


# ---------------------------------------------------- M6: this process holds the file for writing


def test_in_place_refuses_a_file_this_process_holds_open_for_writing(rec_copy, demo_bundle, tmp_path):
    handle = h5py.File(rec_copy, "a")
    try:
        handle.create_dataset("acquisition/my_new_data", data=np.arange(1000.0))  # not flushed
        with pytest.raises(SourceError, match="open for writing in this Python process.*close it"):
            annotate(rec_copy, model=demo_bundle, in_place=True)
        with pytest.raises(SourceError, match="open for writing in this Python process"):
            annotate(rec_copy, model=demo_bundle, out=tmp_path / "copy.nwb")
        assert not (tmp_path / "copy.nwb").exists()
    finally:
        handle.close()
    with h5py.File(rec_copy, "r") as f:  # the user's data is in the file they wrote it to
        assert f["acquisition/my_new_data"].shape == (1000,)
    annotate(rec_copy, model=demo_bundle, in_place=True)  # once closed, the run goes ahead
    with h5py.File(rec_copy, "r") as f:
        assert "acquisition/my_new_data" in f and "processing/cell_types" in f
    assert _leftovers(tmp_path, {rec_copy.name}) == []


def test_a_read_handle_in_this_process_is_no_obstacle(rec_copy, demo_bundle):
    with h5py.File(rec_copy, "r"):
        res = annotate(rec_copy, model=demo_bundle)
    assert Path(res.output_path).exists()


def test_copy_refuses_to_overwrite_a_target_this_process_holds_open_for_writing(
    recording, demo_bundle, tmp_path
):
    out = tmp_path / "out.nwb"
    annotate(recording, model=demo_bundle, out=out)
    with h5py.File(out, "a") as handle:
        handle.create_dataset("analysis/notes", data=np.arange(10.0))
        with pytest.raises(OutputError, match="open for writing in this Python process"):
            annotate(recording, model=demo_bundle, out=out, overwrite=True)
    with h5py.File(out, "r") as f:
        assert "analysis/notes" in f


# ------------------------------------------------------ L1: the same model's rerun, refused first


def test_rerun_of_the_same_model_is_refused_before_reading_or_copying(rec_copy, demo_bundle, monkeypatch):
    annotate(rec_copy, model=demo_bundle, in_place=True)
    before = _sha(rec_copy)
    _no_reading(monkeypatch)
    with pytest.raises(AnnotationExistsError, match="already holds annotations by this model"):
        annotate(rec_copy, model=demo_bundle, in_place=True)
    with pytest.raises(AnnotationExistsError, match="already holds annotations by this model"):
        annotate(rec_copy, model=demo_bundle, out=rec_copy.parent / "copy.nwb")
    assert _sha(rec_copy) == before
    assert _leftovers(rec_copy.parent, {rec_copy.name}) == []


# ------------------------------------------------------------- L2: an overwritten output's mode


def test_overwrite_keeps_the_existing_outputs_mode(recording, demo_bundle, tmp_path):
    out = tmp_path / "private.nwb"
    annotate(recording, model=demo_bundle, out=out)
    os.chmod(out, 0o600)
    annotate(recording, model=demo_bundle, out=out, overwrite=True)
    assert _mode(out) == 0o600
    link = tmp_path / "link.nwb"  # through a symbolic link: the file it names keeps its mode
    link.symlink_to(out)
    annotate(recording, model=demo_bundle, out=link, overwrite=True)
    assert link.is_symlink() and _mode(out) == 0o600


# ------------------------------------------------------- L3: what pynwb's append does to the root


def test_append_sets_the_installed_nwb_version_and_keeps_the_inputs_datasets(
    rec_copy, demo_bundle, inspect_nwb
):
    """As docs/annotate.md says: pynwb's append sets the root ``nwb_version`` to its own and caches
    that ``core`` beside the file's; every dataset of the input is kept byte for byte."""
    from nwbinspector import Importance
    from pynwb import NWBHDF5IO, get_type_map

    from nwb_celltype.testing.checksums import dataset_checksums

    installed = get_type_map().namespace_catalog.get_namespace("core")["version"]
    with h5py.File(rec_copy, "a") as f:  # a file written as NWB 2.6.0
        f["specifications/core"].move(installed, "2.6.0")
        f.attrs["nwb_version"] = "2.6.0"
    before = dataset_checksums(rec_copy)
    res = annotate(rec_copy, model=demo_bundle)
    with h5py.File(res.output_path, "r") as f:
        assert f.attrs["nwb_version"] == installed
        assert sorted(f["specifications/core"]) == sorted({installed, "2.6.0"})
    after = dataset_checksums(res.output_path)
    assert {k: after[k] for k in before} == before  # every dataset of the input, byte for byte
    with NWBHDF5IO(res.output_path, "r") as io:
        assert "cell_types" in io.read().processing
    worse = Importance.BEST_PRACTICE_SUGGESTION.value
    assert [m for m in inspect_nwb(res.output_path) if m.importance.value > worse] == []


# ----------------------------------------------------------------- NWB files built here by pynwb


def _nwbfile():
    from pynwb import NWBFile
    from pynwb.file import Subject

    nwb = NWBFile(
        session_description="checks",
        identifier="checks-1",
        session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc),
        subject=Subject(subject_id="m1", species="Mus musculus"),
    )
    dev = nwb.create_device(name="probe", description="probe")
    grp = nwb.create_electrode_group(name="shank0", description="shank", location="cerebellum", device=dev)
    for _ in range(4):
        nwb.add_electrode(group=grp, location="SIMgr")
    return nwb


def _trains(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [np.sort(rng.uniform(0.0, 120.0, int(rng.integers(800, 3000)))) for _ in range(n)]


def _write(nwb, path: Path) -> Path:
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


# ---------------------------------------------------------- L4: repeated unit ids, phy export


def test_phy_export_refuses_repeated_unit_ids(tmp_path, demo_bundle):
    from nwb_celltype.phy import export_phy

    nwb = _nwbfile()
    for i, t in enumerate(_trains(6)):
        nwb.add_unit(spike_times=t, id=i % 3, electrodes=[0])  # ids 0, 1, 2, 0, 1, 2
    src = _write(nwb, tmp_path / "dup.nwb")
    res = annotate(src, model=demo_bundle)
    phy = tmp_path / "phy"
    phy.mkdir()
    with pytest.raises(InvalidValueError, match=r"ids repeat \(\[0, 1, 2\]\).*--tsv"):
        export_phy(res.output_path, phy)
    assert list(phy.iterdir()) == []
    cli = CliRunner().invoke(main, ["export", res.output_path, "--phy", str(phy)])
    assert "ids repeat" in _one_line_error(cli)
    assert list(phy.iterdir()) == []
    ok = CliRunner().invoke(main, ["export", res.output_path, "--tsv", str(tmp_path / "all.tsv")])
    assert ok.exit_code == 0, ok.output  # the whole table keeps every row
    assert len((tmp_path / "all.tsv").read_text().splitlines()) == 7


# ------------------------------------------- L5: an empty /units placeholder beside the sorting


@pytest.mark.parametrize("placeholder", ["no-spike-times", "no-rows"])
def test_empty_units_placeholder_names_the_sorting_and_the_option(tmp_path, demo_bundle, placeholder):
    from pynwb.misc import Units

    nwb = _nwbfile()
    nwb.units = Units(name="units", description="placeholder")
    if placeholder == "no-rows":
        nwb.units.add_unit(spike_times=[1.0, 2.0])  # emptied below: its columns, no rows
    ks = Units(name="kilosort", description="kilosort units")
    for t in _trains(3):
        ks.add_unit(spike_times=t)
    nwb.create_processing_module(name="ecephys", description="sorting").add(ks)
    src = _write(nwb, tmp_path / "placeholder.nwb")
    if placeholder == "no-rows":
        with h5py.File(src, "a") as f:
            for name in ("id", "spike_times", "spike_times_index"):  # the index's target last
                old = f["units"][name]
                attrs, dtype = dict(old.attrs), old.dtype
                del f["units"][name]
                f["units"].create_dataset(name, shape=(0,), dtype=dtype).attrs.update(attrs)
            f["units/spike_times_index"].attrs["target"] = f["units/spike_times"].ref
    with pytest.raises(
        InvalidValueError, match=r"/units has no .*/processing/ecephys/kilosort.*--units-table"
    ):
        annotate(src, model=demo_bundle)
    res = annotate(src, model=demo_bundle, units_table="processing/ecephys/kilosort")
    assert res.n_units == 3


# ----------------------------------------------------------- L6: a rerun with another threshold


def test_another_threshold_with_the_same_model_is_refused(rec_copy, demo_bundle):
    """As docs/extension.md says: the same model with another ``--threshold`` is refused."""
    annotate(rec_copy, model=demo_bundle, in_place=True)
    before = _sha(rec_copy)
    with pytest.raises(AnnotationExistsError, match="already holds annotations by this model"):
        annotate(rec_copy, model=demo_bundle, in_place=True, threshold=3.0)
    assert _sha(rec_copy) == before


def test_a_nan_waveform_is_named_once_in_the_reason(tmp_path):
    """A unit whose waveform has NaN samples is scored from its discharge; its reason said so twice
    ("... (no usable waveform); the unit has no usable waveform.") and never why. Now once, with why."""
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile

    from nwb_celltype.annotate import annotate
    from nwb_celltype.inspect_file import load_annotations

    rng = np.random.default_rng(0)
    f = NWBFile("s", "id-nan", datetime(2024, 1, 1, tzinfo=timezone.utc))
    wf = np.zeros(82, np.float32)
    wf[30:40] = -np.hanning(10) * 80e-6
    half = wf.copy()
    half[50:53] = np.nan
    for w in (wf, half):
        f.add_unit(spike_times=np.sort(rng.uniform(0, 600, 6000)), waveform_mean=w)
    f.units.waveform_rate = 30000.0
    path = tmp_path / "nan.nwb"
    with NWBHDF5IO(path, "w") as io:
        io.write(f)
    res = annotate(path, out=tmp_path / "out.nwb")
    rec = load_annotations(res.output_path)[res.table_name]
    reason = str(rec.reasons[1])
    assert "no usable waveform: waveform contains NaN or infinite samples (3 of 82)" in reason, reason
    assert reason.count("usable waveform") == 1, reason
    assert "no usable waveform" not in str(rec.reasons[0])


def test_precision_float64_is_refused_for_the_default_model(tmp_path):
    """`--precision float64` was silently ignored by acg-isi-wave models (the default) and recorded
    as if it had run: the output was identical and the provenance said float64."""
    import shutil as _sh

    from nwb_celltype.annotate import annotate
    from nwb_celltype.errors import InvalidValueError
    from nwb_celltype.inspect_file import load_annotations
    from nwb_celltype.simulate import demo_recording_path

    src = tmp_path / "demo.nwb"
    _sh.copyfile(demo_recording_path(), src)
    with pytest.raises(InvalidValueError, match="applies to C4"):
        annotate(src, out=tmp_path / "a.nwb", precision="float64")
    assert not (tmp_path / "a.nwb").exists()
    res = annotate(src, out=tmp_path / "b.nwb")
    rec = load_annotations(res.output_path)[res.table_name]
    assert rec.classifier["parameters"]["precision"] is None


def test_an_existing_output_is_refused_with_advice_that_works(tmp_path):
    """Rerunning the same command said to use --in-place, which then failed ("already holds
    annotations by this model"); `demo` said the same though it has no --in-place."""
    import shutil as _sh

    from click.testing import CliRunner

    from nwb_celltype.annotate import annotate
    from nwb_celltype.cli import main
    from nwb_celltype.simulate import demo_recording_path

    src = tmp_path / "demo.nwb"
    _sh.copyfile(demo_recording_path(), src)
    annotate(src, out=tmp_path / "a.nwb")
    with pytest.raises(AnnotationExistsError, match="already holds this model's annotations") as err:
        annotate(src, out=tmp_path / "a.nwb")
    assert "--in-place" not in str(err.value)
    (tmp_path / "other.nwb").write_bytes(src.read_bytes())  # no annotations: in place would add them
    with pytest.raises(AnnotationExistsError, match="in place"):
        annotate(src, out=tmp_path / "other.nwb")
    r = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "a.nwb")])
    assert r.exit_code == 1 and "--overwrite" in r.output and "--in-place" not in r.output, r.output
