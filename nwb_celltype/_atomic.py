"""One way to write a user's file: work on a pid-stamped copy beside it, fsync, rename — under a
lock per target file, with SIGTERM/SIGINT/SIGHUP cleanup, stale-temp removal and disk-full errors
turned into :class:`~nwb_celltype.errors.OutputError`. Every write path that touches a user's file
(annotate in every mode, library label) goes through :func:`atomic_write`, and so do the
other single-file outputs (simulate, features, exports, C4 library imports, bundle files,
figures, reports, evaluations: the writers of :mod:`._atomic_files`).
Output folders of several files (a report, an evaluation) are built the same way as a whole:
:func:`atomic_folder` fills a pid-stamped folder beside the target and swaps it in when complete.

Hard links: the result is a new file renamed over the target, so other hard links to the old file
keep the old content. An in-place write to a file with several links is therefore refused unless
``allow_hard_links`` is given (then only the named path gets the new content)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import secrets
import shutil
import signal
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ._files import give_mode
from .errors import AnnotationExistsError, NwbCelltypeError, OutputError

logger = logging.getLogger(__name__)

#: Seconds a run waits for another run's lock on the same target before giving up (env override).
LOCK_TIMEOUT_ENV = "NWB_CELLTYPE_LOCK_TIMEOUT_S"
DEFAULT_LOCK_TIMEOUT_S = 600.0
#: Signals that abort a write cleanly (temporary files removed, target untouched).
CLEANUP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_TEMP = re.compile(r"^\.(?P<name>.+)\.pid(?P<pid>\d+)\.[0-9a-f]{8}\.(?P<tag>[a-z.]+)$")
#: Tags of a folder being built by :func:`atomic_folder` and of the older folder moved aside by its swap.
FOLDER_TAG = "tmp.dir"
OLD_FOLDER_TAG = "old.dir"


class Interrupted(SystemExit):
    """A cleanup signal arrived during a write; exit status 128 + the signal number. ``written``:
    the output whose write was already complete (renamed into place) when the signal arrived, which
    then stays (None: nothing was written)."""

    def __init__(self, signum: int, written: str | os.PathLike | None = None) -> None:
        super().__init__(128 + signum)
        self.signum = signum
        self.written = None if written is None else Path(written)

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        if self.written is not None:
            return f"interrupted by {name} after {self.written} was written in full; the run stopped there"
        return f"interrupted by {name}; nothing was written"


def temp_path(final: Path, tag: str = "tmp.nwb") -> Path:
    """A hidden name beside ``final`` stamped with this process's id (``.NAME.pidN.XXXXXXXX.tag``),
    so a later run can tell the temporary files of dead runs from those of live ones."""
    return final.parent / f".{final.name}.pid{os.getpid()}.{secrets.token_hex(4)}.{tag}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(final: Path) -> list[Path]:
    """Remove temporary files (and folders, :func:`atomic_folder`) of ``final`` left by runs that no
    longer exist (killed with SIGKILL, power loss); those of live runs are kept. Returns the removed
    paths. An older folder that a dead run had moved aside for its swap while ``final`` is missing
    (killed between the two renames) is renamed back to ``final``, not removed."""
    removed = []
    with contextlib.suppress(OSError):
        for p in sorted(final.parent.iterdir()):
            m = _TEMP.match(p.name)
            if not (m and m["name"] == final.name and not _alive(int(m["pid"]))):
                continue
            if m["tag"] == OLD_FOLDER_TAG and not os.path.lexists(final):
                try:
                    os.rename(p, final)
                    logger.warning(
                        "restored %s, moved aside by a run (pid %s) that no longer exists", final, m["pid"]
                    )
                except OSError as exc:
                    logger.warning("could not restore %s from %s: %s", final, p, exc)
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
                gone = not os.path.lexists(p)
            else:
                try:
                    p.unlink()
                    gone = True
                except FileNotFoundError:
                    gone = False
            if gone:
                removed.append(p)
                logger.info("removed %s, left by a run (pid %s) that no longer exists", p, m["pid"])
    return removed


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` reports a full disk or quota: an OSError with ENOSPC/EDQUOT, or HDF5's
    RuntimeError/OSError text (``errno = 28``) that h5py raises when a write fails."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "errno = 28" in text or "No space left on device" in text or "Disk quota exceeded" in text


#: Cleanup signals received inside :func:`cleanup_on_signals` (HDF5 may turn the exception our
#: handler raises inside its C code into its own write error: the signal is what happened).
_RECEIVED: list[int] = []
#: Open :func:`cleanup_on_signals` blocks (an inner one, e.g. a manifest written during an export,
#: leaves the outer one's handlers and record in place).
_NESTED: list[bool] = []


def as_output_error(exc: BaseException, final: Path | None) -> BaseException:
    """Our one-line error for a failed write of ``final`` (None: not known; disk full named as
    such), or :class:`Interrupted` when a cleanup signal caused it (HDF5 reports an exception raised
    inside its C code as a failed write)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, Interrupted):
            return Interrupted(cause.signum, cause.written)
        if isinstance(cause, KeyboardInterrupt):
            return Interrupted(signal.SIGINT)
        cause = cause.__cause__ or cause.__context__
    if _RECEIVED:
        return Interrupted(_RECEIVED[-1])
    where = "" if final is None else f" holding {final.parent} while writing {final.name}"
    if is_disk_full(exc):
        return OutputError(
            f"no space left on the device{where}; free some space or write elsewhere. Nothing was "
            "written; the input is unchanged."
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    what = "the output" if final is None else str(final)
    return OutputError(f"could not write {what}: {first}. Nothing was written; the input is unchanged.")


def write_target(final: Path) -> Path:
    """The file a write of ``final`` creates or replaces: a symbolic link's target (written through,
    as a shell redirection would; the link stays), refused with OutputError when it exists and is
    not a regular file (a folder, FIFO or device, which a rename would replace)."""
    if final.is_symlink():
        final = final.resolve()
    try:
        st = os.stat(final)
    except FileNotFoundError:
        return final
    except OSError as exc:
        raise as_output_error(exc, final) from exc
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a FIFO, socket or device)"
        raise OutputError(f"cannot write {final}: it exists and is {kind}; name a file to write.")
    return final


