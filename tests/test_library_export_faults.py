"""``library export`` / ``export_dandiset`` under faults: a real export interrupted by a real
signal, a dandiset that fails ``dandi validate``, a signal whose exception got lost in a finalizer
and one that arrives during the final rename. Each must leave no export folder and no temporary
folder (an empty folder that was there keeps its mode), leave the inputs as they were, and say so.

Before: an interrupted export said "aborted (interrupted); nothing was changed" (SIGINT) or nothing
(SIGTERM) and left the half-written folder; a validation failure left the whole folder; and dandi
validated a hidden folder (the temporary one) without finding anything."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nwb_celltype._atomic import Interrupted
from nwb_celltype.errors import LibraryError
from nwb_celltype.library import (
    create_manifest,
    export_dandiset,
    label_file,
    mock_library_file,
    validate_dandiset,
)
from nwb_celltype.library.export import EXPORTED_MANIFEST

DANDI_ENV = {"DANDI_NO_ET": "1", "DANDI_CACHE": "ignore"}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(folder: Path) -> list[str]:
    """Every entry under ``folder`` (hidden ones included), relative."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Three labelled mock recordings and their manifest ``lib.toml``; -> (manifest, inputs)."""
    d = tmp_path_factory.mktemp("lib")
    files = []
    for k in range(3):
        raw = mock_library_file(d / f"raw{k}.nwb", seed=k, subject_id=f"m{k}", session_id=f"s{k}")
        csv = d / f"l{k}.csv"
        csv.write_text("unit_id,label,evidence_type\n0,PkC_ss,optotagging\n1,MLI,pharmacology\n")
        files.append(label_file(raw, csv, out=d / f"lab{k}.nwb", labelled_by="me", evidence_text="tagged"))
    manifest = create_manifest(files, name="lib", root=d).save(d / "lib.toml")
    return manifest, sorted(d.iterdir())


@pytest.fixture(scope="module")
def bad_library(tmp_path_factory):
    """A recording whose species ('mouse') dandi validate rejects (NWB Inspector, DANDI config)."""
    d = tmp_path_factory.mktemp("bad")
    f = mock_library_file(d / "bad.nwb", subject_id="b0", session_id="t0", species="mouse")
    return create_manifest([f], name="bad", root=d)


@pytest.fixture
def ignore_stray_sigterm():
    """Without the fix no handler is installed: a SIGTERM raised in this process must not end pytest."""
    old = signal.signal(signal.SIGTERM, lambda signum, frame: None)  # not SIG_IGN, which stays ignored
    yield
    signal.signal(signal.SIGTERM, old)


