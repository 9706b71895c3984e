"""The fast paths of the 3D ACG give exactly the counts of the full computation: positive lags only
(``positive_lags_only=True``), the in-bounds scatter with its drop cell, chunked rows, and the
vectorised tie re-evaluation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from nwb_celltype.errors import FeatureError
from nwb_celltype.features import FeatureConfig, compute_acg_3d_batch, compute_log_acg
from nwb_celltype.features import _isi_rate as rate_mod
from nwb_celltype.features import _pairs as pairs_mod
from nwb_celltype.features import acg as acg_mod
from nwb_celltype.features.reference import reference_acg_3d


def _trains(seed: int = 7) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for kind in ["poisson", "burst", "dup", "gap", "periodic", "fast"]:
        n = 3000
        if kind == "burst":
            isi = np.where(rng.random(n) < 0.5, rng.uniform(0.0015, 0.006, n), rng.exponential(0.2, n))
        elif kind == "dup":
            isi = rng.exponential(1 / 30, n)
            isi[rng.random(n) < 0.1] = 0.0
        elif kind == "gap":
            isi = rng.exponential(1 / 20, n)
            isi[[100, 2000]] = [30.0, 400.0]
        elif kind == "periodic":  # exact ties in the rate: exercises the tie re-evaluation
            isi = np.full(n, 0.025)
        elif kind == "fast":
            isi = rng.gamma(4, 1 / (4 * 150.0), n)
        else:
            isi = rng.exponential(1 / 15, n)
        out.append(np.round((0.5 + np.cumsum(isi)) * 30000) / 30000)
    return out


@pytest.mark.parametrize("fs", [30000.0, 25000.0])
def test_positive_lags_equal_full_and_reference(fs):
    cfg = FeatureConfig(sampling_rate_hz=fs)
    trains = _trains()
    full, thr_full = compute_acg_3d_batch(trains, cfg)
    pos, thr_pos = compute_acg_3d_batch(trains, cfg, positive_lags_only=True)
    half = full.shape[-1] // 2
    assert pos.shape == (len(trains), 10, half + 1)
    np.testing.assert_array_equal(pos, full[..., half:])
    np.testing.assert_array_equal(thr_pos, thr_full)
    assert full[..., :half].any()  # the full ACG really has a negative half
    np.testing.assert_array_equal(compute_log_acg(pos, cfg), compute_log_acg(full, cfg))
    for i in (0, 2, 4):  # the slow dense reference agrees too
        np.testing.assert_array_equal(pos[i], reference_acg_3d(trains[i], cfg)[..., half:])


def test_positive_lags_no_smoothing_and_chunked(monkeypatch):
    cfg = replace(FeatureConfig(), acg_smooth_ms=0.0)
    trains = _trains(3)[:3]
    expect = compute_acg_3d_batch(trains, cfg)[0][..., 1000:]
    monkeypatch.setattr(pairs_mod, "_ROW_SPIKES", 256)
    monkeypatch.setattr(pairs_mod, "_CALL_SPIKES", 1024)
    got = compute_acg_3d_batch(trains, cfg, positive_lags_only=True)[0]
    np.testing.assert_array_equal(got, expect)


def test_positive_lags_one_compilation_per_bucket():
    trains = _trains(5)
    compute_acg_3d_batch(trains, positive_lags_only=True)
    before = acg_mod.TRACE_COUNT["pairs"]
    compute_acg_3d_batch(_trains(6), positive_lags_only=True)  # same buckets, other data
    assert acg_mod.TRACE_COUNT["pairs"] == before


def test_log_acg_rejects_wrong_width():
    with pytest.raises(FeatureError, match="1001"):
        compute_log_acg(np.zeros((10, 1500)))


def test_tie_resolution_on_many_near_spikes_is_chunked():
    # a perfectly periodic train: every spike's rate ties with the quantiles (> 4096 near spikes)
    t = np.arange(1, 6001) * 0.02
    full = compute_acg_3d_batch([t])[0][0]
    np.testing.assert_array_equal(full, reference_acg_3d(t))


def test_two_workers_give_the_single_thread_counts(monkeypatch):
    # the batch is split over host threads (each dispatching its own device calls) only above a
    # size threshold: force the split on small data and compare with one thread, both directions
    trains = _trains(9) + _trains(10)[:3]
    monkeypatch.setattr(pairs_mod, "_WORKERS", 1)
    one_full, one_thr = compute_acg_3d_batch(trains)
    one_pos, _ = compute_acg_3d_batch(trains, positive_lags_only=True)
    monkeypatch.setattr(pairs_mod, "_WORKERS", 2)
    monkeypatch.setattr(pairs_mod, "_PARALLEL_MIN_SPIKES", 0)
    order, n_threads = acg_mod._schedule(trains, acg_mod.acg_geometry(FeatureConfig()))
    assert n_threads == 2 and sorted(order) == list(range(len(trains)))
    two_full, two_thr = compute_acg_3d_batch(trains)
    two_pos, _ = compute_acg_3d_batch(trains, positive_lags_only=True)
    np.testing.assert_array_equal(two_full, one_full)
    np.testing.assert_array_equal(two_thr, one_thr)
    np.testing.assert_array_equal(two_pos, one_pos)
    # one unit: the idle worker looks up half of the rate windows and dispatches every other call
    monkeypatch.setattr(pairs_mod, "_ROW_SPIKES", 512)
    monkeypatch.setattr(pairs_mod, "_CALL_SPIKES", 1024)
    for i in (0, 1, 4):
        assert acg_mod._schedule([trains[i]], acg_mod.acg_geometry(FeatureConfig())) == ([0], 1)
        full_i, thr_i = compute_acg_3d_batch([trains[i]])
        np.testing.assert_array_equal(full_i[0], one_full[i])
        np.testing.assert_array_equal(thr_i[0], one_thr[i])
        np.testing.assert_array_equal(
            compute_acg_3d_batch([trains[i]], positive_lags_only=True)[0][0], one_pos[i]
        )


def test_quantiles_of_sorted_match_numpy():
    # the partition-free quantiles of a sorted array are numpy's own, bit for bit
    rng = np.random.default_rng(2)
    levels = np.linspace(0, 1, 12)[1:-1]
    for n in [1, 2, 3, 4, 9, 10, 11, 12, 99, 1000, 3001]:
        for x in [
            rng.exponential(20, n),
            np.round(rng.random(n) * 3) / 7,
            np.full(n, 0.1),
            rng.random(n) * 1e-9,
        ]:
            xs = np.sort(x)
            for lv in [levels, np.linspace(0, 1, 5), np.array([0.0, 1.0, 0.5, 1 / 3])]:
                np.testing.assert_array_equal(rate_mod._np_quantiles_of_sorted(xs, lv), np.quantile(xs, lv))
    assert rate_mod._quantiles(np.sort(rng.random(50)), levels).shape == (10,)


def test_rate_bins_equal_searchsorted():
    rng = np.random.default_rng(4)
    rate = np.round(rng.exponential(10, 5000), 1)
    thr = np.quantile(rate, np.linspace(0, 1, 12)[1:-1])  # many rates equal a threshold
    expect = np.searchsorted(thr, rate, side="left")
    expect[expect == len(thr)] = len(thr) - 1
    np.testing.assert_array_equal(rate_mod._rate_bins(rate, thr), expect)


def test_many_small_units_fill_calls_by_rows(monkeypatch):
    # a call holds at most _CALL_ROWS rows (histogram slots): many tiny units give many calls
    monkeypatch.setattr(pairs_mod, "_CALL_ROWS", 2)
    rng = np.random.default_rng(8)
    trains = [np.sort(rng.uniform(0.5, 8.0, int(rng.integers(5, 40)))) for _ in range(9)]
    got = compute_acg_3d_batch(trains)[0]
    for i in (0, 4, 8):
        np.testing.assert_array_equal(got[i], reference_acg_3d(trains[i]))


@pytest.mark.parametrize("steps", [0, 1, 2, 5])
def test_count_at_most_equals_searchsorted(monkeypatch, steps):
    # the table-accelerated search of the rate integral gives numpy's searchsorted, exactly,
    # whether the table's steps cover every cell or a binary search finishes the fullest ones
    monkeypatch.setattr(rate_mod, "_COUNT_STEPS", steps)
    rng = np.random.default_rng(12)
    for trial in range(60):
        n = int(rng.integers(2, 3000)) if trial % 2 else int(rng.integers(2048, 6000))
        span = int(rng.integers(n // 4 + 2, 50 * n + 10))
        m = np.sort(rng.integers(0, span, n))
        if trial % 3 == 0:  # bursts and repeated values
            m = np.sort(np.concatenate([m, np.repeat(m[: n // 5], 3), m[:10] + 1]))
        n_bins = int(m[-1]) + 1 + int(rng.integers(0, 500))
        x = np.concatenate([rng.integers(0, n_bins + 1, 400), m, m + 1, [0, n_bins]])
        x = np.clip(x, 0, n_bins)
        got = rate_mod._CountAtMost(np.append(m, np.iinfo(np.int64).max), n_bins)(x)
        np.testing.assert_array_equal(got, np.searchsorted(m, x, side="right"))


def test_merge_sorted_equals_sort():
    # re-sorting only the changed span of the sorted rates gives np.sort of the updated rates
    rng = np.random.default_rng(13)
    for trial in range(200):
        n = int(rng.integers(1, 9000))
        x = np.round(rng.exponential(10, n), int(rng.integers(0, 3)))  # many equal values
        order = np.argsort(x, kind="stable")
        sorted_x = x[order]
        k = int(rng.integers(1, min(n, 40) + 1))
        if trial % 2:  # a few neighbouring sorted positions (the usual case: one tie group)
            start = int(rng.integers(0, n - k + 1))
            removed = np.arange(start, start + k)
        else:  # anywhere (a span too long: the whole-array merge)
            removed = np.sort(rng.choice(n, k, replace=False))
        y = x.copy()
        y[order[removed]] += rng.normal(0, 1e-9 if trial % 3 else 5.0, k)
        got = rate_mod._merge_sorted(sorted_x.copy(), removed, np.sort(y[order[removed]]), y)
        np.testing.assert_array_equal(got, np.sort(y))
