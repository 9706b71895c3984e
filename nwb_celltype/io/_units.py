"""Stream the Units table of an opened source as :class:`~nwb_celltype.units.UnitsBatch` batches of
plain numpy arrays, reading each column in contiguous slices (never one HDF5 read per unit). Which
table (:mod:`._units_tables`) and how it is laid out (:mod:`._units_layout`) are their own modules."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Sequence

import numpy as np

from ..errors import InvalidValueError
from ..reasons import NO_SPIKES, join_reasons, no_waveform, waveform_samples_differ
from ..units import SkippedUnit, UnitsBatch
from ._layers import map_location_to_layer
from ._prefetch import ChunkPrefetcher
from ._source import Source, open_source
from ._units_layout import _bytes_to_read, _electrode_layout, _inspect, _Layout, checked_waveform_rate
from ._units_tables import resolve_units_table, units_table_paths
from ._waveform_checks import SPAN_MAX_BYTES, averaged_spikes, spike_groups

log = logging.getLogger(__name__)

__all__ = ["map_location_to_layer", "read_units", "resolve_units_table", "units_table_paths"]


def _runs(rows: np.ndarray) -> list[tuple[int, int, int]]:
    """Contiguous runs of sorted rows -> (position in rows, first row, stop row)."""
    if len(rows) == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.r_[0, breaks]
    stops = np.r_[breaks, len(rows)]
    return [(int(a), int(rows[a]), int(rows[b - 1]) + 1) for a, b in zip(starts, stops, strict=True)]


def _bounds(index: np.ndarray, r0: int, r1: int) -> tuple[int, int]:
    """Element range of rows r0..r1-1 of a VectorIndex (end offsets)."""
    return (int(index[r0 - 1]) if r0 > 0 else 0), int(index[r1 - 1])


def _peaks(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Peak channel of a stack of (samples, channels) waveforms: (has a waveform -- some finite,
    non-zero value --, peak channel, sign) per unit. The peak channel has the largest
    peak-to-peak amplitude; the sign is that of its largest deviation from its median. Channel and
    sign are 0 where there is no waveform."""
    m = len(w)
    finite = np.isfinite(w)
    with warnings.catch_warnings():  # all-NaN channels and units are expected here
        warnings.simplefilter("ignore", RuntimeWarning)
        has = finite.reshape(m, -1).any(axis=1) & (np.nanmax(np.abs(w).reshape(m, -1), axis=1) > 0)
        ptp = np.nanmax(w, axis=1) - np.nanmin(w, axis=1)  # (units, channels)
        ch = np.argmax(np.where(np.isnan(ptp), -np.inf, ptp), axis=1)
        x = w[np.arange(m), :, ch]  # (units, samples)
        x = x - np.nanmedian(x, axis=1, keepdims=True)
        sign = np.where(np.nanmax(x, axis=1) > -np.nanmin(x, axis=1), 1, -1).astype(np.int8)
    return has, np.where(has, ch, 0), np.where(has, sign, 0).astype(np.int8)


