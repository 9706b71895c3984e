"""A plain URL whose server sends neither ETag nor Last-Modified: a file replaced by another of the
same size cannot be told from the cached one, so its cached bytes serve one open only."""

from __future__ import annotations

import time

import h5py
import pytest
from test_io_remote import _digest
from test_io_units import write_units_nwb

from nwb_celltype.io import read_units
from nwb_celltype.io._cache import url_identity
from nwb_celltype.io._remote import BoundedDiskCache
from nwb_celltype.testing.servers import RangeServer

pytestmark = pytest.mark.network


@pytest.fixture
def served(tmp_path):
    """(file, its URL, the cache folder) of a 5-unit recording served by a RangeServer that sends
    no ETag or Last-Modified."""
    root = tmp_path / "www"
    root.mkdir()
    rec = root / "rec.nwb"
    write_units_nwb(rec, n_units=5, seed=1)
    with RangeServer(root) as files:
        files.faults.no_validators = True
        yield rec, files.url_for("rec.nwb"), tmp_path / "cache"


def _new_spike_times_in_place(rec) -> None:
    """Other spike times, the file's size unchanged: the server gives nothing to tell them apart."""
    size = rec.stat().st_size
    time.sleep(0.01)
    with h5py.File(rec, "r+") as f:
        f["units/spike_times"][:] = f["units/spike_times"][:] + 1.0
    assert rec.stat().st_size == size


def test_a_replaced_file_of_the_same_size_is_read_again_without_validators(served, caplog):
    rec, url, cache = served
    first = _digest(read_units(url, cache_dir=cache))
    assert first == _digest(read_units(rec))
    _new_spike_times_in_place(rec)
    local = _digest(read_units(rec))
    assert local != first
    caplog.clear()
    with caplog.at_level("INFO", logger="nwb_celltype.io"):
        assert _digest(read_units(url, cache_dir=cache)) == local
    assert "no ETag or Last-Modified" in caplog.text


def test_a_server_with_validators_still_reads_an_unchanged_file_from_the_cache(tmp_path):
    root, cache = tmp_path / "www", tmp_path / "cache"
    root.mkdir()
    write_units_nwb(root / "rec.nwb", n_units=5, seed=1)
    with RangeServer(root) as files:
        url = files.url_for("rec.nwb")
        list(read_units(url, cache_dir=cache))
        files.reset_stats()
        assert len([i for b in read_units(url, cache_dir=cache) for i in b.unit_ids]) == 5
        assert files.stats().ranges == [("/rec.nwb", 0, 0)]  # one byte, then the cache


def test_without_validators_other_cached_chunks_are_dropped_when_the_head_was_evicted(served):
    """The head chunk evicted, the URL's record kept: the open probes the head and tail afresh, and
    the file's other cached chunks must not be read either (the server cannot say they are current)."""
    rec, url, cache = served
    first = _digest(read_units(url, cache_dir=cache, min_chunk_bytes=4096))
    disk = BoundedDiskCache(cache, max_bytes=1 << 30)
    head = disk._path(f"{url_identity(url, disk.get_meta(url))}|4096|0")
    assert head.exists()
    head.unlink()  # evicted
    _new_spike_times_in_place(rec)
    local = _digest(read_units(rec))
    assert local != first
    assert _digest(read_units(url, cache_dir=cache, min_chunk_bytes=4096)) == local
