"""Checks of a command's output path before any work: it can be written (:func:`check_output_path`)
and it is nothing the command reads (:func:`check_not_input`), whatever ``--overwrite`` says."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import OutputError


def check_output_path(path: str | os.PathLike, overwrite: bool, *, inputs=(), option: str = "--out") -> None:
    """Refuse, before any work, an output that is one of ``inputs`` or a file of an input folder
    (:func:`check_not_input`, even with ``overwrite``), that is a folder, that exists (without
    ``overwrite``), or whose folder does not exist or is not writable."""
    path = Path(path)
    check_not_input(path, inputs, option=option)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; name a file to write.")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputError(f"{path} exists; pass --overwrite (overwrite=True) to replace it.")
    folder = path.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {path}: folder {folder} does not exist; create it first.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: folder {folder} is not writable.")


def check_not_input(out: str | os.PathLike, inputs, *, option: str = "--out") -> None:
    """Refuse (:class:`~nwb_celltype.errors.OutputError`, whatever ``--overwrite`` says) an output
    that would replace what the command reads: one of ``inputs`` (paths; None entries and paths that
    do not exist are skipped) itself, through a symlink or as a hard link of it, or a file of an input
    folder. For a folder of feature tables those are the files the table reader opens
    (:data:`~nwb_celltype.library.tables.TABLE_FILES`: labels.csv, acg.csv, ..., dataset.json) and
    their symlinks' targets; any other file there (``predict hull --out hull/predictions.tsv``, again
    with ``--overwrite``) is written. Another folder (a saved SpikeInterface object, a model bundle)
    is read as a whole: every path in it is refused, new or not (so a second run is refused as the
    first was), and every path a symbolic link in it leads to (a file, or one in a linked folder). Outputs are
    written by rename, so a hard link of a file in a folder keeps its content and is not refused."""
    out = Path(out)
    real = Path(os.path.realpath(out))  # follows every symlink, the last component's too
    for src in inputs:
        if src is None or not isinstance(src, (str, os.PathLike)):
            continue
        src = Path(src)
        if not src.exists():
            continue
        if real == Path(os.path.realpath(src)) or _samefile(out, src):
            raise OutputError(f"{option} {out} is the input {src} itself; write the output to another file.")
        if src.is_dir() and _file_of_folder(out, real, src):
            raise OutputError(
                f"{option} {out} lies in the input folder {src} (or behind a link in it), which this "
                "command reads; write the output elsewhere."
            )


def is_table_folder(folder: Path) -> bool:
    """Whether the folder ``folder`` is read as feature tables: neither a saved SpikeInterface object
    nor a model bundle (``model_card.json``), as :func:`~nwb_celltype.classify.read_feature_input`
    tells them apart."""
    from .classify import spikeinterface_object

    return not (folder / "model_card.json").exists() and spikeinterface_object(folder) is None


def _file_of_folder(out: Path, real: Path, folder: Path) -> bool:
    """Whether ``out`` (whose real path is ``real``) is a file the command reads in ``folder``."""
    if is_table_folder(folder):
        from .library.tables import TABLE_FILES

        return any(real == Path(os.path.realpath(folder / name)) for name in TABLE_FILES)
    folder_real = Path(os.path.realpath(folder))
    return folder_real in real.parents or _linked_from(real, folder)


def _linked_from(real: Path, folder: Path) -> bool:
    """Whether a symbolic link in ``folder`` (or in its sub-folders) points at ``real`` or at a folder
    holding it: the command reads ``real`` through that link. Only the folder's entries are listed
    (no stat per file); links are resolved, real sub-folders walked."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return False
    for entry in entries:
        try:
            if entry.is_symlink():
                target = Path(os.path.realpath(entry.path))
                if target == real or target in real.parents:
                    return True
            elif entry.is_dir(follow_symlinks=False) and _linked_from(real, Path(entry.path)):
                return True
        except OSError:
            continue
    return False


def _samefile(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # a missing or dangling path is no file of the input
        return False
