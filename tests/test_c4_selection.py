"""C4's unit selection (≥100 spikes; 10 s chunks judged by 30 s windows on refractory violations and
amplitude cut-off; >180 s of good sections). Parity with npyx is in test_c4_parity.py."""

from __future__ import annotations

import numpy as np
import pytest

from nwb_celltype.errors import InvalidUnitsError
from nwb_celltype.features.config import FeatureConfig
from nwb_celltype.features.selection import select_unit_c4, select_units_c4
from nwb_celltype.units import UnitsBatch

CFG = FeatureConfig(c4_unit_selection=True)


def _poisson(rng, rate, dur, refr_s=0.002, start=0.0):
    isi = rng.exponential(1 / rate, size=int(rate * dur * 1.3) + 10) + refr_s
    t = start + np.cumsum(isi)
    t = t[t < start + dur]
    return np.unique(np.round(t * 30000)) / 30000


def test_clean_unit_is_kept_with_all_spikes_inside_chunks():
    rng = np.random.default_rng(0)
    t = _poisson(rng, 15, 600)
    a = rng.normal(100, 12, len(t))
    r = select_unit_c4(t, a, CFG)
    assert r.keep and r.reason == "" and r.amplitude_cutoff_applied
    # span is floor(t_last / 60 s) minutes: spikes after 540 s lie outside every window... except that
    # windows starting up to 530 s reach 560 s, so chunks up to 560 s are judged
    off_edge = np.round(t * 30000) % 300000 != 0  # a spike exactly on a 10 s edge belongs to no chunk
    assert r.good_spikes[(t < 559.9) & off_edge].all()
    assert not r.good_spikes[t > 560].any()
    assert r.good_duration_s > 500


def test_contamination_removes_only_its_chunks():
    rng = np.random.default_rng(1)
    t = _poisson(rng, 15, 600)
    bad = np.sort(rng.uniform(200, 330, 1300))  # ~10 Hz of uncorrelated spikes: many ISIs < 0.8 ms
    t = np.unique(np.round(np.concatenate([t, bad]) * 30000)) / 30000
    r = select_unit_c4(t, None, CFG)
    assert r.keep and not r.amplitude_cutoff_applied
    assert not r.good_spikes[(t > 230) & (t < 300)].any()
    off_edge = np.round(t * 30000) % 300000 != 0  # a spike exactly on a 10 s edge belongs to no chunk
    assert not r.good_spikes[~off_edge].any()
    assert r.good_spikes[(t > 20) & (t < 170) & off_edge].all()
    assert r.good_spikes[(t > 360) & (t < 540) & off_edge].all()


def test_amplitude_cutoff_test_is_applied_only_with_amplitudes():
    rng = np.random.default_rng(2)
    t = _poisson(rng, 15, 600)
    a = np.abs(rng.normal(0, 12, len(t))) + 100  # half a Gaussian: ~50 % of it cut off everywhere
    with_amp = select_unit_c4(t, a, CFG)
    without = select_unit_c4(t, None, CFG)
    assert not with_amp.keep and "amplitude" in with_amp.reason
    assert without.keep and not without.amplitude_cutoff_applied


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda rng: _poisson(rng, 20, 4), "fewer than 100 spikes"),
        (lambda rng: _poisson(rng, 0.8, 300), "too few spikes to assess"),
        (lambda rng: _poisson(rng, 15, 170), "at most one|good sections"),
        (lambda rng: np.sort(rng.uniform(0, 600, 20000)), "at most one"),  # no refractory period at all
    ],
)
def test_rejections_say_why(make, match):
    r = select_unit_c4(make(np.random.default_rng(3)), None, CFG)
    assert not r.keep and not r.good_spikes.any()
    assert r.reason and __import__("re").search(match, r.reason)


def test_duplicates_are_dropped_and_mask_aligned():
    rng = np.random.default_rng(4)
    t = _poisson(rng, 15, 400)
    t2 = np.sort(np.concatenate([t, t[::50]]))  # exact duplicates
    r = select_unit_c4(t2, None, CFG)
    assert r.good_spikes.shape == t2.shape
    dup = np.r_[False, np.diff(t2) == 0]
    assert not r.good_spikes[dup].any()
    assert r.good_spikes.sum() == select_unit_c4(t, None, CFG).good_spikes.sum()


@pytest.mark.parametrize(
    ("times", "amps", "match"),
    [
        (np.array([[0.1, 0.2]]), None, "1-d"),
        (np.array([0.3, 0.2, 0.4]), None, "sorted"),
        (np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0]), "aligned"),
    ],
)
def test_bad_inputs_raise(times, amps, match):
    with pytest.raises(InvalidUnitsError, match=match):
        select_unit_c4(times, amps, CFG)


def test_batch_selection_uses_amplitudes_from_extra():
    rng = np.random.default_rng(5)
    trains = [_poisson(rng, 15, 600), _poisson(rng, 20, 4)]
    offsets = np.r_[0, np.cumsum([len(x) for x in trains])]
    batch = UnitsBatch(
        unit_ids=np.array([3, 4]),
        unit_indices=np.array([0, 1]),
        spike_times_s=np.concatenate(trains),
        spike_offsets=offsets,
    )
    res = select_units_c4(batch, CFG)
    assert [r.keep for r in res] == [True, False]
    assert not res[0].amplitude_cutoff_applied
    batch.extra["spike_amplitudes"] = rng.normal(100, 10, offsets[-1])
    res = select_units_c4(batch, CFG)
    assert res[0].keep and res[0].amplitude_cutoff_applied
    batch.extra["spike_amplitudes"] = np.ones(3)
    with pytest.raises(InvalidUnitsError, match="spike_amplitudes"):
        select_units_c4(batch, CFG)
