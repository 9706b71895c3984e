"""Tests that kill the survivors of mutation audit 21 (notes/audit21_mutation.md): how units, spike
times, waveforms and their rate are read and checked (io._units, io._units_layout,
io._recording_rate, io._waveform_checks), how annotations and their Units columns are written
(nwb._write, nwb._units_columns), the label and feature tables (library.label_tables,
library.tables), C4's unit selection (features.selection) and the waveform edge rule
(features._main_peak). Files are real NWB files written with pynwb; every expected value is worked
out here by hand, never by the code under test."""

from __future__ import annotations

import datetime
import logging

import h5py
import numpy as np
import pytest
from pynwb import NWBHDF5IO
from test_units_electrodes import read_all, spike_wave, write_file
from test_units_writers19 import _jittered, _time_scale_warnings, read, template, trains, write

from nwb_celltype.errors import AnnotationExistsError, InvalidAnnotationError, NotNWBError
from nwb_celltype.nwb import add_annotations, add_classifier
from nwb_celltype.nwb._types import CellTypeClassifier

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)

# ---------------------------------------------------------------------------------------------
# io._units: the peak channel, its sign, and what counts as a waveform


def test_peak_channel_is_the_largest_peak_to_peak_and_the_sign_is_relative_to_the_baseline(tmp_path):
    """Unit 0 (40 samples x 2 channels, zero elsewhere): channel 0 has a -100 trough only
    (peak-to-peak 100), channel 1 a -80 trough and a +50 peak (130): the peak channel is 1 (the
    largest |value| is on channel 0), its sign -1 (80 below the baseline beats 50 above).
    Unit 1 (one channel): a baseline of 200 with a dip to 100 and a rise to 250: relative to the
    baseline (median 200) a -100 trough and a +50 peak, so sign -1 (the raw maximum 250 is the
    largest value). Unit 2: recorded as zeros everywhere: no waveform."""
    w0 = np.zeros((40, 2))
    w0[13, 0] = -100.0
    w0[13, 1], w0[25, 1] = -80.0, 50.0
    w1 = np.full((40, 2), 200.0)
    w1[13, :], w1[25, :] = 100.0, 250.0
    w1[:, 1] = 200.0  # flat second channel: peak-to-peak 0
    w2 = np.zeros((40, 2))
    tr = trains(3)
    path = write(
        tmp_path / "peaks.nwb",
        [{"spike_times": tr[i], "waveform_mean": w} for i, w in enumerate([w0, w1, w2])],
    )
    b = read(path)
    assert b.peak_channels.tolist() == [1, 0, -1]
    assert b.extra["peak_sign"].tolist() == [-1, -1, 0]
    np.testing.assert_array_equal(b.waveforms[0], w0[:, 1].astype(np.float32))
    np.testing.assert_array_equal(b.waveforms[1], w1[:, 0].astype(np.float32))
    assert np.isnan(b.waveforms[2]).all()
    assert b.extra["reasons"].tolist() == ["", "", "no waveform"]


def test_per_spike_waveforms_nan_values_left_out_uneven_spikes_and_short_data_named(tmp_path):
    """Per-spike waveforms only (3 spikes x 2 electrodes x 40 samples per unit, channel 0 the
    larger). Unit 0: spikes scaled 1, 2, 6 and one NaN (spike 1, channel 0, sample 13): the mean is
    3x the template, (1 + 6) / 2 = 3.5x at that sample (the NaN left out, not counted as 0: 7/3).
    Unit 1: its first spike's waveforms_index end moved back by one row, so its spikes hold 1, 3
    and 2 waveforms: no waveform, named. Unit 2: the waveforms dataset cut by its last spike's two
    rows: its index points past the data: no waveform, named (not a mean of the rows left)."""
    base = template(40, 2, 0).T  # (electrodes, samples)
    ps0 = base[None] * np.array([1.0, 2.0, 6.0])[:, None, None]
    ps0[1, 0, 13] = np.nan
    tr = trains(3)
    units = [
        {"spike_times": tr[0][:3], "waveforms": ps0, "electrodes": [0, 1]},
        {"spike_times": tr[1][:3], "waveforms": np.repeat(base[None], 3, axis=0), "electrodes": [0, 1]},
        {"spike_times": tr[2][:3], "waveforms": np.repeat(base[None], 3, axis=0), "electrodes": [0, 1]},
    ]
    path = write(tmp_path / "ps.nwb", units, n_electrodes=2)
    with h5py.File(path, "a") as f:
        g = f["units"]
        assert g["waveforms_index"][()].tolist() == [2, 4, 6, 8, 10, 12, 14, 16, 18]
        g["waveforms_index"][3] = 7  # unit 1's spikes: rows 6..7, 7..10, 10..12
        data = g["waveforms"][:-2]
        del g["waveforms"]
        g.create_dataset("waveforms", data=data)
    b = read(path)
    want = (3.0 * base[0]).astype(np.float32)
    want[13] = np.float32(3.5 * base[0, 13])
    np.testing.assert_allclose(b.waveforms[0], want, rtol=1e-6)
    assert b.peak_channels[0] == 0
    r = b.extra["reasons"].tolist()
    assert r[0] == ""
    assert r[1].startswith("no waveform (its spikes have [1, 2, 3] per-spike waveforms each"), r[1]
    assert r[2] == "no waveform (waveforms_index is malformed for this unit: not rows of waveforms)", r[2]


def test_peak_electrode_column_names_one_of_the_units_electrodes(tmp_path):
    """One-channel waveforms, each unit listing electrodes 0 (SIMgr) and 1 (SIMpu). Unit 0's
    peak_electrode 0 is used (electrode 0 is a valid peak electrode); unit 1's 3 is a row of the
    table (SIMmo) but not one of its electrodes: not used, and its electrodes disagree: unknown."""
    w = spike_wave(90, 1, 0)[:, 0]
    path = write_file(
        tmp_path / "pe.nwb",
        locations=["SIMgr", "SIMpu", "SIMmo", "SIMmo"],
        units=[{"waveform_mean": w, "electrodes": [0, 1]} for _ in range(2)],
    )
    with h5py.File(path, "r+") as f:
        f["units"].create_dataset("peak_electrode", data=np.array([0, 3], dtype=np.int64))
    _, where, layers, peak_el = read_all(path)
    assert list(peak_el) == [0, -1]
    assert list(where) == ["SIMgr", ""]
    assert list(layers) == ["GCL", "unknown"]


