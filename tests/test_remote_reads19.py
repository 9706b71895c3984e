"""What the Units reader's new paths (review 19) cost on a remote file, counted at a loopback Range
server: the waveform rate taken from the raw ElectricalSeries reads its metadata only (never its
``data``), and per-spike ``waveforms`` are read a group of units at a time (one ``waveforms_index``
read and one prefetch of the group's ``waveforms`` rows), not one request per unit."""

from __future__ import annotations

from datetime import datetime, timezone

import h5py
import numpy as np
import pytest

from nwb_celltype.io import read_units
from nwb_celltype.io._waveform_checks import MAX_SPIKES_AVERAGED
from nwb_celltype.testing.servers import RangeServer

pytestmark = pytest.mark.network

#: remfile's request granularity in the reader (DEFAULT_MIN_CHUNK_BYTES): a boundary chunk of the
#: raw series may be fetched with the metadata beside it.
CHUNK = 512 * 1024
#: Requests any remote read of these files makes before its columns: the size probe (head and
#: tail), the HDF5 metadata and the electrodes table, the spike times (their counts in
#: test_io_remote.py are 3-6).
FIXED_REQUESTS = 8


def _session(n_el: int = 32):
    from pynwb import NWBFile

    nwb = NWBFile("remote reads", "r19", datetime(2024, 1, 1, tzinfo=timezone.utc))
    dev = nwb.create_device("probe")
    grp = nwb.create_electrode_group("shank0", "shank", "CA1", dev)
    for i in range(n_el):
        nwb.add_electrode(group=grp, location="CA1", x=0.0, y=float(i), z=0.0)
    return nwb


def _raw_series(nwb, rng, seconds: float, rate: float = 40000.0, name: str = "ElectricalSeriesAP"):
    from hdmf.backends.hdf5.h5_utils import H5DataIO
    from pynwb.ecephys import ElectricalSeries

    n_el = len(nwb.electrodes)
    region = nwb.create_electrode_table_region(list(range(n_el)), "all electrodes")
    data = rng.integers(-200, 200, (int(seconds * rate), n_el), dtype=np.int16)
    nwb.add_acquisition(
        ElectricalSeries(
            name=name,
            data=H5DataIO(data, chunks=(8192, n_el)),
            electrodes=region,
            rate=rate,
            starting_time=0.0,
        )
    )
    return region


