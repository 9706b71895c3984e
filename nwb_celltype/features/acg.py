"""C4-compatible 3D autocorrelogram (npyx 4.3.1 ``crosscorr_vs_firing_rate`` + ``convert_acg_log``).

Split between host and device:

* host (numpy, float64/int64, O(spikes log spikes)): seconds -> samples -> 1 ms bins, the
  inverse-ISI rate smoothed with the 250 ms boxcar (evaluated only at spike bins, from an exact
  integer integral of the piecewise-constant rate), the rate quantiles, each spike's rate bin, and
  the occupied bins with their weights (counted trigger spikes per bin);
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

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import FeatureError, InvalidUnitsError
from . import _pairs
from ._geometry import AcgGeometry, acg_geometry, fixed_point_shift, log_geometry
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

log = logging.getLogger(__name__)

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


class _CountAtMost:
    """``np.searchsorted(m, x, side="right")`` (the number of ``m <= x``) for a sorted int64 array
    ``m`` of values in [0, n_bins) (given as ``m_pad``: ``m`` and a sentinel above every query)
    and queries ``x`` in [0, n_bins], through a table of cells of
    2**g bins (~2 cells per value): ``T[c]`` = number of ``m`` below cell ``c``. ``T[x >> g]`` is
    at most ``occ`` (the most values in one cell) short of the answer, and each step
    ``k += m[k] <= x`` (``m`` padded with a sentinel) advances it by one where it is short and
    leaves it where it is exact (``m`` is sorted). Up to ``_COUNT_STEPS`` steps are taken for
    every query; if a cell holds more values, the queries still short after them (a few %) get a
    binary search. ~1.6x cheaper than numpy's binary search alone, table included."""

    def __init__(self, m_pad: np.ndarray, n_bins: int) -> None:
        # m_pad: m followed by one sentinel larger than any query
        m = m_pad[:-1]
        self.small = len(m) < 2048  # few values: one binary search beats the table's calls
        self.m, self.m_pad = m, m_pad
        if self.small:
            return
        ratio = n_bins // (2 * len(m))
        self.g = max(0, ratio.bit_length() - 1)
        cells = (n_bins >> self.g) + 2
        per_cell = np.bincount(m >> self.g, minlength=cells)
        self.occ = int(per_cell.max())
        self.table = np.zeros(cells + 1, dtype=np.int64)
        np.cumsum(per_cell, out=self.table[1:])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.small:
            return np.searchsorted(self.m, x, side="right")
        k = self.table[x >> self.g]
        for _ in range(min(self.occ, _COUNT_STEPS)):
            k += self.m_pad[k] <= x
        if self.occ > _COUNT_STEPS:
            short = np.flatnonzero(self.m_pad[k] <= x)
            if len(short):
                k[short] = np.searchsorted(self.m, x[short], side="right")
        return k


#: unconditional table steps of :class:`_CountAtMost` before the binary search of the rest
_COUNT_STEPS = 2


