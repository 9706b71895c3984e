"""Which raw recording a Units table's waveforms were cut from, and at what rate: the file's
ElectricalSeries (in ``acquisition`` and processing modules) that hold the units' electrodes, at
the rate they state or, stored with timestamps, the rate of their first timestamps. The reader
takes the waveform rate from them where the Units table states none (:mod:`._waveform_checks`)."""

from __future__ import annotations

from collections.abc import Iterator

import h5py
import numpy as np

#: Lowest rate of an ElectricalSeries taken for a raw recording that spike waveforms may be cut from
#: (LFP series are at 1-2.5 kHz).
MIN_RAW_RATE_HZ = 10000.0


def _electrical_series(h5) -> Iterator[tuple[str, object]]:
    """(name, group) of each ElectricalSeries in ``acquisition`` and in processing modules, also
    inside a container there (``LFP``, ``FilteredEphys``); a metadata walk, no data read."""

    def walk(group, depth: int):
        for name in group:
            try:
                if group.get(name, getclass=True) is not h5py.Group:
                    continue
                obj = group[name]
            except (KeyError, OSError, RuntimeError):  # a broken link (h5py: RuntimeError for an
                continue  # external link whose file is not there)
            kind = obj.attrs.get("neurodata_type")
            kind = kind.decode() if isinstance(kind, bytes) else kind
            if kind == "ElectricalSeries":
                yield name, obj
            elif depth > 0 and kind not in ("Units", "DynamicTable"):
                yield from walk(obj, depth - 1)

    for top, depth in (("acquisition", 1), ("processing", 2)):
        if top in h5 and isinstance(h5[top], h5py.Group):
            yield from walk(h5[top], depth)


def _listing(series: list[tuple[str, float]]) -> str:
    """``'a' (20000 Hz), 'b' (25000 Hz)`` for messages."""
    return ", ".join(f"'{name}' ({rate:g} Hz)" for name, rate in series)


def _series_rows(es) -> set[int] | None:
    """The electrodes-table rows an ElectricalSeries records (None where it does not say)."""
    try:
        return set(np.asarray(es["electrodes"][()], dtype=np.int64).ravel().tolist())
    except (KeyError, TypeError, ValueError):
        return None


#: Timestamps read to tell a series' rate, and how far any interval among them may stray from their
#: median for the series to count as sampled at one rate (a clock's jitter, not a gap).
TIMESTAMPS_READ = 10_001
TIMESTAMPS_TOLERANCE = 0.01


def _timestamps_rate(es) -> float:
    """The sampling rate (Hz) of an ElectricalSeries stored with ``timestamps`` (NeuroConv
    writes them where a recording has a time vector): intervals / span of its first
    :data:`TIMESTAMPS_READ` timestamps, where every interval lies within
    :data:`TIMESTAMPS_TOLERANCE` of their median; NaN otherwise (gaps, unsorted, too few,
    unreadable)."""
    try:
        t = np.asarray(es["timestamps"][:TIMESTAMPS_READ], dtype=np.float64)
    except (KeyError, OSError, RuntimeError, TypeError, ValueError):
        return np.nan
    d = np.diff(t)
    if len(d) < 10 or not np.isfinite(d).all():
        return np.nan
    step = float(np.median(d))
    if not step > 0 or np.abs(d - step).max() > TIMESTAMPS_TOLERANCE * step:
        return np.nan
    rate = len(d) / float(t[-1] - t[0])  # the span, not one interval: late times keep their digits
    for digits in range(5):  # float rounding of the intervals out: 40000.0, 24414.0625 (TDT)
        if abs(rate - round(rate, digits)) <= 1e-9 * rate:
            return round(rate, digits)
    return rate


def recording_rates(
    h5, unit_rows: np.ndarray | None = None, n_table: int | None = None
) -> tuple[list[tuple[str, float]], str]:
    """The raw ElectricalSeries (rate >= :data:`MIN_RAW_RATE_HZ`, not LFP) the units' waveforms were
    presumably cut from, as (name, rate), and where there are raw series but none is taken, why
    (naming them and their rates; "" otherwise). Where the units list electrodes (``unit_rows``,
    rows of the electrodes table): the series holding them, where together they hold all of them.
    Where they list none: the file's only raw series, where it records the whole electrodes table
    (``n_table`` rows). Never a series the units cannot be tied to (an EMG or sync channel, another
    probe). Series stored with timestamps instead of a rate count, at the rate of their first
    timestamps where those are regular (:func:`_timestamps_rate`), where the series that state a
    rate do not tie the units to a rate by themselves (a processed copy beside a rate-stated
    recording changes nothing; a probe recorded with timestamps beside one with a rate does)."""
    stated, timed = [], []
    for name, es in _electrical_series(h5):
        try:
            stated.append((name, es, float(es["starting_time"].attrs["rate"])))
        except (KeyError, TypeError, ValueError):
            timed.append((name, es))
    stated = [(n, es, r) for n, es, r in stated if np.isfinite(r) and r >= MIN_RAW_RATE_HZ]
    found = _tie(stated, unit_rows, n_table)
    if found[0] or not timed:
        return found
    timed = [(name, es, _timestamps_rate(es)) for name, es in timed]  # data, read only now
    timed = [(n, es, r) for n, es, r in timed if np.isfinite(r) and r >= MIN_RAW_RATE_HZ]
    both = _tie(stated + timed, unit_rows, n_table) if timed else found
    return both if both[0] or not stated else found


def _tie(raw, unit_rows, n_table) -> tuple[list[tuple[str, float]], str]:
    """:func:`recording_rates` over the raw series ``raw`` ((name, group, rate))."""
    if not raw:
        return [], ""
    every = [(name, rate) for name, _, rate in raw]
    if unit_rows is not None and len(unit_rows):
        want = set(np.unique(unit_rows).tolist())
        mine, covered = [], set()
        for name, es, rate in raw:
            rows = (_series_rows(es) or set()) & want
            if rows:
                mine.append((name, rate))
                covered |= rows
        if mine and covered == want:
            return mine, ""
        return [], (
            f"the file's raw ElectricalSeries {_listing(every)} hold {len(covered)} of the "
            f"{len(want)} electrodes the units list, so the waveforms cannot be tied to them"
        )
    if len(raw) > 1:
        return [], (
            f"the units list no electrodes, so which of the file's raw ElectricalSeries {_listing(every)} "
            "the waveforms were cut from cannot be told"
        )
    rows = _series_rows(raw[0][1])
    if n_table and rows == set(range(int(n_table))):
        return every, ""
    if rows is None:
        what = "does not say which electrodes it records"
    elif not n_table:
        what = f"records {len(rows)} electrodes of an electrodes table the file lacks"
    else:
        what = f"records {len(rows)} of the electrodes table's {int(n_table)} rows, not the whole table"
    return [], (
        f"the units list no electrodes, and the file's only raw ElectricalSeries {_listing(every)} {what}, "
        "so the waveforms cannot be tied to it"
    )