def read_units(
    source: str | os.PathLike | Source,
    *,
    batch_size: int = 256,
    layer_column: str | None = None,
    unit_ids: Sequence[int] | np.ndarray | None = None,
    require_waveforms: bool = True,
    units_table: str | None = None,
    waveform_rate_hz: float | None = None,
    **open_kwargs,
) -> Iterator[UnitsBatch]:
    """Stream the units of an NWB source in batches of plain numpy arrays.

    Every selected unit appears, in Units-table order: a unit with no spikes has an empty slice, a
    unit with no usable waveform has a NaN row; both are listed with a reason in
    ``batch.extra["skipped"]`` (list of :class:`~nwb_celltype.units.SkippedUnit`),
    ``batch.extra["problems"]`` (dict unit id -> reason) and ``batch.extra["reasons"]`` ((n,) str,
    ``""`` for usable units; several reasons are joined with ``"; "``).

    Each batch reads ``spike_times``, ``waveform_mean`` and ``obs_intervals`` as one contiguous slice
    per run of consecutive rows; the VectorIndex columns are read once (per-spike ``waveforms``:
    the averaged spikes' rows, a group of units per read: :func:`_read_spike_waveforms`).

    Parameters
    ----------
    source : str, path-like or Source
        An opened :class:`Source`, or anything :func:`open_source` accepts (then opened and closed
        here, with ``open_kwargs``).
    batch_size : int
        Units per batch; memory use is bounded by it (plus the index columns).
    layer_column : str or None
        Units column holding each unit's layer or location, mapped with
        :func:`map_location_to_layer`. Default: a column named ``layer`` if present, else the
        location of each unit's peak electrode (``extra["peak_electrodes"]``), else the one all its
        electrodes share, else ``unknown``.
    unit_ids : sequence of int or None
        Read only these unit ids (Units ``id`` column), in table order.
    require_waveforms : bool
        Raise :class:`~nwb_celltype.errors.NotNWBError` when the table has no ``waveform_mean``
        column (default). False yields NaN waveforms (``waveform_rate_hz`` None) instead.
    units_table : str or None
        Path of the Units table in the file (e.g. ``processing/ecephys/kilosort``, a second
        sorting); default ``units``, else the file's only Units table (:func:`resolve_units_table`).
    waveform_rate_hz : float or None
        Sampling rate of the waveforms where the file does not state it, or states it wrongly; it
        overrides the file's (default: the file's ``waveform_mean.sampling_rate`` or
        ``waveform_rate``, else the rate of the raw ElectricalSeries the units' electrodes are
        recorded on where they hold them all at one rate -- where the units list none, the file's
        only raw series where it records the whole electrodes table --, else 30 kHz, each with a
        warning; ``batch.extra["waveform_rate_source"]`` says "stated", "file",
        "electrical_series:<name>" or "assumed"). A ``waveform_mean`` spanning less than 0.8 ms
        or more than 10 ms at its rate, or whose axes look like (units, channels, samples) (its
        "samples" match the units' electrode count, or the electrodes table's size where they
        list none, while its channels do not, or it has as many samples as channels, and its
        content does not say NWB's layout; or its content says the last axis is time), is set
        aside with a warning and a reason on every unit (an error with ``require_waveforms``).
        Without ``waveform_mean``, NWB's per-spike ``waveforms`` are averaged (each unit's first
        1000 spikes; a malformed index sets them aside, as above).

    Yields
    ------
    UnitsBatch
        ``unit_ids`` (n,) int64, ``unit_indices`` (n,) int64 rows of the Units table,
        ``spike_times_s`` float64 (s) + ``spike_offsets`` (n+1,) int64, ``waveforms`` (n, samples)
        float32 (file units, peak channel, sign as recorded), ``waveform_rate_hz``, ``layers`` (n,)
        str, ``peak_channels`` (n,) int64 (index into the unit's channels; -1 unknown),
        ``obs_intervals`` list of (k, 2) float64 (s) or None; ``extra``: ``peak_sign`` (n,) int8
        (+1 positive, -1 negative spike, 0 unknown), ``reasons``, ``locations`` (n,) str (the
        ``location`` of the unit's electrode, as for the layer; "" where unknown),
        ``peak_electrodes`` (n,) int64 (electrodes-table row of the peak channel; -1 unknown, as for
        a (units, samples) waveform without a ``peak_electrode`` column), ``skipped``,
        ``problems``, ``source`` (``SourceInfo.to_dict()``).

    Raises
    ------
    NotNWBError
        No Units table, a malformed one, or no waveforms (unless ``require_waveforms=False``).
    InvalidValueError
        Bad ``batch_size``, ``layer_column`` or ``unit_ids``.
    RemoteError
        Network failures while reading (after retries).
    """
    if not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise InvalidValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    if isinstance(source, Source):
        if open_kwargs:
            raise InvalidValueError(
                f"options {sorted(open_kwargs)} apply when read_units opens the source itself; "
                "this source is already open, so pass them to open_source instead."
            )
        yield from _read(
            source, int(batch_size), layer_column, unit_ids, require_waveforms, units_table, waveform_rate_hz
        )
        return
    with open_source(source, **open_kwargs) as src:
        yield from _read(
            src, int(batch_size), layer_column, unit_ids, require_waveforms, units_table, waveform_rate_hz
        )


