"""docs/extension.md's example runs; the format reference covers every spec type; the Sphinx docs
build with warnings as errors."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def _python_blocks(md: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", md.read_text(), flags=re.S)


def test_extension_page_example_runs(tmp_path, monkeypatch, capsys):
    blocks = _python_blocks(DOCS / "extension.md")
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, str(DOCS / "extension.md"), "exec"), namespace)
    assert (tmp_path / "annotated.nwb").exists()
    out = capsys.readouterr().out
    assert "c4_base 2.0 000000" in out


def test_format_reference_covers_every_type():
    sys.path.insert(0, str(DOCS))
    try:
        from _format_reference import render
    finally:
        sys.path.remove(str(DOCS))
    text = render(REPO / "spec")
    ext = yaml.safe_load((REPO / "spec" / "ndx-celltype.extensions.yaml").read_text())
    for group in ext["groups"]:
        assert f"## {group['neurodata_type_def']}" in text
        for part in group.get("datasets", []) + group.get("attributes", []) + group.get("links", []):
            assert f"| {part['name']} |" in text


@pytest.mark.skipif(importlib.util.find_spec("myst_parser") is None, reason="needs the docs extra")
def test_sphinx_docs_build_without_warnings(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(DOCS), str(tmp_path / "html")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    html = (tmp_path / "html" / "_generated" / "format.html").read_text()
    assert "CellTypeAnnotations" in html
    assert (tmp_path / "html" / "extension.html").exists()
