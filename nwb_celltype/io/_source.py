"""Open any NWB source (local path, http(s) URL, DANDI identifier) as a context manager holding an
h5py file and, on demand, a lazily read pynwb NWBFile."""

from __future__ import annotations

import hashlib
import logging
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._files import require_nwb_root, require_regular_file
from ..errors import NotNWBError, NwbCelltypeError, RemoteError, SourceError, SourceNotFoundError
from ._defaults import DEFAULT_CACHE_MAX_BYTES, DEFAULT_RETRIES, DEFAULT_TIMEOUT_S
from ._parse import SourceSpec, parse_source

if TYPE_CHECKING:
    from ._cache import BoundedDiskCache
    from ._remote import GuardedFile

log = logging.getLogger(__name__)

__all__ = ["Source", "SourceInfo", "open_source"]

#: remfile's smallest fetch, in bytes. Larger than remfile's 100 KiB default: opening an NWB file
#: touches many small metadata blocks spread over the first few MB, and one larger fetch is cheaper
#: than several round trips.
DEFAULT_MIN_CHUNK_BYTES = 512 * 1024
#: Bound of remfile's in-memory chunk store per open file, in bytes.
DEFAULT_MEMORY_BYTES = 128 * 1024**2
#: Timeout in s (at most; the read's ``timeout_s`` when smaller) of the one attempt that checks
#: whether a cached plain URL changed: a usable copy is on disk, so a server that cannot be reached
#: must not hold every open for the read's retries and timeouts (4 x 30 s by default).
REVALIDATE_TIMEOUT_S = 5.0


