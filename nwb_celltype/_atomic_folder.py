"""Folders written whole or not at all (:func:`atomic_folder`): built beside the target, then
swapped in with two renames, with the entries a command writes told from a user's files
(:func:`check_folder`); the file-level machinery is :mod:`._atomic`."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import threading
from collections.abc import Iterable, Iterator
from fnmatch import fnmatchcase
from pathlib import Path

from ._atomic import (
    _TEMP,
    CLEANUP_SIGNALS,
    FOLDER_TAG,
    OLD_FOLDER_TAG,
    _fsync_dir,
    _undone_on_failure,
    _write_guards,
    as_output_error,
    raise_if_interrupted,
    temp_path,
)
from .errors import AnnotationExistsError, NwbCelltypeError, OutputError


def _owns(rel: str, owned: Iterable[str]) -> bool:
    """Whether the entry at ``rel`` (a POSIX path inside the folder) is one the command writes: it
    matches an ``owned`` pattern (:func:`fnmatch.fnmatchcase`), or is a temporary or lock file of one."""
    parent, _, name = rel.rpartition("/")
    m = _TEMP.match(name)
    if m:
        name = m["name"]
    elif name.startswith(".") and name.endswith(".lock"):
        name = name[1:-5]
    rel = f"{parent}/{name}" if parent else name
    return any(fnmatchcase(rel, pattern) for pattern in owned)


def check_folder(
    final: str | os.PathLike, *, replace: bool, owned: Iterable[str], what: str = "this output"
) -> dict[str, int] | None:
    """Whether :func:`atomic_folder` may replace the folder ``final``: None when it does not exist,
    else the permission bits of it and of its sub-folders (by relative path; ``""`` is ``final``).

    Raises
    ------
    OutputError
        ``final`` is not a folder, a folder in it is not writable, or it holds entries that do not
        match ``owned`` (a user's files, which the swap would remove): nothing is written.
    AnnotationExistsError
        It is not empty and ``replace`` is not given.
    """
    final = Path(final)
    owned = tuple(owned)
    if not os.path.lexists(final):
        return None
    if not final.is_dir():
        raise OutputError(f"{final} exists and is not a folder; choose another output folder.")
    modes: dict[str, int] = {}
    foreign: list[str] = []
    entries = 0

    def walk(folder: Path, rel: str) -> None:
        nonlocal entries
        modes[rel.rstrip("/")] = stat.S_IMODE(os.stat(folder).st_mode)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputError(f"cannot replace {final}: the folder {folder} is not writable.")
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            entries += 1
            r = rel + entry.name
            if not _owns(r, owned):
                foreign.append(r + ("/" if entry.is_dir(follow_symlinks=False) else ""))
            elif entry.is_dir(follow_symlinks=False):
                walk(Path(entry.path), r + "/")

    try:
        walk(final, "")
    except OSError as exc:
        if isinstance(exc, NwbCelltypeError):
            raise
        raise as_output_error(exc, final) from exc
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputError(
            f"{final} holds files that are not part of {what} ({shown}); the folder is replaced as a "
            "whole, so move them out of it or choose another output folder. Nothing was written."
        )
    if entries and not replace:
        raise AnnotationExistsError(
            f"{final} exists; pass --overwrite to replace it, or choose another path."
        )
    return modes


@contextlib.contextmanager
def _signals_held(held: list[int]) -> Iterator[None]:
    """Record the cleanup signals that arrive during the block in ``held`` instead of acting on them
    (a swap's two renames must not be cut in two). A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {}
    for sig in CLEANUP_SIGNALS:
        with contextlib.suppress(OSError, ValueError):
            old[sig] = signal.signal(sig, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


@contextlib.contextmanager
def atomic_folder(
    final: str | os.PathLike, *, replace: bool, owned: Iterable[str], what: str = "this output"
) -> Iterator[Path]:
    """Yield a new pid-stamped folder beside ``final`` (``.NAME.pidN.XXXXXXXX.tmp.dir``, same file
    system) to fill; when the block succeeds it is swapped in whole: the older ``final`` is renamed
    aside, the new folder renamed into place, then the older one removed. On any failure, signal (see
    :func:`cleanup_on_signals`) or full disk the new folder is removed and ``final`` is untouched.

    Parameters
    ----------
    final : path
        The folder to create or replace (a symbolic link to a folder: the folder it points to). Its
        parent folders are created when missing.
    replace : bool
        Replace a ``final`` that is not empty; without it that is
        :class:`~nwb_celltype.errors.AnnotationExistsError` (checked again at the swap).
    owned : patterns
        The entries the command writes, as :func:`fnmatch.fnmatchcase` patterns of paths inside the
        folder (``"index.html"``, ``"units"``, ``"units/unit_*.png"``). An existing ``final`` holding
        anything else (a user's files) is refused before the block and again at the swap
        (:func:`check_folder`), since the swap would remove it; owned entries the new output lacks
        (figures of units not drawn this time) go with the older folder.
    what : str
        What the folder holds, for the error naming a user's files ("a report").

    The new folder and its sub-folders get the permission bits of the older ones (a new folder gets
    a new folder's: 0777 minus the umask). :func:`target_lock` on ``final`` is held for the whole
    block; the cleanup signals that arrive during the swap itself are acted on once it is complete.
    A shell whose working folder was the older ``final`` is left in the removed folder (``cd`` back
    into it)."""
    final = Path(os.path.realpath(final))
    owned = tuple(owned)
    held: list[int] = []
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise as_output_error(exc, final) from exc
    with _write_guards(final):
        check_folder(final, replace=replace, owned=owned, what=what)
        tmp = temp_path(final, FOLDER_TAG)
        aside = None
        try:
            with _undone_on_failure(final, lambda: shutil.rmtree(tmp, ignore_errors=True)):
                tmp.mkdir()
                yield tmp
                modes = check_folder(final, replace=replace, owned=owned, what=what) or {}
                for rel, mode in sorted(modes.items(), reverse=True):
                    if (tmp / rel).is_dir() and not (tmp / rel).is_symlink():
                        os.chmod(tmp / rel, mode)
                _fsync_dir(tmp)
                raise_if_interrupted()
                with _signals_held(held):
                    if os.path.lexists(final):
                        older = temp_path(final, OLD_FOLDER_TAG)
                        os.rename(final, older)
                        try:
                            os.rename(tmp, final)
                        except BaseException:
                            os.rename(older, final)  # if this fails too, a later run renames it back
                            raise
                        aside = older
                    else:
                        os.rename(tmp, final)
                _fsync_dir(final.parent)
        finally:
            if aside is not None:
                shutil.rmtree(aside, ignore_errors=True)
    for sig in held:  # arrived during the swap: acted on now, with the caller's handlers
        signal.raise_signal(sig)
