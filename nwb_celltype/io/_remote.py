"""Remote bytes for the reading layer: HTTP sessions with timeouts and bounded retries, a size-bounded
on-disk chunk cache that two processes can share, and remfile file objects whose failures surface
as our own :class:`~nwb_celltype.errors.RemoteError`."""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import remfile
import requests
import urllib3
from requests.adapters import HTTPAdapter

from ..errors import RemoteError, SourceError, SourceNotFoundError
from ._cache import BoundedDiskCache, cache_root, chunk_key  # noqa: F401  (re-exported)
from ._defaults import (
    DEFAULT_DEADLINE_S,
    DEFAULT_MIN_BYTES_PER_S,
    DEFAULT_RETRIES,
    DEFAULT_SPILL_MAX_BYTES,
    DEFAULT_TIMEOUT_S,
)

log = logging.getLogger(__name__)

#: Statuses worth retrying (throttling and server-side failures).
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

# remfile retries any exception except its "permanent" one (8 times, ~25 s of sleeping). Our session
# already retried with its own bounded policy, so our final errors also derive from that class to
# stop remfile from retrying them again. If a remfile release drops the class, we fall back to
# Exception (then remfile's own retries apply, still bounded).
_RemfilePermanent: type[Exception] = getattr(
    importlib.import_module("remfile.RemFile"), "_PermanentHTTPError", Exception
)


class _FinalRemoteError(RemoteError, _RemfilePermanent):  # type: ignore[misc, valid-type]
    """A remote failure after our retries; remfile must not retry it again."""


class _FinalNotFoundError(SourceNotFoundError, _RemfilePermanent):  # type: ignore[misc, valid-type]
    """A 404/410 from the server; remfile must not retry it."""


class _SlowRead(OSError):
    """A response body arrives slower than the session's minimum throughput (treated as a stall)."""


def _env_float(name: str, default: float | None) -> float | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SourceError(f"${name}={raw!r} is not a number of seconds / bytes per second.") from None
    return value if value > 0 else None


class _TimeoutAdapter(HTTPAdapter):
    """Gives every request a (connect, read) timeout unless one is passed."""

    def __init__(self, timeout_s: float, **kwargs: Any) -> None:
        self._timeout = (min(timeout_s, 10.0), timeout_s)
        super().__init__(**kwargs)

    def send(self, request, **kwargs):  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().send(request, **kwargs)


