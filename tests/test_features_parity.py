"""Numerical parity with the C4 reference, npyx 4.3.1, run in its own environment (``oracle``
fixture; skipped loudly when absent): 3D ACGs of 56 varied spike trains (regular, bursty, Poisson,
gaps, duplicates, 1e2..1e6 spikes, three sampling rates) and 54 waveforms (shapes, signs, noise,
30/40/60 kHz)."""

from __future__ import annotations

import numpy as np
import pytest

from nwb_celltype.features import FeatureConfig, compute_acg_3d_batch, compute_log_acg, preprocess_waveform

pytestmark = pytest.mark.oracle


def _trains() -> list[tuple[np.ndarray, float]]:
    """(spike times in s on the sample grid, sampling rate) for each case."""
    rng = np.random.default_rng(2025)
    out = []
    kinds = ["poisson", "regular", "burst", "gap", "complex", "periodic", "dup"]
    sizes = [100, 300, 1000, 3000, 10000, 30000]
    for i in range(49):
        kind = kinds[i % len(kinds)]
        n = sizes[i % len(sizes)]
        rate = float(rng.uniform(2, 120))
        if kind == "poisson":
            isi = rng.exponential(1 / rate, n)
        elif kind == "regular":
            cv = rng.uniform(0.03, 0.3)
            isi = rng.gamma(1 / cv**2, cv**2 / rate, n)
        elif kind == "burst":
            isi = np.where(rng.random(n) < 0.5, rng.uniform(0.0015, 0.006, n), rng.exponential(0.2, n))
        elif kind == "gap":
            isi = rng.exponential(1 / rate, n)
            isi[rng.integers(0, n, 3)] = rng.uniform(5, 600, 3)
        elif kind == "complex":  # ~1 Hz complex spikes with refractoriness
            isi = 0.1 + rng.exponential(0.9, n)
        elif kind == "periodic":  # many exact ties in the rate
            isi = np.full(n, np.round(1 / rate, 3))
        else:  # duplicates and near-duplicates
            isi = rng.exponential(1 / rate, n)
            isi[rng.random(n) < 0.05] = 0.0
        t0 = float(rng.uniform(0, 3))
        fs = [30000.0, 30000.0, 25000.0, 20000.0][i % 4]
        out.append((np.round((t0 + np.cumsum(isi)) * fs) / fs, fs))
    # large units: 1e5 and 1e6 spikes (npyx takes ~20 us per spike: keep them few)
    for n, rate in [(100_000, 50.0), (300_000, 80.0), (1_000_000, 150.0)]:
        isi = rng.gamma(4, 1 / (4 * rate), n)
        out.append((np.round(np.cumsum(isi) * 30000) / 30000, 30000.0))
    # short and degenerate: a recording shorter than the window, 3 spikes, a single long silence
    out.append((np.round(np.sort(rng.uniform(0, 1.5, 200)) * 30000) / 30000, 30000.0))
    out.append((np.array([1.0, 2.0, 3.5]), 30000.0))
    out.append((np.r_[np.arange(0, 20, 0.02), 3600 + np.arange(0, 20, 0.02)], 30000.0))
    out.append((np.round(np.sort(rng.uniform(0, 2000, 200)) * 30000) / 30000, 30000.0))
    return out


ORACLE_ACG = """
import npyx.corr as c
res = {}
for i in range(int(n_units)):
    t = np.asarray(locals()[f"t{i}"]).astype(np.int64)
    fs = float(rates[i])
    bins, a = c.crosscorr_vs_firing_rate(t, t, 2000, 1, fs=fs)
    log, _ = c.convert_acg_log(a, 1, 2000)
    res[f"lin{i}"] = a
    res[f"log{i}"] = log * 10
    res[f"q{i}"] = bins
out = res
"""


@pytest.mark.slow  # ~3 min: npyx needs ~20 us per spike (1.5 M spikes in all)
def test_acg_parity_with_npyx(oracle):
    cases = _trains()
    assert len(cases) >= 50
    samples = {f"t{i}": np.round(t * fs).astype(np.int64) for i, (t, fs) in enumerate(cases)}
    ref = oracle.run(
        ORACLE_ACG, n_units=np.array(len(cases)), rates=np.array([fs for _, fs in cases]), **samples
    )
    by_rate: dict[float, list[int]] = {}
    for i, (_, fs) in enumerate(cases):
        by_rate.setdefault(fs, []).append(i)
    n_checked = 0
    for fs, idx in by_rate.items():
        cfg = FeatureConfig(sampling_rate_hz=fs)
        lin, thresholds = compute_acg_3d_batch([cases[i][0] for i in idx], cfg)
        log = compute_log_acg(lin, cfg)
        for j, i in enumerate(idx):
            # identical bin counts: the normalised ACGs are equal to the last bit
            np.testing.assert_array_equal(lin[j], ref[f"lin{i}"], err_msg=f"case {i} (fs={fs})")
            assert np.abs(log[j] - ref[f"log{i}"][:, 100:]).max() <= 1e-6, f"case {i}"
            if len(cases[i][0]) >= 3 and np.isfinite(ref[f"q{i}"]).all():
                np.testing.assert_allclose(thresholds[j], ref[f"q{i}"], rtol=1e-9, atol=1e-9)
            n_checked += 1
    assert n_checked == len(cases)


def _waveforms() -> list[tuple[np.ndarray, float, str]]:
    rng = np.random.default_rng(7)
    out = []
    for i in range(54):
        rate = [30000.0, 40000.0, 60000.0][i % 3]
        n = int(round(rng.uniform(3.0, 6.0) * rate / 1000))
        x = np.arange(n) / rate * 1000
        peak = rng.uniform(0.8, 2.5)
        width = rng.uniform(0.08, 0.4)
        w = -np.exp(-(((x - peak) / width) ** 2)) + rng.uniform(0.1, 0.6) * np.exp(
            -(((x - peak - rng.uniform(0.2, 0.8)) / (2 * width)) ** 2)
        )
        if i % 4 == 1:
            w = -w  # positive spikes
        if i % 5 == 2:
            w = w + 0.3 * np.exp(-(((x - peak + 0.6) / width) ** 2))  # pre-peak
        w = w * rng.uniform(20, 300) + rng.normal(0, rng.uniform(0, 5), n) + rng.uniform(-3, 3)
        sign = "positive" if i % 9 == 4 else "negative"
        out.append((w, rate, sign))
    return out


ORACLE_WVF = """
from npyx.datasets import preprocess_template
out = {}
for i in range(int(n_w)):
    sign = "positive" if int(signs[i]) else "negative"
    out[f"w{i}"] = preprocess_template(np.asarray(locals()[f"w{i}"]), original_sampling_rate=float(rates[i]), peak_sign=sign)
"""


def test_waveform_parity_with_npyx(oracle):
    cases = _waveforms()
    arrays = {f"w{i}": w for i, (w, _, _) in enumerate(cases)}
    ref = oracle.run(
        ORACLE_WVF,
        n_w=np.array(len(cases)),
        rates=np.array([r for _, r, _ in cases]),
        signs=np.array([s == "positive" for _, _, s in cases]),
        **arrays,
    )
    for i, (w, rate, sign) in enumerate(cases):
        ours = preprocess_waveform(w, rate, peak_sign=sign)
        assert ours.shape == (90,)
        assert np.abs(ours - ref[f"w{i}"]).max() <= 1e-6, f"waveform {i} (rate {rate}, {sign})"
