"""The ``acg-isi-wave`` feature family: raw features that can be computed both from a unit's spike
times and mean waveform (NWB) and from published per-unit feature tables (the HIPPIE/C4 CSV layout),
so that a model trained on real tables sees the same quantities on any NWB unit.

Per unit (numpy only, no JAX):

- ``acg_counts`` (100,): autocorrelogram pair counts at lags 1..100 ms, bin ``k`` = [k-0.5, k+0.5) ms
  (centred 1 ms bins, as npyx and the tables' columns +1..+100);
- ``isi_counts`` (100,): inter-spike-interval histogram counts, bin ``k`` = [k, k+1) ms, k = 0..99;
- ``waveform`` (75,): peak-channel mean waveform resampled to 30 kHz (polyphase), main peak (largest
  absolute deflection in the central 60 % of the input, or a clearly larger one near its edge: see
  :func:`align_waveform`) at sample 30 (-1 ms .. +1.5 ms), baseline (median of the first 0.5 ms of the
  window) removed, **sign kept**, scaled so that max |value| = 1.

Raw counts are kept as counts: what the model sees (shape normalisation) is computed from them by the
model's own input transform, identically on both paths.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import ClassVar

import numpy as np

from ..errors import FeatureError, NwbCelltypeError
from ..reasons import (
    edge_note,
    is_waveform_reason,
    join_reasons,
    no_waveform,
    reason_parts,
    too_few_spikes,
    waveform_problem,
)
from ..units import UnitsBatch
from ._guards import check_train
from ._main_peak import EDGE_FLANK_RATIO as EDGE_FLANK_RATIO  # the edge rule's constants, documented
from ._main_peak import EDGE_MIN_POST_MS as EDGE_MIN_POST_MS  # with align_waveform
from ._main_peak import EDGE_MIN_PRE_MS as EDGE_MIN_PRE_MS
from ._main_peak import EDGE_PEAK_RATIO as EDGE_PEAK_RATIO
from ._main_peak import _EdgePeakError, _main_peak
from .config import Allowed, ConfigMixin, common_config

log = logging.getLogger(__name__)

FAMILY = "acg-isi-wave"
#: Differences within this many ms below a bin edge count in the bin above it: float64 times carry
#: rounding of up to ~1e-7 ms at a week's offset, and spike times on a sample grid put many
#: differences exactly on the 1 ms edges; 1 ns is far below any recording's time resolution.
EDGE_TOLERANCE_MS = 1e-6


@dataclass(frozen=True)
class DischargeConfig(ConfigMixin):
    """Settings of the ``acg-isi-wave`` family (every setting that changes feature values).

    The defaults are the tables' layout: ACG lags 1..100 ms and ISI 0..100 ms in 1 ms bins, waveform
    at 30 kHz from -1 ms to +1.5 ms around its main peak.
    """

    acg_lags_ms: int = 100
    isi_bins_ms: int = 100
    waveform_rate_hz: float = 30000.0
    waveform_pre_ms: float = 1.0
    waveform_post_ms: float = 1.5
    baseline_ms: float = 0.5
    min_spikes: int = 100
    family: str = FAMILY
    version: str = "1"

    #: Ranges (checked on construction): the tables' value times a generous factor where a setting
    #: sizes arrays or loops, physically meaningful bounds elsewhere.
    ALLOWED: ClassVar[dict[str, Allowed]] = {
        "acg_lags_ms": Allowed(int, 1, 1000),
        "isi_bins_ms": Allowed(int, 1, 1000),
        "waveform_rate_hz": Allowed(float, 0, 1e6, lo_open=True),
        "waveform_pre_ms": Allowed(float, 0, 10.0),
        "waveform_post_ms": Allowed(float, 0, 10.0),
        "baseline_ms": Allowed(float, 0, 10.0),
        "min_spikes": Allowed(int, 2, 10**9),
        "family": Allowed(str),
        "version": Allowed(str),
    }

    def _check_consistency(self) -> None:
        if not 5 <= self.waveform_samples <= 10_000:
            raise FeatureError(
                f"{FAMILY} feature configuration: waveform_pre_ms + waveform_post_ms = "
                f"{self.waveform_pre_ms} + {self.waveform_post_ms} ms at {self.waveform_rate_hz} Hz "
                f"is {self.waveform_samples} waveform samples; allowed: 5 to 10000."
            )

    @property
    def waveform_samples(self) -> int:
        return int(round((self.waveform_pre_ms + self.waveform_post_ms) * self.waveform_rate_hz / 1000))

    @property
    def waveform_align(self) -> int:
        return int(round(self.waveform_pre_ms * self.waveform_rate_hz / 1000))


@dataclass
class DischargeFeatureSet:
    """Raw ``acg-isi-wave`` features of a set of units.

    Attributes
    ----------
    unit_ids : (n,) int64
    acg_counts : (n, acg_lags_ms) float64
        ACG pair counts at lags 1..acg_lags_ms ms (centred 1 ms bins).
    isi_counts : (n, isi_bins_ms) float64
        ISI counts in [k, k+1) ms bins.
    waveform : (n, waveform_samples) float32
        Aligned waveform (sign kept, max |.| = 1); zeros where ``has_waveform`` is False.
    has_discharge, has_waveform : (n,) bool
        Whether the discharge (ACG + ISI) / the waveform part is available.
    usable : (n,) bool
        False where the unit cannot be classified at all (no discharge); ``reasons[i]`` says why.
    reasons : (n,) object
        Empty string for units without any problem; also notes e.g. "no waveform".
    labels : (n,) object or None
        Ground-truth labels where the features come from a labelled table.
    meta : dict
        Where the features come from (e.g. the table's ``dataset.json``).
    config : DischargeConfig
    """

    unit_ids: np.ndarray
    acg_counts: np.ndarray
    isi_counts: np.ndarray
    waveform: np.ndarray
    has_discharge: np.ndarray
    has_waveform: np.ndarray
    usable: np.ndarray
    reasons: np.ndarray
    labels: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    config: DischargeConfig = field(default_factory=DischargeConfig)

    family = FAMILY
    #: array fields, in the order they are saved
    ARRAYS = ("unit_ids", "acg_counts", "isi_counts", "waveform", "has_discharge", "has_waveform", "usable")

    def __len__(self) -> int:
        return len(self.unit_ids)

    def subset(self, index) -> DischargeFeatureSet:
        """Rows ``index`` (mask or integer array) as a new set."""
        kw = {k: getattr(self, k)[index] for k in self.ARRAYS}
        return DischargeFeatureSet(
            **kw,
            reasons=self.reasons[index],
            labels=None if self.labels is None else self.labels[index],
            meta=dict(self.meta),
            config=self.config,
        )

    def without_waveforms(self) -> DischargeFeatureSet:
        """The same units with their waveforms set aside (``has_waveform`` False, zeros): a model of
        this family then classifies every unit from its discharge alone. ``meta["waveforms_ignored"]``
        records that it was asked for."""
        return replace(
            self,
            waveform=np.zeros_like(self.waveform),
            has_waveform=np.zeros(len(self), dtype=bool),
            meta={**self.meta, "waveforms_ignored": True},
        )

    @staticmethod
    def concatenate(sets: list[DischargeFeatureSet]) -> DischargeFeatureSet:
        """Stack sets computed with one configuration (labels kept only if every set has them)."""
        cfg = common_config(sets)
        labels = None
        if all(s.labels is not None for s in sets):
            labels = np.concatenate([np.asarray(s.labels, dtype=object) for s in sets])
        return DischargeFeatureSet(
            **{k: np.concatenate([getattr(s, k) for s in sets]) for k in DischargeFeatureSet.ARRAYS},
            reasons=np.concatenate([s.reasons for s in sets]),
            labels=labels,
            meta={
                "parts": [s.meta for s in sets],
                # sets whose waveforms were all set aside stay so (:meth:`without_waveforms`)
                **(
                    {"waveforms_ignored": True}
                    if sets and all(s.meta.get("waveforms_ignored") for s in sets)
                    else {}
                ),
            },
            config=cfg,
        )


# --------------------------------------------------------------------------------------- spikes


def _clean_train(times_s: np.ndarray) -> tuple[np.ndarray, str]:
    """A unit's spike times without non-finite values and exact duplicates (no neuron fires twice
    at one instant: a sorter or file artefact that would fill the 0-1 ms ISI bin), sorted, and a
    note saying how many were dropped ('' if none)."""
    t = np.asarray(times_s, dtype=np.float64)
    finite = np.isfinite(t)
    t = _sorted(t[finite])
    dup = np.zeros(len(t), dtype=bool)
    if len(t) > 1:
        dup[1:] = np.diff(t) == 0
    notes = []
    if not finite.all():
        notes.append(f"{int((~finite).sum())} non-finite spike times dropped")
    if dup.any():
        notes.append(f"{int(dup.sum())} duplicate spike times dropped")
        t = t[~dup]
    return t, join_reasons(notes)


def observed_segments(times_s: np.ndarray, intervals) -> tuple[list[np.ndarray], str]:
    """A unit's sorted spike times cut into its observation intervals (NWB Units
    ``obs_intervals``), and a note on what was set aside ('' if nothing).

    Intervals are merged where they overlap or touch; spikes outside every interval are dropped
    (the note counts them). Counts summed over the segments hold only pairs and intervals of spikes
    observed together: no ISI or ACG pair spans a gap in the observation. ``intervals`` None or
    empty (the file says nothing) keeps the whole train as one segment; rows that are not finite
    or end before they start are ignored (the note says how many)."""
    t = np.asarray(times_s, dtype=np.float64)
    if intervals is None:
        return [t], ""
    iv = np.asarray(intervals, dtype=np.float64).reshape(-1, 2)
    ok = np.isfinite(iv).all(1) & (iv[:, 1] >= iv[:, 0])
    notes = [f"{int((~ok).sum())} invalid observation intervals ignored"] if not ok.all() else []
    iv = iv[ok]
    if not len(iv):
        return [t], join_reasons(notes)
    iv = iv[np.argsort(iv[:, 0], kind="stable")]
    merged = [list(iv[0])]
    for a, b in iv[1:]:
        if a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    segments = [t[np.searchsorted(t, a, "left") : np.searchsorted(t, b, "right")] for a, b in merged]
    outside = len(t) - sum(len(x) for x in segments)
    if outside:
        notes.append(f"{outside} spikes outside the unit's observation intervals ignored")
    return segments, join_reasons(notes)


def compute_acg_counts(times_s: np.ndarray, lags_ms: int = 100) -> np.ndarray:
    """ACG pair counts of one spike train at lags 1..``lags_ms`` ms in centred 1 ms bins.

    Parameters
    ----------
    times_s : (n_spikes,) float
        Spike times in seconds (sorted or not).
    lags_ms : int
        Number of positive lags.

    Returns
    -------
    (lags_ms,) float64
        ``out[k-1]`` = number of ordered pairs (i < j) with ``t_j - t_i`` in [k-0.5, k+0.5) ms. The
        ACG is symmetric: the count at lag -k is the same. A difference on a bin edge goes to the
        upper bin whatever the float rounding of the times (:data:`EDGE_TOLERANCE_MS`), so that
        trains on a sample grid (30 kHz: every whole ms is an edge) give the same counts at any time
        offset.
    """
    return _acg_counts(_sorted(times_s), lags_ms)


def _sorted(times_s: np.ndarray) -> np.ndarray:
    """Times as float64, sorted (a copy is made only for unsorted input)."""
    t = np.asarray(times_s, dtype=np.float64)
    if len(t) > 1 and not np.diff(t).min() >= 0:  # (NaN: sorted, as before)
        t = np.sort(t)
    return t


def _acg_counts(t: np.ndarray, lags_ms: int) -> np.ndarray:
    """:func:`compute_acg_counts` of sorted times: the pairs ``j`` spikes apart for j = 1, 2, ...
    until none is in the window. A spike whose pair j apart is past the window has every later
    pair past it too (sorted times, monotone rounding), so once fewer than 1/4 of the spikes still
    have a pair in the window, only those are carried on (gathers instead of whole-array slices):
    the work follows the number of pairs in the window, not the burstiest spike's neighbours."""
    n = len(t)
    out = np.zeros(lags_ms + 1, dtype=np.int64)
    limit = lags_ms + 1.0  # on the shifted scale below: lags_ms + 0.5 ms
    idx = None  # None: every spike is still a candidate (slices); else the candidates (sorted)
    for j in range(1, n):
        if idx is None:
            d = t[j:] - t[:-j]
        else:
            idx = idx[: np.searchsorted(idx, n - j)]  # those with a spike j later
            d = t[idx + j] - t[idx]
        d *= 1000.0
        d += 0.5 + EDGE_TOLERANCE_MS  # bin k holds [k - 0.5, k + 0.5) ms: floor of the shifted lag
        near = d < limit
        d = d[near]
        if not len(d):
            break
        if idx is not None:
            idx = idx[near]
        elif len(d) < (n - j) // 4:
            idx = np.flatnonzero(near)
        out += np.bincount(np.floor(d, out=d).astype(np.int64), minlength=lags_ms + 1)[: lags_ms + 1]
    return out[1:].astype(np.float64)


