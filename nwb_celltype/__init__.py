"""nwb-celltype: cell-type classification of spike-sorted units in NWB files.

Importing the package loads the ``ndx-celltype`` NWB extension namespace. The public API is
re-exported lazily so that ``import nwb_celltype`` imports neither JAX nor PyTorch.
"""

from __future__ import annotations

import importlib

from .errors import *  # noqa: F403
from .errors import NwbCelltypeError

__version__ = "0.1.0"

#: public name -> module (relative) that defines it; resolved on first access.
_LAZY: dict[str, str] = {}


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'nwb_celltype' has no attribute {name!r}")
    return getattr(importlib.import_module(mod, __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["NwbCelltypeError", "__version__", *_LAZY]
