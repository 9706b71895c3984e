"""Argument checks shared by the simulator's entry points (clear errors for bad counts/durations)."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidValueError


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _check_duration(duration_s) -> float:
    if isinstance(duration_s, bool) or not isinstance(duration_s, (int, float, np.number)):
        raise InvalidValueError(f"duration_s must be a number of seconds, got {duration_s!r}.")
    if not np.isfinite(duration_s) or duration_s < 1.0:
        raise InvalidValueError(
            f"duration_s must be at least 1 s (and finite), got {duration_s!r}; "
            "C4 needs > 180 s of good data per unit, so use a few minutes or more."
        )
    return float(duration_s)


def _check_fraction(fraction) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.number)):
        raise InvalidValueError(f"labelled_fraction must be a number in [0, 1], got {fraction!r}.")
    if not 0.0 <= fraction <= 1.0:
        raise InvalidValueError(
            f"labelled_fraction must lie in [0, 1], got {fraction!r}; e.g. 0.3 labels 30% of "
            "the units of the five C4 classes."
        )
    return float(fraction)


def _check_counts(counts: dict, what: str, allowed: tuple[str, ...]) -> dict[str, int]:
    if not isinstance(counts, dict):
        raise InvalidValueError(f"{what} must be a dict class -> count, got {type(counts).__name__}.")
    out = {}
    for k, v in counts.items():
        if k not in allowed:
            raise InvalidValueError(f"{what} has unknown class {k!r}; expected classes among {allowed}.")
        out[k] = _check_int(f"{what}[{k!r}]", v, 0)
    return out