@pytest.mark.parametrize(
    ("data", "what"), [(np.array([2], dtype=np.int64), "shape (1,)"), (np.array([2.0, 2.0]), "float64")]
)
def test_peak_electrode_column_of_another_length_or_type_is_not_used(tmp_path, caplog, data, what):
    """A peak_electrode column with 1 value for 2 units, or of floats, is no per-unit column of
    electrodes-table rows: a warning, and the units get the location their electrodes share (both
    SIMgr) without a peak electrode (electrode 2, SIMpu, is none of theirs but a row of the table)."""
    w = spike_wave(90, 1, 0)[:, 0]
    path = write_file(
        tmp_path / "pe1.nwb",
        locations=["SIMgr", "SIMgr", "SIMpu"],
        units=[{"waveform_mean": w, "electrodes": [0, 1]} for _ in range(2)],
    )
    with h5py.File(path, "r+") as f:
        f["units"].create_dataset("peak_electrode", data=data)
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        _, where, layers, peak_el = read_all(path)
    assert list(peak_el) == [-1, -1]
    assert list(where) == ["SIMgr", "SIMgr"]
    assert "column 'peak_electrode' is not one integer per unit" in caplog.text and what in caplog.text


def test_the_table_size_is_no_channel_count_where_the_units_electrodes_are_unreadable(tmp_path, caplog):
    """(units, 64 samples, 32 channels) in NWB's layout on a 64-row electrodes table, content that
    cannot tell the axes apart, units listing their peak electrode, one of them patched out of
    range: the electrodes are unreadable (a warning), but the units do list electrodes, so the
    table's 64 rows are no channel count and the waveforms are read as written."""
    waves, peaks = _jittered(20)
    units = [
        {"spike_times": t, "waveform_mean": w, "electrodes": [p]}
        for t, w, p in zip(trains(20), waves, peaks, strict=True)
    ]
    path = write(tmp_path / "t64bad.nwb", units, n_electrodes=64)
    with h5py.File(path, "r+") as f:
        f["units/electrodes"][0] = 99
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        batch = read(path)
    assert "cannot read the electrodes' locations" in caplog.text
    assert "set aside" not in caplog.text
    assert list(batch.extra["reasons"]) == [""] * 20
    np.testing.assert_array_equal(batch.peak_channels, peaks)


def test_a_layer_column_shorter_than_the_table_is_refused(tmp_path):
    """A layer column with 2 values for 3 units (h5py-patched): the table is malformed."""
    w = spike_wave(90, 1, 0)[:, 0]
    path = write_file(tmp_path / "lay.nwb", locations=["SIMgr"], units=[{"waveform_mean": w}] * 3)
    with h5py.File(path, "r+") as f:
        f["units"].create_dataset("layer", data=np.array([b"GCL", b"PCL"]))
    with pytest.raises(NotNWBError, match="column 'layer' has 2 values for 3 units"):
        read_all(path)


def test_electrodes_column_without_an_index_is_one_electrode_per_unit(tmp_path):
    """A Units electrodes column written without electrodes_index (one electrode per unit, as
    some converters write it): unit 0 is on electrode 0 (SIMgr), unit 1 on electrode 1 (SIMpu)."""
    w = spike_wave(90, 1, 0)[:, 0]
    path = write_file(
        tmp_path / "noidx.nwb",
        locations=["SIMgr", "SIMpu"],
        units=[{"waveform_mean": w, "electrodes": [0]}, {"waveform_mean": w, "electrodes": [1]}],
    )
    with h5py.File(path, "r+") as f:
        assert f["units/electrodes"][()].tolist() == [0, 1]
        del f["units/electrodes_index"]
    _, where, layers, peak_el = read_all(path)
    assert list(where) == ["SIMgr", "SIMpu"]
    assert list(layers) == ["GCL", "PCL"]


def test_ids_repeated_exactly_twice_are_warned_about(tmp_path, caplog):
    tr = trains(3)
    w = spike_wave(90, 1, 0)[:, 0]
    path = write(
        tmp_path / "rep.nwb",
        [{"spike_times": t, "waveform_mean": w, "id": i} for t, i in zip(tr, [5, 5, 6], strict=True)],
    )
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        read(path)
    assert "1 unit ids occur more than once (e.g. 5)" in caplog.text


def _with_repeats(t: np.ndarray) -> np.ndarray:
    """``t`` with every 10th time written twice (a sorter's duplicate spikes: 10 % zero intervals)."""
    return np.sort(np.concatenate([t, t[::10]]))


def test_three_units_in_milliseconds_with_duplicate_times_are_named(tmp_path):
    """Exactly the minimum of 3 units, times in ms (100 s of 10 Hz: every interval 2 "s" or more)
    with 10 % duplicate times: zero intervals say nothing about the unit of time (left out), so all
    3 look like ms and the table is named."""
    units = [{"spike_times": _with_repeats(t * 1000)} for t in trains(3, duration=100.0)]
    path = write(tmp_path / "ms3.nwb", units, rate=None)
    (said,) = _time_scale_warnings(path)
    assert "the spike times look like milliseconds" in said and "in 3 of 3 units" in said, said


def test_three_of_four_units_in_milliseconds_name_the_table(tmp_path):
    """3 of 4 units look like ms: exactly the 3/4 share needed."""
    tr = trains(4, duration=100.0)
    units = [{"spike_times": t * 1000} for t in tr[:3]] + [{"spike_times": tr[3]}]
    path = write(tmp_path / "ms34.nwb", units, rate=None)
    (said,) = _time_scale_warnings(path)
    assert "the spike times look like milliseconds" in said and "in 3 of 4 units" in said, said