def compute_isi_counts(times_s: np.ndarray, bins_ms: int = 100) -> np.ndarray:
    """ISI histogram of one spike train: counts in [k, k+1) ms bins, k = 0..``bins_ms``-1 (an
    interval on an edge goes to the upper bin whatever the rounding: :data:`EDGE_TOLERANCE_MS`).

    Returns
    -------
    (bins_ms,) float64
    """
    isi_ms = np.diff(_sorted(times_s)) * 1000.0 + EDGE_TOLERANCE_MS
    isi_ms = isi_ms[isi_ms < bins_ms]
    return np.bincount(np.floor(isi_ms).astype(np.int64), minlength=bins_ms)[:bins_ms].astype(np.float64)


# ------------------------------------------------------------------------------------- waveform


def _resample(w: np.ndarray, rate_hz: float, out_rate_hz: float) -> np.ndarray:
    if rate_hz == out_rate_hz:
        return w
    from scipy.signal import resample_poly

    frac = Fraction(out_rate_hz / rate_hz).limit_denominator(1000)
    return resample_poly(w, frac.numerator, frac.denominator, padtype="line")


def _align(wvf: np.ndarray, rate_hz: float, config: DischargeConfig) -> tuple[np.ndarray, str]:
    """:func:`align_waveform`, and the note of :func:`_main_peak`."""
    w = np.asarray(wvf, dtype=np.float64)
    if w.ndim != 1 or len(w) < 5:
        raise FeatureError(f"waveform: expected a 1-d array of >= 5 samples, got shape {w.shape}.")
    if not np.isfinite(w).all():
        raise FeatureError(
            f"waveform contains NaN or infinite samples ({int((~np.isfinite(w)).sum())} of {w.size})"
        )
    if not (rate_hz and np.isfinite(rate_hz) and rate_hz > 0):
        raise FeatureError(f"waveform rate must be > 0 Hz, got {rate_hz}; pass the file's sampling rate.")
    if np.ptp(w) == 0:
        raise FeatureError("waveform is flat (all samples equal, e.g. all zeros): no peak to align to.")
    w = _resample(w - np.median(w), float(rate_hz), float(config.waveform_rate_hz))
    ref, note = _main_peak(w, float(config.waveform_rate_hz))
    align, n_out = config.waveform_align, config.waveform_samples
    start = ref - align
    idx = np.clip(np.arange(start, start + n_out), 0, len(w) - 1)  # edge samples repeat where short
    out = w[idx]
    n_base = max(1, int(round(config.baseline_ms * config.waveform_rate_hz / 1000)))
    out = out - np.median(out[:n_base])
    size = np.abs(out).max()
    if size == 0 or not np.isfinite(size):
        raise FeatureError("waveform has no deflection after alignment: cannot normalise.")
    return out / size, note


