"""Review 18: a failed read in the hint of an empty Units table still fails (not skipped); signals
the user ignored (``nohup``) stay ignored by every write; a source's own ``cell_type`` columns are
copied as ``source_<name>``, so a derived file's plain ``cell_type`` is ours; one function keeps a
replaced file's mode; a signal while ``atomic_folder`` removes the older folder acts at once."""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from pynwb import NWBHDF5IO, NWBFile
from pynwb.misc import Units

from nwb_celltype import _atomic, _atomic_folder, _files

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
REPO = Path(__file__).resolve().parents[1]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# -- 3: a hint that cannot be read does not turn a failure into a skip --------------------------------


@pytest.fixture
def empty_units_beside_a_sorting(tmp_path):
    """An NWB file whose /units is an empty placeholder, the sorting in processing/ecephys/ks."""
    rng = np.random.default_rng(0)
    nwb = NWBFile("s", "id1", T0)
    nwb.units = Units(name="units", description="empty placeholder")
    ks = Units(name="ks", description="real sorting")
    for _ in range(3):
        ks.add_unit(spike_times=np.sort(rng.random(500) * 100))
    nwb.create_processing_module("ecephys", "sorting").add(ks)
    path = tmp_path / "empty_plus.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def _annotate_error(path: Path) -> Exception:
    from nwb_celltype.annotate import annotate

    with pytest.raises(Exception) as info:
        annotate(path, out=path.with_name("out.nwb"), overwrite=True)
    return info.value


def test_an_empty_units_beside_a_sorting_fails_naming_it(empty_units_beside_a_sorting):
    from nwb_celltype.batch.worker import _is_no_units
    from nwb_celltype.errors import EmptyUnitsError, InvalidUnitsError

    err = _annotate_error(empty_units_beside_a_sorting)
    assert type(err) is InvalidUnitsError and not isinstance(err, EmptyUnitsError)
    assert not _is_no_units(err) and "--units-table processing/ecephys/ks" in str(err)


def test_a_hint_that_cannot_be_read_still_fails(empty_units_beside_a_sorting, monkeypatch):
    """A remote hiccup while listing the other tables must not make annotate-dandiset skip the asset."""
    import nwb_celltype.io as io_mod
    from nwb_celltype.batch.worker import _is_no_units
    from nwb_celltype.errors import EmptyUnitsError, InvalidUnitsError, RemoteError

    def flaky(h5):
        raise RemoteError("connection reset")

    monkeypatch.setattr(io_mod, "units_table_paths", flaky)
    err = _annotate_error(empty_units_beside_a_sorting)
    assert type(err) is InvalidUnitsError and not isinstance(err, EmptyUnitsError), repr(err)
    assert not _is_no_units(err)  # a failure (retried by a later run), not a skip
    assert "could not be read" in str(err) and "--units-table" in str(err)


# -- 4: signals the user ignored stay ignored ---------------------------------------------------------


@pytest.fixture
def sighup_ignored():
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGHUP, old)


def test_every_handler_installation_leaves_an_ignored_signal_alone(tmp_path, monkeypatch, sighup_ignored):
    """cleanup_on_signals (during the write), the hold after the commit rename, and begin_cleanup
    (removing a failed folder) each leave SIGHUP ignored; SIGTERM still gets our handler."""
    seen: dict[str, tuple] = {}

    def note(where):
        seen[where] = (signal.getsignal(signal.SIGHUP), signal.getsignal(signal.SIGTERM))
        signal.raise_signal(signal.SIGHUP)  # ignored: nothing happens

    real_fsync = _atomic._fsync_dir

    def fsync(path):
        real_fsync(path)
        if Path(path) == tmp_path:
            note("after the rename")

    monkeypatch.setattr(_atomic, "_fsync_dir", fsync)
    f = tmp_path / "out.txt"
    with _atomic.atomic_write(f, replace=True, tag="tmp.txt") as tmp:
        tmp.write_text("x")
        note("during the write")
    assert f.read_text() == "x"

    real_rmtree = shutil.rmtree

    def rmtree(path, *args, **kwargs):
        if str(path).endswith(".tmp.dir"):
            note("removing a failed folder")
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", rmtree)
    with (
        pytest.raises(ValueError),
        _atomic_folder.atomic_folder(tmp_path / "rep", replace=True, owned=("*",)),
    ):
        raise ValueError("the build fails")
    assert set(seen) == {"during the write", "after the rename", "removing a failed folder"}
    for where, (hup, term) in seen.items():
        assert hup is signal.SIG_IGN, where
        assert term not in (signal.SIG_IGN, signal.SIG_DFL), where
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN


