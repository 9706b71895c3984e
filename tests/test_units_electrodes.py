"""Which electrode a unit's location and layer come from, and waveform_mean arrays whose axes are
swapped: real NWB files written with pynwb (patched with h5py where pynwb refuses to write the
fault), read with ``read_units`` and annotated, locally and as a derived file from a loopback server.

- a (units, samples) waveform does not say which of a unit's electrodes it was recorded on: the
  location all the unit's electrodes share, else unknown (not the first electrode's);
- a waveform over the whole probe with a unit listing fewer electrodes: the peak channel is a row of
  the electrodes table, not an index into the unit's list;
- a derived file keeps the peak electrode (``peak_electrode``), so annotating it again gives the
  units the locations annotating the source gave them;
- (units, channels, samples) arrays are set aside however many channels the probe has;
- ``electrodes`` values that are not rows of the electrodes table give a warning and unknown
  locations, not a traceback or another electrode's location.
"""

from __future__ import annotations

import datetime
import logging
import shutil

import h5py
import numpy as np
import pytest
from pynwb import NWBHDF5IO, NWBFile
from pynwb.misc import Units

from nwb_celltype.errors import NotNWBError
from nwb_celltype.io import read_units
from nwb_celltype.simulate import demo_recording_path

LOG = "nwb_celltype.io._units_layout"
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def spike_wave(n_samples: int, n_channels: int, peak: int) -> np.ndarray:
    """(samples, channels): a trough at a third of the window, largest on channel ``peak``."""
    t = np.arange(n_samples)
    shape = -np.exp(-0.5 * ((t - n_samples // 3) / 2.0) ** 2) + 0.3 * np.exp(
        -0.5 * ((t - n_samples // 3 - 8) / 4.0) ** 2
    )
    gain = 0.2 + 0.8 * np.exp(-0.5 * ((np.arange(n_channels) - peak) / 1.5) ** 2)
    return (100.0 * shape[:, None] * gain[None, :]).astype(np.float32)


def write_file(path, *, locations, units, waveform_rate=30000.0, n_electrodes=None):
    """An NWB file whose electrodes have ``locations`` and whose units are dicts of ``waveform_mean``
    and optionally ``electrodes`` (spike times are made up)."""
    nwb = NWBFile("electrodes", "electrodes", T0)
    dev = nwb.create_device(name="probe")
    grp = nwb.create_electrode_group(name="shank", description="s", location="brain", device=dev)
    for loc in locations:
        nwb.add_electrode(group=grp, location=loc)
    kwargs = {"electrode_table": nwb.electrodes} if any("electrodes" in u for u in units) else {}
    table = Units(name="units", description="units", waveform_rate=waveform_rate, **kwargs)
    rng = np.random.default_rng(0)
    for u in units:
        table.add_unit(spike_times=np.sort(rng.uniform(0, 100, 300)), **u)
    nwb.units = table
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def read_all(path, **kw):
    batches = list(read_units(path, require_waveforms=False, **kw))
    where = np.concatenate([b.extra["locations"] for b in batches])
    peak_el = np.concatenate([b.extra.get("peak_electrodes", np.full(len(b), -9)) for b in batches])
    return batches, where, np.concatenate([b.layers for b in batches]), peak_el


# --- M1: a (units, samples) waveform does not say which electrode is the peak ------------------


def test_one_channel_waveform_uses_the_location_the_units_electrodes_share(tmp_path):
    locs = ["CA1", "CA1", "SIMpu", "SIMgr", "SIMgr", "SIMgr"]
    w = spike_wave(90, 1, 0)[:, 0]
    units = [
        {"waveform_mean": w, "electrodes": [0, 1, 2, 3, 4, 5]},  # CA1 first, mostly cerebellum
        {"waveform_mean": w, "electrodes": [3, 4, 5]},  # all SIMgr
        {"waveform_mean": w, "electrodes": [2, 3]},  # SIMpu and SIMgr: same region, two layers
        {"waveform_mean": w, "electrodes": [1]},  # its one electrode
    ]
    path = write_file(tmp_path / "2d.nwb", locations=locs, units=units)
    _, where, layers, peak_el = read_all(path)
    assert list(where) == ["", "SIMgr", "", "CA1"]
    assert list(layers) == ["unknown", "GCL", "unknown", "unknown"]
    assert list(peak_el) == [-1, -1, -1, -1]  # the waveform does not say; the shared value is used


def test_one_channel_waveform_with_a_peak_electrode_column(tmp_path):
    """The column a derived file writes: used where it names one of the unit's electrodes."""
    locs = ["CA1", "CA1", "SIMgr", "SIMgr"]
    w = spike_wave(90, 1, 0)[:, 0]
    path = tmp_path / "pe.nwb"
    units = [{"waveform_mean": w, "electrodes": [0, 1, 2, 3]} for _ in range(3)]
    write_file(path, locations=locs, units=units)
    with h5py.File(path, "r+") as f:
        f["units"].create_dataset("peak_electrode", data=np.array([2, 1, 7], dtype=np.int64))
    _, where, layers, peak_el = read_all(path)
    assert list(where) == ["SIMgr", "CA1", ""] and list(peak_el) == [2, 1, -1]
    assert list(layers) == ["GCL", "unknown", "unknown"]


# --- M2: the waveform spans the probe, the unit lists fewer electrodes -------------------------


def test_waveform_over_the_whole_probe_indexes_the_electrodes_table(tmp_path, caplog):
    locs = ["SIMgr"] * 8 + ["CA1"] * 4
    peaks = [6, 9, 3, 11]
    # each unit lists electrodes 2..11 (10), the waveform spans all 12: channel p is electrode p
    units = [{"waveform_mean": spike_wave(90, 12, p), "electrodes": list(range(2, 12))} for p in peaks]
    path = write_file(tmp_path / "sparse.nwb", locations=locs, units=units)
    _, where, layers, peak_el = read_all(path, batch_size=1)
    assert list(where) == ["SIMgr", "CA1", "SIMgr", "CA1"]
    assert list(layers) == ["GCL", "unknown", "GCL", "unknown"]
    assert list(peak_el) == peaks
    # the unit's own list where it has one electrode per channel, in its order
    units = [{"waveform_mean": spike_wave(90, 3, p), "electrodes": [10, 1, 4]} for p in (0, 1, 2)]
    path = write_file(tmp_path / "own.nwb", locations=locs, units=units)
    _, where, _, peak_el = read_all(path)
    assert list(where) == ["CA1", "SIMgr", "SIMgr"] and list(peak_el) == [10, 1, 4]


def test_channel_counts_matching_nothing_give_the_shared_location_and_one_warning(tmp_path, caplog):
    locs = ["SIMgr"] * 8 + ["CA1"] * 8
    units = [
        {"waveform_mean": spike_wave(90, 6, 1), "electrodes": [0, 1, 2, 3, 12, 13, 14]},  # mixed
        {"waveform_mean": spike_wave(90, 6, 4), "electrodes": [0, 1, 2, 3, 4, 5, 6]},  # all SIMgr
        {"waveform_mean": spike_wave(90, 6, 2), "electrodes": [9, 10, 11, 12, 13, 14, 15]},
    ]
    path = write_file(tmp_path / "odd.nwb", locations=locs, units=units)
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        _, where, _, peak_el = read_all(path, batch_size=1)
    assert list(where) == ["", "SIMgr", "CA1"] and list(peak_el) == [-1, -1, -1]
    said = [r.getMessage() for r in caplog.records if "which electrode the peak channel is" in r.getMessage()]
    assert len(said) == 1 and "waveform_mean has 6 channels, but unit row 0 lists 7 electrodes" in said[0]


# --- M1, derived files: the peak electrode travels with the peak-channel waveform --------------


@pytest.fixture(scope="module")
def demo_units():
    with NWBHDF5IO(str(demo_recording_path()), "r") as io:
        u = io.read().units
        n = 24
        return [np.asarray(u["spike_times"][i]) for i in range(n)], np.asarray(u["waveform_mean"].data[:n])


@pytest.mark.network
def test_derived_file_keeps_each_units_peak_electrode(tmp_path, demo_units):
    """A source with (units, samples, channels) waveforms whose units each list all 12 electrodes,
    6 in CA1 and 6 in the cerebellar cortex: the derived file's units, re-read or re-annotated,
    keep the locations of their peak electrodes (they took the first electrode's, CA1)."""
    from nwb_celltype.annotate import annotate
    from nwb_celltype.testing.servers import RangeServer

    trains, waves = demo_units
    locs = ["CA1"] * 6 + ["SIMgr"] * 6
    served = tmp_path / "served"
    served.mkdir()
    units = [{"waveform_mean": w, "electrodes": list(range(12))} for w in waves]
    src = write_file(served / "src.nwb", locations=locs, units=units)
    _, src_where, _, src_peak = read_all(src)
    assert set(src_where) == {"CA1", "SIMgr"}  # both kinds of unit, so the test can fail
    with RangeServer(served) as files:
        res = annotate(files.url_for("src.nwb"), out=tmp_path / "derived.nwb", cache_dir=False)
    assert res.mode == "derived" and res.outside_cerebellar_cortex > 0
    _, derived_where, _, derived_peak = read_all(res.output_path)
    np.testing.assert_array_equal(derived_where, src_where)
    again = annotate(res.output_path, out=tmp_path / "again.nwb", overwrite=True)  # a new model version
    assert again.outside_cerebellar_cortex == res.outside_cerebellar_cortex
    np.testing.assert_array_equal(derived_peak, src_peak)
    with h5py.File(res.output_path, "r") as f:
        np.testing.assert_array_equal(f["units/peak_electrode"][()], src_peak)
        assert f["units/waveform_mean"].ndim == 2 and len(f["units/electrodes"]) == 24 * 12
    # what the derived writer asks of the source when not given the reader's peak electrodes
    from nwb_celltype.io import open_source
    from nwb_celltype.io._units import unit_peak_electrodes

    with open_source(src) as s:
        np.testing.assert_array_equal(unit_peak_electrodes(s, None, np.arange(24)[::-1]), src_peak[::-1])


@pytest.mark.network
def test_derived_annotate_reads_each_waveform_once(tmp_path, monkeypatch):
    """The derived writer takes the reader's peak electrodes: one derived annotate reads each unit's
    waveform_mean once, batch by batch (it read every unit's a second time, in one call, for the
    peak_electrode column). The fallback for callers without the reader's output reads in batches."""
    import nwb_celltype.io._units as units_module
    from nwb_celltype.annotate import annotate
    from nwb_celltype.io import open_source
    from nwb_celltype.testing.servers import RangeServer

    served = tmp_path / "served"
    served.mkdir()
    units = [{"waveform_mean": spike_wave(82, 8, i % 8), "electrodes": list(range(8))} for i in range(20)]
    src = write_file(served / "src.nwb", locations=["SIMgr"] * 4 + ["CA1"] * 4, units=units)
    calls: list[list[int]] = []
    read = units_module._read_waveforms

    def counted(lay, rows, prefetch):
        calls.append(np.asarray(rows).tolist())
        return read(lay, rows, prefetch)

    monkeypatch.setattr(units_module, "_read_waveforms", counted)
    with RangeServer(served) as files:
        res = annotate(files.url_for("src.nwb"), out=tmp_path / "derived.nwb", cache_dir=False, batch_size=8)
    assert res.mode == "derived"
    assert sorted(r for c in calls for r in c) == list(range(20))  # each unit once
    assert max(len(c) for c in calls) <= 8
    with h5py.File(res.output_path, "r") as f:
        np.testing.assert_array_equal(f["units/peak_electrode"][()], [i % 8 for i in range(20)])

    from nwb_celltype.io._units import unit_peak_electrodes

    calls.clear()
    with open_source(src) as s:
        peaks = unit_peak_electrodes(s, None, np.arange(20)[::-1], batch_size=7)
    np.testing.assert_array_equal(peaks, [i % 8 for i in range(20)][::-1])
    assert [len(c) for c in calls] == [7, 7, 6]


# --- M3: (units, channels, samples) on probes of any size -------------------------------------


def _swapped_units(n_units: int, n_channels: int, electrodes: bool):
    units = []
    for i in range(n_units):
        w = spike_wave(120, n_channels, (3 * i) % n_channels).T.copy()  # (channels, samples)
        units.append({"waveform_mean": w, **({"electrodes": list(range(n_channels))} if electrodes else {})})
    return units


@pytest.mark.parametrize(
    ("n_channels", "electrodes", "why"),
    [
        (
            32,
            True,
            "waveform_mean's 32 samples match the 32 electrodes each unit lists (all the electrodes "
            "table's) while its 120 channels match no electrode count",
        ),
        (384, False, "384 samples, 12.80 ms at 30000 Hz: longer than a mean spike waveform"),
    ],
)
def test_swapped_axes_are_set_aside_on_any_probe(tmp_path, caplog, n_channels, electrodes, why):
    path = write_file(
        tmp_path / "swapped.nwb",
        locations=["SIMgr"] * n_channels,
        units=_swapped_units(6, n_channels, electrodes),
    )
    with pytest.raises(NotNWBError, match=r"its axes may be \(units, channels, samples\)"):
        next(read_units(path))
    with caplog.at_level(logging.WARNING, logger=LOG):
        (batch,) = list(read_units(path, require_waveforms=False))
    assert batch.waveforms is None
    assert all(r.startswith("waveform_mean set aside") and why in r for r in batch.extra["reasons"])
    assert any(why in r.getMessage() and "set aside" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("n_samples", "n_channels", "rate", "n_electrodes", "unit_electrodes"),
    [
        (82, 32, 30000.0, 32, 32),  # Kilosort templates on a 32-channel probe
        (82, 384, 30000.0, 384, 384),  # Neuropixels, every channel kept
        (180, 12, 30000.0, 12, 12),  # C4's 6 ms windows
        (32, 4, 32000.0, 32, 4),  # Neuralynx: 1 ms on a tetrode of 8 (32 samples = 32 electrodes)
        (90, 1, 30000.0, 4, 1),
        # 64 samples (2.1 ms) on the 32 nearest channels of a 64-site probe, each unit listing one
        # electrode: the sample count equals the table's size, which says nothing here
        (64, 32, 30000.0, 64, 1),
    ],
)
def test_correct_layouts_are_read(
    tmp_path, caplog, n_samples, n_channels, rate, n_electrodes, unit_electrodes
):
    units = [
        {
            "waveform_mean": spike_wave(n_samples, n_channels, i % n_channels),
            "electrodes": list(range(unit_electrodes)),
        }
        for i in range(5)
    ]
    path = write_file(
        tmp_path / "ok.nwb", locations=["SIMgr"] * n_electrodes, units=units, waveform_rate=rate
    )
    with caplog.at_level(logging.WARNING, logger=LOG):
        (batch,) = list(read_units(path))
    assert not caplog.records
    assert batch.waveforms.shape == (5, n_samples) and list(batch.extra["reasons"]) == [""] * 5
    np.testing.assert_array_equal(batch.peak_channels, [i % n_channels for i in range(5)])


def test_content_keeps_a_correct_layout_whose_samples_match_the_units_electrodes(tmp_path, caplog):
    """Each unit lists 64 of 128 electrodes, as many as its waveform's samples, on 32 channels: the
    counts alone would call the axes swapped, but every unit's trough is at the same sample, on
    different channels, so the layout is NWB's and the waveforms are read."""
    units = [{"waveform_mean": spike_wave(64, 32, 5 * i), "electrodes": list(range(64))} for i in range(5)]
    path = write_file(tmp_path / "ok.nwb", locations=["SIMgr"] * 128, units=units)
    with caplog.at_level(logging.WARNING, logger=LOG):
        (batch,) = list(read_units(path))
    assert not [r for r in caplog.records if "set aside" in r.getMessage()]
    assert batch.waveforms.shape == (5, 64) and list(batch.extra["reasons"]) == [""] * 5
    np.testing.assert_array_equal(batch.peak_channels, [5 * i for i in range(5)])


def test_electrode_counts_name_what_they_count():
    """The channel counts a (units, samples, channels) array may have: the electrodes every unit
    lists, and the table's size only where the units list none (not where they list some)."""
    from nwb_celltype.io._units_layout import _electrode_counts

    one_each = (np.arange(6), np.arange(1, 7))
    assert _electrode_counts(one_each, 64) == {1: "the 1 electrodes each unit lists"}
    all_of_them = (np.tile(np.arange(32), 3), np.array([32, 64, 96]))
    assert _electrode_counts(all_of_them, 32) == {
        32: "the 32 electrodes each unit lists (all the electrodes table's)"
    }
    assert _electrode_counts((np.zeros(0, np.int64), np.zeros(3, np.int64)), 64) == {
        64: "the electrodes table's 64 rows (the units list none)"
    }
    assert _electrode_counts((np.arange(3), np.array([1, 3])), 64) == {}  # differing numbers
    assert _electrode_counts(None, None) == {}


def test_one_channel_waveform_longer_than_a_spike_is_set_aside(tmp_path):
    """(units, samples) of 600 samples at 30 kHz (20 ms): no mean spike waveform is that long."""
    units = [{"waveform_mean": spike_wave(600, 1, 0)[:, 0]} for _ in range(3)]
    path = write_file(tmp_path / "long.nwb", locations=["SIMgr"], units=units)
    (batch,) = list(read_units(path, require_waveforms=False))
    assert batch.waveforms is None
    assert "20.00 ms at 30000 Hz: longer than a mean spike waveform" in batch.extra["reasons"][0]
    assert "is the sampling rate right?" in batch.extra["reasons"][0]


# --- M5: electrodes that are not rows of the electrodes table ---------------------------------


@pytest.mark.parametrize("bad", [40, 12, -1])
def test_electrodes_outside_the_table_give_a_warning_and_unknown_locations(tmp_path, caplog, bad):
    locs = ["SIMgr"] * 11 + ["CA1"]
    units = [{"waveform_mean": spike_wave(90, 2, 0), "electrodes": [2 * i, 2 * i + 1]} for i in range(6)]
    path = write_file(tmp_path / "bad.nwb", locations=locs, units=units)
    with h5py.File(path, "r+") as f:  # pynwb refuses to write it; converters do
        el = f["units/electrodes"]
        x = el[()]
        x[6] = bad  # unit row 3's first electrode, its peak channel's
        el[...] = x
    with caplog.at_level(logging.WARNING, logger=LOG):
        _, where, layers, peak_el = read_all(path)
    assert list(where) == [""] * 6 and list(layers) == ["unknown"] * 6 and list(peak_el) == [-1] * 6
    (msg,) = [r.getMessage() for r in caplog.records]
    assert f"unit row 3 (id 3) lists electrode {bad}, but the electrodes table has 12 rows" in msg
    assert "0-based rows of the electrodes table" in msg and "layers and brain regions unknown" in msg


def test_features_cli_runs_on_electrodes_outside_the_table(tmp_path):
    """The CLI path that reads units without pynwb (``annotate`` appends with pynwb, which refuses
    such a file with its own one-line error): exit 0, the units' features, no traceback."""
    from click.testing import CliRunner

    from nwb_celltype.cli import main

    path = tmp_path / "badel.nwb"
    shutil.copyfile(demo_recording_path(), path)
    with h5py.File(path, "r+") as f:
        el = f["units/electrodes"]
        x = el[()]
        x[5 * 12 : 6 * 12] += len(f["general/extracellular_ephys/electrodes/id"])  # unit row 5
        el[...] = x
    r = CliRunner().invoke(main, ["features", str(path), "--out", str(tmp_path / "f.npz"), "--quiet"])
    assert r.exit_code == 0 and r.exception is None, r.output
    assert (tmp_path / "f.npz").exists()


def test_malformed_electrodes_index_gives_a_warning(tmp_path, caplog):
    units = [{"waveform_mean": spike_wave(90, 2, 0), "electrodes": [2 * i, 2 * i + 1]} for i in range(3)]
    path = write_file(tmp_path / "idx.nwb", locations=["SIMgr", "CA1"] * 3, units=units)
    with h5py.File(path, "r+") as f:
        f["units/electrodes_index"][...] = np.array([2, 1, 6])
    with caplog.at_level(logging.WARNING, logger=LOG):
        _, where, _, _ = read_all(path)
    assert list(where) == [""] * 3
    assert any("electrodes_index decreases at row 1" in r.getMessage() for r in caplog.records)
