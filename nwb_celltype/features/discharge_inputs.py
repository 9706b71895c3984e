"""What the real-trained model sees: shape-only normalisation of the discharge feature family
(ACG lags 1..100 ms, ISI histogram 0..100 ms, 30 kHz peak-aligned waveform), numpy only.

The ACG and ISI tables of the real C4 release do not always come from the same spikes (a third of
the Lisberger units have fewer ACG pairs at short lags than ISIs in the same bins), and an NWB unit's
counts come from however many spikes it has. So nothing here depends on the absolute number of
spikes: the ACG is divided by its own 50-100 ms baseline (and, separately, min-max scaled), the ISI
histogram becomes a distribution, and the scalar summaries are ratios of counts within one table.
The one cross-table scalar, ``log(ACG pairs 1..100 ms / ISIs 0..100 ms)``, is a firing-rate proxy
that is exact when both come from the same spikes; it is kept out of the default input set because
it is not robust to the two tables coming from different spike subsets (docs/validation.md
measures how much that matters).
"""

from __future__ import annotations

import numpy as np

from ..errors import FeatureError

__all__ = [
    "ACG_BASELINE_LAGS",
    "DISCHARGE_INPUT_SIZE",
    "N_LAGS",
    "WAVEFORM_INPUT_SIZE",
    "WAVEFORM_PEAK",
    "acg_baseline_shape",
    "acg_minmax_shape",
    "discharge_inputs",
    "discharge_scalars",
    "isi_log_distribution",
    "rate_cv2_width",
    "waveform_inputs",
]

#: Lags (ms) of the ACG input and bins (ms) of the ISI input.
N_LAGS = 100
#: ACG lags (1-based, ms) whose mean is the baseline the ACG is divided by.
ACG_BASELINE_LAGS = (50, 100)
#: Floor of the ISI distribution before the logarithm (probability per 1 ms bin).
ISI_FLOOR = 1e-3
#: Index of the main peak in the 75-sample (30 kHz, -1..+1.5 ms) waveform.
WAVEFORM_PEAK = 30
#: Edges (0-based indices into the 100 lags / bins) of the bins the curves are averaged into:
#: 1 ms up to 10 ms, then widening roughly geometrically to 100 ms (23 bins).
BIN_EDGES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 17, 20, 24, 28, 33, 40, 48, 57, 68, 80, 100)
N_BINS = len(BIN_EDGES) - 1
#: Number of scalar summaries appended to the discharge input.
N_SCALARS = 5
#: Length of the discharge input vector: baseline-ACG, min-max ACG, log-ISI, scalars.
DISCHARGE_INPUT_SIZE = 3 * N_BINS + N_SCALARS
#: Length of the waveform input vector: the peak-negative waveform and its original polarity.
WAVEFORM_INPUT_SIZE = 75 + 1


