"""Shared fixtures and suite-wide guards.

The npyx oracle runs in its own environment (NWB_CELLTYPE_ORACLE_PYTHON, built by ``make oracle``
with tests/oracle/build.py). When it is missing or not ready (tests/oracle/ready.py), the tests that
need it fail in CI (``CI=true``) and skip loudly elsewhere. tests/suite_guards.py fails a CI run
with skips not listed in tests/known_skips.txt and a test that starts a server unmarked ``network``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from suite_guards import in_ci
from suite_guards import pytest_configure as pytest_configure  # skip and server guards

ORACLE_ENV = "NWB_CELLTYPE_ORACLE_PYTHON"
ORACLE_TOOLS = Path(__file__).resolve().parent / "oracle"


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
            f"import sys; sys.path.insert(0, {str(ORACLE_TOOLS)!r})\n"
            "import torchvision_ops  # noqa: F401  (see tests/oracle/torchvision_ops.py)\n"
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


def _oracle_unavailable(msg: str):
    """Fail in CI, skip loudly elsewhere."""
    if in_ci():
        pytest.fail(f"CI=true: the npyx parity tests must run. {msg}", pytrace=False)
    msg += " Parity test SKIPPED."
    print(msg, file=sys.stderr)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def oracle(tmp_path_factory) -> Oracle:
    python = os.environ.get(ORACLE_ENV)
    if not python or not Path(python).exists():
        _oracle_unavailable(
            f"npyx oracle environment not found ({ORACLE_ENV}={python!r}); run `make oracle` (see "
            "README, Development) to build it."
        )
    ready = subprocess.run(
        [python, str(ORACLE_TOOLS / "ready.py")], capture_output=True, text=True, timeout=600
    )
    if ready.returncode != 0:
        _oracle_unavailable(
            f"the npyx oracle environment {python} is not ready (tests/oracle/ready.py):\n"
            f"{ready.stderr[-3000:]}\nRebuild it with `make oracle`."
        )
    return Oracle(python, tmp_path_factory.mktemp("oracle"))


#: Our NWB Inspector checks (nwb_celltype/nwb/inspector_checks.py), all run wherever output is inspected.
OUR_INSPECTOR_CHECKS = (
    "check_cell_type_annotations_consistent",
    "check_cell_type_evidence",
    "check_cell_type_classifier",
)


@pytest.fixture(scope="session")
def inspect_nwb():
    """``inspect_nwb(path)`` -> list of nwbinspector messages (DANDI configuration) with our checks
    registered explicitly: imported here and passed as ``checks``, never by another test's side effect."""
    import nwbinspector

    import nwb_celltype.nwb.inspector_checks  # noqa: F401  (registers our checks)

    checks = list(nwbinspector.available_checks)
    missing = sorted(set(OUR_INSPECTOR_CHECKS) - {c.__name__ for c in checks})
    assert not missing, f"our inspector checks {missing} are not registered"
    config = nwbinspector.load_config("dandi")

    def run(path) -> list:
        return list(nwbinspector.inspect_nwbfile(nwbfile_path=str(path), checks=checks, config=config))

    return run


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
