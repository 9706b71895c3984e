"""How a Units table's waveforms are laid out: ``waveform_mean`` (or, without it, the per-spike
``waveforms`` the reader averages), their sampling rate (the file's, the user's, the recording's
ElectricalSeries', or assumed), and whether the axes are plausibly (units, samples[, channels]): a
span of samples no mean spike waveform has, a sample count that matches the electrodes while the
channel count matches none, as many samples as channels, or content whose last axis looks like
time sets it aside (checked on content where the sizes alone mislead). Also the checks of the
ragged ``*_index`` columns every per-unit column shares."""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable

import numpy as np

from ..errors import InvalidUnitsError, InvalidValueError, NotNWBError
from ..reasons import spike_waveforms_not_averaged, waveform_column_set_aside

log = logging.getLogger(__name__)

#: Waveform sampling rate assumed when neither the file nor the user says.
FALLBACK_WAVEFORM_RATE_HZ = 30000.0
#: Spikes per unit whose per-spike ``waveforms`` are averaged where the table has no
#: ``waveform_mean`` (the unit's first ones): bounds what is read per unit.
MAX_SPIKES_AVERAGED = 1000

#: Unneeded bytes between two units' averaged spikes that one read spans rather than making two
#: (as :meth:`GuardedFile.missing_spans` merges ranges): on a remote file a round trip costs about
#: as much as a few MB, and locally the spanned index entries are what is read anyway.
SPAN_GAP_BYTES = 4 * 1024**2
#: Largest span of per-spike ``waveforms`` (bytes) read for a group of units at once (on a remote
#: file: at most the prefetcher's request size, which also bounds the memory it holds).
SPAN_MAX_BYTES = 64 * 1024**2


