"""Type checkers and IDEs see the public API: ``nwb_celltype.annotate(...)`` is a call returning an
:class:`AnnotationResult` (not "module not callable"), the lazily exported names have their real
signatures, and the package is marked typed (PEP 561 ``py.typed``).

The public names are exported lazily (``_LAZY`` + a module ``__getattr__``), which static checkers
cannot follow; each lazy package repeats them in an ``if TYPE_CHECKING:`` block. The first test keeps
that block equal to ``_LAZY``; the second runs the real mypy on a user's script.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAZY_PACKAGES = ["nwb_celltype", "nwb_celltype/model", "nwb_celltype/features", "nwb_celltype/io"]


def _lazy_and_type_checking_names(init: Path) -> tuple[set, set]:
    tree = ast.parse(init.read_text(encoding="utf-8"))
    lazy, checked = None, set()
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if isinstance(target, ast.Name) and target.id == "_LAZY":
            lazy = {(module, name) for name, module in ast.literal_eval(node.value).items()}
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom), ast.dump(imp)
                for alias in imp.names:
                    # "x as x": the explicit re-export form that checkers honour in a typed package
                    assert alias.asname == alias.name, f"{init}: import {alias.name} as {alias.name}"
                    checked.add(("." * imp.level + (imp.module or ""), alias.name))
    assert lazy is not None, f"{init} has no _LAZY"
    return lazy, checked


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_type_checking_block_names_every_lazy_export(package):
    lazy, checked = _lazy_and_type_checking_names(REPO / package / "__init__.py")
    assert checked == lazy, (
        f"only in _LAZY: {sorted(lazy - checked)}; only in TYPE_CHECKING: {sorted(checked - lazy)}"
    )


def test_the_package_is_marked_typed():
    assert (REPO / "nwb_celltype" / "py.typed").is_file()


USER_SCRIPT = textwrap.dedent(
    """
    import nwb_celltype
    from nwb_celltype import annotate, extract_features
    from nwb_celltype.model import load_bundle

    result = nwb_celltype.annotate("x.nwb", threshold=3.0)
    reveal_type(result)
    reveal_type(annotate("x.nwb").n_units)
    reveal_type(extract_features)
    reveal_type(load_bundle)
    nwb_celltype.annotate("x.nwb", thresold=3.0)
    """
)


def test_mypy_sees_the_public_api(tmp_path):
    (tmp_path / "user.py").write_text(USER_SCRIPT)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--python-executable",
            sys.executable,
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-error-summary",
            "user.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    lines: dict[int, str] = {}
    for m in re.finditer(r"^user\.py:(\d+): (.*)$", out, flags=re.M):
        lines.setdefault(int(m.group(1)), m.group(2))  # a line's first message
    assert "not callable" not in out, out
    assert "py.typed" not in out, out  # mypy found the package's annotations
    assert lines[7] == 'note: Revealed type is "nwb_celltype._annotate_result.AnnotationResult"', out
    assert re.fullmatch(r'note: Revealed type is "(builtins\.)?int"', lines[8]), out
    assert "-> nwb_celltype.features.config.FeatureSet" in lines[9], out
    assert "-> nwb_celltype.model.bundle.ModelBundle" in lines[10], out
    # a misspelt option is caught before anything runs
    assert lines[11].startswith('error: Unexpected keyword argument "thresold" for "annotate"'), out
