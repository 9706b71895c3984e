"""The fitted discharge model in closed form: the ISI density and the autocorrelogram that the
simulator's spike trains have, computed without drawing spikes (used to fit the model to real
tables and to check the simulator against it).

A unit's intervals are a mixture: with probability ``w_b`` a short interval (gamma, shape 2, mean
``m_b``: bursts, spikelets, double detections), otherwise a long interval = a refractory time
(gamma, shape ``k_d``, mean ``d``) plus a gamma interval (shape ``k``, mean ``mu``) whose time
scale follows the unit's slow rate fluctuations (log-normal gain of sd ``sigma``). Within a window
of 100 ms the gain is constant, so the ISI histogram and the ACG are spike-weighted mixtures over
gain levels of renewal-process densities; a renewal process's ACG density solves
``A = f + f * A``, done here with exponentially tilted FFTs (exact up to ~1e-12)."""

from __future__ import annotations

import numpy as np
from scipy.special import gammainc

#: Order of the discharge parameters in the shipped parameter file.
DISCHARGE_FIELDS: tuple[str, ...] = ("w_b", "m_b_ms", "d_ms", "k_d", "k", "mu_ms", "sigma")
#: Shape of the short-interval gamma component.
BURST_SHAPE = 2.0

_DT_MS = 0.2
_N = 1024  # grid 0 .. 204.8 ms (the ACG to 100 ms needs f to 100 ms only)
_TILT = 40.0 / (_N * _DT_MS)  # per ms
# grid point j carries the probability of [j - 0.5, j + 0.5) * dt: sums of points are exact in mean
_EDGES = np.maximum(np.arange(_N + 1) - 0.5, 0.0) * _DT_MS
_WEIGHT = np.exp(-_TILT * np.arange(_N) * _DT_MS)
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(5)
_GH_W = _GH_W / _GH_W.sum()


def _gamma_bins(shape: float, mean_ms: np.ndarray) -> np.ndarray:
    """Probability of each 0.1 ms grid bin under gamma(shape, mean) for each mean: (levels, N)."""
    scale = np.asarray(mean_ms, dtype=np.float64)[:, None] / shape
    cdf = gammainc(shape, _EDGES[None, :] / scale)
    return np.diff(cdf, axis=1)


def model_densities(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ISI probability and ACG pair density on the 0.2 ms grid, spike-weighted over gain levels.

    Parameters
    ----------
    p : (7,) float
        ``DISCHARGE_FIELDS`` values.

    Returns
    -------
    isi : (1024,) float64
        Probability that an interval falls in each 0.2 ms bin from 0 ms.
    acg : (1024,) float64
        Expected number of later spikes in each 0.2 ms bin after a spike.
    """
    w_b, m_b, d, k_d, k, mu, sigma = (float(x) for x in p)
    gain = np.exp(sigma * _GH_X - 0.5 * sigma * sigma)
    burst = _gamma_bins(BURST_SHAPE, np.array([m_b]))[0]
    refr = _gamma_bins(k_d, np.array([d]))[0]
    main = _gamma_bins(k, mu / gain)  # (levels, N)
    fr = np.fft.rfft(refr * _WEIGHT, 2 * _N)
    fm = np.fft.rfft(main * _WEIGHT[None], 2 * _N, axis=1)
    fb = np.fft.rfft(burst * _WEIGHT, 2 * _N)
    f_hat = w_b * fb[None] + (1 - w_b) * fr[None] * fm
    a_hat = f_hat / (1.0 - f_hat)
    untilt = 1.0 / _WEIGHT
    isi = np.fft.irfft(f_hat, 2 * _N, axis=1)[:, :_N] * untilt[None]
    acg = np.fft.irfft(a_hat, 2 * _N, axis=1)[:, :_N] * untilt[None]
    mean_isi = w_b * m_b + (1 - w_b) * (d + mu / gain)
    wt = _GH_W / mean_isi
    wt = wt / wt.sum()
    return wt @ isi, wt @ acg


def model_tables(p: np.ndarray, n_bins: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Expected ISI histogram (bins [k, k+1) ms, k = 0..n_bins-1) and ACG (lags 1..n_bins ms,
    bins [k-0.5, k+0.5) ms) per spike of the model with parameters ``p`` (``DISCHARGE_FIELDS``)."""
    isi, acg = model_densities(p)
    per = int(round(1.0 / _DT_MS))
    # grid point j covers [j - 0.5, j + 0.5) * dt: the points on a bin edge count half on each side
    pts = isi[: n_bins * per + 1]
    isi_k = pts[:-1].reshape(n_bins, per).sum(1) - 0.5 * pts[:-1:per] + 0.5 * pts[per::per]
    isi_k[0] += 0.5 * pts[0]  # nothing lies below 0
    start = per - per // 2  # with an odd number of points per ms, lag k = points 5k-2 .. 5k+2 exactly
    a = acg[start : start + n_bins * per].reshape(n_bins, per).sum(1)
    return isi_k, a


def model_rate_hz(p: np.ndarray) -> float:
    """Mean firing rate (Hz) of the model with parameters ``p``, over gain levels in time."""
    w_b, m_b, d, _k_d, _k, mu, sigma = (float(x) for x in p)
    gain = np.exp(sigma * _GH_X - 0.5 * sigma * sigma)
    mean_isi = w_b * m_b + (1 - w_b) * (d + mu / gain)
    return float(1000.0 * (_GH_W / mean_isi).sum())


def mu_for_rate(p: np.ndarray, rate_hz: float) -> float:
    """The ``mu_ms`` that gives the model the mean rate ``rate_hz`` (other parameters kept), by
    bisection on the monotone rate(mu); clipped to [0.2 ms, 60 s]."""
    q = np.array(p, dtype=np.float64)
    lo, hi = np.log(0.2), np.log(60000.0)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        q[5] = np.exp(mid)
        if model_rate_hz(q) > rate_hz:
            lo = mid
        else:
            hi = mid
    return float(np.exp(0.5 * (lo + hi)))
