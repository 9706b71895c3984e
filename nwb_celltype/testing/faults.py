"""Helpers of the fault-injection tests (issue 18): break a Units table on disk in a chosen way."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np


def edit_units(path: str | os.PathLike, fn: Callable) -> None:
    """Call ``fn(units_group)`` on the HDF5 group ``/units`` of the NWB file at ``path`` (in place)."""
    import h5py

    with h5py.File(path, "r+") as f:
        fn(f["units"])


def replace_dataset(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable:
    """An edit for :func:`edit_units`: the dataset ``name`` becomes ``fn(its values as int64)``,
    stored as int64 (so that negative or decreasing indexes can be written)."""

    def edit(group) -> None:
        data = np.asarray(fn(group[name][()].astype(np.int64)), dtype=np.int64)
        del group[name]
        group.create_dataset(name, data=data)

    return edit
