"""The on-disk cache of remote bytes: remfile's chunk cache made safe for concurrent processes and
bounded in size, keyed by a file's stable identity (docs/reading.md)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

from remfile import DiskCache

from ..errors import SourceError

log = logging.getLogger(__name__)

__all__ = ["BoundedDiskCache", "cache_root", "chunk_key", "url_identity"]


def chunk_key(url: str, chunk_bytes: int, index: int) -> str:
    """Disk-cache key of remfile chunk ``index`` (``chunk_bytes`` long) of ``url``: remfile's own
    layout, which :class:`BoundedDiskCache` maps onto the file's stable identity."""
    return f"{url}|{chunk_bytes}|{index}"


def url_identity(url: str, version: dict) -> str:
    """Cache identity of the content of a plain URL: the full URL (query included) with the size,
    ETag and Last-Modified that ``version`` (a record of :meth:`BoundedDiskCache.get_meta`) gives."""
    return f"url:{url}|{version.get('size')}|{version.get('etag') or ''}|{version.get('modified') or ''}"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``cache_dir``, else ``$NWB_CELLTYPE_CACHE_DIR``, else
    ``~/.cache/nwb-celltype/remote``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("NWB_CELLTYPE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "nwb-celltype" / "remote"


class BoundedDiskCache(DiskCache):
    """remfile's on-disk chunk cache, made safe for concurrent processes and bounded in size.

    Chunks are written to a temporary file and renamed into place (readers never see a partial
    chunk). When the total size passes ``max_bytes``, the oldest chunks (by modification time) are
    deleted until it is below 90 % of the bound. Keys use ``identity`` instead of the URL: a DANDI
    asset's id and etag (so presigned URLs that change still hit), or a plain URL in full (query
    included) with the size, ETag and Last-Modified it had (:func:`url_identity`), so the chunks
    of a replaced file are never read as the new file's.

    Parameters
    ----------
    dirname : path
        Cache directory (created if absent).
    max_bytes : int
        Upper bound of the cache's size on disk, in bytes.
    identity : str or None
        Stable identity of the remote file, replacing the URL in the chunk keys.
    """

    def __init__(self, dirname: str | os.PathLike, *, max_bytes: int, identity: str | None = None) -> None:
        self.root = Path(dirname)
        try:
            (self.root / "chunks").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SourceError(
                f"Cannot create the cache directory {self.root}: {exc}. Pass cache_dir= a writable "
                "directory (or set NWB_CELLTYPE_CACHE_DIR)."
            ) from exc
        super().__init__(str(self.root / "chunks"))
        self.max_bytes = int(max_bytes)
        self.identity = identity
        self._approx_total: int | None = None
        self.hits = 0
        self.misses = 0

    def _key(self, key: str) -> str:
        if self.identity is not None:
            _url, _, rest = key.rpartition("|")
            url, _, size = _url.rpartition("|")
            if url:
                key = f"{self.identity}|{size}|{rest}"
        return key

    def _file(self, key: str) -> Path:
        return self._path(self._key(key))

    def _path(self, key: str) -> Path:
        h = hashlib.sha1(key.encode("utf-8")).hexdigest()
        return self.root / "chunks" / h[:2] / h[2:4] / h

    def discard(self, identity: str, size: int, chunk_bytes: int) -> int:
        """Delete the chunks of ``identity`` (a file of ``size`` bytes read in ``chunk_bytes``
        chunks); returns how many there were. Chunks of other chunk sizes are left to eviction."""
        n = 0
        for i in range(-(-int(size) // int(chunk_bytes))):
            try:
                self._path(f"{identity}|{chunk_bytes}|{i}").unlink()
                n += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not delete a chunk from the cache %s: %s", self.root, exc)
        self._approx_total = None
        return n

    def get(self, key: str) -> bytes | None:
        try:
            data = self._file(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            self.misses += 1
            return None
        self.hits += 1
        return data

    def set(self, key: str, value: bytes) -> None:
        path = self._file(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(value)
            os.replace(tmp, path)
        except OSError as exc:  # a full disk must not fail the read: the bytes are in memory
            log.warning("could not write to the cache %s: %s", self.root, exc)
            return
        if self._approx_total is None:
            self._approx_total = self.total_bytes()
        else:
            self._approx_total += len(value)
        if self._approx_total > self.max_bytes:
            self.evict()

    def total_bytes(self) -> int:
        """Bytes of chunks on disk now."""
        return sum(p.stat().st_size for p in self._chunk_files())

    def _chunk_files(self) -> list[Path]:
        out = []
        for dirpath, _dirs, files in os.walk(self.root / "chunks"):
            out.extend(Path(dirpath) / f for f in files if not f.startswith(".tmp-"))
        return out

    def evict(self) -> int:
        """Delete the oldest chunks until the cache is below 90 % of ``max_bytes``; returns the
        number of bytes freed. Safe when another process evicts at the same time."""
        entries = []
        for p in self._chunk_files():
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            entries.append((st.st_mtime, st.st_size, p))
        total = sum(e[1] for e in entries)
        target = int(self.max_bytes * 0.9)
        freed = 0
        for _mtime, size, p in sorted(entries, key=lambda e: e[0]):
            if total - freed <= target:
                break
            try:
                p.unlink()
                freed += size
            except FileNotFoundError:
                pass
        self._approx_total = total - freed
        if freed:
            log.info("evicted %d bytes from the cache %s", freed, self.root)
        return freed

    # Small JSON records (size, ETag, Last-Modified of plain URLs), which a second open checks with
    # one small request before it trusts the chunks.
    def get_meta(self, name: str) -> dict | None:
        p = self.root / "meta" / (hashlib.sha1(name.encode()).hexdigest() + ".json")
        try:
            return json.loads(p.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def set_meta(self, name: str, value: dict) -> None:
        d = self.root / "meta"
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
            with os.fdopen(fd, "w") as fh:
                json.dump(value, fh)
            os.replace(tmp, d / (hashlib.sha1(name.encode()).hexdigest() + ".json"))
        except OSError as exc:
            log.warning("could not write to the cache %s: %s", self.root, exc)
