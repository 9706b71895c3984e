"""How one file's Units table is laid out (:class:`_Layout`): its ragged indices, waveform layout
and rate, layer sources, the bytes a read will cost, and the warnings about a table written in a way
that would mislead (repeated ids, float32 or millisecond spike times, implausible waveforms)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidUnitsError, InvalidValueError, NotNWBError
from ._layers import map_location_to_layer
from ._source import Source
from ._units_tables import resolve_units_table
from ._waveform_checks import (  # noqa: F401  (importable from here too)
    CONTENT_CHECK_UNITS,
    FALLBACK_WAVEFORM_RATE_HZ,
    MAX_WAVEFORM_MS,
    MIN_WAVEFORM_MS,
    _implausible_waveforms,
    _samples_axis,
    _waveform_rate,
    checked_waveform_rate,
)

log = logging.getLogger(__name__)


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
    time_scale: TimeScaleCheck | None = None  # fed the spikes as they are read
    electrode_locations: np.ndarray | None = None  # (n_electrodes,) their ``location`` strings
    #: (n,) electrodes-table row of each unit's peak electrode from a ``peak_electrode`` column (what
    #: derived files write; -1 unknown), or None without one
    peak_electrode: np.ndarray | None = None
    where: str = ""  # the table, for messages
    noted: set = field(default_factory=set)  # the once-per-table warnings already given
    quiet: bool = False  # a second look at a table already read: its warnings were given then

    def note(self, key: str, msg: str, *args) -> None:
        """Log a warning about this table once (not at all when ``quiet``)."""
        if key not in self.noted and not self.quiet:
            log.warning(msg, *args)
        self.noted.add(key)


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


def _waveform_layout(
    g,
    where: str,
    n: int,
    require_waveforms: bool,
    stated_rate: float | None = None,
    electrode_counts: set[int] | None = None,
) -> tuple[str | None, np.ndarray | None, float | None, str, str]:
    """How ``waveform_mean`` is laid out: (kind, ragged index, sampling rate, where the rate came
    from, why it was set aside); None / "" without it. ``electrode_counts``: see
    :func:`_implausible_waveforms`."""
    if "waveform_mean" not in g:
        if require_waveforms:
            raise NotNWBError(
                f"{where} has no waveform_mean column; the C4 classifier needs each unit's mean waveform. "
                "Add waveform_mean to the Units table, or pass require_waveforms=False to read spikes only."
            )
        return None, None, None, "", ""
    wave_kind, wave_index = _waveform_kind(g, where, n)
    wm = g["waveform_mean"]
    rate, source = _waveform_rate(g, wm, where, stated_rate)
    why = _implausible_waveforms(wm, rate, wave_kind, electrode_counts)
    if why:
        if require_waveforms:
            raise NotNWBError(f"{where}: {why}.")
        log.warning("%s: %s; set aside: every unit is scored from its discharge alone.", where, why)
        return None, None, None, "", f"waveform_mean set aside ({why})"
    return wave_kind, wave_index, rate, source, ""


def _waveform_kind(g, where: str, n: int) -> tuple[str, np.ndarray | None]:
    """``waveform_mean``'s layout ("2d", "3d" or "ragged") and its ragged index (None unless ragged);
    :class:`NotNWBError` for a shape no reading fits."""
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
    return wave_kind, wave_index


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
    h5, g, where: str, ids: np.ndarray, quiet: bool = False
) -> tuple[tuple[np.ndarray, np.ndarray | None] | None, np.ndarray | None, np.ndarray | None]:
    """The units' electrodes (rows, index), the layer of each electrode and its ``location``
    string; (None, None, None) if unreadable, or if the units' electrodes are not rows of the
    electrodes table (an index out of range, or a malformed ``electrodes_index``): a converter that
    wrote one row wrong may have shifted them all, so none is trusted (a warning names the first)."""
    try:
        reg = g["electrodes"]
        table = h5[reg.attrs["table"]]
        locs = _strings(table["location"][()])
        electrode_layers = np.array([map_location_to_layer(x) for x in locs], dtype=object)
        rows = np.asarray(reg[()], dtype=np.int64).ravel()
        idx = None
        if "electrodes_index" in g:
            idx = _ragged_index(g, where, "electrodes", n_units=len(ids), data=rows)
        _check_electrode_rows(where, rows, idx, ids, len(locs))
        return (rows, idx), electrode_layers, locs
    except (KeyError, ValueError, TypeError, NotNWBError) as exc:  # InvalidUnitsError is a ValueError
        if not quiet:
            log.warning(
                "%s: cannot read the electrodes' locations (%s); layers and brain regions unknown",
                where,
                str(exc).removeprefix(f"{where}: "),
            )
        return None, None, None


def _check_electrode_rows(
    where: str, rows: np.ndarray, idx: np.ndarray | None, ids: np.ndarray, n_electrodes: int
) -> None:
    """:class:`InvalidUnitsError` naming the first unit whose ``electrodes`` are not rows
    0..n_electrodes-1 of the electrodes table (h5py would fail past the end and wrap a negative)."""
    bad = np.flatnonzero((rows < 0) | (rows >= n_electrodes))
    if not len(bad):
        return
    k = int(bad[0])
    unit = int(np.searchsorted(idx, k, side="right")) if idx is not None else k
    uid = f" (id {int(ids[unit])})" if unit < len(ids) else ""
    raise InvalidUnitsError(
        f"unit row {unit}{uid} lists electrode {int(rows[k])}, but the electrodes table has "
        f"{n_electrodes} rows ({len(bad)} of the {len(rows)} values of the Units electrodes column "
        "are out of range). They must be 0-based rows of the electrodes table: fix the converter "
        "that wrote them, or rewrite the Units table with pynwb (add_unit(electrodes=[...]))"
    )


def _electrode_counts(
    electrodes: tuple[np.ndarray, np.ndarray | None] | None, n_electrodes: int | None
) -> dict[int, str]:
    """The channel counts a 3-D ``waveform_mean`` of these units may have, each with what it counts
    (for messages): the number of electrodes every unit lists, where all list the same number, and
    the electrodes table's size only where no unit lists any (a (units, samples, channels) array
    over the whole probe). Where units list some electrodes but not all, the table's size says
    nothing about the waveforms' channels: a correct array whose sample count happens to equal it
    (64 samples on a 64-site probe) must not look swapped."""
    per_unit = None
    if electrodes is not None:
        rows, idx = electrodes
        per_unit = np.diff(np.r_[0, idx]) if idx is not None else np.ones(len(rows), dtype=np.int64)
    counts: dict[int, str] = {}
    if per_unit is not None and len(per_unit) and (per_unit == per_unit[0]).all() and per_unit[0] > 0:
        k = int(per_unit[0])
        every = " (all the electrodes table's)" if n_electrodes and k == int(n_electrodes) else ""
        counts[k] = f"the {k} electrodes each unit lists{every}"
    elif n_electrodes and (per_unit is None or not per_unit.any()):
        counts[int(n_electrodes)] = f"the electrodes table's {int(n_electrodes)} rows (the units list none)"
    return counts


#: Units column naming each unit's peak electrode (row of the electrodes table, -1 unknown), as
#: derived files write it; the reader prefers it where the waveform does not say (one channel).
PEAK_ELECTRODE_COLUMN = "peak_electrode"


def _peak_electrode_column(g, where: str, n: int, quiet: bool = False) -> np.ndarray | None:
    """The :data:`PEAK_ELECTRODE_COLUMN` of the table as int64 (one per unit), or None without a
    usable one (a warning says why it is not used)."""
    col = PEAK_ELECTRODE_COLUMN
    if col not in g:
        return None
    d = g[col]
    if f"{col}_index" in g or d.shape != (n,) or not np.issubdtype(d.dtype, np.integer):
        if not quiet:
            log.warning(
                "%s: column %r is not one integer per unit (shape %s, %s); not used for the units' "
                "electrodes",
                where,
                col,
                d.shape,
                d.dtype,
            )
        return None
    return np.asarray(d[()], dtype=np.int64)


def _electrode_layout(src: Source, units_table: str | None) -> _Layout:
    """What :func:`~nwb_celltype.io._units.unit_peak_electrodes` needs of a table that was already
    read: its ids, waveform layout and electrodes, without the reader's checks and warnings."""
    h5 = src.h5
    g = h5[resolve_units_table(h5, units_table)]
    where = f"{src.info.describe()}:{g.name}"
    ids = np.asarray(g["id"][()], dtype=np.int64)
    n = len(ids)
    wave_kind, wave_index = _waveform_kind(g, where, n) if "waveform_mean" in g else (None, None)
    electrodes = electrode_locations = None
    if "electrodes" in g:
        electrodes, _, electrode_locations = _electrode_layers(h5, g, where, ids, quiet=True)
    return _Layout(
        g,
        ids,
        None,
        wave_kind,
        wave_index,
        None,
        None,
        None,
        electrodes,
        None,
        electrode_locations=electrode_locations,
        peak_electrode=_peak_electrode_column(g, where, n, quiet=True),
        where=where,
        quiet=True,
    )


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
    time_scale_warned = False
    if "spike_times" in g:
        if "spike_times_index" not in g:
            raise NotNWBError(f"{where}: spike_times has no spike_times_index; the table is malformed.")
        spike_index = _ragged_index(g, where, "spike_times", n_units=n)
        time_scale_warned = _warn_spike_time_scale(g["spike_times"], where)
    electrodes = electrode_layers = electrode_locations = None
    if "electrodes" in g:  # layers (unless a column gives them) and brain regions
        electrodes, electrode_layers, electrode_locations = _electrode_layers(h5, g, where, ids)
    n_electrodes = None if electrode_locations is None else len(electrode_locations)
    wave_kind, wave_index, wave_rate, rate_source, wave_note = _waveform_layout(
        g, where, n, require_waveforms, stated_rate, _electrode_counts(electrodes, n_electrodes)
    )
    obs_index = None
    if "obs_intervals" in g and "obs_intervals_index" in g:
        obs_index = _ragged_index(g, where, "obs_intervals")
    layers_all = _layer_column(g, where, layer_column, n)
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
        TimeScaleCheck(where, done=time_scale_warned),
        electrode_locations,
        _peak_electrode_column(g, where, n) if electrodes is not None else None,
        where,
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


