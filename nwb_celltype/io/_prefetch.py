"""Prefetch the bytes of a run of rows of an HDF5 dataset from a remote file in one request."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["ChunkPrefetcher"]


class ChunkPrefetcher:
    """Loads the bytes of a dataset's rows r0..r1 from a remote file in one request before h5py
    reads them chunk by chunk (which would otherwise cost a round trip per chunk, or per remfile
    read-ahead step). Chunk byte addresses come from HDF5's chunk index, read once per dataset."""

    def __init__(self, fileobj, max_span_bytes: int) -> None:
        self.fileobj = fileobj
        self.max_span = max_span_bytes
        self.loaded: dict[str, list[int]] = {}
        self._chunks: dict[str, np.ndarray | None] = {}

    @classmethod
    def for_file(cls, fileobj) -> ChunkPrefetcher:
        """The prefetcher of a source's remote file (``Source.remote_file``; None for a local file:
        then it does nothing): one request spans remfile's largest read, at least 1 MiB."""
        return cls(fileobj, max(fileobj.remfile._max_chunk_size, 1 << 20) if fileobj is not None else 0)

    @property
    def step(self) -> int:
        """remfile's chunk size: the granularity of what a prefetch loads and releases."""
        return self.fileobj.remfile._min_chunk_size

    def request_bytes(self) -> int | None:
        """The most bytes one prefetch holds in one request with no read-ahead past it (a chunk on
        each side of a span may be partly outside it); None for a local file."""
        if self.fileobj is None:
            return None
        return max(self.step, self.max_span - 2 * self.step)

    def _index(self, dset) -> np.ndarray | None:
        """(k, 3) int64 [first row, byte offset, byte size] per chunk, sorted by row; None when
        the layout is not understood (then no prefetch)."""
        key = dset.name
        if key not in self._chunks:
            arr = None
            try:
                if dset.chunks is None:
                    off = dset.id.get_offset()
                    if off is not None:
                        arr = np.array([[0, off, dset.id.get_storage_size()]], dtype=np.int64)
                else:
                    n = dset.id.get_num_chunks()
                    rows = []
                    for i in range(n):
                        ci = dset.id.get_chunk_info(i)
                        rows.append((ci.chunk_offset[0], ci.byte_offset, ci.size))
                    arr = np.array(sorted(rows), dtype=np.int64).reshape(-1, 3)
            except Exception:  # an old HDF5 without chunk queries: read without prefetch
                log.debug("no chunk index for %s", key, exc_info=True)
            self._chunks[key] = arr
        return self._chunks[key]

    def __call__(self, dset, r0: int, r1: int) -> None:
        if self.fileobj is None or r1 <= r0:
            return
        idx = self._index(dset)
        if idx is None or len(idx) == 0:
            return
        if dset.chunks is None:
            row_bytes = int(np.prod(dset.shape[1:], dtype=np.int64)) * dset.dtype.itemsize
            lo, hi = idx[0, 1] + r0 * row_bytes, idx[0, 1] + r1 * row_bytes
        else:
            c0 = dset.chunks[0]
            sel = idx[(idx[:, 0] < r1) & (idx[:, 0] + c0 > r0)]
            if len(sel) == 0:
                return
            lo, hi = int(sel[:, 1].min()), int((sel[:, 1] + sel[:, 2]).max())
            if hi - lo > 2 * int(sel[:, 2].sum()):  # chunks scattered: a span would waste bytes
                return
        # forget this dataset's bytes from the previous batch, except those this batch needs
        # again (a boundary chunk): memory stays bounded by one batch, not by the file
        step = self.step
        keep = range(int(lo) // step, (int(hi) - 1) // step + 1)
        old = self.loaded.pop(dset.name, [])
        self.fileobj.release([i for i in old if i not in keep])
        loaded = [i for i in old if i in keep]
        for a in range(int(lo), int(hi), self.max_span):
            loaded += self.fileobj.prefetch(a, min(a + self.max_span, int(hi)))
        self.loaded[dset.name] = loaded

    def release(self) -> None:
        """Forget all prefetched bytes (after the last batch)."""
        if self.fileobj is not None:
            for old in self.loaded.values():
                self.fileobj.release(old)
        self.loaded = {}
