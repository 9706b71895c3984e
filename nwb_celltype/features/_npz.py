"""Reading the ``.npz`` files this package writes (features files): plain arrays, no pickles, and
one clear error, saying what the file is instead, for anything else (an NWB file, an empty or
truncated download, a pickled archive)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import FeatureError

#: What numpy raises for a file that is not a readable .npz archive (EOFError: an empty file).
_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile)


def not_a_features_file(path: str | Path, exc: BaseException) -> FeatureError:
    """The error for ``path``, which ``np.load`` could not read as a features file (``exc``)."""
    path = Path(path)
    how = "write one with `nwb-celltype features SOURCE --out FEATURES.npz`"
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        size, head = None, b""
    if path.suffix.lower() == ".nwb":
        why = (
            "it is an NWB file: label its units with `nwb-celltype annotate`, or compute its features "
            "with `nwb-celltype features` first"
        )
    elif size == 0:
        why = f"it is empty; {how}"
    elif head[:4] != b"PK\x03\x04":
        why = f"it is not a .npz archive (another format); {how}"
    elif "pickle" in str(exc).lower():
        why = f"it holds pickled Python objects, which features files never do; {how}"
    elif isinstance(exc, (zipfile.BadZipFile, EOFError)) or "zip" in str(exc).lower():
        why = f"it is not a complete .npz archive (truncated?); {how}"
    else:
        why = f"{type(exc).__name__}: {exc}; {how}"
    return FeatureError(f"{path} is not a features file: {why}.")


def read_npz(path: str | Path, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` at ``path`` (only ``keys`` where given, those present), or
    :func:`not_a_features_file`'s error."""
    try:
        with np.load(path, allow_pickle=False) as z:
            names = z.files if keys is None else [k for k in keys if k in z.files]
            return {k: z[k] for k in names}
    except _UNREADABLE as exc:
        raise not_a_features_file(path, exc) from exc
