"""How one file's Units table is laid out (:class:`_Layout`): its ragged indices, waveform layout
and rate (:mod:`._waveform_checks`), layer sources, the bytes a read will cost, and the warnings
about a table written in a way that would mislead (repeated ids; float32, float32-rounded or
millisecond spike times, :class:`TimeScaleCheck`; implausible waveforms)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidUnitsError, InvalidValueError, NotNWBError
from ._layers import map_location_to_layer
from ._recording_rate import recording_rates
from ._source import Source
from ._units_tables import resolve_units_table
from ._waveform_checks import (  # noqa: F401  (importable from here too)
    CONTENT_CHECK_UNITS,
    FALLBACK_WAVEFORM_RATE_HZ,
    MAX_SPIKES_AVERAGED,
    MAX_WAVEFORM_MS,
    MIN_WAVEFORM_MS,
    _implausible_waveforms,
    _ragged_index,
    _samples_axis,
    _spike_waveforms_kind,
    _waveform_kind,
    _waveform_layout,
    _waveform_rate,
    check_ragged_index,
    checked_waveform_rate,
)

log = logging.getLogger(__name__)


@dataclass
class _Layout:
    """How the Units table of one file is laid out on disk."""

    group: object  # h5py.Group
    ids: np.ndarray
    spike_index: np.ndarray | None  # (n,) end offsets into spike_times
    wave_kind: str | None  # "2d" | "3d" | "ragged" | "spikes" (per-spike ``waveforms``) | None
    #: (n,) end offsets into waveform_mean rows (ragged), or into waveforms_index (spikes)
    wave_index: np.ndarray | None
    wave_rate_hz: float | None
    obs_index: np.ndarray | None
    layers_all: np.ndarray | None  # (n,) layer per unit from a units column
    electrodes: tuple[np.ndarray, np.ndarray | None] | None  # (rows per unit, index) into electrodes
    electrode_layers: np.ndarray | None  # (n_electrodes,) layer per electrodes-table row
    #: "file" | "stated" | "electrical_series:<name>" | "assumed" ("" without waveforms)
    wave_rate_source: str = ""
    wave_note: str = ""  # why the waveforms were set aside or not read ("" if they were read)
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


def _any_waveform_kind(g, where: str, n: int) -> tuple[str | None, np.ndarray | None]:
    """The waveforms' kind and index as :func:`_waveform_layout` finds them, without its checks."""
    if "waveform_mean" in g:
        return _waveform_kind(g, where, n)
    found = _spike_waveforms_kind(g, where, n) if "waveforms" in g else ""
    return (None, None) if isinstance(found, str) else found


def _electrodes_table_size(h5) -> int | None:
    """Rows of the file's electrodes table (None without one)."""
    try:
        return int(h5["general/extracellular_ephys/electrodes/id"].shape[0])
    except (KeyError, TypeError, IndexError, AttributeError):
        return None


def _electrode_layout(src: Source, units_table: str | None) -> _Layout:
    """What :func:`~nwb_celltype.io._units.unit_peak_electrodes` needs of a table that was already
    read: its ids, waveform layout and electrodes, without the reader's checks and warnings."""
    h5 = src.h5
    g = h5[resolve_units_table(h5, units_table)]
    where = f"{src.info.describe()}:{g.name}"
    ids = np.asarray(g["id"][()], dtype=np.int64)
    n = len(ids)
    wave_kind, wave_index = _any_waveform_kind(g, where, n)
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
    stored = None
    if "spike_times" in g:
        if "spike_times_index" not in g:
            raise NotNWBError(f"{where}: spike_times has no spike_times_index; the table is malformed.")
        spike_index = _ragged_index(g, where, "spike_times", n_units=n)
        stored = g["spike_times"].dtype
    electrodes = electrode_layers = electrode_locations = None
    if "electrodes" in g:  # layers (unless a column gives them) and brain regions
        electrodes, electrode_layers, electrode_locations = _electrode_layers(h5, g, where, ids)
    # the electrodes table's size: a channel count only where the units list no electrodes (a
    # (units, channels, samples) array over the probe has as many "samples"), and the rows a raw
    # ElectricalSeries must record for its rate to be the waveforms' where they list none
    n_table = len(electrode_locations) if electrode_locations is not None else _electrodes_table_size(h5)
    counts = _electrode_counts(
        electrodes, n_table if "electrodes" not in g or electrodes is not None else None
    )
    unit_rows = electrodes[0] if electrodes is not None else None
    wave_kind, wave_index, wave_rate, rate_source, wave_note = _waveform_layout(
        g,
        where,
        n,
        require_waveforms,
        stated_rate,
        counts,
        n_table,
        lambda: recording_rates(h5, unit_rows, n_table),
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
        TimeScaleCheck(where, stored_dtype=stored),
        electrode_locations,
        _peak_electrode_column(g, where, n) if electrodes is not None else None,
        where,
    )


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


#: Span of the spike times, first to last, in s, past which they may be ms rather than s (2 days).
#: Relative to the first spike, not to the session's reference time: a chronic recording may start
#: days after it, and the features do not depend on where the times start.
LATE_SPIKE_WARNING_S = 2 * 24 * 3600.0

