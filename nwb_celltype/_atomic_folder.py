"""Folders written whole or not at all (:func:`atomic_folder`): built beside the target, then
swapped in with two renames, with the entries a command writes told from a user's files
(:func:`check_folder`), and cleaned up whole when a write fails (:func:`cleanup_scope`: a second
signal does not cut the cleanup short); the file-level machinery is :mod:`._atomic`."""

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
    FOLDER_TAG,
    OLD_FOLDER_TAG,
    Interrupted,
    _Commit,
    _committing,
    _fsync_dir,
    _undone_on_failure,
    _write_guards,
    as_output_error,
    cleanup_on_signals,
    install_on_cleanup_signals,
    raise_if_interrupted,
    temp_path,
)
from ._files import give_mode
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


#: Open :func:`cleanup_scope` blocks; the depth of the one a cleanup began in (0: none begun);
#: the cleanup signals recorded (not acted on) since, and the handlers that recording replaced.
_SCOPES: list[bool] = []
_BEGUN_AT: list[int] = [0]
_LATE: list[int] = []
_REPLACED: dict[int, object] = {}


def _record_late(signum, frame) -> None:
    _LATE.append(signum)


def begin_cleanup() -> None:
    """Start cleaning up after a failed or interrupted write: until the :func:`cleanup_scope` it
    began in ends (or the outermost one, while the failure propagates), cleanup signals are recorded
    instead of raising, so that a second Ctrl-C or SIGTERM cannot leave a half-removed folder. A
    no-op outside a scope, when already begun, and outside the main thread."""
    if not _SCOPES or _BEGUN_AT[0] or threading.current_thread() is not threading.main_thread():
        return
    _BEGUN_AT[0] = len(_SCOPES)
    _REPLACED.update(install_on_cleanup_signals(_record_late))  # an ignored signal stays ignored


def _end_cleanup() -> list[int]:
    """Put back the handlers :func:`begin_cleanup` replaced (those someone else has since set are
    left alone); the signals recorded meanwhile."""
    for sig, handler in _REPLACED.items():
        with contextlib.suppress(OSError, ValueError):
            if signal.getsignal(sig) is _record_late:
                signal.signal(sig, handler)
    _REPLACED.clear()
    _BEGUN_AT[0] = 0
    late = list(_LATE)
    _LATE.clear()
    return late


@contextlib.contextmanager
def cleanup_scope() -> Iterator[None]:
    """Where a cleanup begun by :func:`begin_cleanup` runs; place it inside
    :func:`~._atomic.cleanup_on_signals`. Scopes nest: a failure leaving an inner scope hands its
    cleanup on to the enclosing one (an export removes more after its folder's own cleanup). A
    cleanup signal recorded meanwhile is acted on when the cleanup ends, as
    :class:`~._atomic.Interrupted`, unless the block already ends in an interruption (the run is
    stopping; the first signal's exit status is kept). A caller that begins a cleanup when an
    :class:`~._atomic.Interrupted` names an output as written (a signal held through a swap) takes
    that output back out: the interruption then leaves the scope as "nothing was written"."""
    _SCOPES.append(True)
    depth = len(_SCOPES)
    try:
        yield
    except BaseException as exc:
        ours = _BEGUN_AT[0] >= depth
        if ours and depth > 1:
            _BEGUN_AT[0] = depth - 1  # still cleaning up: the enclosing scope goes on with it
            raise
        late = _end_cleanup() if ours else []
        if late and not isinstance(exc, (Interrupted, KeyboardInterrupt)):
            raise Interrupted(late[0]) from exc
        if ours and isinstance(exc, Interrupted) and exc.written is not None:
            raise Interrupted(exc.signum) from exc  # the cleanup took the written output back out
        raise
    else:
        late = _end_cleanup() if _BEGUN_AT[0] >= depth else []  # the block caught the failure
        if late:
            raise Interrupted(late[0])
    finally:
        _SCOPES.pop()


def _keep_file_modes(new: Path, old: Path) -> None:
    """Give each regular file in the folder ``new`` the permission bits of the regular file at the same
    place in ``old``, the folder it replaces (:func:`~._files.give_mode`); files new to the output
    keep a new file's."""
    for folder, _dirs, files in os.walk(new):
        rel = Path(folder).relative_to(new)
        for name in files:
            path, was = Path(folder) / name, old / rel / name
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISREG(os.lstat(path).st_mode) and stat.S_ISREG(os.lstat(was).st_mode):
                    give_mode(path, was)


def remove_folder(path: Path) -> None:
    """Remove ``path``, a folder that a failed write built, as a cleanup (:func:`begin_cleanup`)."""
    begin_cleanup()
    shutil.rmtree(path, ignore_errors=True)


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

    The new folder, its sub-folders and the files it replaces get the permission bits of the older
    ones (a new folder gets a new folder's: 0777 minus the umask; a new file a new file's).
    :func:`target_lock` on ``final`` is held for the whole block; the cleanup signals that arrive
    from the swap on are acted on once the write's last steps are done (during the removal of the
    older folder, at once), as :class:`~._atomic.Interrupted` naming ``final`` (which is then complete),
    and those that arrive while a failed build is removed once that is complete (:func:`cleanup_scope`).
    A shell whose working folder was the older ``final`` is left in the removed folder (``cd`` back
    into it)."""
    final = Path(os.path.realpath(final))
    owned = tuple(owned)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise as_output_error(exc, final) from exc
    # the scope is outside the lock: its release is part of a cleanup that a signal must not cut;
    # signals from the swap on are held until all of it is done (_committing)
    with _committing(final) as commit, cleanup_on_signals(), cleanup_scope(), _write_guards(final):
        check_folder(final, replace=replace, owned=owned, what=what)
        tmp = temp_path(final, FOLDER_TAG)
        aside = None
        try:
            with _undone_on_failure(final, lambda: remove_folder(tmp)):
                tmp.mkdir()
                yield tmp
                modes = check_folder(final, replace=replace, owned=owned, what=what) or {}
                for rel, mode in sorted(modes.items(), reverse=True):
                    if (tmp / rel).is_dir() and not (tmp / rel).is_symlink():
                        os.chmod(tmp / rel, mode)
                if modes:
                    _keep_file_modes(tmp, final)
                _fsync_dir(tmp)
                raise_if_interrupted()
                commit.hold()  # the swap's two renames must not be cut in two, nor cut from its report
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
                commit.committed = True
        finally:
            if aside is not None:
                _remove_older(commit, aside)
        _fsync_dir(final.parent)


def _remove_older(commit: _Commit, older: Path) -> None:
    """Remove the older folder that the swap moved aside with the cleanup signals acting at once, not
    held: a large folder on a slow file system must not delay Ctrl-C. The new folder is in place, so a
    signal stops the run as :class:`~._atomic.Interrupted` naming it as written (:func:`_committing`),
    and what is left of the older folder is removed by the next run on the target
    (:func:`~._atomic.remove_stale_temps` removes a dead run's). Signals are held again for the last
    steps (lock release, handlers put back); one held through the swap is acted on after them."""
    commit.release()
    try:
        shutil.rmtree(older, ignore_errors=True)
    finally:  # also when a signal stops the removal: the lock release and handler restore are held
        commit.hold()
