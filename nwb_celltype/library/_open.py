"""Opening a library entry read-only: local files with pynwb directly, anything remote through
:func:`nwb_celltype.io.open_source` (the only layer that talks to servers)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ..errors import NotNWBError, SourceNotFoundError


@contextlib.contextmanager
def open_nwb(source: str) -> Iterator:
    """Yield a read-only ``pynwb.NWBFile`` for a path, URL or DANDI id."""
    from .. import nwb  # noqa: F401  (registers the extension's classes before the file is read)

    if "://" in source or source.upper().startswith("DANDI:"):
        from ..io import open_source

        with open_source(source) as src:
            yield src.nwbfile
        return
    path = Path(source)
    if not path.is_file():
        raise SourceNotFoundError(f"NWB file {path} does not exist; fix the manifest path or restore it.")
    from pynwb import NWBHDF5IO

    try:
        io = NWBHDF5IO(str(path), "r", load_namespaces=True)
    except OSError as exc:
        raise NotNWBError(f"{path} is not a readable HDF5 NWB file: {exc}") from exc
    with io:
        yield io.read()


def spike_counts(units):
    """(n_units,) spike count per unit of a Units table (``NWBFile.units`` or one in a processing
    module) from its ``spike_times`` index alone (no spike is read); None without spikes."""
    import numpy as np

    if units is None or "spike_times" not in units.colnames:
        return None
    ends = np.asarray(units["spike_times"].data[:], dtype=np.int64)  # VectorIndex: end offsets
    return np.diff(np.r_[0, ends])
