"""Discharge statistics of a spike train (inter-spike-interval summaries). Pure numpy; NaN where a
statistic is undefined (too few spikes or intervals)."""

from __future__ import annotations

import numpy as np

from .config import FeatureConfig

#: names and meaning of the statistics, in the order of :data:`STAT_NAMES`
STAT_DOCS: dict[str, str] = {
    "n_spikes": "number of spikes",
    "duration_s": "last minus first spike time (s)",
    "mean_rate_hz": "(n_spikes - 1) / duration_s",
    "median_isi_ms": "median inter-spike interval (ms)",
    "isi_cv": "coefficient of variation of the ISIs (std / mean)",
    "isi_cv2": "mean of 2|I[i+1] - I[i]| / (I[i+1] + I[i]) (Holt et al. 1996)",
    "isi_lv": "local variation, mean of 3 (I[i] - I[i+1])^2 / (I[i] + I[i+1])^2 (Shinomoto 2003)",
    "burst_index": "fraction of ISIs < burst_isi_ms divided by the Poisson expectation at the mean rate",
    "refractory_violation_fraction": "fraction of ISIs < refractory_ms",
    "long_isi_fraction": "fraction of ISIs > long_isi_s",
    "duplicate_fraction": "fraction of ISIs equal to 0 (duplicate spike times)",
}
STAT_NAMES: tuple[str, ...] = tuple(STAT_DOCS)


def compute_spike_stats(times_s: np.ndarray, config: FeatureConfig | None = None) -> dict[str, float]:
    """Discharge statistics of one unit.

    Parameters
    ----------
    times_s : (n,) float64
        Spike times in seconds, any order (sorted here); must be finite.
    config : FeatureConfig
        Uses ``refractory_ms``, ``stats_burst_isi_ms`` and ``stats_long_isi_s``.

    Returns
    -------
    dict of str -> float
        Keys :data:`STAT_NAMES` (see :data:`STAT_DOCS`). NaN where undefined: rates and ISI
        fractions need >= 2 spikes, CV2/LV need >= 3, a zero duration gives NaN rates.
    """
    config = FeatureConfig() if config is None else config
    t = np.sort(np.asarray(times_s, dtype=np.float64))
    n = len(t)
    out = dict.fromkeys(STAT_NAMES, np.nan)
    out["n_spikes"] = float(n)
    if n < 2:
        out["duration_s"] = 0.0
        return out
    isi = np.diff(t)
    dur = float(t[-1] - t[0])
    out["duration_s"] = dur
    mean_isi = float(isi.mean())
    rate = (n - 1) / dur if dur > 0 else np.nan
    out["mean_rate_hz"] = rate
    out["median_isi_ms"] = float(np.median(isi)) * 1000
    out["isi_cv"] = float(isi.std() / mean_isi) if mean_isi > 0 else np.nan
    out["refractory_violation_fraction"] = float(np.mean(isi < config.refractory_ms / 1000))
    out["long_isi_fraction"] = float(np.mean(isi > config.stats_long_isi_s))
    out["duplicate_fraction"] = float(np.mean(isi == 0))
    burst_s = config.stats_burst_isi_ms / 1000
    expected = 1 - np.exp(-rate * burst_s) if np.isfinite(rate) else np.nan
    out["burst_index"] = float(np.mean(isi < burst_s) / expected) if expected and expected > 0 else np.nan
    if n >= 3:
        a, b = isi[:-1], isi[1:]
        s = a + b
        ok = s > 0
        if ok.any():
            out["isi_cv2"] = float(np.mean(2 * np.abs(b[ok] - a[ok]) / s[ok]))
            out["isi_lv"] = float(np.mean(3 * (a[ok] - b[ok]) ** 2 / s[ok] ** 2))
    return out