@dataclass
class SourceInfo:
    """Identity of an opened source; ``to_dict()`` is stored as provenance.

    Attributes
    ----------
    kind : str
        ``"local"``, ``"url"`` or ``"dandi"``.
    path : str or None
        Absolute local path (local sources).
    url : str or None
        URL the bytes were read from (remote sources).
    dandiset_id, version, asset_id, asset_path : str or None
        DANDI identity (DANDI sources). ``version`` is the resolved version.
    api_url : str or None
        DANDI API base URL used.
    size : int or None
        File size in bytes.
    sha256 : str or None
        SHA-256 hex digest of the file: from DANDI metadata for DANDI sources; for local files only
        after :meth:`Source.compute_sha256` (hashing a large file is not free).
    etag : str or None
        DANDI etag or HTTP ETag (remote sources).
    """

    kind: str
    path: str | None = None
    url: str | None = None
    dandiset_id: str | None = None
    version: str | None = None
    asset_id: str | None = None
    asset_path: str | None = None
    api_url: str | None = None
    size: int | None = None
    sha256: str | None = None
    etag: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (JSON-serialisable)."""
        return asdict(self)

    def describe(self) -> str:
        """Short human-readable name of the source (for messages)."""
        if self.kind == "dandi":
            return f"DANDI:{self.dandiset_id}/{self.version}/{self.asset_path}"
        return self.path or self.url or "?"


class Source:
    """An opened NWB source. Use :func:`open_source` to make one; use it as a context manager.

    Attributes
    ----------
    info : SourceInfo
        Identity of the source.
    h5 : h5py.File
        The open HDF5 file (read-only).
    """

    def __init__(self, info: SourceInfo, h5, fileobj: GuardedFile | None, cache: BoundedDiskCache | None):
        self.info = info
        self.h5 = h5
        self._fileobj = fileobj
        self.cache = cache
        self._io = None
        self._nwbfile = None

    @property
    def nwbfile(self):
        """The pynwb ``NWBFile`` (read lazily on first access; datasets stay on disk/remote)."""
        if self._nwbfile is None:
            from ._pynwb import nwbhdf5io

            NWBHDF5IO = nwbhdf5io()
            with self.guard("reading the NWB file structure"):
                # the file's cached namespaces go into a copy of pynwb's type map (pynwb copies it)
                self._io = NWBHDF5IO(file=self.h5, mode="r", load_namespaces=True)
                self._nwbfile = self._io.read()
        return self._nwbfile

    @property
    def species(self) -> str:
        """The file's ``general/subject/species`` as written ("" where the file names none)."""
        with self.guard("reading the subject's species"):
            node = self.h5.get("general/subject/species") if self.h5 is not None else None
            if node is None or not hasattr(node, "shape") or node.shape != ():
                return ""
            value = node[()]
        return (value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)).strip()

    @property
    def remote_file(self) -> GuardedFile | None:
        """The remote file object (None for local files)."""
        return self._fileobj

    @contextmanager
    def guard(self, doing: str):
        """Turn exceptions from h5py/pynwb into ours; a remote failure recorded while h5py was
        reading wins over h5py's generic error."""
        try:
            yield
        except NwbCelltypeError:
            raise
        except Exception as exc:
            err = self._fileobj.error if self._fileobj is not None else None
            if err is not None:
                self._fileobj.error = None
                raise type(err)(f"{err} ({doing} of {self.info.describe()})") from exc
            if isinstance(exc, OSError | KeyError | ValueError | TypeError | RuntimeError):
                raise NotNWBError(
                    f"{doing} of {self.info.describe()} failed: {type(exc).__name__}: {exc}. The file "
                    "may be corrupt or not a valid NWB file; check it with `nwbinspector`."
                ) from exc
            raise

    def compute_sha256(self) -> str:
        """SHA-256 of a local file (read in 8 MiB blocks); stored in ``info.sha256``."""
        if self.info.sha256 is None:
            if self.info.kind != "local":
                raise SourceError(
                    f"{self.info.describe()}: no sha256 known for this remote source and hashing it "
                    "would download the whole file; use info.etag, or download the file and open it."
                )
            h = hashlib.sha256()
            with open(self.info.path, "rb") as fh:
                for block in iter(lambda: fh.read(8 << 20), b""):
                    h.update(block)
            self.info.sha256 = h.hexdigest()
        return self.info.sha256

    def close(self) -> None:
        """Close the pynwb reader, the HDF5 file and the remote connection."""
        if self._io is not None:
            try:
                self._io.close()
            except Exception:  # closing must not mask the error that brought us here
                log.debug("closing the NWB reader failed", exc_info=True)
            self._io = None
        if self.h5 is not None:
            try:
                self.h5.close()
            except Exception:
                log.debug("closing the HDF5 file failed", exc_info=True)
        if self._fileobj is not None:
            self._fileobj.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Source({self.info.describe()!r}, kind={self.info.kind!r})"