_CHILD = textwrap.dedent(
    """
    import shutil, signal, sys
    from pathlib import Path
    phase, ignore, out = sys.argv[1], sys.argv[2] == "1", Path(sys.argv[3])
    # the disposition is set here, not inherited: pytest itself may run under nohup (SIGHUP ignored)
    signal.signal(signal.SIGHUP, signal.SIG_IGN if ignore else signal.SIG_DFL)  # as nohup / a shell leaves it
    from nwb_celltype import _atomic, _atomic_folder

    def wait():  # the write held open: the parent sends SIGHUP, then a line
        print("ready", flush=True)
        sys.stdin.readline()

    try:
        if phase == "write":
            with _atomic.atomic_write(out, replace=True, tag="tmp.txt") as tmp:
                tmp.write_text("x")
                wait()
        elif phase == "commit":
            real = _atomic._fsync_dir
            def fsync(path):
                real(path)
                if Path(path) == out.parent:
                    wait()
            _atomic._fsync_dir = fsync
            with _atomic.atomic_write(out, replace=True, tag="tmp.txt") as tmp:
                tmp.write_text("x")
        else:  # a failed folder write, held open while its folder is removed (begin_cleanup)
            real = shutil.rmtree
            def rmtree(path, *args, **kwargs):
                if str(path).endswith(".tmp.dir"):
                    wait()
                return real(path, *args, **kwargs)
            shutil.rmtree = rmtree
            try:
                with _atomic_folder.atomic_folder(out, replace=True, owned=("*",)) as tmp:
                    (tmp / "a.txt").write_text("x")
                    raise ValueError("the build fails")
            except ValueError:
                pass
    except _atomic.Interrupted as exc:
        print(exc, flush=True)
        raise
    print("completed", flush=True)
    """
)


@pytest.mark.parametrize("phase", ["write", "commit", "cleanup"])
@pytest.mark.parametrize("ignored", [True, False], ids=["ignored", "default"])
def test_sighup_ignored_as_by_nohup_does_not_stop_a_write(tmp_path, phase, ignored):
    out = tmp_path / ("rep" if phase == "cleanup" else "out.txt")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, phase, "1" if ignored else "0", str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGHUP)
        stdout, stderr = child.communicate("go\n", timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if ignored:
        assert child.returncode == 0, stderr
        assert "completed" in stdout and "interrupted" not in stdout
        if phase != "cleanup":
            assert out.read_text() == "x"
    else:  # a signal that is not ignored still stops the run
        assert child.returncode == 128 + signal.SIGHUP, stderr
        assert "completed" not in stdout
        if phase == "write":
            assert not out.exists() and "nothing was written" in stdout
        elif phase == "commit":
            assert out.read_text() == "x" and f"{out} was written in full" in stdout
    if phase == "cleanup":
        assert not out.exists()
    assert _leftovers(tmp_path) == []


# -- 7c: one function gives a written file its mode -----------------------------------------------------


def test_give_mode_keeps_the_replaced_files_bits_without_set_id(tmp_path):
    old = tmp_path / "old"
    old.write_text("o")
    old.chmod(0o6750)  # set-user-ID and set-group-ID
    new = tmp_path / "new"
    new.write_text("n")
    _files.give_mode(new, old)
    assert stat.S_IMODE(os.stat(new).st_mode) == 0o750
    _files.give_mode(new, tmp_path / "absent")
    assert stat.S_IMODE(os.stat(new).st_mode) == _files.new_file_mode()
    assert not hasattr(_atomic, "keep_mode")  # one function, not two


def test_a_replaced_folder_file_drops_set_id_bits(tmp_path):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "a.txt").write_text("old")
    (out / "a.txt").chmod(0o2640)
    with _atomic_folder.atomic_folder(out, replace=True, owned=("*",)) as tmp:
        (tmp / "a.txt").write_text("new")
    assert stat.S_IMODE(os.stat(out / "a.txt").st_mode) == 0o640


# -- 10: a signal while the older folder is removed acts at once ----------------------------------------


