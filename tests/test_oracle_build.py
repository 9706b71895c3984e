"""tests/oracle/build.py without building anything: its cache key (requirements, interpreter, index)
and its exit status (a failed build fails in CI, warns elsewhere; a matching stamp is reused only
while the environment is ready)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BUILD = Path(__file__).resolve().parent / "oracle" / "build.py"


@pytest.fixture
def build_mod():
    spec = importlib.util.spec_from_file_location("oracle_build", BUILD)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_key_follows_requirements_interpreter_and_index(build_mod, tmp_path, monkeypatch):
    req = tmp_path / "r.txt"
    req.write_text("npyx==4.3.1\n")
    key = build_mod.cache_key(req, [])
    assert build_mod.cache_key(req, []) == key
    assert build_mod.cache_key(req, ["--extra-index-url", "https://example.invalid/cpu"]) != key
    req.write_text("npyx==4.3.1\nlaplace-torch==0.1a2\n")
    assert build_mod.cache_key(req, []) != key
    req.write_text("npyx==4.3.1\n")
    monkeypatch.setattr(sys, "version", sys.version + " (another build)")
    assert build_mod.cache_key(req, []) != key
    monkeypatch.undo()
    monkeypatch.setattr(sys, "executable", "/opt/other/python3")
    assert build_mod.cache_key(req, []) != key


def _fail(*_a, **_k):
    raise RuntimeError("pip could not install: ERROR: No matching distribution found for npyx==9")


@pytest.mark.parametrize(("ci", "status"), [("true", 1), ("", 0)])
def test_failed_build_fails_only_in_ci(build_mod, tmp_path, monkeypatch, capsys, ci, status):
    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(build_mod, "build", _fail)
    assert build_mod.main(["--dir", str(tmp_path / "env"), "--torch-index", ""]) == status
    err = capsys.readouterr().err
    assert "No matching distribution found for npyx==9" in err
    assert ("ERROR (CI=true)" in err) if status else ("WARNING" in err and "SKIPPED" in err)


def test_matching_stamp_is_reused_and_a_stale_one_rebuilt(build_mod, tmp_path, monkeypatch, capsys):
    env = tmp_path / "env"
    env.mkdir()
    key = build_mod.cache_key(build_mod.REQUIREMENTS, [])
    (env / "nwb-celltype-oracle.json").write_text(json.dumps({"key": key}))
    monkeypatch.setattr(build_mod, "build", _fail)
    monkeypatch.setattr(build_mod, "_ready", lambda env: {})
    monkeypatch.setenv("CI", "true")
    assert build_mod.main(["--dir", str(env), "--torch-index", ""]) == 0
    assert "up to date and ready" in capsys.readouterr().out
    (env / "nwb-celltype-oracle.json").write_text(json.dumps({"key": "stale"}))
    assert build_mod.main(["--dir", str(env), "--torch-index", ""]) == 1


def test_matching_but_broken_environment_is_rebuilt(build_mod, tmp_path, monkeypatch, capsys):
    env = tmp_path / "env"
    env.mkdir()
    key = build_mod.cache_key(build_mod.REQUIREMENTS, [])
    (env / "nwb-celltype-oracle.json").write_text(json.dumps({"key": key}))
    monkeypatch.setenv("CI", "true")
    built = []
    monkeypatch.setattr(build_mod, "build", lambda *a: built.append(a) or {"build_s": 1.0, "size_bytes": 1})
    # no bin/python in env: ready.py cannot run, so the environment is rebuilt
    assert build_mod.main(["--dir", str(env), "--torch-index", ""]) == 0
    assert built and "is not ready, rebuilding" in capsys.readouterr().out