def install_on_cleanup_signals(handler) -> dict[int, object]:
    """Set ``handler`` for each of :data:`CLEANUP_SIGNALS` that is not ignored; returns the handlers
    it replaced, by signal. A signal the user chose to ignore (``SIG_IGN``: ``nohup``, a background
    job, some job systems) stays ignored: it must not stop, nor be held up by, a write."""
    replaced = {}
    for sig in CLEANUP_SIGNALS:
        with contextlib.suppress(OSError, ValueError):
            if signal.getsignal(sig) is not signal.SIG_IGN:
                replaced[sig] = signal.signal(sig, handler)
    return replaced


@contextlib.contextmanager
def cleanup_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP (SIGINT already is KeyboardInterrupt) into :class:`Interrupted`
    for the duration, so ``finally`` blocks remove temporary files; a signal the user ignored stays
    ignored (:func:`install_on_cleanup_signals`). A no-op outside the main thread (Python delivers
    signals there only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _NESTED:
        _NESTED.append(True)  # nested: the outer block's handlers and record of signals stay
        try:
            yield
        finally:
            _NESTED.pop()
        return
    _NESTED.append(True)

    def handler(signum, frame):
        _RECEIVED.append(signum)
        raise Interrupted(signum)

    def unraisable(report):  # raised inside a finalizer, where Python can only print it: the
        if not isinstance(report.exc_value, Interrupted):  # signal is recorded, and acted on before
            previous_hook(report)  # the write is committed (atomic_write, atomic_folder)

    _RECEIVED.clear()
    old = install_on_cleanup_signals(handler)  # an ignored signal stays ignored
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for sig, h in old.items():
            signal.signal(sig, h)
        _RECEIVED.clear()
        _NESTED.pop()


def raise_if_interrupted() -> None:
    """Act on a cleanup signal that arrived where its exception could not propagate (a finalizer):
    called just before a write is committed."""
    if _RECEIVED:
        raise Interrupted(_RECEIVED[-1])


def lock_timeout_s() -> float:
    """The lock wait: ``$NWB_CELLTYPE_LOCK_TIMEOUT_S`` or :data:`DEFAULT_LOCK_TIMEOUT_S`."""
    try:
        return float(os.environ.get(LOCK_TIMEOUT_ENV, DEFAULT_LOCK_TIMEOUT_S))
    except ValueError:
        return DEFAULT_LOCK_TIMEOUT_S


@contextlib.contextmanager
def target_lock(final: Path, timeout_s: float | None = None) -> Iterator[None]:
    """An exclusive advisory lock (``flock``) on ``.NAME.lock`` beside ``final``: concurrent runs on
    one target serialise; a run that waits longer than ``timeout_s`` fails with OutputError. The lock
    file is removed on release; a waiter that locked a removed file retries on the new one."""
    timeout_s = lock_timeout_s() if timeout_s is None else timeout_s
    lock = final.parent / f".{final.name}.lock"
    deadline = time.monotonic() + timeout_s
    waited = False
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise as_output_error(exc, final) from exc
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise OutputError(
                            f"another nwb-celltype run is writing {final} (lock {lock.name}) and did not "
                            f"finish within {timeout_s:g} s; wait for it, or raise "
                            f"${LOCK_TIMEOUT_ENV}."
                        ) from None
                    if not waited:
                        logger.warning("waiting for another run writing %s", final)
                        waited = True
                    time.sleep(0.05)
            try:
                same = os.fstat(fd).st_ino == os.stat(lock).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)  # the holder removed that lock file: lock the current one
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def check_replaceable(path: Path, *, allow_read_only: bool = False, allow_hard_links: bool = False) -> None:
    """Refuse an in-place write to a read-only file (no write bit for anyone: root would otherwise
    replace it silently) unless ``allow_read_only``, to a file with other hard links unless
    ``allow_hard_links``, to anything but a regular file, or in a folder we cannot write."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise OutputError(f"cannot annotate {path} in place: {exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"cannot write {path} in place: it is not a regular file.")
    if not allow_read_only and not st.st_mode & 0o222:
        raise OutputError(
            f"{path} is read-only (mode {stat.S_IMODE(st.st_mode):o}); refusing to replace it. Make it "
            "writable, write a copy with --out, or pass --allow-read-only to replace it anyway."
        )
    if not allow_hard_links and st.st_nlink > 1:
        raise OutputError(
            f"{path} has {st.st_nlink} hard links; an in-place write replaces this name only and the "
            "other links would keep the old content. Write a copy with --out, or pass "
            "--allow-hard-links to accept that."
        )
    if not os.access(path.parent, os.W_OK):
        raise OutputError(f"cannot write {path} in place: its folder is not writable.")


#: Space reserved for what an append adds to a copy: a base plus a per-unit share, in bytes.
RESERVE_BASE_BYTES = 16 * 1024**2
RESERVE_PER_UNIT_BYTES = 16 * 1024


def reserve_space(path: Path, nbytes: int) -> None:
    """Allocate ``nbytes`` past the end of ``path`` (a copy about to be appended to by HDF5), so
    that a full disk fails here, cleanly, and not inside HDF5 — whose objects can crash the
    process when they are freed after a failed write. HDF5 writes new objects at its end of
    allocation, inside the reserved bytes, and truncates the file to it on close. A full disk
    raises OSError (ENOSPC), which :func:`atomic_write` reports as OutputError; file systems
    without ``fallocate`` skip the reservation."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, os.fstat(fd).st_size, max(int(nbytes), 1))
    except OSError as exc:
        if is_disk_full(exc):
            raise
        logger.debug("no space reservation for %s: %s", path, exc)
    finally:
        os.close(fd)