# How intervals tell milliseconds from seconds. Times in ms read as seconds make every interval
# 1000x too long. Neurons are refractory for ~1 ms, so in ms data hardly any interval is under
# 0.1 "s" (0.1 ms), few are under 1 "s" (refractory violations, or the kHz bursts of a mossy fibre:
# 10-20 % in some) and the median interval is 2 "s" or more (no neuron keeps a median rate of
# 500 Hz). A unit recorded in seconds shows that pattern only when it fires slower than ~0.1 Hz,
# or slower than ~0.5 Hz and regularly, without bursts: a 0.5 Hz Poisson unit has 39 % of its
# intervals under 1 s and 5 % under 0.1 s, a regular 5 Hz unit all of them under 1 s (the share
# under 0.1 s alone took that one, or an unsorted train, for ms). A table is taken for ms when
# 3/4 of the units looked at are: a sorting whose units mostly fire that slowly is not expected.
#: Intervals (s) of which a unit in ms has almost none: 0.1 ms read as seconds.
MS_TINY_INTERVAL_S = 0.1
#: At most this share of its intervals under :data:`MS_TINY_INTERVAL_S` for a unit to look like ms.
MS_MAX_TINY_SHARE = 0.01
#: Intervals (s) of which a unit in ms has few: 1 ms, the refractory period, read as seconds.
MS_SHORT_INTERVAL_S = 1.0
#: At most this share of its intervals under :data:`MS_SHORT_INTERVAL_S` for a unit to look like ms.
MS_MAX_SHORT_SHARE = 0.2
#: Median interval (s) of a unit that looks like ms, at least: 2 ms, a 500 Hz median, read as seconds.
MS_MIN_MEDIAN_INTERVAL_S = 2.0
#: Share of the units looked at that must look like ms for the table to.
MS_UNIT_SHARE = 0.75
#: Resolution (s) of float32 past which float64 spike times that all are float32 values are warned
#: about (float32 steps are 0.12 ms from 1024 s on, 0.24 ms from 2048 s, 1 ms from 8192 s).
FLOAT32_STEP_WARNING_S = 1e-4


def _warn_span(where: str, span: float, agree: str = "") -> None:
    log.warning(
        "%s: the spike times span %.0f s (%.1f days) from the first spike to the last: are the times "
        "in milliseconds? NWB stores them in seconds.%s",
        where,
        span,
        span / 86400.0,
        agree,
    )


def _warn_float32(where: str, dtype, top: float) -> None:
    step_ms = float(np.spacing(np.asarray(top, dtype=dtype))) * 1e3
    log.warning(
        "%s: spike_times are stored as %s: near %.0f s they are resolved to only %.3g ms, coarse "
        "against the 1 ms bins of the ACG and ISI features; write them as float64.",
        where,
        np.dtype(dtype).name,
        top,
        step_ms,
    )