def test_slow_regular_units_in_seconds_with_a_median_under_2_s_are_not_ms(tmp_path):
    """0.7 Hz regular units in seconds (intervals 1.4 s +- 5 %): none under 1 s, as in ms data, but
    a median of 1.4 "ms" would be a 700 Hz neuron: not milliseconds."""
    rng = np.random.default_rng(2)
    units = [{"spike_times": np.cumsum(rng.normal(1.4, 0.07, 80))} for _ in range(5)]
    path = write(tmp_path / "slow.nwb", units, rate=None)
    assert _time_scale_warnings(path) == []


def test_a_long_span_is_not_named_where_the_intervals_say_seconds(tmp_path):
    """3 units of 100 s in seconds, one with a last spike 3 days later (a chronic recording's
    later session): the span exceeds 2 days, but the intervals of all 3 say seconds."""
    tr = trains(3, duration=100.0)
    tr[0] = np.r_[tr[0], 3 * 86400.0]
    path = write(tmp_path / "span.nwb", [{"spike_times": t} for t in tr], rate=None)
    assert _time_scale_warnings(path) == []


@pytest.mark.parametrize(
    ("where", "value", "match"), [(0, -1, r"spike_times_index starts at -1 \(< 0\)"), (-1, +1, "ends at")]
)
def test_a_spike_times_index_off_by_one_is_refused(tmp_path, where, value, match):
    """spike_times_index patched to start at -1, or to end one past the spike times: malformed."""
    from nwb_celltype.errors import InvalidUnitsError
    from nwb_celltype.io import read_units

    path = write(tmp_path / "idx.nwb", [{"spike_times": t} for t in trains(3)], rate=None)
    with h5py.File(path, "r+") as f:
        idx = f["units/spike_times_index"][()].astype(np.int64)  # pynwb wrote uint16
        n = f["units/spike_times"].shape[0]
        assert idx[-1] == n
        idx[where] = value if where == 0 else n + value
        del f["units/spike_times_index"]
        f["units"].create_dataset("spike_times_index", data=idx)
    with pytest.raises(InvalidUnitsError, match=match):
        list(read_units(path, require_waveforms=False))


def test_negative_times_rounded_to_float32_are_named(tmp_path, caplog):
    """Times from -5000 s to -4700 s (before the reference time), rounded to float32 and written
    as float64: float32 steps there are 2**-11 s = 0.488 ms, whatever the sign."""
    tr = [t - 5000.0 for t in trains(4, duration=300.0)]
    path = write(
        tmp_path / "neg.nwb",
        [{"spike_times": t.astype(np.float32).astype(np.float64)} for t in tr],
        rate=None,
    )
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        read(path)
    assert "rounded to float32 before being written" in caplog.text
    assert f"{2**-11 * 1e3:.3g} ms" in caplog.text


def test_a_timestamped_series_with_a_short_pause_or_too_few_timestamps_gives_no_rate(tmp_path):
    """40 kHz timestamps with a 10 ms pause among the first 10,001 (the span would say 38,462 Hz),
    or only 5 timestamps: neither says one rate; 30 kHz assumed. The same 20,000 regular
    timestamps give 40 kHz."""
    from test_audit20 import _timestamped_series_file

    t = 12.5 + np.arange(20_000) / 40_000.0
    b = read(_timestamped_series_file(tmp_path / "ok.nwb", t))
    assert (b.waveform_rate_hz, b.extra["waveform_rate_source"]) == (40_000.0, "electrical_series:raw")
    pause = t.copy()
    pause[5000:] += 0.01
    b = read(_timestamped_series_file(tmp_path / "pause.nwb", pause))
    assert (b.waveform_rate_hz, b.extra["waveform_rate_source"]) == (30000.0, "assumed")
    b = read(_timestamped_series_file(tmp_path / "few.nwb", t[:5]))
    assert (b.waveform_rate_hz, b.extra["waveform_rate_source"]) == (30000.0, "assumed")


def test_a_spike_times_index_shorter_than_the_table_is_refused(tmp_path):
    from nwb_celltype.io import read_units

    path = write(tmp_path / "short.nwb", [{"spike_times": t} for t in trains(3)], rate=None)
    with h5py.File(path, "r+") as f:
        idx = f["units/spike_times_index"][()]
        del f["units/spike_times_index"]
        f["units"].create_dataset("spike_times_index", data=idx[:2])
    with pytest.raises(NotNWBError, match="spike_times_index has 2 entries for 3 units"):
        list(read_units(path, require_waveforms=False))


@pytest.mark.parametrize("rate", [0, 0.0, True, -30000.0])
def test_a_stated_waveform_rate_must_be_a_positive_number(tmp_path, rate):
    from nwb_celltype.errors import InvalidValueError
    from nwb_celltype.io import read_units

    path = write(tmp_path / "r.nwb", [{"spike_times": t} for t in trains(1)], rate=None)
    with pytest.raises(InvalidValueError, match="waveform_rate_hz must be a positive sampling rate"):
        list(read_units(path, require_waveforms=False, waveform_rate_hz=rate))


def test_a_file_rate_of_zero_is_not_a_rate(tmp_path, caplog):
    """waveform_mean.sampling_rate 0 (h5py-patched): no rate; 30 kHz assumed with the warning, and the
    40-sample waveforms (1.33 ms at 30 kHz) are read."""
    w = spike_wave(40, 1, 0)[:, 0]
    path = write(tmp_path / "z.nwb", [{"spike_times": t, "waveform_mean": w} for t in trains(2)])
    with h5py.File(path, "r+") as f:
        assert f["units/waveform_mean"].attrs["sampling_rate"] == 30000.0  # where pynwb writes it
        f["units/waveform_mean"].attrs["sampling_rate"] = 0.0
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        b = read(path)
    assert (b.waveform_rate_hz, b.extra["waveform_rate_source"]) == (30000.0, "assumed")
    assert "assuming 30000 Hz" in caplog.text
    assert b.extra["reasons"].tolist() == ["", ""]


