"""Fault injection (issue 18): full disks, concurrent runs, signals, stale temporaries, hard links and
read-only inputs, malformed Units tables, implausible units, FIFOs, dripping servers, bundle pins.
Each test reproduces one finding of the issue and fails without its fix."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from nwb_celltype import _atomic
from nwb_celltype.errors import (
    AnnotationExistsError,
    InvalidUnitsError,
    ModelError,
    NotNWBError,
    OutputError,
    RemoteError,
)
from nwb_celltype.library._mock import mock_library_file
from nwb_celltype.testing.faults import edit_units, replace_dataset

LABELS = "unit_id,label\n0,PkC_ss\n1,MLI\n"
LABEL_KW = {"evidence_type": "optotagging", "labelled_by": "tester"}


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def mock_nwb(tmp_path_factory) -> Path:
    return mock_library_file(tmp_path_factory.mktemp("mock") / "m.nwb", n_units=6)


@pytest.fixture
def nwb(mock_nwb, tmp_path) -> Path:
    dst = tmp_path / "in.nwb"
    dst.write_bytes(mock_nwb.read_bytes())
    return dst


@pytest.fixture
def labels_csv(tmp_path) -> Path:
    p = tmp_path / "labels.csv"
    p.write_text(LABELS)
    return p


# -- the atomic-write mechanism ----------------------------------------------------------------


def test_atomic_write_new_file_gets_umask_mode_and_leaves_nothing(tmp_path):
    old = os.umask(0o027)
    try:
        with _atomic.atomic_write(tmp_path / "a.nwb", replace=False) as tmp:
            assert tmp.name.startswith(f".a.nwb.pid{os.getpid()}.") and tmp.name.endswith(".tmp.nwb")
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.nwb").stat().st_mode) == 0o640
    assert _leftovers(tmp_path) == []


def test_atomic_write_keeps_mode_in_place_and_failure_changes_nothing(tmp_path):
    f = tmp_path / "a.nwb"
    f.write_bytes(b"old")
    f.chmod(0o604)
    with _atomic.atomic_write(f, replace=True, keep_mode_of=f) as tmp:
        tmp.write_bytes(b"new")
    assert f.read_bytes() == b"new" and stat.S_IMODE(f.stat().st_mode) == 0o604
    with pytest.raises(ZeroDivisionError), _atomic.atomic_write(f, replace=True) as tmp:
        tmp.write_bytes(b"half")
        1 / 0  # noqa: B018
    assert f.read_bytes() == b"new" and _leftovers(tmp_path) == []


def test_exclusive_creation_never_replaces_another_runs_output(tmp_path):
    f = tmp_path / "out.nwb"
    with pytest.raises(AnnotationExistsError, match="another run"):
        with _atomic.atomic_write(f, replace=False, lock=False) as tmp:
            tmp.write_bytes(b"mine")
            f.write_bytes(b"theirs")  # another run finished first
    assert f.read_bytes() == b"theirs" and _leftovers(tmp_path) == []


def test_stale_temps_of_dead_runs_are_removed_live_ones_kept(tmp_path):
    f = tmp_path / "a.nwb"
    dead = tmp_path / f".a.nwb.pid{_dead_pid()}.0123abcd.tmp.nwb"
    spill = tmp_path / f".a.nwb.pid{_dead_pid()}.89abcdef.spikes"
    live = tmp_path / f".a.nwb.pid{os.getpid()}.0123abcd.tmp.nwb"
    other = tmp_path / f".b.nwb.pid{_dead_pid()}.0123abcd.tmp.nwb"
    for p in (dead, spill, live, other):
        p.write_bytes(b"x")
    with _atomic.atomic_write(f, replace=True) as tmp:
        tmp.write_bytes(b"y")
    assert not dead.exists() and not spill.exists()
    assert live.exists() and other.exists()  # a live run's, and another target's


def test_lock_serialises_and_times_out_with_our_error(tmp_path, monkeypatch):
    f = tmp_path / "a.nwb"
    with _atomic.target_lock(f):
        t0 = time.monotonic()
        with pytest.raises(OutputError, match="another nwb-celltype run is writing"):
            with _atomic.target_lock(f, timeout_s=0.3):
                pass
        assert 0.3 <= time.monotonic() - t0 < 5
        order = []

        def second():
            with _atomic.target_lock(f, timeout_s=10):
                order.append("second")

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first done")
    t.join(10)
    assert order == ["first done", "second"]
    assert _leftovers(tmp_path) == []  # the lock file goes with the last holder


@pytest.mark.parametrize(
    "exc",
    [
        OSError(28, "No space left on device"),
        RuntimeError(
            "Can't write data (file write failed: time = x, errno = 28, error message = 'No space')"
        ),
        OSError(122, "Disk quota exceeded"),
    ],
)
def test_disk_full_errors_become_output_error(tmp_path, exc):
    f = tmp_path / "a.nwb"
    f.write_bytes(b"old")
    with pytest.raises(OutputError, match="no space left"), _atomic.atomic_write(f, replace=True) as tmp:
        tmp.write_bytes(b"part")
        raise exc
    assert f.read_bytes() == b"old" and _leftovers(tmp_path) == []


# -- disk full on a real (tmpfs) file system, else injected --------------------------------------


@contextlib.contextmanager
def _small_fs(tmp_path: Path, kib: int):
    mnt = tmp_path / f"fs{kib}"
    mnt.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(mnt)], capture_output=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        done = None
    if done is None or done.returncode != 0:
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=10)


@pytest.mark.parametrize("extra_kib", [10, 300], ids=["copy-fails", "reservation-fails"])
def test_disk_full_label_in_place_input_intact(mock_nwb, labels_csv, tmp_path, monkeypatch, extra_kib):
    from nwb_celltype.library import label_file

    size_kib = mock_nwb.stat().st_size // 1024
    with _small_fs(tmp_path, size_kib + extra_kib) as mnt:
        if mnt is None:  # no mount rights: inject ENOSPC instead
            mnt = tmp_path

            def full(*a, **k):
                raise OSError(28, "No space left on device")

            monkeypatch.setattr("os.posix_fallocate", full)
        src = mnt / "in.nwb"
        src.write_bytes(mock_nwb.read_bytes())
        before = _sha(src)
        with pytest.raises(OutputError, match="no space left"):
            label_file(src, labels_csv, in_place=True, **LABEL_KW)
        assert _sha(src) == before
        assert _leftovers(mnt) == []


@pytest.mark.parametrize("mode", ["in_place", "copy"])
def test_hdf5_disk_full_during_append_is_output_error(nwb, labels_csv, tmp_path, monkeypatch, mode):
    """Finding 3: h5py raises RuntimeError (errno 28), which was not our error (injected here: the
    space reservation keeps a real full disk from reaching HDF5)."""
    from nwb_celltype.library import label_file

    def full(*a, **k):
        raise RuntimeError("Can't write data (file write failed: errno = 28, error message = 'No space')")

    monkeypatch.setattr("pynwb.NWBHDF5IO.write", full)
    before = _sha(nwb)
    out = None if mode == "in_place" else tmp_path / "out.nwb"
    with pytest.raises(OutputError, match="no space left"):
        label_file(nwb, labels_csv, in_place=out is None, out=out, **LABEL_KW)
    assert _sha(nwb) == before and _leftovers(tmp_path) == []
    assert out is None or not out.exists()


def test_disk_full_annotate_copy_is_our_error_not_a_crash(mock_nwb, tmp_path, demo_bundle):
    """Finding 3: a segmentation fault in copy mode (HDF5 objects freed after a failed write)."""
    from nwb_celltype.annotate import annotate

    size_kib = mock_nwb.stat().st_size // 1024
    with _small_fs(tmp_path, size_kib + 20) as mnt:
        if mnt is None:
            pytest.skip("no mount rights for a tmpfs; the injected cases cover the error mapping")
        with pytest.raises(OutputError, match="no space left"):
            annotate(mock_nwb, model=demo_bundle, out=mnt / "o.nwb")
        assert _leftovers(mnt) == [] and not (mnt / "o.nwb").exists()


def _demo() -> Path:
    from nwb_celltype.model.shipped import demo_bundle_path

    return demo_bundle_path()


# -- read-only inputs, hard links, modes ---------------------------------------------------------


def test_read_only_input_refused_unless_asked(nwb, labels_csv):
    from nwb_celltype.library import label_file

    nwb.chmod(0o444)
    before = _sha(nwb)
    with pytest.raises(OutputError, match="read-only"):
        label_file(nwb, labels_csv, in_place=True, **LABEL_KW)
    assert _sha(nwb) == before
    label_file(nwb, labels_csv, in_place=True, allow_read_only=True, **LABEL_KW)
    assert _sha(nwb) != before and stat.S_IMODE(nwb.stat().st_mode) == 0o444


def test_hard_linked_input_refused_unless_asked(nwb, labels_csv, tmp_path):
    from nwb_celltype.library import label_file

    link = tmp_path / "link.nwb"
    os.link(nwb, link)
    with pytest.raises(OutputError, match="hard links"):
        label_file(nwb, labels_csv, in_place=True, **LABEL_KW)
    before = _sha(link)
    label_file(nwb, labels_csv, in_place=True, allow_hard_links=True, **LABEL_KW)
    assert _sha(link) == before and _sha(nwb) != before  # documented: the other link keeps the old


def test_label_in_place_keeps_mode_and_never_writes_into_the_source(nwb, labels_csv, monkeypatch):
    """Finding 1: in place went through HDF5 mode "a" on the source itself."""
    from nwb_celltype.library import label_file, labels

    nwb.chmod(0o640)
    ino = nwb.stat().st_ino
    opened = []
    real = labels._open_rw
    monkeypatch.setattr(labels, "_open_rw", lambda p, m: opened.append(Path(p)) or real(p, m))
    label_file(nwb, labels_csv, in_place=True, **LABEL_KW)
    assert opened and all(p != nwb for p in opened)
    assert nwb.stat().st_ino != ino and stat.S_IMODE(nwb.stat().st_mode) == 0o640


# -- concurrency ---------------------------------------------------------------------------------


def test_concurrent_in_place_labels_lose_nothing(nwb, labels_csv):
    from nwb_celltype.library import label_file
    from nwb_celltype.library.labels import free_table_name

    errors = []

    def run(k):  # three labellers (the same labels by the same labeller twice are refused)
        try:
            label_file(nwb, labels_csv, in_place=True, **{**LABEL_KW, "labelled_by": f"tester{k}"})
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    # three tables: ground_truth, _2, _3 -> the next free one is _4
    assert free_table_name(nwb) == "ground_truth_4"


def test_concurrent_copies_to_one_out_one_wins_other_fails_cleanly(nwb, labels_csv, tmp_path):
    from nwb_celltype.library import label_file

    out = tmp_path / "out.nwb"
    results = []

    def run():
        try:
            results.append(label_file(nwb, labels_csv, out=out, **LABEL_KW))
        except OutputError as exc:
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ok = [r for r in results if isinstance(r, Path)]
    failed = [r for r in results if isinstance(r, OutputError)]
    assert len(ok) == 1 and len(failed) == 1, results
    assert "exists" in str(failed[0])
    assert _leftovers(tmp_path) == []


def test_concurrent_in_place_annotations_by_two_models_both_kept(nwb, demo_bundle, tmp_path):
    """Finding 2: two in-place runs with two models both exited 0 and one table was gone."""
    from nwb_celltype.annotate import annotate, table_name_for
    from nwb_celltype.testing.bundles import renamed_bundle

    other = renamed_bundle(demo_bundle, "second-model", tmp_path / "second")
    errors = []

    def run(b):
        try:
            annotate(nwb, model=b, in_place=True)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(b,)) for b in (demo_bundle, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    with h5py.File(nwb, "r") as f:
        names = set(f["processing/cell_types"].keys())
    assert {table_name_for(demo_bundle), table_name_for(other)} <= names


# -- signals -------------------------------------------------------------------------------------

_SIGNAL_CHILD = """
import sys, time
from pathlib import Path
from nwb_celltype._atomic import atomic_write
with atomic_write(Path(sys.argv[1]), replace=True) as tmp:
    tmp.write_bytes(b"partial")
    print("READY", flush=True)
    time.sleep(60)
