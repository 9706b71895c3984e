"""HTTP sessions for remote bytes: connect/read timeouts, a minimum throughput, bounded retries of
transient failures with a deadline, and a probe that reads a file's size, ETag, head and tail in one
round trip. Final failures are our own errors that remfile does not retry again."""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from typing import Any, NamedTuple

import requests
import urllib3
from requests.adapters import HTTPAdapter

from ..errors import NotNWBError, RemoteError, SourceError, SourceNotFoundError
from ._defaults import (
    DEFAULT_DEADLINE_S,
    DEFAULT_MIN_BYTES_PER_S,
    DEFAULT_RETRIES,
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


class _FinalNotNWBError(NotNWBError, _RemfilePermanent):  # type: ignore[misc, valid-type]
    """The server answered something that is not the file (an HTML page, an empty file)."""


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
        #: The file's size when it was opened: a range answer reporting another size means that the
        #: file changed while it was being read (set by ``open_source``; None: not checked).
        self.expected_size: int | None = None
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
            self._check_size(method, url, resp)
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
            # the whole file (or a web page) is coming instead of the range: do not read it
            try:
                head = resp.raw.read(512, decode_content=True)
            except Exception:  # only a peek: the error below stands without it
                head = b""
            resp.close()
            if _is_html(resp, head):
                raise _html_error(url, resp, self._at())
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

    def _check_size(self, method, url, resp) -> None:
        """Our error for a range answer about a file of another size than the one opened (it changed
        while it was being read), and for a 416 about an empty file."""
        if resp.status_code not in (206, 416):
            return
        total = _range_total(resp.headers.get("Content-Range", ""))
        expected = self.expected_size
        if expected is not None and total is not None and total != expected:
            resp.close()
            raise _FinalRemoteError(
                f"{self.where or url} changed while it was being read: the server now reports {total} "
                f"bytes, {expected} when it was opened. Read it again once it has stopped changing."
            )
        if resp.status_code == 416 and total == 0:
            resp.close()
            raise _FinalNotNWBError(
                f"{url} is empty (0 bytes; the server answered HTTP 416 to {method} of a byte range)"
                f"{self._at()}; expected an NWB file. Check the URL, or upload the file again."
            )


def _range_total(content_range: str) -> int | None:
    """The complete length in a ``Content-Range`` header (``bytes 0-9/1234``, ``bytes */1234``);
    None when absent or unknown (``*``)."""
    unit, _, rest = content_range.strip().partition(" ")
    total = rest.rpartition("/")[2].strip()
    return int(total) if unit.lower() == "bytes" and total.isdigit() else None


def _is_html(resp, body: bytes = b"") -> bool:
    """Whether a response is a web page (a sign-in or "not found" page, a file-sharing site's
    viewer) rather than the file's bytes: an HTML content type whose body, if any, starts like
    markup, or a body that starts with an HTML document's first tag."""
    start = body[:512].lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html")):
        return True
    ctype = resp.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    return ctype in ("text/html", "application/xhtml+xml") and (not start or start.startswith(b"<"))


def _html_error(url: str, resp, at: str = "") -> _FinalNotNWBError:
    length = resp.headers.get("Content-Length")
    size = f", {length} bytes" if length and length.isdigit() else ""
    return _FinalNotNWBError(
        f"{url} answered an HTML page (HTTP {resp.status_code}{size}), not the file{at}; check the URL: "
        "it must give the file's bytes (a download link), not a web page about it."
    )


def _is_whole(rng: str, length: str | None) -> bool:
    """Whether the range ``bytes=0-b`` asks for exactly ``length`` bytes (a server may then answer
    200 with the whole file, which is the range)."""
    start, _, end = rng[len("bytes=") :].partition("-")
    return start == "0" and end.isdigit() and length is not None and length == str(int(end) + 1)


class Probe(NamedTuple):
    """What :func:`probe_url` learnt of a remote file."""

    size: int
    etag: str | None
    first: bytes
    last: tuple[int, bytes]
    modified: str | None = None


def probe_url(session: BoundedSession, url: str, first_bytes: int = 1, last_bytes: int = 0) -> Probe:
    """Size in bytes, ETag, Last-Modified and the first ``first_bytes`` bytes of a remote file, from one range
    request (works with presigned URLs, which refuse HEAD; the bytes seed the file's first chunk,
    so the size costs no extra round trip). With ``last_bytes``, a suffix range request for the
    file's last bytes runs at the same time (HDF5 files written by h5py keep much of their
    metadata at the end, which opening them reads next): returns (offset, bytes) of that tail, or
    (0, b"") when the server did not give it. Returns a :class:`Probe`. Raises our errors for
    unreachable servers, HTTP errors and web pages answered instead of the file."""
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
    if _is_html(resp, resp.content):
        raise _html_error(url, resp)
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
    return Probe(size, resp.headers.get("ETag"), resp.content, last, resp.headers.get("Last-Modified"))