def test_the_waveforms_own_sampling_rate_wins_over_the_tables(tmp_path):
    """waveform_mean.sampling_rate 40 kHz (what pynwb writes) and a table attribute
    waveform_rate 30 kHz (h5py-patched): the dataset's own rate is the waveforms'."""
    w = spike_wave(80, 1, 0)[:, 0]
    path = write(
        tmp_path / "two.nwb", [{"spike_times": t, "waveform_mean": w} for t in trains(2)], rate=40000.0
    )
    with h5py.File(path, "r+") as f:
        f["units"].attrs["waveform_rate"] = 30000.0
    b = read(path)
    assert (b.waveform_rate_hz, b.extra["waveform_rate_source"]) == (40000.0, "file")


def test_a_waveform_mean_with_more_rows_than_units_is_refused(tmp_path):
    from nwb_celltype.io import read_units

    w = spike_wave(40, 1, 0)[:, 0]
    path = write(tmp_path / "rows.nwb", [{"spike_times": t, "waveform_mean": w} for t in trains(3)])
    with h5py.File(path, "r+") as f:
        data = np.concatenate([f["units/waveform_mean"][()], f["units/waveform_mean"][:1]])
        attrs = dict(f["units/waveform_mean"].attrs)
        del f["units/waveform_mean"]
        f["units"].create_dataset("waveform_mean", data=data)
        f["units/waveform_mean"].attrs.update(attrs)
    with pytest.raises(NotNWBError, match="waveform_mean has 4 rows for 3 units"):
        list(read_units(path))


def test_a_waveform_of_0_67_ms_is_too_short(tmp_path):
    """20 samples at 30 kHz span 0.67 ms: shorter than the 0.8 ms of a spike waveform."""
    w = spike_wave(20, 1, 0)[:, 0]
    path = write(tmp_path / "short.nwb", [{"spike_times": t, "waveform_mean": w} for t in trains(2)])
    b = read(path)
    assert b.waveforms is None
    why = "waveform_mean has 20 samples, 0.67 ms at 30000 Hz: shorter than a spike waveform (0.8 ms)"
    assert all(why in r for r in b.extra["reasons"]), b.extra["reasons"]


def test_channels_matching_the_units_electrodes_are_read_whatever_the_content(tmp_path):
    """(units, 40 samples, 32 channels), each unit listing the 32 electrodes of the table: the
    channel count says NWB's layout, so the content is not asked. (Its content would say
    otherwise: monophasic troughs jittered +-6 samples, a dipole across channels.)"""
    rng = np.random.default_rng(1)
    waves, peaks = [], []
    for _ in range(20):
        t_ms = (np.arange(40) - 13 - int(rng.integers(-6, 7))) / 30.0
        c = int(rng.integers(0, 32))
        ch = np.arange(32)
        prof = np.exp(-np.abs(ch - c) / 3.0) - 0.5 * np.exp(-np.abs(ch - (c + 11) % 32) / 3.0)
        waves.append(-100e-6 * np.exp(-0.5 * (t_ms / 0.12) ** 2)[:, None] * prof[None, :])
        peaks.append(c)
    units = [
        {"spike_times": t, "waveform_mean": w, "electrodes": list(range(32))}
        for t, w in zip(trains(20), waves, strict=True)
    ]
    path = write(tmp_path / "dipole.nwb", units, n_electrodes=32)
    b = read(path)
    assert list(b.extra["reasons"]) == [""] * 20
    np.testing.assert_array_equal(b.peak_channels, peaks)


def test_obs_intervals_of_units_read_by_id_are_their_own(tmp_path):
    """Units 0 and 2 of 3 (two runs of rows): each gets its own observation intervals."""
    from nwb_celltype.io import read_units

    tr = trains(3)
    obs = [np.array([[0.0, 50.0]]), np.array([[0.0, 60.0]]), np.array([[10.0, 90.0], [95.0, 100.0]])]
    path = write(
        tmp_path / "obs.nwb",
        [{"spike_times": t, "obs_intervals": o} for t, o in zip(tr, obs, strict=True)],
        rate=None,
    )
    (b,) = read_units(path, require_waveforms=False, unit_ids=[2, 0])
    assert b.unit_ids.tolist() == [0, 2]
    np.testing.assert_array_equal(b.obs_intervals[0], obs[0])
    np.testing.assert_array_equal(b.obs_intervals[1], obs[2])


def test_units_read_by_id_come_in_table_order(tmp_path):
    """Ids 30, 10, 20 in the table; asking for 10 and 30 gives 30 then 10, each with its spikes."""
    from nwb_celltype.io import read_units

    tr = trains(3)
    path = write(
        tmp_path / "ids.nwb",
        [{"spike_times": t, "id": i} for t, i in zip(tr, [30, 10, 20], strict=True)],
        rate=None,
    )
    (b,) = read_units(path, require_waveforms=False, unit_ids=[10, 30])
    assert b.unit_ids.tolist() == [30, 10]
    assert b.unit_indices.tolist() == [0, 1]
    np.testing.assert_array_equal(b.spike_times(0), tr[0])
    np.testing.assert_array_equal(b.spike_times(1), tr[1])


def test_the_millisecond_check_runs_when_the_units_fill_whole_batches(tmp_path, caplog):
    """4 units in ms read 2 at a time (the last batch ends the table exactly): still named."""
    from nwb_celltype.io import read_units

    path = write(
        tmp_path / "ms4.nwb", [{"spike_times": t * 1000} for t in trains(4, duration=100.0)], rate=None
    )
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        batches = list(read_units(path, require_waveforms=False, batch_size=2))
    assert len(batches) == 2
    assert "the spike times look like milliseconds" in caplog.text


