"""Stream the Units table of an opened source as :class:`~nwb_celltype.units.UnitsBatch` batches of
plain numpy arrays, reading each column in contiguous slices (never one HDF5 read per unit)."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidUnitsError, InvalidValueError, NotNWBError
from ..units import SkippedUnit, UnitsBatch
from ._layers import map_location_to_layer
from ._prefetch import ChunkPrefetcher
from ._source import Source, open_source

log = logging.getLogger(__name__)

__all__ = ["map_location_to_layer", "read_units", "resolve_units_table", "units_table_paths"]

#: Waveform sampling rate assumed when the file does not say (``waveform_mean.sampling_rate``).
FALLBACK_WAVEFORM_RATE_HZ = 30000.0


@dataclass
class _Layout:
    """How the Units table of one file is laid out on disk."""

    group: object  # h5py.Group
    ids: np.ndarray
    spike_index: np.ndarray | None  # (n,) end offsets into spike_times
    wave_kind: str | None  # "2d" | "3d" | "ragged" | None
    wave_index: np.ndarray | None  # (n,) end offsets into waveform_mean rows (ragged)
    wave_rate_hz: float | None
    obs_index: np.ndarray | None
    layers_all: np.ndarray | None  # (n,) layer per unit from a units column
    electrodes: tuple[np.ndarray, np.ndarray | None] | None  # (rows per unit, index) into electrodes
    electrode_layers: np.ndarray | None  # (n_electrodes,) layer per electrodes-table row
    wave_rate_source: str = ""  # "file" | "stated" | "assumed" ("" without waveforms)
    wave_note: str = ""  # why waveform_mean was set aside ("" if it was not)


def _is_units(obj) -> bool:
    nt = obj.attrs.get("neurodata_type") if hasattr(obj, "attrs") else None
    return (nt.decode() if isinstance(nt, bytes) else nt) == "Units"


def _is_units_table(h5, path: str) -> bool:
    """Whether ``path`` is a Units table this reader and the writers can use: ``units`` (a group),
    or a group of type Units at ``processing/<module>/<name>``."""
    obj = h5.get(path)
    if obj is None or not hasattr(obj, "keys"):
        return False
    parts = path.split("/")
    return parts == ["units"] or (len(parts) == 3 and parts[0] == "processing" and _is_units(obj))


def units_table_paths(h5) -> list[str]:
    """HDF5 paths of the file's Units tables: ``units`` (``NWBFile.units``) first if present, then
    every Units table in a processing module (``processing/<module>/<name>``, e.g. a second sorting)."""
    found = ["units"] if _is_units_table(h5, "units") else []
    proc = h5.get("processing")
    if proc is not None:
        for mod_name, mod in proc.items():
            for name in getattr(mod, "keys", list)():
                if _is_units_table(h5, f"processing/{mod_name}/{name}"):
                    found.append(f"processing/{mod_name}/{name}")
    return found


def resolve_units_table(h5, requested: str | None = None) -> str:
    """The HDF5 path of the Units table to read: ``requested`` (a path in the file such as
    ``processing/ecephys/kilosort``; a leading "/" is allowed) where given, else ``units``, else the
    file's only Units table in a processing module. Raises :class:`~nwb_celltype.errors.NotNWBError`
    naming the file's Units tables when ``requested`` is not one, or when several could be meant.
    The processing modules are listed only where the answer needs them (remote reads)."""
    want = "units" if requested is None else str(requested).strip().strip("/")
    if _is_units_table(h5, want):
        return want
    paths = units_table_paths(h5)
    listed = ", ".join(f"/{p}" for p in paths) or "none"
    if requested is not None:
        raise NotNWBError(
            f"the file has no Units table at /{want}; its Units tables: {listed}. Pass one of them "
            "(units_table=..., --units-table)."
        )
    if len(paths) == 1:
        return paths[0]
    if paths:
        raise NotNWBError(
            f"the file has no /units table but several Units tables ({listed}); choose one with "
            "units_table=... (--units-table)."
        )
    raise NotNWBError(
        "the file has no Units table (/units); expected spike-sorted units. Add them with "
        "NWBFile.add_unit (pynwb) or export your sorting with a tool that writes NWB Units."
    )


def _strings(arr: np.ndarray) -> np.ndarray:
    return np.array(
        [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in arr], dtype=object
    )


def check_ragged_index(where: str, column: str, index: np.ndarray, n_data: int) -> None:
    """Refuse a ragged column's ``*_index`` that would hand one unit another's data: it must be
    non-decreasing, start at >= 0 and end within the ``n_data`` rows of the data.

    Raises
    ------
    InvalidUnitsError
        Naming the first bad row and how to fix the file.
    """
    if len(index) == 0:
        return
    if index[0] < 0:
        raise InvalidUnitsError(
            f"{where}: {column}_index starts at {int(index[0])} (< 0); the Units table is malformed. "
            "Rewrite the file with pynwb (add_unit) or fix the sorter export."
        )
    drops = np.flatnonzero(np.diff(index) < 0)
    if len(drops):
        i = int(drops[0]) + 1
        raise InvalidUnitsError(
            f"{where}: {column}_index decreases at row {i} ({int(index[i - 1])} -> {int(index[i])}); "
            f"it must be non-decreasing, else units would get other units' {column}. The Units table is "
            "malformed: rewrite the file with pynwb (add_unit) or fix the sorter export."
        )
    if index[-1] > n_data:
        raise InvalidUnitsError(
            f"{where}: {column}_index ends at {int(index[-1])}, past the {n_data} values of {column}; "
            "the Units table is malformed (truncated data?). Rewrite the file or fix the sorter export."
        )


def _ragged_index(g, where: str, column: str, n_units: int | None = None, data=None) -> np.ndarray:
    """Read the ``*_index`` of a ragged column (its data: ``data``, else ``g[column]``) and check it."""
    index = np.asarray(g[f"{column}_index"][()], dtype=np.int64)
    if n_units is not None and index.shape != (n_units,):
        raise NotNWBError(
            f"{where}: {column}_index has {index.shape[0]} entries for {n_units} units; the table "
            "is malformed."
        )
    check_ragged_index(where, column, index, (g[column] if data is None else data).shape[0])
    return index


#: Shortest plausible span of a mean spike waveform, in ms: a shorter waveform_mean is set aside.
MIN_WAVEFORM_MS = 0.8


def checked_waveform_rate(rate) -> float | None:
    """A stated waveform sampling rate as float (None stays None); a non-positive or non-finite one
    is refused (:class:`~nwb_celltype.errors.InvalidValueError`)."""
    if rate is None:
        return None
    if not (np.isfinite(float(rate)) and float(rate) > 0):
        raise InvalidValueError(f"waveform_rate_hz must be a positive sampling rate in Hz, got {rate!r}.")
    return float(rate)


def _waveform_rate(g, wm, where: str, stated: float | None = None) -> tuple[float, str]:
    """The waveforms' sampling rate and where it came from: ``stated`` (the user's), else
    ``waveform_mean.sampling_rate``, else the table's ``waveform_rate`` ("file"), else 30 kHz
    ("assumed", with a warning)."""
    rate = wm.attrs.get("sampling_rate", g.attrs.get("waveform_rate"))
    ok = rate is not None and np.isfinite(float(rate)) and float(rate) > 0
    if stated is not None:
        if ok and abs(float(rate) - float(stated)) > 1e-6 * float(stated):
            log.warning(
                "%s: the file says waveforms are at %g Hz; using the stated %g Hz", where, float(rate), stated
            )
        return float(stated), "stated"
    if not ok:
        log.warning(
            "%s: waveform_mean has no sampling_rate; assuming %g Hz. State it (annotate --waveform-rate, "
            "waveform_rate_hz=...), or set Units(waveform_rate=...) when writing the file.",
            where,
            FALLBACK_WAVEFORM_RATE_HZ,
        )
        return FALLBACK_WAVEFORM_RATE_HZ, "assumed"
    return float(rate), "file"


def _implausible_waveforms(wm, rate: float, kind: str) -> str:
    """Why ``waveform_mean`` cannot hold spike waveforms at ``rate`` ('' if it can): fewer samples
    than :data:`MIN_WAVEFORM_MS` spans, as when the axes are (units, channels, samples)."""
    n_samples = int(wm.shape[1])
    span_ms = n_samples / rate * 1e3
    if span_ms >= MIN_WAVEFORM_MS:
        return ""
    hint = (  # no "; ": reasons are split there
        f", so its axes may be (units, channels, samples) {tuple(wm.shape)} where NWB's layout is "
        "(units, samples, channels)"
        if kind == "3d" and wm.shape[2] > wm.shape[1]
        else ": is the sampling rate right?"
    )
    return (
        f"waveform_mean has {n_samples} samples, {span_ms:.2f} ms at {rate:g} Hz: shorter than a spike "
        f"waveform ({MIN_WAVEFORM_MS} ms){hint}"
    )


def _waveform_layout(
    g, where: str, n: int, require_waveforms: bool, stated_rate: float | None = None
) -> tuple[str | None, np.ndarray | None, float | None, str, str]:
    """How ``waveform_mean`` is laid out: (kind, ragged index, sampling rate, where the rate came
    from, why it was set aside); None / "" without it."""
    if "waveform_mean" not in g:
        if require_waveforms:
            raise NotNWBError(
                f"{where} has no waveform_mean column; the C4 classifier needs each unit's mean waveform. "
                "Add waveform_mean to the Units table, or pass require_waveforms=False to read spikes only."
            )
        return None, None, None, "", ""
    wm = g["waveform_mean"]
    if "waveform_mean_index_index" in g:
        raise NotNWBError(
            f"{where}: waveform_mean is doubly ragged (waveform_mean_index_index); expected "
            "(units, samples), (units, samples, channels) or one index level (rows per channel)."
        )
    wave_index = None
    if "waveform_mean_index" in g:
        wave_kind = "ragged"
        wave_index = _ragged_index(g, where, "waveform_mean", data=wm)
        if wm.ndim != 2:
            raise NotNWBError(f"{where}: ragged waveform_mean must be 2-D (rows, samples), got {wm.shape}.")
    elif wm.ndim == 2:
        wave_kind = "2d"
    elif wm.ndim == 3:
        wave_kind = "3d"
    else:
        raise NotNWBError(
            f"{where}: waveform_mean has shape {wm.shape}; expected (units, samples) or "
            "(units, samples, channels)."
        )
    if wave_kind != "ragged" and wm.shape[0] != n:
        hint = "; its axes may be reversed (MatNWB writes them in the other order)" if n in wm.shape else ""
        raise NotNWBError(f"{where}: waveform_mean has {wm.shape[0]} rows for {n} units{hint}.")
    rate, source = _waveform_rate(g, wm, where, stated_rate)
    why = _implausible_waveforms(wm, rate, wave_kind)
    if why:
        if require_waveforms:
            raise NotNWBError(f"{where}: {why}.")
        log.warning("%s: %s; set aside: every unit is scored from its discharge alone.", where, why)
        return None, None, None, "", f"waveform_mean set aside ({why})"
    return wave_kind, wave_index, rate, source, ""


def _layer_column(g, where: str, layer_column: str | None, n: int) -> np.ndarray | None:
    """Each unit's layer from a units column (``layer_column``, else ``layer``); None without one."""
    cols = [k for k in g.keys() if not k.endswith("_index")]
    col = layer_column
    if col is None and "layer" in g:
        col = "layer"
    if col is None:
        return None
    if col not in g:
        raise InvalidValueError(
            f"layer_column={col!r} is not a column of {where}; columns: {', '.join(sorted(cols))}."
        )
    if f"{col}_index" in g:
        raise InvalidValueError(f"layer_column={col!r} of {where} is ragged; expected one value per unit.")
    layers_all = np.array([map_location_to_layer(x) for x in _strings(g[col][()])], dtype=object)
    if len(layers_all) != n:
        raise NotNWBError(f"{where}: column {col!r} has {len(layers_all)} values for {n} units.")
    return layers_all


