"""annotate-dandiset's output folder over several runs into it: no derived file without a ``done``
summary row that names it (files an outcome supersedes are removed), rows of assets outside a
rerun's ``--include`` kept, and derived names with one ``desc`` entity, distinct per asset.

The dandisets are small simulated assets behind the loopback DANDI API and Range server, annotated
with the real ``dandi`` client and worker processes, as in tests/test_dandiset.py."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from test_dandiset import _make_no_units_file
from test_dandiset import model_path as model_path  # a fixture: a small real model bundle

from nwb_celltype.batch import annotate_dandiset, derived_asset_path
from nwb_celltype.batch.state import STATE_DIRNAME, RunState, derived_paths, is_done
from nwb_celltype.errors import InvalidValueError

DANDISET = "000077"
A = "sub-A/sub-A_ses-1_ecephys.nwb"
B = "sub-B/sub-B_ses-1_ecephys.nwb"
C = "sub-C/sub-C_ses-1_desc-raw_ecephys.nwb"  # already has a desc entity


# ---------------------------------------------------------------------------------------------
# derived names (pure)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asset", "derived"),
    [
        ("sub-1/sub-1_ses-2_desc-raw_ecephys.nwb", "sub-1/sub-1_ses-2_desc-rawCelltype_ecephys.nwb"),
        ("sub-1/sub-1_desc-raw_behavior+ecephys.nwb", "sub-1/sub-1_desc-rawCelltype_behavior+ecephys.nwb"),
        (
            "sub-1/sub-1_ses-2_desc-celltype_ecephys.nwb",
            "sub-1/sub-1_ses-2_desc-celltypeCelltype_ecephys.nwb",
        ),
        ("rec_desc-a.nwb", "rec_desc-aCelltype.nwb"),
        ("sub-1/sub-1_ses-2_ecephys.NWB", "sub-1/sub-1_ses-2_desc-celltype_ecephys.NWB"),
    ],
)
def test_derived_name_has_one_desc_entity(asset, derived):
    assert derived_asset_path(asset) == derived
    assert sum(e.startswith("desc-") for e in Path(derived).name.split("_")) == 1


def test_derived_names_are_distinct():
    """Names built to collide under naive schemes (a desc inserted or appended, the label
    lower-cased, the extension's case dropped) all map to distinct derived names."""
    names = [
        "sub-1/sub-1_ses-2_ecephys.nwb",
        "sub-1/sub-1_ses-2_desc-celltype_ecephys.nwb",
        "sub-1/sub-1_ses-2_desc-Celltype_ecephys.nwb",
        "sub-1/sub-1_ses-2_desc-celltypeCelltype_ecephys.nwb",
        "sub-1/sub-1_ses-2_desc-raw_ecephys.nwb",
        "sub-1/sub-1_ses-2_desc-rawCelltype_ecephys.nwb",
        "sub-1/sub-1_ses-2_desc-raw_desc-celltype_ecephys.nwb",
        "sub-1/sub-1_ses-2_ecephys_desc-celltype.nwb",
        "sub-1/sub-1_ses-2_ecephys.NWB",
        "sub-1/sub-1_ses-2.nwb",
        "sub-1/sub-1_ses-2_desc-celltype.nwb",
        "rec.nwb",
        "rec_desc-celltype.nwb",
        "desc-x.nwb",
    ]
    got = derived_paths(names)
    assert len(set(got.values())) == len(names), got
    for asset, derived in got.items():
        n_desc = sum(e.startswith("desc-") for e in Path(asset).name.split("_"))
        assert sum(e.startswith("desc-") for e in Path(derived).name.split("_")) == max(1, n_desc), derived


@pytest.mark.parametrize(
    ("paths", "match"),
    [
        (["sub-1/x", "sub-1/x.nwb"], r"'sub-1/x' and 'sub-1/x.nwb' would both be annotated into"),
        ([f"{STATE_DIRNAME}/tmp/x.nwb"], "cannot be mirrored .* outside .nwb-celltype/"),
    ],
)
def test_derived_paths_refuses_collisions(paths, match):
    with pytest.raises(InvalidValueError, match=match):
        derived_paths(paths)


# ---------------------------------------------------------------------------------------------
# a small served dandiset, runs into one output folder
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """Simulated recordings (3 assets, and a changed version of A), a file without units and a
    truncated (corrupt) one."""
    from nwb_celltype import simulate

    root = tmp_path_factory.mktemp("sources")
    files = {}
    for k, name in enumerate(["a", "b", "c", "a2"]):
        files[name] = root / f"{name}.nwb"
        simulate.simulate_recording(
            files[name], n_units=6, duration_s=30.0, seed=300 + k, labelled_fraction=0.0, defects=False
        )
    files["no_units"] = root / "no_units.nwb"
    _make_no_units_file(files["no_units"])
    files["corrupt"] = root / "corrupt.nwb"
    data = files["a"].read_bytes()
    files["corrupt"].write_bytes(data[: len(data) // 2])
    return files


class Archive:
    """The served dandiset: assets A, B and C; ``publish`` replaces an asset's file (a new asset
    id, as a changed draft asset gets); ``run`` annotates into ``out``."""

    def __init__(self, root: Path, files, api, model: Path, tmp: Path):
        self.root, self.files, self.api, self.model, self.tmp = root, files, api, model, tmp
        self.n_runs = 0

    def publish(self, path: str, source: Path) -> None:
        dest = self.root / "v" / str(self.n_runs) / path  # a new file: never rewrite a served one
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        self.api.add_asset(DANDISET, path, dest)

    def run(self, out: Path, dandiset: str = f"{DANDISET}@draft", **kw):
        self.n_runs += 1
        return annotate_dandiset(
            dandiset,
            out,
            model=self.model,
            workers=1,
            retries=0,
            dandi_api_url=self.api.api_url,
            cache_dir=self.tmp / f"cache{self.n_runs}",  # empty: each run reads from the server
            **kw,
        )


@pytest.fixture
def archive(sources, model_path, tmp_path):
    from nwb_celltype.testing.servers import DandiApiServer, RangeServer

    root = tmp_path / "served"
    root.mkdir()
    with RangeServer(root) as files, DandiApiServer(files) as api:
        arch = Archive(root, files, api, model_path, tmp_path)
        for path, name in [(A, "a"), (B, "b"), (C, "c")]:
            arch.publish(path, sources[name])
        yield arch


def _summary(out: Path) -> tuple[dict[str, dict], dict]:
    with open(out / "celltype-summary.tsv", newline="") as fh:
        rows = {r["path"]: r for r in csv.DictReader(fh, delimiter="\t")}
    return rows, json.loads((out / "celltype-summary.json").read_text())


def _derived_files(out: Path) -> set[str]:
    return {
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and p.suffix.lower() == ".nwb" and STATE_DIRNAME not in p.relative_to(out).parts
    }


def _assert_every_file_accounted_for(out: Path) -> None:
    """Each derived file in the folder has a ``done`` row naming it, or a ``failed`` row whose
    ``earlier_output`` keeps it, and each such row's file is there (the TSV and the JSON agree)."""
    rows, js = _summary(out)
    files = _derived_files(out)
    done = {r["output"] for r in rows.values() if r["status"] == "done"}
    done |= {a["earlier_output"]["output"] for a in js["assets"] if a.get("earlier_output")}
    assert files == done, (
        f"derived files without a done row: {files - done}; done rows without: {done - files}"
    )
    assert {a["path"]: a["status"] for a in js["assets"]} == {p: r["status"] for p, r in rows.items()}
    assert all(not r["output"] for r in rows.values() if r["status"] != "done")


@pytest.mark.network
@pytest.mark.slow
def test_superseded_derived_files_are_removed(archive, sources, tmp_path):
    """An asset done by an earlier run and then recorded skipped (its new version has no units) or
    failed (its new version is corrupt) keeps no derived file; nor does one that a former version
    of the tool left beside a skipped record."""
    out = tmp_path / "out"
    res = archive.run(out)
    assert res.counts["done"] == 3
    derived = {p: derived_asset_path(p) for p in (A, B, C)}
    assert all((out / d).is_file() for d in derived.values())

    archive.publish(A, sources["no_units"])
    archive.publish(B, sources["corrupt"])
    res = archive.run(out)
    recs = {a["path"]: a for a in res.assets}
    assert (recs[A]["status"], recs[B]["status"], recs[C]["status"]) == ("skipped", "failed", "done")
    assert not (out / derived[A]).exists() and not (out / derived[B]).exists()
    assert not (out / "sub-A").exists(), "the folder the removal emptied stays"
    assert recs[A]["removed_outputs"] == [derived[A]] and recs[B]["removed_outputs"] == [derived[B]]
    assert RunState(out).read_record(A)["removed_outputs"] == [derived[A]]  # the record says so too
    rows, _ = _summary(out)
    assert derived[A] in rows[A]["note"] and "removed" in rows[A]["note"] and derived[B] in rows[B]["note"]
    assert not rows[C]["note"]
    _assert_every_file_accounted_for(out)

    # a folder written by a former version: a skipped record with a derived file beside it
    (out / derived[A]).parent.mkdir()
    shutil.copyfile(out / derived[C], out / derived[A])
    res = archive.run(out)
    recs = {a["path"]: a for a in res.assets}
    assert recs[A]["status"] == "skipped" and not recs[A]["this_run"]
    assert not (out / derived[A]).exists()
    assert derived[A] in _summary(out)[0][A]["note"]
    _assert_every_file_accounted_for(out)


@pytest.mark.network
@pytest.mark.slow
def test_include_keeps_rows_of_earlier_selections(archive, sources, tmp_path):
    """A rerun with another --include keeps the summary rows (and files) of the assets annotated
    before, marked as not selected; a later full run reuses them and redoes only what changed."""
    out = tmp_path / "out"
    archive.run(out, include="sub-A/*")
    first_run = RunState(out).read_record(A)["run_id"]
    res = archive.run(out, include="sub-B/*")
    assert res.counts["listed"] == 1 and res.counts["annotated"] == 1
    rows, js = _summary(out)
    assert set(rows) == {A, B}, "the rows of the earlier --include were dropped"
    assert [r["path"] for r in res.kept_assets] == [A]
    assert (rows[A]["status"], rows[A]["selected"], rows[A]["this_run"]) == ("done", "False", "False")
    assert rows[A]["run_id"] == first_run and "outside this run's selection" in rows[A]["note"]
    assert "changed" not in rows[A]["note"] and "missing" not in rows[A]["note"]
    assert (rows[B]["selected"], rows[B]["this_run"]) == ("True", "True") and not rows[B]["note"]
    assert js["include"] == "sub-B/*" and js["kept"] == 1 and js["counts"] == res.counts
    _assert_every_file_accounted_for(out)

    archive.publish(A, sources["a2"])  # A changes in the draft: its kept row says it is out of date
    res = archive.run(out, include="sub-B/*")
    assert res.counts["reused"] == 1 and res.counts["annotated"] == 0
    assert "the asset has changed since" in _summary(out)[0][A]["note"]

    res = archive.run(out)  # everything: A redone (changed), B reused, C new
    by = {a["path"]: a for a in res.assets}
    assert {p: (a["status"], a["this_run"]) for p, a in by.items()} == {
        A: ("done", True),
        B: ("done", False),
        C: ("done", True),
    }
    assert not res.kept_assets and _summary(out)[1]["kept"] == 0
    assert all(r["selected"] == "True" for r in _summary(out)[0].values())
    _assert_every_file_accounted_for(out)


@pytest.mark.network
@pytest.mark.slow
def test_derived_names_in_a_run(archive, sources, tmp_path):
    """An asset named with a desc entity is annotated into a name with one desc entity; a folder
    written under the former naming (two desc entities) is redone under the new one, the old file
    removed."""
    out = tmp_path / "out"
    res = archive.run(out, include="sub-C/*")
    (rec,) = res.assets
    assert rec["output"] == "sub-C/sub-C_ses-1_desc-rawCelltype_ecephys.nwb"
    assert (out / rec["output"]).is_file()

    # as the former naming left it: the file and its record under the two-desc name
    old = "sub-C/sub-C_ses-1_desc-raw_desc-celltype_ecephys.nwb"
    (out / rec["output"]).rename(out / old)
    state = RunState(out)
    state.write_record({**state.read_record(C), "output": old})
    res = archive.run(out, include="sub-C/*")
    (rec,) = res.assets
    assert rec["this_run"] and rec["output"] == derived_asset_path(C) and rec["removed_outputs"] == [old]
    assert not (out / old).exists() and (out / rec["output"]).is_file()
    _assert_every_file_accounted_for(out)


@pytest.mark.network
def test_asset_in_the_state_folder_is_refused_before_any_work(archive, sources, tmp_path):
    archive.publish(f"{STATE_DIRNAME}/tmp/x.nwb", sources["a"])
    out = tmp_path / "out"
    with pytest.raises(InvalidValueError, match="cannot be mirrored"):
        archive.run(out)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# a failed rerun keeps the earlier good derived file
# ---------------------------------------------------------------------------------------------


class _ServerDown:
    """Every file request answered 503 (the API still lists the assets): each asset read fails
    after the reading layer's retries and the run's (none here), as a network outage would."""

    def __init__(self, archive: Archive):
        self.faults = archive.files.faults

    def __enter__(self):
        self.faults.status = 503

    def __exit__(self, *exc):
        self.faults.status = None


def _kept_note(path: str, rec: dict, which: str = "this run") -> str:
    return (
        f"the earlier output {path} (model {rec['model_sha256'][:12]}, run {rec['run_id']}) is kept: "
        f"not replaced, since {which} failed"
    )


@pytest.mark.network
@pytest.mark.slow
def test_failed_rerun_keeps_the_earlier_output(archive, tmp_path):
    """A rerun with another threshold whose reads all fail keeps the asset's earlier derived file
    (its failed record and row say so, the sweep keeps it, the next run does not take it for done),
    twice in a row and while a run of another selection keeps the row; a file under a former
    derived name still goes; a later successful run replaces the kept file."""
    out = tmp_path / "out"
    archive.run(out, include="sub-[AC]/*")
    state = RunState(out)
    first = state.read_record(A)
    dA, dC = derived_asset_path(A), derived_asset_path(C)
    mtime = (out / dA).stat().st_mtime_ns
    old_c = "sub-C/sub-C_ses-1_desc-raw_desc-celltype_ecephys.nwb"  # C as the former naming left it
    (out / dC).rename(out / old_c)
    state.write_record({**state.read_record(C), "output": old_c})
    want = {k: first[k] for k in ("output", "output_size", "asset_id", "model_sha256", "run_id", "finished")}

    for n_failed in (1, 2):
        with _ServerDown(archive):
            res = archive.run(out, include="sub-[AC]/*", threshold=3.0)
        recs = {a["path"]: a for a in res.assets}
        assert recs[A]["status"] == "failed" and recs[A]["output"] is None, recs[A]
        assert recs[A]["earlier_output"] == want, f"failed rerun {n_failed}"
        assert recs[A]["removed_outputs"] == []
        assert (out / dA).stat().st_mtime_ns == mtime, "the earlier file was touched"
        on_disk = state.read_record(A)
        assert on_disk["status"] == "failed" and on_disk["earlier_output"] == want
        for threshold in (2.0, 3.0):  # neither the earlier settings nor these: the asset is redone
            kw = {"asset_id": first["asset_id"], "version": first["version"], "threshold": threshold}
            assert not is_done(on_disk, out, **kw, model_sha256=first["model_sha256"], output=dA)
        rows, _ = _summary(out)
        assert rows[A]["status"] == "failed" and rows[A]["output"] == ""
        assert rows[A]["note"] == _kept_note(dA, first)
        # C's earlier file was under a former name: removed, not kept
        assert recs[C]["status"] == "failed" and "earlier_output" not in recs[C]
        assert not (out / old_c).exists() and not (out / dC).exists()
        _assert_every_file_accounted_for(out)

    # another selection keeps A's failed row, and the sweep its earlier file
    res = archive.run(out, include="sub-B/*")
    assert {r["path"] for r in res.kept_assets} == {A, C}
    rows, _ = _summary(out)
    assert rows[A]["selected"] == "False" and (out / dA).stat().st_mtime_ns == mtime
    assert _kept_note(dA, first, "the run that recorded it") in rows[A]["note"]
    _assert_every_file_accounted_for(out)

    res = archive.run(out, include="sub-A/*", threshold=3.0)  # the server is back: replaced
    (rec,) = res.assets
    assert rec["status"] == "done" and rec["this_run"] and rec["output"] == dA
    assert "earlier_output" not in rec and rec["removed_outputs"] == []
    assert rec["run_id"] != first["run_id"] and (out / dA).stat().st_size == rec["output_size"]
    assert (out / dA).stat().st_mtime_ns != mtime
    assert not _summary(out)[0][A]["note"]
    _assert_every_file_accounted_for(out)


@pytest.mark.network
@pytest.mark.slow
def test_kept_output_goes_when_the_asset_is_skipped_or_changed(archive, sources, tmp_path):
    """A file kept by a failure is stale once the asset has no units (skipped: removed) and is
    never kept for a changed asset (a new asset id that fails)."""
    out = tmp_path / "out"
    archive.run(out, include="sub-[AB]/*")
    dA, dB = derived_asset_path(A), derived_asset_path(B)
    with _ServerDown(archive):
        res = archive.run(out, include="sub-[AB]/*", threshold=3.0)
    assert all(a["status"] == "failed" and a["earlier_output"] for a in res.assets)
    assert (out / dA).is_file() and (out / dB).is_file()

    archive.publish(A, sources["no_units"])
    archive.publish(B, sources["a2"])
    with _ServerDown(archive):  # B changed and fails: its earlier file annotates content gone
        res = archive.run(out, include="sub-B/*", threshold=3.0)
    (rec,) = res.assets
    assert rec["status"] == "failed" and "earlier_output" not in rec and rec["removed_outputs"] == [dB]
    assert not (out / dB).exists()
    res = archive.run(out, include="sub-A/*", threshold=3.0)
    (rec,) = res.assets
    assert rec["status"] == "skipped" and rec["removed_outputs"] == [dA] and not (out / dA).exists()
    _assert_every_file_accounted_for(out)


@pytest.mark.network
@pytest.mark.slow
def test_kill_while_recording_a_failure_leaves_the_file_accounted_for(archive, tmp_path, monkeypatch):
    """The run dies as the failed record is written: the earlier record (still on disk) names the
    kept file, and the next run keeps it the same way."""
    out = tmp_path / "out"
    archive.run(out, include="sub-A/*")
    first = RunState(out).read_record(A)

    def killed(self, record):
        raise KeyboardInterrupt  # stands in for a kill between the removals and the record

    with _ServerDown(archive), monkeypatch.context() as m:
        m.setattr(RunState, "write_record", killed)  # the driver's copy: it writes failed records
        with pytest.raises(KeyboardInterrupt):
            archive.run(out, include="sub-A/*", threshold=3.0)
    assert RunState(out).read_record(A) == first and (out / first["output"]).is_file()
    assert _derived_files(out) == {first["output"]}
    with _ServerDown(archive):
        (rec,) = archive.run(out, include="sub-A/*", threshold=3.0).assets
    assert rec["status"] == "failed" and rec["earlier_output"]["run_id"] == first["run_id"]
    _assert_every_file_accounted_for(out)


def test_earlier_output_and_sweep(tmp_path):
    """Which earlier file a failure keeps, and the sweep of a failed row whose kept file changed."""
    from nwb_celltype.batch._outputs import earlier_output, sweep_outputs

    out_a = derived_asset_path(A)
    (tmp_path / out_a).parent.mkdir()
    (tmp_path / out_a).write_bytes(b"x" * 10)
    done = {
        "path": A,
        "status": "done",
        "asset_id": "id1",
        "model_sha256": "m" * 64,
        "run_id": "r1",
        "finished": 1.0,
        "output": out_a,
        "output_size": 10,
    }
    kept = earlier_output(done, out_a, "id1", tmp_path)
    assert kept == {
        k: done[k] for k in ("output", "output_size", "asset_id", "model_sha256", "run_id", "finished")
    }
    failed = {"path": A, "status": "failed", "asset_id": "id1", "output": None, "earlier_output": kept}
    assert earlier_output(failed, out_a, "id1", tmp_path) == kept  # carried forward
    for rec, output, asset_id in [
        (done, "sub-A/other_desc-celltype.nwb", "id1"),  # another (former) derived name
        (done, out_a, "id2"),  # the asset changed
        ({**done, "output_size": 11}, out_a, "id1"),  # the file changed
        ({**done, "status": "skipped"}, out_a, "id1"),
        ({**failed, "earlier_output": "x"}, out_a, "id1"),  # a hand-edited record
        (None, out_a, "id1"),
    ]:
        assert earlier_output(rec, output, asset_id, tmp_path) is None, rec

    from nwb_celltype.batch.state import RunState

    state = RunState(tmp_path)
    state.prepare()
    try:
        state.write_record(failed)
        rows = [{**failed, "this_run": True}]
        sweep_outputs(tmp_path, rows, state)
        assert (tmp_path / out_a).is_file() and rows[0]["earlier_output"] == kept
        (tmp_path / out_a).write_bytes(b"y" * 11)  # no longer the kept file
        sweep_outputs(tmp_path, rows, state)
        assert not (tmp_path / out_a).exists() and "earlier_output" not in rows[0]
        assert rows[0]["removed_outputs"] == [out_a]
        # the record on disk agrees with the row (it kept naming the file until the next run)
        assert "earlier_output" not in state.read_record(A)
    finally:
        state.release()


@pytest.mark.network
@pytest.mark.slow
def test_summary_while_running_and_after_an_interruption(archive, tmp_path, monkeypatch):
    """The summary is on disk while a run goes (every selected asset ``pending`` until its record
    comes) and after Ctrl-C (the finished assets' rows, ``pending`` rows for the rest, state
    ``stopped``); it was the previous run's until a run ended. The next run completes it."""
    import nwb_celltype.batch.run as run_mod

    out = tmp_path / "out"
    seen = []

    def interrupted(rec):  # the driver has just recorded the first finished asset
        seen.append(_summary(out))
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(run_mod, "_log_removed", interrupted)
        with pytest.raises(KeyboardInterrupt):
            archive.run(out)
    (running,) = seen
    assert running[1]["state"] == "running"
    assert {p: r["status"] for p, r in running[0].items()} == {A: "pending", B: "pending", C: "pending"}
    rows, js = _summary(out)
    assert js["state"] == "stopped" and rows[A]["status"] == "done"
    pending = [p for p in (B, C) if rows[p]["status"] == "pending"]
    assert pending, rows  # one worker, two tasks in flight at most: C was not finished
    for p in pending:
        assert "was interrupted" in rows[p]["note"] and not rows[p]["output"]
    assert js["counts"]["pending"] == len(pending) and js["counts"]["done"] == 3 - len(pending)
    _assert_every_file_accounted_for(out)  # a file a worker finished unheard-of has its done row

    res = archive.run(out)
    rows, js = _summary(out)
    assert js["state"] == "complete" and res.counts["done"] == 3 and "pending" not in res.counts
    assert {r["status"] for r in rows.values()} == {"done"}
    _assert_every_file_accounted_for(out)


def test_assets_differing_only_in_case(tmp_path, monkeypatch):
    """Derived paths differing only in case: refused where the output folder's file system ignores
    case (they would be one file there), kept apart where it does not (this machine's)."""
    from nwb_celltype.batch import state as state_mod

    derived = derived_paths([A, A.replace("sub-A/sub-A", "sub-a/sub-a"), B])
    assert not state_mod.ignores_case(tmp_path)  # Linux: case-sensitive
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing behind
    state_mod.check_case_collisions(derived, tmp_path)  # nothing refused here
    monkeypatch.setattr(state_mod, "ignores_case", lambda folder: True)
    with pytest.raises(InvalidValueError, match="differ only in case"):
        state_mod.check_case_collisions(derived, tmp_path)
    state_mod.check_case_collisions(derived_paths([A, B]), tmp_path)  # no case-only pair: fine
    # a run of sub-a/* after one of sub-A/* into the same folder: the earlier record's file counts
    lower = A.replace("sub-A/sub-A", "sub-a/sub-a")
    with pytest.raises(InvalidValueError, match="differ only in case"):
        state_mod.check_case_collisions(derived_paths([lower]), tmp_path, {A: derived_asset_path(A)})
    state_mod.check_case_collisions(derived_paths([A]), tmp_path, {A: derived_asset_path(A)})  # itself


@pytest.mark.parametrize(
    ("spec", "target"),
    [
        ("000409", ("000409", None, None)),
        ("DANDI:000409/draft", ("000409", "draft", None)),
        ("https://dandiarchive.org/dandiset/000409/draft", ("000409", "draft", None)),
        ("https://dandiarchive.org/dandiset/000409/0.230101.1234", ("000409", "0.230101.1234", None)),
        ("dandi://dandi/000409@draft", ("000409", "draft", None)),
        ("000409@draft/sub-2/", ("000409", "draft", "sub-2/")),
        ("000409/sub-2/", ("000409", None, "sub-2/")),  # a folder, not version "sub-2"
        ("000409/sub-2", ("000409", None, "sub-2")),
        ("000409@latest", ("000409", None, None)),  # what the archive and our messages write
        ("DANDI:000409/LATEST", ("000409", None, None)),
        ("https://dandiarchive.org/dandiset/000409/latest", ("000409", None, None)),
        ("DANDI:000409/draft/sub-1/sub-1_ecephys.nwb", ("000409", "draft", "sub-1/sub-1_ecephys.nwb")),
    ],
)
def test_dandiset_references_in_every_common_form(spec, target):
    """annotate-dandiset read only DANDISET[@VERSION]; `assets` and `annotate` read the archive's
    URLs and dandi:// too. One reading now serves all of them."""
    from nwb_celltype.batch._selection import parse_dandiset_spec, parse_dandiset_target

    assert parse_dandiset_target(spec) == target
    assert parse_dandiset_spec(spec) == target[:2]


def test_latest_is_the_most_recent_version_everywhere():
    """`@latest` was read as a version named "latest" (not found) by `assets` and `annotate`."""
    from nwb_celltype.io import parse_source
    from nwb_celltype.io._parse import normalise_version

    assert parse_source("DANDI:000409@latest/sub-1/x.nwb").version is None
    assert parse_source("dandi://dandi/000409@Latest").version is None
    assert parse_source("000409@DRAFT/sub-1/x.nwb").version == "draft"
    assert [normalise_version(v) for v in (None, "", "latest", "draft", "0.230101.1234")] == [
        None,
        None,
        None,
        "draft",
        "0.230101.1234",
    ]


def test_selection_of_assets():
    from nwb_celltype.batch._selection import _selection

    assert _selection(None, None) is None
    assert _selection(None, ["sub-1/*", "sub-2/*"]) == ("sub-1/*", "sub-2/*")
    assert _selection("sub-2/", None) == ("sub-2/*",)
    assert _selection("sub-2", ()) == ("sub-2/*",)  # a folder named without its slash
    assert _selection("sub-1/a[1].nwb", None) == ("sub-1/a[[]1].nwb",)  # one file, matched literally
    with pytest.raises(InvalidValueError, match="select the assets one way"):
        _selection("sub-2/", "sub-1/*")
    with pytest.raises(InvalidValueError, match="cannot read the dandiset"):
        from nwb_celltype.batch._selection import parse_dandiset_target

        parse_dandiset_target("https://example.org/x.nwb")


@pytest.mark.network
@pytest.mark.slow
def test_a_folder_of_the_dandiset_and_several_globs_select_assets(archive, tmp_path):
    """A folder named in the reference selects its assets; --include given twice kept only the last
    glob (click's single option); now any of them matches."""
    res = archive.run(tmp_path / "o1", dandiset=f"{DANDISET}@draft/sub-B/")
    assert [a["path"] for a in res.assets] == [B]
    js = json.loads((tmp_path / "o1" / "celltype-summary.json").read_text())
    assert js["include"] == "sub-B/*"
    res = archive.run(tmp_path / "o2", include=["sub-A/*", "sub-C/*"])
    assert [a["path"] for a in res.assets] == [A, C]
    # the CLI: --include twice, the version as an option
    from click.testing import CliRunner

    from nwb_celltype.cli import main

    args = ["annotate-dandiset", DANDISET, "--version", "draft", "--out", str(tmp_path / "o3")]
    args += ["--include", "sub-A/*", "--include", "sub-C/*", "--model", str(archive.model), "--workers", "1"]
    args += ["--dandi-api-url", archive.api.api_url, "--json", "--cache-dir", str(tmp_path / "c3")]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    assert [a["path"] for a in json.loads(out.output)["assets"]] == [A, C]


@pytest.mark.network
@pytest.mark.slow
def test_an_output_folder_of_another_dandiset_is_refused(archive, sources, tmp_path):
    """Derived paths such as sub-A/... recur across dandisets: a second dandiset annotated into the
    same --out replaced the first one's files at the same paths without a word."""
    out = tmp_path / "out"
    archive.run(out, include="sub-A/*")
    before = {p: (out / p).read_bytes() for p in _derived_files(out)}
    archive.api.add_asset("000078", A, archive.root / "v" / "0" / A)  # another dandiset, same path
    with pytest.raises(InvalidValueError, match="holds the derived dandiset of 000077"):
        annotate_dandiset(
            "000078@draft", out, model=archive.model, workers=1, dandi_api_url=archive.api.api_url
        )
    assert {p: (out / p).read_bytes() for p in _derived_files(out)} == before


@pytest.mark.network
@pytest.mark.slow
def test_upper_case_nwb_assets_and_no_cache(archive, sources, tmp_path, monkeypatch):
    """`.NWB` assets are NWB files for annotate-dandiset as for `assets` (the default glob was a
    case-sensitive '*.nwb'); --no-cache (cache_dir=False) reached the workers as a folder 'False'."""
    archive.publish("sub-D/rec.NWB", sources["b"])
    monkeypatch.chdir(tmp_path)
    res = annotate_dandiset(
        f"{DANDISET}@draft",
        tmp_path / "out",
        model=archive.model,
        workers=1,
        dandi_api_url=archive.api.api_url,
        cache_dir=False,
        include=["sub-D/*", "sub-A/*"],
    )
    assert [a["path"] for a in res.assets] == [A, "sub-D/rec.NWB"] and res.counts["done"] == 2
    assert not (tmp_path / "False").exists()
    res = archive.run(tmp_path / "out2")
    assert "sub-D/rec.NWB" in [a["path"] for a in res.assets]
