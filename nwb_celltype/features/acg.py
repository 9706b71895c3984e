"""C4-compatible 3D autocorrelogram (npyx 4.3.1 ``crosscorr_vs_firing_rate`` + ``convert_acg_log``).

Split between host and device:

* host (numpy, float64/int64, O(spikes)): seconds -> samples -> 1 ms bins, the inverse-ISI rate
  smoothed with the 250 ms boxcar (evaluated only at spike bins, from an exact integer integral of
  the piecewise-constant rate), the rate quantiles, each spike's rate bin and its neighbour counts;
* device (JAX, int32, O(spikes x neighbours)): the pair counting that is ~all of the work, jitted
  and vmapped over rows of at most ``_ROW_SPIKES`` spikes padded to power-of-two buckets;
* host again: normalisation to P(spike at lag | spike at 0) and the log-lag map (one matrix).

JAX runs in its default 32-bit mode: the counts are exact int32, and every float that parity
depends on is computed in numpy float64, so the process-global ``jax_enable_x64`` flag is never
touched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import FeatureError, InvalidUnitsError
from ._geometry import AcgGeometry, acg_geometry, fixed_point_shift, log_geometry
from .config import FeatureConfig

log = logging.getLogger(__name__)

#: most trigger spikes in one device row (a unit with more is split into rows: bounded memory)
_ROW_SPIKES = 1 << 15
#: most (spike, neighbour) pairs in one device row
_ROW_PAIRS = 1 << 22
#: most trigger spikes in one device call: bounds a call's memory
_CALL_SPIKES = 1 << 17

#: number of times the jitted kernel was traced (Python side effect at trace time; tests read it)
TRACE_COUNT = {"pairs": 0}


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
    bad = ~np.isfinite(t)
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
    """Host-side results for one unit (all arrays over its sorted spikes)."""

    n_spikes: int
    bins: np.ndarray  # (n,) int64 sorted spike bins
    rate_hz: np.ndarray  # (n,) float64 smoothed inverse-ISI rate at each spike
    thresholds: np.ndarray  # (R,) float64 rate quantiles
    rate_bin: np.ndarray  # (n,) int64 rate bin of each spike, -1 where the spike is not counted
    triggers: np.ndarray  # (R,) int64 number of counted spikes per rate bin
    ubins: np.ndarray  # (u,) int64 unique occupied bins
    pos: np.ndarray  # (n,) index of each spike's bin in ubins
    n_before: np.ndarray  # (n,) occupied bins in [bin - half, bin) (0 if not counted)
    n_after: np.ndarray  # (n,) occupied bins in (bin, bin + half]


def _smoothed_rate_at(bins: np.ndarray, geo: AcgGeometry) -> np.ndarray:
    """Boxcar-smoothed inverse-ISI rate (Hz) at each (sorted) spike bin, as npyx defines it."""
    n = len(bins)
    if n < 3:  # npyx's rate loop runs over spikes 1..n-2: no segments, the rate is 0 everywhere
        return np.zeros(n)
    m = bins[:-1] + (bins[1:] - bins[:-1]) // 2  # segment boundaries (n-1,)
    d = np.diff(m)  # segment lengths (n-2,)
    with np.errstate(divide="ignore"):
        rate = 1.0 / (d * geo.bin_s)  # the reference's float formula; inf only for empty segments
    rate[d == 0] = 0.0
    if geo.kernel_bins == 0:
        k = np.searchsorted(m, bins, side="right") - 1
        inside = (k >= 0) & (k < n - 2)
        return np.where(inside, rate[np.clip(k, 0, n - 3)], 0.0)
    shift = fixed_point_shift(n, geo.bin_s)
    scale = float(2**shift)
    r_int = np.round(rate * scale).astype(np.int64)
    # padded so that one gather needs no clipping: index kk = number of boundaries <= x, with
    # kk = 0 before the first boundary (rate 0, integral 0) and kk = n - 1 after the last one
    # (rate 0 beyond the last segment, integral = the total)
    m_pad = np.empty(n, dtype=np.int64)
    m_pad[0] = 0
    m_pad[1:] = m
    r_pad = np.zeros(n, dtype=np.int64)
    r_pad[1:-1] = r_int
    cum_pad = np.zeros(n, dtype=np.int64)
    np.cumsum(d * r_int, out=cum_pad[2:])

    def integral(x: np.ndarray) -> np.ndarray:
        # exact integer integral of the rate over bins [0, x): windows with equal content give
        # bit-identical sums whatever their position (ties stay ties, as in the reference)
        kk = np.searchsorted(m, x, side="right")
        return cum_pad[kk] + (x - m_pad[kk]) * r_pad[kk]

    n_bins = int(bins[-1]) + 1
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
    total = (integral(hi) - integral(lo)).astype(np.float64) / scale
    # interior: the reference convolves with a kernel of 1/K; edges: mean over the clipped window
    out = total * (1.0 / kb)
    for sl in (slice(0, i0), slice(i1, n)):
        out[sl] = total[sl] / np.maximum(hi[sl] - lo[sl], 1)
    return out


def _resolve_ties(
    bins: np.ndarray, rate: np.ndarray, thresholds: np.ndarray, levels: np.ndarray, geo: AcgGeometry
) -> tuple[np.ndarray, np.ndarray]:
    """Recompute, with the reference's own floating-point operations, the rates of the few spikes
    that lie within rounding distance of a quantile threshold.

    Many windows have the same exact rate (e.g. a window spanning whole inter-spike segments sums
    to a multiple of 1/bin), and a quantile often falls inside such a tie group. Which spikes of the
    group land above or below the threshold is then decided by the last bits of the reference's
    floating-point sum (``np.convolve``: a BLAS dot product; edges: ``np.mean``). Those spikes are
    recomputed here with the same numpy calls on the same dense window, so that their bin matches
    npyx run with the same numpy/BLAS. The work is O(ambiguous spikes x boxcar), usually tiny.
    """
    n = len(bins)
    if n < 3:
        return rate, thresholds
    shift = fixed_point_shift(n, geo.bin_s)
    # one tolerance for all thresholds (the largest): a superset of the spikes within each
    # threshold's own tolerance, which only recomputes a few more exactly
    tol = 1e-9 * max(1.0, float(np.abs(thresholds).max())) + 2.0 ** (3 - shift)
    # the nearest thresholds below and above each rate (thresholds are sorted): O(n log R)
    j = np.searchsorted(thresholds, rate)
    R = len(thresholds)
    near = (np.abs(rate - thresholds[np.minimum(j, R - 1)]) <= tol) | (
        np.abs(rate - thresholds[np.maximum(j - 1, 0)]) <= tol
    )
    if not near.any():
        return rate, thresholds
    m = bins[:-1] + (bins[1:] - bins[:-1]) // 2
    d = np.diff(m)
    with np.errstate(divide="ignore"):
        seg_rate = 1.0 / (d * geo.bin_s)
    kb, kh = geo.kernel_bins, geo.kernel_half
    kernel = np.ones(kb) / kb
    n_bins = int(bins[-1]) + 1
    rate = rate.copy()
    near_idx = np.flatnonzero(near)
    for c in range(0, len(near_idx), 4096):  # chunks: bounded memory (4096 x kb floats)
        idx = near_idx[c : c + 4096]
        x = bins[idx]
        start = x - kh
        # every window as kb dense bins from x - kh (one vectorised searchsorted); edge windows
        # are cut to [max(0, x - kh), min(n_bins, x + kh)) below, interior ones are
        # [x - kh, x - kh + kb), as in the reference
        k = np.searchsorted(m, start[:, None] + np.arange(kb), side="right") - 1
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
                rate[i] = np.convolve(windows[j], kernel, mode="valid")[0]
    return rate, np.quantile(np.sort(rate), levels)


def _prepare_unit(
    times_s: np.ndarray, config: FeatureConfig, geo: AcgGeometry, positive_only: bool = False
) -> _UnitPrep:
    t = times_s if bool((times_s[1:] >= times_s[:-1]).all()) else np.sort(times_s)
    samples = spike_times_to_samples(t, config.sampling_rate_hz)
    bins = samples // geo.samples_per_bin
    n = len(bins)
    R = geo.n_rate_bins
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return _UnitPrep(0, z, np.zeros(0), np.zeros(R), z, np.zeros(R, np.int64), z, z, z, z)
    rate = _smoothed_rate_at(bins, geo)
    levels = np.linspace(0, 1, R + 2)[1:-1]
    # np.quantile of a sorted copy: the same order statistics, so identical values; sort +
    # partition of sorted data measured ~2x faster than partitioning the unsorted rates
    thresholds = np.quantile(np.sort(rate), levels)
    if geo.kernel_bins:
        rate, thresholds = _resolve_ties(bins, rate, thresholds, levels, geo)
    rbin = np.searchsorted(thresholds, rate, side="left")
    rbin[rbin == R] = R - 1
    # trigger spikes whose whole window lies inside [0, last bin) (the reference's edge rule)
    last = bins[-1]
    start = bins + geo.start_offset
    counted = (start >= 0) & (start + geo.n_lags < last + 1) & (bins < last)
    rbin = np.where(counted, rbin, -1)
    triggers = np.bincount(rbin[counted], minlength=R).astype(np.int64)
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.not_equal(bins[1:], bins[:-1], out=new[1:])
    ubins = bins[new]
    pos = np.cumsum(new) - 1
    n_after = np.searchsorted(ubins, bins + geo.half, side="right") - pos - 1
    n_after = np.where(counted, n_after, 0)
    if positive_only:  # no pair at a negative lag is counted
        n_before = np.zeros_like(n_after)
    else:
        n_before = pos - np.searchsorted(ubins, bins - geo.half, side="left")
        n_before = np.where(counted, n_before, 0)
    return _UnitPrep(n, bins, rate, thresholds, rbin, triggers, ubins, pos, n_before, n_after)


# --------------------------------------------------------------------------------------------
# device part (JAX)


def _next_pow2(x: int, minimum: int = 16) -> int:
    return max(minimum, 1 << max(0, int(x) - 1).bit_length())


_KERNELS: dict = {}
#: trigger spikes per block of the device loop; blocks hold spikes with similar neighbour counts
_BLOCK = 8192


def _pairs_kernel(n_rate_bins: int, row_width: int, both: bool):
    """The jitted pair counter for one (rate bins, row width, direction) geometry, built once per
    process.

    Input: the trigger spikes of several rows, sorted by their neighbour count (descending) and
    cut into blocks of ``_BLOCK``. For neighbour offset k = 1, 2, ... up to the block's largest
    count, every spike looks at the k-th occupied bin after (and, if ``both``, before) its own
    (``ubins[pos +- k]``) while that bin is within the window and increments its (row, rate bin,
    lag) cell: one flat scatter-add per offset. Sorting keeps the padding waste of the offset loop
    small; the work is O(spikes x neighbours).

    Pairs outside the window go to one extra "drop" cell at the end of the histogram, so every
    index is in bounds and the scatter is compiled with ``mode="promise_in_bounds"``: on XLA:CPU
    this is ~10x faster per element than the bounds-checked ``mode="drop"``.
    """
    key = (n_rate_bins, row_width, both)
    if key in _KERNELS:
        return _KERNELS[key]
    import jax
    import jax.numpy as jnp
    from jax import lax

    size = n_rate_bins * row_width

    def spike_cells(k, base, pos, n_before, n_after, ubins, drop):
        """Cells hit by one spike at neighbour offset ``k`` (``drop`` where none): (2,) or (1,)."""
        last = ubins.shape[0] - 1
        after = jnp.where(k <= n_after, base + ubins[jnp.minimum(pos + k, last)], drop)
        if not both:
            return after[None]
        before = jnp.where(k <= n_before, base + ubins[jnp.maximum(pos - k, 0)], drop)
        return jnp.stack([after, before])

    cells_of = jax.vmap(spike_cells, in_axes=(None, 0, 0, 0, 0, None, None))

    def count(base, pos, n_before, n_after, ubins, n_slots):
        TRACE_COUNT["pairs"] += 1  # runs only while tracing: counts compilations
        drop = n_slots * size  # the extra cell: in bounds, discarded below

        def block(i, hist):
            b, p, nb, na = (
                lax.dynamic_slice(a, (i * _BLOCK,), (_BLOCK,)) for a in (base, pos, n_before, n_after)
            )
            k_max = jnp.maximum(nb.max(), na.max()) if both else na.max()

            def body(carry):
                k, h = carry
                cells = cells_of(k, b, p, nb, na, ubins, drop)
                return k + 1, h.at[cells.ravel()].add(1, mode="promise_in_bounds")

            return lax.while_loop(lambda c: c[0] <= k_max, body, (jnp.int32(1), hist))[1]

        hist = jnp.zeros(n_slots * size + 1, jnp.int32)
        hist = lax.fori_loop(0, base.shape[0] // _BLOCK, block, hist)
        return hist[:-1].reshape(n_slots, size)

    kernel = jax.jit(count, static_argnums=(5,))
    _KERNELS[key] = kernel
    return kernel


@dataclass
class _Row:
    unit: int
    bins: np.ndarray
    ubins: np.ndarray
    rbin: np.ndarray
    pos: np.ndarray
    n_before: np.ndarray
    n_after: np.ndarray
    n_pairs: int
    k_max: int


def _rows_of(unit: int, prep: _UnitPrep, geo: AcgGeometry) -> list[_Row]:
    """Split a unit's counted spikes into rows of bounded spikes and pairs (bounded memory)."""
    idx = np.flatnonzero(prep.rate_bin >= 0)
    if len(idx) == 0:
        return []
    per = (prep.n_before + prep.n_after)[idx]
    cum = np.cumsum(per)
    rows = []
    s = 0
    while s < len(idx):
        base = cum[s - 1] if s else 0
        e = int(np.searchsorted(cum, base + _ROW_PAIRS, side="right"))
        e = min(max(e, s + 1), s + _ROW_SPIKES, len(idx))
        sel = idx[s:e]
        ulo = int((prep.pos[sel] - prep.n_before[sel]).min())
        uhi = int((prep.pos[sel] + prep.n_after[sel]).max()) + 1
        ub = prep.ubins[ulo:uhi]
        origin = int(ub[0])
        span = int(ub[-1]) - origin
        if span >= 2**31 - 1:
            raise FeatureError(
                f"unit {unit}: spike bins span {span} bins between neighbours, more than int32 "
                "allows; recordings longer than ~24 days at 1 ms bins are not supported."
            )
        rows.append(
            _Row(
                unit=unit,
                bins=(prep.bins[sel] - origin).astype(np.int32),
                ubins=(ub - origin).astype(np.int32),
                rbin=prep.rate_bin[sel].astype(np.int32),
                pos=(prep.pos[sel] - ulo).astype(np.int32),
                n_before=prep.n_before[sel].astype(np.int32),
                n_after=prep.n_after[sel].astype(np.int32),
                n_pairs=int(per[s:e].sum()),
                k_max=int(max(prep.n_before[sel].max(), prep.n_after[sel].max())),
            )
        )
        s = e
    return rows


