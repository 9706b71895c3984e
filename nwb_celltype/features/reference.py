"""A small, slow, plain-numpy reference of the 3D ACG: the C4 definition written out densely
(binary spike train, dense inverse-ISI rate, boxcar by convolution, per-spike windows). Used by the
tests to check the fast host/JAX path; O(duration x kernel + spikes x window)."""

from __future__ import annotations

import numpy as np

from ._geometry import acg_geometry
from .acg import spike_times_to_samples
from .config import FeatureConfig


def reference_acg_3d(times_s: np.ndarray, config: FeatureConfig | None = None) -> np.ndarray:
    """(acg_rate_bins, W) float64 linear 3D ACG of one unit, computed densely (see module doc)."""
    config = FeatureConfig() if config is None else config
    geo = acg_geometry(config)
    R, W, half = geo.n_rate_bins, geo.n_lags, geo.half
    bins = spike_times_to_samples(np.sort(np.asarray(times_s, float)), config.sampling_rate_hz)
    bins = bins // geo.samples_per_bin
    out = np.zeros((R, W))
    if len(bins) == 0:
        return out
    n_bins = int(bins[-1]) + 1
    train = np.zeros(n_bins + W, dtype=bool)
    train[bins] = True
    rate = np.zeros(n_bins)
    # inverse ISI: spike i owns the bins from the midpoint with its predecessor to the midpoint
    # with its successor; the first and last spikes own nothing
    for i in range(1, len(bins) - 1):
        a = bins[i - 1] + (bins[i] - bins[i - 1]) // 2
        b = bins[i] + (bins[i + 1] - bins[i]) // 2
        if b > a:
            rate[a:b] = 1.0 / ((b - a) * geo.bin_s)
    K, h = geo.kernel_bins, geo.kernel_half
    if K:
        # boxcar by direct convolution, edges as the mean over the clipped window
        smooth = np.convolve(rate, np.ones(K) / K, mode="same")[:n_bins]
        for j in [*range(min(K, n_bins)), *range(max(0, n_bins - K), n_bins)]:
            smooth[j] = np.mean(rate[max(0, j - h) : min(n_bins, j + h)])
        rate = smooth
    r = rate[bins]
    q = np.quantile(r, np.linspace(0, 1, R + 2)[1:-1])
    last = bins[-1]
    trig = np.zeros(R)
    for b in bins:
        start = b + geo.start_offset
        if start < 0 or start + W >= last + 1 or b >= last:
            continue  # the window must lie inside the recording
        cls = int(np.argmax(q >= rate[b]))
        if cls == 0 and rate[b] > q[0]:
            cls = R - 1
        out[cls] += train[start : start + W]
        trig[cls] += 1
    with np.errstate(divide="ignore", invalid="ignore"):
        acg = np.nan_to_num(out / trig[:, None])
    acg[:, half] = 0.0
    return acg