def check_space(tmp: Path, nbytes: int) -> None:
    """Raise OSError (ENOSPC) unless ``nbytes`` can be allocated beside ``tmp`` now (a file about
    to be written from scratch, which cannot be reserved in place)."""
    probe = tmp.with_name(tmp.name + ".reserve")
    try:
        probe.touch()
        reserve_space(probe, nbytes)
    finally:
        probe.unlink(missing_ok=True)


@contextlib.contextmanager
def _quiet_abandoned_hdf5() -> Iterator[None]:
    """While a write may fail: h5py objects of a file that hit a full disk fail again when they are
    freed and Python prints each as "Exception ignored in ..." — noise after our one-line error.
    Those (disk-full) reports are dropped; every other unraisable exception is reported as usual.
    Only a failed write collects garbage (a full collection costs ~0.1 s in a process holding JAX
    and matplotlib, per file written)."""
    import gc
    import sys

    previous = sys.unraisablehook

    def hook(unraisable):
        if not (isinstance(unraisable.exc_value, RuntimeError) and is_disk_full(unraisable.exc_value)):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    except BaseException:
        gc.collect()  # free the abandoned file's objects while the filter is in place
        raise
    finally:
        sys.unraisablehook = previous


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _Commit:
    """The end of a write, from just before its commit rename: cleanup signals are recorded, not acted
    on (:meth:`hold`), until the write's last steps (directory fsync, lock release, handlers put back)
    are done, so that none is reported as "nothing was written" once the output is in place."""

    def __init__(self) -> None:
        self.held: list[int] = []
        self.committed = False
        self._replaced: dict[int, object] = {}

        def record(signum, frame):
            self.held.append(signum)

        self._record = record

    def hold(self) -> None:
        """Record cleanup signals from now on (a no-op outside the main thread)."""
        if self._replaced or threading.current_thread() is not threading.main_thread():
            return
        self._replaced = install_on_cleanup_signals(self._record)

    def release(self) -> None:
        """Put back the handlers :meth:`hold` replaced, where nobody has set others since (an outermost
        :func:`cleanup_on_signals` has already put back the ones from before the write)."""
        for sig, handler in self._replaced.items():
            with contextlib.suppress(OSError, ValueError):
                if signal.getsignal(sig) is self._record:
                    signal.signal(sig, handler)
        self._replaced.clear()


