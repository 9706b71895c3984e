"""The vocabulary of a unit's reasons: why it is not classifiable, or notes on how it was scored.

A unit's reasons travel as ONE string, its parts joined with :data:`SEPARATOR` (``"; "``): the
reader's ``UnitsBatch.extra["reasons"]``, a feature set's ``reasons`` (and the feature files on
disk), the model's ``Predictions.reasons`` and the annotated table's ``reason`` column. A part may
itself hold ``"; "`` inside brackets; :func:`reason_parts` splits outside them only.

Layers classify a part by how it starts, so every producer builds its parts with the constructors
here and every consumer asks the predicates here, never a text prefix of its own:

- a **waveform reason** (:func:`is_waveform_reason`) says the unit's waveform is missing or unusable,
  or notes how it was read; to the ``acg-isi-wave`` features it is a note, not fatal (the unit is
  scored from its discharge alone; the ``c4-3d`` family needs the waveform).
  The reader writes :func:`no_waveform` (``"no waveform"``, ``"no waveform (why)"``),
  :func:`spike_waveforms_not_averaged`, :func:`waveform_column_set_aside` and
  :func:`waveform_samples_differ`; the features write :func:`waveform_problem` (``"waveform: why"``)
  and, where a waveform was aligned near its window's edge, :func:`edge_note` (:func:`is_edge_note`;
  a waveform reason too, which the model's notes keep where the waveform was used).
  :func:`waveform_why` reads back why a waveform was unusable, for :func:`scored_without_waveform`,
  the model's note on a unit scored without one.
- :func:`too_few_spikes` (``"34 spikes < min_spikes=100"``) and :data:`NO_SPIKES`: fatal.
- :func:`outside_reason`: the location rule withheld the label (:mod:`nwb_celltype.model.scope`),
  always first in the unit's reasons (:func:`is_outside_reason`).

Plain Python: no numpy, no I/O, importable from every layer. The strings are part of what the
package writes (feature files, annotated tables): change them only with the files' format.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "EDGE_NOTE",
    "IGNORED_WAVEFORM_NOTE",
    "NO_SPIKES",
    "NO_WAVEFORM",
    "NO_WAVEFORM_NOTE",
    "OUTSIDE_REASON",
    "SEPARATOR",
    "WAVEFORM_PROBLEM",
    "edge_note",
    "is_edge_note",
    "is_outside_reason",
    "is_waveform_reason",
    "join_reasons",
    "no_waveform",
    "outside_reason",
    "reason_parts",
    "scored_without_waveform",
    "spike_waveforms_not_averaged",
    "too_few_spikes",
    "waveform_column_set_aside",
    "waveform_problem",
    "waveform_samples_differ",
    "waveform_why",
]

#: What joins a unit's reasons into one string.
SEPARATOR = "; "

# ------------------------------------------------------------------------------------ waveform

#: A unit without a waveform (the reader, the features); ``"no waveform (why)"`` with the reader's why.
NO_WAVEFORM = "no waveform"
#: The start of a waveform the features could not use (``"waveform: why"``: NaN samples, flat, cut).
WAVEFORM_PROBLEM = "waveform: "
#: How a unit's reasons note a waveform aligned by the edge rule (or kept at an ambiguous central
#: peak; :mod:`nwb_celltype.features._main_peak`): its label rests on a window cut near the spike,
#: and such labels move more than others.
EDGE_NOTE = "waveform window cut near the spike"
#: Every waveform reason starts with one of these (each constructor below keeps to it).
_WAVEFORM_STARTS = (NO_WAVEFORM, "waveform")
_SPIKE_WAVEFORMS = "no waveform_mean, and its per-spike waveforms "


def no_waveform(why: str = "") -> str:
    """The unit has no waveform (``"no waveform"``), with ``why`` where the reader knows it."""
    return f"{NO_WAVEFORM} ({why})" if why else NO_WAVEFORM


def waveform_problem(why) -> str:
    """The unit's waveform is unusable: ``why`` (an error or its text)."""
    return f"{WAVEFORM_PROBLEM}{why}"


def waveform_samples_differ(n_samples: int, others: int) -> str:
    """The unit's waveform has ``n_samples`` samples where the other units' have ``others``."""
    return f"waveform has {n_samples} samples, others {others}"