"""


def _signal_children(script: str, targets: list, marker: str) -> None:
    """One child per cleanup signal, started together (each imports the package), running
    ``script`` on its target; once it is READY (its temporary ``marker`` beside the target), it gets
    its signal and must exit with a failure."""
    sigs = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(t)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for t in targets
    ]
    for sig, t, proc in zip(sigs, targets, procs, strict=True):
        with proc:
            assert proc.stdout.readline().strip() == "READY", proc.stderr.read()
            assert any(n.endswith(marker) for n in _leftovers(t.parent))
            proc.send_signal(sig)
            proc.wait(20)
        assert proc.returncode != 0, sig


def test_signals_remove_temp_and_keep_target(tmp_path):
    """Finding 6: SIGTERM had no handler and left the full-size temporary file."""
    targets = []
    for name in ("SIGTERM", "SIGINT", "SIGHUP"):
        (tmp_path / name).mkdir()
        f = tmp_path / name / "a.nwb"
        f.write_bytes(b"original")
        targets.append(f)
    _signal_children(_SIGNAL_CHILD, targets, ".tmp.nwb")
    for f in targets:
        assert f.read_bytes() == b"original"
        assert _leftovers(f.parent) == [], f


# -- malformed units and implausible trains ------------------------------------------------------


@pytest.mark.parametrize(
    "edit, match",
    [
        (replace_dataset("spike_times_index", lambda a: a[[1, 0, 2, 3, 4, 5]]), "decreases at row 1"),
        (replace_dataset("spike_times_index", lambda a: a + 1000), "past the"),
        (replace_dataset("spike_times_index", lambda a: a - a[0] - 1), "starts at"),
    ],
    ids=["non-monotonic", "past-the-end", "negative"],
)
def test_structurally_malformed_index_is_a_clear_error(nwb, edit, match):
    from nwb_celltype.io import open_source, read_units

    edit_units(nwb, edit)
    with open_source(nwb) as src, pytest.raises(InvalidUnitsError, match=match):
        list(read_units(src, require_waveforms=False))


from nwb_celltype.features.discharge import compute_acg_counts  # noqa: E402


def _batch(trains: list[np.ndarray]):
    from nwb_celltype.units import UnitsBatch

    counts = [len(t) for t in trains]
    return UnitsBatch(
        unit_ids=np.arange(len(trains)),
        unit_indices=np.arange(len(trains)),
        spike_times_s=np.concatenate(trains),
        spike_offsets=np.r_[0, np.cumsum(counts)].astype(np.int64),
        waveforms=None,
        waveform_rate_hz=None,
        layers=np.full(len(trains), "unknown", dtype=object),
    )


_GOOD = np.sort(np.random.default_rng(0).uniform(0, 100, 2000))
_BAD_TRAINS = {
    "x1e300": (_GOOD * 1e300, "outside any plausible session"),
    "nan": (np.r_[_GOOD[:-1], np.nan], "non-finite"),
    "50kHz": (np.arange(200_000) / 50_000.0, "mean rate"),
}


@pytest.mark.parametrize("family", ["c4-3d", "acg-isi-wave"])
@pytest.mark.parametrize("case", sorted(_BAD_TRAINS))
def test_implausible_units_not_classifiable_before_pair_counts(family, case, monkeypatch):
    from nwb_celltype.features import _guards

    train, match = _BAD_TRAINS[case]
    batch = _batch([_GOOD, train])
    if family == "c4-3d":
        from nwb_celltype.features.extract import extract_features as extract
    else:
        from nwb_celltype.features.discharge import extract_discharge_features as extract
    t0 = time.monotonic()
    fs = extract(batch)
    assert time.monotonic() - t0 < 30
    if case == "nan" and family == "acg-isi-wave":  # counts use the finite times: a note, not a refusal
        assert fs.usable[1] and "1 non-finite spike times dropped" in fs.reasons[1]
        np.testing.assert_array_equal(fs.acg_counts[1], compute_acg_counts(_GOOD[:-1]))
    else:
        assert not fs.usable[1] and match in fs.reasons[1]
    assert _guards.check_train(_GOOD)[1] == ""


def test_a_session_far_from_the_reference_time_is_usable_for_time_differences():
    """Spike times 1e6 s after the reference time (a file whose timestamps count from an earlier
    epoch): every unit was not_classifiable for the acg-isi-wave family, which uses differences of
    times only. Now only a span past 7 days is refused there; c4-3d keeps the absolute bound."""
    from nwb_celltype.features import _guards
    from nwb_celltype.features.discharge import extract_discharge_features

    far = _GOOD + 1e6
    assert _guards.check_train(far, allow_negative=True)[1] == ""
    assert "after 604800 s" in _guards.check_train(far)[1]
    fs = extract_discharge_features(_batch([_GOOD, far]))
    assert fs.usable[1], fs.reasons[1]
    np.testing.assert_array_equal(fs.acg_counts[1], fs.acg_counts[0])  # float64 keeps the differences
    assert "span" in _guards.check_train(np.r_[_GOOD, 8 * 24 * 3600.0], allow_negative=True)[1]


def test_too_many_spikes_not_computed(monkeypatch):
    from nwb_celltype.features import _guards

    monkeypatch.setattr(_guards, "MAX_SPIKES_PER_UNIT", 1000)
    t, why = _guards.check_train(_GOOD)
    assert len(t) == 0 and "spikes >" in why


def test_far_out_spike_times_end_to_end_not_classifiable(nwb, demo_bundle):
    """Finding 8: spike times x1e300 came out PkC_cs with p = 0.999."""
    from nwb_celltype.annotate import annotate

    def scale(g):
        st = g["spike_times"][()]
        a, b = (0, g["spike_times_index"][0])
        st[a:b] *= 1e300
        g["spike_times"][...] = st

    edit_units(nwb, scale)
    res = annotate(nwb, model=demo_bundle, out=nwb.with_name("o.nwb"))
    skipped = {d["unit_id"]: d["reason"] for d in res.skipped}
    assert "outside any plausible session" in skipped[0]


# -- non-regular files, slow servers -------------------------------------------------------------


def test_fifo_is_refused_without_blocking(tmp_path):
    from nwb_celltype.io import open_source

    fifo = tmp_path / "x.nwb"
    os.mkfifo(fifo)
    out: list = []
    t = threading.Thread(target=lambda: out.append(_try(open_source, fifo)), daemon=True)
    t.start()
    t.join(10)
    assert out and isinstance(out[0], NotNWBError) and "not a regular file" in str(out[0])


def _try(fn, *a, **k):
    try:
        fn(*a, **k)
    except Exception as exc:
        return exc
    return None


@pytest.mark.network
def test_drip_server_fails_on_minimum_throughput(mock_nwb):
    from nwb_celltype.io import open_source
    from nwb_celltype.testing.servers import RangeServer

    with RangeServer(mock_nwb.parent) as files:
        files.faults.drip_s = 0.2
        t0 = time.monotonic()
        with pytest.raises(RemoteError, match="too slow"):
            open_source(
                files.url_for(mock_nwb.name), cache_dir=False, timeout_s=1, retries=0, min_bytes_per_s=100
            )
        assert time.monotonic() - t0 < 10


@pytest.mark.network
def test_overall_deadline_bounds_a_slow_server(mock_nwb):
    from nwb_celltype.io import open_source
    from nwb_celltype.testing.servers import RangeServer

    with RangeServer(mock_nwb.parent) as files:
        files.faults.latency_s = 0.5
        t0 = time.monotonic()
        with pytest.raises(RemoteError, match="deadline"):
            with open_source(files.url_for(mock_nwb.name), cache_dir=False, deadline_s=0.2, retries=5) as src:
                src.h5["units/spike_times"][()]
        assert time.monotonic() - t0 < 10


# -- bundle pinning ------------------------------------------------------------------------------


def test_pinning_refuses_a_consistently_edited_card(nwb, demo_bundle, tmp_path):
    """Finding 9: a card edited with its sha256 recomputed was accepted."""
    import json

    from nwb_celltype.annotate import annotate
    from nwb_celltype.inspect_file import load_annotations
    from nwb_celltype.model import save_bundle
    from nwb_celltype.model.bundle import _bundle_digest

    good = demo_bundle.sha256
    bdir = Path(save_bundle(demo_bundle, tmp_path / "b"))
    card_path = bdir / "model_card.json"
    card = json.loads(card_path.read_text())
    card["description"] = "substituted"
    card["sha256"] = _bundle_digest(card)
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match="not the pinned"):
        annotate(nwb, model=bdir, model_sha256=good, out=tmp_path / "x.nwb")
    assert not (tmp_path / "x.nwb").exists()
    res = annotate(nwb, model=demo_bundle, model_sha256=good[:16], out=tmp_path / "y.nwb")
    params = load_annotations(res.output_path)[res.table_name].classifier["parameters"]
    assert params["bundle_pinned"] is True or params["bundle_pinned"] in ("True", 1)


def test_dandiset_runner_honours_the_pin():
    from nwb_celltype.batch.run import _load_model_identity

    demo = str(_demo())
    info = _load_model_identity(demo, None)
    assert info["pinned"] is False
    assert _load_model_identity(demo, info["sha256"][:12])["pinned"] is True
    with pytest.raises(ModelError, match="not the pinned"):
        _load_model_identity(demo, "0" * 64)


# -- the DANDI API down: one line, our error, no traceback (finding 7) ----------------------------


@pytest.mark.network
@pytest.mark.parametrize("down", ["http-503", "refused"])
@pytest.mark.parametrize(
    "command",
    [
        ["assets", "000001"],
        ["annotate", "DANDI:000001/draft/sub-1/x.nwb", "--out", "{tmp}/o.nwb"],
        ["annotate-dandiset", "000001", "--out", "{tmp}/runs"],
    ],
    ids=["assets", "annotate", "annotate-dandiset"],
)
def test_dandi_api_down_is_one_line_of_ours(command, down, tmp_path):
    """Finding 7: with the API down, the dandi client logged a 25-line traceback before our line."""
    from nwb_celltype.testing.servers import DandiApiServer, RangeServer

    def run(api_url: str) -> subprocess.CompletedProcess:
        args = [a.replace("{tmp}", str(tmp_path)) for a in command]
        env = {**os.environ, "DANDI_NO_ET": "1", "NWB_CELLTYPE_DANDI_API_URL": api_url}
        return subprocess.run(
            [sys.executable, "-m", "nwb_celltype.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    if down == "refused":
        with RangeServer(tmp_path) as files:
            dead_url = files.url + "/api"  # the port is free again once the server stops
        res = run(dead_url)
    else:
        with RangeServer(tmp_path) as files, DandiApiServer(files) as api:
            api.faults.status = 503
            res = run(api.api_url)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr and len(lines) == 1, res.stderr
    assert lines[0].startswith("Error: ") and "DANDI API" in lines[0], lines[0]
    assert not list(tmp_path.glob("o.nwb*")) and not (tmp_path / "runs" / "summary.tsv").exists()


# -- every output file is written whole or not at all ---------------------------------------------


def _failing_writer(monkeypatch, owner, attr, target_arg=0, after=0):
    """Replace ``owner.attr`` by a writer that puts a few bytes into its target, then fails with a
    full disk (what an interrupted or failed write leaves behind); the first ``after`` calls write
    as usual. Returns the targets of the calls made."""
    import errno

    original = getattr(owner, attr)
    calls = []

    def broken(*args, **kwargs):
        target = args[target_arg]
        calls.append(target)
        if len(calls) <= after:
            return original(*args, **kwargs)
        with contextlib.ExitStack() as stack:
            fh = target if hasattr(target, "write") else stack.enter_context(open(target, "wb"))
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(owner, attr, broken)
    return calls


def _run(*args):
    from click.testing import CliRunner

    from nwb_celltype.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("family", ["acg-isi-wave", "c4-3d"])
def test_failed_features_write_keeps_old_output_and_leaves_nothing(tmp_path, monkeypatch, family):
    from nwb_celltype.simulate import demo_recording_path

    out = tmp_path / "f.npz"
    res = _run("features", demo_recording_path(), "--out", out, "--family", family, "-q")
    assert res.exit_code == 0, res.output
    before = _sha(out)
    _failing_writer(monkeypatch, np, "savez_compressed")
    res = _run("features", demo_recording_path(), "--out", out, "--family", family, "-q", "--overwrite")
    assert _sha(out) == before and _leftovers(tmp_path) == []  # the old output is intact
    assert res.exit_code == 1 and "no space left" in res.output and "Traceback" not in res.output
    res = _run("features", demo_recording_path(), "--out", tmp_path / "new.npz", "--family", family, "-q")
    assert res.exit_code == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["f.npz"]


def test_failed_exports_keep_old_outputs_and_leave_nothing(tmp_path, monkeypatch):
    import pandas as pd

    from nwb_celltype.simulate import demo_recording_path

    annotated = tmp_path / "a.nwb"
    assert _run("annotate", demo_recording_path(), "--out", annotated).exit_code == 0
    phy, tsv = tmp_path / "phy", tmp_path / "t.tsv"
    phy.mkdir()
    assert _run("export", annotated, "--phy", phy, "--tsv", tsv).exit_code == 0
    before = {p: _sha(p) for p in (tsv, phy / "cluster_celltype.tsv")}
    _failing_writer(monkeypatch, pd.DataFrame, "to_csv", target_arg=1)
    res = _run("export", annotated, "--tsv", tsv, "--overwrite")
    assert _sha(tsv) == before[tsv]
    assert res.exit_code == 1 and "no space left" in res.output and "Traceback" not in res.output
    _failing_writer(monkeypatch, Path, "write_text")
    res = _run("export", annotated, "--phy", phy, "--overwrite")
    assert {p: _sha(p) for p in before} == before
    assert res.exit_code == 1 and "no space left" in res.output and "Traceback" not in res.output
    assert _leftovers(tmp_path) == [] and _leftovers(phy) == []


def test_failed_bundle_save_keeps_the_old_bundle(tmp_path, monkeypatch, demo_bundle):
    """A save over an existing bundle that fails while writing the weights leaves the old bundle
    loadable and byte-identical, with no temporary files."""
    import safetensors.torch

    from nwb_celltype.model import load_bundle, save_bundle

    path = save_bundle(demo_bundle, tmp_path / "bundle")
    before = {p.name: _sha(p) for p in path.iterdir()}
    _failing_writer(monkeypatch, safetensors.torch, "save_file", target_arg=1)
    with pytest.raises(OutputError, match="no space left"):
        save_bundle(demo_bundle, path, overwrite=True)
    assert {p.name: _sha(p) for p in path.iterdir()} == before and _leftovers(path) == []
    assert load_bundle(path).sha256 == demo_bundle.sha256


@pytest.mark.parametrize("writer", ["unit figure", "summary figure", "page"])
def test_failed_report_write_keeps_the_old_report(tmp_path, monkeypatch, writer):
    """A report rewritten over an older one (``--overwrite``) that fails while writing a unit's
    figure, the summary figure or the page leaves every file of the older report as it was."""
    import matplotlib.figure
    from PIL import Image

    from nwb_celltype.simulate import demo_recording_path

    annotated = tmp_path / "a.nwb"
    assert _run("annotate", demo_recording_path(), "--out", annotated, "-q").exit_code == 0
    out = tmp_path / "report"
    args = ("report", annotated, "--out", out, "--max-units", 3, "--workers", 1, "-q")
    assert _run(*args).exit_code == 0
    files = sorted(p for p in out.rglob("*") if p.is_file())
    before = {p: _sha(p) for p in files}
    assert out / "index.html" in before and out / "summary.png" in before and len(before) == 5
    owner, attr, arg = {
        "unit figure": (Image.Image, "save", 1),
        "summary figure": (matplotlib.figure.Figure, "savefig", 1),
        "page": (Path, "write_text", 0),
    }[writer]
    _failing_writer(monkeypatch, owner, attr, target_arg=arg)
    res = _run(*args, "--overwrite")
    assert {p: _sha(p) for p in files} == before
    assert sorted(p for p in out.rglob("*") if p.is_file()) == files  # no temporary file left
    assert res.exit_code == 1 and "no space left" in res.output and "Traceback" not in res.output


# -- output folders swapped whole (atomic_folder) -------------------------------------------------


def _tree(folder: Path) -> dict[str, tuple[int, str]]:
    """Every entry of ``folder`` (itself as ""), with its permission bits and, for a file, its digest."""
    tree = {"": (stat.S_IMODE(folder.stat().st_mode), "folder")}
    for p in sorted(folder.rglob("*")):
        tree[p.relative_to(folder).as_posix()] = (
            stat.S_IMODE(p.lstat().st_mode),
            _sha(p) if p.is_file() else "folder",
        )
    return tree


@pytest.fixture(scope="module")
def annotated_demo(tmp_path_factory) -> Path:
    from nwb_celltype.simulate import demo_recording_path

    path = tmp_path_factory.mktemp("annotated") / "a.nwb"
    assert _run("annotate", demo_recording_path(), "--out", path, "-q").exit_code == 0
    return path


def test_report_rewrite_failing_half_way_keeps_the_old_folder(tmp_path, monkeypatch, annotated_demo):
    """A report rewritten with --overwrite that fails at its third unit figure, two new figures
    already drawn, leaves the older report folder exactly as it was: every file's bytes and mode,
    no new file, the folder's own mode, and no temporary folder (or lock) beside it. (Before, the
    figures drawn before the failure replaced the older ones.)"""
    from PIL import Image

    out = tmp_path / "report"
    args = ("report", annotated_demo, "--out", out, "--workers", 1, "-q")
    assert _run(*args, "--max-units", 2, "--table", "ground_truth").exit_code == 0
    out.chmod(0o750)
    before = _tree(out)
    calls = _failing_writer(monkeypatch, Image.Image, "save", target_arg=1, after=2)
    res = _run(*args, "--max-units", 4, "--overwrite")  # other table: every figure differs
    assert len(calls) == 3
    assert res.exit_code == 1 and "no space left" in res.output and "Traceback" not in res.output
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_report_rewrite_swaps_the_whole_folder(tmp_path, annotated_demo):
    """A successful rewrite leaves exactly the new report (byte-identical to one written afresh;
    figures of units the older report drew and this one does not are gone), keeps the folders'
    permission bits, and leaves no temporary or older folder beside it."""
    out, fresh = tmp_path / "report", tmp_path / "fresh"
    args = ("report", annotated_demo, "--workers", 1, "-q")
    assert _run(*args, "--out", out, "--max-units", 4, "--table", "ground_truth").exit_code == 0
    out.chmod(0o750)
    (out / "units").chmod(0o700)
    inode = out.stat().st_ino
    res = _run(*args, "--out", out, "--max-units", 2, "--overwrite")
    assert res.exit_code == 0, res.output
    assert _run(*args, "--out", fresh, "--max-units", 2).exit_code == 0
    tree, new = _tree(out), _tree(fresh)
    assert sorted(tree) == ["", "index.html", "summary.png", "units", "units/unit_0.png", "units/unit_1.png"]
    assert tree[""][0] == 0o750 and tree["units"][0] == 0o700  # the older folders' modes
    assert {k: v[1] for k, v in tree.items()} == {k: v[1] for k, v in new.items()}
    assert out.stat().st_ino != inode  # a new folder, renamed into place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "report"]


def test_report_refuses_a_folder_holding_other_files(tmp_path, annotated_demo):
    """The folder is replaced whole, so a folder holding files that are not a report's (the user's)
    is refused, with or without --overwrite, before anything is drawn, naming the files and how to
    fix it; the folder is untouched. (Before, the report was written among them.)"""
    out = tmp_path / "report"
    args = ("report", annotated_demo, "--out", out, "--max-units", 1, "--workers", 1, "-q")
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    res = _run(*args)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "holds files that are not part of a report (notes.txt)" in res.output
    assert "move them out of it or choose another output folder" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    (out / "notes.txt").unlink()
    assert _run(*args).exit_code == 0
    (out / "units" / "mine.txt").write_text("mine")
    (out / "extra").mkdir()
    before = _tree(out)
    res = _run(*args, "--overwrite")
    assert res.exit_code == 1 and "(extra/, units/mine.txt)" in res.output
    # without --overwrite too: the error names the user's files, not "pass --overwrite" (which
    # would only lead to this error)
    res = _run(*args)
    assert res.exit_code == 1 and "(extra/, units/mine.txt)" in res.output and "--overwrite" not in res.output
    assert _tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def _evaluation(seed: int, n: int = 30):
    from nwb_celltype.model.evaluation_report import HeldOut

    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(3), size=n)
    return HeldOut("test", rng.integers(0, 3, n), p, {}).report(("a", "b", "c"), 2.0, lambda: {"scheme": "t"})


def test_evaluation_rewrite_failing_half_way_keeps_the_old_folder(tmp_path, monkeypatch):
    """An evaluation written over an older one that fails at its second figure (evaluation.json,
    predictions.npz and one figure already written) leaves the older folder as it was; a complete
    one replaces it whole (figures it does not write go), keeping the folder's mode."""
    import matplotlib.figure

    out = tmp_path / "ev"
    _evaluation(0).write(out)
    out.chmod(0o750)
    before = _tree(out)
    assert len(before) == 7
    with monkeypatch.context() as m:
        calls = _failing_writer(m, matplotlib.figure.Figure, "savefig", target_arg=1, after=1)
        with pytest.raises(OutputError, match="no space left"):
            _evaluation(1).write(out)
    assert len(calls) == 2
    assert _tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["ev"]
    paths = _evaluation(1).write(out, figures=False)
    assert paths == [out / "evaluation.json", out / "predictions.npz"]
    tree = _tree(out)
    assert sorted(tree) == ["", "evaluation.json", "predictions.npz"] and tree[""][0] == 0o750
    assert tree["evaluation.json"] != before["evaluation.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ev"]


