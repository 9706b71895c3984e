"""Units of the objects analysis tools hold them in, as a :class:`~nwb_celltype.units.UnitsBatch`:
a SpikeInterface sorting or sorting analyzer (:func:`units_from_sorting`) and a pynapple TsGroup
(:func:`units_from_tsgroup`), for classifying units before (or without) writing them to NWB.

Neither SpikeInterface nor pynapple is imported here: the objects' own methods are called
(``get_unit_spike_train``, ``get_extension``; ``index`` and ``t``), so any object that has them works.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import EmptyUnitsError, InvalidUnitsError
from ..reasons import waveform_problem
from ..units import UnitsBatch

__all__ = ["units_from_sorting", "units_from_tsgroup"]

logger = logging.getLogger(__name__)

#: Lowest sampling frequency (Hz) of a sorting read: its spike frames must resolve the 1 ms bins of
#: the ACG and ISI features (a recording is sampled at tens of kHz; a rate given in kHz is below it).
MIN_SORTING_RATE_HZ = 1000.0

#: gap (s) put between the segments of a multi-segment sorting: longer than the 100 ms the ACG and
#: ISI histogram reach, so no pair or interval spans two segments
SEGMENT_GAP_S = 1.0


def _is_analyzer(obj) -> bool:
    return hasattr(obj, "sorting") and hasattr(obj, "get_extension")


def _peak_templates(analyzer, rate_hz: float) -> tuple[np.ndarray | None, str]:
    """Average template of each unit on its peak channel (largest peak-to-peak), (n, samples), and
    the reason every unit has none ('' for none: an analyzer without a ``templates`` extension gets
    None and ''; templates spanning no spike's window at ``rate_hz`` are set aside, with a reason, as
    the NWB reader sets such a waveform_mean aside)."""
    ext = analyzer.get_extension("templates")
    if ext is None:
        logger.warning(
            "the sorting analyzer has no 'templates' extension: its units are classified from their discharge "
            "alone; analyzer.compute(['random_spikes', 'templates']) first to use their waveforms"
        )
        return None, ""
    computed = _template_operators(ext)
    op = next((o for o in ("average", "median") if o in computed or not computed), None)
    if op is None:
        logger.warning(
            "the analyzer's templates hold neither an average nor a median (%s): its units are classified "
            "from their discharge alone; analyzer.compute('templates') to use their waveforms",
            computed,
        )
        return None, ""
    if op != "average":
        logger.warning(
            "the analyzer's templates hold no average; its median templates are the units' waveforms"
        )
    t = np.asarray(ext.get_data(operator=op), dtype=np.float64)  # (units, samples, channels)
    if t.ndim != 3 or len(t) != len(analyzer.sorting.unit_ids):
        raise InvalidUnitsError(
            f"the analyzer's templates have shape {t.shape}; expected (units, samples, channels) with one "
            f"row per unit ({len(analyzer.sorting.unit_ids)})."
        )
    why = span_problem(t.shape[1], rate_hz)
    if why:
        logger.warning(
            "the analyzer's templates have %s: set aside, its units are classified from their discharge alone; "
            "analyzer.compute('templates', ms_before=1.0, ms_after=2.0) to use their waveforms",
            why,
        )
        return None, waveform_problem(f"the analyzer's templates set aside ({why})")
    peak = np.ptp(t, axis=1).argmax(axis=1)
    return t[np.arange(len(t)), :, peak], ""


def _template_operators(ext) -> list[str]:
    """The operators (average, median, std, percentile...) the templates extension computed, in the
    order it lists them ([] where it does not say)."""
    params = getattr(ext, "params", None) or {}
    ops = params.get("operators") or []
    return [o if isinstance(o, str) else str(o[0]) for o in ops if o]


def units_from_sorting(sorting) -> tuple[UnitsBatch, object]:
    """Spike times and peak-channel mean waveforms of every unit of ``sorting``.

    Parameters
    ----------
    sorting : spikeinterface BaseSorting or SortingAnalyzer
        A sorting gives spike times only (its units are then classified from their discharge
        alone); a sorting analyzer with the ``templates`` extension computed also gives each unit's
        average template on its peak channel (the channel with the largest peak-to-peak amplitude),
        at the analyzer's sampling frequency (set aside where they span no spike's window:
        :func:`span_problem`).

    Returns
    -------
    batch : UnitsBatch
        One row per unit in the sorting's order; ``unit_ids`` are 0..n-1 (a sorting's ids may be
        strings), times in seconds (spike frames / sampling frequency; the segments of a
        multi-segment sorting one after another, :data:`SEGMENT_GAP_S` apart).
    target : BaseSorting
        The sorting whose ``unit_ids`` the rows follow (the analyzer's own, for an analyzer).
    """
    analyzer = sorting if _is_analyzer(sorting) else None
    target = analyzer.sorting if analyzer is not None else sorting
    if not hasattr(target, "get_unit_spike_train") or not hasattr(target, "unit_ids"):
        raise InvalidUnitsError(
            f"expected a SpikeInterface sorting or sorting analyzer, got {type(sorting).__name__}; "
            "load one with spikeinterface (e.g. read_kilosort, read_nwb_sorting, create_sorting_analyzer)."
        )
    fs = float(target.get_sampling_frequency())
    if not fs >= MIN_SORTING_RATE_HZ:  # NaN too
        raise InvalidUnitsError(
            f"the sorting's sampling frequency is {fs:g} Hz: its spike frames / {fs:g} Hz would be times "
            f"coarser than the 1 ms bins of the ACG and ISI features (at least {MIN_SORTING_RATE_HZ:g} Hz "
            "needed). Was it given in kHz? Give it in Hz, e.g. NumpySorting.from_unit_dict(trains, "
            "sampling_frequency=30000.0)."
        )
    ids = list(target.unit_ids)
    if not ids:
        raise EmptyUnitsError("the sorting has no units; nothing to classify.")
    n_seg = int(target.get_num_segments())
    frames = [
        [np.asarray(target.get_unit_spike_train(unit_id=u, segment_index=s)) for s in range(n_seg)]
        for u in ids
    ]
    offsets_s, start = [], 0.0
    for s in range(n_seg):  # each segment starts after the last spike of the one before, plus a gap
        offsets_s.append(start)
        last = max((float(f[s].max()) for f in frames if len(f[s])), default=0.0)
        start += last / fs + SEGMENT_GAP_S
    times = [
        np.sort(np.concatenate([f[s] / fs + offsets_s[s] for s in range(n_seg)]).astype(np.float64))
        for f in frames
    ]
    waveforms, why = _peak_templates(analyzer, fs) if analyzer is not None else (None, "")
    locations = _sorting_locations(target, len(ids))
    return _batch(times, waveforms, fs, locations=locations, reasons=[why] * len(ids)), target


#: Unit properties (SpikeInterface) and metadata columns (pynapple) read as a unit's brain region.
LOCATION_KEYS: tuple[str, ...] = ("brain_area", "location")


def _strings_or_none(values, n: int) -> np.ndarray | None:
    vals = list(values) if values is not None else []
    if len(vals) != n:
        return None
    return np.array(["" if v is None or v != v else str(v) for v in vals], dtype=object)


def _sorting_locations(target, n: int) -> np.ndarray | None:
    """Each unit's brain region from the sorting's ``brain_area`` (IBL's and others' extractors set
    it) or ``location`` unit property, where it has one."""
    keys = set(target.get_property_keys()) if hasattr(target, "get_property_keys") else set()
    for key in LOCATION_KEYS:
        if key in keys:
            return _strings_or_none(target.get_property(key), n)
    return None


def _tsgroup_locations(tsgroup, ids: list) -> np.ndarray | None:
    """Each unit's brain region from the TsGroup's ``brain_area`` or ``location`` metadata column."""
    meta = getattr(tsgroup, "metadata", None)
    columns = list(getattr(meta, "columns", []))
    for key in LOCATION_KEYS:
        if key in columns:
            return _strings_or_none(meta[key].reindex(ids).tolist(), len(ids))
    return None


def _check_time_scale(times: list[np.ndarray]) -> None:
    """Warn when the spike times look like milliseconds (or were rounded to float32): the checks
    NWB files get on reading, :class:`~nwb_celltype.io._units_layout.TimeScaleCheck` (the intervals
    of each unit's sorted times, and the span of all the times from the first spike to the last)."""
    from ._units_layout import TimeScaleCheck

    check = TimeScaleCheck("the TsGroup")
    counts = np.array([len(t) for t in times], dtype=np.int64)
    check.feed(np.concatenate(times) if times else np.zeros(0), np.r_[0, np.cumsum(counts)])
    check.finish()


#: Reason of a unit missing from a ``waveforms`` dict (it is scored from its discharge alone).
WAVEFORM_NOT_GIVEN = waveform_problem("no waveform given (the unit is not in the waveforms dict)")


def _batch(
    times: list[np.ndarray],
    waveforms: np.ndarray | None,
    rate_hz: float | None,
    support: np.ndarray | None = None,
    locations: np.ndarray | None = None,
    reasons: list[str] | None = None,
) -> UnitsBatch:
    """``support``: the (k, 2) intervals (s) every unit was observed in (a TsGroup's time support),
    as each unit's ``obs_intervals``; ``locations``: each unit's brain region (``extra["locations"]``,
    as the NWB reader gives them); ``reasons``: each unit's problem found while reading ("" for none;
    ``extra["reasons"]``, as the NWB reader gives them)."""
    counts = np.array([len(t) for t in times], dtype=np.int64)
    extra = {} if locations is None else {"locations": locations}
    if reasons is not None and any(reasons):
        extra["reasons"] = np.asarray(reasons, dtype=object)
    return UnitsBatch(
        unit_ids=np.arange(len(times), dtype=np.int64),
        unit_indices=np.arange(len(times), dtype=np.int64),
        spike_times_s=np.concatenate(times) if times else np.zeros(0),
        spike_offsets=np.r_[0, np.cumsum(counts)].astype(np.int64),
        waveforms=None if waveforms is None else np.asarray(waveforms, dtype=np.float32),
        waveform_rate_hz=rate_hz if waveforms is not None else None,
        obs_intervals=None if support is None else [support] * len(times),
        extra=extra,
    )


def units_from_tsgroup(tsgroup, waveforms=None, waveform_rate_hz: float | None = None) -> UnitsBatch:
    """Spike times of every unit of a pynapple TsGroup (in its index order; times in seconds) and,
    optionally, their peak-channel mean waveforms.

    ``waveforms``: (n, samples) in the TsGroup's index order, or a mapping unit -> (samples,) (units
    missing from it have none), sampled at ``waveform_rate_hz``.
    """
    if not hasattr(tsgroup, "index") or not hasattr(tsgroup, "keys"):
        raise InvalidUnitsError(
            f"expected a pynapple TsGroup, got {type(tsgroup).__name__}; build one with "
            "nap.TsGroup({unit_id: nap.Ts(spike_times_s), ...}) or nap.load_file(path)['units']."
        )
    if hasattr(tsgroup, "columns") and hasattr(tsgroup, "iloc"):  # a pandas DataFrame passes the test above
        raise InvalidUnitsError(
            "expected a pynapple TsGroup, got a pandas DataFrame (e.g. nwbfile.units.to_dataframe()); build a "
            "TsGroup with nap.TsGroup({unit_id: nap.Ts(spike_times_s), ...}) or nap.load_file(path)['units']."
        )
    ids = list(np.asarray(tsgroup.index))
    if not ids:
        raise EmptyUnitsError("the TsGroup has no units; nothing to classify.")
    times = [np.sort(np.asarray(tsgroup[u].t, dtype=np.float64)) for u in ids]
    _check_time_scale(times)
    support = _time_support(tsgroup)
    locations = _tsgroup_locations(tsgroup, ids)
    if waveforms is None:
        return _batch(times, None, None, support, locations)
    if waveform_rate_hz is None or not float(waveform_rate_hz) > 0:
        raise InvalidUnitsError(
            f"waveforms were given without a positive waveform_rate_hz (got {waveform_rate_hz!r}); pass the "
            "rate they are sampled at, e.g. waveform_rate_hz=30000."
        )
    reasons = None
    if isinstance(waveforms, dict):
        known = set(ids)
        unknown = [k for k in waveforms if k not in known]
        if unknown:
            logger.warning(
                "waveforms given for %d keys that name no unit of the TsGroup (%s%s; its units: %s...): "
                "ignored; key the dict by the TsGroup's index values",
                len(unknown),
                unknown[:5],
                " ..." if len(unknown) > 5 else "",
                ids[:5],
            )
        _check_one_channel(waveforms)
        n_samples = {len(np.ravel(w)) for w in waveforms.values()}
        if len(n_samples) > 1:
            raise InvalidUnitsError(f"waveforms have different lengths {sorted(n_samples)}; give one length.")
        width = n_samples.pop() if n_samples else 1
        rows = [np.ravel(waveforms[u]) if u in waveforms else np.full(width, np.nan) for u in ids]
        # a unit missing from the dict has no waveform: say so, not that its NaN row "contains NaN
        # samples" (the model's note says the first waveform_problem: reasons.waveform_why)
        reasons = ["" if u in waveforms else WAVEFORM_NOT_GIVEN for u in ids]
    waveforms = _float_waveforms(rows if isinstance(waveforms, dict) else waveforms)
    if waveforms.ndim != 2 or len(waveforms) != len(ids):
        raise InvalidUnitsError(
            f"waveforms have shape {waveforms.shape}; expected ({len(ids)}, samples), one row per unit in "
            "the TsGroup's index order (or a dict unit id -> waveform)."
        )
    if reasons is None or not all(reasons):  # a dict naming no unit gives no waveform to check
        why = _check_waveform_span(waveforms.shape[1], float(waveform_rate_hz))
        if why:  # set aside, as the NWB reader and an analyzer's templates: scored from the discharge
            note = waveform_problem(f"the waveforms set aside ({why})")
            return _batch(times, None, None, support, locations, [r or note for r in reasons or [""] * len(ids)])
    return _batch(times, waveforms, float(waveform_rate_hz), support, locations, reasons)


def _float_waveforms(waveforms) -> np.ndarray:
    """``waveforms`` as a float64 array; :class:`InvalidUnitsError` where numpy cannot make one (rows
    of different lengths, text)."""
    try:
        return np.asarray(waveforms, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidUnitsError(
            f"waveforms cannot be read as numbers, one row of samples per unit ({exc}); give a (units, "
            "samples) float array in the TsGroup's index order, or a dict unit id -> (samples,) of one length."
        ) from exc


def _check_one_channel(waveforms: dict) -> None:
    """Refuse a waveforms dict whose values have several channels (a unit's (samples, channels)
    template): read as one long waveform, its channels would be scored as one spike's samples."""
    for u, w in waveforms.items():
        shape = np.shape(w)
        if sum(n > 1 for n in shape) > 1:
            raise InvalidUnitsError(
                f"the waveform of unit {u!r} has shape {shape}; give each unit's peak-channel mean waveform "
                "(samples,), e.g. w[:, np.ptp(w, axis=0).argmax()] of a (samples, channels) template."
            )


def span_problem(n_samples: int, rate_hz: float, rate: str = "") -> str:
    """Why waveforms of ``n_samples`` samples at ``rate_hz`` are no spike's ('' if they can be): a
    span outside :data:`~nwb_celltype.io._waveform_checks.MIN_WAVEFORM_MS` to ``MAX_WAVEFORM_MS``, the
    spans the NWB reader sets a waveform_mean aside outside of. ``rate``: how the caller names the
    rate (e.g. ``"waveform_rate_hz="``)."""
    from ._waveform_checks import MAX_WAVEFORM_MS, MIN_WAVEFORM_MS

    span_ms = n_samples / rate_hz * 1e3
    if MIN_WAVEFORM_MS <= span_ms <= MAX_WAVEFORM_MS:
        return ""
    return (
        f"{n_samples} samples, {span_ms:.4g} ms at {rate}{rate_hz:g} Hz: a mean spike waveform spans "
        f"{MIN_WAVEFORM_MS:g} to {MAX_WAVEFORM_MS:g} ms"
    )


def _check_waveform_span(n_samples: int, rate_hz: float) -> str:
    """Why waveforms whose span at ``rate_hz`` is no spike's (:func:`span_problem`) are set aside ('' if
    they are not), with a warning; a rate under 1 kHz (given in kHz) is refused: no waveform is sampled
    that slowly."""
    why = span_problem(n_samples, rate_hz, "waveform_rate_hz=")
    if why and rate_hz < MIN_SORTING_RATE_HZ:
        raise InvalidUnitsError(
            f"the waveforms have {why}. Give the rate in Hz (e.g. 30000, not 30) and one channel's "
            "waveform per unit (samples,)."
        )
    if why:
        logger.warning(
            "the waveforms have %s: set aside, the units are classified from their discharge alone; give "
            "each unit's mean waveform over a spike's window (e.g. 1 ms before to 2 ms after) to use them",
            why,
        )
    return why


def _time_support(tsgroup) -> np.ndarray | None:
    """The TsGroup's time support as (k, 2) seconds (e.g. the epochs of ``tsgroup.restrict(epochs)``):
    ISIs and ACG pairs are counted within it (:func:`~nwb_celltype.features.discharge.observed_segments`)."""
    ts = getattr(tsgroup, "time_support", None)
    if ts is None:
        return None
    iv = np.column_stack([np.asarray(ts.start, dtype=np.float64), np.asarray(ts.end, dtype=np.float64)])
    return iv if len(iv) else None