@pytest.mark.parametrize("held", [False, True], ids=["removal", "swap-and-removal"])
def test_a_signal_while_the_older_folder_is_removed_acts_at_once(tmp_path, monkeypatch, held):
    """Ctrl-C while the older folder is removed stops the run at once (also after a signal held
    through the swap); the message says the new folder was written, and the next run removes what is
    left of the older one."""
    out = tmp_path / "rep"
    out.mkdir()
    (out / "a.txt").write_text("old")
    before = {s: signal.getsignal(s) for s in _atomic.CLEANUP_SIGNALS}
    removed: list[str] = []
    real_rmtree, real_rename = shutil.rmtree, os.rename

    def rmtree(path, *args, **kwargs):
        if str(path).endswith(".old.dir"):
            signal.raise_signal(signal.SIGINT)
            removed.append(str(path))  # not reached: the signal is acted on at once
        return real_rmtree(path, *args, **kwargs)

    def rename(src, dst):
        real_rename(src, dst)
        if held and Path(dst) == out:
            signal.raise_signal(signal.SIGTERM)  # held until both renames are done

    holds: list[str] = []
    real_hold = _atomic._Commit.hold

    def hold(self):
        holds.append("removed" if removed or not (out.parent / ".rep.old.dir").exists() else "hold")
        return real_hold(self)

    monkeypatch.setattr(shutil, "rmtree", rmtree)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(_atomic._Commit, "hold", hold)
    with (
        pytest.raises(_atomic.Interrupted) as info,
        _atomic_folder.atomic_folder(out, replace=True, owned=("*",)) as tmp,
    ):
        (tmp / "a.txt").write_text("new")
    monkeypatch.undo()
    assert removed == []
    # held again after the stopped removal: the lock release and handler restore are not cut short
    assert len(holds) >= 2, holds
    err = info.value
    assert (
        err.code == (143 if held else 130) and err.written == out
    )  # the first signal's status and f"{out} was written in full" in str(err)
    assert (out / "a.txt").read_text() == "new"
    assert {s: signal.getsignal(s) for s in _atomic.CLEANUP_SIGNALS} == before
    left = _leftovers(tmp_path)  # the lock was released; the older folder is left aside
    assert len(left) == 1 and left[0].endswith(".old.dir"), left
    monkeypatch.setattr(_atomic, "_alive", lambda pid: False)  # as seen by the next run
    assert [p.name for p in _atomic.remove_stale_temps(out)] == left
    assert _leftovers(tmp_path) == [] and (out / "a.txt").read_text() == "new"


def test_a_signal_held_through_the_swap_is_acted_on_after_the_removal(tmp_path, monkeypatch):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "a.txt").write_text("old")
    real_rename = os.rename

    def rename(src, dst):
        real_rename(src, dst)
        if Path(dst) == out:
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(os, "rename", rename)
    with (
        pytest.raises(_atomic.Interrupted) as info,
        _atomic_folder.atomic_folder(out, replace=True, owned=("*",)) as tmp,
    ):
        (tmp / "a.txt").write_text("new")
    assert info.value.code == 143 and info.value.written == out
    assert (out / "a.txt").read_text() == "new" and _leftovers(tmp_path) == []


def test_without_a_signal_the_older_folder_is_removed(tmp_path):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "a.txt").write_text("old")
    with _atomic_folder.atomic_folder(out, replace=True, owned=("*",)) as tmp:
        (tmp / "a.txt").write_text("new")
    assert (out / "a.txt").read_text() == "new" and _leftovers(tmp_path) == []


# -- 5: a source's own cell_type columns ----------------------------------------------------------------

