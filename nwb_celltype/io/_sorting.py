"""Units of a SpikeInterface sorting or sorting analyzer as a :class:`~nwb_celltype.units.UnitsBatch`:
classifying a spike sorting before (or without) writing it to NWB.

SpikeInterface is not imported here: the objects' own methods are called (``get_unit_spike_train``,
``get_extension``), so any sorting that has them works.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidUnitsError
from ..units import UnitsBatch

__all__ = ["units_from_sorting"]

#: gap (s) put between the segments of a multi-segment sorting: longer than the 100 ms the ACG and
#: ISI histogram reach, so no pair or interval spans two segments
SEGMENT_GAP_S = 1.0


def _is_analyzer(obj) -> bool:
    return hasattr(obj, "sorting") and hasattr(obj, "get_extension")


def _peak_templates(analyzer) -> np.ndarray | None:
    """Average template of each unit on its peak channel (largest peak-to-peak), (n, samples);
    None when the analyzer has no ``templates`` extension."""
    ext = analyzer.get_extension("templates")
    if ext is None:
        return None
    t = np.asarray(ext.get_data(operator="average"), dtype=np.float64)  # (units, samples, channels)
    if t.ndim != 3 or len(t) != len(analyzer.sorting.unit_ids):
        raise InvalidUnitsError(
            f"the analyzer's templates have shape {t.shape}; expected (units, samples, channels) with one "
            f"row per unit ({len(analyzer.sorting.unit_ids)})."
        )
    peak = np.ptp(t, axis=1).argmax(axis=1)
    return t[np.arange(len(t)), :, peak]


def units_from_sorting(sorting) -> tuple[UnitsBatch, object]:
    """Spike times and peak-channel mean waveforms of every unit of ``sorting``.

    Parameters
    ----------
    sorting : spikeinterface BaseSorting or SortingAnalyzer
        A sorting gives spike times only (its units are then classified from their discharge
        alone); a sorting analyzer with the ``templates`` extension computed also gives each unit's
        average template on its peak channel (the channel with the largest peak-to-peak amplitude),
        at the analyzer's sampling frequency.

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
    ids = list(target.unit_ids)
    if not ids:
        raise InvalidUnitsError("the sorting has no units; nothing to classify.")
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
    counts = np.array([len(t) for t in times], dtype=np.int64)
    waveforms = _peak_templates(analyzer) if analyzer is not None else None
    batch = UnitsBatch(
        unit_ids=np.arange(len(ids), dtype=np.int64),
        unit_indices=np.arange(len(ids), dtype=np.int64),
        spike_times_s=np.concatenate(times) if len(times) else np.zeros(0),
        spike_offsets=np.r_[0, np.cumsum(counts)].astype(np.int64),
        waveforms=None if waveforms is None else waveforms.astype(np.float32),
        waveform_rate_hz=fs if waveforms is not None else None,
    )
    return batch, target