def _wait_for(find, proc: subprocess.Popen, timeout_s: float = 60) -> Path:
    """Wait until ``find()`` returns a path while ``proc`` runs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if (found := find()) is not None:
            return found
        time.sleep(0.01)
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(
        f"the export ended (rc {proc.returncode}) or hung before the stage was reached:\n{out}\n{err}"
    )


def _in_progress(parent: Path, name: str, inside: str):
    """Finds the file ``inside`` the folder being built for ``parent/name`` (our hidden temporary
    folder, or ``name`` itself as before the fix)."""

    def find():
        with_tmp = [parent / name]
        with contextlib.suppress(FileNotFoundError):
            with_tmp += [p for p in parent.iterdir() if p.name.startswith(f".{name}.pid")]
        for folder in with_tmp:
            if (folder / inside).exists():
                return folder / inside
        return None

    return find


@pytest.mark.parametrize(
    ("sig", "stage", "pre_existing"),
    [
        (signal.SIGINT, "built", False),  # while dandi validates the complete folder
        (signal.SIGTERM, "started", True),  # dandiset.yaml written, dandi organizing
        (signal.SIGHUP, "built", False),
    ],
    ids=["SIGINT-validating", "SIGTERM-organizing-into-empty-folder", "SIGHUP-validating"],
)
def test_signal_during_export_leaves_nothing(library, tmp_path, sig, stage, pre_existing):
    manifest, inputs = library
    before = {p.name: _sha(p) for p in inputs}
    parent = tmp_path / "new" / "parents"  # created by the export: removed again when it fails
    if pre_existing:
        parent = tmp_path
        (parent / "exp").mkdir()
        os.chmod(parent / "exp", 0o750)
    args = [sys.executable, "-m", "nwb_celltype.cli", "library", "export", str(manifest)]
    args += ["--out", str(parent / "exp")]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **DANDI_ENV}
    )
    with proc:
        inside = EXPORTED_MANIFEST if stage == "built" else "dandiset.yaml"
        _wait_for(_in_progress(parent, "exp", inside), proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, (proc.returncode, out, err)
    assert f"Error: interrupted by {sig.name}; nothing was written" in err, err
    assert err.count("Error:") == 1, err
    assert "dandiset ready" not in out
    if pre_existing:  # the empty folder as it was, nothing beside it
        assert _tree(tmp_path) == ["exp"]
        assert oct(os.stat(tmp_path / "exp").st_mode & 0o777) == oct(0o750)
    else:
        assert _tree(tmp_path) == []  # no export folder, no temporary folder, no lock, no parents
    assert {p.name: _sha(p) for p in inputs} == before
    assert sorted(manifest.parent.iterdir()) == inputs


def test_validation_errors_fail_the_export_and_leave_nothing(bad_library, tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(LibraryError, match="does not pass dandi validate") as info:
        export_dandiset(bad_library, out)
    msg = str(info.value)
    # the errors are dandi's, named by where the files would have been; nothing was written
    assert f"{out}/sub-b0/sub-b0_ecephys.nwb: [NWBI.check_subject_species_form]" in msg
    assert "nothing was written" in msg and ".tmp.dir" not in msg
    assert _tree(tmp_path) == []
    # --no-validate writes it, and validate_dandiset finds the error there, and in a hidden folder
    # (which dandi itself skips: the export validates its hidden temporary folder)
    export_dandiset(bad_library, out, validate=False)
    assert any("check_subject_species_form" in e for e in validate_dandiset(out))
    hidden = out.rename(tmp_path / ".ds.pid1.0123abcd.tmp.dir")
    errors = validate_dandiset(hidden)
    assert len(errors) == 1 and errors[0].startswith(f"{hidden}/sub-b0/sub-b0_ecephys.nwb: [NWBI.")


def test_cli_validation_failure(bad_library, tmp_path):
    from click.testing import CliRunner

    from nwb_celltype.cli import main

    bad_toml = bad_library.save(bad_library.root / "bad.toml")
    res = CliRunner().invoke(main, ["library", "export", str(bad_toml), "--out", str(tmp_path / "a" / "ds")])
    assert res.exit_code == 1 and "check_subject_species_form" in res.output, res.output
    assert _tree(tmp_path) == []


def test_lost_signal_still_aborts(library, tmp_path, monkeypatch, ignore_stray_sigterm):
    """A signal whose exception is raised inside a finalizer is printed and dropped by Python
    ("Exception ignored in ...": h5py's deallocations, the garbage collector): seen once, an
    interrupted export ran to the end with exit status 0."""
    import nwb_celltype.library.export as export_mod

    class Finalized:
        def __del__(self):
            signal.raise_signal(signal.SIGTERM)

    real = export_mod.sha256_file

    def sha_with_lost_signal(path):
        Finalized()  # freed at once: the handler's exception is lost in __del__
        return real(path)

    monkeypatch.setattr(export_mod, "sha256_file", sha_with_lost_signal)
    (tmp_path / "ds").mkdir()
    with pytest.raises(Interrupted, match="SIGTERM"):
        export_dandiset(library[0], tmp_path / "ds", validate=False)
    assert _tree(tmp_path) == ["ds"]


def test_signal_during_the_final_rename_undoes_it(library, tmp_path, monkeypatch, ignore_stray_sigterm):
    """A signal that arrives during the swap is held until the folder is in place, then acted on:
    the export then takes its folder back out (an empty folder that was there comes back)."""
    out = tmp_path / "ds"
    out.mkdir()
    os.chmod(out, 0o700)
    real_rename = os.rename

    def rename(src, dst):
        if Path(dst) == Path(os.path.realpath(out)) and Path(src).name.endswith(".tmp.dir"):
            signal.raise_signal(signal.SIGTERM)
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(Interrupted, match="SIGTERM"):
        export_dandiset(library[0], out, validate=False)
    assert _tree(tmp_path) == ["ds"]
    assert oct(os.stat(out).st_mode & 0o777) == oct(0o700)
    # and a run that is not interrupted fills it
    monkeypatch.undo()
    mapping = export_dandiset(library[0], out, validate=False)
    assert sorted(p.relative_to(out).parts[0] for p in mapping.values()) == ["sub-m0", "sub-m1", "sub-m2"]
    assert (out / EXPORTED_MANIFEST).exists() and oct(os.stat(out).st_mode & 0o777) == oct(0o700)


def test_a_complete_export_prints_no_dandi_info_lines(library, tmp_path):
    """dandi's INFO lines ("INFO dandi: ...") went to stderr on every export; they show with -v only."""
    manifest, _ = library
    args = [sys.executable, "-m", "nwb_celltype.cli", "library", "export", str(manifest), "--out"]
    env = {**os.environ, **DANDI_ENV}
    quiet = subprocess.run([*args, str(tmp_path / "a")], capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert "INFO" not in quiet.stderr, quiet.stderr
    loud = subprocess.run(
        [sys.executable, "-m", "nwb_celltype.cli", "-v", *args[3:], str(tmp_path / "b")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert loud.returncode == 0 and "INFO dandi" in loud.stderr, loud.stderr