def open_source(
    source: str | os.PathLike | Source,
    *,
    dandi_api_url: str | None = None,
    cache_dir: str | os.PathLike | None | bool = None,
    cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    retries: int = DEFAULT_RETRIES,
    min_chunk_bytes: int = DEFAULT_MIN_CHUNK_BYTES,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    deadline_s: float | None = None,
    min_bytes_per_s: float | None = None,
) -> Source:
    """Open an NWB file from a local path, an http(s) URL or the DANDI archive.

    Parameters
    ----------
    source : str, path-like or Source
        Any form accepted by :func:`parse_source` (local path, URL, ``DANDI:000409/draft/x.nwb``,
        ``dandi://dandi/000409@draft/x.nwb``, dandiarchive.org URL, ``000409/x.nwb``, asset UUID).
        A :class:`Source` is returned unchanged.
    dandi_api_url : str or None
        DANDI API base URL (default ``$NWB_CELLTYPE_DANDI_API_URL``, else the instance named by
        the source, else ``$DANDI_INSTANCE``, else the main archive).
    cache_dir : path, None or False
        On-disk cache of remote bytes (default ``$NWB_CELLTYPE_CACHE_DIR``, else
        ``~/.cache/nwb-celltype/remote``); False disables it.
    cache_max_bytes : int
        Size bound of the on-disk cache in bytes; the oldest chunks are evicted beyond it.
    timeout_s : float
        Per-request timeout in seconds (connecting, and between received bytes).
    retries : int
        Retries of transient failures (connection errors, timeouts, HTTP 429/5xx), with
        exponential backoff from 0.2 s.
    min_chunk_bytes : int
        Smallest remote fetch in bytes (remfile chunk size; also the cache's granularity).
    memory_bytes : int
        Bound of the in-memory chunk store for a remote file, in bytes.
    deadline_s : float, optional
        Overall limit on a remote source's reads, in s (default ``$NWB_CELLTYPE_DEADLINE_S``, else
        4 h; <= 0 disables it).
    min_bytes_per_s : float, optional
        Lowest average throughput of a response once ``timeout_s`` has passed (default
        ``$NWB_CELLTYPE_MIN_BYTES_PER_S``, else 1024); a server that drips bytes fails like a stall.

    Returns
    -------
    Source
        Context manager; ``.nwbfile`` (lazy pynwb NWBFile), ``.h5`` (h5py File), ``.info``.

    Raises
    ------
    SourceNotFoundError
        Missing file, unknown dandiset/version/path/asset, HTTP 404.
    NotNWBError
        Not HDF5, or HDF5 but not NWB.
    RemoteError
        Unreachable server, HTTP errors, stalled or cut connections (after retries).
    """
    if isinstance(source, Source):
        return source
    spec = parse_source(source)
    if spec.kind == "local":
        return _open_local(spec)
    # the HTTP stack only for remote sources: a local file imports none of it
    from ._cache import BoundedDiskCache, cache_root
    from ._remote import BoundedSession, open_remfile

    cache = None
    if cache_dir is not False:
        root = cache_root(None if cache_dir in (None, True) else cache_dir)
        cache = BoundedDiskCache(root, max_bytes=cache_max_bytes)
    session = BoundedSession(
        timeout_s=timeout_s, retries=retries, deadline_s=deadline_s, min_bytes_per_s=min_bytes_per_s
    )
    info, first, last = _identify_remote(
        spec, cache, session, dandi_api_url, timeout_s, retries, min_chunk_bytes
    )
    session.expected_size = info.size  # a range answer reporting another size: the file changed
    fileobj = open_remfile(
        info.url,
        size=info.size,
        session=session,
        disk_cache=cache,
        min_chunk_bytes=min_chunk_bytes,
        max_memory_bytes=memory_bytes,
        where=info.describe(),
    )
    if first:
        fileobj.seed(first)
    if last[1]:
        fileobj.seed(last[1], last[0])
    try:
        h5 = _open_h5(fileobj, info, fileobj)
    except BaseException:
        fileobj.close()
        raise
    return Source(info, h5, fileobj, cache)


