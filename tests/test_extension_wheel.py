"""The wheel ships the ndx-celltype spec: build it, install it into a bare --target folder, and load
the namespace (and write + read a file) from that installed copy, not from the source tree."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

INSTALLED_CHECK = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import nwb_celltype
    from nwb_celltype.nwb import namespace_path, add_annotations, read_annotations
    from nwb_celltype.testing import mock_NWBFile_with_units
    from pynwb import NWBHDF5IO, validate
    f = mock_NWBFile_with_units(3)
    add_annotations(f, name="t", units_region=[0, 2], labels=["GoC", "MLI"], classes=["GoC", "MLI"],
                    probabilities=[[0.9, 0.1], [0.2, 0.8]])
    with NWBHDF5IO("w.nwb", "w") as io:
        io.write(f)
    with NWBHDF5IO("w.nwb", "r") as io:
        rec = read_annotations(io.read())["t"]
    print(json.dumps({
        "package": nwb_celltype.__file__,
        "namespace": str(namespace_path()),
        "labels": rec.labels.tolist(),
        "errors": [str(e) for e in validate(path="w.nwb")],
    }))
    """
)


@pytest.mark.skipif(importlib.util.find_spec("build") is None, reason="needs the `build` package")
def test_wheel_ships_spec_and_loads_namespace_from_installed_copy(tmp_path):
    dist = tmp_path / "dist"
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-isolation"]
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", *isolation, "--outdir", str(dist), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (wheel,) = dist.glob("nwb_celltype-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for name in ("ndx-celltype.namespace.yaml", "ndx-celltype.extensions.yaml"):
            member = f"nwb_celltype/spec/{name}"
            assert member in names
            assert z.read(member) == (REPO / "spec" / name).read_bytes()
        # PEP 561: type checkers read the installed package's annotations only where it says so
        assert "nwb_celltype/py.typed" in names

    site = tmp_path / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(site),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    work = tmp_path / "work"
    work.mkdir()
    (work / "check.py").write_text(INSTALLED_CHECK)
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run(
        [sys.executable, "check.py"], capture_output=True, text=True, cwd=work, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(out["package"]).is_relative_to(site), out["package"]
    assert Path(out["namespace"]) == site / "nwb_celltype" / "spec" / "ndx-celltype.namespace.yaml"
    assert out["labels"] == ["GoC", "MLI"]
    assert out["errors"] == []
