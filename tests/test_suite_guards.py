"""The suite's own guards (tests/suite_guards.py): in CI an unlisted skip fails the run; a test that
starts a server must be marked ``network``. Each is checked on a small pytest run in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from suite_guards import KNOWN_SKIPS, load_known_skips, unexpected_skips

TESTS = Path(__file__).resolve().parent

_SUITE = """
import socket
import pytest

def test_skips():
    pytest.skip("no frobnicator here")

def test_runs():
    assert True
"""

_SERVER = """
import socket
import pytest

def _listen():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    s.close()

def test_unmarked_server():
    _listen()

@pytest.mark.network
def test_marked_server():
    _listen()

@pytest.fixture(scope="module")
def server():
    _listen()

@pytest.mark.network
def test_marked_starts_shared_server(server):
    pass

def test_unmarked_uses_shared_server(server):
    pass
"""


def _pytest(tmp_path: Path, source: str, *, ci: bool, known: str = "") -> subprocess.CompletedProcess:
    (tmp_path / "test_x.py").write_text(textwrap.dedent(source))
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    network: starts a server\n")
    (tmp_path / "known.txt").write_text(known)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(PYTHONPATH=str(TESTS), NWB_CELLTYPE_KNOWN_SKIPS=str(tmp_path / "known.txt"))
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only the guards: isolated and fast
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "suite_guards",
            "-p",
            "no:cacheprovider",
            "-ra",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_unlisted_skip_fails_a_ci_run(tmp_path):
    res = _pytest(tmp_path, _SUITE, ci=True)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "unexpected skips (CI=true)" in res.stdout
    assert "test_x.py::test_skips: Skipped: no frobnicator here" in res.stdout


def test_listed_skip_passes_a_ci_run(tmp_path):
    res = _pytest(tmp_path, _SUITE, ci=True, known="test_x.py::test_sk* | frobnicator  # on purpose\n")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed, 1 skipped" in res.stdout


def test_listed_node_with_another_reason_still_fails(tmp_path):
    res = _pytest(tmp_path, _SUITE, ci=True, known="test_x.py::test_skips | no CUDA device\n")
    assert res.returncode == 1, res.stdout + res.stderr


def test_skips_outside_ci_do_not_fail(tmp_path):
    res = _pytest(tmp_path, _SUITE, ci=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_unmarked_server_test_fails(tmp_path):
    res = _pytest(tmp_path, _SERVER, ci=False)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "FAILED test_x.py::test_unmarked_server - " in res.stdout
    assert "not marked @pytest.mark.network" in res.stdout
    assert "FAILED test_x.py::test_unmarked_uses_shared_server" in res.stdout
    assert "uses server fixture(s) ['server']" in res.stdout
    assert "2 failed, 2 passed" in res.stdout


def test_matching_rules():
    known = [("tests/a.py::test_gpu*", "no CUDA")]
    skipped = [("tests/a.py::test_gpu_load", "Skipped: no CUDA device"), ("tests/a.py::test_x", "no CUDA")]
    assert unexpected_skips(skipped, known) == [("tests/a.py::test_x", "no CUDA")]


def test_malformed_list_line_is_an_error(tmp_path):
    bad = tmp_path / "k.txt"
    bad.write_text("tests/a.py::test_gpu\n")
    with pytest.raises(ValueError, match="NODE-ID-GLOB | REASON"):
        load_known_skips(bad)


def test_known_skips_name_existing_tests():
    """Every entry of tests/known_skips.txt names a test function that exists (no stale entries)."""
    for glob, _ in load_known_skips(KNOWN_SKIPS):
        path, _, name = glob.partition("::")
        text = (TESTS.parent / path).read_text()
        pattern = re.escape(name).replace(r"\*", r"\w*").replace(r"\?", r"\w")
        assert re.search(rf"^def {pattern}\(", text, re.M), f"{glob} names no test in {path}"
