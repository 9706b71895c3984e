"""C4's unit selection (npyx 4.3.1 ``trn_filtered`` as called by C4's ``predict_cell_types``): which units
are classified, and which of their spikes enter the features. Plain numpy (scipy only for the optional
amplitude fit); no JAX.

The rule, for one unit with spike times ``t`` (converted to whole samples at ``sampling_rate_hz`` and
stripped of exact duplicates, as npyx's ``trn`` does):

1. Fewer than ``min_spikes`` (100) spikes -> rejected.
2. The recording span is ``[0, floor(t_last / 60 s) * 60 s]``. It is cut into ``chunk_s`` (10 s) chunks;
   windows of 3 consecutive chunks (30 s, sliding by 10 s) are scored when they hold more than 15
   spikes. Quality is only assessed for units with more than 300 spikes (npyx's hard-coded minimum).
   * false positives: Hill et al. ISI-violation rate with a ``refractory_ms`` (0.8 ms) window, relative to
     the unit's mean rate over the whole train (npyx's ``mean_firing_rate``, outliers above the 99.5th
     ISI percentile removed, rounded to 0.01 Hz) -> window passes if <= ``max_refractory_violation``;
   * false negatives: a Gaussian cut at its lower end is fitted to the histogram of the window's spike
     amplitudes (Freedman-Diaconis bins, more than 3 needed); the fraction of the Gaussian below the cut
     (in %, rounded to 0.01) -> window passes if <= ``max_amplitude_cutoff``. A failed fit fails.
3. More than one window must pass each test, else no spike is good. A 10 s chunk is good for a test if
   any window covering it passed; a spike is good if it lies strictly inside a chunk good for both tests.
4. The unit is kept if the runs of consecutive good spikes span more than ``min_good_duration_s``
   (180 s) in total (sum over runs of last minus first spike time); its features then use only the good
   spikes.

Without per-spike amplitudes (most NWB files have none) the amplitude test cannot be run: it is
*skipped* (every chunk counts as passing it), the refractory test alone decides, and the result says so
(``amplitude_cutoff_applied=False``). This is more permissive than C4 on units whose amplitude
distribution is truncated by the detection threshold.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidUnitsError
from .config import FeatureConfig

__all__ = ["UnitSelection", "select_unit_c4", "select_units_c4"]

logger = logging.getLogger(__name__)

#: windows are this many consecutive chunks (npyx's ``fp_chunk_span`` / ``fn_chunk_span``)
WINDOW_CHUNKS: int = 3
#: a window is scored only with more than this many spikes
MIN_SPIKES_PER_WINDOW: int = 15
#: quality is assessed only for units with more than this many spikes (npyx ``n_spikes_threshold``)
MIN_SPIKES_FOR_QUALITY: int = 300
#: fewer good spikes than this after filtering -> rejected (C4's ``predict_cell_types``)
MIN_GOOD_SPIKES: int = 10


@dataclass(frozen=True)
class UnitSelection:
    """Outcome of C4's unit selection for one unit.

    Attributes
    ----------
    keep : bool
        Whether the unit is classified.
    reason : str
        Why it is not (empty when kept).
    good_spikes : (n_spikes,) bool
        Spikes that enter the features (all False when rejected), aligned with the input spike times.
    good_duration_s : float
        Total span of the runs of good spikes, in seconds.
    amplitude_cutoff_applied : bool
        False when no per-spike amplitudes were available and the amplitude test was skipped.
    """

    keep: bool
    reason: str
    good_spikes: np.ndarray
    good_duration_s: float
    amplitude_cutoff_applied: bool


def _mean_rate_hz(t_s: np.ndarray) -> float:
    # npyx.spk_t.mean_firing_rate(t, exclusion_quantile=0.005, fs=1)
    if len(t_s) < 2:
        return 0.0
    isi = np.diff(t_s)
    isi = isi[isi <= np.quantile(isi, 1 - 0.005)]
    return float(np.round(1.0 / np.mean(isi), 2))


def _isi_violation_rate(chunk: np.ndarray, t1: float, window_s: float, total_rate: float) -> float:
    # npyx.metrics.isi_violations(t, t1, t2, window_s, min_isi=0)[0]; ``chunk`` holds t1 <= t < t2
    chunk = chunk[chunk > t1]
    dup = np.where(np.diff(chunk) <= 0)[0]
    chunk = np.delete(chunk, dup + 1)
    if len(chunk) < 2:
        return 0.0
    n_viol = int(np.sum(np.diff(chunk) < window_s))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(n_viol / (2 * len(chunk) * window_s) / total_rate)


def _gaussian_cut(x, a, mu, sigma, x_cut):
    g = a * np.exp(-((x - mu) ** 2) / (2 * sigma**2))
    g[x < x_cut] = 0
    return g


def _fd_bins(x: np.ndarray) -> int:
    from scipy.stats import iqr

    bw = 2 * iqr(x, scale=1, nan_policy="omit") / np.power(x.size, 1 / 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = (x.max() - x.min()) / bw + 1
    return int(n) if np.isfinite(n) else 0


def _percent_missing(amplitudes: np.ndarray, n_bins: int) -> float:
    """Percentage of a lower-cut Gaussian fitted to the amplitude histogram that lies below the cut."""
    import warnings

    from scipy.optimize import OptimizeWarning, curve_fit
    from scipy.stats import norm

    a = np.asarray(amplitudes, dtype=np.float64)
    num, bins = np.histogram(a, bins=n_bins)
    mode_seed = bins[np.where(num == max(num))]
    step = np.diff(bins[:2])[0]
    x = bins[:-1] + step / 2
    add = np.arange(start=0, stop=x[0] - step, step=step)
    x = np.concatenate([add, x])
    num = np.concatenate([np.zeros(len(add)), num])
    mode = np.mean(mode_seed) if len(mode_seed) > 1 else mode_seed[0]
    p0 = np.asarray([np.max(num), mode, np.nanstd(a), np.percentile(a, 1)], dtype=np.float64)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", OptimizeWarning)
            popt = curve_fit(_gaussian_cut, x, num, p0, maxfev=10000)[0]
    except RuntimeError:
        return float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(round(100 * norm.cdf((popt[3] - popt[1]) / popt[2]), 2))


def _runs_duration(mask: np.ndarray, t_s: np.ndarray) -> float:
    # npyx.spk_t.good_sections_from_mask + sum of section lengths
    edges = np.diff(np.concatenate([[0], mask.astype(np.int64), [0]]))
    left = np.nonzero(edges == 1)[0]
    right = np.nonzero(edges == -1)[0] - 1
    keep = right > left
    return float(np.sum(t_s[right[keep]] - t_s[left[keep]]))


def select_unit_c4(
    spike_times_s: np.ndarray,
    amplitudes: np.ndarray | None = None,
    config: FeatureConfig | None = None,
) -> UnitSelection:
    """Apply C4's unit selection to one unit.

    Parameters
    ----------
    spike_times_s : (n_spikes,) float64
        Sorted spike times in seconds (recording time; C4 assumes the recording starts at 0).
    amplitudes : (n_spikes,) float or None
        Per-spike amplitudes (e.g. Kilosort template scaling factors), aligned with the spike times.
        None skips the amplitude cut-off test (see module docs).
    config : FeatureConfig, optional
        Uses ``sampling_rate_hz``, ``min_spikes``, ``refractory_ms``, ``chunk_s``,
        ``max_refractory_violation``, ``max_amplitude_cutoff`` and ``min_good_duration_s``.

    Returns
    -------
    UnitSelection
    """
    cfg = config or FeatureConfig()
    t = np.asarray(spike_times_s, dtype=np.float64)
    if t.ndim != 1:
        raise InvalidUnitsError(f"spike times must be 1-d, got shape {t.shape}")
    if len(t) > 1 and np.any(np.diff(t) < 0):
        raise InvalidUnitsError("spike times must be sorted in increasing order; sort them first.")
    amp = None
    if amplitudes is not None:
        amp = np.asarray(amplitudes, dtype=np.float64)
        if amp.shape != t.shape:
            raise InvalidUnitsError(
                f"amplitudes must be aligned with spike times: got {amp.shape} for {t.shape} spikes; "
                "pass one amplitude per spike or None to skip the amplitude cut-off test."
            )
    applied = amp is not None
    fs = float(cfg.sampling_rate_hz)
    samples = np.round(t * fs).astype(np.int64)
    # npyx's trn drops exact duplicates (same sample) before anything else
    not_dup = np.concatenate([[True], np.diff(samples) > 0]) if len(samples) else np.zeros(0, bool)
    idx = np.nonzero(not_dup)[0]
    t_s = samples[idx] / fs
    a_u = amp[idx] if amp is not None else None
    nothing = np.zeros(len(t), dtype=bool)

    def reject(reason: str, duration: float = 0.0) -> UnitSelection:
        return UnitSelection(False, reason, nothing, duration, applied)

    if len(t_s) < cfg.min_spikes:
        return reject(f"fewer than {cfg.min_spikes} spikes ({len(t_s)})")
    if len(t_s) <= MIN_SPIKES_FOR_QUALITY:
        return reject(f"too few spikes to assess quality ({len(t_s)} <= {MIN_SPIKES_FOR_QUALITY})")

    span = (t_s[-1] // 60) * 60.0
    chunk = float(cfg.chunk_s)
    n_win = int(span / chunk)
    starts = np.arange(n_win) * chunk
    ends = starts + WINDOW_CHUNKS * chunk
    lo = np.searchsorted(t_s, starts, side="left")  # t1 <= t
    hi = np.searchsorted(t_s, ends, side="left")  # t < t2
    counts = hi - lo
    scored = counts > MIN_SPIKES_PER_WINDOW

    rate = _mean_rate_hz(t_s)
    window_s = cfg.refractory_ms / 1000.0
    pass_fp = np.zeros(n_win, dtype=bool)
    pass_fn = np.zeros(n_win, dtype=bool) if applied else scored.copy()
    for w in np.nonzero(scored)[0]:
        fp = _isi_violation_rate(t_s[lo[w] : hi[w]], starts[w], window_s, rate)
        pass_fp[w] = fp <= cfg.max_refractory_violation
        if applied:
            amps = a_u[lo[w] : hi[w]]
            n_bins = _fd_bins(amps)
            if n_bins > 3:
                missing = _percent_missing(amps, n_bins)
                pass_fn[w] = (not np.isnan(missing)) and missing <= cfg.max_amplitude_cutoff * 100

    if pass_fp.sum() <= 1 or (applied and pass_fn.sum() <= 1):
        return reject(
            "no good section: at most one 30 s window passed the refractory-violation"
            + (" or amplitude cut-off" if applied else "")
            + " test"
        )

    n_sub = n_win + WINDOW_CHUNKS - 1
    good_fp = np.zeros(n_sub, dtype=bool)
    good_fn = np.zeros(n_sub, dtype=bool)
    for i in range(WINDOW_CHUNKS):  # chunk j is covered by windows j-2 .. j
        good_fp[i : i + n_win] |= pass_fp
        good_fn[i : i + n_win] |= pass_fn
    # spikes strictly inside a good chunk (a spike on a chunk edge belongs to none)
    k = np.floor(t_s / chunk).astype(np.int64)
    inside = (t_s > k * chunk) & (k < n_sub)
    kk = np.clip(k, 0, n_sub - 1)
    good = inside & good_fp[kk] & good_fn[kk]
    duration = _runs_duration(good, t_s)
    if duration <= cfg.min_good_duration_s:
        return reject(
            f"good sections last {duration:.1f} s in total, C4 needs more than {cfg.min_good_duration_s:g} s",
            duration,
        )
    if good.sum() < MIN_GOOD_SPIKES:
        return reject(f"fewer than {MIN_GOOD_SPIKES} good spikes", duration)
    mask = np.zeros(len(t), dtype=bool)
    mask[idx[good]] = True
    return UnitSelection(True, "", mask, duration, applied)


def select_units_c4(batch, config: FeatureConfig | None = None) -> list[UnitSelection]:
    """:func:`select_unit_c4` for every unit of a :class:`~nwb_celltype.units.UnitsBatch`.

    Per-spike amplitudes are taken from ``batch.extra["spike_amplitudes"]`` when present (flat, aligned
    with ``batch.spike_times_s``); otherwise the amplitude test is skipped for every unit.
    """
    amps = batch.extra.get("spike_amplitudes") if getattr(batch, "extra", None) else None
    if amps is not None and len(amps) != len(batch.spike_times_s):
        raise InvalidUnitsError(
            f"batch.extra['spike_amplitudes'] has {len(amps)} values for {len(batch.spike_times_s)} "
            "spikes; give one amplitude per spike (same order as spike_times_s) or leave it out."
        )
    out = []
    for i in range(len(batch)):
        a = None if amps is None else amps[batch.spike_offsets[i] : batch.spike_offsets[i + 1]]
        out.append(select_unit_c4(batch.spike_times(i), a, config))
    if amps is None and len(batch):
        logger.info("no per-spike amplitudes: C4's amplitude cut-off test skipped for %d units", len(batch))
    return out
