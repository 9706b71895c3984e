"""C4-compatible 3D autocorrelogram (npyx 4.3.1 ``crosscorr_vs_firing_rate`` + ``convert_acg_log``).

Split between host and device:

* host (numpy, float64/int64, O(spikes log spikes)): seconds -> samples -> 1 ms bins, the
  inverse-ISI rate smoothed with the 250 ms boxcar (evaluated only at spike bins, from an exact
  integer integral of the piecewise-constant rate), the rate quantiles, each spike's rate bin, and
  the occupied bins with their weights (counted trigger spikes per bin). The rate, its quantiles
  and the rate bins (with the re-evaluation of spikes tied at a threshold) are :mod:`._isi_rate`;
* device (JAX, int32, O(occupied bins x neighbours)): the pair counting, compiled once per
  geometry over calls of several rows (at most ``_ROW_SPIKES`` triggers each) padded to one shape;
* host again: normalisation to P(spike at lag | spike at 0) and the log-lag map (one matrix).

A batch is split over two host threads (``_WORKERS``), each preparing its units and dispatching
its own device calls; results do not depend on the split. The device part (the compiled pair
counter, how rows are packed into calls, the host threads) is :mod:`._pairs`.

JAX runs in its default 32-bit mode: the counts are exact int32, and every float that parity
depends on is computed in numpy float64, so the process-global ``jax_enable_x64`` flag is never
touched.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..errors import FeatureError, InvalidUnitsError
from . import _pairs
from ._geometry import AcgGeometry, acg_geometry, log_geometry
from ._isi_rate import _levels, _quantiles, _rate_bins, _resolve_ties, _smoothed_rate_at
from ._pairs import (  # noqa: F401  (TRACE_COUNT, _WORKERS: read here by tests and benchmarks)
    _WORKERS,
    TRACE_COUNT,
    _bucket,
    _executor,
    _PairCounter,
    _prefetch_kernel,
    _rows_of,
    _schedule,
)
from .config import FeatureConfig

# --------------------------------------------------------------------------------------------
# host part


def spike_times_to_samples(times_s: np.ndarray, sampling_rate_hz: float) -> np.ndarray:
    """Spike times (s) -> sample indices as a phy user of npyx would have them:
    ``round(t * fs)`` as int64 (times written as ``sample / fs`` come back exactly)."""
    return np.round(np.asarray(times_s, dtype=np.float64) * sampling_rate_hz).astype(np.int64)


def _check_times(times_s: np.ndarray, where: str = "spike times") -> np.ndarray:
    t = np.asarray(times_s, dtype=np.float64)
    if t.ndim != 1:
        raise InvalidUnitsError(f"{where}: expected a 1-d array of seconds, got shape {t.shape}.")
    # a finite sum means no NaN/inf (the precise test runs only otherwise)
    bad = np.zeros(0, dtype=bool) if np.isfinite(np.add.reduce(t)) else ~np.isfinite(t)
    if bad.any():
        raise InvalidUnitsError(
            f"{where}: {int(bad.sum())} of {len(t)} spike times are NaN or infinite (first at index "
            f"{int(np.argmax(bad))}); remove them before computing features."
        )
    if len(t) and t.min() < 0:
        raise InvalidUnitsError(
            f"{where}: negative spike time {t.min()} s; the C4 binning needs times >= 0 from the "
            "start of the recording: shift the times."
        )
    return t


@dataclass
class _UnitPrep:
    """Host-side results for one unit: per sorted spike, and per occupied bin ("entry")."""

    n_spikes: int
    bins: np.ndarray  # (n,) int64 sorted spike bins
    rate_hz: np.ndarray  # (n,) float64 smoothed inverse-ISI rate at each spike
    thresholds: np.ndarray  # (R,) float64 rate quantiles
    rate_bin: np.ndarray  # (n,) int64 rate bin of each spike, -1 where the spike is not counted
    triggers: np.ndarray  # (R,) int64 number of counted spikes per rate bin
    ubins: np.ndarray  # (m,) int64 occupied bins (unique spike bins)
    entry_rbin: np.ndarray  # (m,) int64 rate bin of the spikes in each occupied bin (-1: not counted)
    weight: np.ndarray  # (m,) int64 counted trigger spikes in each occupied bin
    coords: np.ndarray  # (m,) int64 compressed coordinates: gaps > half shortened to half + 1


def _prepare_unit(
    times_s: np.ndarray, config: FeatureConfig, geo: AcgGeometry, pool: ThreadPoolExecutor | None = None
) -> _UnitPrep:
    t = times_s if bool((times_s[1:] >= times_s[:-1]).all()) else np.sort(times_s)
    samples = spike_times_to_samples(t, config.sampling_rate_hz)
    bins = samples // geo.samples_per_bin
    n = len(bins)
    R = geo.n_rate_bins
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return _UnitPrep(0, z, np.zeros(0), np.zeros(R), z, np.zeros(R, np.int64), z, z, z, z)
    rate, m, seg_rate = _smoothed_rate_at(bins, geo, pool)
    levels = _levels(R)
    # np.quantile of a sorted copy: the same order statistics, so identical values; the sort is
    # needed anyway (ties below), and the quantiles of sorted data need no partition
    sorted_rate = np.sort(rate)
    thresholds = _quantiles(sorted_rate, levels)
    if geo.kernel_bins:
        rate, thresholds = _resolve_ties(bins, m, seg_rate, rate, sorted_rate, thresholds, levels, geo)
    # trigger spikes whose whole window lies inside [0, last bin) (the reference's edge rule:
    # start = bin + start_offset >= 0, start + n_lags < last + 1, bin < last): for sorted bins,
    # a contiguous range [a, b)
    last = int(bins[-1])
    a = int(np.searchsorted(bins, -geo.start_offset, side="left"))
    b = int(np.searchsorted(bins, min(last, last + 1 - geo.n_lags - geo.start_offset), side="left"))
    b = max(a, b)
    rbin = np.full(n, -1, dtype=np.int64)
    rbin[a:b] = _rate_bins(rate[a:b], thresholds)
    triggers = np.bincount(rbin[a:b], minlength=R).astype(np.int64)
    # occupied bins: spikes sharing a bin share its rate (a function of the bin) and its
    # counted flag, so the device counts each occupied bin once, weighted by its spikes
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.not_equal(bins[1:], bins[:-1], out=new[1:])
    if bool(new.all()):
        ubins, entry_rbin = bins, rbin
        weight = np.zeros(n, dtype=np.int64)
        weight[a:b] = 1
    else:
        first = np.flatnonzero(new)
        ubins, entry_rbin = bins[first], rbin[first]
        weight = np.where(entry_rbin >= 0, np.diff(first, append=n), 0)
    coords = np.empty(len(ubins), np.int64)
    coords[0] = 0
    np.cumsum(np.minimum(np.diff(ubins), geo.half + 1), out=coords[1:])
    return _UnitPrep(n, bins, rate, thresholds, rbin, triggers, ubins, entry_rbin, weight, coords)


# --------------------------------------------------------------------------------------------
# public functions


def _normalise(counts: np.ndarray, triggers: np.ndarray, half: int) -> np.ndarray:
    """counts / triggers (float64 true division), 0 in rows without triggers and at lag 0."""
    t = triggers[..., :, None]
    acg = np.zeros(counts.shape)
    np.divide(counts, t, out=acg, where=t > 0)
    acg[..., half] = 0.0  # lag 0 is always 1 for an ACG: the reference zeroes it
    return acg


def compute_acg_3d_batch(
    spike_trains: list[np.ndarray],
    config: FeatureConfig | None = None,
    *,
    positive_lags_only: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Linear 3D ACGs of several units at once (one device pass over all of them).

    Parameters
    ----------
    spike_trains : list of (n_i,) float64 arrays
        Spike times in seconds (any order; NaN/inf/negative raise :class:`InvalidUnitsError`).
    config : FeatureConfig
    positive_lags_only : bool
        Count only the pairs at lags 0..+half (half the work). The log-lag ACG the model sees
        (:func:`compute_log_acg`) uses only these lags, and they are identical to the same lags of
        the full ACG. The negative half is *not* the mirror image in a 3D ACG (the row is the
        trigger's rate bin, not the neighbour's), so use ``False`` when you need it.

    Returns
    -------
    acg : (n_units, acg_rate_bins, W) float64
        P(spike in lag bin | spike at 0), rows by rate quantile, lags -half..+half bins
        (W = 2001 for C4), or lags 0..+half (W = half + 1 = 1001) with ``positive_lags_only``;
        lag 0 is 0.
    thresholds : (n_units, acg_rate_bins) float64
        Rate (Hz) quantiles at the spike times that cut the rate bins.
    """
    config = FeatureConfig() if config is None else config
    geo = acg_geometry(config)
    checked = [_check_times(t, f"unit {u}") for u, t in enumerate(spike_trains)]
    n_units, R = len(checked), geo.n_rate_bins
    triggers = np.zeros((n_units, R), dtype=np.int64)
    thresholds = np.zeros((n_units, R))
    counts = np.zeros((n_units, R, geo.n_lags if not positive_lags_only else geo.half + 1), np.int64)

    if (
        geo.n_rate_bins,
        geo.half,
        not positive_lags_only,
        *_bucket(0, geo.half),
    ) not in _pairs._KERNELS and any(len(t) > 1 for t in checked):
        threading.Thread(target=_prefetch_kernel, args=(geo, not positive_lags_only), daemon=True).start()
    order, n_threads = _schedule(checked, geo)
    queue = iter(order)
    queue_lock = threading.Lock()

    def work() -> None:
        counter = _PairCounter(counts, geo, positive_lags_only)
        # one thread: the worker pool is idle and can take part of each unit's work
        counter.split_calls = n_threads == 1 and _WORKERS > 1
        pool = _executor() if counter.split_calls else None
        while True:
            with queue_lock:
                u = next(queue, None)
            if u is None:
                break
            p = _prepare_unit(checked[u], config, geo, pool)
            triggers[u], thresholds[u] = p.triggers, p.thresholds
            counter.add(_rows_of(u, p, geo))  # device calls start while later units are prepared
        counter.result()

    futures = [_executor().submit(work) for _ in range(n_threads - 1)]
    try:
        work()
    finally:
        for f in futures:
            f.result()
    acg = _normalise(counts, triggers, 0 if positive_lags_only else geo.half)
    return acg, thresholds