def align_waveform(wvf: np.ndarray, rate_hz: float, config: DischargeConfig | None = None) -> np.ndarray:
    """Resample one peak-channel mean waveform to ``config.waveform_rate_hz``, put its main peak at
    ``waveform_pre_ms``, remove the baseline and scale it to max |value| = 1 (sign kept).

    Main peak: the largest absolute deflection in the window's central 60 %, or a dominant one near its
    edge (:data:`EDGE_PEAK_RATIO`, :data:`EDGE_MIN_PRE_MS`; docs/features.md) or ``FeatureError``.

    Parameters
    ----------
    wvf : (samples,) float
        Mean waveform, any units (µV, V), any polarity.
    rate_hz : float
        Its sampling rate.
    config : DischargeConfig

    Returns
    -------
    (config.waveform_samples,) float64

    Raises
    ------
    FeatureError
        Empty, non-finite or flat waveform, a bad rate, or a dominant deflection too near the edge.
    """
    return _align(wvf, rate_hz, DischargeConfig() if config is None else config)[0]


def _align_waveforms(waveforms, rate_hz, config, reasons, unit_ids=None) -> tuple[np.ndarray, np.ndarray]:
    n = len(reasons)
    out = np.zeros((n, config.waveform_samples), dtype=np.float32)
    has = np.zeros(n, dtype=bool)
    if waveforms is None or rate_hz is None:
        for r in reasons:
            r.append(no_waveform())
        return out, has
    edge = []  # units whose largest deflection lies outside the central span: never silently
    for i in range(n):
        try:
            out[i], note = _align(waveforms[i], rate_hz, config)
            has[i] = True
            if note:  # the unit's row says so, not only the log
                reasons[i].append(edge_note(note))
        except NwbCelltypeError as exc:
            reasons[i].append(waveform_problem(exc))
            note = f"{exc}: scored from its discharge alone" if isinstance(exc, _EdgePeakError) else ""
        if note:
            edge.append(f"unit {i if unit_ids is None else int(unit_ids[i])}: {note}")
    if edge:
        more = [f"... {len(edge) - 5} more"] if len(edge) > 5 else []
        log.warning("%d waveforms peak near their window's edge: %s", len(edge), "; ".join(edge[:5] + more))
    return out, has