def test_evaluation_refuses_a_folder_holding_other_files(tmp_path):
    """An evaluation folder holding the user's files is refused (Python and CLI, the CLI before it
    evaluates anything), the folder untouched."""
    out = tmp_path / "ev"
    _evaluation(0).write(out)
    (out / "notes.txt").write_text("mine")
    before = _tree(out)
    with pytest.raises(OutputError, match=r"not part of an evaluation \(notes.txt\)"):
        _evaluation(1).write(out)
    for extra in (("--overwrite",), ()):  # without --overwrite too: not "pass --overwrite" first
        res = _run("evaluate", tmp_path / "missing.toml", "--out", out, *extra)
        assert res.exit_code == 1 and "not part of an evaluation (notes.txt)" in res.output, res.output
    assert _tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["ev"]


def _other_bundle(bundle):
    """``bundle`` with another temperature: different weights (its calibration tensor) and card."""
    import copy

    from nwb_celltype.model import ModelBundle

    card = copy.deepcopy(bundle.card)
    for key in ("sha256", "weights_sha256"):
        card.pop(key, None)
    card["name"] = "other"
    return ModelBundle(
        ensemble=bundle.ensemble, card=card, temperature=bundle.temperature * 1.5, laplace=bundle.laplace
    )


def test_bundle_save_failing_at_the_card_keeps_the_old_bundle(tmp_path, monkeypatch, demo_bundle):
    """A save over an older bundle (overwrite=True) that fails while writing the card, the new
    weights already written, leaves the older bundle exactly as it was (both files' bytes and modes,
    the folder's mode) and loadable, with nothing beside it. (Before, the new weights replaced the
    older ones under the old card, and load_bundle refused the mix by its digest.)"""
    from nwb_celltype.model import load_bundle, save_bundle

    out = save_bundle(demo_bundle, tmp_path / "bundle")
    out.chmod(0o750)
    before = _tree(out)
    assert sorted(before) == ["", "model_card.json", "weights.safetensors"]
    other = _other_bundle(demo_bundle)
    with monkeypatch.context() as m:
        calls = _failing_writer(m, Path, "write_text")
        with pytest.raises(OutputError, match="no space left"):
            save_bundle(other, out, overwrite=True)
    assert len(calls) == 1 and "model_card.json" in Path(calls[0]).name  # the weights were written
    assert _tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    assert load_bundle(out).sha256 == demo_bundle.sha256


