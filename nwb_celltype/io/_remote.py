"""Remote bytes for the reading layer: remfile file objects whose failures surface as our own
:class:`~nwb_celltype.errors.RemoteError`, with spill files for spans fetched whole. The HTTP
session (timeouts, bounded retries) is :mod:`._session`, the on-disk chunk cache :mod:`._cache`."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import remfile
import urllib3

from ..errors import RemoteError, SourceError
from ._cache import BoundedDiskCache, chunk_key
from ._defaults import (
    DEFAULT_SPILL_MAX_BYTES,
)
from ._session import BoundedSession, _FinalRemoteError, probe_url  # noqa: F401  (probe_url: re-exported)

log = logging.getLogger(__name__)


class _Spill:
    """Byte ranges of a remote file kept in a local sparse file at their own offsets. The file is
    unlinked as soon as it is created, so the operating system frees it when it is closed, even
    after a crash."""

    def __init__(self, dirname: str | os.PathLike) -> None:
        fd, path = tempfile.mkstemp(dir=dirname, prefix=".nwb-celltype-spill-")
        os.unlink(path)
        self.fd = fd
        self.ranges: list[tuple[int, int]] = []

    def covers(self, start: int, stop: int) -> bool:
        return any(a <= start and stop <= b for a, b in self.ranges)

    def add(self, start: int, stop: int) -> None:
        """Record that bytes ``start:stop`` are in the file (ranges kept sorted and merged)."""
        merged: list[list[int]] = []
        for a, b in sorted([*self.ranges, (start, stop)]):
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self.ranges = [(a, b) for a, b in merged]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self.ranges = []


class GuardedFile:
    """A read-only file object over a :class:`remfile.RemFile` that remembers the first error of
    ours raised while h5py was reading (h5py replaces it by a generic OSError). Spans fetched
    whole with :meth:`fetch_rest` are read from a local spill file instead."""

    def __init__(self, rf: remfile.RemFile, where: str) -> None:
        self._rf = rf
        self.where = where
        self.error: BaseException | None = None
        self._spill: _Spill | None = None

    def _clamp(self, size: int | None) -> int:
        left = self._rf.length - self._rf.tell()
        return left if size is None or size < 0 else max(0, min(size, left))

    def _spilled(self, size: int) -> bool:
        pos = self._rf.tell()
        return self._spill is not None and self._spill.covers(pos, pos + size)

    def read(self, size: int = -1) -> bytes:
        size = self._clamp(size)
        if size == 0:
            return b""
        if self._spilled(size):
            pos = self._rf.tell()
            data = os.pread(self._spill.fd, size, pos)
            self._rf.seek(pos + len(data))
            return data
        try:
            return self._rf.read(size)
        except SourceError as exc:
            self.error = self.error or exc
            raise
        except Exception as exc:
            err = RemoteError(f"Reading {self.where} failed: {type(exc).__name__}: {exc}")
            err.__cause__ = exc
            self.error = self.error or err
            raise err from exc

    def readinto(self, buf) -> int:
        view = memoryview(buf).cast("B")
        size = self._clamp(len(view))
        if size and self._spilled(size):  # straight from the spill file into h5py's buffer
            pos = self._rf.tell()
            n = os.preadv(self._spill.fd, [view[:size]], pos)
            self._rf.seek(pos + n)
            return n
        data = self.read(size)
        view[: len(data)] = data
        return len(data)

    # -- whole spans ---------------------------------------------------------------------------

    def _held(self, i: int) -> bool:
        """Whether remfile chunk ``i`` is in memory, in the disk cache or in the spill file."""
        rf = self._rf
        step = rf._min_chunk_size
        if i in rf._chunks:
            return True
        cache = rf._disk_cache
        if isinstance(cache, BoundedDiskCache) and cache._file(chunk_key(rf._url, step, i)).exists():
            return True
        return self._spill is not None and self._spill.covers(i * step, min((i + 1) * step, rf.length))

    def missing_spans(self, max_gap_bytes: int = 4 * 1024**2) -> list[tuple[int, int]]:
        """Byte ranges of the file held nowhere yet (chunk-aligned), merging ranges that only a
        held run of at most ``max_gap_bytes`` separates (one request re-fetching a little beats
        two)."""
        rf = self._rf
        step = getattr(rf, "_min_chunk_size", None)
        if step is None or not hasattr(rf, "_chunks"):
            return []
        n = -(-rf.length // step)
        spans: list[list[int]] = []
        for i in range(n):
            if self._held(i):
                continue
            a = i * step
            if spans and a - spans[-1][1] <= max_gap_bytes:
                spans[-1][1] = min(a + step, rf.length)
            else:
                spans.append([a, min(a + step, rf.length)])
        return [(a, b) for a, b in spans]

    def fetch_rest(
        self, needed_bytes: int, *, max_ratio: float = 1.3, max_bytes: int = DEFAULT_SPILL_MAX_BYTES
    ) -> bool:
        """Fetch every byte of the file not held yet, one streamed request per span, into a
        local spill file (and the disk cache, if any) -- when that costs at most ``max_ratio``
        times the ``needed_bytes`` still to read, and at most ``max_bytes``. When most of a file
        is needed (a units-only NWB file), one sequential stream replaces a request per chunk
        index and per batch. Returns whether it did; a failure to write the spill file (a full
        disk) only logs a warning and leaves reading to the usual targeted requests."""
        spans = self.missing_spans()
        total = sum(b - a for a, b in spans)
        if not spans or total > max_ratio * needed_bytes or total > max_bytes:
            return False
        cache = self._rf._disk_cache
        where = cache.root if isinstance(cache, BoundedDiskCache) else Path(tempfile.gettempdir())
        try:
            if shutil.disk_usage(where).free < total + (64 << 20):
                log.info("not enough free space in %s to spill %d bytes; reading by ranges", where, total)
                return False
            if self._spill is None:
                self._spill = _Spill(where)
            for a, b in spans:
                self._fetch_span(a, b)
            self._absorb_held()
        except SourceError:
            self._spill.close()
            self._spill = None
            raise
        except OSError as exc:
            log.warning("could not spill %s to %s (%s); reading by ranges", self.where, where, exc)
            if self._spill is not None:
                self._spill.close()
                self._spill = None
            return False
        return True

    def _absorb_held(self) -> None:
        """Copy the chunks held in memory or in the disk cache into the spill file, so that every
        read of a spilled file is one local read (no read straddles the spill and remfile)."""
        rf, spill = self._rf, self._spill
        step = rf._min_chunk_size
        cache = rf._disk_cache
        for i in range(-(-rf.length // step)):
            a, b = i * step, min((i + 1) * step, rf.length)
            if spill.covers(a, b):
                continue
            data = rf._chunks.get(i)
            if data is None and isinstance(cache, BoundedDiskCache):
                data = cache.get(chunk_key(rf._url, step, i))
            if data is not None and len(data) == b - a:
                os.pwrite(spill.fd, data, a)
                spill.add(a, b)

    def _fetch_span(self, start: int, stop: int) -> None:
        """One streamed GET of ``start:stop`` into the spill file; a connection that is cut or
        stalls mid-body is resumed where it stopped (within the session's retries)."""
        rf = self._rf
        session: BoundedSession = rf.session
        step = rf._min_chunk_size
        cache = rf._disk_cache
        pos, attempts = start, 0
        while pos < stop:
            resp = session.get(rf._url, headers={"Range": f"bytes={pos}-{stop - 1}"}, stream=True)
            try:
                if resp.status_code != 206 or not resp.headers.get("Content-Range", "").startswith(
                    f"bytes {pos}-"
                ):
                    raise _FinalRemoteError(
                        f"{self.where}: the server answered HTTP {resp.status_code} "
                        f"(Content-Range {resp.headers.get('Content-Range')!r}) to a range request "
                        f"for bytes {pos}-{stop - 1}; expected 206 with that range."
                    )
                while pos < stop:
                    want = min(step - pos % step, stop - pos)  # up to the next chunk boundary
                    try:
                        piece = session.read_body(resp.raw, want)
                    except _FinalRemoteError:
                        raise
                    except (urllib3.exceptions.HTTPError, OSError) as exc:  # cut, stalled or too slow
                        piece = b""
                        last = f"{type(exc).__name__}: {exc}"
                    else:
                        last = "the connection closed early"
                    if not piece:
                        attempts += 1
                        if attempts > session.retries:
                            raise _FinalRemoteError(
                                f"Reading bytes {pos}-{stop - 1} of {self.where} failed after "
                                f"{attempts} attempts: {last}. Check that the server is reachable, "
                                "or raise timeout_s/retries."
                            )
                        log.info("resuming %s at byte %d after: %s", self.where, pos, last)
                        break
                    os.pwrite(self._spill.fd, piece, pos)
                    i, off = divmod(pos, step)
                    if (
                        off == 0
                        and isinstance(cache, BoundedDiskCache)
                        and (len(piece) == step or pos + len(piece) == rf.length)
                    ):
                        cache.set(chunk_key(rf._url, step, i), piece)
                    pos += len(piece)
            finally:
                resp.close()
        self._spill.add(start, stop)

    def prefetch(self, start: int, stop: int) -> list[int]:
        """Load bytes ``start:stop`` in as few requests as remfile allows (one up to its maximum
        request size), so that h5py's following per-chunk reads are served from memory. Returns
        the indices of the remfile chunks loaded (for :meth:`release`)."""
        rf = self._rf
        size = getattr(rf, "_min_chunk_size", None)
        chunks = getattr(rf, "_chunks", None)
        stop = min(stop, rf.length)
        if stop <= start or (self._spill is not None and self._spill.covers(start, stop)):
            return []
        if size is None or chunks is None or not hasattr(rf, "_load_chunk"):
            pos = rf.tell()
            try:
                rf.seek(start)
                self.read(stop - start)
            finally:
                rf.seek(pos)
            return []
        first, last = start // size, (stop - 1) // size
        new = [i for i in range(first, last + 1) if i not in chunks]
        try:
            # remfile's loader without the join that read() would make of the whole span
            for i in range(first, last + 1):
                rf._load_chunk(i, chunks_needed=last - i + 1)
        except SourceError as exc:
            self.error = self.error or exc
            raise
        except Exception as exc:
            err = RemoteError(f"Reading {self.where} failed: {type(exc).__name__}: {exc}")
            self.error = self.error or err
            raise err from exc
        return new

    def release(self, indices: list[int]) -> None:
        """Drop remfile chunks from memory (they stay in the disk cache), bounding memory use by
        the batch rather than by the file."""
        chunks = getattr(self._rf, "_chunks", None)
        if chunks is None:
            return
        for i in indices:
            chunks.pop(i, None)
        order = getattr(self._rf, "_chunk_indices", None)
        if order is not None and indices:
            drop = set(indices)
            self._rf._chunk_indices = [i for i in order if i not in drop]

    def seed(self, data: bytes, offset: int = 0) -> None:
        """Give remfile bytes fetched elsewhere (the size probe's head and tail) as the chunks
        that they cover whole (a file's last chunk may be short)."""
        rf = self._rf
        size = getattr(rf, "_min_chunk_size", None)
        chunks = getattr(rf, "_chunks", None)
        if size is None or chunks is None:  # another remfile layout: skip the optimisation
            return
        stop = offset + len(data)
        for i in range(-(-offset // size), -(-stop // size)):
            a, b = i * size, min((i + 1) * size, rf.length)
            if b > stop or i in chunks:
                continue
            piece = data[a - offset : b - offset]
            chunks[i] = piece
            rf._chunk_indices.append(i)
            cache = rf._disk_cache
            if cache is not None:
                cache.set(chunk_key(rf._url, size, i), piece)

    def seek(self, offset: int, whence: int = 0) -> int:
        self._rf.seek(offset, whence)
        return self._rf.tell()

    def tell(self) -> int:
        return self._rf.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None
        self._rf.close()
        session = getattr(self._rf, "session", None)
        if session is not None:
            session.close()

    @property
    def remfile(self) -> remfile.RemFile:
        """The underlying remfile object (for tuning and statistics)."""
        return self._rf


def open_remfile(
    url: str,
    *,
    size: int,
    session: BoundedSession,
    disk_cache: BoundedDiskCache | None,
    min_chunk_bytes: int,
    max_memory_bytes: int,
    where: str,
) -> GuardedFile:
    """A remfile object for ``url`` of known ``size`` (so remfile's own unbounded length request
    is skipped) that reads through ``session`` and ``disk_cache``."""
    rf = remfile.File(
        url,
        disk_cache=disk_cache,
        _size=size,
        _min_chunk_size=min_chunk_bytes,
        _max_cache_size=max_memory_bytes,
        _max_chunk_size=max(max_memory_bytes // 2, min_chunk_bytes),
        _use_session=True,
    )
    rf.session.close()
    rf.session = session
    return GuardedFile(rf, where)
