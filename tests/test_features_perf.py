"""The fast paths of the 3D ACG give exactly the counts of the full computation: positive lags only
(``positive_lags_only=True``), the in-bounds scatter with its drop cell, chunked rows, and the
vectorised tie re-evaluation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from nwb_celltype.errors import FeatureError
from nwb_celltype.features import FeatureConfig, compute_acg_3d_batch, compute_log_acg
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
    monkeypatch.setattr(acg_mod, "_ROW_SPIKES", 256)
    monkeypatch.setattr(acg_mod, "_ROW_PAIRS", 2048)
    monkeypatch.setattr(acg_mod, "_CALL_SPIKES", 1024)
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
