"""Loopback servers for tests and benchmarks: a Range-capable static file server with fault injection
and request/byte counters, and a minimal server shaped like the DANDI REST API (enough for the real
``dandi`` client). Both run an aiohttp event loop in a background thread and are context managers.

While any of them runs, Python's automatic garbage collection is paused (see :mod:`._threaded_app`).

Example
-------
>>> with RangeServer(tmp_path, latency_s=0.03) as files, DandiApiServer(files) as api:  # doctest: +SKIP
...     api.add_asset("000001", "sub-1/sub-1.nwb", tmp_path / "sub-1.nwb")
...     open_source("DANDI:000001/draft/sub-1/sub-1.nwb", dandi_api_url=api.api_url)
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiohttp import web

from ._threaded_app import _ThreadedApp

__all__ = ["DandiApiServer", "Faults", "RangeServer", "ServerStats"]


@dataclass
class Faults:
    """Faults the :class:`RangeServer` injects; change them at any time (they apply per request).

    Attributes
    ----------
    latency_s : float
        Delay added before answering every request, in seconds.
    status : int or None
        Answer every file request with this HTTP status (e.g. 404, 500).
    fail_first : int
        Answer the first ``fail_first`` file requests (counted from when it is set) with
        ``fail_status``, then serve normally (a transient error).
    fail_status : int
        Status used by ``fail_first``.
    stall_after_bytes : int or None
        Send the headers and this many body bytes, then stop sending (the connection stays open)
        for ``stall_s`` seconds.
    stall_s : float
        How long a stall lasts.
    cut_after_bytes : int or None
        Send this many body bytes of a range response, then close the connection.
    cut_count : int or None
        Cut only this many responses (counted from when it is set), then serve normally; None
        cuts every response.
    ignore_range : bool
        Answer range requests with the whole file (status 200), like ``http.server``.
    only_ranges : bool
        Apply ``stall_after_bytes`` / ``cut_after_bytes`` / ``drip_s`` only to requests with a Range
        header of more than one byte (so size probes still work).
    drip_s : float or None
        Send the body one byte every ``drip_s`` seconds (never idle long enough for a read
        timeout, yet hopelessly slow).
    no_validators : bool
        Send neither ``ETag`` nor ``Last-Modified`` (as some plain file servers do), so a client
        cannot tell a replaced file of the same size from the one it cached.
    """

    latency_s: float = 0.0
    status: int | None = None
    fail_first: int = 0
    fail_status: int = 503
    stall_after_bytes: int | None = None
    stall_s: float = 3600.0
    cut_after_bytes: int | None = None
    cut_count: int | None = None
    ignore_range: bool = False
    only_ranges: bool = True
    drip_s: float | None = None
    no_validators: bool = False


@dataclass
class ServerStats:
    """Counters of a :class:`RangeServer` (thread-safe snapshot via :meth:`RangeServer.stats`).

    Attributes
    ----------
    requests : int
        Requests received (all methods, all paths).
    range_requests : int
        Requests that carried a Range header.
    bytes_sent : int
        Body bytes sent.
    by_path : Counter
        Requests per URL path.
    ranges : list of (path, start, end)
        Byte ranges requested (inclusive end), in order.
    """

    requests: int = 0
    range_requests: int = 0
    bytes_sent: int = 0
    by_path: Counter = field(default_factory=Counter)
    ranges: list[tuple[str, int, int]] = field(default_factory=list)


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Parse a single ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range; None if unsatisfiable."""
    if not header.startswith("bytes=") or "," in header:
        return None
    a, _, b = header[6:].strip().partition("-")
    try:
        if a == "":
            n = int(b)
            start, end = max(size - n, 0), size - 1
        else:
            start = int(a)
            end = int(b) if b else size - 1
    except ValueError:
        return None
    end = min(end, size - 1)
    if start > end or start >= size:
        return None
    return start, end


def _validators(path: Path) -> dict[str, str]:
    """``ETag`` and ``Last-Modified`` of a served file, from its modification time and size (as
    nginx makes them), so a replaced file gets new ones."""
    from email.utils import formatdate

    st = path.stat()
    return {
        "ETag": f'"{st.st_mtime_ns:x}-{st.st_size:x}"',
        "Last-Modified": formatdate(st.st_mtime, usegmt=True),
    }