def test_bundle_overwrite_swaps_the_whole_folder(tmp_path, demo_bundle):
    """A successful save over an older bundle leaves exactly the new bundle (byte-identical to one
    saved afresh, loadable), in a new folder renamed into place that keeps the older folder's
    mode, and nothing beside it."""
    from nwb_celltype.model import load_bundle, save_bundle

    out = save_bundle(demo_bundle, tmp_path / "bundle")
    out.chmod(0o750)
    inode = out.stat().st_ino
    other = _other_bundle(demo_bundle)
    assert save_bundle(other, out, overwrite=True) == out
    fresh = save_bundle(other, tmp_path / "fresh")
    tree = _tree(out)
    assert sorted(tree) == ["", "model_card.json", "weights.safetensors"] and tree[""][0] == 0o750
    assert {k: v[1] for k, v in tree.items()} == {k: v[1] for k, v in _tree(fresh).items()}
    assert out.stat().st_ino != inode  # a new folder, renamed into place
    assert load_bundle(out).sha256 == other.sha256 != demo_bundle.sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "fresh"]


def test_bundle_save_refuses_a_folder_holding_other_files(tmp_path, demo_bundle):
    """A bundle folder is replaced whole, so one holding files that are not a bundle's is refused,
    with or without overwrite (Python, train and c4 import, both before any work), the folder
    untouched. (Before, an overwrite wrote the bundle among them.)"""
    from nwb_celltype.model import save_bundle

    out = save_bundle(demo_bundle, tmp_path / "bundle")
    (out / "notes.txt").write_text("mine")
    before = _tree(out)
    for overwrite in (True, False):
        with pytest.raises(OutputError, match=r"not part of a model bundle \(notes.txt\)"):
            save_bundle(demo_bundle, out, overwrite=overwrite)
    res = _run("train", tmp_path / "missing.toml", "--out", out, "--overwrite")
    assert res.exit_code == 1 and "not part of a model bundle (notes.txt)" in res.output
    for name in ("a.tar.gz", "h.pt"):
        (tmp_path / name).write_bytes(b"not read")
    args = ("c4", "import", tmp_path / "a.tar.gz", tmp_path / "h.pt", "--variant", "base", "--out", out)
    res = _run(*args, "--overwrite")
    assert res.exit_code == 1 and "not part of a model bundle (notes.txt)" in res.output
    assert "Traceback" not in res.output
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "bundle", "h.pt"]


