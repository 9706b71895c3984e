"""Vectorised spike-train generators (pure numpy): modulated gamma renewal processes with dead
time, burst processes, the complex-spike pause of simple spikes, and recording defects."""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from ..errors import InvalidValueError

__all__ = [
    "add_refractory_violations",
    "mixture_train",
    "apply_amplitude_cutoff",
    "apply_cs_pause",
    "burst_train",
    "gamma_train",
    "log_rate_process",
]


def _check_positive(name: str, value: float) -> None:
    if not np.isfinite(value) or value <= 0:
        raise InvalidValueError(f"{name} must be a positive finite number, got {value!r}.")


def log_rate_process(
    rng: np.random.Generator, duration_s: float, sd: float, tau_s: float, grid_s: float = 0.05
) -> np.ndarray:
    """Slow log-rate fluctuations: a stationary Ornstein-Uhlenbeck process on a regular grid.

    Parameters
    ----------
    rng : numpy.random.Generator
    duration_s : float
        Length of the process in seconds.
    sd, tau_s : float
        Stationary standard deviation (natural-log units) and time constant (s).
    grid_s : float
        Grid step in seconds.

    Returns
    -------
    (n,) float64
        Multiplicative gain ``exp(x - sd**2 / 2)`` (mean 1) on the grid ``0, grid_s, ...``.
    """
    n = int(np.ceil(duration_s / grid_s)) + 2
    if sd <= 0:
        return np.ones(n)
    a = np.exp(-grid_s / tau_s)
    white = rng.standard_normal(n)
    # start in the stationary distribution so that no burn-in is needed
    x = lfilter([np.sqrt(1 - a * a)], [1.0, -a], white[1:], zi=[a * white[0]])[0]
    x = np.concatenate([[white[0]], x]) * sd
    return np.exp(x - 0.5 * sd * sd)


def _unit_gamma(rng: np.random.Generator, shape: float, n: int) -> np.ndarray:
    """``n`` gamma variates of mean 1 (float32 draws: twice as fast, ample precision for ISIs)."""
    if shape == 1.0:
        x = rng.standard_exponential(size=n, dtype=np.float32)
    else:
        x = rng.standard_gamma(shape, size=n, dtype=np.float32)
        x *= np.float32(1.0 / shape)
    return x


