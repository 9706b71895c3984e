"""Feature extractor: fast path vs the plain-numpy reference, edge cases, compilation count,
bounded-memory chunking, waveforms, statistics, file format and the ``features`` command."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from nwb_celltype.errors import FeatureError, InvalidUnitsError
from nwb_celltype.features import (
    FeatureConfig,
    compute_acg_3d,
    compute_acg_3d_batch,
    compute_log_acg,
    compute_spike_stats,
    extract_features,
    load_features,
    preprocess_waveform,
    reference_acg_3d,
    save_features,
)
from nwb_celltype.features import _pairs as pairs_mod
from nwb_celltype.features import acg as acg_mod
from nwb_celltype.units import UnitsBatch

FS = 30000.0


def _on_grid(t: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(t) * FS) / FS


def _train(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "poisson":
        isi = rng.exponential(1 / 25, n)
    elif kind == "regular":
        isi = rng.gamma(50, 1 / (50 * 60), n)
    elif kind == "burst":
        isi = np.where(rng.random(n) < 0.6, rng.uniform(0.002, 0.005, n), rng.exponential(0.3, n))
    elif kind == "gap":
        isi = rng.exponential(1 / 40, n)
        isi[n // 3] = 300.0  # a 5 min silence
    elif kind == "periodic":
        isi = np.full(n, 0.01)  # exact ties everywhere
    else:
        raise ValueError(kind)
    return _on_grid(0.3 + np.cumsum(isi))


TRAINS = [
    ("poisson", 2000, 0),
    ("regular", 3000, 1),
    ("burst", 3000, 2),
    ("gap", 2000, 3),
    ("periodic", 1500, 4),
    ("poisson", 150, 5),
]


@pytest.mark.parametrize(("kind", "n", "seed"), TRAINS)
def test_acg_matches_reference(kind, n, seed):
    t = _train(kind, n, seed)
    fast = compute_acg_3d(t)
    ref = reference_acg_3d(t)
    assert fast.shape == (10, 2001)
    np.testing.assert_array_equal(fast, ref)
    assert fast[:, 1000].sum() == 0
    assert fast.max() <= 1.0


def test_acg_batch_equals_single_units():
    trains = [_train(k, n, s) for k, n, s in TRAINS]
    batch, thresholds = compute_acg_3d_batch(trains)
    assert thresholds.shape == (len(trains), 10)
    for i, t in enumerate(trains):
        np.testing.assert_array_equal(batch[i], compute_acg_3d(t))


def test_unsorted_and_duplicate_times():
    t = _train("poisson", 1500, 7)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(compute_acg_3d(rng.permutation(t)), compute_acg_3d(t))
    dup = np.sort(np.concatenate([t, t[::7]]))  # duplicates are kept, as the reference keeps them
    np.testing.assert_array_equal(compute_acg_3d(dup), reference_acg_3d(dup))
    assert not np.array_equal(compute_acg_3d(dup), compute_acg_3d(t))


@pytest.mark.parametrize("n", [0, 1, 2])
def test_few_spikes_give_zeros(n):
    t = np.arange(n) * 2.0 + 1.5
    acg = compute_acg_3d(t)
    assert acg.shape == (10, 2001)
    assert not acg.any()


@pytest.mark.parametrize(
    ("times", "match"),
    [
        (np.array([0.1, np.nan, 0.3]), "NaN or infinite"),
        (np.array([0.1, np.inf]), "NaN or infinite"),
        (np.array([-0.5, 0.2]), "negative spike time"),
        (np.zeros((2, 2)), "1-d array"),
    ],
)
def test_bad_times_raise(times, match):
    with pytest.raises(InvalidUnitsError, match=match):
        compute_acg_3d(times)


def test_one_compilation_per_bucket(monkeypatch):
    cfg = FeatureConfig()
    a = [_train("poisson", 1000, s) for s in range(3)]
    compute_acg_3d_batch(a, cfg)
    before = acg_mod.TRACE_COUNT["pairs"]
    b = [_train("poisson", 1000, s + 10) for s in range(3)]  # same buckets, other data
    compute_acg_3d_batch(b, cfg)
    compute_acg_3d_batch(a, cfg)
    assert acg_mod.TRACE_COUNT["pairs"] == before


def test_long_unit_is_chunked_with_identical_result(monkeypatch):
    t = _train("poisson", 6000, 11)
    whole = compute_acg_3d(t)
    monkeypatch.setattr(pairs_mod, "_ROW_SPIKES", 512)
    monkeypatch.setattr(pairs_mod, "_CALL_SPIKES", 1024)
    geo = acg_mod.acg_geometry(FeatureConfig())
    prep = acg_mod._prepare_unit(t, FeatureConfig(), geo)
    rows = acg_mod._rows_of(0, prep, geo)
    assert len(rows) > 5
    assert max(r.n_own for r in rows) <= 512
    # every row but the last carries the following bins within the window as context
    assert all(len(r.coords) > r.n_own for r in rows[:-1])
    assert all(len(r.coords) <= r.n_own + geo.half + 1 for r in rows)
    assert sum(r.n_own for r in rows) == len(prep.ubins)
    np.testing.assert_array_equal(compute_acg_3d(t), whole)


def test_log_acg_shape_scale_and_errors():
    lin = compute_acg_3d(_train("regular", 3000, 1))
    log = compute_log_acg(lin)
    assert log.shape == (10, 101)
    assert np.all(log[:, 0] == 0)
    # a flat linear ACG of p per bin becomes p x 10 everywhere (interpolation and smoothing keep it)
    flat = np.full((10, 2001), 0.02)
    np.testing.assert_allclose(compute_log_acg(flat)[:, 1:], 0.2, rtol=1e-12)
    with pytest.raises(FeatureError, match="2001"):
        compute_log_acg(np.zeros((10, 501)))


def test_config_validation():
    with pytest.raises(FeatureError, match="1 bin"):
        compute_acg_3d(np.arange(10.0), replace(FeatureConfig(), acg_smooth_ms=1.0))
    with pytest.raises(FeatureError, match="sampling_rate_hz"):
        compute_acg_3d(np.arange(10.0), replace(FeatureConfig(), sampling_rate_hz=0.0))


def test_other_sampling_rate_and_no_smoothing_match_reference():
    t = _train("burst", 2000, 3)
    for cfg in (
        replace(FeatureConfig(), sampling_rate_hz=20000.0),
        replace(FeatureConfig(), acg_smooth_ms=0.0),
        replace(FeatureConfig(), acg_window_ms=200.0, acg_rate_bins=5),
    ):
        np.testing.assert_array_equal(compute_acg_3d(t, cfg), reference_acg_3d(t, cfg))


# ----------------------------------------------------------------------------- waveforms


def _spike_waveform(n: int = 120, rate: float = 30000.0, peak_at_ms: float = 1.3) -> np.ndarray:
    x = np.arange(n) / rate * 1000
    return -np.exp(-(((x - peak_at_ms) / 0.15) ** 2)) + 0.35 * np.exp(-(((x - peak_at_ms - 0.5) / 0.3) ** 2))


def test_waveform_aligned_normalised():
    w = preprocess_waveform(80.0 * _spike_waveform(), 30000.0)
    assert w.shape == (90,)
    assert np.argmin(w) == 30
    assert w[30] == pytest.approx(-1.0)
    assert abs(np.median(w[:30])) < 1e-12


def test_positive_spike_is_flipped():
    w = preprocess_waveform(-50.0 * _spike_waveform(), 30000.0)
    assert w[30] == pytest.approx(-1.0)
    kept = preprocess_waveform(-50.0 * _spike_waveform(), 30000.0, peak_sign=None)
    assert kept[30] == pytest.approx(1.0)


@pytest.mark.parametrize("rate", [20000.0, 25000.0, 40000.0])
def test_waveform_other_rates(rate):
    n = int(round(4e-3 * rate))
    w = preprocess_waveform(_spike_waveform(n, rate), rate)
    ref = preprocess_waveform(_spike_waveform(120, 30000.0), 30000.0)
    assert w.shape == (90,)
    assert abs(int(np.argmin(w)) - 30) <= 1
    assert np.abs(w - ref).max() < 0.25


@pytest.mark.parametrize(
    ("wvf", "match"),
    [
        (np.zeros(120), "flat"),
        (np.full(120, np.nan), "NaN"),
        (np.r_[np.zeros(60), np.inf, np.zeros(59)], "NaN or infinite"),
        (np.zeros(2), "1-d array"),
    ],
)
def test_bad_waveforms(wvf, match):
    with pytest.raises(FeatureError, match=match):
        preprocess_waveform(wvf, 30000.0)


# ----------------------------------------------------------------------------- statistics


def test_stats_values():
    regular = np.arange(0, 10, 0.01)
    s = compute_spike_stats(regular)
    assert s["n_spikes"] == 1000
    assert s["mean_rate_hz"] == pytest.approx(100.0)
    assert s["isi_cv"] == pytest.approx(0.0, abs=1e-9)
    assert s["isi_cv2"] == pytest.approx(0.0, abs=1e-9)
    assert s["isi_lv"] == pytest.approx(0.0, abs=1e-9)
    assert s["refractory_violation_fraction"] == 0.0
    rng = np.random.default_rng(0)
    poisson = np.cumsum(rng.exponential(0.05, 20000))
    p = compute_spike_stats(poisson)
    assert p["isi_cv"] == pytest.approx(1.0, abs=0.03)
    assert p["isi_lv"] == pytest.approx(1.0, abs=0.05)
    assert p["burst_index"] == pytest.approx(1.0, abs=0.1)
    with_violations = np.sort(np.r_[regular, regular[::10] + 0.0005])
    assert compute_spike_stats(with_violations)["refractory_violation_fraction"] > 0.09
    gap = np.r_[np.arange(0, 1, 0.1), 100 + np.arange(0, 1, 0.1)]
    assert compute_spike_stats(gap)["long_isi_fraction"] == pytest.approx(1 / 19)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_stats_few_spikes(n):
    s = compute_spike_stats(np.arange(n, dtype=float))
    assert s["n_spikes"] == n
    assert np.isnan(s["isi_cv2"])
    if n < 2:
        assert np.isnan(s["mean_rate_hz"])


# ----------------------------------------------------------------------------- extract / file


def _batch(trains, waveforms, rate=30000.0, layers=None) -> UnitsBatch:
    counts = [len(t) for t in trains]
    return UnitsBatch(
        unit_ids=np.arange(len(trains), dtype=np.int64) + 100,
        unit_indices=np.arange(len(trains), dtype=np.int64),
        spike_times_s=np.concatenate(trains) if trains else np.zeros(0),
        spike_offsets=np.r_[0, np.cumsum(counts)].astype(np.int64),
        waveforms=np.asarray(waveforms, dtype=np.float32),
        waveform_rate_hz=rate,
        layers=layers,
    )


def test_extract_features_and_reasons(tmp_path):
    good = _train("poisson", 3000, 1)
    wv = 60 * _spike_waveform()
    trains = [good, np.array([1.0, 2.0]), np.r_[good[:500], np.nan], good, good, np.zeros(0)]
    waves = [wv, wv, wv, np.zeros(120), np.full(120, np.nan), wv]
    layers = np.array(["PCL", "unknown", "ML", "GCL", "unknown", "unknown"], dtype=object)
    fs = extract_features(_batch(trains, waves, layers=layers))
    assert fs.acg.shape == (6, 10, 101) and fs.acg.dtype == np.float32
    assert fs.waveform.shape == (6, 90) and fs.waveform.dtype == np.float32
    assert fs.layer.shape == (6, 4) and fs.layer[0].tolist() == [0, 0, 1, 0]
    assert fs.usable.tolist() == [True, False, False, False, False, False]
    assert "2 spikes < min_spikes=100" in fs.reasons[1]
    assert "non-finite" in fs.reasons[2]
    assert "flat" in fs.reasons[3]
    assert "NaN" in fs.reasons[4]
    assert "0 spikes" in fs.reasons[5]
    np.testing.assert_allclose(fs.acg[0], compute_log_acg(compute_acg_3d(good)), atol=1e-6)
    assert fs.stats["mean_rate_hz"][0] > 0
    path = save_features(tmp_path / "f.npz", fs)
    back = load_features(path)
    assert back.config == fs.config
    np.testing.assert_array_equal(back.acg, fs.acg)
    np.testing.assert_array_equal(back.unit_ids, fs.unit_ids)
    assert back.reasons.tolist() == fs.reasons.tolist()
    np.testing.assert_array_equal(back.stats["isi_cv"], fs.stats["isi_cv"])


def test_load_features_errors(tmp_path):
    with pytest.raises(FeatureError, match="does not exist"):
        load_features(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros(3))
    with pytest.raises(FeatureError, match="lacks"):
        load_features(bad)


def test_features_cli(tmp_path):
    from click.testing import CliRunner
    from pynwb import NWBHDF5IO

    from nwb_celltype.cli import main
    from nwb_celltype.testing.mock import mock_NWBFile_with_units

    nwbfile = mock_NWBFile_with_units(3, seed=1)
    path = tmp_path / "s.nwb"
    with NWBHDF5IO(path, "w") as io:
        io.write(nwbfile)
    out = tmp_path / "feat.npz"
    res = CliRunner().invoke(main, ["features", str(path), "--out", str(out), "--family", "c4-3d"])
    assert res.exit_code == 0, res.output
    fs = load_features(out)
    assert len(fs) == 3
    assert fs.acg.shape == (3, 10, 101)
    res = CliRunner().invoke(main, ["features", str(path), "--out", str(out)])
    assert res.exit_code == 1 and "exists" in res.output
    res = CliRunner().invoke(main, ["features", str(path), "--out", str(out), "--overwrite", "-q"])
    assert res.exit_code == 0 and res.output == "", res.output
    res = CliRunner().invoke(main, ["features", str(path), "--out", str(out), "--overwrite"])
    assert res.exit_code == 0 and "wrote acg-isi-wave features of 3 units" in res.output