def _template(rng, n_samples: int, n_ch: int) -> np.ndarray:
    t = np.arange(n_samples)
    shape = -np.exp(-0.5 * ((t - n_samples // 3) / 2.0) ** 2) + 0.3 * np.exp(
        -0.5 * ((t - n_samples // 2) / 4.0) ** 2
    )
    return (shape[:, None] * rng.uniform(0.2, 1.0, n_ch)[None, :] * 80).astype(np.float32)


def _neuroconv_like(path, n_units: int = 300) -> None:
    """As NeuroConv writes a sorting beside its recording: waveform_mean (units, 82, 4) with no
    rate, an electrodes column, a 40 kHz raw series in acquisition and an LFP in processing."""
    from hdmf.backends.hdf5.h5_utils import H5DataIO
    from pynwb import NWBHDF5IO
    from pynwb.ecephys import LFP, ElectricalSeries

    rng = np.random.default_rng(19)
    nwb = _session()
    region = _raw_series(nwb, rng, seconds=2.0)  # 5 MB of int16
    lfp = rng.integers(-200, 200, (5000, 32), dtype=np.int16)
    nwb.create_processing_module("ecephys", "LFP").add(
        LFP(
            ElectricalSeries(
                name="LFP", data=H5DataIO(lfp, chunks=(2048, 32)), electrodes=region, rate=2500.0
            )
        )
    )
    for _ in range(n_units):
        c0 = int(rng.integers(0, 28))
        nwb.add_unit(
            spike_times=np.sort(rng.uniform(0, 600, 300)),
            electrodes=list(range(c0, c0 + 4)),
            waveform_mean=_template(rng, 82, 4),
        )
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


def _per_spike(
    path, n_units: int = 40, n_spikes: int = 2000, n_ch: int = 4, n_samples: int = 40
) -> np.ndarray:
    """Per-spike ``waveforms`` in NWB's doubly ragged layout (``waveforms_index_index`` per unit,
    ``waveforms_index`` per spike, a row per electrode), no waveform_mean, beside a raw series;
    the Units columns contiguous, as HDF5 writes them unchunked (pynwb before hdmf 4, MatNWB).
    Returns each unit's peak-channel mean over its first MAX_SPIKES_AVERAGED spikes."""
    from hdmf.common import DynamicTableRegion, VectorData, VectorIndex
    from pynwb import NWBHDF5IO
    from pynwb.misc import Units

    rng = np.random.default_rng(20)
    nwb = _session()
    _raw_series(nwb, rng, seconds=6.0, rate=30000.0)  # 11.5 MB: the file is not mostly Units
    counts = rng.integers(n_spikes * 9 // 10, n_spikes * 11 // 10, n_units)
    rows, el_rows, truth = [], [], []
    for k in counts:
        block = _template(rng, n_samples, n_ch).T[None] + rng.normal(0, 5, (k, n_ch, n_samples)).astype(
            np.float32
        )
        rows.append(block.reshape(-1, n_samples))
        mean = block[:MAX_SPIKES_AVERAGED].astype(np.float64).mean(axis=0)  # (channels, samples)
        truth.append(mean[np.argmax(np.ptp(mean, axis=1))])
        c0 = int(rng.integers(0, 32 - n_ch))
        el_rows += list(range(c0, c0 + n_ch))
    ends = np.cumsum(counts)
    st = VectorData(name="spike_times", description="s", data=np.sort(rng.uniform(0, 600, int(ends[-1]))))
    wf = VectorData(name="waveforms", description="per spike", data=np.concatenate(rows))
    wf_i = VectorIndex(name="waveforms_index", data=np.arange(1, ends[-1] + 1) * n_ch, target=wf)
    el = DynamicTableRegion(name="electrodes", description="e", data=el_rows, table=nwb.electrodes)
    columns = [
        st,
        VectorIndex(name="spike_times_index", data=ends, target=st),
        wf,
        wf_i,
        VectorIndex(name="waveforms_index_index", data=ends, target=wf_i),
        el,
        VectorIndex(name="electrodes_index", data=np.arange(1, n_units + 1) * n_ch, target=el),
    ]
    nwb.units = Units(
        name="units",
        description="s",
        id=list(range(n_units)),
        columns=columns,
        electrode_table=nwb.electrodes,
    )
    create = h5py.Group.create_dataset

    def contiguous(self, name, *args, **kwargs):
        if self.name.startswith("/units"):
            kwargs["chunks"] = None
            kwargs.pop("maxshape", None)
        return create(self, name, *args, **kwargs)

    h5py.Group.create_dataset = contiguous
    try:
        with NWBHDF5IO(str(path), "w") as io:
            io.write(nwb)
    finally:
        h5py.Group.create_dataset = create
    return np.array(truth)


def _data_span(path, series: str) -> tuple[int, int]:
    """Byte range of a chunked dataset's chunks in the file."""
    with h5py.File(path, "r") as f:
        d = f[series]
        infos = [d.id.get_chunk_info(i) for i in range(d.id.get_num_chunks())]
    return min(c.byte_offset for c in infos), max(c.byte_offset + c.size for c in infos)


def _fetched_within(ranges, lo: int, hi: int) -> int:
    return sum(max(0, min(b + 1, hi) - max(a, lo)) for _, a, b in ranges)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote19")
    _neuroconv_like(root / "neuroconv.nwb")
    truth = _per_spike(root / "per_spike.nwb")
    with RangeServer(root) as server:
        yield server, root, truth


def _read(server, name: str) -> list:
    server.reset_stats()
    return list(read_units(server.url_for(name), cache_dir=False))


def test_rate_from_the_raw_series_reads_its_metadata_not_its_data(served):
    server, root, _ = served
    batches = _read(server, "neuroconv.nwb")
    stats = server.stats()
    assert sum(len(b.unit_ids) for b in batches) == 300
    assert batches[0].waveform_rate_hz == 40000.0
    assert batches[0].extra["waveform_rate_source"] == "electrical_series:ElectricalSeriesAP"
    # 300 units with a waveform_mean: the few requests of any read, none per unit or per series
    assert stats.range_requests <= FIXED_REQUESTS, stats.ranges
    # of the raw series' 5 MB of data, at most the remfile chunks it shares with metadata
    lo, hi = _data_span(root / "neuroconv.nwb", "acquisition/ElectricalSeriesAP/data")
    assert hi - lo > 8 * CHUNK
    assert _fetched_within(stats.ranges, lo, hi) <= 2 * CHUNK, stats.ranges


def test_per_spike_waveforms_are_read_a_group_of_units_at_a_time(served):
    server, root, truth = served
    local = list(read_units(root / "per_spike.nwb"))
    batches = _read(server, "per_spike.nwb")
    stats = server.stats()
    assert sum(len(b.unit_ids) for b in batches) == len(truth) == 40
    waves = np.concatenate([b.waveforms for b in batches])
    np.testing.assert_allclose(waves, truth, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(waves, np.concatenate([b.waveforms for b in local]))
    assert batches[0].extra["waveform_rate_source"] == "electrical_series:ElectricalSeriesAP"
    # each unit's first 1000 spikes are 640 kB, the ~1000 it has past them ~640 kB: one span (the
    # skipped spikes cost less than SPAN_GAP_BYTES), then most of the file, so fetched in one stream.
    # Read unit by unit (each unit's waveforms_index and rows apart), it is a request per unit.
    assert stats.range_requests <= FIXED_REQUESTS + 2, (stats.range_requests, stats.ranges)


def test_some_per_spike_units_cost_a_request_per_group_not_per_unit(served):
    server, root, truth = served
    server.reset_stats()
    url = server.url_for("per_spike.nwb")
    batches = list(read_units(url, cache_dir=False, unit_ids=range(20), batch_size=8))
    stats = server.stats()
    np.testing.assert_allclose(
        np.concatenate([b.waveforms for b in batches]), truth[:20], rtol=1e-5, atol=1e-4
    )
    # 20 units, 26 MB spanned (under the 63 MiB a request may span), a third of the file: no
    # whole-file stream; per batch of 8 units one waveforms_index read and one request for the rows
    assert stats.range_requests <= FIXED_REQUESTS + 2 * 3, (stats.range_requests, stats.ranges)
    lo, hi = _data_span(root / "per_spike.nwb", "acquisition/ElectricalSeriesAP/data")
    assert _fetched_within(stats.ranges, lo, hi) <= 2 * CHUNK, stats.ranges
    assert stats.bytes_sent < 0.6 * (root / "per_spike.nwb").stat().st_size


def test_spike_groups_span_small_gaps_and_split_at_large_ones_and_the_cap():
    from nwb_celltype.io._waveform_checks import SPAN_GAP_BYTES, spike_groups

    index = np.cumsum([3000, 10, 0, 1500, 500])  # spikes per unit; the first MAX_SPIKES_AVERAGED read
    rows = np.arange(5)
    # 2000 skipped spikes of unit 0 cost more than SPAN_GAP_BYTES at this size, the 500 between units 3 and 4 do not
    big = SPAN_GAP_BYTES / 1000
    assert spike_groups(index, rows, big) == [(0, 1, 0, 1000), (1, 5, 3000, 5010)]
    # small spikes: one span over the skipped ones; a cap splits it (a unit alone may exceed it)
    assert spike_groups(index, rows, 1.0) == [(0, 5, 0, 5010)]
    assert spike_groups(index, rows, 1.0, max_bytes=1200) == [
        (0, 1, 0, 1000),
        (1, 4, 3000, 4010),
        (4, 5, 4510, 5010),
    ]
