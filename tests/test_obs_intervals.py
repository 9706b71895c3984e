"""Observation intervals (NWB Units ``obs_intervals``) in the ``acg-isi-wave`` features: no ISI and
no ACG pair spans a gap in a unit's observation, and spikes outside every interval are set aside
with a note. Real NWB files written with pynwb and read back with the package's reader; the expected
counts are written out by hand from the spike grid."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

from nwb_celltype.features.discharge import DischargeConfig, extract_discharge_features, observed_segments
from nwb_celltype.io import read_units

STEP = 0.020  # a regular train: one spike every 20 ms
N1, N2 = 300, 200  # spikes in the first and the second interval
GAP_START, SECOND = 6.0, 6.05  # the first interval ends, the second begins (a 50 ms gap)


def _train() -> tuple[np.ndarray, np.ndarray]:
    first = 0.010 + STEP * np.arange(N1)  # last spike at 5.99
    second = SECOND + 0.010 + STEP * np.arange(N2)  # first at 6.06: 70 ms after the last of the first
    stray = np.array([6.02])  # in the gap: outside every interval
    return np.sort(np.concatenate([first, second, stray])), np.array([[0.0, GAP_START], [SECOND, 20.0]])


def _write(path, with_intervals: bool) -> None:
    from pynwb import NWBHDF5IO, NWBFile

    nwb = NWBFile(
        session_description="observation intervals",
        identifier="obs-intervals",
        session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
    )
    t, iv = _train()
    kw = {"obs_intervals": iv} if with_intervals else {}
    nwb.add_unit(spike_times=t, **kw)
    nwb.add_unit(spike_times=0.010 + STEP * np.arange(N1), **({"obs_intervals": [[0.0, 20.0]]} if kw else {}))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


def _features(path):
    (batch,) = list(read_units(path, require_waveforms=False))
    return extract_discharge_features(batch, DischargeConfig())


def test_counts_stay_within_observation_intervals(tmp_path):
    path = tmp_path / "obs.nwb"
    _write(path, with_intervals=True)
    fs = _features(path)
    isi, acg = fs.isi_counts[0], fs.acg_counts[0]
    # ISIs: only the 20 ms steps inside each interval
    expected_isi = np.zeros(100)
    expected_isi[20] = (N1 - 1) + (N2 - 1)
    np.testing.assert_array_equal(isi, expected_isi)
    # ACG: pairs m steps apart inside each interval, at lags 20 m ms
    expected_acg = np.zeros(100)
    for m in range(1, 6):
        expected_acg[20 * m - 1] = (N1 - m) + (N2 - m)
    np.testing.assert_array_equal(acg, expected_acg)
    assert "1 spikes outside the unit's observation intervals ignored" in fs.reasons[0]
    assert fs.usable[0] and fs.usable[1]
    # a unit observed throughout is counted whole, with no note
    assert fs.isi_counts[1][20] == N1 - 1 and "observation" not in fs.reasons[1]


def test_without_intervals_the_gap_is_counted(tmp_path):
    """The same train in a file without obs_intervals: the stray spike and the pairs across the gap
    are counted (what the intervals prevent above)."""
    path = tmp_path / "no_obs.nwb"
    _write(path, with_intervals=False)
    fs = _features(path)
    isi = fs.isi_counts[0]
    assert isi.sum() == N1 + N2  # every consecutive pair, the stray spike's two included
    assert isi[30] == 1 and isi[40] == 1  # 5.99 -> 6.02 -> 6.06
    assert fs.acg_counts[0][np.arange(100) % 20 != 19].sum() > 0  # lags that are not 20 m ms


@pytest.mark.parametrize(
    ("intervals", "segments", "note"),
    [
        (None, [[1, 2, 3, 4]], ""),
        (np.zeros((0, 2)), [[1, 2, 3, 4]], ""),
        ([[0, 2.5], [2.0, 5.0]], [[1, 2, 3, 4]], ""),  # overlapping intervals are merged
        ([[3.0, 5.0], [0.0, 2.0]], [[1, 2], [3, 4]], ""),  # unsorted rows
        ([[0, 1.5], [3.5, 5.0]], [[1], [4]], "2 spikes outside"),
        ([[0, 5.0], [4.0, 1.0], [np.nan, 2.0]], [[1, 2, 3, 4]], "2 invalid observation intervals ignored"),
    ],
)
def test_observed_segments(intervals, segments, note):
    got, why = observed_segments(np.array([1.0, 2.0, 3.0, 4.0]), intervals)
    assert [list(x) for x in got] == segments
    assert note in why and (why == "") == (note == "")


def test_tsgroup_time_support_is_the_observation(tmp_path):
    """A pynapple TsGroup restricted to two epochs: its time support plays the part of every unit's
    observation intervals."""
    import pynapple as nap

    t, iv = _train()
    epochs = nap.IntervalSet(start=iv[:, 0], end=iv[:, 1])
    group = nap.TsGroup({0: nap.Ts(t)}).restrict(epochs)
    from nwb_celltype.io._sorting import units_from_tsgroup

    fs = extract_discharge_features(units_from_tsgroup(group), DischargeConfig())
    expected_isi = np.zeros(100)
    expected_isi[20] = (N1 - 1) + (N2 - 1)
    np.testing.assert_array_equal(fs.isi_counts[0], expected_isi)