def compute_acg_3d(times_s: np.ndarray, config: FeatureConfig | None = None) -> np.ndarray:
    """Linear 3D autocorrelogram of one unit, as npyx ``crosscorr_vs_firing_rate(t, t, 2000, 1)``.

    Parameters
    ----------
    times_s : (n,) float64
        Spike times in seconds; converted to samples with ``round(t * sampling_rate_hz)``.
    config : FeatureConfig

    Returns
    -------
    (acg_rate_bins, W) float64
        Row ``r``: P(spike at lag | spike at 0, rate in quantile bin r); W = 2001 lags of 1 ms.
    """
    return compute_acg_3d_batch([times_s], config)[0][0]


def compute_log_acg(acg_3d: np.ndarray, config: FeatureConfig | None = None) -> np.ndarray:
    """Log-lag ACG as the C4 model sees it: npyx ``convert_acg_log(acg, 1, 2000)`` x ``acg_scale``,
    lag 0 plus the positive log lags.

    Parameters
    ----------
    acg_3d : (..., R, W) float
        Linear 3D ACG(s) from :func:`compute_acg_3d` (W = n_lags, lags -half..+half) or from
        :func:`compute_acg_3d_batch` with ``positive_lags_only=True`` (W = half + 1, lags
        0..+half). Only lags 1..half are used.

    Returns
    -------
    (..., R, 1 + acg_log_points) float64
        Column 0 is lag 0 (always 0), then lags ``logspace(0, log10(half), acg_log_points)`` ms.
    """
    config = FeatureConfig() if config is None else config
    geo = acg_geometry(config)
    acg_3d = np.asarray(acg_3d, dtype=np.float64)
    if acg_3d.shape[-1] not in (geo.n_lags, geo.half + 1):
        raise FeatureError(
            f"linear ACG has {acg_3d.shape[-1]} lags but this configuration needs {geo.n_lags} "
            f"(lags -{geo.half}..+{geo.half}) or {geo.half + 1} (lags 0..+{geo.half}); compute it "
            "with compute_acg_3d / compute_acg_3d_batch and the same FeatureConfig."
        )
    lg = log_geometry(config)
    n_log = lg.matrix.shape[1]
    # lags 1..half in both layouts, as one contiguous 2-d matrix: a single BLAS product (numpy's
    # matmul on the strided 3-d view took ~40 ms per unit)
    pos = np.ascontiguousarray(acg_3d[..., -geo.half :]).reshape(-1, geo.half)
    out = np.zeros((*acg_3d.shape[:-1], 1 + n_log))
    out[..., 1:] = (pos @ lg.matrix).reshape(*acg_3d.shape[:-1], n_log) * config.acg_scale
    return out