N_UNITS = 8
AUTHORS = ["pyr", "int"] * (N_UNITS // 2)


def _write_source_with_cell_types(path: Path, *, clash: bool = False) -> Path:
    """A source whose Units table has the authors' cell_type and cell_type_probability columns (as
    CellExplorer's export has); with ``clash``, a source_cell_type column too."""
    from nwb_celltype.simulate import demo_recording_path

    with NWBHDF5IO(str(demo_recording_path()), "r") as io:
        u = io.read().units
        trains = [np.asarray(u["spike_times"][i]) for i in range(N_UNITS)]
        waves = np.asarray(u["waveform_mean"].data[:N_UNITS])
    nwb = NWBFile("s", "id1", T0)
    nwb.units = Units(name="units", description="u", waveform_rate=30000.0)
    nwb.add_unit_column("cell_type", "the authors' putative cell type")
    nwb.add_unit_column("cell_type_probability", "the authors' confidence")
    if clash:
        nwb.add_unit_column("source_cell_type", "an earlier tool's guess")
    nwb.add_unit_column("snr", "signal to noise")
    for i in range(N_UNITS):
        nwb.add_unit(
            spike_times=trains[i],
            waveform_mean=waves[i],
            cell_type=AUTHORS[i],
            cell_type_probability=0.5 + i / 100,
            **({"source_cell_type": "x"} if clash else {}),
            snr=1.5,
        )
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def test_source_columns_named_like_ours_are_copied_as_source_columns(tmp_path):
    from nwb_celltype.io import open_source
    from nwb_celltype.nwb._derived_source import source_unit_columns

    src = _write_source_with_cell_types(tmp_path / "src.nwb", clash=True)
    rows = np.arange(N_UNITS)
    with open_source(src) as s:
        cols = {c.name: c for c in source_unit_columns(s.h5, "units", rows)}
    assert set(cols) == {"source_cell_type", "source_cell_type_probability", "source_source_cell_type", "snr"}
    # the source's own source_cell_type keeps its name; its cell_type takes the next free one
    assert list(cols["source_cell_type"].data) == ["x"] * N_UNITS
    assert cols["source_cell_type"].description == "an earlier tool's guess"
    assert list(cols["source_source_cell_type"].data) == AUTHORS
    assert cols["source_source_cell_type"].description == "from the source: the authors' putative cell type"
    assert cols["source_cell_type_probability"].description == "from the source: the authors' confidence"
    assert cols["snr"].description == "signal to noise"


@pytest.mark.network  # the derived file comes from a loopback HTTP server
def test_a_derived_file_has_our_labels_in_the_plain_cell_type(tmp_path):
    from nwb_celltype.annotate import annotate
    from nwb_celltype.testing.servers import RangeServer

    served = tmp_path / "served"
    served.mkdir()
    _write_source_with_cell_types(served / "src.nwb")
    with RangeServer(served) as files:
        res = annotate(files.url_for("src.nwb"), out=tmp_path / "derived.nwb", cache_dir=False)
    assert res.mode == "derived"
    with NWBHDF5IO(str(res.output_path), "r") as io:
        units = io.read().units
        names = list(units.colnames)
        ours = [str(v) for v in units["cell_type"].data[:]]
        theirs = [str(v) for v in units["source_cell_type"].data[:]]
        desc = units["cell_type"].description
    plain = {"cell_type", "cell_type_probability", "cell_type_confidence"}
    assert plain <= set(names)
    assert not [c for c in names if c.startswith("cell_type") and c not in plain], names  # no _<tag>
    assert theirs == AUTHORS and not set(ours) & {"pyr", "int"}
    assert desc.startswith("nwb-celltype:")  # ours


# -- review 18b ------------------------------------------------------------------------------------


def test_the_callable_annotate_module_pickles_and_runs_in_a_spawn_pool(tmp_path):
    """``nwb_celltype.annotate`` (the module, callable as the function) failed to pickle: a process
    pool or Dask could not be handed it."""
    import multiprocessing
    import pickle
    from concurrent.futures import ProcessPoolExecutor

    import nwb_celltype
    import nwb_celltype.annotate  # the package attribute is now the module

    fn = nwb_celltype.annotate
    assert pickle.loads(pickle.dumps(fn)) is fn
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        err = pool.submit(fn, str(tmp_path / "missing.nwb")).exception(timeout=300)
    assert type(err).__name__ == "SourceNotFoundError", err  # ran annotate there, which refused


def test_the_cli_leaves_the_demo_warning_to_its_summary(tmp_path, caplog):
    """The CLI printed the Python API's demo-model warning (naming model=None) beside its own
    [DEMO model ...] line; the API still warns."""
    import logging

    from click.testing import CliRunner

    from nwb_celltype.cli import main
    from nwb_celltype.model import shipped
    from nwb_celltype.model.shipped import demo_bundle_path
    from nwb_celltype.simulate import demo_recording_path

    shipped._DEMO_WARNED.clear()
    with caplog.at_level(logging.WARNING, logger="nwb_celltype"):
        args = ["annotate", str(demo_recording_path()), "--model", str(demo_bundle_path())]
        res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a.nwb")])
    assert res.exit_code == 0, res.output
    assert "[DEMO model" in res.output
    assert not [
        r for r in caplog.records if "trained on simulated data (as the DEMO model is)" in r.getMessage()
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nwb_celltype"):
        shipped.resolve_model(demo_bundle_path())
    assert [r for r in caplog.records if "trained on simulated data (as the DEMO model is)" in r.getMessage()]