def _read(
    src: Source,
    batch_size: int,
    layer_column,
    unit_ids,
    require_waveforms,
    units_table=None,
    stated_rate=None,
) -> Iterator[UnitsBatch]:
    stated_rate = checked_waveform_rate(stated_rate)
    with src.guard("reading the Units table"):
        lay = _inspect(src, layer_column, require_waveforms, unit_ids is None, units_table, stated_rate)
    n = len(lay.ids)
    if unit_ids is None:
        rows = np.arange(n, dtype=np.int64)
    else:
        want = np.unique(np.asarray(unit_ids, dtype=np.int64).ravel())
        pos = {int(u): i for i, u in enumerate(lay.ids)}
        missing = [int(u) for u in want if int(u) not in pos]
        if missing:
            raise InvalidValueError(
                f"unit_ids not in the Units table of {src.info.describe()}: {missing[:10]}"
                f"{' ...' if len(missing) > 10 else ''} (the table has {n} units, ids "
                f"{lay.ids[:5].tolist()}...)."
            )
        rows = np.sort(np.array([pos[int(u)] for u in want], dtype=np.int64))
    info = src.info.to_dict()
    rf = src.remote_file
    if rf is not None and unit_ids is not None and len(rows):
        with src.guard("fetching the Units data"):
            rf.fetch_rest(_bytes_to_read(lay.group, lay, rows))
    prefetch = ChunkPrefetcher.for_file(rf)
    for b0 in range(0, len(rows), batch_size):
        brows = rows[b0 : b0 + batch_size]
        with src.guard(f"reading units {b0}..{b0 + len(brows) - 1}"):
            batch = _read_batch(lay, brows, prefetch)
        batch.extra["source"] = info
        if lay.time_scale is not None:
            lay.time_scale.feed(batch.spike_times_s, batch.spike_offsets)
        if b0 + batch_size >= len(rows):
            prefetch.release()
            if lay.time_scale is not None:
                lay.time_scale.finish()
        yield batch


def _read_runs(dset, index: np.ndarray, rows: np.ndarray, dtype, prefetch=None) -> Iterator[tuple]:
    """Rows of a ragged column, one read per run of consecutive rows: (position in rows, data, ends)."""
    for pos, r0, r1 in _runs(rows):
        a, b = _bounds(index, r0, r1)
        if prefetch is not None:
            prefetch(dset, a, b)
        yield pos, np.asarray(dset[a:b], dtype=dtype), index[r0:r1] - a


def _split(block: np.ndarray, ends: np.ndarray) -> list[np.ndarray]:
    """Split the data of a run of ragged rows at the rows' end offsets."""
    starts = np.r_[0, ends[:-1]]
    return [block[s:e] for s, e in zip(starts, ends, strict=True)]


def _read_spikes(
    lay: _Layout, rows: np.ndarray, prefetch, reasons: list[list[str]]
) -> tuple[np.ndarray, np.ndarray]:
    """Spike times of the units at ``rows`` and (n+1,) offsets; adds "no spikes" to ``reasons``."""
    counts = np.zeros(len(rows), dtype=np.int64)
    pieces = []
    if lay.spike_index is not None:
        for pos, block, ends in _read_runs(
            lay.group["spike_times"], lay.spike_index, rows, np.float64, prefetch
        ):
            pieces.append(block)
            counts[pos : pos + len(ends)] = ends - np.r_[0, ends[:-1]]
    if len(pieces) == 1:  # the usual case: no copy
        spikes = pieces[0]
    else:
        spikes = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float64)
    for i in np.flatnonzero(counts == 0):
        reasons[i].append(NO_SPIKES)
    return spikes, np.r_[0, np.cumsum(counts)].astype(np.int64)