_FOLDER_SIGNAL_CHILD = """
import sys, time
from pathlib import Path
from nwb_celltype._atomic import atomic_folder
with atomic_folder(Path(sys.argv[1]), replace=True, owned=("a.txt", "b.txt")) as tmp:
    (tmp / "a.txt").write_bytes(b"new")
    print("READY", flush=True)
    time.sleep(60)
"""


def test_signals_remove_the_new_folder_and_keep_the_old(tmp_path):
    """SIGTERM, SIGINT or SIGHUP while a folder is being built: the new folder is removed and the
    older one is untouched."""
    targets = []
    for name in ("SIGTERM", "SIGINT", "SIGHUP"):
        d = tmp_path / name / "out"
        d.mkdir(parents=True)
        (d / "a.txt").write_bytes(b"old")
        (d / "b.txt").write_bytes(b"old")
        targets.append(d)
    _signal_children(_FOLDER_SIGNAL_CHILD, targets, ".tmp.dir")
    for d in targets:
        assert {p.name: p.read_bytes() for p in d.iterdir()} == {"a.txt": b"old", "b.txt": b"old"}
        assert _leftovers(d.parent) == [], d


def test_stale_folders_of_dead_runs(tmp_path):
    """A dead run's half-built folder is removed; an older folder a dead run had moved aside, its
    target missing (killed between the swap's two renames), is renamed back; a live run's is kept.
    (Before, a folder stopped the clean-up: unlink failed on it.)"""
    out = tmp_path / "out"
    built = tmp_path / f".out.pid{_dead_pid()}.0123abcd.tmp.dir"
    aside = tmp_path / f".out.pid{_dead_pid()}.89abcdef.old.dir"
    live = tmp_path / f".out.pid{os.getpid()}.0123abcd.tmp.dir"
    for d in (built, aside, live):
        (d / "units").mkdir(parents=True)
        (d / "units" / "a.txt").write_bytes(d.name.encode())
    assert _atomic.remove_stale_temps(out) == [built]
    assert (out / "units" / "a.txt").read_bytes() == aside.name.encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "out"]
    with pytest.raises(AnnotationExistsError, match="pass --overwrite"):
        with _atomic.atomic_folder(out, replace=False, owned=("units", "units/*")):
            pass
    with _atomic.atomic_folder(out, replace=True, owned=("units", "units/*")) as tmp:
        (tmp / "b.txt").write_bytes(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "out"]
    assert [p.name for p in out.iterdir()] == ["b.txt"]