def averaged_spikes(index: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and stop spike (rows of ``waveforms_index``) that averaging each unit at ``rows``
    reads: its first :data:`MAX_SPIKES_AVERAGED` ones (``index``: ``waveforms_index_index``)."""
    starts = np.r_[0, index[:-1]].astype(np.int64)[rows]
    return starts, np.minimum(index[rows].astype(np.int64), starts + MAX_SPIKES_AVERAGED)


def spike_groups(
    index: np.ndarray, rows: np.ndarray, spike_bytes: float, max_bytes: int = SPAN_MAX_BYTES
) -> list[tuple[int, int, int, int]]:
    """The units at ``rows`` (sorted) in groups whose averaged spikes are read as one span:
    (first position in ``rows``, stop position, first spike, stop spike). Consecutive units join a
    group while the spikes skipped between them cost at most :data:`SPAN_GAP_BYTES` and the span
    at most ``max_bytes`` (``spike_bytes``: bytes of one spike, its rows of ``waveforms`` and its
    ``waveforms_index`` entry; a unit alone may exceed it). Units without spikes join any group."""
    a, b = averaged_spikes(index, rows)
    groups: list[tuple[int, int, int, int]] = []
    p0, lo, hi = 0, -1, -1
    for p in range(len(rows)):
        if b[p] <= a[p]:
            continue
        if lo < 0:
            lo, hi = int(a[p]), int(b[p])
        elif (
            hi <= a[p]
            and (a[p] - hi) * spike_bytes <= SPAN_GAP_BYTES
            and (b[p] - lo) * spike_bytes <= max_bytes
        ):
            hi = int(b[p])
        else:
            groups.append((p0, p, lo, hi))
            p0, lo, hi = p, int(a[p]), int(b[p])
    groups.append((p0, len(rows), max(lo, 0), max(hi, 0)))
    return groups


#: Shortest plausible span of a mean spike waveform, in ms: a shorter waveform_mean is set aside.
MIN_WAVEFORM_MS = 0.8
#: Longest plausible span, in ms: mean-waveform snippets are 1-6 ms (Kilosort's 82 samples at 30 kHz
#: are 2.7 ms, C4's windows 6 ms); a longer waveform_mean is set aside (a 384-channel probe's
#: (units, channels, samples) array read as samples spans 12.8 ms at 30 kHz).
MAX_WAVEFORM_MS = 10.0


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


def checked_waveform_rate(rate) -> float | None:
    """A stated waveform sampling rate as float (None stays None); a non-positive or non-finite one
    is refused (:class:`~nwb_celltype.errors.InvalidValueError`)."""
    if rate is None:
        return None
    if not isinstance(rate, numbers.Real) or isinstance(rate, bool | np.bool_):
        raise InvalidValueError(
            f"waveform_rate_hz must be a positive sampling rate in Hz (a number), got {rate!r} "
            f"({type(rate).__name__})."
        )
    if not (np.isfinite(float(rate)) and float(rate) > 0):
        raise InvalidValueError(f"waveform_rate_hz must be a positive sampling rate in Hz, got {rate!r}.")
    return float(rate)


def _column(wm) -> str:
    """The name of a waveforms dataset, for messages (``waveform_mean`` where it has none)."""
    return str(getattr(wm, "name", None) or "waveform_mean").rsplit("/", 1)[-1]


def _waveform_rate(
    g,
    wm,
    where: str,
    stated: float | None = None,
    recording: Callable[[], tuple[list[tuple[str, float]], str]] | None = None,
) -> tuple[float, str]:
    """The waveforms' sampling rate and where it came from: ``stated`` (the user's), else
    ``wm.sampling_rate``, else the table's ``waveform_rate`` ("file"), else the rate of the raw
    ElectricalSeries the units were recorded on, where ``recording()`` (:func:`._recording_rate.recording_rates`)
    finds them all at one rate ("electrical_series:<name>", with a warning: spike sorters cut
    the waveforms from the recording at its rate), else 30 kHz ("assumed", with a warning that
    names the file's raw series and their rates, and why they were not used)."""
    rate = wm.attrs.get("sampling_rate", g.attrs.get("waveform_rate"))
    ok = rate is not None and np.isfinite(float(rate)) and float(rate) > 0
    if stated is not None:
        if ok and abs(float(rate) - float(stated)) > 1e-6 * float(stated):
            log.warning(
                "%s: the file says waveforms are at %g Hz; using the stated %g Hz", where, float(rate), stated
            )
        return float(stated), "stated"
    if ok:
        return float(rate), "file"
    column = _column(wm)
    series, why_not = recording() if recording is not None else ([], "")
    names = ", ".join(f"'{name}'" for name, _ in series)
    rates = sorted({r for _, r in series})
    if len(rates) == 1:
        log.warning(
            "%s: %s has no sampling_rate; the file's ElectricalSeries %s is at %g Hz, so the waveforms "
            "are read at %g Hz, the rate spike sorters cut them from the recording at. If they were not "
            "cut from it, pass --waveform-rate N / waveform_rate_hz=N with their rate.",
            where,
            column,
            names,
            rates[0],
            rates[0],
        )
        return rates[0], "electrical_series:" + ",".join(name for name, _ in series)
    if rates:
        why_not = (
            f"the file's ElectricalSeries {names} are at {' / '.join(f'{r:g}' for r in rates)} Hz, "
            "together holding the units' electrodes"
        )
    also = f" ({why_not}: if the waveforms were cut from one, state its rate)" if why_not else ""
    log.warning(
        "%s: %s has no sampling_rate; assuming %g Hz%s. State it (--waveform-rate of annotate, "
        "annotate-dandiset or features; waveform_rate_hz=...), or set Units(waveform_rate=...) when "
        "writing the file.",
        where,
        column,
        FALLBACK_WAVEFORM_RATE_HZ,
        also,
    )
    return FALLBACK_WAVEFORM_RATE_HZ, "assumed"


def _waveform_layout(
    g,
    where: str,
    n: int,
    require_waveforms: bool,
    stated_rate: float | None = None,
    electrode_counts: dict[int, str] | None = None,
    n_table: int | None = None,
    recording: Callable[[], tuple[list[tuple[str, float]], str]] | None = None,
) -> tuple[str | None, np.ndarray | None, float | None, str, str]:
    """How the waveforms are laid out: (kind, ragged index, sampling rate, where the rate came
    from, why they were set aside); None / "" without them. Kinds: "2d", "3d", "ragged"
    (``waveform_mean``) and "spikes" (no ``waveform_mean`` but NWB's doubly ragged per-spike
    ``waveforms``; the index is ``waveforms_index_index``). ``electrode_counts``, ``n_table``: see
    :func:`_implausible_waveforms`; ``recording``: see :func:`_waveform_rate`."""
    if "waveform_mean" in g:
        column, (kind, index) = "waveform_mean", _waveform_kind(g, where, n)
    elif "waveforms" in g:
        column, found = "waveforms", _spike_waveforms_kind(g, where, n, strict=require_waveforms)
        if isinstance(found, str):  # per-spike waveforms this reader cannot average
            if require_waveforms:
                raise NotNWBError(f"{where}: {found}.")
            log.warning("%s: %s; every unit is scored from its discharge alone.", where, found)
            return None, None, None, "", found
        kind, index = found
    else:
        if require_waveforms:
            raise NotNWBError(
                f"{where} has no waveform_mean column; the C4 classifier needs each unit's mean waveform. "
                "Add waveform_mean to the Units table, or pass require_waveforms=False to read spikes only."
            )
        return None, None, None, "", ""
    wm = g[column]
    rate, source = _waveform_rate(g, wm, where, stated_rate, recording)
    why = _implausible_waveforms(wm, rate, kind, electrode_counts, n_table)
    if why:
        if require_waveforms:
            raise NotNWBError(f"{where}: {why}.")
        log.warning("%s: %s; set aside: every unit is scored from its discharge alone.", where, why)
        return None, None, None, "", waveform_column_set_aside(column, why)
    if kind == "spikes":
        log.warning(
            "%s has no waveform_mean but per-spike waveforms: each unit's mean waveform is the average "
            "of its first %d spikes' waveforms (at most) on each of its electrodes.",
            where,
            MAX_SPIKES_AVERAGED,
        )
    return kind, index, rate, source, ""


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


def _spike_waveforms_kind(g, where: str, n: int, strict: bool = False) -> tuple[str, np.ndarray] | str:
    """("spikes", ``waveforms_index_index``) where the per-spike ``waveforms`` are laid out as NWB's
    Units.waveforms (rows of (samples,), one per spike and electrode; ``waveforms_index``: rows per
    spike, ``waveforms_index_index``: spikes per unit), else why they are not read (also where
    ``waveforms_index_index`` is malformed: the column is optional, so that does not stop the read
    of the spikes; ``strict``, where waveforms are required: the error is raised)."""
    w = g["waveforms"]
    if "waveforms_index" not in g or "waveforms_index_index" not in g or w.ndim != 2:
        levels = [k for k in ("waveforms_index", "waveforms_index_index") if k in g]
        return spike_waveforms_not_averaged(
            f"{tuple(w.shape)} (indexed by {', '.join(levels) or 'nothing'}) are not laid out as NWB's "
            "Units.waveforms (rows of samples, waveforms_index and waveforms_index_index), so they are "
            "not averaged: add waveform_mean to the Units table"
        )
    # checks the spikes per unit; waveforms_index (one per spike) is read unit by unit, bounded
    try:
        return "spikes", _ragged_index(g, where, "waveforms_index", n_units=n, data=g["waveforms_index"])
    except (InvalidUnitsError, NotNWBError) as exc:  # an optional column: set aside, not fatal
        if strict:
            raise
        first = str(exc).removeprefix(f"{where}: ").split("; ")[0]  # no "; ": reasons are split there
        return spike_waveforms_not_averaged(
            f"are set aside: {first}, so which spikes are whose cannot be told (the Units table is "
            "malformed: rewrite it or fix the sorter export)"
        )


def _implausible_waveforms(
    wm, rate: float, kind: str, electrode_counts: dict[int, str] | None = None, n_table: int | None = None
) -> str:
    """Why ``wm`` cannot hold spike waveforms at ``rate`` ('' if it can): fewer samples than
    :data:`MIN_WAVEFORM_MS` spans or more than :data:`MAX_WAVEFORM_MS`, or (3-D) axes that look
    like (units, channels, samples) (:func:`_swapped_axes`)."""
    column = _column(wm)
    n_samples = int(wm.shape[1])
    span_ms = n_samples / rate * 1e3
    # the last axis read as samples would span a spike waveform: the axes may be swapped
    swappable = kind == "3d" and MIN_WAVEFORM_MS <= int(wm.shape[2]) / rate * 1e3 <= MAX_WAVEFORM_MS
    swapped = (  # no "; ": reasons are split there
        f", so its axes may be (units, channels, samples) {tuple(wm.shape)} where NWB's layout is "
        "(units, samples, channels)"
    )
    if span_ms < MIN_WAVEFORM_MS:
        hint = swapped if kind == "3d" and wm.shape[2] > wm.shape[1] else ": is the sampling rate right?"
        return (
            f"{column} has {n_samples} samples, {span_ms:.2f} ms at {rate:g} Hz: shorter than a spike "
            f"waveform ({MIN_WAVEFORM_MS} ms){hint}"
        )
    if span_ms > MAX_WAVEFORM_MS:
        hint = swapped if swappable else ": is the sampling rate right?"
        return (
            f"{column} has {n_samples} samples, {span_ms:.2f} ms at {rate:g} Hz: longer than a mean "
            f"spike waveform (at most {MAX_WAVEFORM_MS:g} ms){hint}"
        )
    if not swappable:
        return ""
    why = _swapped_axes(wm, electrode_counts or {}, n_table)
    return why + swapped if why else ""


def _swapped_axes(wm, counts: dict[int, str], n_table: int | None) -> str:
    """Why a 3-D ``waveform_mean`` (units, A, B) looks like (units, channels, samples) ('' if not).

    By size: A matches an electrode count (``counts``, :func:`_electrode_counts`: the number every
    unit lists, or the electrodes table's size where the units list none) while B matches none, or
    A == B (the sizes cannot tell): swapped unless the content says NWB's layout
    (:func:`_samples_axis` 1). By content alone, where B matches no electrode count: the spike's
    shape lies along the last axis (:func:`_content_axes`), and the alignment does not say
    otherwise. Where the units list electrodes, the table's size (``n_table``) says nothing about
    the waveforms' channels (64 samples on a 64-site probe are no evidence), so it only names what
    the content found. Never transposed: a wrong guess would be silent."""
    a, b = int(wm.shape[1]), int(wm.shape[2])
    if a in counts and b not in counts:
        why = f"waveform_mean's {a} samples match {counts[a]} while its {b} channels match no electrode count"
    elif a == b:
        why = f"waveform_mean has as many samples as channels ({a}), so the sizes cannot tell its axes apart"
    else:
        why = ""
    if not why and b in counts:
        return ""  # the channels match the electrodes: NWB's layout, no need to read the content
    shaped, aligned = _content_axes(wm)
    if why:
        return "" if _combine(shaped, aligned) == 1 else why + " and its content does not say NWB's layout"
    if shaped == 2 and aligned != 1:
        also = (
            f" (and its {a} samples match the electrodes table's {a} rows)"
            if n_table and a == int(n_table)
            else ""
        )
        return (
            "waveform_mean's content has a spike's phases (a peak and an opposite phase) along its last "
            f"axis and one sign along its middle axis, as across channels{also}"
        )
    return ""


#: Units whose waveforms :func:`_content_axes` looks at (the first ones of the table).
CONTENT_CHECK_UNITS = 16
#: A spike's opposite phase (repolarisation after a trough, or the trough of a positive spike) is
#: at least this fraction of its peak on the time axis; across channels at the peak sample the
#: deviations keep the peak's sign (spatial profile), so their opposite-sign part is under a third
#: of the time axis' (noise, or a dendrite's inverted spike).
MIN_OPPOSITE_PHASE = 0.1
#: Share of the units (with a waveform, of the first :data:`CONTENT_CHECK_UNITS`) that must agree.
CONTENT_AGREEMENT = 0.8


def _content_axes(wm, n_units: int = CONTENT_CHECK_UNITS) -> tuple[int | None, int | None]:
    """Which axis of a 3-D ``waveform_mean`` the samples are on, by two readings of the content of
    the first ``n_units`` units: (shape, alignment), each 1, 2 or None (cannot tell; also with
    fewer than 3 units with a waveform).

    Shape: through each unit's largest deviation, the trace along the time axis has a spike's
    phases (an opposite phase of at least :data:`MIN_OPPOSITE_PHASE` of the peak), while the trace
    across channels keeps the peak's sign. Alignment: sorters align all units on their peak, so
    the sample of each unit's largest deviation is the same from unit to unit (within +-1 in
    :data:`CONTENT_AGREEMENT` of the units) while its channel differs."""
    block = np.asarray(wm[: min(int(wm.shape[0]), n_units)], dtype=np.float64)
    where, votes = [], []
    for x in block:
        if not np.isfinite(x).any():
            continue
        x = np.nan_to_num(x - np.nanmedian(x))
        top = float(np.abs(x).max())
        if not top > 0:
            continue
        i, j = np.unravel_index(int(np.argmax(np.abs(x))), x.shape)
        where.append((i, j))
        sign = np.sign(x[i, j])
        opp1, opp2 = float(np.max(-sign * x[:, j])) / top, float(np.max(-sign * x[i, :])) / top
        votes.append(
            1
            if opp1 >= MIN_OPPOSITE_PHASE and opp2 < opp1 / 3
            else 2
            if opp2 >= MIN_OPPOSITE_PHASE and opp1 < opp2 / 3
            else 0
        )
    if len(where) < 3:
        return None, None
    votes_ = np.asarray(votes)
    shaped = next((k for k in (1, 2) if np.mean(votes_ == k) >= CONTENT_AGREEMENT), None)
    pos = np.asarray(where, dtype=np.int64)

    def aligned(p: np.ndarray) -> bool:
        return float(np.mean(np.abs(p - np.median(p)) <= 1)) >= CONTENT_AGREEMENT

    on1, on2 = aligned(pos[:, 0]), aligned(pos[:, 1])
    return shaped, (1 if on1 else 2) if on1 != on2 else None


def _combine(shaped: int | None, aligned: int | None) -> int | None:
    """One answer from the two readings of :func:`_content_axes`: where they agree, or where one
    cannot tell; None where they contradict each other or neither tells."""
    if shaped is not None and aligned is not None and shaped != aligned:
        return None
    return shaped if shaped is not None else aligned


def _samples_axis(wm, n_units: int = CONTENT_CHECK_UNITS) -> int | None:
    """Which axis of a 3-D ``waveform_mean`` the samples are on by its content (1 NWB's layout, 2
    (units, channels, samples), None cannot tell): :func:`_content_axes` combined."""
    return _combine(*_content_axes(wm, n_units))
