"""Checksums of every dataset in an HDF5 file, to show that a write left existing data untouched."""

from __future__ import annotations

import hashlib
import os

import numpy as np


def dataset_checksums(path: str | os.PathLike) -> dict[str, str]:
    """sha256 of every dataset's stored values + dtype + shape + attributes, keyed by HDF5 path.

    String and reference datasets are hashed through their ``repr`` (their in-memory bytes are
    pointers), numeric ones through their raw bytes.
    """
    import h5py

    out: dict[str, str] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            h = hashlib.sha256()
            h.update(f"{obj.dtype}{obj.shape}".encode())
            value = obj[()]
            if isinstance(value, np.ndarray) and value.dtype != object:
                h.update(value.tobytes())
            else:
                h.update(repr(value.tolist() if isinstance(value, np.ndarray) else value).encode())
            for k in sorted(obj.attrs):
                h.update(f"{k}={obj.attrs[k]!r}".encode())
            out[name] = h.hexdigest()

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return out