class RangeServer(_ThreadedApp):
    """Static file server on 127.0.0.1 that honours single HTTP Range requests, counts requests and
    bytes, sends an ``ETag`` and ``Last-Modified`` per file, and injects faults (:class:`Faults`).

    Parameters
    ----------
    root : path
        Directory whose files are served at ``/<relative path>``.
    latency_s : float
        Added delay per request, in seconds.
    port : int
        Port to bind (0 = any free port).
    """

    def __init__(self, root: str | os.PathLike, *, latency_s: float = 0.0, port: int = 0) -> None:
        super().__init__(port)
        self.root = Path(root).resolve()
        self.faults = Faults(latency_s=latency_s)
        self._stats = ServerStats()
        self._lock = threading.Lock()

    def url_for(self, path: str | os.PathLike) -> str:
        """URL of a file below ``root`` (absolute or relative path)."""
        p = Path(path)
        rel = p.resolve().relative_to(self.root) if p.is_absolute() else p
        return f"{self.url}/{rel.as_posix()}"

    def stats(self) -> ServerStats:
        """A snapshot copy of the counters."""
        with self._lock:
            s = self._stats
            return ServerStats(s.requests, s.range_requests, s.bytes_sent, Counter(s.by_path), list(s.ranges))

    def reset_stats(self) -> None:
        """Zero the counters."""
        with self._lock:
            self._stats = ServerStats()

    def _count(self, path: str, rng: tuple[int, int] | None, nbytes: int = 0) -> None:
        with self._lock:
            self._stats.requests += 1
            self._stats.by_path[path] += 1
            if rng is not None:
                self._stats.range_requests += 1
                self._stats.ranges.append((path, rng[0], rng[1]))
            self._stats.bytes_sent += nbytes

    def _add_bytes(self, n: int) -> None:
        with self._lock:
            self._stats.bytes_sent += n

    def _make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        f = self.faults
        rel = request.match_info["tail"]
        range_header = request.headers.get("Range")
        path = (self.root / rel).resolve()
        size = path.stat().st_size if path.is_file() and path.is_relative_to(self.root) else None
        rng = _parse_range(range_header, size) if (range_header and size is not None) else None
        self._count("/" + rel, rng if range_header else None)
        if f.latency_s:
            await asyncio.sleep(f.latency_s)
        if f.status is not None:
            return web.Response(status=f.status, text=f"injected HTTP {f.status}")
        if f.fail_first > 0:
            f.fail_first -= 1
            return web.Response(status=f.fail_status, text=f"injected transient HTTP {f.fail_status}")
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405)
        if size is None:
            return web.Response(status=404, text=f"not found: /{rel}")
        if range_header and not f.ignore_range:
            if rng is None:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
            start, end = rng
            status = 206
            headers = {"Content-Range": f"bytes {start}-{end}/{size}"}
        else:
            start, end, status, headers = 0, size - 1, 200, {}
        length = end - start + 1
        headers.update(
            {
                "Accept-Ranges": "bytes",
                "Content-Type": "application/octet-stream",
                **({} if f.no_validators else _validators(path)),
            }
        )
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = length
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        faulty = not f.only_ranges or (range_header is not None and length > 1)
        limit = length
        if faulty and f.stall_after_bytes is not None:
            limit = min(limit, f.stall_after_bytes)
        if faulty and f.cut_after_bytes is not None and f.cut_count != 0:
            limit = min(limit, f.cut_after_bytes)
            if f.cut_count is not None and limit < length:
                f.cut_count -= 1
        if faulty and f.drip_s is not None:
            with open(path, "rb") as fh:
                fh.seek(start)
                data = fh.read(limit)
            for i in range(len(data)):
                try:
                    await resp.write(data[i : i + 1])
                except ConnectionError:
                    return resp
                await asyncio.sleep(f.drip_s)
            await resp.write_eof()
            return resp
        with open(path, "rb") as fh:
            fh.seek(start)
            left = limit
            while left > 0:
                block = fh.read(min(left, 1 << 20))
                if not block:
                    break
                # counted before sending, so a client that has its bytes also sees them counted
                self._add_bytes(len(block))
                try:
                    await resp.write(block)
                except ConnectionError:  # the client went away mid-body
                    return resp
                left -= len(block)
        if limit < length:
            if faulty and f.stall_after_bytes is not None and limit == f.stall_after_bytes:
                await asyncio.sleep(f.stall_s)
            if request.transport is not None:
                request.transport.close()
            return resp
        await resp.write_eof()
        return resp


def _now() -> str:
    return datetime(2026, 1, 1, tzinfo=timezone.utc).isoformat()


