"""File modes of what we write: ``tempfile.mkstemp`` (and safetensors) create files readable by
their owner only (0600); a file we hand to the user must instead get the mode any new file gets
(0666 minus the umask), and a file rewritten in place must keep its own mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)  # pragma: no cover - non-Linux: set and restore
    os.umask(old)
    return old


def new_file_mode() -> int:
    """Permission bits a newly created regular file gets: 0666 minus the umask."""
    return 0o666 & ~current_umask()


def give_mode(path: str | os.PathLike, like: str | os.PathLike | None = None) -> None:
    """Set ``path``'s permission bits (a finished temporary file) to those of the existing file
    ``like``, the file it replaces: a file rewritten in place keeps its mode, and a user who
    restricted a file (0600, read-only 0444) does not find it widened. The set-user-ID and
    set-group-ID bits are dropped, as the kernel drops them when another user writes a file. When
    ``like`` is None or absent: a new file's bits (:func:`new_file_mode`, which has neither)."""
    mode = new_file_mode()
    if like is not None:
        try:
            mode = stat.S_IMODE(os.stat(like).st_mode) & ~(stat.S_ISUID | stat.S_ISGID)
        except FileNotFoundError:
            pass
    os.chmod(path, mode)


def require_regular_file(path: str | os.PathLike, what: str = "an NWB (HDF5) file") -> Path:
    """``path`` if it is a regular file (symlinks followed). A FIFO, socket or device is refused
    *before* it is opened (opening a FIFO blocks until a writer appears), a directory or a missing
    path likewise, each with our error."""
    from .errors import NotNWBError, SourceNotFoundError

    text = str(path)
    if "://" in text or text.upper().startswith("DANDI:"):
        raise NotNWBError(
            f"{text} is remote; this command reads local files only. Annotate it into a local derived "
            "file first (`nwb-celltype annotate SOURCE --out FILE.nwb`), or download it."
        )
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise SourceNotFoundError(f"{p} does not exist; expected {what}.") from None
    except OSError as exc:
        raise NotNWBError(f"cannot read {p}: {exc}") from exc
    if stat.S_ISDIR(mode):
        raise NotNWBError(f"{p} is a directory; expected {what}. Zarr NWB is not supported.")
    if not stat.S_ISREG(mode):
        raise NotNWBError(f"{p} is not a regular file (a FIFO, socket or device); expected {what} on disk.")
    return p


def require_nwb_root(h5file, path: str | os.PathLike) -> None:
    """Refuse an open HDF5 file that is not NWB (no ``nwb_version`` / ``NWBFile`` root), with our
    error instead of pynwb's TypeError."""
    from .errors import NotNWBError

    attrs = h5file.attrs
    kind = attrs.get("neurodata_type")
    kind = kind.decode() if isinstance(kind, bytes) else kind
    if kind != "NWBFile" and "nwb_version" not in attrs:
        raise NotNWBError(
            f"{path} is an HDF5 file but not NWB (root neurodata_type={kind!r}, no nwb_version); "
            "expected an NWB 2.x file."
        )


def open_nwb_h5(path: str | os.PathLike, what: str = "an NWB (HDF5) file"):
    """``h5py.File(path, "r")`` of a regular file that is NWB, else our error (never blocks on a
    FIFO, never lets h5py's OSError or pynwb's TypeError through)."""
    import h5py

    from .errors import NotNWBError

    p = require_regular_file(path, what)
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise NotNWBError(f"{p} is not an HDF5 NWB file ({exc}); expected {what}.") from exc
    try:
        require_nwb_root(f, p)
    except BaseException:
        f.close()
        raise
    return f


def held_for_writing_here(path: Path) -> bool:
    """Whether this Python process holds ``path`` open for writing through HDF5 (an ``h5py.File`` or
    ``NWBHDF5IO`` in mode ``a``, ``r+`` or ``w``). HDF5's file lock only keeps *other* processes out:
    in this one, our read shares the open file, a byte copy misses what the handle has not flushed,
    and a rename over the file leaves the handle writing to the replaced one."""
    import h5py

    try:
        st = os.stat(path)
    except OSError:
        return False
    for fid in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE):
        try:
            if not fid.get_intent() & h5py.h5f.ACC_RDWR:
                continue
            try:
                handle = fid.get_vfd_handle()
                fst = os.fstat(handle) if isinstance(handle, int) and handle >= 0 else None
            except Exception:  # a driver without a file descriptor (core, fileobj)
                fst = None
            if fst is None:
                name = fid.name
                fst = os.stat(os.fsdecode(name))
        except Exception:  # an id closed meanwhile, a name that no longer exists
            continue
        if (fst.st_dev, fst.st_ino) == (st.st_dev, st.st_ino):
            return True
    return False


def copy_and_hash(src: str | os.PathLike, dst: str | os.PathLike, block_bytes: int = 8 << 20) -> str:
    """Copy the contents of ``src`` to ``dst`` (as :func:`shutil.copyfile`) and return the sha256 of
    what was copied: one read of the file serves both, so an annotated copy records the identity
    of the very bytes it was made from."""
    import hashlib

    h = hashlib.sha256()
    buf = bytearray(block_bytes)
    view = memoryview(buf)
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        while n := fi.readinto(buf):
            h.update(view[:n])
            fo.write(view[:n])
    return h.hexdigest()