def gamma_train(
    rng: np.random.Generator,
    rate_hz: float,
    duration_s: float,
    *,
    shape: float = 1.0,
    dead_time_s: float = 0.0,
    log_rate_sd: float = 0.0,
    log_rate_tau_s: float = 1.0,
) -> np.ndarray:
    """Spike times of a gamma renewal process with dead time and slow rate fluctuations.

    The free process is a gamma renewal process of shape ``shape`` in operational time, whose
    intensity is modulated by :func:`log_rate_process` (time rescaling); every spike then adds an
    absolute dead time ``dead_time_s``. The free rate is chosen so that the mean rate is
    ``rate_hz``.

    Returns
    -------
    (k,) float64
        Sorted spike times in seconds in ``[0, duration_s)``.
    """
    _check_positive("rate_hz", rate_hz)
    _check_positive("duration_s", duration_s)
    _check_positive("shape", shape)
    if rate_hz * dead_time_s >= 0.9:
        raise InvalidValueError(
            f"rate {rate_hz} Hz is impossible with a dead time of {dead_time_s * 1e3:.2f} ms "
            "(rate x dead time must stay below 0.9); lower one of them."
        )
    free = rate_hz / (1.0 - rate_hz * dead_time_s)
    # a grid of a quarter of the time constant resolves the fluctuations; linear interpolation
    # between grid points keeps the intensity continuous
    grid_s = float(np.clip(log_rate_tau_s / 4.0, 0.02, 0.5))
    gain = log_rate_process(rng, duration_s, log_rate_sd, log_rate_tau_s, grid_s)
    ugrid = np.arange(len(gain)) * grid_s
    cum = np.concatenate([[0.0], np.cumsum(gain[:-1] * free * grid_s)])  # operational time
    total = cum[-1]
    n = int(total + 6 * np.sqrt(total + 1) + 10)
    isi = _unit_gamma(rng, shape, n)
    s = np.cumsum(isi, dtype=np.float64)
    s -= rng.uniform() * float(isi[0])  # random phase: stationary start
    while s[-1] < total:  # rare: extend
        more = np.cumsum(_unit_gamma(rng, shape, n // 4 + 10), dtype=np.float64) + s[-1]
        s = np.concatenate([s, more])
    s = s[: np.searchsorted(s, total)]
    t = np.interp(s, cum, ugrid) if log_rate_sd > 0 else s / free
    if dead_time_s > 0:
        t += dead_time_s * np.arange(len(t))
    return t[: np.searchsorted(t, duration_s)]


def mixture_train(
    rng: np.random.Generator,
    params: np.ndarray,
    duration_s: float,
    *,
    log_rate_tau_s: float = 1.0,
) -> np.ndarray:
    """Spike times of the fitted discharge model (``_model.py``; parameters ``DISCHARGE_FIELDS``).

    Each interval is, with probability ``w_b``, short (gamma of shape 2 and mean ``m_b_ms``: a
    burst, a spikelet, a double detection), otherwise a refractory time (gamma, shape ``k_d``,
    mean ``d_ms``) plus a gamma interval (shape ``k``, mean ``mu_ms``) counted in an operational
    time whose speed is a log-normal Ornstein-Uhlenbeck gain (sd ``sigma``, time constant
    ``log_rate_tau_s``; time rescaling as in :func:`gamma_train`). Short and refractory parts are
    fixed in real time: slow rate changes stretch only the free part of the long intervals.

    Returns
    -------
    (k,) float64
        Sorted spike times in seconds in ``[0, duration_s)``.
    """
    _check_positive("duration_s", duration_s)
    w_b, m_b, d, k_d, k, mu, sigma = (float(x) for x in params)
    for name, v in (("m_b_ms", m_b), ("d_ms", d), ("k_d", k_d), ("k", k), ("mu_ms", mu)):
        _check_positive(name, v)
    if not 0.0 <= w_b < 1.0 or not np.isfinite(sigma) or sigma < 0:
        raise InvalidValueError(f"w_b must lie in [0, 1) and sigma be >= 0, got {w_b!r}, {sigma!r}.")
    mean_s = (w_b * m_b + (1 - w_b) * (d + mu)) * 1e-3
    grid_s = float(np.clip(log_rate_tau_s / 4.0, 0.02, 0.5))
    gain = log_rate_process(rng, duration_s, sigma, log_rate_tau_s, grid_s)
    ugrid = np.arange(len(gain)) * grid_s
    cum = np.concatenate([[0.0], np.cumsum(gain[:-1] * grid_s)])  # operational time (s)
    n = int(duration_s / mean_s * 1.15 + 6 * np.sqrt(duration_s / mean_s + 1) + 10)
    fixed_parts, free_parts = [], []
    total_fixed = total_free = 0.0
    while True:
        # float32 draws (twice as fast; ample precision for intervals), only as many as needed
        short = rng.random(n, dtype=np.float32) < w_b if w_b > 0 else np.zeros(n, dtype=bool)
        n_short = int(short.sum())
        fixed = _unit_gamma(rng, k_d, n) * np.float32(d * 1e-3)
        free = _unit_gamma(rng, k, n) * np.float32(mu * 1e-3)
        if n_short:
            fixed[short] = _unit_gamma(rng, 2.0, n_short) * np.float32(m_b * 1e-3)
            free[short] = 0.0
        fixed_parts.append(fixed)
        free_parts.append(free)
        total_fixed += float(fixed.sum())
        total_free += float(free.sum())
        # enough once the last spike's real time passes the end (or the clock runs out)
        if total_free >= cum[-1] or float(np.interp(total_free, cum, ugrid)) + total_fixed >= duration_s:
            break
        n = max(n // 4, 100)
    fixed = np.concatenate(fixed_parts)
    s = np.cumsum(np.concatenate(free_parts), dtype=np.float64)
    s = s[: np.searchsorted(s, cum[-1])]
    t = np.interp(s, cum, ugrid) + np.cumsum(fixed[: len(s)], dtype=np.float64)
    t -= rng.uniform() * mean_s  # random phase: stationary start
    t = t[t >= 0]
    return t[: np.searchsorted(t, duration_s)]


def burst_train(
    rng: np.random.Generator,
    rate_hz: float,
    duration_s: float,
    *,
    mean_burst_size: float,
    intra_isi_s: float,
    shape: float = 1.0,
    dead_time_s: float = 0.0008,
    log_rate_sd: float = 0.0,
    log_rate_tau_s: float = 1.0,
) -> np.ndarray:
    """Spike times of a burst process: burst onsets from :func:`gamma_train`, each followed by a
    geometric number of spikes (mean ``mean_burst_size``) at gamma-distributed intra-burst ISIs
    (mean ``intra_isi_s``, shape 6). The overall mean rate is ``rate_hz``.

    Returns
    -------
    (k,) float64
        Sorted spike times (s); no two spikes closer than ``dead_time_s``.
    """
    _check_positive("mean_burst_size", mean_burst_size)
    _check_positive("intra_isi_s", intra_isi_s)
    mean_burst_size = max(mean_burst_size, 1.0)
    onset_rate = rate_hz / mean_burst_size
    onsets = gamma_train(
        rng,
        onset_rate,
        duration_s,
        shape=shape,
        dead_time_s=min(intra_isi_s * mean_burst_size, 0.5 / onset_rate),
        log_rate_sd=log_rate_sd,
        log_rate_tau_s=log_rate_tau_s,
    )
    sizes = rng.geometric(1.0 / mean_burst_size, size=len(onsets))
    total = int(sizes.sum())
    if total == 0:
        return onsets
    isi = rng.gamma(6.0, intra_isi_s / 6.0, size=total)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    isi[first] = 0.0  # the first spike of a burst sits at the onset
    cs = np.cumsum(isi)
    within = cs - np.repeat(cs[first], sizes)
    t = np.repeat(onsets, sizes) + within
    t.sort()
    t = _enforce_dead_time(t, dead_time_s)
    return t[t < duration_s]


def _enforce_dead_time(t: np.ndarray, dead_time_s: float) -> np.ndarray:
    """Drop spikes closer than ``dead_time_s`` to their predecessor (one vectorised pass)."""
    if len(t) < 2 or dead_time_s <= 0:
        return t
    keep = np.concatenate([[True], np.diff(t) >= dead_time_s])
    return t[keep]


def apply_cs_pause(
    ss_times: np.ndarray,
    cs_times: np.ndarray,
    pause_s: float,
    *,
    rng: np.random.Generator | None = None,
    jitter_s: float = 0.002,
) -> np.ndarray:
    """Remove simple spikes that fall in the pause after each complex spike of the same cell.

    Each complex spike at ``c`` silences simple spikes in ``[c - 0.5 ms, c + pause)``, the pause
    length varying from event to event (uniform +- ``jitter_s``) when ``rng`` is given.

    Returns
    -------
    (k,) float64
        The kept simple-spike times (sorted).
    """
    if len(cs_times) == 0 or len(ss_times) == 0:
        return ss_times
    ends = cs_times + pause_s
    if rng is not None and jitter_s > 0:
        ends = ends + rng.uniform(-jitter_s, jitter_s, size=len(cs_times))
    starts = cs_times - 0.0005
    i0 = np.searchsorted(ss_times, starts, side="left")
    i1 = np.searchsorted(ss_times, ends, side="left")
    mark = np.zeros(len(ss_times) + 1, dtype=np.int64)
    np.add.at(mark, i0, 1)
    np.add.at(mark, i1, -1)
    return ss_times[np.cumsum(mark[:-1]) == 0]


def add_refractory_violations(
    rng: np.random.Generator, t: np.ndarray, fraction: float, *, max_lag_s: float = 0.0015
) -> np.ndarray:
    """Insert spikes 0.1 ms to ``max_lag_s`` after a random ``fraction`` of spikes (as made by
    contamination from a neighbouring unit or a split/merge error)."""
    k = int(round(fraction * len(t)))
    if k == 0:
        return t
    src = rng.choice(len(t), size=k, replace=False)
    extra = t[src] + rng.uniform(0.0001, max_lag_s, size=k)
    out = np.concatenate([t, extra])
    out.sort()
    return out


def apply_amplitude_cutoff(
    rng: np.random.Generator,
    t: np.ndarray,
    duration_s: float,
    *,
    drift: float,
    threshold: float = 0.6,
    spread: float = 0.12,
) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude drift: the unit's amplitude changes linearly by ``drift`` (relative) over the
    session, spike amplitudes scatter by ``spread``; spikes below ``threshold`` (relative to the
    initial amplitude) are missed by the sorter, as happens when a unit drifts away.

    Returns
    -------
    times : (k,) float64
        The detected spikes.
    amplitudes : (k,) float64
        Their relative amplitudes.
    """
    amp = 1.0 + drift * (t / duration_s)
    amp = amp * (1.0 + spread * rng.standard_normal(len(t)))
    keep = amp >= threshold
    return t[keep], amp[keep]