@contextlib.contextmanager
def _committing(final: Path) -> Iterator[_Commit]:
    """Around a whole write (outside its lock and signal handlers): call ``hold()`` on the yielded
    :class:`_Commit` just before the commit rename and set ``committed`` just after it. A cleanup
    signal held meanwhile is raised when the write's last step is done: as :class:`Interrupted`
    naming the written output once it is committed, as a plain :class:`Interrupted` (nothing was
    written) when the commit failed. Once committed, an interruption is reported as after the write,
    and a failure of a last step (not part of the output) is logged, not raised."""
    commit = _Commit()
    # a file written into a folder that atomic_folder is building is not written until that folder is
    # swapped in: a signal after its rename stops the build, and the folder says what was written
    built = any((m := _TEMP.match(p.name)) and m["tag"] == FOLDER_TAG for p in final.parents)
    written = None if built else final
    try:
        yield commit
    except BaseException as exc:
        commit.release()
        interruption = isinstance(exc, (Interrupted, KeyboardInterrupt))
        if commit.committed:
            if interruption or commit.held:
                first = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
                signum = (commit.held or [first])[0]  # the first signal's status (one held before)
                raise Interrupted(signum, written) from exc
            if not isinstance(exc, Exception):
                raise
            logger.warning("wrote %s, but a step after it failed: %s", final, exc)
            return
        if commit.held and not interruption:
            raise Interrupted(commit.held[0]) from exc
        raise
    else:
        commit.release()
        if commit.held:
            raise Interrupted(commit.held[0], written)