def test_a_write_error_caused_by_a_signal_is_reported_as_the_signal():
    """HDF5 turns an exception raised inside its C code (our signal handler's) into its own write
    error: a failed write during which a cleanup signal arrived is the interruption, not a write
    error (exit status 128 + the signal)."""
    import signal

    from nwb_celltype import _atomic
    from nwb_celltype.errors import OutputError

    final = Path("/tmp/x.nwb")
    plain = OSError("unable to write attribute 'namespace'")
    assert isinstance(_atomic.as_output_error(plain, final), OutputError)
    chained = OSError("unable to write attribute 'namespace'")
    chained.__context__ = KeyboardInterrupt()
    got = _atomic.as_output_error(chained, final)
    assert isinstance(got, _atomic.Interrupted) and got.code == 128 + signal.SIGINT
    _atomic._RECEIVED.append(signal.SIGTERM)  # the handler ran, HDF5 swallowed its exception
    try:
        got = _atomic.as_output_error(plain, final)
        assert isinstance(got, _atomic.Interrupted) and got.code == 128 + signal.SIGTERM
    finally:
        _atomic._RECEIVED.clear()


def test_a_signal_swallowed_by_a_finalizer_still_stops_the_write(tmp_path, capfd):
    """A cleanup signal whose exception is raised inside a finalizer (garbage collection, weakref
    callbacks) cannot propagate: Python printed "Exception ignored in ..." with our traceback and the
    write went on. Now the signal is recorded, nothing is printed, and the write stops before it is
    committed: the target keeps its content, no temporary file is left."""
    import gc
    import signal

    from nwb_celltype import _atomic

    final = tmp_path / "out.txt"
    final.write_text("original")

    class SignalWhenFreed:
        def __del__(self):
            signal.raise_signal(signal.SIGTERM)

    with pytest.raises(_atomic.Interrupted) as info, _atomic.atomic_write(final, replace=True) as tmp:
        tmp.write_text("new")
        a = SignalWhenFreed()
        a.me = a  # freed by the collector, inside its finalizer
        del a
        gc.collect()
    assert info.value.code == 128 + signal.SIGTERM
    assert final.read_text() == "original" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    assert "Exception ignored" not in capfd.readouterr().err