def extract_discharge_features(
    batch: UnitsBatch, config: DischargeConfig | None = None, progress: bool = False
) -> DischargeFeatureSet:
    """Compute the ``acg-isi-wave`` features of every unit of a batch.

    Parameters
    ----------
    batch : UnitsBatch
        Units as read by :func:`nwb_celltype.io.read_units` (times in s, waveforms at
        ``waveform_rate_hz``, NaN rows where missing).
    config : DischargeConfig
    progress : bool
        Log progress at INFO level.

    Returns
    -------
    DischargeFeatureSet
        One row per unit. A unit with fewer than ``min_spikes`` spikes (or bad spike times) is not
        ``usable``; a unit without a usable waveform keeps ``usable`` (it is classified from its
        discharge alone) with ``has_waveform`` False and the reason noted.
    """
    config = DischargeConfig() if config is None else config
    n = len(batch)
    reasons: list[list[str]] = [[] for _ in range(n)]
    fatal = np.zeros(n, dtype=bool)
    extra = batch.extra.get("reasons") if batch.extra else None
    if extra is not None and len(extra) == n:  # problems the reader found (e.g. no spikes)
        for i, r in enumerate(extra):
            for part in reason_parts(str(r)):
                reasons[i].append(part)
                # a waveform problem is a note: discharge-only members classify such units
                fatal[i] |= not is_waveform_reason(part)
    acg = np.zeros((n, config.acg_lags_ms))
    isi = np.zeros((n, config.isi_bins_ms))
    has_discharge = np.zeros(n, dtype=bool)
    if progress:
        log.info("ACG and ISI counts of %d units (%d spikes)", n, int(batch.spike_offsets[-1]))
    cleaned = []
    obs = batch.obs_intervals if batch.obs_intervals is not None and len(batch.obs_intervals) == n else None
    for i in range(n):
        t, note = _clean_train(batch.spike_times(i))
        if note:  # a note, not a failure: the unit is classified from the rest
            reasons[i].append(note)
            cleaned.append(f"unit {int(batch.unit_ids[i])}: {note}")
        t, why = check_train(t, allow_negative=True)  # counts use differences of times only
        if why:  # before the pair counts, whose work grows with rate x spikes
            reasons[i].append(why)
            continue
        segments, note = observed_segments(t, obs[i] if obs is not None else None)
        if note:
            reasons[i].append(note)
        n_observed = sum(len(x) for x in segments)
        if n_observed < config.min_spikes:
            reasons[i].append(too_few_spikes(n_observed, config.min_spikes))
            continue
        for x in segments:  # pairs and intervals within one observation interval only
            acg[i] += compute_acg_counts(x, config.acg_lags_ms)
            isi[i] += compute_isi_counts(x, config.isi_bins_ms)
        has_discharge[i] = True
    if cleaned:
        log.warning(
            "%d units had spike times no neuron can have, dropped before counting: %s",
            len(cleaned),
            "; ".join(cleaned[:5]) + (f"; ... {len(cleaned) - 5} more" if len(cleaned) > 5 else ""),
        )
    wave, has_wave = _align_waveforms(
        batch.waveforms, batch.waveform_rate_hz, config, reasons, batch.unit_ids
    )
    # a missing waveform is a note, not a failure: discharge-only members classify such units
    usable = has_discharge & ~fatal
    return DischargeFeatureSet(
        unit_ids=np.asarray(batch.unit_ids, dtype=np.int64),
        acg_counts=acg,
        isi_counts=isi,
        waveform=wave,
        has_discharge=has_discharge,
        has_waveform=has_wave,
        usable=usable,
        reasons=np.array([join_reasons(dict.fromkeys(r)) for r in reasons], dtype=object),
        config=config,
    )


