"""pynwb for the reading layer, imported so that an interrupt cannot break it for the rest of the
process.

pynwb's first import (and hdmf's) fills process-wide registries of classes and namespaces, and the
package's post-import hook then loads the ``ndx-celltype`` namespace and registers its classes. An
exception part-way (Ctrl-C, a signal turned into an exception) leaves half-imported modules behind;
importing again reuses them and builds a broken type map, so every later read in the process fails
as if the file were corrupt. Here the modules a failed import left behind are forgotten, so the next
read imports them afresh. Reading a file loads its cached namespaces into a copy of the type map
(pynwb's ``load_namespaces=True``), which an interrupt cannot damage."""

from __future__ import annotations

import sys

__all__ = ["nwbhdf5io"]

#: Top-level packages (and our subpackage) whose half-imported modules are forgotten.
_FRESH = ("pynwb", "hdmf", "nwb_celltype.nwb")
_ready = False


def nwbhdf5io():
    """pynwb's ``NWBHDF5IO``, with the ``ndx-celltype`` namespace loaded."""
    global _ready
    if _ready and "pynwb" in sys.modules:
        return sys.modules["pynwb"].NWBHDF5IO
    before = set(sys.modules)
    try:
        from pynwb import NWBHDF5IO

        from ..nwb._namespace import load_namespace

        load_namespace()
    except BaseException:
        _forget(before)
        raise
    _ready = True
    return NWBHDF5IO


def _forget(before: set[str]) -> None:
    """Drop the modules of :data:`_FRESH` imported since ``before`` (a failed import's leftovers),
    and re-arm the package's post-import hook when pynwb itself goes."""
    stale = [
        m
        for m in list(sys.modules)
        if m not in before and any(m == p or m.startswith(p + ".") for p in _FRESH)
    ]
    for m in stale:
        sys.modules.pop(m, None)
    if "pynwb" not in before:
        import nwb_celltype

        from .._lazy import _AfterImport, after_import

        if not any(isinstance(f, _AfterImport) and f.name == "pynwb" for f in sys.meta_path):
            after_import("pynwb", nwb_celltype._load_namespace)
