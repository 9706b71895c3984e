"""The loopback servers themselves: running in the test process, they must not be able to deadlock
the client they serve."""

from __future__ import annotations

import gc

import h5py
import numpy as np
import pytest
from test_io_units import write_units_nwb

from nwb_celltype.io import open_source
from nwb_celltype.testing.servers import DandiApiServer, RangeServer

pytestmark = pytest.mark.network


class _CollectingServer(RangeServer):
    """A Range server whose thread runs a garbage collection before each request, when automatic
    collection is on (what the interpreter may do in any thread that allocates)."""

    async def _handle(self, request):
        if gc.isenabled():
            gc.collect()
        return await super()._handle(request)


def test_a_collection_in_the_server_thread_cannot_deadlock_a_remote_read(tmp_path):
    """h5py holds its global lock while it reads the remote file through us; a collection in the
    server thread that frees an h5py object waits for that lock: the read hangs until it times out
    (seen as intermittent 30 s x 4 hangs late in full-suite runs). The servers pause automatic
    collection while they run, and restore it after."""

    class Cycle:
        def __init__(self, obj):
            self.obj, self.me = obj, self

    local = tmp_path / "local.h5"
    with h5py.File(local, "w") as f:
        f["d"] = np.arange(3)
    truth = write_units_nwb(tmp_path / "u.nwb", layout="3d", n_units=6, seed=4)
    thresholds = gc.get_threshold()
    gc.set_threshold(10**9)  # no automatic collection in this thread: the garbage waits for the server's
    try:
        with h5py.File(local, "r") as lf, _CollectingServer(tmp_path) as files:
            # small chunks: the spike times are not among the bytes that opening the file fetched
            with open_source(
                files.url_for("u.nwb"), cache_dir=None, timeout_s=3, retries=0, min_chunk_bytes=4096
            ) as src:
                Cycle(lf["d"].id)  # cyclic garbage holding an h5py object
                spikes = src.h5["units/spike_times"][()]  # h5py reads through us, holding its lock
        assert gc.isenabled()
        np.testing.assert_array_equal(spikes, np.concatenate(truth["spikes"]))
    finally:
        gc.set_threshold(*thresholds)
        gc.enable()


def test_servers_pause_collection_until_the_last_stops(tmp_path):
    assert gc.isenabled()
    with RangeServer(tmp_path) as files:
        with DandiApiServer(files):
            assert not gc.isenabled()
        assert not gc.isenabled()  # one server still runs
    assert gc.isenabled()
    gc.disable()
    try:
        with RangeServer(tmp_path):
            pass
        assert not gc.isenabled()  # a state found disabled stays so
    finally:
        gc.enable()
