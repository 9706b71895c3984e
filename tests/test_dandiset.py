"""Whole-dandiset annotation (issue 9): a local "dandiset" of simulated assets served by the
loopback DANDI-shaped API and Range server; full run, kill and resume, a corrupted asset, an
asset without units, and a Dask LocalCluster run equal to the local one."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from nwb_celltype.batch import annotate_dandiset, derived_asset_path, parse_dandiset_spec
from nwb_celltype.batch._execute import _is_retriable
from nwb_celltype.batch.run import summary_rows
from nwb_celltype.batch.state import RunState, is_done, read_json, write_json_atomic
from nwb_celltype.batch.worker import _is_no_units
from nwb_celltype.errors import (
    EmptyUnitsError,
    InvalidValueError,
    NotNWBError,
    NoUnitsTableError,
    NwbCelltypeError,
    OutputError,
    RemoteError,
)

DANDISET = "000042"
#: (subject, session) of the good simulated assets
GOOD = [("M1", "S1"), ("M1", "S2"), ("M2", "S1"), ("M2", "S2"), ("M3", "S1"), ("M3", "S2")]
CORRUPT = "sub-M9/sub-M9_ses-S1_ecephys.nwb"
NO_UNITS = "sub-M8/sub-M8_ses-S1_behavior+ecephys.nwb"
N_UNITS = 20


def _asset_path(subj: str, ses: str) -> str:
    return f"sub-{subj}/sub-{subj}_ses-{ses}_ecephys.nwb"


# ---------------------------------------------------------------------------------------------
# pure parts: parsing, layout, state, options
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("000409", ("000409", None)),
        ("000409@draft", ("000409", "draft")),
        ("000409@0.230101.1234", ("000409", "0.230101.1234")),
        ("DANDI:000409/draft", ("000409", "draft")),
        ("dandi:000409", ("000409", None)),
    ],
)
def test_parse_dandiset_spec(spec, expected):
    assert parse_dandiset_spec(spec) == expected


@pytest.mark.parametrize(
    "spec", ["409", "000409@", "abc", "https://example.org/x.nwb", ""]
)  # a file of the dandiset is read (tests/test_dandiset_outputs.py)
def test_parse_dandiset_spec_rejects(spec):
    with pytest.raises(InvalidValueError, match="DANDISET\\[@VERSION\\]"):
        parse_dandiset_spec(spec)


@pytest.mark.parametrize(
    ("asset", "derived"),
    [
        ("sub-M1/sub-M1_ses-S1_ecephys.nwb", "sub-M1/sub-M1_ses-S1_desc-celltype_ecephys.nwb"),
        (
            "sub-M1/sub-M1_ses-S1_behavior+ecephys.nwb",
            "sub-M1/sub-M1_ses-S1_desc-celltype_behavior+ecephys.nwb",
        ),
        ("sub-1/sub-1.nwb", "sub-1/sub-1_desc-celltype.nwb"),
        ("rec_2.nwb", "rec_2_desc-celltype.nwb"),
    ],
)
def test_derived_asset_path(asset, derived):
    assert derived_asset_path(asset) == derived


@pytest.mark.parametrize("asset", ["../x.nwb", "/abs/x.nwb", "a/../../x.nwb"])
def test_derived_asset_path_rejects_escapes(asset):
    with pytest.raises(InvalidValueError, match="cannot be mirrored"):
        derived_asset_path(asset)


def test_state_records_atomic_and_is_done(tmp_path):
    state = RunState(tmp_path)
    state.prepare()
    try:
        out = tmp_path / "sub-1" / "a.nwb"
        out.parent.mkdir()
        out.write_bytes(b"x" * 10)
        rec = {
            "path": "sub-1/a.nwb",
            "status": "done",
            "asset_id": "A",
            "version": "draft",
            "model_sha256": "m1",
            "threshold": 2.0,
            "ignore_waveforms": False,
            "any_region": False,
            "output": "sub-1/a.nwb",
            "output_size": 10,
        }
        state.write_record(rec)
        assert not list(state.assets_dir.glob("*.tmp")), "temp file left behind"
        got = state.read_record("sub-1/a.nwb")
        assert got == rec
        assert is_done(got, tmp_path, asset_id="A", version="draft", model_sha256="m1")
        # another model, asset id (new content) or version: not done
        assert not is_done(got, tmp_path, asset_id="A", version="draft", model_sha256="m2")
        assert not is_done(got, tmp_path, asset_id="B", version="draft", model_sha256="m1")
        assert not is_done(got, tmp_path, asset_id="A", version="0.1", model_sha256="m1")
        # other labelling settings redo the asset; so does a record that does not say its settings
        kw = {"asset_id": "A", "version": "draft", "model_sha256": "m1"}
        assert not is_done(got, tmp_path, **kw, threshold=3.0)
        assert not is_done(got, tmp_path, **kw, ignore_waveforms=True)
        other = {**rec, "threshold": 3.0, "ignore_waveforms": True}
        assert is_done(other, tmp_path, **kw, threshold=3.0, ignore_waveforms=True)
        assert not is_done(other, tmp_path, **kw)
        old = {k: v for k, v in rec.items() if k not in ("threshold", "ignore_waveforms")}
        assert not is_done(old, tmp_path, **kw)
        # the Units table and waveform rate asked for: a record without them used the defaults
        assert is_done(rec, tmp_path, **kw, units_table=None, waveform_rate_hz=None)
        assert not is_done(rec, tmp_path, **kw, units_table="processing/ecephys/curated")
        assert not is_done(rec, tmp_path, **kw, waveform_rate_hz=20000.0)
        chosen = {**rec, "units_table": "processing/ecephys/curated", "waveform_rate_hz": 20000.0}
        assert is_done(
            chosen, tmp_path, **kw, units_table="processing/ecephys/curated", waveform_rate_hz=20000.0
        )
        assert not is_done(chosen, tmp_path, **kw)
        # the location rule: another setting redoes; a record from before the rule does not say
        assert not is_done(rec, tmp_path, **kw, any_region=True)
        assert is_done({**rec, "any_region": True}, tmp_path, **kw, any_region=True)
        before_rule = {k: v for k, v in rec.items() if k != "any_region"}
        assert not is_done(before_rule, tmp_path, **kw)
        out.write_bytes(b"x" * 11)  # output replaced by something else
        assert not is_done(got, tmp_path, asset_id="A", version="draft", model_sha256="m1")
        out.unlink()
        assert not is_done(got, tmp_path, asset_id="A", version="draft", model_sha256="m1")
        # a second run on the same folder is refused while the first holds the lock
        with pytest.raises(OutputError, match="another annotate-dandiset run"):
            RunState(tmp_path).prepare()
    finally:
        state.release()
    again = RunState(tmp_path)
    again.prepare()  # released: fine again
    again.release()


def test_read_json_tolerates_garbage(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{not json")
    assert read_json(p) is None
    write_json_atomic(p, {"a": np.int64(3), "b": np.arange(2)})
    assert json.loads(p.read_text()) == {"a": 3, "b": [0, 1]}


@pytest.mark.parametrize(
    ("exc", "retriable"),
    [
        (RemoteError("HTTP 503"), True),
        (ConnectionResetError("reset"), True),
        (RuntimeError("worker lost"), True),
        (NotNWBError("not HDF5"), False),
        (InvalidValueError("bad"), False),
        (OutputError("disk full"), False),
        (KeyboardInterrupt(), False),  # Ctrl-C in a worker: an interruption, not a fault
    ],
)
def test_retry_policy(exc, retriable):
    assert _is_retriable(exc) is retriable


@pytest.mark.parametrize("ctrl_c", ["KeyboardInterrupt", "Interrupted"])
def test_a_worker_interrupted_by_ctrl_c_ends_the_run(tmp_path, ctrl_c):
    """The terminal's Ctrl-C reaches the workers too: a task that ended with KeyboardInterrupt was
    retried (a new worker started it again, and the run could wait on it for good, as a full suite
    on a loaded machine showed twice). Now it interrupts the run, and nothing is submitted again."""
    from nwb_celltype.batch._execute import _execute

    class Runner:  # the PoolRunner interface, one task that a Ctrl-C interrupted
        n_workers = 1
        submitted = 0

        def submit(self, fn, task):
            self.submitted += 1
            return object()

        def wait(self, inflight, timeout):
            return list(inflight)

        def outcome(self, fut):  # SIGINT during a write arrives as the cleanup's Interrupted
            from nwb_celltype._atomic import Interrupted

            return None, KeyboardInterrupt() if ctrl_c == "KeyboardInterrupt" else Interrupted(signal.SIGINT)

        def is_broken(self, exc):
            return False

    runner, state = Runner(), RunState(tmp_path)
    task = {"path": "sub-1/a.nwb", "attempt": 0}
    with pytest.raises(KeyboardInterrupt, match="its worker was interrupted"):
        list(_execute(runner, [task], state, retries=3, backoff_s=0.0, progress=False, total=1))
    assert runner.submitted == 1
    assert state.read_record("sub-1/a.nwb") is None  # no failure recorded: the run was interrupted


@pytest.mark.parametrize(
    ("exc", "no_units"),
    [
        (NoUnitsTableError("the file has no Units table (/units); expected spike-sorted units."), True),
        (EmptyUnitsError("the source's Units table /units has no units; nothing to annotate"), True),
        # the message alone decides nothing (it did before: the words "has no units" made a skip)
        (InvalidValueError("the source's Units table has no units; nothing to annotate"), False),
        (NotNWBError("the file has no Units table (/units); expected spike-sorted units."), False),
        (NotNWBError("x.nwb is not an HDF5 file (truncated file); expected an NWB 2.x HDF5 file"), False),
        (RemoteError("the file has no units table"), False),  # a remote failure is not "no units"
    ],
)
def test_no_units_detection(exc, no_units):
    assert _is_no_units(exc) is no_units


def test_no_units_errors_come_from_the_reader(tmp_path):
    """The reader and annotate raise NoUnitsError where a whole-dandiset run must skip, and another
    error where it must fail: a file without Units, an empty /units alone (skip); an empty /units
    beside a table with spike times, or a --units-table the file lacks (fail)."""
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.misc import Units

    from nwb_celltype.annotate import annotate
    from nwb_celltype.errors import InvalidUnitsError, NoUnitsError

    def write(name, units=None, processing=None):
        nwb = NWBFile(name, name, datetime(2024, 1, 1, tzinfo=timezone.utc))
        if units is not None:
            nwb.units = units
        if processing is not None:
            mod = nwb.create_processing_module("ecephys", "sorting")
            mod.add(processing)
        path = tmp_path / f"{name}.nwb"
        with NWBHDF5IO(str(path), "w") as io:
            io.write(nwb)
        return path

    def sorted_units(name):
        units = Units(name=name)
        units.add_unit(spike_times=np.sort(np.random.default_rng(0).uniform(0, 60, 400)))
        return units

    def error(path, **kw):
        with pytest.raises(NwbCelltypeError) as info:
            annotate(path, out=tmp_path / f"out-{path.stem}.nwb", **kw)
        return info.value

    assert isinstance(error(write("bare")), NoUnitsTableError)
    assert isinstance(error(write("empty", units=Units(name="units"))), EmptyUnitsError)
    beside = error(write("beside", units=Units(name="units"), processing=sorted_units("kilosort")))
    assert isinstance(beside, InvalidUnitsError) and not isinstance(beside, NoUnitsError)
    assert "--units-table processing/ecephys/kilosort" in str(beside)
    lacks = error(write("lacks", units=sorted_units("units")), units_table="processing/ecephys/curated")
    assert not isinstance(lacks, NoUnitsError) and "no Units table at" in str(lacks)
    assert not any(_is_no_units(e) for e in (beside, lacks))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"workers": 2, "scheduler": "tcp://127.0.0.1:1"}, "not both"),
        ({"workers": 0}, "workers must be >= 1"),
        ({"retries": -1}, "retries must be >= 0"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
    ],
)
def test_bad_options(tmp_path, kwargs, match):
    with pytest.raises(InvalidValueError, match=match):
        annotate_dandiset("000001", tmp_path, **kwargs)


def test_summary_rows_label_columns():
    recs = [
        {"path": "a", "status": "done", "label_counts": {"MLI": 2, "unclassified": 1, "PkC_ss": 3}},
        {"path": "b", "status": "failed", "error": "x"},
    ]
    cols, rows = summary_rows(recs)
    assert [c for c in cols if c.startswith("label_")] == ["label_MLI", "label_PkC_ss"]  # C4 order
    assert len(cols) == len(set(cols))
    assert rows[0]["label_PkC_ss"] == 3 and rows[1]["label_MLI"] is None and rows[1]["error"] == "x"
    # the species each asset's units were scored as, and whether the model learnt from it
    recs[0]["species"] = {"kind": "not_trained", "stated": ["Rattus norvegicus"], "trained": ["Mus musculus"]}
    _, rows = summary_rows(recs)
    assert (rows[0]["species"], rows[0]["species_coverage"]) == ("Rattus norvegicus", "not_trained")
    assert (rows[1]["species"], rows[1]["species_coverage"]) == (None, None)


# ---------------------------------------------------------------------------------------------
# a served local dandiset
# ---------------------------------------------------------------------------------------------


def _make_no_units_file(path: Path) -> None:
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile

    f = NWBFile(
        session_description="behaviour only, no spike sorting",
        identifier="no-units",
        session_start_time=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
    with NWBHDF5IO(str(path), "w") as io:
        io.write(f)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Six simulated assets, one truncated (corrupt) and one without units, behind the loopback
    DANDI API and Range server."""
    from nwb_celltype import simulate
    from nwb_celltype.testing.servers import DandiApiServer, RangeServer

    root = tmp_path_factory.mktemp("dandiset")
    paths = {}
    for i, (subj, ses) in enumerate(GOOD):
        rel = _asset_path(subj, ses)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        simulate.simulate_recording(
            root / rel, preset="mouse", n_units=N_UNITS, duration_s=60.0, seed=100 + i, labelled_fraction=0.0
        )
        paths[rel] = root / rel
    # corrupt: the first half of a good file (the HDF5 superblock is there, the data is not)
    (root / CORRUPT).parent.mkdir(parents=True)
    data = paths[_asset_path(*GOOD[0])].read_bytes()
    (root / CORRUPT).write_bytes(data[: len(data) // 2])
    (root / NO_UNITS).parent.mkdir(parents=True)
    _make_no_units_file(root / NO_UNITS)
    (root / "dataset_description.json").write_text("{}")  # not NWB: not listed
    with RangeServer(root) as files, DandiApiServer(files, page_size=3) as api:
        for rel in [*paths, CORRUPT, NO_UNITS, "dataset_description.json"]:
            api.add_asset(DANDISET, rel, root / rel)
        yield {"root": root, "files": files, "api": api, "good": sorted(paths)}


def _env(api) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NWB_CELLTYPE_PAUSE")}
    env.update({"NWB_CELLTYPE_DANDI_API_URL": api.api_url, "DANDI_NO_ET": "1", "PYTHONUNBUFFERED": "1"})
    return env


def _gone(pids: set[int], timeout_s: float) -> bool:
    """Whether all ``pids`` have exited within ``timeout_s`` (zombies count as exited)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = set()
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    if fh.read().split(")")[-1].split()[0] != "Z":
                        alive.add(pid)
            except FileNotFoundError:
                pass
        if not alive:
            return True
        time.sleep(0.1)
    return False


def _labels_per_unit(path: Path) -> dict:
    """Labels and probabilities as any reader gets them from a derived file."""
    from pynwb import NWBHDF5IO

    from nwb_celltype.nwb import read_annotations

    with NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        recs = read_annotations(nwbfile)
        assert len(recs) == 1, f"expected one annotation table in {path}, got {list(recs)}"
        rec = next(iter(recs.values()))
        return {
            "labels": [str(x) for x in rec.labels],
            "probabilities": np.asarray(rec.probabilities, dtype=np.float64),
            "n_units": len(nwbfile.units),
        }


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    """A small real bundle (2 untrained C4 networks with fixed seeds): the pipeline does not care
    whether the weights are trained, and the test does not depend on the demo model's features."""
    import torch

    from nwb_celltype.features.config import FeatureConfig
    from nwb_celltype.model import build_network, bundle_from_states, save_bundle
    from nwb_celltype.vocabulary import C4_CLASSES

    torch.manual_seed(7)
    states = [build_network(len(C4_CLASSES)).state_dict() for _ in range(2)]
    bundle = bundle_from_states(
        states, classes=C4_CLASSES, feature_config=FeatureConfig(), name="test-untrained", version="0"
    )
    return save_bundle(bundle, tmp_path_factory.mktemp("model") / "bundle")


@pytest.fixture(scope="module")
def local_run(served, model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("derived-local")
    served["files"].reset_stats()
    result = annotate_dandiset(
        f"{DANDISET}@draft",
        out,
        model=model_path,
        threshold=1.0,
        workers=2,
        retries=1,
        retry_backoff_s=0.1,
        dandi_api_url=served["api"].api_url,
        cache_dir=tmp_path_factory.mktemp("cache-local"),
    )
    return {"out": out, "result": result, "stats": served["files"].stats()}


@pytest.mark.network
@pytest.mark.slow
def test_full_local_run(served, local_run):
    res, out = local_run["result"], local_run["out"]
    by_path = {a["path"]: a for a in res.assets}
    assert set(by_path) == {*served["good"], CORRUPT, NO_UNITS}  # the JSON file is not NWB: not listed
    assert res.counts == {"listed": 8, "done": 6, "skipped": 1, "failed": 1, "reused": 0, "annotated": 6}
    assert res.executor == "local" and res.n_workers == 2
    for p in served["good"]:
        rec = by_path[p]
        assert rec["status"] == "done", rec
        assert rec["n_units"] == N_UNITS and sum(rec["label_counts"].values()) == N_UNITS
        assert (out / derived_asset_path(p)).is_file()
        assert rec["worker_model_loads"] == 1, "the model must be loaded once per worker"
        assert rec["source"]["dandiset_id"] == DANDISET and rec["source"]["asset_id"] == rec["asset_id"]
        got = _labels_per_unit(out / derived_asset_path(p))
        assert got["n_units"] == N_UNITS and len(got["labels"]) == N_UNITS
    assert len({by_path[p]["worker"] for p in served["good"]}) == 2, "both workers should have worked"
    # the corrupted asset is recorded failed with an error, the others completed
    bad = by_path[CORRUPT]
    assert bad["status"] == "failed" and bad["error"] and bad["output"] is None
    assert not (out / derived_asset_path(CORRUPT)).exists()
    skipped = by_path[NO_UNITS]
    assert skipped["status"] == "skipped" and "units" in skipped["error"].lower()
    # summary table: TSV and JSON agree with the result
    with open(out / "celltype-summary.tsv", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        rows = list(reader)
    assert len(rows) == 8 and {"path", "status", "n_units", "time_s", "error"} <= set(reader.fieldnames)
    assert {r["path"]: r["status"] for r in rows} == {p: a["status"] for p, a in by_path.items()}
    # a C4-family model records no training species; the assets' Subject species is still reported
    done = [r for r in rows if r["status"] == "done"]
    assert done and {(r["species"], r["species_coverage"]) for r in done} == {("Mus musculus", "unrecorded")}
    summary = json.loads((out / "celltype-summary.json").read_text())
    assert summary["counts"] == res.counts and summary["model"]["sha256"] == res.model["sha256"]
    # no scratch files left
    assert not list((out / ".nwb-celltype" / "tmp").iterdir())


@pytest.mark.network
@pytest.mark.slow
def test_rerun_is_idempotent(served, model_path, local_run, tmp_path):
    """Same output folder, same model, same version: nothing is streamed or written again."""
    out = local_run["out"]
    before = {p: (out / derived_asset_path(p)).stat().st_mtime_ns for p in served["good"]}
    served["files"].reset_stats()
    res = annotate_dandiset(
        f"{DANDISET}@draft",
        out,
        model=model_path,
        threshold=1.0,  # the same command as the first run
        workers=2,
        retries=0,
        dandi_api_url=served["api"].api_url,
        cache_dir=tmp_path / "cache",  # empty: anything read again would reach the server
    )
    assert res.counts["reused"] == 6 and res.counts["annotated"] == 0
    # the failed asset is tried again (once, retries=0); the one without units is not
    assert res.counts["failed"] == 1 and res.counts["skipped"] == 1
    touched = {p for p in served["files"].stats().by_path}
    assert touched <= {"/" + CORRUPT}, f"done assets were read again: {touched}"
    after = {p: (out / derived_asset_path(p)).stat().st_mtime_ns for p in served["good"]}
    assert after == before

    # another threshold is another labelling: a rerun (on a copy of the folder) redoes every asset
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    res = annotate_dandiset(
        f"{DANDISET}@draft",
        copy,
        model=model_path,
        threshold=2.0,
        workers=2,
        retries=0,
        dandi_api_url=served["api"].api_url,
        cache_dir=tmp_path / "cache2",
    )
    assert res.counts["reused"] == 0 and res.counts["annotated"] == 6


@pytest.mark.network
@pytest.mark.slow
def test_killed_run_resumes(served, model_path, tmp_path):
    """SIGKILL the CLI half-way; the restarted run does only the remaining assets."""
    out = tmp_path / "derived"
    cmd = [
        sys.executable,
        "-c",
        "from nwb_celltype.cli import main; main()",
        "annotate-dandiset",
        f"{DANDISET}@draft",
        "--out",
        str(out),
        "--include",
        "sub-M[12]/*",
        "--threshold",
        "1.0",
        "--model",
        str(model_path),
        "--workers",
        "1",
        "--quiet",
    ]
    served["files"].reset_stats()
    # each run its own empty byte cache, so that every asset it reads reaches the server's log
    proc = subprocess.Popen(
        [*cmd, "--cache-dir", str(tmp_path / "cache1")],
        env=_env(served["api"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    state = RunState(out)
    deadline = time.monotonic() + 240
    done1: dict[str, dict] = {}
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done1 = (
                {r["path"]: r for r in state.iter_records() if r["status"] == "done"} if out.exists() else {}
            )
            if len(done1) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"run ended before it could be killed: {proc.communicate()}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    done1 = {r["path"]: r for r in state.iter_records() if r["status"] == "done"}
    assert 2 <= len(done1) < 4, f"kill was not half-way: {sorted(done1)}"
    stats1 = served["files"].stats()
    # the pool process dies with the driver (PR_SET_PDEATHSIG): no orphan goes on writing...
    worker_pids = {int(r["worker"].rsplit(":", 1)[1]) for r in done1.values()}
    assert worker_pids and _gone(worker_pids, 10.0), f"pool workers outlived the killed driver: {worker_pids}"
    mtimes = {p: (out / r["output"]).stat().st_mtime_ns for p, r in done1.items()}
    served["files"].reset_stats()
    res = subprocess.run(
        [*cmd, "--json", "--cache-dir", str(tmp_path / "cache2")],
        env=_env(served["api"]),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(res.stdout)
    assert stats1.requests > 0 and served["files"].stats().requests > 0
    # ...so nothing touched the first run's outputs after the kill, and the second run read none
    # of the assets the first one finished
    read2 = {p.lstrip("/") for p in served["files"].stats().by_path}
    assert not (read2 & set(done1)), f"assets done twice: {read2 & set(done1)}"
    assert result["counts"]["done"] == result["counts"]["listed"] == 4, "assets lost"
    assert result["counts"]["reused"] == len(done1) and result["counts"]["annotated"] == 4 - len(done1)
    assert read2 == {p for p in served["good"] if p.startswith(("sub-M1/", "sub-M2/"))} - set(done1)
    for rec in state.iter_records():
        if rec["path"] in done1:
            assert (
                rec["run_id"] == done1[rec["path"]]["run_id"]
                and rec["finished"] == done1[rec["path"]]["finished"]
            )
            assert (out / rec["output"]).stat().st_mtime_ns == mtimes[rec["path"]]
        else:
            assert rec["run_id"] != next(iter(done1.values()))["run_id"]
    assert not list((out / ".nwb-celltype" / "tmp").iterdir())


@pytest.mark.network
@pytest.mark.slow
def test_dask_local_cluster_equals_local_run(served, model_path, local_run, tmp_path):
    import distributed  # the test extra (the dask extra of the package)

    out = tmp_path / "derived-dask"
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        res = annotate_dandiset(
            f"{DANDISET}@draft",
            out,
            scheduler=cluster.scheduler_address,
            model=model_path,
            threshold=1.0,
            retries=0,
            dandi_api_url=served["api"].api_url,
            cache_dir=tmp_path / "cache",
        )
    assert res.executor == "dask" and res.n_workers == 2
    local = {a["path"]: a for a in local_run["result"].assets}
    for a in res.assets:
        assert a["status"] == local[a["path"]]["status"], a
        if a["status"] == "done":
            assert a["label_counts"] == local[a["path"]]["label_counts"]
            assert a["worker_model_loads"] == 1
            got = _labels_per_unit(out / a["output"])
            want = _labels_per_unit(local_run["out"] / a["output"])
            assert got["labels"] == want["labels"] and got["n_units"] == want["n_units"]
            np.testing.assert_allclose(got["probabilities"], want["probabilities"], rtol=1e-5, atol=1e-6)
    assert len({a["worker"] for a in res.assets if a["status"] == "done"}) == 2


@pytest.mark.network
def test_transient_failure_is_retried(served, model_path, tmp_path):
    """The file server answers 503 to the first requests, more than the reading layer's own
    retries absorb: the asset fails once, is retried with backoff by the run, and completes."""
    files = served["files"]
    files.faults.fail_first, files.faults.fail_status = 8, 503
    try:
        res = annotate_dandiset(
            f"{DANDISET}@draft",
            tmp_path / "out",
            include=_asset_path(*GOOD[0]),
            model=model_path,
            workers=1,
            retries=4,
            retry_backoff_s=0.2,
            dandi_api_url=served["api"].api_url,
            cache_dir=tmp_path / "cache",
        )
    finally:
        left = files.faults.fail_first
        files.faults.fail_first = 0
    assert left == 0, "the injected failures were not all met"
    (rec,) = res.assets
    assert rec["status"] == "done", rec
    assert rec["attempts"] >= 2, "the first try should have met the injected 503s"


@pytest.mark.network
def test_unknown_dandiset_is_our_error(served, tmp_path):
    with pytest.raises(NwbCelltypeError, match="999999"):
        annotate_dandiset("999999", tmp_path, dandi_api_url=served["api"].api_url)


def test_worker_task_passes_ignore_waveforms_to_annotate(tmp_path):
    """The unit of work the driver ships (here a local file with the default model): the option
    reaches annotate, the asset's provenance records it, every unit is scored without its waveform."""
    import json

    from pynwb import NWBHDF5IO

    from nwb_celltype.batch.worker import run_asset_task
    from nwb_celltype.model.shipped import resolve_model
    from nwb_celltype.nwb import read_annotations
    from nwb_celltype.simulate import simulate_recording

    src = tmp_path / "s.nwb"
    simulate_recording(src, n_units=8, duration_s=120, seed=4)
    bundle, _ = resolve_model(None)
    task = {
        "path": "sub-1/s.nwb",
        "asset_id": "a1",
        "version": "draft",
        "dandiset_id": "000001",
        "source": str(src),
        "output": "sub-1/s_celltype.nwb",
        "out_dir": str(tmp_path / "out"),
        "tmp_name": "t.nwb",
        "model_path": None,
        "model_sha256": bundle.sha256,
        "threshold": 2.0,
        "ignore_waveforms": True,
        "batch_size": 256,
        "dandi_api_url": None,
        "cache_dir": None,
        "attempt": 0,
        "run_id": "r1",
    }
    rec = run_asset_task(task)
    assert rec["status"] == "done" and rec["n_units"] == 8
    with NWBHDF5IO(str(tmp_path / "out" / "sub-1" / "s_celltype.nwb"), "r") as io:
        ann = next(iter(read_annotations(io.read()).values()))
    params = ann.classifier["parameters"]
    params = json.loads(params) if isinstance(params, str) else params
    assert params["ignore_waveforms"] is True
    scored = [str(r) for r, s in zip(ann.reasons, ann.status, strict=True) if s != "not_classifiable"]
    assert scored and all(
        "waveforms ignored on request" in r for r in scored if "out of distribution" not in r
    )


@pytest.mark.network
def test_ignore_waveforms_with_a_c4_model_is_refused_before_any_asset(served, model_path, tmp_path):
    """The C4-family model needs waveforms: the run stops in the driver, with nothing written."""
    from nwb_celltype.errors import FeatureError

    with pytest.raises(FeatureError, match="need each unit's waveform"):
        annotate_dandiset(
            f"{DANDISET}@draft",
            tmp_path / "out",
            model=model_path,
            ignore_waveforms=True,
            dandi_api_url=served["api"].api_url,
        )
    assert not any((tmp_path / "out").rglob("*.nwb"))


@pytest.mark.network
def test_include_matching_nothing(served, tmp_path):
    with pytest.raises(InvalidValueError, match="no NWB assets matching"):
        annotate_dandiset(
            f"{DANDISET}@draft", tmp_path, include="sub-none/*", dandi_api_url=served["api"].api_url
        )


@pytest.mark.network
@pytest.mark.slow
def test_dashboard_is_served(served, model_path, tmp_path):
    """--dashboard without a scheduler runs a local Dask cluster whose dashboard answers."""
    import logging
    import urllib.request

    import bokeh  # noqa: F401  (the test extra; serves the dashboard)

    seen: dict = {}

    class Probe(logging.Handler):
        def emit(self, record):
            msg = record.getMessage()
            if msg.startswith("Dask dashboard: "):
                url = msg.split(": ", 1)[1]
                with urllib.request.urlopen(url, timeout=30) as resp:  # loopback only
                    seen["url"], seen["status"] = url, resp.status
                    seen["body"] = resp.read(200_000).decode("utf-8", "replace")

    probe = Probe()
    log = logging.getLogger("nwb_celltype.batch.run")
    old_level = log.level
    log.setLevel(logging.INFO)  # the dashboard link is logged at INFO, whatever other tests set
    log.addHandler(probe)
    try:
        res = annotate_dandiset(
            f"{DANDISET}@draft",
            tmp_path / "out",
            include=_asset_path(*GOOD[1]),
            model=model_path,
            workers=1,
            dashboard=True,
            dashboard_address="127.0.0.1:0",
            dandi_api_url=served["api"].api_url,
            cache_dir=tmp_path / "cache",
        )
    finally:
        log.removeHandler(probe)
        log.setLevel(old_level)
    assert (
        res.executor == "dask" and res.dashboard_link and res.dashboard_link.startswith("http://127.0.0.1:")
    )
    assert seen.get("status") == 200 and seen["url"] == res.dashboard_link
    assert "bokeh" in seen["body"].lower() or "dask" in seen["body"].lower()
    assert res.counts["done"] == 1
    if logging.getLogger().getEffectiveLevel() > logging.INFO:  # distributed's INFO lines only with -v
        assert logging.getLogger("distributed").getEffectiveLevel() >= logging.WARNING


def test_cli_summary_text():
    from nwb_celltype.batch import DandisetRunResult
    from nwb_celltype.cli.annotate_dandiset import format_run

    res = DandisetRunResult(
        out_dir="/o",
        dandiset_id="000042",
        version="draft",
        model={"name": "m", "version": "1", "sha256": "ab" * 32, "path": "/m"},
        assets=[
            {"path": "a.nwb", "status": "done"},
            {"path": "b.nwb", "status": "failed", "error": "NotNWBError: truncated"},
        ],
        counts={"listed": 2, "done": 1, "skipped": 0, "failed": 1, "reused": 0, "annotated": 1},
        summary_tsv="/o/celltype-summary.tsv",
        summary_json="/o/celltype-summary.json",
        executor="local",
        n_workers=2,
        wall_s=3.0,
    )
    text = format_run(res)
    assert "dandiset 000042@draft: 2 NWB assets" in text and "failed 1" in text
    assert "failed: b.nwb: NotNWBError: truncated" in text and "a.nwb" not in text
    assert "DEMO" not in text
    # the default model (no path) is no demo model; the demo model is flagged wherever it comes from
    from dataclasses import replace

    assert "DEMO" not in format_run(replace(res, model={**res.model, "path": None, "demo": False}))
    assert "DEMO" in format_run(replace(res, model={**res.model, "demo": True}))


def _paused_run(served, model_path, tmp_path, *extra: str) -> subprocess.Popen:
    """`annotate-dandiset` in a new session with one worker, once that worker waits in its first
    task (NWB_CELLTYPE_PAUSE_AT=features): the process, its stderr a pipe (read it with communicate)."""
    cmd = [sys.executable, "-c", "from nwb_celltype.cli import main; main()", "annotate-dandiset"]
    cmd += [f"{DANDISET}@draft", "--out", str(tmp_path / "out"), "--model", str(model_path)]
    cmd += ["--workers", "1", "--quiet", "--cache-dir", str(tmp_path / "cache"), *extra]
    env = {**_env(served["api"]), "NWB_CELLTYPE_PAUSE_AT": "features"}  # each worker waits in its task
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    line = ""
    deadline = time.monotonic() + 120
    while "PAUSED AT features" not in line and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            proc.communicate()
            raise AssertionError("the run ended before a worker was busy")
    if "PAUSED AT features" not in line:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError("no worker was busy within 120 s")
    return proc


@pytest.mark.network
def test_a_worker_ended_by_sigterm_is_replaced_and_its_asset_retried(served, model_path, tmp_path):
    """SIGTERM to one pool process (a job system, ``kill PID``) mid-asset: the asset was recorded
    failed (Interrupted, not retried) and the same process went on with the next asset, whose read
    could fail on library state the cut read left behind. Now the process ends, a new one starts
    and the asset is tried again."""
    import re

    cmd = [sys.executable, "-c", "from nwb_celltype.cli import main; main()", "annotate-dandiset"]
    cmd += [f"{DANDISET}@draft", "--out", str(tmp_path / "out"), "--model", str(model_path)]
    cmd += ["--workers", "1", "--quiet", "--retries", "1", "--retry-backoff", "0.1"]
    cmd += ["--cache-dir", str(tmp_path / "cache")]
    env = {**_env(served["api"]), "NWB_CELLTYPE_PAUSE_AT": "features"}  # each worker waits in its task
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    pids = []
    try:
        deadline = time.monotonic() + 180
        while len(pids) < 2 and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "the run ended before a worker was busy"
            m = re.search(r"PAUSED AT features \(pid (\d+)\)", line)
            if m:
                pids.append(int(m.group(1)))
                if len(pids) == 1:
                    os.kill(pids[0], signal.SIGTERM)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    assert len(pids) == 2 and pids[1] != pids[0], pids  # a new process took the asset up again
    rec = RunState(tmp_path / "out").read_record(_asset_path(*GOOD[0]))
    # retried, paused again in the new process and killed there: no record (it was recorded failed)
    assert rec is None, rec


@pytest.mark.network
def test_sigterm_to_the_driver_stops_the_run_as_ctrl_c_does(served, model_path, tmp_path):
    """``kill PID``, ``timeout``, a job system's time limit: SIGTERM killed the driver outright,
    leaving a summary that said the run was still going. Now the pool is aborted, the summary is
    ``stopped`` with the unfinished assets pending, and the CLI says how to go on (exit 143)."""
    proc = _paused_run(served, model_path, tmp_path)
    try:
        proc.send_signal(signal.SIGTERM)  # the driver only
        err = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err and "rerun the same command to resume" in err, err
    summary = json.loads((tmp_path / "out" / "celltype-summary.json").read_text())
    assert summary["state"] == "stopped" and summary["counts"]["pending"] >= 1
    pending = [a for a in summary["assets"] if a["status"] == "pending"]
    assert all("was interrupted (SIGTERM)" in a["note"] for a in pending)


def _dies_once(task: dict) -> dict:
    """Run in a pool process: the first asset to run kills its process (as the kernel's OOM killer
    would); every later one returns a record."""
    marker = Path(task["out_dir"]) / "died"
    if not marker.exists():
        marker.write_text("x")
        os._exit(137)
    time.sleep(0.2)
    return {"path": task["path"], "status": "done", "attempts": task["attempt"]}


def test_a_dead_worker_costs_a_retry_not_the_run(tmp_path, monkeypatch):
    """Two tasks in flight on one worker when it dies: both futures break. The first was handled
    (the pool restarted, both rescheduled); the second then raised KeyError and ended the run."""
    from nwb_celltype.batch import run as run_mod
    from nwb_celltype.batch import worker as worker_mod
    from nwb_celltype.batch.executors import PoolRunner
    from nwb_celltype.model.shipped import resolve_model

    monkeypatch.setattr(worker_mod, "run_asset_task", _dies_once)
    state = RunState(tmp_path)
    state.prepare()
    runner = PoolRunner(1, None, resolve_model(None)[0].sha256)
    tasks = [{"path": f"a{k}.nwb", "attempt": 0, "out_dir": str(tmp_path)} for k in range(3)]
    try:
        recs = list(
            run_mod._execute(runner, tasks, state, retries=2, backoff_s=0.01, progress=False, total=3)
        )
    finally:
        runner.close()
        state.release()
    assert sorted(r["path"] for r in recs) == ["a0.nwb", "a1.nwb", "a2.nwb"]
    assert all(r["status"] == "done" for r in recs)


@pytest.mark.network
def test_two_ctrl_c_end_the_run(served, model_path, tmp_path):
    """Ctrl-C twice (the terminal signals the whole process group) while workers are busy: the run
    hung for good, waiting on a worker the second signal caught mid-task. Now the busy workers are
    killed and the run ends (their assets are redone by the next run)."""
    proc = _paused_run(served, model_path, tmp_path)
    try:
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)
        # read stderr while waiting: a child blocked on a full pipe would look like a hung run
        err = proc.communicate(timeout=120)[1]  # a loaded machine; the hang it guards was for good
        rc = proc.returncode
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()
    # 130, or ended by the second SIGINT itself (the shell reports both as 130)
    assert rc in (128 + signal.SIGINT, -signal.SIGINT), err
    if rc == 128 + signal.SIGINT:  # the CLI's own exit (not the second SIGINT's): it says how to go on
        assert "interrupted by SIGINT" in err and "rerun the same command to resume" in err, err
        summary = json.loads((tmp_path / "out" / "celltype-summary.json").read_text())
        # "running" where the second SIGINT cut the stopped run's table short
        assert summary["state"] in ("stopped", "running") and summary["counts"]["pending"] >= 1
