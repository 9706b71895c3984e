"""Plausibility of one unit's spike train, checked by every feature family before any work that
grows with the number of spike pairs: a unit failing it is ``not_classifiable`` with the reason,
and its train is not processed further (bounded time and memory for any input)."""

from __future__ import annotations

import numpy as np

#: Most spikes one unit may have (a day at ~60 Hz); more is a sorter or file error, not a neuron.
MAX_SPIKES_PER_UNIT = 5_000_000
#: Highest mean rate over the unit's span (a 1 ms refractory period), in Hz.
MAX_RATE_HZ = 1000.0
#: Latest plausible spike time (7 days after the session's reference time), in s; for features of
#: time differences only (``allow_negative``), the longest plausible span of one unit's times.
MAX_TIME_S = 7 * 24 * 3600.0


def check_train(times_s: np.ndarray, allow_negative: bool = False) -> tuple[np.ndarray, str]:
    """The part of a spike train that features may use, and why the unit is unusable ('' if it is
    not). Non-finite or (unless ``allow_negative``) negative times make the unit unusable (the
    other times are returned); a train that is too long, reaches past :data:`MAX_TIME_S` (with
    ``allow_negative``: spans more than it, wherever it lies) or fires above :data:`MAX_RATE_HZ` is
    returned empty.

    Parameters
    ----------
    times_s : (n,) float
        Spike times of one unit, in s.
    allow_negative : bool
        Times before the session's reference time are valid (features that use only differences
        of times: the ``acg-isi-wave`` family).

    Returns
    -------
    times : (m,) float64
        Times to compute features from (possibly empty).
    reason : str
        Empty when the unit is usable.
    """
    t = np.asarray(times_s, dtype=np.float64)
    empty = np.zeros(0, dtype=np.float64)
    if len(t) > MAX_SPIKES_PER_UNIT:
        return empty, f"{len(t)} spikes > {MAX_SPIKES_PER_UNIT} per unit (implausible; not computed)"
    bad = ~np.isfinite(t) if allow_negative else ~np.isfinite(t) | (t < 0)
    if bad.any():
        return t[~bad], f"{int(bad.sum())} non-finite{'' if allow_negative else ' or negative'} spike times"
    if len(t) == 0:
        return t, ""
    if allow_negative:  # differences only: a session far from the reference time is fine, a long one not
        span = float(t.max() - t.min())
        if span > MAX_TIME_S:
            return empty, (
                f"spike times span {span:.3g} s > {MAX_TIME_S:.0f} s (outside any plausible session; "
                "wrong units?)"
            )
    else:
        late = int((np.abs(t) > MAX_TIME_S).sum())
        if late:
            return empty, (
                f"{late} spike times after {MAX_TIME_S:.0f} s (outside any plausible session; wrong units?)"
            )
    rate = len(t) / max(float(t.max() - t.min()), 1.0)
    if rate > MAX_RATE_HZ:
        return empty, f"mean rate {rate:.0f} Hz > {MAX_RATE_HZ:.0f} Hz (implausible; not computed)"
    return t, ""
