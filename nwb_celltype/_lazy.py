"""Lazy re-exports for package ``__init__`` modules, so that importing a package does not import
the heavy modules (JAX, PyTorch) behind its public names until one is used."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, names: dict[str, str], namespace: dict) -> tuple[Callable, Callable]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package``.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    names : dict
        Public name -> module (relative to ``package``) that defines it.
    namespace : dict
        The package's ``globals()`` (for ``__dir__``).
    """

    def __getattr__(name: str):
        mod = names.get(name)
        if mod is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(mod, package), name)

    def __dir__() -> list[str]:
        return sorted([*namespace, *names])

    return __getattr__, __dir__