def _electrode_layers(
    h5, g, where: str
) -> tuple[tuple[np.ndarray, np.ndarray | None] | None, np.ndarray | None]:
    """The units' electrodes (rows, index) and the layer of each electrode; (None, None) if unreadable."""
    try:
        reg = g["electrodes"]
        table = h5[reg.attrs["table"]]
        locs = _strings(table["location"][()])
        electrode_layers = np.array([map_location_to_layer(x) for x in locs], dtype=object)
        rows = np.asarray(reg[()], dtype=np.int64)
        idx = np.asarray(g["electrodes_index"][()], dtype=np.int64) if "electrodes_index" in g else None
        return (rows, idx), electrode_layers
    except (KeyError, ValueError, TypeError) as exc:
        log.warning("%s: cannot read the electrodes' locations (%s); layers unknown", where, exc)
        return None, None


def _inspect(
    src: Source,
    layer_column: str | None,
    require_waveforms: bool,
    whole_table: bool,
    units_table: str | None,
    stated_rate: float | None = None,
) -> _Layout:
    h5 = src.h5
    g = h5[resolve_units_table(h5, units_table)]
    where = f"{src.info.describe()}:{g.name}"
    if "id" not in g:
        raise NotNWBError(f"{where} has no 'id' dataset; it is not a valid NWB Units table.")
    if whole_table and src.remote_file is not None:
        # before any column is read: when the table is most of the file, fetch it in one go
        src.remote_file.fetch_rest(_bytes_to_read(g, None, None))
    ids = np.asarray(g["id"][()], dtype=np.int64)
    n = len(ids)
    _warn_repeated_ids(ids, where)
    spike_index = None
    if "spike_times" in g:
        if "spike_times_index" not in g:
            raise NotNWBError(f"{where}: spike_times has no spike_times_index; the table is malformed.")
        spike_index = _ragged_index(g, where, "spike_times", n_units=n)
        _warn_spike_time_scale(g["spike_times"], where)
    wave_kind, wave_index, wave_rate, rate_source, wave_note = _waveform_layout(
        g, where, n, require_waveforms, stated_rate
    )
    obs_index = None
    if "obs_intervals" in g and "obs_intervals_index" in g:
        obs_index = _ragged_index(g, where, "obs_intervals")
    layers_all = _layer_column(g, where, layer_column, n)
    electrodes = electrode_layers = None
    if layers_all is None and "electrodes" in g:
        electrodes, electrode_layers = _electrode_layers(h5, g, where)
    return _Layout(
        g,
        ids,
        spike_index,
        wave_kind,
        wave_index,
        wave_rate,
        obs_index,
        layers_all,
        electrodes,
        electrode_layers,
        rate_source,
        wave_note,
    )