def _counts(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != N_LAGS:
        raise FeatureError(f"{name} must have shape (n_units, {N_LAGS}); got {a.shape}.")
    if not np.isfinite(a).all() or (a < 0).any():
        raise FeatureError(f"{name} must hold finite, non-negative counts; check the table or spike train.")
    return a


def rebin(x: np.ndarray) -> np.ndarray:
    """Mean of x (n, 100) within the :data:`BIN_EDGES` bins; (n, 23)."""
    x = np.asarray(x, dtype=np.float64)
    return np.add.reduceat(x, BIN_EDGES[:-1], axis=1) / np.diff(BIN_EDGES)


def acg_baseline_shape(acg_counts: np.ndarray) -> np.ndarray:
    """ACG divided by its own baseline (mean over lags 50..100 ms), then ``log1p``, per bin.

    acg_counts : (n, 100) pair counts at lags 1..100 ms. Returns (n, 23) float64 (the
    :data:`BIN_EDGES` bins); an empty ACG gives zeros. 1.0 before the log means "as likely as at
    long lags": independent of spike count.
    """
    a = _counts(acg_counts, "acg_counts")
    lo, hi = ACG_BASELINE_LAGS
    base = a[:, lo - 1 : hi].mean(1, keepdims=True)
    fallback = a.mean(1, keepdims=True)
    base = np.where(base > 0, base, fallback)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(base > 0, rebin(a) / base, 0.0)
    return np.log1p(ratio)


def acg_minmax_shape(acg_counts: np.ndarray) -> np.ndarray:
    """Binned ACG min-max scaled to [0, 1] per unit; (n, 23) float64; a flat ACG gives zeros."""
    a = rebin(_counts(acg_counts, "acg_counts"))
    lo = a.min(1, keepdims=True)
    span = a.max(1, keepdims=True) - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(span > 0, (a - lo) / span, 0.0)


def isi_log_distribution(isi_counts: np.ndarray) -> np.ndarray:
    """``log(p + 1e-3)``: the ISI histogram (bins 0..99 ms) normalised to sum 1, as a probability
    per 1 ms averaged within the :data:`BIN_EDGES` bins; (n, 23)."""
    s = _counts(isi_counts, "isi_counts")
    tot = s.sum(1, keepdims=True)
    s = rebin(s)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(tot > 0, s / tot, 0.0)
    return np.log(p + ISI_FLOOR)


def discharge_scalars(acg_counts: np.ndarray, isi_counts: np.ndarray) -> np.ndarray:
    """Spike-count-free summaries, (n, 5) float64.

    Columns: mean ISI below 100 ms (/50 ms); log(ISIs 0..4 ms / ISIs 5..99 ms);
    log(ACG pairs 1..10 ms per ms / baseline per ms); modal ISI bin (/100 ms); log(ACG pairs
    1..5 ms / 6..20 ms per ms) (early refractoriness vs bursting). All +1-smoothed ratios of counts
    within one table.
    """
    a = _counts(acg_counts, "acg_counts")
    s = _counts(isi_counts, "isi_counts")
    tot = s.sum(1)
    centres = np.arange(N_LAGS) + 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_isi = np.where(tot > 0, (s * centres).sum(1) / tot, 50.0) / 50.0
    early_isi = np.log((s[:, :5].sum(1) + 1) / (s[:, 5:].sum(1) + 1))
    lo, hi = ACG_BASELINE_LAGS
    base = a[:, lo - 1 : hi].mean(1)
    early_acg = np.log((a[:, :10].mean(1) + 1) / (base + 1))
    mode = np.argmax(s, 1) / float(N_LAGS)
    refr = np.log((a[:, :5].mean(1) + 1) / (a[:, 5:20].mean(1) + 1))
    return np.stack([mean_isi, early_isi, early_acg, mode, refr], 1)


def discharge_inputs(acg_counts: np.ndarray, isi_counts: np.ndarray) -> np.ndarray:
    """The discharge input vector of the real-trained model, (n, 74) float32.

    Concatenates :func:`acg_baseline_shape`, :func:`acg_minmax_shape`, :func:`isi_log_distribution`
    and :func:`discharge_scalars`.
    """
    a = _counts(acg_counts, "acg_counts")
    s = _counts(isi_counts, "isi_counts")
    if len(a) != len(s):
        raise FeatureError(f"acg_counts has {len(a)} rows but isi_counts has {len(s)}; rows must be aligned.")
    parts = (acg_baseline_shape(a), acg_minmax_shape(a), isi_log_distribution(s), discharge_scalars(a, s))
    return np.concatenate(parts, axis=1).astype(np.float32)


def waveform_inputs(waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The waveform input vector, (n, 76) float32, and a row mask (n,) of units that have one.

    waveform : (n, 75) at 30 kHz, main peak at sample 30, any sign, NaN rows where missing.
    The waveform is flipped so the main peak is negative and scaled to peak -1 (as C4 does); the
    last column is 1.0 where the original peak was positive (polarity is kept as information, not
    as a shape change). Rows without a waveform are zeros with mask False.
    """
    w = np.asarray(waveform, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != 75:
        raise FeatureError(f"waveform must have shape (n_units, 75) at 30 kHz; got {w.shape}.")
    ok = np.isfinite(w).all(1) & (np.abs(w).max(1, initial=0.0, where=np.isfinite(w)) > 0)
    out = np.zeros((len(w), WAVEFORM_INPUT_SIZE), dtype=np.float32)
    if ok.any():
        x = w[ok]
        peak = x[:, WAVEFORM_PEAK]
        sign = np.where(peak > 0, 1.0, -1.0)
        scale = np.abs(peak)
        scale = np.where(scale > 0, scale, np.abs(x).max(1))
        out[ok, :75] = -sign[:, None] * x / scale[:, None]
        out[ok, 75] = (sign > 0).astype(np.float32)
    return out, ok


def rate_cv2_width(acg_counts: np.ndarray, isi_counts: np.ndarray, waveform: np.ndarray) -> np.ndarray:
    """The three classic summary numbers of the simple baseline, (n, 3) float64.

    - log rate proxy: ``log((ACG pairs 1..100 ms + 1) / (ISIs 0..100 ms + 1))``; for one spike train
      it grows with the firing rate (about ``0.1 s * rate / P(ISI < 100 ms)``) and needs no spike count;
    - CV2 proxy: the ISI histogram has no order of intervals, so CV2 (mean of 2|a-b|/(a+b) over
      consecutive ISIs) is approximated by its value for independent intervals drawn from the
      histogram (bins 0..99 ms, centres), computed exactly over all pairs of bins;
    - waveform width: ms from the main (negative after flipping) peak to the following maximum.
    Rows without a waveform get NaN width.
    """
    a = _counts(acg_counts, "acg_counts")
    s = _counts(isi_counts, "isi_counts")
    rate = np.log((a.sum(1) + 1) / (s.sum(1) + 1))
    c = np.arange(N_LAGS) + 0.5
    tot = s.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(tot > 0, s / tot, 1.0 / N_LAGS)
    pair = 2 * np.abs(c[:, None] - c[None, :]) / (c[:, None] + c[None, :])
    cv2 = np.einsum("ni,ij,nj->n", p, pair, p)
    w, ok = waveform_inputs(waveform)
    width = np.full(len(w), np.nan)
    if ok.any():
        after = w[ok, WAVEFORM_PEAK:75]
        width[ok] = np.argmax(after, 1) / 30.0
    return np.stack([rate, cv2, width], 1)
