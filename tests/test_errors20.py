"""A whole-dandiset run tells a skipped asset (nothing to classify: NoUnitsError) from a failed one
by the error's type, never its words, and its errors cross the process boundary with their type:
pickling, the spawn pool the CLI runs, and the CLI end to end on a served dandiset with an asset
of each kind."""

from __future__ import annotations

import inspect
import json
import os
import pickle
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from test_dandiset import model_path as model_path  # a fixture: a small real model bundle

from nwb_celltype import errors

DANDISET = "000061"


def _error_classes() -> list[type[BaseException]]:
    """Every error class of the package: nwb_celltype.errors, and the private final errors of the
    remote session (raised inside a worker, read by the driver)."""
    from nwb_celltype.io import _session

    public = [
        c for c in vars(errors).values() if inspect.isclass(c) and issubclass(c, errors.NwbCelltypeError)
    ]
    private = [
        c
        for c in vars(_session).values()
        if inspect.isclass(c) and issubclass(c, errors.NwbCelltypeError) and c.__module__ == _session.__name__
    ]
    assert errors.NoUnitsError in public and private, "the discovery of error classes found too few"
    return public + private


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_error_survives_pickling_with_its_type(cls):
    """A worker's error reaches the driver pickled: an error class whose __init__ takes other
    arguments than its message does not unpickle (the driver's result thread then breaks the pool)."""
    exc = cls("/units of sub-1.nwb has no units; nothing to annotate")
    exc.detail = "kept"  # attributes travel too
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls and back.args == exc.args and str(back) == str(exc)
    assert back.detail == "kept"
    assert isinstance(back, errors.NoUnitsError) == isinstance(exc, errors.NoUnitsError)


def test_no_units_errors_are_exported_and_catchable_as_before():
    """NoUnitsError is exported beside the other errors; its subclasses stay what they were raised as
    before (NotNWBError, InvalidUnitsError: a ValueError), so existing except clauses catch them."""
    import nwb_celltype

    assert nwb_celltype.NoUnitsError is errors.NoUnitsError
    assert issubclass(errors.NoUnitsTableError, (errors.NoUnitsError, errors.NotNWBError, OSError))
    assert issubclass(errors.EmptyUnitsError, errors.NoUnitsError)
    assert issubclass(errors.EmptyUnitsError, errors.InvalidUnitsError) and issubclass(
        errors.EmptyUnitsError, ValueError
    )
    docs = (Path(__file__).parents[1] / "docs" / "robustness.md").read_text()
    assert "NoUnitsError" in docs and "NoUnitsTableError" in docs and "EmptyUnitsError" in docs


def _raise(name: str) -> None:  # runs in a pool process
    raise getattr(errors, name)(f"raised in pid {os.getpid()} as {name}")


def test_errors_reach_the_driver_from_the_pool_with_their_type():
    """Through the process pool annotate-dandiset runs by default (spawned processes)."""
    from nwb_celltype.batch.executors import PoolRunner
    from nwb_celltype.model.shipped import resolve_model

    names = ["NoUnitsTableError", "EmptyUnitsError", "InvalidUnitsError", "NotNWBError", "RemoteError"]
    runner = PoolRunner(1, None, resolve_model(None)[0].sha256)
    try:
        futs = {runner.submit(_raise, n): n for n in names}
        got = {name: runner.outcome(_wait(runner, fut))[1] for fut, name in futs.items()}
    finally:
        runner.close()
    for name, exc in got.items():
        assert type(exc) is getattr(errors, name), (name, exc)
        assert str(exc).endswith(f"as {name}")
        assert int(str(exc).split()[3]) != os.getpid()  # raised in another process
        assert not runner.is_broken(exc)


class _RowError(errors.InvalidUnitsError):
    """An error whose __init__ takes other arguments than its message: it does not unpickle."""

    def __init__(self, row: int, *, column: str):
        super().__init__(f"row {row} of {column} is out of order")
        self.row, self.column = row, column


def _asset_task_raising_row_error(task: dict) -> dict:  # runs in a pool process
    from nwb_celltype.batch import worker

    def annotate_asset(task):
        raise _RowError(3, column="spike_times")

    worker._annotate_asset = annotate_asset  # this process only
    return worker.run_asset_task(task)