def test_sigint_outside_a_write_exits_like_one_inside(tmp_path, monkeypatch):
    """Ctrl-C while features are computed or a model runs (no write under way) ended with "aborted
    (interrupted)" and status 1; inside a write with status 130. Now both are 128 + SIGINT."""
    import signal

    from click.testing import CliRunner

    import nwb_celltype.classify as classify
    from nwb_celltype.cli import main

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(classify, "predict_features", interrupted)
    res = CliRunner().invoke(main, ["predict", str(tmp_path), "--out", str(tmp_path / "p.tsv")])
    assert res.exit_code == 128 + signal.SIGINT
    assert res.output.strip() == "Error: interrupted by SIGINT; no partial output was left"
    assert not (tmp_path / "p.tsv").exists()


def test_a_nested_write_keeps_the_outer_record_of_signals():
    """A write inside a write (an export's manifest) cleared the outer block's record of a swallowed
    signal and restored the handlers early: the outer write was then committed."""
    import signal

    from nwb_celltype import _atomic

    before = signal.getsignal(signal.SIGTERM)
    with _atomic.cleanup_on_signals():
        outer = signal.getsignal(signal.SIGTERM)
        _atomic._RECEIVED.append(signal.SIGTERM)  # as the handler does when its exception is lost
        with _atomic.cleanup_on_signals():
            assert signal.getsignal(signal.SIGTERM) is outer
        assert signal.getsignal(signal.SIGTERM) is outer and _atomic._RECEIVED == [signal.SIGTERM]
        with pytest.raises(_atomic.Interrupted):
            _atomic.raise_if_interrupted()
    assert signal.getsignal(signal.SIGTERM) is before and _atomic._RECEIVED == []


