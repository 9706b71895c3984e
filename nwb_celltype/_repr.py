"""Short reprs for the package's result and model objects: a few lines of counts, shapes and names,
never whole arrays, so that showing an object in a notebook does not flood the output.

Use :func:`compact_repr` in a class's ``__repr__`` (a dataclass keeps its own ``__eq__`` etc.; it only
leaves an explicit ``__repr__`` alone)::

    def __repr__(self) -> str:
        return compact_repr(self, n_units=len(self.unit_ids), classes=self.classes, acg=self.acg)

numpy only where the values are arrays (it is not imported here).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping

#: Longest repr :func:`compact_repr` returns (characters).
MAX_REPR_CHARS = 1000
#: Longest text one value is shown with.
MAX_VALUE_CHARS = 120
#: Items of a short list or dict shown before "...".
MAX_ITEMS = 8


def _clip(text: str, width: int = MAX_VALUE_CHARS) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def summarize(value) -> str:
    """One short line for ``value``: an array's shape and dtype, a list's or dict's length and first
    items, a path or string (clipped), else ``repr`` (clipped)."""
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None and dtype is not None and not isinstance(value, str | bytes):
        if shape == ():  # a numpy scalar
            return _clip(repr(value.item()) if hasattr(value, "item") else repr(value))
        return f"array(shape={tuple(shape)}, dtype={dtype})"
    if isinstance(value, os.PathLike):
        return _clip(repr(os.fspath(value)))
    if isinstance(value, Mapping):
        items = list(value.items())
        if all(_is_scalar(v) for _, v in items) and len(items) <= MAX_ITEMS:
            return _clip("{" + ", ".join(f"{k!r}: {v!r}" for k, v in items) + "}")
        keys = ", ".join(str(k) for k, _ in items[:MAX_ITEMS]) + (", ..." if len(items) > MAX_ITEMS else "")
        return _clip(f"<{len(items)} entries: {keys}>")
    if isinstance(value, list | tuple | set | frozenset):
        seq = list(value)
        if all(_is_scalar(v) for v in seq) and len(seq) <= MAX_ITEMS:
            return _clip(repr(value))
        return f"<{len(seq)} items>"
    return _clip(repr(value))


def _is_scalar(value) -> bool:
    return (
        value is None
        or isinstance(value, bool | int | float | str | bytes)
        or getattr(value, "shape", 0) == ()
    )


def counts(values) -> dict:
    """``{value: count}`` of an array or list of labels (sorted by value), for a repr."""
    return dict(sorted(Counter(str(v) for v in values).items()))


def compact_repr(obj, /, **fields) -> str:
    """``ClassName(`` then one ``name=value`` line per field (values through :func:`summarize`),
    then ``)``; at most :data:`MAX_REPR_CHARS` characters. Fields whose value is None are left out."""
    name = type(obj).__name__
    lines = [f"    {k}={summarize(v)}," for k, v in fields.items() if v is not None]
    text = f"{name}(\n" + "\n".join(lines) + "\n)"
    if len(text) > MAX_REPR_CHARS:
        text = text[: MAX_REPR_CHARS - 5] + "\n...)"
    return text
