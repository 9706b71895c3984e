"""``library export`` when a second signal arrives while the first one's cleanup runs (a user
pressing Ctrl-C twice, or a supervisor's SIGTERM after a Ctrl-C): the cleanup must still complete,
leaving no hidden folder, lock or created parent, and the run must end with one ``Error:`` line,
the first signal's exit status (130 for SIGINT) and no traceback.

Before: the second signal raised inside the cleanup's ``shutil.rmtree``, which stopped half-way and
left the hidden ``.exp.pidN.XXXXXXXX.tmp.dir`` folder (and the parent folders made for it).

The child process is the real CLI, with only ``shutil.rmtree`` of the hidden folder made to wait
for the test (a file it creates when the cleanup starts, one the test creates once the second
signal is sent), so the second signal lands inside the cleanup on any machine, however loaded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nwb_celltype.library import create_manifest, label_file, mock_library_file
from nwb_celltype.library.export import EXPORTED_MANIFEST

DANDI_ENV = {"DANDI_NO_ET": "1", "DANDI_CACHE": "ignore"}

#: The CLI, with the removal of the export's hidden folder held until the test says go.
CHILD = textwrap.dedent(
    """
    import shutil, sys, time
    from pathlib import Path

    sync = Path(sys.argv[1])
    real_rmtree = shutil.rmtree

    def rmtree(path, *args, **kwargs):
        if Path(path).name.endswith(".tmp.dir"):
            (sync / "cleanup-started").touch()
            deadline = time.monotonic() + 120
            while not (sync / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            for _ in range(30):  # time for a signal sent before "go" to be acted on
                time.sleep(0.01)
        return real_rmtree(path, *args, **kwargs)

    shutil.rmtree = rmtree
    sys.argv = ["nwb-celltype", *sys.argv[2:]]
    from nwb_celltype.cli import main

    main()
    """
)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("lib")
    files = []
    for k in range(2):
        raw = mock_library_file(d / f"raw{k}.nwb", seed=k, subject_id=f"m{k}", session_id=f"s{k}")
        csv = d / f"l{k}.csv"
        csv.write_text("unit_id,label,evidence_type\n0,PkC_ss,optotagging\n1,MLI,pharmacology\n")
        files.append(label_file(raw, csv, out=d / f"lab{k}.nwb", labelled_by="me", evidence_text="tagged"))
    return create_manifest(files, name="lib", root=d).save(d / "lib.toml")


def _wait_for(find, proc: subprocess.Popen, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if find():
            return
        time.sleep(0.01)
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f"the export ended (rc {proc.returncode}) or hung before {what}:\n{out}\n{err}")


def _building(parent: Path) -> bool:
    """Whether the hidden folder being built holds the exported manifest (dandi validates next)."""
    try:
        return any(
            (p / EXPORTED_MANIFEST).exists() for p in parent.iterdir() if p.name.startswith(".exp.pid")
        )
    except FileNotFoundError:
        return False


@pytest.mark.parametrize(
    ("first", "second"),
    [(signal.SIGINT, signal.SIGINT), (signal.SIGINT, signal.SIGTERM), (signal.SIGTERM, signal.SIGINT)],
    ids=["SIGINT-then-SIGINT", "SIGINT-then-SIGTERM", "SIGTERM-then-SIGINT"],
)
def test_second_signal_during_cleanup_leaves_nothing(manifest, tmp_path, first, second):
    sync, work = tmp_path / "sync", tmp_path / "work"
    sync.mkdir()
    work.mkdir()
    (sync / "child.py").write_text(CHILD)
    parent = work / "new" / "parents"  # created by the export: removed again when it fails
    args = [sys.executable, str(sync / "child.py"), str(sync), "library", "export", str(manifest)]
    args += ["--out", str(parent / "exp")]
    env = {**os.environ, **DANDI_ENV}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    with proc:
        _wait_for(lambda: _building(parent), proc, "the dandiset was built")
        proc.send_signal(first)
        _wait_for((sync / "cleanup-started").exists, proc, "the cleanup started")
        proc.send_signal(second)
        (sync / "go").touch()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + first, (proc.returncode, out, err)
    assert err.count("Error:") == 1 and f"Error: interrupted by {first.name}" in err, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert sorted(p.relative_to(work).as_posix() for p in work.rglob("*")) == []


def test_signal_during_the_cleanup_of_a_failed_export(manifest, tmp_path, monkeypatch):
    """A failure that is no signal (dandi validate) whose cleanup is hit by SIGTERM: the cleanup
    completes, then the signal is acted on (Interrupted, chained to the failure)."""
    import shutil

    import nwb_celltype.library.export as export_mod
    from nwb_celltype._atomic import Interrupted

    real_rmtree = shutil.rmtree

    def rmtree(path, *args, **kwargs):
        if Path(path).name.endswith(".tmp.dir"):
            signal.raise_signal(signal.SIGTERM)
        return real_rmtree(path, *args, **kwargs)

    def noop(signum, frame):
        pass

    old = signal.signal(signal.SIGTERM, noop)  # without the fix: must not end pytest
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    monkeypatch.setattr(export_mod, "_validation_errors", lambda folder: [("x.nwb", "[X] bad")])
    try:
        with pytest.raises(Interrupted, match="SIGTERM") as info:
            export_mod.export_dandiset(manifest, tmp_path / "a" / "exp")
        assert signal.getsignal(signal.SIGTERM) is noop  # the caller's handler is back
    finally:
        signal.signal(signal.SIGTERM, old)
    assert "does not pass dandi validate" in str(info.value.__cause__)
    assert list(tmp_path.iterdir()) == []