def _smoothed_rate_at(
    bins: np.ndarray, geo: AcgGeometry, pool: ThreadPoolExecutor | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxcar-smoothed inverse-ISI rate (Hz) at each (sorted) spike bin, as npyx defines it; also
    the segment boundaries ``m`` and per-segment rates (0 for empty segments), reused by
    :func:`_resolve_ties`. With an idle ``pool``, the two window ends of a large unit are looked up
    on two threads (numpy releases the GIL in ``searchsorted`` and the array arithmetic)."""
    n = len(bins)
    if n < 3:  # npyx's rate loop runs over spikes 1..n-2: no segments, the rate is 0 everywhere
        return np.zeros(n), np.zeros(0, np.int64), np.zeros(0)
    # segment boundaries (n-1,): bins[i] + (bins[i+1] - bins[i]) // 2 of sorted bins, followed by
    # a sentinel above every query (used by _CountAtMost; m itself is the view without it)
    m_pad = np.empty(n, dtype=np.int64)
    m = m_pad[:-1]
    np.subtract(bins[1:], bins[:-1], out=m)
    m >>= 1
    m += bins[:-1]
    m_pad[-1] = np.iinfo(np.int64).max
    d = np.diff(m)  # segment lengths (n-2,)
    rate = np.multiply(d, geo.bin_s)
    with np.errstate(divide="ignore"):
        np.divide(1.0, rate, out=rate)  # the reference's float formula; inf only for empty segments
    if not d.all():
        rate[d == 0] = 0.0
    if geo.kernel_bins == 0:
        k = np.searchsorted(m, bins, side="right") - 1
        inside = (k >= 0) & (k < n - 2)
        return np.where(inside, rate[np.clip(k, 0, n - 3)], 0.0), m, rate
    shift = fixed_point_shift(n, geo.bin_s)
    scale = float(2**shift)
    tmp = np.multiply(rate, scale)
    np.rint(tmp, out=tmp)  # np.round: round half to even
    # padded so that one gather needs no clipping: index kk = number of boundaries <= x, with
    # kk = 0 before the first boundary (rate 0, integral 0) and kk = n - 1 after the last one
    # (rate 0 beyond the last segment, integral = the total); m[kk - 1] is segment kk's start
    r_pad = np.empty(n, dtype=np.int64)
    r_pad[0] = r_pad[-1] = 0
    r_pad[1:-1] = tmp  # (integer-valued floats: the cast is exact)
    # the integral up to x inside segment kk is cum[kk] + (x - m[kk]) * r[kk], stored as the
    # intercept cum[kk] - m[kk] * r[kk] plus x * r[kk] (one gather less per query). int64 array
    # arithmetic wraps modulo 2**64, and the true result fits in int64, so the value is exact
    # even when an intercept's product wraps
    icpt = np.empty(n, dtype=np.int64)
    icpt[:2] = 0
    np.multiply(d, r_pad[1:-1], out=icpt[2:])
    np.cumsum(icpt[2:], out=icpt[2:])
    prod = np.multiply(m, r_pad[1:])
    icpt[1:] -= prod

    n_bins = int(bins[-1]) + 1
    count_le = _CountAtMost(m_pad, n_bins)

    def integral(x: np.ndarray) -> np.ndarray:
        # exact integer integral of the rate over bins [0, x): windows with equal content give
        # bit-identical sums whatever their position (ties stay ties, as in the reference)
        kk = count_le(x)
        out = r_pad[kk]
        out *= x
        out += icpt[kk]
        return out

    kb, kh = geo.kernel_bins, geo.kernel_half
    lo = bins - kh
    hi = lo + kb
    # edge spikes (within kb bins of either end) are a prefix and a suffix of the sorted bins:
    # there the reference takes the mean over the clipped window
    i0 = int(np.searchsorted(bins, kb, side="left"))
    i1 = int(np.searchsorted(bins, n_bins - kb, side="left"))
    for sl in (slice(0, i0), slice(i1, n)):
        lo[sl] = np.maximum(0, bins[sl] - kh)
        hi[sl] = np.minimum(n_bins, bins[sl] + kh)
    if pool is not None and n >= _pairs._PARALLEL_MIN_SPIKES:
        upper = pool.submit(integral, hi)
        lower = integral(lo)
        diff = upper.result()
    else:
        lower = integral(lo)
        diff = integral(hi)
    diff -= lower
    total = diff.astype(np.float64)
    total *= 1.0 / scale  # exact: scale is a power of two (the same as / scale)
    # interior: the reference convolves with a kernel of 1/K; edges: mean over the clipped window
    edges = [total[sl] / np.maximum(hi[sl] - lo[sl], 1) for sl in (slice(0, i0), slice(i1, n))]
    total *= 1.0 / kb
    total[:i0], total[i1:] = edges
    return total, m, rate


def _resolve_ties(
    bins: np.ndarray,
    m: np.ndarray,
    seg_rate: np.ndarray,
    rate: np.ndarray,
    sorted_rate: np.ndarray,
    thresholds: np.ndarray,
    levels: np.ndarray,
    geo: AcgGeometry,
) -> tuple[np.ndarray, np.ndarray]:
    """Recompute, with the reference's own floating-point operations, the rates of the few spikes
    that lie within rounding distance of a quantile threshold.

    Many windows have the same exact rate (e.g. a window spanning whole inter-spike segments sums
    to a multiple of 1/bin), and a quantile often falls inside such a tie group. Which spikes of the
    group land above or below the threshold is then decided by the last bits of the reference's
    floating-point sum (``np.convolve``: a BLAS dot product; edges: ``np.mean``). Those spikes are
    recomputed here with the same numpy operations (the dot product that ``np.convolve`` calls;
    ``np.mean``) on the same dense window, so that their bin matches npyx run with the same
    numpy/BLAS. The work is O(ambiguous spikes x boxcar), usually tiny.
    ``m`` and ``seg_rate`` are the segment boundaries and rates from :func:`_smoothed_rate_at`;
    ``sorted_rate`` is ``np.sort(rate)``: it tells in O(R log n) which thresholds have spikes near
    them at all (often none), and gives the new quantiles by re-sorting only the span of it that
    changes (it is updated in place, like ``rate``).
    """
    n = len(bins)
    if n < 3:
        return rate, thresholds
    shift = fixed_point_shift(n, geo.bin_s)
    # one tolerance for all thresholds (the largest): a superset of the spikes within each
    # threshold's own tolerance, which only recomputes a few more exactly
    tol = 1e-9 * max(1.0, float(np.abs(thresholds).max())) + 2.0 ** (3 - shift)
    # a spike is near if |rate - thr| <= tol for some threshold (the same set as testing the
    # nearest threshold below and above it). Candidate thresholds: those with sorted rates within
    # 2 tol (a superset: rounding of thr +- 2 tol is far below tol)
    r_lo = np.searchsorted(sorted_rate, thresholds - 2 * tol, side="left")
    r_hi = np.searchsorted(sorted_rate, thresholds + 2 * tol, side="right")
    cand = np.flatnonzero(r_hi > r_lo)
    if len(cand) == 0:
        return rate, thresholds
    # the same test on the sorted rates marks the same multiset of values (within the ranges):
    # their positions in sorted_rate, and the thresholds that have any value within tol at all
    gone, near_thr = [], []
    for r in cand:
        a, b = int(r_lo[r]), int(r_hi[r])
        pos = np.flatnonzero(np.abs(sorted_rate[a:b] - thresholds[r]) <= tol)
        if len(pos):
            gone.append(pos + a)
            near_thr.append(thresholds[r])
    if not gone:
        return rate, thresholds
    removed = np.unique(np.concatenate(gone))  # (ranges of close thresholds may overlap)
    # (in place: no temporaries of the unit's size per threshold)
    near = np.zeros(n, dtype=bool)
    dist = np.empty(n)
    close = np.empty(n, dtype=bool)
    for thr in near_thr:
        np.subtract(rate, thr, out=dist)
        np.abs(dist, out=dist)
        np.less_equal(dist, tol, out=close)
        near |= close
    # seg_rate is 0 (not inf) for empty segments, which no bin maps to: the same windows
    kb, kh = geo.kernel_bins, geo.kernel_half
    kernel = np.ones(kb) / kb
    n_bins = int(bins[-1]) + 1
    # (rate is this module's own array: updated in place)
    near_idx = np.flatnonzero(near)
    old_near = rate[near_idx]
    for c in range(0, len(near_idx), 4096):  # chunks: bounded memory (4096 x kb floats)
        idx = near_idx[c : c + 4096]
        x = bins[idx]
        start = x - kh
        # every window as kb dense bins from x - kh; edge windows are cut to
        # [max(0, x - kh), min(n_bins, x + kh)) below, interior ones are [x - kh, x - kh + kb),
        # as in the reference. Segment index of bin start + t: k0 (that of start) plus the
        # boundaries in (start, start + t], placed as +1 steps and summed along the window
        k0 = np.searchsorted(m, start, side="right") - 1
        k1 = np.searchsorted(m, start + (kb - 1), side="right") - 1
        n_steps = k1 - k0
        row = np.repeat(np.arange(len(idx)), n_steps)
        j = np.arange(len(row)) - np.repeat(np.cumsum(n_steps) - n_steps, n_steps) + k0[row] + 1
        steps = np.bincount(row * kb + (m[j] - start[row]), minlength=len(idx) * kb)
        k = k0[:, None] + np.cumsum(steps.reshape(len(idx), kb), axis=1)
        inside = (k >= 0) & (k < n - 2)
        windows = np.where(inside, seg_rate[np.clip(k, 0, n - 3)], 0.0)
        edge = (x < kb) | (x >= n_bins - kb)
        for j, i in enumerate(idx):
            if edge[j]:
                lo = max(0, int(x[j]) - kh) - int(start[j])
                hi = min(n_bins, int(x[j]) + kh) - int(start[j])
                # the reference's clipped window, contiguous: the same np.mean summation
                rate[i] = np.mean(np.ascontiguousarray(windows[j, lo:hi]))
            else:
                # np.convolve(w, kernel, "valid")[0] for len(w) == len(kernel) is numpy's dot of
                # the two contiguous vectors (the same DOUBLE_dot / BLAS ddot call; the kernel's
                # values are all equal, so its reversal changes nothing), without its overhead
                rate[i] = windows[j].dot(kernel)
    new = rate[near_idx]
    if np.array_equal(new, old_near):  # no rate changed: neither did the quantiles
        return rate, thresholds
    return rate, _quantiles(_merge_sorted(sorted_rate, removed, np.sort(new), rate), levels)


def _merge_sorted(sorted_x: np.ndarray, removed: np.ndarray, new: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``np.sort(x)``, where ``x`` is the array sorted in ``sorted_x`` with the values at the sorted
    positions ``removed`` replaced by the sorted values ``new`` (as many). Only the span of
    ``sorted_x`` between the first and last position touched (removed, or where a new value goes)
    changes: it is re-sorted in place in ``sorted_x``, which is returned (usually a few entries;
    a span over more than 1/8 of the array is merged whole, as a stable sort of two sorted runs)."""
    n = len(sorted_x)
    if len(removed) != len(new):  # cannot happen (same test, same values); a safe fallback
        return np.sort(x)
    ins = np.searchsorted(sorted_x, new, side="left")
    lo = min(int(removed[0]), int(ins[0]))
    hi = max(int(removed[-1]) + 1, int(ins[-1]))
    if hi - lo > max(4096, n >> 3):
        keep = np.ones(n, dtype=bool)
        keep[removed] = False
        return np.sort(np.concatenate([sorted_x[keep], new]), kind="stable")
    keep = np.ones(hi - lo, dtype=bool)
    # every value before lo is below every new value, every value from hi on is at least as
    # large (searchsorted "left"), and none of them is removed: only [lo, hi) changes
    keep[removed - lo] = False
    sorted_x[lo:hi] = np.sort(np.concatenate([sorted_x[lo:hi][keep], new]), kind="stable")
    return sorted_x


def _np_quantiles_of_sorted(sorted_x: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """``np.quantile(sorted_x, levels)`` (method "linear") of an already sorted array, without
    numpy's partition pass (which costs about as much as the sort): the same virtual indices,
    order statistics and monotone lerp as numpy >= 1.22. Checked against ``np.quantile`` once per
    process (:func:`_quantiles`); tests compare the two on many arrays."""
    n = len(sorted_x)
    v = (n - 1) * levels
    prev = np.floor(v)
    nxt = prev + 1
    above = v >= n - 1
    prev[above] = -1
    nxt[above] = -1
    below = v < 0
    prev[below] = 0
    nxt[below] = 0
    prev, nxt = prev.astype(np.intp), nxt.astype(np.intp)
    a, b = sorted_x[prev], sorted_x[nxt]
    gamma = v - prev
    diff = b - a
    out = a + diff * gamma
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return out


_QUANTILE_FAST: list[bool] = []


def _quantiles(sorted_x: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """``np.quantile(sorted_x, levels)`` of a sorted float64 array: the fast path if it agrees
    bit for bit with this numpy's ``np.quantile`` (checked once), else ``np.quantile`` itself."""
    if not _QUANTILE_FAST:
        rng = np.random.default_rng(0)
        ok = True
        for n in (1, 2, 3, 7, 10, 11, 100, 1001, 4097):
            for x in (rng.random(n) * 50, np.round(rng.random(n) * 4), np.full(n, 3.7)):
                xs = np.sort(x)
                for lv in (levels, np.linspace(0, 1, 12)[1:-1], np.linspace(0, 1, 7)):
                    ok &= np.array_equal(_np_quantiles_of_sorted(xs, lv), np.quantile(xs, lv))
        _QUANTILE_FAST.append(bool(ok))
        if not ok:
            log.debug("numpy's quantile differs from the sorted fast path: using np.quantile")
    if _QUANTILE_FAST[0]:
        return _np_quantiles_of_sorted(sorted_x, levels)
    return np.quantile(sorted_x, levels)


@lru_cache(maxsize=16)
def _levels(n_rate_bins: int) -> np.ndarray:
    """The quantile levels of the rate bins (the reference's ``linspace(0, 1, R + 2)[1:-1]``)."""
    levels = np.linspace(0, 1, n_rate_bins + 2)[1:-1]
    levels.flags.writeable = False
    return levels


def _rate_bins(rate: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``searchsorted(thresholds, rate, side="left")``, top bin folded into R - 1: the number of
    thresholds strictly below each rate, by R vectorised comparisons (~10x cheaper than numpy's
    per-element binary search for the 10 C4 thresholds)."""
    R = len(thresholds)
    # (few rates: one call is cheaper than R comparisons)
    if R > 64 or len(rate) < 2048 or bool((thresholds[1:] < thresholds[:-1]).any()):
        rbin = np.searchsorted(thresholds, rate, side="left")
    else:
        # the last threshold is not compared: a rate above it lands in the top bin R - 1 anyway
        acc = np.zeros(len(rate), np.int8)
        above = np.empty(len(rate), dtype=bool)
        for thr in thresholds[:-1]:
            np.greater(rate, thr, out=above)
            acc += above.view(np.int8)  # (int8 + int8: no casting loop)
        return acc.astype(np.int64)
    rbin[rbin == R] = R - 1
    return rbin


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