def test_a_filtered_recording_in_a_processing_container_gives_the_rate(tmp_path):
    """No rate in Units; the only raw series is processing/ecephys/FilteredEphys/filtered at 40 kHz
    over the 8 electrodes the units list: its rate is the waveforms'."""
    from pynwb.ecephys import FilteredEphys
    from test_units_writers19 import RATE_40K, nwb_file

    f = nwb_file(8)
    container = FilteredEphys(name="FilteredEphys")
    f.create_processing_module("ecephys", "filtered").add(container)
    region = f.create_electrode_table_region(list(range(8)), "filtered electrodes")
    container.create_electrical_series(
        name="filtered", data=np.zeros((10, 8)), electrodes=region, rate=RATE_40K
    )
    units = [
        {
            "spike_times": t,
            "waveform_mean": template(80, 4, i % 4, rate=RATE_40K),
            "electrodes": list(range(4 * (i % 2), 4 * (i % 2) + 4)),
        }
        for i, t in enumerate(trains(4))
    ]
    b = read(write(tmp_path / "filt.nwb", units, rate=None, f=f))
    assert (b.waveform_rate_hz, b.extra["waveform_rate_source"]) == (RATE_40K, "electrical_series:filtered")


def _channels_first_cannot_tell(tmp_path, name, jitter, dipole=False, n_samples=64, transpose=False):
    """(units, 32, n_samples) written channels-first (or, ``dipole``, NWB's (units, 40, 32) with a
    monophasic trough and a dipole across channels), 20 units on a 32-row table listing no
    electrodes (``dipole``: their peak one; ``transpose``: the dipole ones written (units, 32, 40),
    listing none); troughs jittered by up to ``jitter`` samples
    (``dipole``: by 0 or 1)."""
    rng = np.random.default_rng(4)
    waves = []
    for _ in range(20):
        shift = int(rng.integers(-jitter, jitter + 1))
        c = int(rng.integers(0, 32))
        ch = np.arange(32)
        prof = np.exp(-np.abs(ch - c) / 3.0) - 0.5 * np.exp(-np.abs(ch - (c + 11) % 32) / 3.0)
        if dipole:
            t_ms = (np.arange(40) - 13 - shift % 2) / 30.0  # troughs at sample 13 or 14
            waves.append(-100e-6 * np.exp(-0.5 * (t_ms / 0.12) ** 2)[:, None] * prof[None, :])
        else:
            t_ms = (np.arange(n_samples) - n_samples // 3 - shift) / 30.0
            spike = -np.exp(-0.5 * (t_ms / 0.12) ** 2) + 0.3 * np.exp(-0.5 * ((t_ms - 0.45) / 0.25) ** 2)
            noise = 0.02 * 100e-6 * rng.standard_normal((n_samples, 32))
            waves.append(np.ascontiguousarray((100e-6 * spike[:, None] * prof[None, :] + noise).T))
    if transpose:  # the dipole waveforms written channels-first, listing no electrodes
        waves = [np.ascontiguousarray(w.T) for w in waves]
    units = [{"spike_times": t, "waveform_mean": w} for t, w in zip(trains(20), waves, strict=True)]
    if (
        dipole and not transpose
    ):  # each unit lists its peak electrode: the 32 channels match no electrode count
        for u, w in zip(units, waves, strict=True):
            u["electrodes"] = [int(np.argmax(np.abs(w).max(axis=0)))]
    return write(tmp_path / name, units, n_electrodes=32), waves


def test_sizes_that_say_swapped_are_not_overruled_by_content_that_cannot_tell(tmp_path):
    """(units, 32, 64) on a 32-row table whose units list no electrodes: the middle axis matches
    the table, the last does not; the content (troughs jittered +-6, a dipole, noise) cannot tell:
    set aside."""
    from nwb_celltype.io._waveform_checks import _content_axes

    path, waves = _channels_first_cannot_tell(tmp_path, "cf.nwb", jitter=6)
    assert _content_axes(np.stack(waves)) == (None, None)
    b = read(path)
    assert b.waveforms is None
    assert all("its content does not say NWB's layout" in r for r in b.extra["reasons"])


def test_aligned_troughs_overrule_a_shape_across_channels(tmp_path):
    """NWB's (units, 40 samples, 32 channels), monophasic troughs (no repolarisation) at sample 13
    or 14 and a dipole across channels: the shape alone looks channels-first, but the
    troughs are aligned along the middle axis as sorters align them on time, so it is read."""
    from nwb_celltype.io._waveform_checks import _content_axes

    path, waves = _channels_first_cannot_tell(tmp_path, "al.nwb", jitter=1, dipole=True)
    assert _content_axes(np.stack(waves)) == (2, 1)
    b = read(path)
    assert list(b.extra["reasons"]) == [""] * 20


def test_content_whose_two_readings_contradict_each_other_does_not_overrule_the_sizes(tmp_path):
    """The dipole waveforms written channels-first, (units, 32, 40), on a 32-row table whose units
    list none: the sizes say swapped; the shape reading says the middle axis is time (a dipole
    across channels looks like a spike's two phases), the alignment says the last axis is (the
    troughs sit at sample 13 or 14): contradictory content says nothing, so the array is set aside."""
    from nwb_celltype.io._waveform_checks import _content_axes

    path, waves = _channels_first_cannot_tell(tmp_path, "tr.nwb", jitter=1, dipole=True, transpose=True)
    assert _content_axes(np.stack(waves)) == (1, 2)
    b = read(path)
    assert b.waveforms is None
    assert all("its content does not say NWB's layout" in r for r in b.extra["reasons"])


# ---------------------------------------------------------------------------------------------
# nwb._write


def _nwb_with_units(n: int = 3):
    from pynwb import NWBFile

    f = NWBFile("m21", "m21", T0)
    for i in range(n):
        f.add_unit(spike_times=[0.1 * (i + 1)])
    return f


def _classifier(f, classes=("PkC_ss", "MLI"), **kw):
    return add_classifier(f, name="clf", version="1", weights_sha256="0" * 64, classes=list(classes), **kw)


def test_training_data_given_as_one_string_is_one_reference():
    f = _nwb_with_units()
    clf = _classifier(f, training_data="doi:10.1000/xyz")
    assert list(clf.training_data) == ["doi:10.1000/xyz"]


def test_reasons_longer_than_the_rows_are_refused_by_name():
    f = _nwb_with_units()
    with pytest.raises(InvalidAnnotationError, match=r"reasons has shape \(3,\), expected \(2,\)"):
        add_annotations(
            f,
            name="a",
            units_region=[0, 1],
            labels=["MLI", "MLI"],
            classes=["PkC_ss", "MLI"],
            reasons=["", "", "x"],
        )


def test_an_evidence_name_taken_refuses_the_call_before_the_file_changes():
    """``a_evidence`` exists: annotating ``a`` with evidence is refused, and ``a`` is not added."""
    f = _nwb_with_units()
    add_annotations(f, name="a_evidence", units_region=[0], labels=["MLI"], classes=["MLI"])
    with pytest.raises(AnnotationExistsError, match="a_evidence already exists"):
        add_annotations(
            f,
            name="a",
            units_region=[1],
            labels=["MLI"],
            classes=["MLI"],
            kind="expert",
            evidence={"evidence_type": ["expert"], "labelled_by": ["me"], "labelled_at": ["2024-01-01"]},
        )
    assert "a" not in f.processing["cell_types"].data_interfaces


def test_a_classifier_not_yet_in_the_file_is_added_with_the_table(tmp_path):
    f = _nwb_with_units()
    clf = CellTypeClassifier(
        name="clf",
        version="1",
        weights_sha256="0" * 64,
        classes=["PkC_ss", "MLI"],
        class_ontology_ids=["CL:0000121", "CL:0000099"],
        feature_config="",
        software_versions="{}",
        created="2026-01-01T00:00:00+00:00",
        description="",
    )
    add_annotations(f, name="a", units_region=[0], labels=["MLI"], classes=["PkC_ss", "MLI"], classifier=clf)
    assert "clf" in f.processing["cell_types"].data_interfaces
    with NWBHDF5IO(str(tmp_path / "c.nwb"), "w") as io:
        io.write(f)
    with NWBHDF5IO(str(tmp_path / "c.nwb"), "r") as io:
        back = io.read().processing["cell_types"]
        assert back["a"].classifier.name == "clf"
        assert back["clf"].version == "1"


def test_default_ontology_ids_come_from_the_classifiers_own_class_ids():
    """The classifier names its own ids (here made-up ones of the right form): they win over the
    vocabulary's (PkC_ss is CL:0000121 there); '' for unclassified."""
    f = _nwb_with_units()
    clf = _classifier(f, classes=("PkC_ss", "MLI"), class_ontology_ids=["CL:9999991", "CL:9999992"])
    t = add_annotations(
        f,
        name="a",
        units_region=[0, 1, 2],
        labels=["MLI", "PkC_ss", "unclassified"],
        classes=["PkC_ss", "MLI"],
        classifier=clf,
    )
    assert list(t["ontology_id"].data) == ["CL:9999992", "CL:9999991", ""]


def test_a_class_order_other_than_the_classifiers_is_refused():
    f = _nwb_with_units()
    clf = _classifier(f, classes=("PkC_ss", "MLI"))
    with pytest.raises(InvalidAnnotationError, match="differ from the classifier's classes"):
        add_annotations(
            f,
            name="a",
            units_region=[0],
            labels=["MLI"],
            classes=["MLI", "PkC_ss"],
            probabilities=[[0.9, 0.1]],
            classifier=clf,
        )


def test_evidence_rows_with_no_evidence_type_are_skipped():
    """Without evidence['row'], item i supports row i and rows with evidence_type '' get none."""
    f = _nwb_with_units()
    add_annotations(
        f,
        name="a",
        units_region=[0, 1, 2],
        labels=["MLI", "PkC_ss", "MLI"],
        classes=["PkC_ss", "MLI"],
        kind="expert",
        evidence={
            "evidence_type": ["expert", "", "optotagging"],
            "labelled_by": ["ann", "", "bob"],
            "labelled_at": ["2024-01-01", "", "2024-02-01"],
        },
    )
    ev = f.processing["cell_types"]["a_evidence"]
    assert list(ev["annotations"].data) == [0, 2]
    assert list(ev["evidence_type"].data) == ["expert", "optotagging"]
    assert list(ev["labelled_by"].data) == ["ann", "bob"]


def test_evidence_rows_of_the_wrong_length_are_refused_by_name():
    f = _nwb_with_units()
    with pytest.raises(InvalidAnnotationError, match=r"evidence\['row'\] must be \(2,\) integer rows"):
        add_annotations(
            f,
            name="a",
            units_region=[0, 1],
            labels=["MLI", "MLI"],
            classes=["MLI"],
            kind="expert",
            evidence={
                "evidence_type": ["expert", "expert"],
                "labelled_by": ["ann", "ann"],
                "labelled_at": ["2024-01-01", "2024-01-01"],
                "row": [0],
            },
        )


def test_evidence_dates_given_as_datetimes_are_written_as_iso_8601():
    f = _nwb_with_units()
    when = datetime.datetime(2024, 5, 1, 10, 0, 0, tzinfo=datetime.timezone.utc)
    add_annotations(
        f,
        name="a",
        units_region=[0],
        labels=["MLI"],
        classes=["MLI"],
        kind="expert",
        evidence={"evidence_type": ["expert"], "labelled_by": ["ann"], "labelled_at": [when]},
    )
    assert list(f.processing["cell_types"]["a_evidence"]["labelled_at"].data) == ["2024-05-01T10:00:00+00:00"]


def test_units_table_at_refuses_a_table_that_is_not_units():
    from hdmf.common import DynamicTable

    from nwb_celltype.nwb import units_table_at

    f = _nwb_with_units()
    mod = f.create_processing_module(name="ecephys", description="e")
    mod.add(DynamicTable(name="trials_like", description="not units"))
    with pytest.raises(InvalidAnnotationError, match="no Units table at /processing/ecephys/trials_like"):
        units_table_at(f, "processing/ecephys/trials_like")


# ---------------------------------------------------------------------------------------------
# nwb._units_columns


def _annotated(existing: dict[str, list]):
    """3 units (someone else's columns ``existing``) and a table celltype_m1 annotating rows 2, 0."""
    f = _nwb_with_units()
    for name, values in existing.items():
        f.units.add_column(name=name, description="theirs", data=values)
    t = add_annotations(
        f,
        name="celltype_m1",
        units_region=[2, 0],
        labels=["MLI", "unclassified"],
        classes=["PkC_ss", "MLI"],
        probabilities=[[0.2, 0.8], [0.55, 0.45]],
        confidence=[4.0, 55 / 45],
    )
    return f, t


def test_any_plain_name_taken_gives_the_suffixed_names():
    """Someone else's cell_type_confidence (but no cell_type): ours get the model-suffixed names,
    with the labels on rows 2 and 0 and the fill ('' / NaN) on row 1."""
    from nwb_celltype.nwb import add_units_columns

    f, t = _annotated({"cell_type_confidence": [1.0, 2.0, 3.0]})
    added = add_units_columns(f, t)
    assert added == ["cell_type_m1", "cell_type_probability_m1", "cell_type_confidence_m1"]
    assert list(f.units["cell_type_m1"].data) == ["unclassified", "", "MLI"]
    np.testing.assert_allclose(f.units["cell_type_probability_m1"].data, [0.55, np.nan, 0.8])
    np.testing.assert_allclose(f.units["cell_type_confidence_m1"].data, [55 / 45, np.nan, 4.0])
    assert list(f.units["cell_type_confidence"].data) == [1.0, 2.0, 3.0]  # theirs untouched


def test_suffixed_names_taken_too_are_refused_by_name():
    from nwb_celltype.nwb import add_units_columns

    f, t = _annotated({"cell_type": ["a", "b", "c"], "cell_type_m1": ["x", "y", "z"]})
    with pytest.raises(AnnotationExistsError, match=r"already has columns \['cell_type_m1'\]"):
        add_units_columns(f, t)


# ---------------------------------------------------------------------------------------------
# library.label_tables


def _label_csv(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def _read_labels(path, **kw):
    from nwb_celltype.library.label_tables import read_label_table

    return read_label_table(path, **{"evidence_type": "expert", "labelled_by": "me", **kw})


def test_a_lower_case_utc_designator_is_read_as_utc(tmp_path):
    p = _label_csv(tmp_path / "t.csv", "unit_id,label,labelled_at\n1,MLI,2024-05-01T10:00:00z\n")
    assert _read_labels(p).evidence["labelled_at"].tolist() == ["2024-05-01T10:00:00+00:00"]


def test_a_fractional_unit_id_is_refused_not_rounded(tmp_path):
    """'7.5' names no unit: an error naming the row, never unit 7."""
    from nwb_celltype.errors import LibraryError

    p = _label_csv(tmp_path / "t.csv", "unit_id,label\n7.5,MLI\n3.0,GoC\n")
    with pytest.raises(LibraryError, match=r"unit ids in rows t\.csv:2 \('7\.5'\) are not integers"):
        _read_labels(p)


def test_unit_keys_compare_as_integers_only_where_they_are_whole_numbers():
    """Keys of a Units column matched against a table's: 7, '7', 7.0 are unit 7; 7.5 and True are
    not integers (True is not unit 1)."""
    from nwb_celltype.library.label_tables import _key

    assert [_key(x) for x in (7, "7", 7.0, np.float64(7.0), b"7", " 7 ")] == [7] * 6
    assert _key(7.5) == "7.5" and _key(np.float64(7.5)) == "7.5"
    assert _key(True) == "True" and _key(np.bool_(False)) == "False"


def test_a_date_of_a_row_after_an_unlabelled_one_is_normalised_in_its_place(tmp_path):
    """Row 2 mapped to nothing ('noise='): row 3's date is normalised on row 3's label; integer
    keys are int64."""
    p = _label_csv(
        tmp_path / "t.csv", "unit_id,label,labelled_at\n1,noise,\n2,MLI,2024-05-01 10:00\n3,GoC,\n"
    )
    t = _read_labels(p, mapping=["noise="], labelled_at="2024-05-02")
    assert t.unit_ids.tolist() == [2, 3]
    assert t.evidence["labelled_at"].tolist() == ["2024-05-01T10:00:00", "2024-05-02"]
    assert t.unit_ids.dtype == np.int64


def test_an_empty_unit_name_is_refused(tmp_path):
    from nwb_celltype.errors import LibraryError

    p = _label_csv(tmp_path / "t.csv", "unit_name,label\nalpha,MLI\n,GoC\n")
    with pytest.raises(LibraryError, match=r"unit ids in rows t\.csv:3 \(''\) are not integers"):
        _read_labels(p)


def test_a_quoted_cell_over_two_lines_is_named_by_the_line_its_row_starts_on(tmp_path):
    from nwb_celltype.errors import LibraryError

    p = _label_csv(tmp_path / "t.csv", 'unit_id,label,evidence_text\n1,Purkinje,"two\nlines"\n2,MLI,x\n')
    with pytest.raises(LibraryError, match=r"unknown labels in rows t\.csv:2 \('Purkinje'\)"):
        _read_labels(p)


# ---------------------------------------------------------------------------------------------
# library.tables (the HIPPIE/C4 CSV layout)


def _bad_table(tmp_path, edit, match, **kw):
    from test_tables import _good

    from nwb_celltype.errors import LibraryError
    from nwb_celltype.library.tables import read_feature_tables

    folder = _good(tmp_path)  # 5 units
    read_feature_tables(folder, **kw)
    edit(folder)
    with pytest.raises(LibraryError, match=match):
        read_feature_tables(folder, **kw)


def test_neuron_ids_not_aligned_with_the_tables_are_refused(tmp_path):
    """units.csv with neuron ids only (4 rows) beside 5-row tables, read without labels required."""
    _bad_table(
        tmp_path,
        lambda f: (f / "units.csv").write_text("neuron_id\na\nb\nc\nd\n"),
        "units.csv has 4 rows but the tables 5",
        labels_required=False,
    )


def test_a_waveforms_table_with_a_row_too_many_is_refused(tmp_path):
    from test_tables import _edit_csv

    _bad_table(
        tmp_path,
        _edit_csv("waveforms.csv", lambda r: r + r[1:2]),
        "waveforms.csv has 6 rows but the labels have 5",
    )


def test_acg_columns_must_be_named_by_their_lags(tmp_path):
    """201 columns, but named 0..200 rather than -100..100: not the layout."""
    from test_tables import _edit_csv

    _bad_table(
        tmp_path,
        _edit_csv("acg.csv", lambda r: [[str(k) for k in range(201)]] + r[1:]),
        r"expected 201 columns named -100\.\.100 \(ms\)",
    )


def test_a_waveforms_header_of_large_integers_is_a_data_row(tmp_path):
    """A first row of whole-number ADC values (e.g. -12000): a unit's row, not sample names."""
    from test_tables import _edit_csv

    def edit(rows):
        adc = [str(int(v)) for v in np.round(np.asarray(rows[1], dtype=float) * 200)]
        assert max(abs(int(v)) for v in adc) > 10_000
        return [adc] + rows[1:]

    _bad_table(tmp_path, _edit_csv("waveforms.csv", edit), "is numbers, not a header")


def test_our_columns_are_recognised_by_the_marker_not_by_the_text_alone(tmp_path):
    """remove_units_columns deletes only columns whose description starts with the marker: a
    column of someone else's whose description quotes ours (without it) stays."""
    from nwb_celltype.nwb._units_columns import MARKER, remove_units_columns

    tail = "copied from the annotation table processing/cell_types/t1 (full record: per-class ...)"
    with h5py.File(tmp_path / "u.h5", "w") as f:
        u = f.create_group("units")
        u.create_dataset("cell_type", data=np.array([b"a"])).attrs["description"] = f"{MARKER} label; {tail}"
        u.create_dataset("their_copy", data=np.array([b"b"])).attrs["description"] = f"notes: {tail}"
        u.attrs["colnames"] = np.array(["cell_type", "their_copy"], dtype=object)
        assert remove_units_columns(f, "t1") == ["cell_type"]
        assert sorted(u) == ["their_copy"]
        assert [c.decode() if isinstance(c, bytes) else c for c in u.attrs["colnames"]] == ["their_copy"]


# ---------------------------------------------------------------------------------------------
# features.selection (C4's unit selection), on trains on the 30 kHz sample grid


def _sel(t):
    from nwb_celltype.features.config import FeatureConfig
    from nwb_celltype.features.selection import select_unit_c4

    return select_unit_c4(t, None, FeatureConfig(c4_unit_selection=True))


def test_a_unit_of_exactly_300_spikes_is_too_few_to_assess():
    t = 0.05 + 2.0 * np.arange(300)  # 0.5 Hz over 600 s
    r = _sel(t)
    assert not r.keep and r.reason == "too few spikes to assess quality (300 <= 300)"


def test_windows_of_exactly_15_spikes_are_not_scored():
    """0.5 Hz, spikes at odd seconds for 700 s (350 spikes): every 30 s window holds exactly 15
    spikes, and a window is scored only with more than 15: no window passes."""
    t = 1.0 + 2.0 * np.arange(350)
    r = _sel(t)
    assert not r.keep and r.reason.startswith("no good section"), r.reason


def test_the_violation_rate_is_hills_over_twice_the_spikes():
    """100 Hz regular (10 ms intervals, 60,000 spikes over 600 s) plus 7 spikes per 10 s chunk 0.5
    ms after one: a 30 s window holds 3000 + 21 spikes and 21 violations; the mean rate is about
    (60000 + 420) / 600 = 100.7 Hz, so Hill's rate 21 / (2 x 3021 x 0.0008 s) / 100.7 Hz = 0.043
    passes the 0.05 limit (without the 2 it would be 0.086 and fail): the unit is kept."""
    base = 0.005 + 0.01 * np.arange(60_000)
    extra = np.concatenate([c * 10.0 + 0.005 + np.arange(7) * 1.0 + 0.0005 for c in range(60)])
    t = np.sort(np.round(np.r_[base, extra] * 30000) / 30000)
    r = _sel(t)
    assert r.keep, r.reason
    assert r.good_duration_s > 500


# ---------------------------------------------------------------------------------------------
# features._main_peak (the edge rule), at 30 kHz: 0.25 ms before = 7.5 -> 8 samples, 0.6 ms after = 18


def _edge_wave(n: int, trough: int, central: int) -> np.ndarray:
    """Zero baseline, a -1 trough at ``trough`` and a +0.3 bump at ``central`` (3.3x smaller)."""
    w = np.zeros(n)
    w[trough], w[central] = -1.0, 0.3
    return w


def test_the_central_search_region_ends_at_the_ceiling_of_80_percent():
    """82 samples: the central 60 % is [16, ceil(65.6) = 66), so a trough at 65 is central."""
    from nwb_celltype.features._main_peak import _main_peak

    assert _main_peak(_edge_wave(82, 65, 40), 30000.0) == (65, "")


@pytest.mark.parametrize(
    ("n", "trough", "ok"), [(100, 81, True), (100, 82, False), (90, 8, True), (90, 7, False)]
)
def test_an_edge_trough_needs_8_samples_before_and_18_after(n, trough, ok):
    """A dominant trough outside the central 60 %: aligned on where the window holds 8 samples
    before it and 18 after (81 of 100: 18 after; 8 of 90: 8 before), refused one sample nearer."""
    from nwb_celltype.features._main_peak import _EdgePeakError, _main_peak

    w = _edge_wave(n, trough, 40)
    if ok:
        pick, note = _main_peak(w, 30000.0)
        assert pick == trough and "aligned on it" in note, note
    else:
        with pytest.raises(_EdgePeakError, match="too close to the spike"):
            _main_peak(w, 30000.0)