def test_output_piped_into_a_reader_that_left_ends_quietly():
    """`nwb-celltype show FILE --json | head`: the reader closing the pipe is no error of ours (it
    printed "Error: Broken pipe. Nothing was written ..."): silent, status 128 + SIGPIPE."""
    import os
    import signal

    from nwb_celltype.simulate import demo_recording_path

    r, w = os.pipe()
    os.close(r)  # the reader is gone before anything is written
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "nwb_celltype.cli", "show", str(demo_recording_path()), "--json"],
            stdout=w,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(w)
    assert proc.returncode == 128 + signal.SIGPIPE and proc.stderr == "", proc.stderr


def test_a_file_pynwb_cannot_read_back_is_one_clear_error(tmp_path):
    """A dangling object reference (the referenced dataset deleted) made pynwb's read of the copy
    raise KeyError through annotate: an 81-line traceback. Now one error naming the file."""
    import shutil

    import h5py

    from nwb_celltype.annotate import annotate
    from nwb_celltype.errors import NotNWBError
    from nwb_celltype.simulate import demo_recording_path

    f = tmp_path / "dang.nwb"
    shutil.copy(demo_recording_path(), f)
    with h5py.File(f, "a") as h:
        tmp = h["acquisition"].create_dataset("tmp", data=[1])
        h["units/spike_times_index"].attrs["target"] = tmp.ref
        del h["acquisition/tmp"]
    before = _sha(f)
    with pytest.raises(NotNWBError, match=r"dang\.nwb is an HDF5 file that pynwb cannot read back"):
        annotate(f, out=tmp_path / "out.nwb")
    assert _sha(f) == before and sorted(p.name for p in tmp_path.iterdir()) == ["dang.nwb"]


def test_show_and_report_say_they_read_local_files_only(tmp_path):
    """`show URL` said "http:/127.0.0.1:.../s1.nwb does not exist" (the URL mangled as a path)."""
    from click.testing import CliRunner

    from nwb_celltype.cli import main

    for args in (
        ["show", "http://127.0.0.1:9/s1.nwb"],
        ["report", "DANDI:000409/draft/x.nwb", "--out", str(tmp_path / "r")],
    ):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 1 and "is remote; this command reads local files only" in res.output, (
            res.output
        )
        assert args[1] in res.output
