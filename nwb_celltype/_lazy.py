"""Lazy re-exports for package ``__init__`` modules, so that importing a package does not import
the heavy modules (JAX, PyTorch) behind its public names until one is used; and a post-import hook
(:func:`after_import`) for state a heavy dependency needs once someone imports it."""

from __future__ import annotations

import contextlib
import importlib
import sys
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


class _AfterImport:
    """Meta-path finder that runs ``callback`` once, right after module ``name`` finishes importing
    (whoever imports it), then removes itself. It finds nothing itself: it asks the other finders
    and wraps the loader they return. (Plain classes: the import system only needs the methods,
    and ``importlib.abc`` would import ``importlib.resources`` at start-up.)"""

    def __init__(self, name: str, callback: Callable[[], None]) -> None:
        self.name = name
        self.callback = callback

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _RunAfter(spec.loader, self)
                return spec
        return None

    def done(self) -> None:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        self.callback()


class _RunAfter:
    """Loader wrapper: the real loader's module, then the hook's callback."""

    def __init__(self, loader, hook: _AfterImport) -> None:
        self.loader = loader
        self.hook = hook

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        self.hook.done()

    def __getattr__(self, name):  # get_resource_reader, is_package, ... of the real loader
        return getattr(self.loader, name)


def after_import(name: str, callback: Callable[[], None]) -> None:
    """Run ``callback`` when top-level module ``name`` is imported: now if it already is, else
    right after its first import (by anyone). Lets a package prepare a heavy dependency's state
    without importing that dependency itself."""
    if name in sys.modules:
        callback()
    else:
        sys.meta_path.insert(0, _AfterImport(name, callback))