def test_an_error_that_does_not_unpickle_goes_as_its_nearest_base():
    """An error the driver cannot unpickle broke the whole pool (BrokenProcessPool: every asset in
    flight lost and tried again); the worker now sends it as its nearest base class that unpickles.

    Checked in a fresh interpreter: once dask.multiprocessing is imported (other tests import it),
    tblib makes every exception class then defined picklable in that process, and the premise no
    longer holds there."""
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_errors20 as t; t._check_guard()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _check_guard():
    from nwb_celltype.batch.executors import PoolRunner
    from nwb_celltype.batch.worker import _portable
    from nwb_celltype.model.shipped import resolve_model

    with pytest.raises(TypeError):  # the premise
        pickle.loads(pickle.dumps(_RowError(3, column="spike_times")))
    sent = _portable(_RowError(3, column="spike_times"))
    assert type(sent) is errors.InvalidUnitsError  # still one of ours: not retried, as before
    assert str(sent) == "_RowError: row 3 of spike_times is out of order"
    fine = errors.NotNWBError("x")
    assert _portable(fine) is fine
    runner = PoolRunner(1, None, resolve_model(None)[0].sha256)
    try:
        fut = runner.submit(_asset_task_raising_row_error, {"path": "sub-1/a.nwb"})
        _, exc = runner.outcome(_wait(runner, fut))
    finally:
        runner.close()
    assert not runner.is_broken(exc), exc
    assert type(exc) is errors.InvalidUnitsError and "_RowError: row 3 of spike_times" in str(exc)


def _wait(runner, fut):
    while not runner.wait([fut], 60.0):
        pass
    return fut


# ---------------------------------------------------------------------------------------------
# the CLI end to end: one asset of each kind on a served dandiset
# ---------------------------------------------------------------------------------------------

GOOD = "sub-1/sub-1_ecephys.nwb"
NO_TABLE = "sub-2/sub-2_behavior.nwb"  # no Units table: skipped
EMPTY = "sub-3/sub-3_ecephys.nwb"  # an empty /units, no other table: skipped
BESIDE = "sub-4/sub-4_ecephys.nwb"  # an empty /units beside a sorting with spike times: failed
CORRUPT = "sub-5/sub-5_ecephys.nwb"  # the first half of a good file: failed


def _write(path: Path, units: str | None = None, processing: bool = False) -> None:
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.misc import Units

    nwb = NWBFile(path.stem, path.stem, datetime(2024, 1, 1, tzinfo=timezone.utc))
    if units is not None:
        nwb.units = Units(name=units)
    if processing:
        sorting = Units(name="kilosort")
        sorting.add_unit(spike_times=np.sort(np.random.default_rng(0).uniform(0, 60, 400)))
        nwb.create_processing_module("ecephys", "sorting").add(sorting)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    """A served dandiset: one good asset, two with nothing to classify, two that fail."""
    from nwb_celltype import simulate
    from nwb_celltype.testing.servers import DandiApiServer, RangeServer

    root = tmp_path_factory.mktemp("kinds")
    for rel in (GOOD, NO_TABLE, EMPTY, BESIDE, CORRUPT):
        (root / rel).parent.mkdir(parents=True)
    simulate.simulate_recording(root / GOOD, n_units=6, duration_s=30.0, seed=61, labelled_fraction=0.0)
    _write(root / NO_TABLE)
    _write(root / EMPTY, units="units")
    _write(root / BESIDE, units="units", processing=True)
    data = (root / GOOD).read_bytes()
    (root / CORRUPT).write_bytes(data[: len(data) // 2])
    with RangeServer(root) as files, DandiApiServer(files) as api:
        for rel in (GOOD, NO_TABLE, EMPTY, BESIDE, CORRUPT):
            api.add_asset(DANDISET, rel, root / rel)
        yield api


@pytest.mark.network
@pytest.mark.slow
def test_cli_records_skipped_and_failed_assets_by_error_type(kinds, model_path, tmp_path):
    """`nwb-celltype annotate-dandiset` (its default executor: a spawned process pool): the assets
    with nothing to classify are skipped, the others that raise are failed, whatever the words."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", "from nwb_celltype.cli import main; main()", "annotate-dandiset"]
    cmd += [f"{DANDISET}@draft", "--out", str(out), "--model", str(model_path), "--workers", "2"]
    cmd += ["--retries", "0", "--json", "--cache-dir", str(tmp_path / "cache")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NWB_CELLTYPE_PAUSE")}
    env.update({"NWB_CELLTYPE_DANDI_API_URL": kinds.api_url, "DANDI_NO_ET": "1"})
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]  # some assets failed
    result = json.loads(proc.stdout)
    assert result["executor"] == "local"
    status = {a["path"]: a["status"] for a in result["assets"]}
    assert status == {
        GOOD: "done",
        NO_TABLE: "skipped",
        EMPTY: "skipped",
        BESIDE: "failed",
        CORRUPT: "failed",
    }
    records = {a["path"]: a for a in result["assets"]}
    beside = records[BESIDE]["error"]
    assert beside.startswith("InvalidUnitsError:") and "--units-table processing/ecephys/kilosort" in beside
    assert records[CORRUPT]["error"].split(":")[0] in {"NotNWBError", "SourceError"}
    for path in (NO_TABLE, EMPTY):
        assert records[path]["error"].startswith("no units: ") and records[path]["output"] is None
    # the state records on disk say the same (a rerun reads them)
    from nwb_celltype.batch.state import RunState

    state = RunState(out)
    assert {p: state.read_record(p)["status"] for p in status} == status