#: Latest spike time, in s, past which the times are more likely ms than s (2 days).
LATE_SPIKE_WARNING_S = 2 * 24 * 3600.0


def _warn_repeated_ids(ids: np.ndarray, where: str) -> None:
    """Warn when unit ids repeat (two sortings concatenated?): labels go to rows, but whatever keys
    units by id (figures, phy exports, pynapple) cannot tell those units apart."""
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        rep = uniq[counts > 1]
        log.warning(
            "%s: %d unit ids occur more than once (e.g. %s); NWB expects one id per unit. Labels are "
            "written per row, but tools that key units by id cannot tell these units apart.",
            where,
            len(rep),
            ", ".join(str(int(u)) for u in rep[:5]),
        )


def _warn_spike_time_scale(st, where: str) -> None:
    """Warn when ``spike_times`` cannot resolve the 1 ms bins the features count in (float32 far
    from the reference time), or ends so late that the times look like milliseconds."""
    if not len(st):
        return
    last = abs(float(st[-1]))
    if np.dtype(st.dtype).itemsize < 8:
        step_ms = float(np.spacing(np.asarray(last, dtype=st.dtype))) * 1e3
        log.warning(
            "%s: spike_times are stored as %s: near %.0f s they are resolved to only %.3g ms, coarse "
            "against the 1 ms bins of the ACG and ISI features; write them as float64.",
            where,
            np.dtype(st.dtype).name,
            last,
            step_ms,
        )
    if last > LATE_SPIKE_WARNING_S:
        log.warning(
            "%s: the last spike time is %.0f s (%.1f days) after the session's reference time: are "
            "the times in milliseconds? NWB stores them in seconds.",
            where,
            last,
            last / 86400.0,
        )


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
    per run of consecutive rows; the VectorIndex columns are read once.

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
        location of each unit's peak-channel electrode (``electrodes`` column), else ``unknown``.
    unit_ids : sequence of int or None
        Read only these unit ids (Units ``id`` column), in table order.
    require_waveforms : bool
        Raise :class:`~nwb_celltype.errors.NotNWBError` when the table has no ``waveform_mean``
        column (default). False yields NaN waveforms (``waveform_rate_hz`` None) instead.
    units_table : str or None
        Path of the Units table in the file (e.g. ``processing/ecephys/kilosort``, a second
        sorting); default ``units``, else the file's only Units table (:func:`resolve_units_table`).
    waveform_rate_hz : float or None
        Sampling rate of ``waveform_mean`` where the file does not state it, or states it wrongly
        (default: the file's ``waveform_mean.sampling_rate`` or ``waveform_rate``, else 30 kHz with a
        warning; ``batch.extra["waveform_rate_source"]`` says "stated", "file" or "assumed"). A
        ``waveform_mean`` spanning less than 0.8 ms at its rate (12 samples: axes (units,
        channels, samples)?) is set aside with a warning and a reason on every unit (an error with
        ``require_waveforms``).

    Yields
    ------
    UnitsBatch
        ``unit_ids`` (n,) int64, ``unit_indices`` (n,) int64 rows of the Units table,
        ``spike_times_s`` float64 (s) + ``spike_offsets`` (n+1,) int64, ``waveforms`` (n, samples)
        float32 (file units, peak channel, sign as recorded), ``waveform_rate_hz``, ``layers`` (n,)
        str, ``peak_channels`` (n,) int64 (index into the unit's channels; -1 unknown),
        ``obs_intervals`` list of (k, 2) float64 (s) or None; ``extra``: ``peak_sign`` (n,) int8
        (+1 positive, -1 negative spike, 0 unknown), ``reasons``, ``skipped``, ``problems``, ``source``
        (``SourceInfo.to_dict()``).

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
    prefetch = ChunkPrefetcher(rf, max(rf.remfile._max_chunk_size, 1 << 20) if rf is not None else 0)
    for b0 in range(0, len(rows), batch_size):
        brows = rows[b0 : b0 + batch_size]
        with src.guard(f"reading units {b0}..{b0 + len(brows) - 1}"):
            batch = _read_batch(lay, brows, prefetch)
        batch.extra["source"] = info
        if b0 + batch_size >= len(rows):
            prefetch.release()
        yield batch


def _dataset_bytes(dset, fraction: float) -> int:
    """Bytes of a dataset that reading ``fraction`` of its rows costs: its in-memory size for an
    unfiltered dataset (no chunk-index read needed), its storage size for a compressed one."""
    if dset.compression is not None or getattr(dset, "_filters", None):
        size = dset.id.get_storage_size()
    else:
        size = dset.size * dset.dtype.itemsize
    return int(size * fraction)


def _bytes_to_read(g, lay: _Layout | None, rows: np.ndarray | None) -> int:
    """Storage bytes of the per-unit columns that reading the rows ``rows`` costs (every row when
    ``rows`` is None; then the index columns are counted too): what
    :meth:`GuardedFile.fetch_rest` weighs a whole-file fetch against."""
    total = 0
    names = ["spike_times", "waveform_mean", "obs_intervals"]
    if rows is None:
        names += ["id", "spike_times_index", "waveform_mean_index", "obs_intervals_index"]
        names += ["electrodes", "electrodes_index"]
    index_of = {}
    if lay is not None:
        ragged_wave = lay.wave_index if lay.wave_kind == "ragged" else None
        index_of = {
            "spike_times": lay.spike_index,
            "waveform_mean": ragged_wave,
            "obs_intervals": lay.obs_index,
        }
    for name in names:
        if name not in g:
            continue
        fraction = 1.0
        if rows is not None:
            index = index_of.get(name)
            if index is not None and len(index) and index[-1] > 0:
                starts = np.r_[0, index[:-1]]
                fraction = float((index[rows] - starts[rows]).sum()) / float(index[-1])
            else:
                fraction = len(rows) / max(len(lay.ids), 1)
        total += _dataset_bytes(g[name], fraction)
    return total


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
        reasons[i].append("no spikes")
    return spikes, np.r_[0, np.cumsum(counts)].astype(np.int64)


def _read_waveforms(lay: _Layout, rows: np.ndarray, prefetch) -> list[np.ndarray]:
    """Mean waveform of each unit at ``rows`` as (samples, channels), one read per run of consecutive rows."""
    wm = lay.group["waveform_mean"]
    per_unit: list[np.ndarray] = [np.zeros((0, 0))] * len(rows)
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


def _peak_waveforms(
    per_unit: list[np.ndarray], reasons: list[list[str]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each unit's waveform on its peak channel, that channel and the sign; adds why not to ``reasons``."""
    m = len(per_unit)
    peak = np.full(m, -1, dtype=np.int64)
    sign = np.zeros(m, dtype=np.int8)
    n_samples = max((w.shape[0] for w in per_unit), default=0)
    waves = np.full((m, n_samples), np.nan, dtype=np.float32)
    if m and len({w.shape for w in per_unit}) == 1 and per_unit[0].size:  # one array op per batch
        stack = np.stack(per_unit)
        has, ch, sg = _peaks(stack)
        for i in np.flatnonzero(~has):
            reasons[i].append("no waveform")
        good = np.flatnonzero(has)
        peak[good], sign[good] = ch[good], sg[good]
        waves[good] = stack[good, :, ch[good]]
        return waves, peak, sign
    for i, w in enumerate(per_unit):  # ragged channels or lengths: unit by unit
        has, ch, sg = _peaks(w[None]) if w.size else (np.zeros(1, bool), None, None)
        if not has[0]:
            reasons[i].append("no waveform")
            continue
        if w.shape[0] != n_samples:
            reasons[i].append(f"waveform has {w.shape[0]} samples, others {n_samples}")
            continue
        peak[i], sign[i] = ch[0], sg[0]
        waves[i] = w[:, ch[0]]
    return waves, peak, sign


def _unit_layers(lay: _Layout, rows: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """Layer of each unit at ``rows``: layer column, else peak-channel electrode's location, else unknown."""
    if lay.layers_all is not None:
        return lay.layers_all[rows].copy()
    layers = np.full(len(rows), "unknown", dtype=object)
    if lay.electrodes is None:
        return layers
    erows, eidx = lay.electrodes
    for i, r in enumerate(rows):
        if eidx is None:
            mine = erows[r : r + 1]
        else:
            a, b = _bounds(eidx, int(r), int(r) + 1)
            mine = erows[a:b]
        if len(mine) == 0:
            continue
        if 0 <= peak[i] < len(mine) and len(mine) > 1:
            layers[i] = lay.electrode_layers[mine[peak[i]]]
        else:
            cand = set(lay.electrode_layers[mine])
            layers[i] = cand.pop() if len(cand) == 1 else "unknown"
    return layers


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
    sign = np.zeros(m, dtype=np.int8)
    if lay.wave_kind is None:
        for r in reasons:
            r.append(lay.wave_note or "no waveform")
    else:
        waves, peak, sign = _peak_waveforms(_read_waveforms(lay, rows, prefetch), reasons)
    layers = _unit_layers(lay, rows, peak)
    obs = _read_obs_intervals(lay, rows)
    reason_str = np.array(["; ".join(r) for r in reasons], dtype=object)
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
            "skipped": skipped,
            "problems": {s.unit_id: s.reason for s in skipped},
        },
    )
