"""How a Units table's ``waveform_mean`` is laid out: its sampling rate (stated, given or assumed),
and whether its axes are plausibly (units, samples[, channels]) — a span of samples no mean spike
waveform has, or a sample count that matches the electrodes the units list while the channel count
matches none, sets it aside (checked on content where the sizes alone mislead)."""

from __future__ import annotations

import logging
import numbers

import numpy as np

from ..errors import InvalidValueError

log = logging.getLogger(__name__)

#: Waveform sampling rate assumed when the file does not say (``waveform_mean.sampling_rate``).
FALLBACK_WAVEFORM_RATE_HZ = 30000.0


#: Shortest plausible span of a mean spike waveform, in ms: a shorter waveform_mean is set aside.
MIN_WAVEFORM_MS = 0.8
#: Longest plausible span, in ms: mean-waveform snippets are 1-6 ms (Kilosort's 82 samples at 30 kHz
#: are 2.7 ms, C4's windows 6 ms); a longer waveform_mean is set aside (a 384-channel probe's
#: (units, channels, samples) array read as samples spans 12.8 ms at 30 kHz).
MAX_WAVEFORM_MS = 10.0


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
            "%s: waveform_mean has no sampling_rate; assuming %g Hz. State it (--waveform-rate of annotate, "
            "annotate-dandiset or features; waveform_rate_hz=...), or set Units(waveform_rate=...) when "
            "writing the file.",
            where,
            FALLBACK_WAVEFORM_RATE_HZ,
        )
        return FALLBACK_WAVEFORM_RATE_HZ, "assumed"
    return float(rate), "file"


def _implausible_waveforms(wm, rate: float, kind: str, electrode_counts: dict[int, str] | None = None) -> str:
    """Why ``waveform_mean`` cannot hold spike waveforms at ``rate`` ('' if it can): fewer samples
    than :data:`MIN_WAVEFORM_MS` spans or more than :data:`MAX_WAVEFORM_MS`, or (3-D) as many
    "samples" as the units have electrodes (``electrode_counts``: :func:`_electrode_counts`, count ->
    what it counts) while the channels match none of them and the swapped reading would span a spike
    waveform, as when the axes are (units, channels, samples)."""
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
            f"waveform_mean has {n_samples} samples, {span_ms:.2f} ms at {rate:g} Hz: shorter than a spike "
            f"waveform ({MIN_WAVEFORM_MS} ms){hint}"
        )
    if span_ms > MAX_WAVEFORM_MS:
        hint = swapped if swappable else ": is the sampling rate right?"
        return (
            f"waveform_mean has {n_samples} samples, {span_ms:.2f} ms at {rate:g} Hz: longer than a mean "
            f"spike waveform (at most {MAX_WAVEFORM_MS:g} ms){hint}"
        )
    counts = electrode_counts or {}
    if (
        swappable
        and n_samples in counts
        and int(wm.shape[2]) not in counts
        and _samples_axis(wm) != 1  # the content does not say the layout is NWB's
    ):
        return (
            f"waveform_mean's {n_samples} samples match {counts[n_samples]} while its "
            f"{int(wm.shape[2])} channels match no electrode count{swapped}"
        )
    return ""


#: Units whose waveforms :func:`_samples_axis` looks at (the first ones of the table).
CONTENT_CHECK_UNITS = 16


def _samples_axis(wm, n_units: int = CONTENT_CHECK_UNITS) -> int | None:
    """Which axis of a 3-D ``waveform_mean`` the samples are on, by its content: sorters align the
    mean waveforms of all units on their peak, so the sample of each unit's largest deviation is
    the same from unit to unit, while its channel differs. 1 or 2 where one axis is aligned (the
    position of the largest deviation within +-1 of the median in 80 % of the units) and the other
    is not, None where the content does not tell (fewer than 3 units with a waveform among the
    first ``n_units``, every unit peaking on the same channel, or no alignment)."""
    block = np.asarray(wm[: min(int(wm.shape[0]), n_units)], dtype=np.float64)
    where = []
    for x in block:
        if not np.isfinite(x).any():
            continue
        x = np.nan_to_num(x - np.nanmedian(x))
        if not np.abs(x).max() > 0:
            continue
        where.append(np.unravel_index(int(np.argmax(np.abs(x))), x.shape))
    if len(where) < 3:
        return None
    pos = np.asarray(where, dtype=np.int64)

    def aligned(p: np.ndarray) -> bool:
        return float(np.mean(np.abs(p - np.median(p)) <= 1)) >= 0.8

    on1, on2 = aligned(pos[:, 0]), aligned(pos[:, 1])
    if on1 != on2:
        return 1 if on1 else 2
    return None