def _identify_remote(
    spec: SourceSpec, cache, session, dandi_api_url, timeout_s: float, retries: int, min_chunk_bytes: int
) -> tuple[SourceInfo, bytes, tuple[int, bytes]]:
    """Who a remote source is: its :class:`SourceInfo` (a DANDI asset resolved through the API, a
    URL probed for its size and etag, or both from the cache's record), with the cache keyed to it,
    and the file's first bytes and (offset, bytes) of its last ones where a size probe fetched them
    (opening an HDF5 file reads both first)."""
    from ._cache import chunk_key
    from ._remote import probe_url

    first = b""  # the file's first bytes, when a size probe fetched them
    last: tuple[int, bytes] = (0, b"")  # (offset, bytes) of its last bytes, fetched alongside
    if spec.kind == "dandi":
        from ._dandi import resolve_asset

        r = resolve_asset(spec, dandi_api_url=dandi_api_url, timeout_s=timeout_s, retries=retries)
        info = SourceInfo(
            kind="dandi",
            url=r.url,
            dandiset_id=r.dandiset_id,
            version=r.version,
            asset_id=r.asset_id,
            asset_path=r.asset_path,
            api_url=r.api_url,
            size=r.size,
            sha256=r.sha256,
            etag=r.etag,
        )
        identity = f"dandi-asset:{r.asset_id}:{r.etag or r.sha256 or r.size}"
    else:
        info, identity, first, last = _identify_url(spec.url, cache, session, min_chunk_bytes)
    session.where = info.describe()
    if cache is not None:
        cache.identity = identity
    if spec.kind != "dandi":
        return info, first, last
    if cache is None or not cache._file(chunk_key(info.url, min_chunk_bytes, 0)).exists():
        # the head and the tail in one round trip (opening an HDF5 file reads both first)
        probe = probe_url(session, info.url, min_chunk_bytes, 2 * min_chunk_bytes)
        size, first, last = probe.size, probe.first, probe.last
        if cache is not None and (size != info.size or cache.get_meta(identity) is not None):
            cache.set_meta(identity, {"size": size})  # the size a reopen from the cache reads with
        if size != info.size:
            log.warning("%s: the archive lists %s bytes, the server has %d", info.describe(), info.size, size)
            info.size = size
    else:  # cached: the size the server had when it was (an archive's wrong size is not read again)
        kept = cache.get_meta(identity) or {}
        size = kept.get("size")
        if isinstance(size, int) and size != info.size:
            log.info(
                "%s: the archive lists %s bytes, the server had %d when cached",
                info.describe(),
                info.size,
                size,
            )
            info.size = size
    return info, first, last


def _identify_url(
    url: str, cache, session, min_chunk_bytes: int
) -> tuple[SourceInfo, str, bytes, tuple[int, bytes]]:
    """A plain URL's :class:`SourceInfo`, cache identity, first bytes and (offset, bytes) of its
    last ones, from one request. The content behind a URL can change, so the disk cache's chunks
    count only while the size, ETag and Last-Modified are those the server reports now: a first
    open fetches the head and tail with them; a later one asks for one byte, and drops the cached
    chunks of a file that changed. A server that cannot be reached for that check, in one attempt of
    at most :data:`REVALIDATE_TIMEOUT_S`, leaves the cached copy in use, with a warning."""
    from ._cache import url_identity
    from ._remote import probe_url

    session.where = url
    meta = cache.get_meta(url) if cache is not None else None
    cached_head = meta is not None and cache._path(f"{url_identity(url, meta)}|{min_chunk_bytes}|0").exists()
    if cached_head:
        check = _revalidation_session(session)
        try:
            probe = probe_url(check, url, 1)
        except RemoteError as exc:  # unreachable (not a 404: a file gone is not read from the cache)
            log.warning("could not check whether %s changed (%s); reading the cached copy", url, exc)
            info = SourceInfo(kind="url", url=url, size=int(meta["size"]), etag=meta.get("etag"))
            return info, url_identity(url, meta), b"", (0, b"")
        finally:
            check.close()
    else:
        probe = probe_url(session, url, min_chunk_bytes, 2 * min_chunk_bytes)
    info = SourceInfo(kind="url", url=url, size=probe.size, etag=probe.etag)
    version = {"size": probe.size, "etag": probe.etag, "modified": probe.modified}
    # a server that sends neither ETag nor Last-Modified cannot say whether the file changed (a
    # replacement of the same size would pass): its cached bytes serve one open only
    # (a record without a cached head may still have other chunks of the file cached)
    unvalidated = meta is not None and not (probe.etag or probe.modified)
    if cache is not None and (meta != version or unvalidated):
        if meta is not None:
            cache.discard(url_identity(url, meta), int(meta.get("size") or 0), min_chunk_bytes)
        # (a record of an older release, without "modified", keyed its chunks otherwise)
        if meta is not None and meta != version and "modified" in meta:
            log.warning(
                "%s changed since it was cached (%s); its cached bytes are dropped and read again",
                url,
                ", ".join(
                    f"{k} {meta.get(k)} -> {version[k]}"
                    for k in ("size", "etag", "modified")
                    if meta.get(k) != version[k]
                ),
            )
        elif unvalidated:
            log.info(
                "%s: the server sends no ETag or Last-Modified, so whether it changed since it was "
                "cached cannot be told; its cached bytes are dropped and read again",
                url,
            )
        cache.set_meta(url, version)
    return info, url_identity(url, version), probe.first, probe.last