# ---------------------------------------------------------------------------------------- files

#: version of the saved-features layout of this family
FILE_FORMAT_VERSION = "1"


def without_waveforms(fs: DischargeFeatureSet) -> DischargeFeatureSet:
    """:meth:`DischargeFeatureSet.without_waveforms` (the family registry's entry point)."""
    return fs.without_waveforms()


def save_discharge_features(path, fs: DischargeFeatureSet):
    """Write ``fs`` to ``path`` (``.npz``, compressed, no pickles): the arrays of
    :attr:`DischargeFeatureSet.ARRAYS`, ``reasons`` and ``labels`` (unicode; ``labels`` only when
    known), ``family``, ``config_json``, ``config_sha256``, ``meta_json``, ``format_version``."""
    from .._atomic_files import write_npz

    arrays = {k: np.asarray(getattr(fs, k)) for k in fs.ARRAYS}
    arrays["reasons"] = np.asarray([str(r) for r in fs.reasons], dtype=str).reshape(len(fs))
    if fs.labels is not None:
        arrays["labels"] = np.asarray([str(r) for r in fs.labels], dtype=str).reshape(len(fs))
    arrays.update(
        family=np.array(FAMILY),
        config_json=np.array(fs.config.to_json()),
        config_sha256=np.array(fs.config.sha256),
        meta_json=np.array(json.dumps(fs.meta, default=str)),
        format_version=np.array(FILE_FORMAT_VERSION),
    )
    return write_npz(path, arrays)


