"""The single-file writers every output of a known kind goes through: text, an in-memory NWBFile,
numpy arrays, a matplotlib figure; each one :func:`~nwb_celltype._atomic.atomic_write` (complete
or not at all, the replaced file's mode kept)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ._atomic import atomic_write
from .errors import OutputError


def write_text_file(final: str | os.PathLike, text: str, *, replace: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``final`` through :func:`atomic_write` (complete or not at all)."""
    final = Path(final)
    with atomic_write(final, replace=replace) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return final


def write_nwbfile(nwbfile, final: str | os.PathLike, *, replace: bool) -> Path:
    """Write an in-memory pynwb ``NWBFile`` as the new file ``final`` through :func:`atomic_write`."""
    from pynwb import NWBHDF5IO

    final = Path(final)
    with atomic_write(final, replace=replace) as tmp, NWBHDF5IO(str(tmp), "w") as io:
        io.write(nwbfile)
    return final


def write_npz(
    final: str | os.PathLike, arrays: dict, *, replace: bool = True, compressed: bool = True
) -> Path:
    """Write ``arrays`` (compressed unless told) to ``final`` (``.npz`` appended when missing; no
    pickles) through :func:`atomic_write`; returns the path written."""
    import numpy as np

    final = Path(final)
    if final.suffix != ".npz":
        final = final.with_name(final.name + ".npz")
    if not final.parent.exists():
        raise OutputError(f"cannot write {final}: folder {final.parent} does not exist; create it first.")
    with atomic_write(final, replace=replace) as tmp, open(tmp, "wb") as fh:
        (np.savez_compressed if compressed else np.savez)(fh, **arrays)
    return final


def figure_format(final: str | os.PathLike) -> str:
    """The format a figure named ``final`` is written in (its suffix; none: png), refused with
    :class:`OutputError` where matplotlib writes no such format."""
    from matplotlib.backend_bases import FigureCanvasBase

    final = Path(final)
    fmt = final.suffix.lstrip(".").lower() or "png"
    supported = FigureCanvasBase.get_supported_filetypes()
    if fmt not in supported:
        raise OutputError(
            f"cannot write a figure as {final.name}: matplotlib writes {', '.join(sorted(supported))}; "
            "name the file .png (or .pdf, .svg)"
        )
    return fmt


def write_figure(fig, final: str | os.PathLike, **savefig_kwargs) -> Path:
    """Save a matplotlib figure to ``final`` (format from its suffix) through :func:`atomic_write`,
    without the per-target lock (figures of one report are each written by one process)."""
    final = Path(final)
    fmt = figure_format(final)
    tag = f"tmp.{fmt}" if re.fullmatch(r"[a-z]+", fmt) else "tmp"  # .NAME.pidN.XXXXXXXX.tmp.png
    with atomic_write(final, replace=True, lock=False, tag=tag) as tmp:
        fig.savefig(tmp, format=fmt, **savefig_kwargs)
    return final