@contextlib.contextmanager
def atomic_write(
    final: str | os.PathLike,
    *,
    replace: bool,
    keep_mode_of: str | os.PathLike | None = None,
    lock: bool = True,
    tag: str = "tmp.nwb",
) -> Iterator[Path]:
    """Yield a pid-stamped temporary path beside ``final``; when the block succeeds it is fsynced
    and renamed onto ``final``. On any failure, signal (see :func:`cleanup_on_signals`) or full disk
    ``final`` is untouched and the temporary file is removed. A signal that arrives from the rename
    on is acted on once the write's last steps are done, as :class:`Interrupted` naming ``final``
    (which is then complete).

    Parameters
    ----------
    final : path
        The file to create or replace.
    replace : bool
        Replace an existing ``final``. Without it the rename is an exclusive step (``link``): if
        ``final`` appeared meanwhile, :class:`~nwb_celltype.errors.AnnotationExistsError`.
    keep_mode_of : path, optional
        Give the result this file's permission bits (:func:`~._files.give_mode`). Default: those of the
        ``final`` it replaces (a replaced file keeps its mode), and a new file's (0666 minus the
        umask) when ``final`` does not exist.
    lock : bool
        Hold :func:`target_lock` on ``final`` for the whole block (concurrent runs serialise).
    tag : str
        The temporary file's last name part (lower-case letters and dots; :func:`temp_path`).
    """
    final = write_target(Path(final))
    with _committing(final) as commit, _write_guards(final, lock=lock):
        if not replace and final.exists():
            raise AnnotationExistsError(f"{final} exists; pass --overwrite (overwrite=True) to replace it")
        tmp = temp_path(final, tag)
        with _undone_on_failure(final, lambda: tmp.unlink(missing_ok=True)):
            yield tmp
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            give_mode(tmp, final if keep_mode_of is None else keep_mode_of)
            raise_if_interrupted()
            commit.hold()  # from here on a signal cannot cut the commit from its report
            if replace:
                os.replace(tmp, final)
            else:
                try:
                    os.link(tmp, final)  # fails if final exists: nobody else's result is replaced
                except FileExistsError:
                    raise AnnotationExistsError(
                        f"{final} was created by another run meanwhile; pass --overwrite (overwrite=True) "
                        "to replace it"
                    ) from None
            commit.committed = True
        if not replace:
            with contextlib.suppress(OSError):
                tmp.unlink()
        _fsync_dir(final.parent)


@contextlib.contextmanager
def _write_guards(final: Path, *, lock: bool = True) -> Iterator[None]:
    """What every write of ``final`` runs under: :func:`cleanup_on_signals`, the full-disk noise
    filter, :func:`target_lock` (with ``lock``), then :func:`remove_stale_temps`."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(cleanup_on_signals())
        stack.enter_context(_quiet_abandoned_hdf5())
        if lock:
            stack.enter_context(target_lock(final))
        remove_stale_temps(final)
        yield


@contextlib.contextmanager
def _undone_on_failure(final: Path, undo) -> Iterator[None]:
    """Call ``undo`` (remove the temporary file or folder) when the block fails in any way, signals
    included; an OSError or RuntimeError that is not ours becomes :func:`as_output_error`."""
    try:
        yield
    except BaseException as exc:
        undo()
        if isinstance(exc, (OSError, RuntimeError)) and not isinstance(exc, NwbCelltypeError):
            raise as_output_error(exc, final) from exc
        raise


@contextlib.contextmanager
def scratch_file(final: Path, tag: str) -> Iterator[Path]:
    """A pid-stamped scratch file beside ``final`` (e.g. spilled spike times), removed on exit."""
    path = temp_path(final, tag)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def __getattr__(name: str):
    """:func:`atomic_folder` and :func:`check_folder`, the folder counterpart of :func:`atomic_write`,
    live in :mod:`._atomic_folder` (which uses this module's helpers); importable from here too."""
    if name in ("atomic_folder", "check_folder"):
        from . import _atomic_folder

        return getattr(_atomic_folder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