def _read_waveforms(lay: _Layout, rows: np.ndarray, prefetch) -> list[np.ndarray]:
    """Mean waveform of each unit at ``rows`` as (samples, channels), one read per run of consecutive
    rows (per-spike ``waveforms``: averaged unit by unit, :func:`_read_spike_waveforms`)."""
    if lay.wave_kind == "spikes":
        return _read_spike_waveforms(lay, rows, prefetch)[0]
    per_unit: list[np.ndarray] = [np.zeros((0, 0))] * len(rows)
    wm = lay.group["waveform_mean"]
    if lay.wave_kind == "ragged":
        for pos, block, ends in _read_runs(wm, lay.wave_index, rows, np.float32, prefetch):
            for j, w in enumerate(_split(block, ends)):  # (rows=channels, samples)
                per_unit[pos + j] = w.T
        return per_unit
    for pos, r0, r1 in _runs(rows):
        prefetch(wm, r0, r1)
        block = np.asarray(wm[r0:r1], dtype=np.float32)
        for j in range(r1 - r0):
            w = block[j]
            per_unit[pos + j] = w[:, None] if lay.wave_kind == "2d" else w
    return per_unit


def _read_spike_waveforms(lay: _Layout, rows: np.ndarray, prefetch) -> tuple[list[np.ndarray], list[str]]:
    """Each unit's mean of its per-spike ``waveforms`` (:func:`_spike_waveform_mean`) and why it
    has none ("" where it has one). The units are read in groups (:func:`spike_groups`): one read
    of ``waveforms_index`` per group, and on a remote file one prefetch of its ``waveforms`` rows
    (a request per ``max_span`` bytes, not one per unit and index)."""
    wi, w = lay.group["waveforms_index"], lay.group["waveforms"]
    row_bytes = int(w.shape[1]) * w.dtype.itemsize
    spike_bytes = wi.dtype.itemsize + row_bytes * int(w.shape[0]) / max(int(wi.shape[0]), 1)
    # remote: a group's rows in one request, with no read-ahead past it
    one_request = prefetch.request_bytes() if isinstance(prefetch, ChunkPrefetcher) else None
    cap = SPAN_MAX_BYTES if one_request is None else max(prefetch.step, min(SPAN_MAX_BYTES, one_request))
    starts, stops = averaged_spikes(lay.wave_index, rows)
    means: list[np.ndarray] = []
    whys: list[str] = []
    for p0, p1, lo, hi in spike_groups(lay.wave_index, rows, spike_bytes, cap):
        first = max(lo - 1, 0)  # the end of the spike before the first is where its rows start
        ends, whole = np.zeros(0, dtype=np.int64), False
        if hi > lo:
            prefetch(wi, first, hi)
            ends = np.asarray(wi[first:hi], dtype=np.int64)
            r0, r1 = (int(ends[0]) if lo > 0 else 0), int(ends[-1])
            whole = 0 <= r0 <= r1 <= w.shape[0] and (r1 - r0) * row_bytes <= cap
            if whole:
                prefetch(w, r0, r1)
        for p in range(p0, p1):
            s0, s1 = int(starts[p]), int(stops[p])
            start = int(ends[s0 - 1 - first]) if s0 > 0 and s1 > s0 else 0
            mean, why = _spike_waveform_mean(
                w, start, ends[s0 - first : s1 - first], None if whole else prefetch
            )
            means.append(mean)
            whys.append(why)
    return means, whys


#: Values of per-spike ``waveforms`` read at a time while averaging them (bounds memory: 32 MiB).
AVERAGE_BLOCK_VALUES = 1 << 22