def waveform_column_set_aside(column: str, why: str) -> str:
    """The Units table's waveform ``column`` (``waveform_mean``, ``waveforms``) was set aside: ``why``."""
    return f"{column} set aside ({why})"


def spike_waveforms_not_averaged(what: str) -> str:
    """A Units table without ``waveform_mean`` whose per-spike waveforms are not averaged:
    ``what`` continues "no waveform_mean, and its per-spike waveforms ..."."""
    return f"{_SPIKE_WAVEFORMS}{what}"


def edge_note(detail: str) -> str:
    """:data:`EDGE_NOTE`, with where the waveform's largest deflection lies and what was done."""
    return f"{EDGE_NOTE} ({detail})"


def is_waveform_reason(part: str) -> bool:
    """Whether ``part`` (one reason) is about the unit's waveform: to the ``acg-isi-wave`` features a
    note, not fatal."""
    return part.startswith(_WAVEFORM_STARTS)


def is_edge_note(part: str) -> bool:
    """Whether ``part`` is :func:`edge_note`'s (a waveform that was used, aligned near its edge)."""
    return part.startswith(EDGE_NOTE)


def waveform_why(parts: Iterable[str]) -> str | None:
    """Why the unit's waveform was unusable, where its reasons say: the reader's why first
    (:func:`no_waveform` with a why: per-spike waveforms not averaged, ...; the reader leaves such
    a unit a NaN row), else the features' (:func:`waveform_problem`: NaN samples, flat); None if
    neither says."""
    parts = list(parts)
    opening = f"{NO_WAVEFORM} ("
    read = [p[len(opening) : -1] for p in parts if p.startswith(opening) and p.endswith(")")]
    why = read or [p[len(WAVEFORM_PROBLEM) :] for p in parts if p.startswith(WAVEFORM_PROBLEM)]
    return why[0] if why else None


#: The model's note on a unit scored from its discharge alone (``why`` added where known).
NO_WAVEFORM_NOTE = "scored from its discharge alone (no usable waveform)"
#: ... where the waveforms were ignored on request (``ignore_waveforms``).
IGNORED_WAVEFORM_NOTE = "scored from its discharge alone (waveforms ignored on request)"


def scored_without_waveform(why: str | None = None) -> str:
    """:data:`NO_WAVEFORM_NOTE`, with why the waveform was unusable (:func:`waveform_why`) if known."""
    return NO_WAVEFORM_NOTE if why is None else f"{NO_WAVEFORM_NOTE[:-1]}: {why})"


# -------------------------------------------------------------------------------------- spikes

#: A unit without spike times (the reader).
NO_SPIKES = "no spikes"


def too_few_spikes(n_spikes: int, min_spikes: int) -> str:
    """Fewer spikes than the feature configuration's ``min_spikes``."""
    return f"{n_spikes} spikes < min_spikes={min_spikes}"


# ------------------------------------------------------------------------------------ location

#: The start of the reason of a unit whose label the location rule withheld.
OUTSIDE_REASON = "recorded outside the cerebellar cortex"


def outside_reason(location: str) -> str:
    """The location rule's reason (:mod:`nwb_celltype.model.scope`) for an electrode ``location``."""
    return f"{OUTSIDE_REASON} (electrode location {location!r}); the model knows cerebellar cortex cells only"


def is_outside_reason(reasons: str) -> bool:
    """Whether a unit's ``reasons`` (the whole string: the rule puts its reason first) say the
    location rule withheld its label."""
    return reasons.startswith(OUTSIDE_REASON)


# ---------------------------------------------------------------------------------- the string


def join_reasons(parts: Iterable[str]) -> str:
    """A unit's reasons as one string (:data:`SEPARATOR` between them)."""
    return SEPARATOR.join(parts)


def reason_parts(text: str) -> list[str]:
    """The reasons of ``text``, a unit's reasons joined with ``"; "`` (``extra["reasons"]`` of a
    :class:`~nwb_celltype.units.UnitsBatch`), split where that separator stands outside brackets: a
    reason may hold ``"; "`` inside its parentheses ("no waveform (its spikes have [1, 2] ...; NWB
    expects ...)")."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch in "([") - (ch in ")]")
        if depth <= 0 and text.startswith(SEPARATOR, i):
            parts.append(text[start:i])
            start = i + len(SEPARATOR)
    parts.append(text[start:])
    return [p for p in parts if p]