def _warn_spike_time_scale(st, where: str) -> bool:
    """Warn when ``spike_times`` cannot resolve the 1 ms bins the features count in (float32 far
    from the reference time), or ends so late that the times look like milliseconds (returns whether
    it said so)."""
    if not len(st):
        return False
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
        return True
    return False


#: Intervals under this (s) are a few percent or more of every unit's intervals when times are in
#: seconds (a 0.5 Hz irregular unit: ~5 %); in milliseconds read as seconds they would be intervals
#: under 0.1 ms, which real units do not have.
SHORT_INTERVAL_S = 0.1


class TimeScaleCheck:
    """Warns once per table when the spike intervals look like milliseconds read as seconds, for a
    session too short for the last-spike check (under 2 days, i.e. under 173 s recorded in ms):
    among the first ``n_units`` units with at least ``min_spikes`` spikes, the median share of
    intervals under :data:`SHORT_INTERVAL_S` is below ``max_share``. Fed batch by batch."""

    def __init__(
        self,
        where: str,
        *,
        done: bool = False,
        n_units: int = 20,
        min_units: int = 3,
        min_spikes: int = 50,
        max_share: float = 0.002,
    ) -> None:
        self.where = where
        self.n_units, self.min_units, self.min_spikes, self.max_share = (
            n_units,
            min_units,
            min_spikes,
            max_share,
        )
        self.shares: list[float] = []
        self.done = done  # True: nothing to check (the last-spike check has already warned)

    def feed(self, spikes: np.ndarray, offsets: np.ndarray) -> None:
        if self.done:
            return
        for a, b in zip(offsets[:-1], offsets[1:], strict=True):
            if b - a >= self.min_spikes:
                d = np.diff(spikes[a:b])
                d = d[d > 0]
                if len(d):
                    self.shares.append(float(np.mean(d < SHORT_INTERVAL_S)))
            if len(self.shares) >= self.n_units:
                self.finish()
                return

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        if len(self.shares) >= self.min_units and float(np.median(self.shares)) < self.max_share:
            log.warning(
                "%s: the spike times look like milliseconds: in %d units, a median %.2g %% of the "
                "intervals are under %g s (units recorded in seconds have several percent). NWB "
                "stores spike times in seconds; divide them by 1000.",
                self.where,
                len(self.shares),
                100 * float(np.median(self.shares)),
                SHORT_INTERVAL_S,
            )


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