class TimeScaleCheck:
    """The checks of a table's spike times, fed batch by batch as they are read, then
    :meth:`finish`: warns once each when they are stored as float32 (``stored_dtype``); when,
    stored as float64, every time is a float32 value at magnitudes float32 resolves coarser than
    :data:`FLOAT32_STEP_WARNING_S` (rounded to float32 before writing); and when they look like
    milliseconds: the sorted intervals of 3/4 of the first ``n_units`` units with ``min_spikes``
    spikes or more look like ms (see :data:`MS_SHORT_INTERVAL_S`), or the times span more than
    :data:`LATE_SPIKE_WARNING_S` where fewer than ``min_units`` units tell. ``done``: the
    millisecond question was already asked."""

    def __init__(
        self,
        where: str,
        *,
        done: bool = False,
        stored_dtype=None,
        n_units: int = 20,
        min_units: int = 3,
        min_spikes: int = 50,
    ) -> None:
        self.where, self.stored = where, stored_dtype
        self.n_units, self.min_units, self.min_spikes = n_units, min_units, min_spikes
        self.ms_like: list[bool] = []
        self.done = done
        self.finished = False
        self.lo, self.hi, self.top = np.inf, -np.inf, 0.0
        self.n_times = self.n_fractional = 0
        self.f32_exact = True  # every time so far is a float32 value

    def feed(self, spikes: np.ndarray, offsets: np.ndarray) -> None:
        t = np.asarray(spikes, dtype=np.float64)
        # two passes over the batch where every time is finite (the usual case: min and max are),
        # a filtered copy only where some is not; the float32 question is settled on a sample first
        fin = t if len(t) and np.isfinite(t.min()) and np.isfinite(t.max()) else t[np.isfinite(t)]
        if len(fin):
            lo, hi = float(fin.min()), float(fin.max())
            self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
            self.top = max(self.top, abs(lo), abs(hi))
            self.n_times += len(fin)
            if self.f32_exact:
                with np.errstate(over="ignore"):
                    head = fin[:4096]
                    self.f32_exact = bool(np.array_equal(head, head.astype(np.float32))) and bool(
                        np.array_equal(fin, fin.astype(np.float32))
                    )
                if self.f32_exact:
                    self.n_fractional += int(np.count_nonzero(fin != np.round(fin)))
        if self.done or len(self.ms_like) >= self.n_units:
            return
        for a, b in zip(offsets[:-1], offsets[1:], strict=True):
            if b - a >= self.min_spikes:
                d = np.diff(np.sort(t[a:b]))  # a train need not be sorted
                d = d[d > 0]
                if len(d):
                    self.ms_like.append(
                        float(np.mean(d < MS_TINY_INTERVAL_S)) <= MS_MAX_TINY_SHARE
                        and float(np.mean(d < MS_SHORT_INTERVAL_S)) <= MS_MAX_SHORT_SHARE
                        and float(np.median(d)) >= MS_MIN_MEDIAN_INTERVAL_S
                    )
            if len(self.ms_like) >= self.n_units:
                return

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        if not self.n_times:
            return
        if self.stored is not None and np.dtype(self.stored).itemsize < 8:
            _warn_float32(self.where, self.stored, self.top)
        elif (
            self.f32_exact
            and self.n_fractional * 2 >= self.n_times  # not integers (times in samples)
            and float(np.spacing(np.float32(self.top))) > FLOAT32_STEP_WARNING_S
        ):
            log.warning(
                "%s: every one of the %d spike times is exactly a float32 value, though they are %s: "
                "they were rounded to float32 before being written. Near %.0f s float32 resolves only "
                "%.3g ms, coarse against the 1 ms bins of the ACG and ISI features (spikes closer than "
                "that become duplicates); write the spike times from their float64 values.",
                self.where,
                self.n_times,
                f"stored as {np.dtype(self.stored).name}" if self.stored is not None else "float64",
                self.top,
                float(np.spacing(np.float32(self.top))) * 1e3,
            )
        if not self.done:
            self._ask_milliseconds()

    def _ask_milliseconds(self) -> None:
        n, k = len(self.ms_like), int(sum(self.ms_like))
        judged = n >= self.min_units
        ms = judged and k >= MS_UNIT_SHARE * n
        pattern = (
            f"in {k} of {n} units, at most {100 * MS_MAX_TINY_SHARE:g} % of the intervals are under "
            f"{MS_TINY_INTERVAL_S:g} s and {100 * MS_MAX_SHORT_SHARE:g} % under {MS_SHORT_INTERVAL_S:g} s, "
            f"and the median interval is {MS_MIN_MEDIAN_INTERVAL_S:g} s or more"
        )
        span = self.hi - self.lo
        if span > LATE_SPIKE_WARNING_S and (ms or not judged):
            agree = f" Their intervals agree ({pattern}): in ms, divide them by 1000 (samples: by the rate)."
            _warn_span(self.where, span, agree if ms else "")
        elif ms:
            log.warning(
                "%s: the spike times look like milliseconds: %s, as in times recorded in ms and read as "
                "seconds (units recorded in seconds have many intervals under 1 s). NWB stores spike "
                "times in seconds; divide them by 1000.",
                self.where,
                pattern,
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
    :meth:`GuardedFile.fetch_rest` weighs a whole-file fetch against. Per-spike ``waveforms`` (read
    where the table has no ``waveform_mean``): the rows of each unit's first
    :data:`MAX_SPIKES_AVERAGED` spikes, :func:`_spike_waveform_bytes`."""
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
    return total + _spike_waveform_bytes(g, lay, rows)


def _spike_waveform_bytes(g, lay: _Layout | None, rows: np.ndarray | None) -> int:
    """Bytes of the per-spike ``waveforms`` and ``waveforms_index`` that averaging the units at
    ``rows`` (all: None, then with ``waveforms_index_index``) reads: their first
    :data:`MAX_SPIKES_AVERAGED` spikes' share of the spikes (0 where the per-spike waveforms are
    not read: a ``waveform_mean``, another layout, a malformed index)."""
    if lay is not None:
        if lay.wave_kind != "spikes":
            return 0
        index = lay.wave_index
    else:
        if "waveform_mean" in g or any(
            k not in g for k in ("waveforms", "waveforms_index", "waveforms_index_index")
        ):
            return 0
        if g["waveforms"].ndim != 2:
            return 0
        index = np.asarray(g["waveforms_index_index"][()], dtype=np.int64).ravel()  # (units,): small
    n_spikes = int(g["waveforms_index"].shape[0])
    if not n_spikes or index is None or not len(index):
        return 0
    per_unit = np.clip(np.diff(np.r_[0, index]), 0, MAX_SPIKES_AVERAGED)
    read = int(per_unit.sum() if rows is None else per_unit[rows].sum())
    fraction = min(1.0, read / n_spikes)  # of the spikes; their rows of waveforms alike
    total = _dataset_bytes(g["waveforms_index"], fraction) + _dataset_bytes(g["waveforms"], fraction)
    if rows is None:
        total += _dataset_bytes(g["waveforms_index_index"], 1.0)
    return total