class _PairCounter:
    """Packs rows into device calls of at most ``_CALL_SPIKES`` spikes and dispatches each call as
    soon as it is full. JAX dispatch is asynchronous, so the host prepares the next units while
    the device counts; :meth:`result` waits for all calls."""

    def __init__(self, n_units: int, geo: AcgGeometry, positive_only: bool = False) -> None:
        self.geo = geo
        self.both = not positive_only
        # a histogram row covers lags -half..+half (both) or 0..+half (positive lags only)
        self.width = geo.n_lags if self.both else geo.half + 1
        self.offset = geo.half if self.both else 0
        self.size = geo.n_rate_bins * self.width
        self.n_units = n_units
        self.pending: list[_Row] = []
        self.n_pending = 0
        self.launched: list[tuple[object, list[_Row]]] = []

    def add(self, rows: list[_Row]) -> None:
        for r in rows:
            if self.n_pending + len(r.bins) > _CALL_SPIKES and self.pending:
                self._launch()
            self.pending.append(r)
            self.n_pending += len(r.bins)

    def _launch(self) -> None:
        call, geo, size = self.pending, self.geo, self.size
        self.pending, self.n_pending = [], 0
        n_spk = sum(len(r.bins) for r in call)
        S = _next_pow2(n_spk, _BLOCK)
        U = _next_pow2(sum(len(r.ubins) for r in call))
        slots = _next_pow2(len(call), 1)
        base = np.zeros(S, np.int32)
        pos = np.zeros(S, np.int32)
        n_before = np.zeros(S, np.int32)
        n_after = np.zeros(S, np.int32)
        ubins = np.zeros(U, np.int32)
        i = u = 0
        for slot, r in enumerate(call):
            n, m = len(r.bins), len(r.ubins)
            base[i : i + n] = slot * size + r.rbin * self.width + self.offset - r.bins
            pos[i : i + n] = r.pos + u
            n_before[i : i + n] = r.n_before
            n_after[i : i + n] = r.n_after
            ubins[u : u + m] = r.ubins
            i += n
            u += m
        key = -(np.maximum(n_before[:n_spk], n_after[:n_spk]) if self.both else n_after[:n_spk])
        if geo.half < 2**15:  # radix sort on int16 keys: O(n)
            key = key.astype(np.int16)
        order = np.argsort(key, kind="stable")
        for a in (base, pos, n_before, n_after):
            a[:n_spk] = a[:n_spk][order]
        kernel = _pairs_kernel(geo.n_rate_bins, self.width, self.both)
        self.launched.append((kernel(base, pos, n_before, n_after, ubins, slots), call))

    def result(self) -> np.ndarray:
        """(n_units, R, W) int64 coincidence counts (W = n_lags, or half + 1: lags 0..half)."""
        if self.pending:
            self._launch()
        out = np.zeros((self.n_units, self.size), dtype=np.int64)
        for hist, call in self.launched:
            hist = np.asarray(hist)
            for slot, r in enumerate(call):
                out[r.unit] += hist[slot]
        self.launched = []
        return out.reshape(self.n_units, self.geo.n_rate_bins, self.width)


def _count_pairs(rows: list[_Row], n_units: int, geo: AcgGeometry) -> np.ndarray:
    """(n_units, R, W) int64 coincidence counts of ``rows`` from the device kernel."""
    counter = _PairCounter(n_units, geo)
    counter.add(rows)
    return counter.result()


# --------------------------------------------------------------------------------------------
# public functions


def _normalise(counts: np.ndarray, triggers: np.ndarray, half: int) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        acg = counts / triggers[..., :, None]
    acg = np.nan_to_num(acg)
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
    counter = _PairCounter(len(checked), geo, positive_lags_only)
    triggers = np.zeros((len(checked), geo.n_rate_bins), dtype=np.int64)
    thresholds = np.zeros((len(checked), geo.n_rate_bins))
    for u, t in enumerate(checked):
        p = _prepare_unit(t, config, geo, positive_lags_only)
        triggers[u], thresholds[u] = p.triggers, p.thresholds
        counter.add(_rows_of(u, p, geo))  # device calls start while later units are prepared
    counts = counter.result()
    acg = _normalise(counts.astype(np.float64), triggers, 0 if positive_lags_only else geo.half)
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
