"""Shape-deciding quantities derived from a :class:`FeatureConfig` (window length, samples per bin,
boxcar width, log-lag map), computed with the same floating-point formulas as npyx 4.3.1 so that
bin edges agree exactly. Pure numpy; cached per configuration."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import FeatureError
from .config import FeatureConfig


@dataclass(frozen=True)
class AcgGeometry:
    """Integer geometry of the linear 3D ACG for one configuration (all Python ints: static)."""

    samples_per_bin: int  # spike sample index -> bin index by floor division
    n_lags: int  # W, odd: lags -half..+half bins
    half: int  # W // 2
    start_offset: int  # first lag of a trigger spike's window, in bins (npyx: ceil(-win/2/bin))
    kernel_bins: int  # boxcar width K in bins (0: no smoothing)
    kernel_half: int  # K // 2
    bin_s: float  # bin size in seconds (for the inverse ISI rate)
    n_rate_bins: int


@lru_cache(maxsize=32)
def acg_geometry(config: FeatureConfig) -> AcgGeometry:
    """Geometry of the linear ACG; raises :class:`FeatureError` for unusable settings."""
    fs = float(config.sampling_rate_hz)
    if not fs > 0:
        raise FeatureError(
            f"sampling_rate_hz must be > 0, got {fs}; set FeatureConfig(sampling_rate_hz=...)."
        )
    bin_ms = float(np.clip(config.acg_bin_ms, 1000.0 / fs, 1e8))
    win_ms = float(np.clip(config.acg_window_ms, 1e-2, 1e8))
    n_lags = 2 * int(0.5 * win_ms * 1.0 / bin_ms) + 1
    time_axis0 = np.linspace(-win_ms / 2, win_ms / 2, num=n_lags)[0]
    start_offset = int(np.ceil(time_axis0 / bin_ms))
    samples_per_bin = int(np.ceil(fs / (1000 / bin_ms)))
    smooth = float(config.acg_smooth_ms)
    if smooth < 0:
        raise FeatureError(f"acg_smooth_ms must be >= 0 (0 disables smoothing), got {smooth}.")
    k = int(np.ceil(smooth / bin_ms)) if smooth > 0 else 0
    if k == 1:
        raise FeatureError(
            f"acg_smooth_ms={smooth} gives a boxcar of 1 bin, for which the reference's edge "
            "correction is undefined (empty mean); use 0 (no smoothing) or >= 2 bins."
        )
    if config.acg_rate_bins < 1:
        raise FeatureError(f"acg_rate_bins must be >= 1, got {config.acg_rate_bins}.")
    return AcgGeometry(
        samples_per_bin=samples_per_bin,
        n_lags=n_lags,
        half=n_lags // 2,
        start_offset=start_offset,
        kernel_bins=k,
        kernel_half=k // 2,
        bin_s=bin_ms / 1000,
        n_rate_bins=int(config.acg_rate_bins),
    )


def _smooth_gaussian_matrix(n: int, sd: int) -> np.ndarray:
    """(n, n) matrix S with ``S @ x`` = npyx's ``smooth(x, 'gaussian', sd)`` along axis 0:
    symmetric padding of n//2, a 9-sigma Gaussian kernel, centred (no shift)."""
    x = np.arange(-4 * sd, 4 * sd + 1)
    # scipy.stats.norm.pdf(x, 0, sd), evaluated as scipy does (bit for bit; no scipy import)
    z = (x - 0) / sd
    kernel = np.exp(-(z**2) / 2.0) / np.sqrt(2 * np.pi) / sd
    kernel = kernel / kernel.sum()
    pad = n // 2
    if len(kernel) >= n + 2 * pad:
        raise FeatureError(
            f"acg_log_smooth_sigma={sd} is too wide for {n} log lags; decrease it or use more points."
        )
    mat = np.zeros((n, n))
    for i in range(n):
        for t, w in zip(x, kernel, strict=True):
            j = i + t
            # 'symmetric' padding reflects including the edge sample: -1 -> 0, n -> n-1
            while j < 0 or j >= n:
                j = -j - 1 if j < 0 else 2 * n - j - 1
            mat[i, j] += w
    return mat


@dataclass(frozen=True)
class LogGeometry:
    """Linear map from the positive-lag half of the linear ACG to the smoothed log-lag ACG."""

    matrix: np.ndarray  # (half, n_log) float64
    log_lags_ms: np.ndarray  # (n_log,)


@lru_cache(maxsize=32)
def log_geometry(config: FeatureConfig) -> LogGeometry:
    """npyx ``convert_acg_log(acg, bin, window)`` as a matrix (interpolation then smoothing)."""
    geo = acg_geometry(config)
    cbin, cwin = config.acg_bin_ms, config.acg_window_ms
    original = np.arange(-cwin // 2, cwin // 2 + cbin, cbin)
    if len(original) != geo.n_lags:
        raise FeatureError(
            f"acg_window_ms={cwin} and acg_bin_ms={cbin} give {geo.n_lags} linear lags but the log "
            f"conversion expects {len(original)}; use a window that is a multiple of 2 bins."
        )
    half_i = len(original) // 2 + 1
    lin = original[half_i:]
    if config.acg_log_points < 2:
        raise FeatureError(f"acg_log_points must be > 1, got {config.acg_log_points}.")
    log_bins = np.logspace(np.log10(lin[0]), np.log10(lin[-1]), config.acg_log_points)
    eye = np.eye(len(lin))
    interp = np.stack([np.interp(log_bins, lin, e) for e in eye])  # (n_lin, n_log)
    keep = log_bins >= 0.8  # npyx's start_log_ms default
    interp = interp[:, keep]
    log_bins = log_bins[keep]
    sd = config.acg_log_smooth_sigma
    if sd:
        if float(sd) != int(sd) or sd < 0:
            raise FeatureError(f"acg_log_smooth_sigma must be a whole number of log bins, got {sd}.")
        smooth = _smooth_gaussian_matrix(len(log_bins), int(sd))
        interp = interp @ smooth.T
    return LogGeometry(matrix=np.ascontiguousarray(interp), log_lags_ms=log_bins)


def fixed_point_shift(n_spikes: int, bin_s: float) -> int:
    """Bits of fraction for the integer inverse-ISI integral: each inter-spike segment carries a
    mass of ~1/bin_s (rate x length), so the running total must stay below 2**62."""
    total = max(n_spikes, 1) * (1.0 / bin_s) * 1.01 + 2.0
    return max(8, min(52, int(math.floor(62 - math.log2(total)))))
