"""Shared fixtures. The npyx oracle runs in its own environment (NWB_CELLTYPE_ORACLE_PYTHON);
tests that need it skip loudly when it is absent."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ORACLE_ENV = "NWB_CELLTYPE_ORACLE_PYTHON"


class Oracle:
    """Runs Python code in the npyx reference environment, passing arrays through .npz files."""

    def __init__(self, python: str, workdir: Path):
        self.python = python
        self.workdir = workdir

    def run(self, code: str, timeout: float = 1800, **arrays) -> dict[str, np.ndarray]:
        """Run ``code`` with the arrays bound as variables (from ``inputs.npz``); the code must
        assign a dict ``out`` of arrays, which is returned."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        inp = self.workdir / "inputs.npz"
        out = self.workdir / "outputs.npz"
        np.savez(inp, **arrays)
        script = (
            "import numpy as np, os\n"
            f"_d = dict(np.load({str(inp)!r}, allow_pickle=False))\n"
            "globals().update(_d)\n" + textwrap.dedent(code) + f"\nnp.savez({str(out)!r}, **out)\n"
        )
        (self.workdir / "script.py").write_text(script)
        proc = subprocess.run(
            [self.python, str(self.workdir / "script.py")],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"oracle script failed:\n{proc.stderr[-5000:]}")
        return dict(np.load(out, allow_pickle=False))


@pytest.fixture(scope="session")
def oracle(tmp_path_factory) -> Oracle:
    python = os.environ.get(ORACLE_ENV)
    if not python or not Path(python).exists():
        msg = (
            f"npyx oracle environment not found ({ORACLE_ENV}={python!r}); "
            "run `make oracle` (see README) to build it. Parity test SKIPPED."
        )
        print(msg, file=sys.stderr)
        pytest.skip(msg)
    check = subprocess.run([python, "-c", "import six, npyx.corr, npyx.datasets"], capture_output=True)
    if check.returncode != 0:
        pytest.skip(f"npyx does not import in {python}: {check.stderr.decode()[-500:]}")
    return Oracle(python, tmp_path_factory.mktemp("oracle"))


@pytest.fixture(scope="module")
def torch_one_thread():
    """torch single-threaded for a test module: tiny networks gain nothing from intra-op threads,
    which only add contention on a shared 2-core machine (use via ``pytest.mark.usefixtures``)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def demo_bundle():
    """The bundled demo model, loaded once for the session (modules may define their own)."""
    from nwb_celltype.model import load_demo_bundle

    return load_demo_bundle()