def _spike_waveform_mean(w, start: int, ends: np.ndarray, prefetch) -> tuple[np.ndarray, str]:
    """The mean of one unit's per-spike ``waveforms`` (NWB's doubly ragged column): its spikes'
    rows ``start`` .. ``ends`` (each spike's end row, from ``waveforms_index``; at most
    :data:`MAX_SPIKES_AVERAGED` spikes) as (samples, channels) float32 (NaN values left out), and
    ""; or an empty array and why it has none. Reads :data:`AVERAGE_BLOCK_VALUES` at a time
    (``prefetch``: per block, where the caller did not prefetch the unit's rows)."""
    none = np.zeros((0, 0), dtype=np.float32)
    if not len(ends):
        return none, no_waveform("the unit has no per-spike waveforms")
    per_spike = np.diff(np.r_[start, ends])  # waveforms (electrodes) of each spike
    if (per_spike < 0).any() or ends[-1] > w.shape[0]:
        return none, no_waveform("waveforms_index is malformed for this unit: not rows of waveforms")
    k = int(per_spike[0])
    if k == 0 or (per_spike != k).any():
        counts = sorted({int(c) for c in per_spike})[:5]
        return none, no_waveform(
            f"its spikes have {counts} per-spike waveforms each; NWB expects one per electrode of the "
            "unit, as many for every spike"
        )
    n_samples = int(w.shape[1])
    total = np.zeros((k, n_samples))
    count = np.zeros((k, n_samples))
    step = max(1, AVERAGE_BLOCK_VALUES // (k * n_samples))  # spikes per read
    for a in range(0, len(per_spike), step):
        lo, hi = start + a * k, start + min(a + step, len(per_spike)) * k
        if prefetch is not None:
            prefetch(w, lo, hi)
        block = np.asarray(w[lo:hi], dtype=np.float64).reshape(-1, k, n_samples)
        finite = np.isfinite(block)
        total += np.where(finite, block, 0.0).sum(axis=0)
        count += finite.sum(axis=0)
    mean = np.full((k, n_samples), np.nan)
    np.divide(total, count, out=mean, where=count > 0)
    return mean.T.astype(np.float32), ""


def _peak_waveforms(
    per_unit: list[np.ndarray], reasons: list[list[str]], why_none: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each unit's waveform on its peak channel, that channel and the sign; adds why not to
    ``reasons`` (``why_none[i]`` where given, else "no waveform")."""
    m = len(per_unit)
    peak = np.full(m, -1, dtype=np.int64)
    sign = np.zeros(m, dtype=np.int8)
    n_samples = max((w.shape[0] for w in per_unit), default=0)
    waves = np.full((m, n_samples), np.nan, dtype=np.float32)
    if m and len({w.shape for w in per_unit}) == 1 and per_unit[0].size:  # one array op per batch
        stack = np.stack(per_unit)
        has, ch, sg = _peaks(stack)
        for i in np.flatnonzero(~has):
            reasons[i].append((why_none[i] if why_none else "") or no_waveform())
        good = np.flatnonzero(has)
        peak[good], sign[good] = ch[good], sg[good]
        waves[good] = stack[good, :, ch[good]]
        return waves, peak, sign
    for i, w in enumerate(per_unit):  # ragged channels or lengths: unit by unit
        has, ch, sg = _peaks(w[None]) if w.size else (np.zeros(1, bool), None, None)
        if not has[0]:
            reasons[i].append((why_none[i] if why_none else "") or no_waveform())
            continue
        if w.shape[0] != n_samples:
            reasons[i].append(waveform_samples_differ(w.shape[0], n_samples))
            continue
        peak[i], sign[i] = ch[0], sg[0]
        waves[i] = w[:, ch[0]]
    return waves, peak, sign


def _unit_layers(lay: _Layout, rows: np.ndarray, peak_electrodes: np.ndarray) -> np.ndarray:
    """Layer of each unit at ``rows``: layer column, else its peak electrode's location (else the
    one all its electrodes share), else unknown."""
    if lay.layers_all is not None:
        return lay.layers_all[rows].copy()
    return _per_unit_electrode_value(lay, rows, peak_electrodes, lay.electrode_layers, "unknown")


def _electrodes_of(lay: _Layout, r: int) -> np.ndarray:
    """The electrodes-table rows the unit at row ``r`` lists (empty without the column)."""
    if lay.electrodes is None:
        return np.zeros(0, dtype=np.int64)
    erows, eidx = lay.electrodes
    if eidx is None:
        return erows[r : r + 1]
    a, b = _bounds(eidx, r, r + 1)
    return erows[a:b]


def _peak_electrodes(lay: _Layout, rows: np.ndarray, peak: np.ndarray, n_channels: np.ndarray) -> np.ndarray:
    """Electrodes-table row of the peak channel of each unit at ``rows`` (-1 where unknown).

    ``peak`` is the index of the peak channel among the unit's ``n_channels`` waveform channels
    (-1: no waveform; ``n_channels`` -1: the waveform has one channel, (units, samples), so it does
    not say which electrode it was recorded on). NWB does not tie the waveform's channel axis to the
    unit's ``electrodes``, so the channel is mapped to an electrode only where the counts say how:
    the unit's own list where it has one entry per channel, else the electrodes table's rows where
    the waveform spans the whole table. A ``peak_electrode`` column (derived files) answers for
    one-channel waveforms, where it names one of the unit's electrodes."""
    out = np.full(len(rows), -1, dtype=np.int64)
    if lay.electrode_locations is None:
        return out
    n_el = len(lay.electrode_locations)
    for i, r in enumerate(rows):
        mine = _electrodes_of(lay, int(r))
        if n_channels[i] > 0 and peak[i] >= 0:
            if len(mine) == n_channels[i]:
                out[i] = mine[peak[i]]
            elif n_channels[i] == n_el:
                out[i] = peak[i]
            elif len(mine) > 1:
                lay.note(
                    "channels",
                    "%s: %s %d channels, but unit row %d lists %d electrodes and the "
                    "electrodes table has %d: which electrode the peak channel is cannot be told, so "
                    "such units get the location and layer all their electrodes share, else unknown",
                    lay.where,
                    "its per-spike waveforms have" if lay.wave_kind == "spikes" else "waveform_mean has",
                    int(n_channels[i]),
                    int(r),
                    len(mine),
                    n_el,
                )
        elif lay.peak_electrode is not None and lay.peak_electrode[r] >= 0:
            pe = int(lay.peak_electrode[r])
            if pe < n_el and (len(mine) == 0 or pe in mine):
                out[i] = pe
            else:
                lay.note(
                    "peak_electrode",
                    "%s: the peak_electrode of unit row %d is %d, not one of its electrodes %s (rows "
                    "of the %d-row electrodes table); not used",
                    lay.where,
                    int(r),
                    pe,
                    mine.tolist()[:8],
                    n_el,
                )
    return out


def _per_unit_electrode_value(
    lay: _Layout, rows: np.ndarray, peak_electrodes: np.ndarray, values: np.ndarray | None, default: str
) -> np.ndarray:
    """``values`` (one per electrodes-table row) of each unit's electrode: its peak electrode's
    (``peak_electrodes``, -1 unknown) where known, else the value all its electrodes share (its
    only electrode's), else ``default``."""
    out = np.full(len(rows), default, dtype=object)
    if lay.electrodes is None or values is None:
        return out
    for i, r in enumerate(rows):
        if peak_electrodes[i] >= 0:
            out[i] = values[peak_electrodes[i]]
            continue
        mine = _electrodes_of(lay, int(r))
        cand = set(values[mine])
        if len(cand) == 1:
            out[i] = cand.pop()
    return out


def _channel_counts(lay: _Layout, per_unit: list[np.ndarray]) -> np.ndarray:
    """Waveform channels of each unit (-1 for a (units, samples) waveform: one channel, no electrode)."""
    if lay.wave_kind == "2d":
        return np.full(len(per_unit), -1, dtype=np.int64)
    return np.array([w.shape[1] if w.ndim == 2 else 0 for w in per_unit], dtype=np.int64)


def unit_peak_electrodes(src: Source, units_table: str | None, rows, batch_size: int = 256) -> np.ndarray:
    """Electrodes-table row of the peak-channel electrode of the units at ``rows`` (-1 where
    unknown), as :func:`read_units` determines it (``batch.extra["peak_electrodes"]``), for a table
    already read whose batches were not kept: only the electrodes and, for units listing several,
    the waveforms are read again, ``batch_size`` units at a time (memory bounded as in
    :func:`read_units`). Prefer the reader's own ``peak_electrodes`` where it is at hand.

    Parameters
    ----------
    src : Source
        The opened source.
    units_table : str or None
        Path of the Units table (as for :func:`read_units`).
    rows : (n,) int
        Rows of the Units table, in any order.
    batch_size : int
        Units whose waveforms are read at a time.
    """
    if not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise InvalidValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    rows = np.asarray(rows, dtype=np.int64)
    out = np.full(len(rows), -1, dtype=np.int64)
    with src.guard("reading the units' peak electrodes"):
        lay = _electrode_layout(src, units_table)
        if lay.electrodes is None or not len(rows):
            return out
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        peak = np.full(len(rows), -1, dtype=np.int64)
        n_channels = np.full(len(rows), -1, dtype=np.int64)
        several = np.array([len(_electrodes_of(lay, int(r))) > 1 for r in srt], dtype=bool)
        if lay.wave_kind in ("3d", "ragged", "spikes") and several.any():
            need = np.flatnonzero(several)
            rf = src.remote_file
            prefetch = ChunkPrefetcher.for_file(rf)
            try:
                for b0 in range(0, len(need), int(batch_size)):
                    part = need[b0 : b0 + int(batch_size)]
                    per_unit = _read_waveforms(lay, srt[part], prefetch)
                    _, pk, _ = _peak_waveforms(per_unit, [[] for _ in part])
                    peak[part], n_channels[part] = pk, _channel_counts(lay, per_unit)
            finally:
                prefetch.release()
        out[order] = _peak_electrodes(lay, srt, peak, n_channels)
    return out


def _read_obs_intervals(lay: _Layout, rows: np.ndarray) -> list[np.ndarray] | None:
    """Observation intervals, (k, 2) each, of the units at ``rows``; None without the column."""
    if lay.obs_index is None:
        return None
    obs = [np.zeros((0, 2))] * len(rows)
    for pos, block, ends in _read_runs(lay.group["obs_intervals"], lay.obs_index, rows, np.float64):
        for j, o in enumerate(_split(block.reshape(-1, 2), ends)):
            obs[pos + j] = o
    return obs


def _read_batch(lay: _Layout, rows: np.ndarray, prefetch) -> UnitsBatch:
    m = len(rows)
    ids = lay.ids[rows]
    reasons: list[list[str]] = [[] for _ in range(m)]
    spikes, offsets = _read_spikes(lay, rows, prefetch, reasons)
    waves = None
    peak = np.full(m, -1, dtype=np.int64)
    n_channels = np.full(m, -1, dtype=np.int64)
    sign = np.zeros(m, dtype=np.int8)
    if lay.wave_kind is None:
        for r in reasons:
            r.append(lay.wave_note or no_waveform())
    else:
        why_none = None
        if lay.wave_kind == "spikes":
            per_unit, why_none = _read_spike_waveforms(lay, rows, prefetch)
        else:
            per_unit = _read_waveforms(lay, rows, prefetch)
        n_channels = _channel_counts(lay, per_unit)
        waves, peak, sign = _peak_waveforms(per_unit, reasons, why_none)
    peak_electrodes = _peak_electrodes(lay, rows, peak, n_channels)
    layers = _unit_layers(lay, rows, peak_electrodes)
    locations = _per_unit_electrode_value(lay, rows, peak_electrodes, lay.electrode_locations, "")
    obs = _read_obs_intervals(lay, rows)
    reason_str = np.array([join_reasons(r) for r in reasons], dtype=object)
    skipped = [SkippedUnit(int(ids[i]), reason_str[i]) for i in range(m) if reason_str[i]]
    return UnitsBatch(
        unit_ids=ids,
        unit_indices=rows.astype(np.int64),
        spike_times_s=spikes,
        spike_offsets=offsets,
        waveforms=waves,
        waveform_rate_hz=lay.wave_rate_hz,
        layers=layers,
        peak_channels=peak,
        obs_intervals=obs,
        extra={
            "peak_sign": sign,
            "waveform_rate_source": lay.wave_rate_source,
            "reasons": reason_str,
            "locations": locations,
            "peak_electrodes": peak_electrodes,
            "skipped": skipped,
            "problems": {s.unit_id: s.reason for s in skipped},
        },
    )
