"""The library tutorial of docs/library.md, run as written: simulate -> label -> validate -> stats
-> export -> train -> evaluate (Python blocks in one namespace, then the shell blocks)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "library.md"
_BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.S | re.M)


def _blocks(lang: str) -> list[str]:
    text = DOC.read_text()
    tutorial = text.split("## Tutorial", 1)[1].split("\n## ", 1)[0]
    return [code for kind, code in _BLOCK.findall(tutorial) if kind == lang]


def test_tutorial_has_every_step():
    code = "\n".join(_blocks("python"))
    for step in (
        "label_file",
        "validate_library",
        "library_stats",
        "export_dandiset",
        "train_model",
        "evaluate_model",
    ):
        assert step in code, step


@pytest.mark.slow
def test_library_tutorial_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NWB_CELLTYPE_CACHE_DIR", str(tmp_path / "cache"))
    ns: dict = {"__name__": "tutorial"}
    for i, code in enumerate(_blocks("python")):
        try:
            exec(compile(code, f"{DOC.name}[python block {i}]", "exec"), ns)
        except Exception as exc:  # pragma: no cover - the message says which block failed
            raise AssertionError(f"tutorial python block {i} failed: {exc!r}\n{code}") from exc
    assert ns["report"].ok
    assert sorted(ns["training_set"].class_counts()) == ["GoC", "MFB", "MLI", "PkC_cs", "PkC_ss"]
    assert len(list(Path("dandiset").rglob("*_ecephys.nwb"))) == 2
    assert ns["evaluation"].metrics["n_units"] == int(ns["training_set"].labelled.sum())
    # the shell blocks, with this interpreter's nwb-celltype
    exe = [sys.executable, "-m", "nwb_celltype.cli"]
    for block in _blocks("bash"):
        for line in block.strip().splitlines():
            argv = shlex.split(line)
            assert argv[0] == "nwb-celltype"
            proc = subprocess.run(
                exe + argv[1:], capture_output=True, text=True, env=os.environ.copy(), timeout=600
            )
            assert proc.returncode == 0, f"{line}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert Path("stats.png").exists() and Path("evaluation/evaluation.json").exists()