def _revalidation_session(session):
    """A session for the one-byte check of a cached URL: the read's, but one attempt (no retries)
    with a timeout of at most :data:`REVALIDATE_TIMEOUT_S`."""
    from ._remote import BoundedSession

    check = BoundedSession(
        timeout_s=min(session.timeout_s, REVALIDATE_TIMEOUT_S),
        retries=0,
        where=session.where,
        deadline_s=session.deadline_s or 0,
        min_bytes_per_s=session.min_bytes_per_s,
    )
    check.headers.update(session.headers)
    return check


def _open_local(spec: SourceSpec) -> Source:
    p = Path(spec.path).expanduser().resolve()
    if not p.exists() and not p.is_symlink():
        raise SourceNotFoundError(
            f"No such file: {p}. Expected a local NWB file, an http(s) URL or a DANDI id "
            "(e.g. DANDI:000409/draft/sub-1/sub-1.nwb); check the path."
        )
    require_regular_file(p)  # a FIFO would block forever in open()
    info = SourceInfo(kind="local", path=str(p), size=p.stat().st_size)
    h5 = _open_h5(str(p), info, None)
    return Source(info, h5, None, None)


def _locked(exc: OSError) -> bool:
    """Whether h5py's error is HDF5's file lock (another process holds the file open for writing)."""
    text = str(exc).lower()
    return "unable to lock file" in text or "file locking" in text or getattr(exc, "errno", None) == 11


def _truncated(exc: BaseException) -> tuple[int, int] | None:
    """(bytes there, bytes declared) when h5py's error says the file is shorter than its superblock
    declares (HDF5's "truncated file: eof = N, ..., stored_eof = M"), else None."""
    import re

    m = re.search(r"truncated file: eof = (\d+).*?stored_eof = (\d+)", str(exc))
    return (int(m.group(1)), int(m.group(2))) if m else None


def _open_h5(target, info: SourceInfo, fileobj: GuardedFile | None):
    import h5py

    try:
        h5 = h5py.File(target, "r")
    except Exception as exc:
        err = fileobj.error if fileobj is not None else None
        if err is not None:
            raise type(err)(f"{err} (opening {info.describe()})") from exc
        if isinstance(exc, OSError) and _locked(exc):
            raise SourceError(
                f"{info.describe()} is open for writing in another process (HDF5 file lock: {exc}); close "
                "it there and retry (or, only if that process does not write to it, set "
                "HDF5_USE_FILE_LOCKING=FALSE)"
            ) from exc
        truncated = _truncated(exc)
        if truncated is not None:
            have, declared = truncated
            whose = "the server has" if fileobj is not None else "it holds"
            raise NotNWBError(
                f"{info.describe()} is truncated: {whose} {have} of the {declared} bytes its HDF5 header "
                "declares (an incomplete upload, copy or download); get the complete file."
            ) from exc
        if isinstance(exc, OSError):
            raise NotNWBError(
                f"{info.describe()} is not an HDF5 file ({exc}); expected an NWB 2.x HDF5 file. "
                "Check the path/URL; NWB Zarr and NWB 1.x files are not supported."
            ) from exc
        raise SourceError(f"Cannot open {info.describe()}: {type(exc).__name__}: {exc}") from exc
    try:
        require_nwb_root(h5, info.describe())
    except NotNWBError:
        h5.close()
        raise
    except Exception as exc:
        h5.close()
        err = fileobj.error if fileobj is not None else None
        if err is not None:
            raise type(err)(f"{err} (opening {info.describe()})") from exc
        raise RemoteError(f"Cannot read {info.describe()}: {exc}") from exc
    return h5
