"""A small, slow, plain-numpy reference of the 3D ACG, written from C4's definition and independent
of the fast path: it shares no helper with :mod:`.acg` or :mod:`._geometry` (its window, bin and
boxcar sizes are derived here from the definition's formulas) and works densely, bin by bin:

1. spike times -> sample indices ``round(t * fs)`` -> bins of ``ceil(fs / (1000 / bin_ms))``
   samples; the binary spike train marks every bin holding a spike;
2. the instantaneous rate is the inverse inter-spike interval: spike i owns the bins from the
   midpoint with its predecessor to the midpoint with its successor (first and last spikes own none),
   then a boxcar of ``ceil(smooth_ms / bin_ms)`` bins smooths it (edges: mean over the clipped
   window);
3. each spike is put in one of R firing-rate classes by the quantiles of the rate at the spikes;
4. for every spike whose window of ``W = 2 * floor(window_ms / 2 / bin_ms) + 1`` lags lies inside the
   recording, the train in its window is added to its class; each class is divided by its number of
   trigger spikes and the zero lag is cleared.

Used by the tests to check the fast host/JAX path; O(duration x kernel + spikes x window).
"""

from __future__ import annotations

import math

import numpy as np

from .config import FeatureConfig


def reference_acg_3d(times_s: np.ndarray, config: FeatureConfig | None = None) -> np.ndarray:
    """(acg_rate_bins, W) float64 linear 3D ACG of one unit, computed densely (see module doc)."""
    config = FeatureConfig() if config is None else config
    fs = float(config.sampling_rate_hz)
    bin_ms = min(max(float(config.acg_bin_ms), 1000.0 / fs), 1e8)
    win_ms = min(max(float(config.acg_window_ms), 1e-2), 1e8)
    n_lags = 2 * int(0.5 * win_ms / bin_ms) + 1
    first_lag = math.ceil(-win_ms / 2 / bin_ms)  # lag (in bins) of a window's first column
    samples_per_bin = math.ceil(fs / (1000 / bin_ms))
    smooth_ms = float(config.acg_smooth_ms)
    kernel = math.ceil(smooth_ms / bin_ms) if smooth_ms > 0 else 0
    n_classes = int(config.acg_rate_bins)

    samples = np.round(np.sort(np.asarray(times_s, dtype=np.float64)) * fs).astype(np.int64)
    bins = samples // samples_per_bin
    out = np.zeros((n_classes, n_lags))
    if len(bins) == 0:
        return out
    n_bins = int(bins[-1]) + 1
    train = np.zeros(n_bins + n_lags, dtype=bool)
    train[bins] = True

    rate = np.zeros(n_bins)
    for i in range(1, len(bins) - 1):
        start = bins[i - 1] + (bins[i] - bins[i - 1]) // 2
        stop = bins[i] + (bins[i + 1] - bins[i]) // 2
        if stop > start:
            rate[start:stop] = 1.0 / ((stop - start) * (bin_ms / 1000))  # spikes per second
    if kernel:
        half = kernel // 2
        smooth = np.convolve(rate, np.ones(kernel) / kernel, mode="same")[:n_bins]
        for j in [*range(min(kernel, n_bins)), *range(max(0, n_bins - kernel), n_bins)]:
            smooth[j] = np.mean(rate[max(0, j - half) : min(n_bins, j + half)])
        rate = smooth

    edges = np.quantile(rate[bins], np.linspace(0, 1, n_classes + 2)[1:-1])
    last = bins[-1]
    triggers = np.zeros(n_classes)
    for b in bins:
        start = b + first_lag
        if start < 0 or start + n_lags >= last + 1 or b >= last:
            continue  # the window must lie inside the recording
        cls = int(np.argmax(edges >= rate[b]))  # the first class edge at or above the rate
        if cls == 0 and rate[b] > edges[0]:
            cls = n_classes - 1  # above every edge: the top class
        out[cls] += train[start : start + n_lags]
        triggers[cls] += 1
    with np.errstate(divide="ignore", invalid="ignore"):
        acg = np.nan_to_num(out / triggers[:, None])
    acg[:, n_lags // 2] = 0.0
    return acg