class BoundedSession(requests.Session):
    """A :class:`requests.Session` with timeouts on every request and bounded retries with
    exponential backoff for transient failures; what still fails becomes our own error.

    Parameters
    ----------
    timeout_s : float
        Seconds to wait for a connection and between received bytes.
    retries : int
        Retries after the first attempt, for connection errors, timeouts, cut connections and
        HTTP 408/425/429/5xx. 4xx are not retried.
    backoff_s : float
        First backoff delay; doubles with each retry.
    where : str
        What is being read, for error messages.
    deadline_s : float, optional
        Overall limit for every request of this session, counted from its creation; past it a
        request fails at once (not retried). Default ``$NWB_CELLTYPE_DEADLINE_S`` or
        :data:`DEFAULT_DEADLINE_S`; <= 0 disables it.
    min_bytes_per_s : float, optional
        Lowest average throughput of a body once ``timeout_s`` has passed; slower bodies fail like
        stalls. Default ``$NWB_CELLTYPE_MIN_BYTES_PER_S`` or :data:`DEFAULT_MIN_BYTES_PER_S`.
    """

    def __init__(
        self,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        backoff_s: float = 0.2,
        where: str = "",
        deadline_s: float | None = None,
        min_bytes_per_s: float | None = None,
    ) -> None:
        super().__init__()
        adapter = _TimeoutAdapter(timeout_s)
        self.mount("http://", adapter)
        self.mount("https://", adapter)
        self.timeout_s = timeout_s
        self.retries = max(int(retries), 0)
        self.backoff_s = backoff_s
        self.where = where
        #: Return 4xx responses to the caller instead of raising (the dandi client maps them).
        self.pass_http_errors = False
        self.n_requests = 0
        self.n_bytes = 0
        self._url = ""
        self._lock = threading.Lock()
        if deadline_s is None:
            deadline_s = _env_float("NWB_CELLTYPE_DEADLINE_S", DEFAULT_DEADLINE_S)
        self.deadline_s = deadline_s if deadline_s and deadline_s > 0 else None
        self._deadline = None if self.deadline_s is None else time.monotonic() + self.deadline_s
        if min_bytes_per_s is None:
            min_bytes_per_s = _env_float("NWB_CELLTYPE_MIN_BYTES_PER_S", DEFAULT_MIN_BYTES_PER_S)
        self.min_bytes_per_s = float(min_bytes_per_s or 0.0)

    def check_deadline(self) -> None:
        """Fail (not retried) once the session's overall deadline has passed."""
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise _FinalRemoteError(
                f"reading {self.where or self._url} took longer than the overall deadline of "
                f"{self.deadline_s:g} s; the server is too slow. Raise $NWB_CELLTYPE_DEADLINE_S (or "
                "deadline_s), or download the file and open the local copy."
            )

    def read_body(self, raw, n: int | None = None) -> bytes:
        """Read ``n`` bytes (None: all) of a streamed body, piece by piece as they arrive, failing
        with :class:`_SlowRead` when the average rate after ``timeout_s`` is below
        ``min_bytes_per_s``, and with our error past the deadline."""
        parts, got, t0 = [], 0, time.monotonic()
        while n is None or got < n:
            piece = raw.read1(1 << 20 if n is None else min(1 << 20, n - got))
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
            self.check_deadline()
            elapsed = time.monotonic() - t0
            if elapsed > self.timeout_s and got / elapsed < self.min_bytes_per_s:
                raise _SlowRead(
                    f"too slow: {got} bytes in {elapsed:.0f} s, below the minimum "
                    f"{self.min_bytes_per_s:g} bytes/s"
                )
        return b"".join(parts)

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        self._url = str(url)
        last: str = ""
        for attempt in range(self.retries + 1):
            self.check_deadline()
            if attempt:
                delay = self.backoff_s * 2 ** (attempt - 1)
                log.info("retrying %s %s in %.1f s after: %s", method, url, delay, last)
                time.sleep(delay)
            try:
                resp = self._send(method, url, *args, **kwargs)
            except requests.Timeout as exc:
                last = f"no data for {self.timeout_s:g} s ({type(exc).__name__})"
                continue
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                if "timed out" in str(exc):  # a stall while receiving the body
                    last = f"no data for {self.timeout_s:g} s (stalled: {exc})"
                else:
                    last = f"connection failed or was cut ({type(exc).__name__}: {exc})"
                continue
            except requests.RequestException as exc:
                raise _FinalRemoteError(f"HTTP request {method} {url} failed: {exc}. Check the URL.") from exc
            with self._lock:
                self.n_requests += 1
                self.n_bytes += len(resp.content) if not kwargs.get("stream") else 0
            if resp.status_code in TRANSIENT_STATUSES:
                last = f"HTTP {resp.status_code} {resp.reason}"
                continue
            if self.pass_http_errors and resp.status_code >= 400:
                return resp
            if resp.status_code in (404, 410):
                raise _FinalNotFoundError(
                    f"{url} answered HTTP {resp.status_code} {resp.reason}{self._at()}: the file does "
                    "not exist there. Check the URL (or the dandiset, version and path)."
                )
            if resp.status_code >= 400:
                raise _FinalRemoteError(
                    f"{url} answered HTTP {resp.status_code} {resp.reason}{self._at()}; expected 200/206. "
                    "Check the URL and your access rights."
                )
            return resp
        raise _FinalRemoteError(
            f"{method} {url}{self._at()} failed after {self.retries + 1} attempts "
            f"(timeout {self.timeout_s:g} s): {last}. Check that the server is reachable, or raise "
            "timeout_s/retries."
        )

    def _send(self, method, url, *args, **kwargs):
        """One request. A body that is not streamed is read in one call instead of requests'
        10 KiB iterations (several times faster for multi-MB ranges); failures while reading it
        map to the requests exceptions that the retry loop handles."""
        if kwargs.get("stream") or method.upper() == "HEAD":
            return super().request(method, url, *args, **kwargs)
        resp = super().request(method, url, *args, stream=True, **kwargs)
        rng = (kwargs.get("headers") or {}).get("Range")
        if rng and resp.status_code == 200 and not _is_whole(rng, resp.headers.get("Content-Length")):
            # the whole file is coming instead of the range: do not read it
            resp.close()
            raise _FinalRemoteError(
                f"{url} ignored the HTTP Range header (answered 200 with the whole file for {rng}). "
                "Serve the file from a server that supports range requests, or download it and open "
                "the local copy."
            )
        try:
            content = self.read_body(resp.raw)
        except _FinalRemoteError:
            resp.close()
            raise
        except urllib3.exceptions.ReadTimeoutError as exc:
            resp.close()
            raise requests.exceptions.ConnectionError(f"Read timed out: {exc}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            resp.close()
            raise requests.exceptions.ChunkedEncodingError(f"connection cut: {exc}") from exc
        expected = resp.headers.get("Content-Length")
        if expected is not None and expected.isdigit() and int(expected) != len(content):
            resp.close()
            raise requests.exceptions.ChunkedEncodingError(
                f"connection cut: got {len(content)} of {expected} bytes"
            )
        resp._content = content
        resp._content_consumed = True
        resp.close()  # body fully read: this returns the connection to the pool for reuse
        return resp

    def _at(self) -> str:
        return f" while reading {self.where}" if self.where and self.where not in self._url else ""


def _is_whole(rng: str, length: str | None) -> bool:
    """Whether the range ``bytes=0-b`` asks for exactly ``length`` bytes (a server may then answer
    200 with the whole file, which is the range)."""
    start, _, end = rng[len("bytes=") :].partition("-")
    return start == "0" and end.isdigit() and length is not None and length == str(int(end) + 1)


def probe_url(
    session: BoundedSession, url: str, first_bytes: int = 1, last_bytes: int = 0
) -> tuple[int, str | None, bytes, tuple[int, bytes]]:
    """Size in bytes, ETag and the first ``first_bytes`` bytes of a remote file, from one range
    request (works with presigned URLs, which refuse HEAD; the bytes seed the file's first chunk,
    so the size costs no extra round trip). With ``last_bytes``, a suffix range request for the
    file's last bytes runs at the same time (HDF5 files written by h5py keep much of their
    metadata at the end, which opening them reads next): returns (offset, bytes) of that tail, or
    (0, b"") when the server did not give it. Raises our errors for unreachable servers and HTTP
    errors."""
    tail: dict[str, Any] = {}

    def fetch_tail() -> None:
        try:
            tail["resp"] = session.get(url, headers={"Range": f"bytes=-{last_bytes}"})
        except Exception as exc:  # the tail is an optimisation: the head's errors are the ones we report
            log.debug("tail request for %s failed: %s", url, exc)

    worker = threading.Thread(target=fetch_tail, daemon=True) if last_bytes > 0 else None
    if worker is not None:
        worker.start()
    try:
        resp = session.get(url, headers={"Range": f"bytes=0-{max(first_bytes, 1) - 1}"})
    finally:
        if worker is not None:
            worker.join()
    size: int | None = None
    cr = resp.headers.get("Content-Range", "")
    if resp.status_code == 206 and "/" in cr and not cr.endswith("/*"):
        size = int(cr.rsplit("/", 1)[1])
    elif resp.status_code == 200:
        raise _FinalRemoteError(
            f"{url} ignored the HTTP Range header (answered 200 with the whole file). Serve the file "
            "from a server that supports range requests, or download it and open the local copy."
        )
    if size is None:
        raise _FinalRemoteError(f"{url} did not report the file size (Content-Range {cr!r}).")
    last: tuple[int, bytes] = (0, b"")
    t = tail.get("resp")
    tcr = t.headers.get("Content-Range", "") if t is not None else ""
    if t is not None and t.status_code == 206 and tcr.startswith("bytes ") and tcr.endswith(f"/{size}"):
        first_byte = int(tcr[len("bytes ") :].split("-", 1)[0])
        if first_byte + len(t.content) == size:
            last = (first_byte, t.content)
    return size, resp.headers.get("ETag"), resp.content, last


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