@dataclass
class _Asset:
    asset_id: str
    path: str
    file: Path
    size: int
    sha256: str
    blob: str


@dataclass
class _Dandiset:
    identifier: str
    versions: dict[str, dict[str, _Asset]] = field(default_factory=dict)  # version -> path -> asset


class DandiApiServer(_ThreadedApp):
    """A minimal server in the shape of the DANDI REST API, answering the endpoints that
    ``dandi.dandiapi.DandiAPIClient`` uses to resolve dandisets and assets, with download URLs
    pointing at a :class:`RangeServer`.

    Endpoints (below ``/api``): ``info/``, ``dandisets/{id}/``, ``dandisets/{id}/versions/``,
    ``dandisets/{id}/versions/{v}/`` and ``.../info/``, ``.../assets/`` (paginated, ``path`` prefix
    and ``glob`` filters), ``.../assets/{asset_id}/`` and ``.../info/``, ``assets/{asset_id}/``,
    ``assets/{asset_id}/info/`` and ``assets/{asset_id}/download/`` (302 to the file server);
    ``/server-info`` at the root.

    Parameters
    ----------
    files : RangeServer
        The file server the assets' content URLs point at (files must lie below its root).
    page_size : int
        Default page size of asset listings (small by default so pagination is exercised).
    """

    def __init__(self, files: RangeServer, *, page_size: int = 2, port: int = 0) -> None:
        super().__init__(port)
        self.files = files
        self.page_size = page_size
        self.dandisets: dict[str, _Dandiset] = {}
        #: Faults of the API itself (``latency_s``, ``status``, ``fail_first``/``fail_status``).
        self.faults = Faults()
        self.requests: Counter = Counter()
        self._lock = threading.Lock()

    @property
    def api_url(self) -> str:
        """The API base URL to give to ``DandiAPIClient(api_url=...)`` (ends in ``/api``)."""
        return f"{self.url}/api"

    def add_asset(
        self,
        dandiset_id: str,
        path: str,
        file: str | os.PathLike,
        *,
        version: str = "draft",
        asset_id: str | None = None,
    ) -> str:
        """Publish ``file`` (below the file server's root) as an asset; returns its asset id."""
        file = Path(file).resolve()
        data = file.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        aid = asset_id or str(uuid.UUID(hashlib.md5(f"{dandiset_id}/{path}/{sha}".encode()).hexdigest()))
        asset = _Asset(aid, path, file, len(data), sha, str(uuid.uuid4()))
        ds = self.dandisets.setdefault(dandiset_id, _Dandiset(dandiset_id))
        ds.versions.setdefault(version, {})[path] = asset
        if version != "draft":
            ds.versions.setdefault("draft", {}).setdefault(path, asset)
        return aid

    # -- JSON shapes -------------------------------------------------------------------------
    def _version(self, ds: _Dandiset, v: str) -> dict[str, Any]:
        assets = ds.versions.get(v, {})
        return {
            "version": v,
            "name": f"Test dandiset {ds.identifier}",
            "asset_count": len(assets),
            "size": sum(a.size for a in assets.values()),
            "created": _now(),
            "modified": _now(),
            "status": "Valid" if v == "draft" else "Published",
        }

    def _dandiset(self, ds: _Dandiset) -> dict[str, Any]:
        published = sorted(v for v in ds.versions if v != "draft")
        return {
            "identifier": ds.identifier,
            "created": _now(),
            "modified": _now(),
            "contact_person": "Test, Person",
            "embargo_status": "OPEN",
            "most_recent_published_version": self._version(ds, published[-1]) if published else None,
            "draft_version": self._version(ds, "draft"),
        }

    def _asset_row(self, a: _Asset) -> dict[str, Any]:
        return {
            "asset_id": a.asset_id,
            "blob": a.blob,
            "zarr": None,
            "path": a.path,
            "size": a.size,
            "created": _now(),
            "modified": _now(),
        }

    def _asset_meta(self, a: _Asset) -> dict[str, Any]:
        return {
            "id": f"dandiasset:{a.asset_id}",
            "identifier": a.asset_id,
            "path": a.path,
            "contentSize": a.size,
            "encodingFormat": "application/x-nwb",
            "digest": {"dandi:sha2-256": a.sha256, "dandi:dandi-etag": a.sha256[:32] + "-1"},
            "contentUrl": [f"{self.api_url}/assets/{a.asset_id}/download/", self.files.url_for(a.file)],
        }

    def _find_asset(self, asset_id: str) -> _Asset | None:
        for ds in self.dandisets.values():
            for assets in ds.versions.values():
                for a in assets.values():
                    if a.asset_id == asset_id:
                        return a
        return None

    # -- routing -----------------------------------------------------------------------------
    def _make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        with self._lock:
            self.requests[path] += 1
        f = self.faults
        if f.latency_s:
            await asyncio.sleep(f.latency_s)
        if f.status is not None:
            return web.json_response({"detail": f"injected HTTP {f.status}"}, status=f.status)
        if f.fail_first > 0:
            f.fail_first -= 1
            return web.json_response({"detail": "injected transient error"}, status=f.fail_status)
        parts = [p for p in path.split("/") if p]
        try:
            return self._route(request, parts)
        except KeyError as exc:
            return web.json_response({"detail": f"Not found: {exc}"}, status=404)

    def _route(self, request: web.Request, parts: list[str]) -> web.StreamResponse:
        info = {
            "version": "0.0.0-test",
            "services": {
                "api": {"url": self.api_url},
                "webui": {"url": self.url},
                "jupyterhub": {"url": self.url},
            },
            "cli-minimal-version": "0.0.1",
            "cli-bad-versions": [],
        }
        if parts == ["server-info"] or parts == ["api", "info"]:
            return web.json_response(info)
        if not parts or parts[0] != "api":
            raise KeyError("/".join(parts))
        p = parts[1:]
        if p[:1] == ["assets"] and len(p) >= 2:
            a = self._find_asset(p[1])
            if a is None:
                raise KeyError(p[1])
            if p[2:] == ["download"]:
                raise web.HTTPFound(self.files.url_for(a.file))
            if p[2:] == ["info"]:
                return web.json_response({**self._asset_row(a), "metadata": self._asset_meta(a)})
            if p[2:] == []:
                return web.json_response(self._asset_meta(a))
            raise KeyError("/".join(p))
        if p[:1] == ["dandisets"] and len(p) >= 2:
            ds = self.dandisets[p[1]]
            if len(p) == 2:
                return web.json_response(self._dandiset(ds))
            if p[2] == "versions" and len(p) == 3:
                rows = [self._version(ds, v) for v in ds.versions]
                return web.json_response(
                    {"count": len(rows), "next": None, "previous": None, "results": rows}
                )
            if p[2] == "versions" and len(p) >= 4:
                v = p[3]
                if v not in ds.versions:
                    raise KeyError(v)
                assets = ds.versions[v]
                rest = p[4:]
                if rest == []:
                    return web.json_response({"name": f"Test dandiset {ds.identifier}", "version": v})
                if rest == ["info"]:
                    return web.json_response(
                        {
                            **self._version(ds, v),
                            "asset_validation_errors": [],
                            "version_validation_errors": [],
                        }
                    )
                if rest[:1] == ["assets"] and len(rest) == 1:
                    return self._list_assets(request, list(assets.values()))
                if rest[:1] == ["assets"] and len(rest) >= 2:
                    a = (
                        next(x for x in assets.values() if x.asset_id == rest[1])
                        if any(x.asset_id == rest[1] for x in assets.values())
                        else None
                    )
                    if a is None:
                        raise KeyError(rest[1])
                    if rest[2:] == ["info"]:
                        return web.json_response({**self._asset_row(a), "metadata": self._asset_meta(a)})
                    if rest[2:] == []:
                        return web.json_response(self._asset_meta(a))
                    if rest[2:] == ["download"]:
                        raise web.HTTPFound(self.files.url_for(a.file))
        raise KeyError("/".join(parts))

    def _list_assets(self, request: web.Request, assets: list[_Asset]) -> web.Response:
        import fnmatch

        q = request.query
        prefix = q.get("path")
        glob = q.get("glob")
        rows = sorted(assets, key=lambda a: a.path)
        if prefix:
            rows = [a for a in rows if a.path.startswith(prefix)]
        if glob:
            rows = [a for a in rows if fnmatch.fnmatchcase(a.path, glob)]
        page_size = int(q.get("page_size", self.page_size))
        page = int(q.get("page", 1))
        chunk = rows[(page - 1) * page_size : page * page_size]
        nxt = None
        if page * page_size < len(rows):
            nxt = str(request.url.update_query({"page": str(page + 1), "page_size": str(page_size)}))
        return web.json_response(
            {
                "count": len(rows),
                "next": nxt,
                "previous": None,
                "results": [self._asset_row(a) for a in chunk],
            }
        )