def load_discharge_features(path) -> DischargeFeatureSet:
    """Read a file written by :func:`save_discharge_features` (checks family, version, hash)."""
    from pathlib import Path

    from ._npz import read_npz

    path = Path(path)
    if not path.exists():
        raise FeatureError(f"features file {path} does not exist; write it with `nwb-celltype features`.")
    d = read_npz(path)
    if str(d.get("family", "")) != FAMILY:
        raise FeatureError(
            f"{path} holds features of family {str(d.get('family', 'c4-3d'))!r}, not {FAMILY!r}."
        )
    if str(d.get("format_version", "")) != FILE_FORMAT_VERSION:
        raise FeatureError(
            f"{path} has {FAMILY} file format {str(d.get('format_version'))!r}; this nwb-celltype reads "
            f"{FILE_FORMAT_VERSION!r}: recompute the features with this version."
        )
    missing = {*DischargeFeatureSet.ARRAYS, "reasons", "config_json"} - set(d)
    if missing:
        raise FeatureError(f"{path} lacks {sorted(missing)}: not written by save_discharge_features.")
    config = DischargeConfig.from_json(str(d["config_json"]))
    if "config_sha256" in d and str(d["config_sha256"]) != config.sha256:
        raise FeatureError(f"{path}: stored configuration hash does not match its JSON; the file is corrupt.")
    return DischargeFeatureSet(
        **{k: d[k] for k in DischargeFeatureSet.ARRAYS},
        reasons=d["reasons"].astype(object),
        labels=d["labels"].astype(object) if "labels" in d else None,
        meta=json.loads(str(d.get("meta_json", "{}"))),
        config=config,
    )
