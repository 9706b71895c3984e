"""The reasons' vocabulary (nwb_celltype/reasons.py, session 21): what producers write is what
consumers recognise, pinned with hand-written strings (the strings are part of the files and tables
the package writes), and no module tests a reason's text on its own."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import nwb_celltype
from nwb_celltype import reasons as R
from nwb_celltype.errors import FeatureError
from nwb_celltype.features.discharge import extract_discharge_features
from nwb_celltype.units import UnitsBatch
from nwb_celltype.units import reason_parts as units_reason_parts

#: each constructor's string for hand-written arguments, as the files and tables hold it
WRITTEN = [
    (R.no_waveform(), "no waveform"),
    (R.no_waveform("a; b"), "no waveform (a; b)"),
    (R.waveform_problem(FeatureError("waveform is flat")), "waveform: waveform is flat"),
    (R.waveform_samples_differ(60, 82), "waveform has 60 samples, others 82"),
    (R.waveform_column_set_aside("waveform_mean", "axes swapped"), "waveform_mean set aside (axes swapped)"),
    (
        R.spike_waveforms_not_averaged("are set aside: bad index"),
        "no waveform_mean, and its per-spike waveforms are set aside: bad index",
    ),
    (
        R.edge_note("largest deflection at 2.17 ms"),
        "waveform window cut near the spike (largest deflection at 2.17 ms)",
    ),
]


@pytest.mark.parametrize(("made", "written"), WRITTEN)
def test_every_waveform_reason_is_written_as_before_and_read_as_a_waveform_note(made, written):
    assert made == written
    assert R.is_waveform_reason(written), written


def test_the_other_reasons_are_written_as_before():
    assert R.too_few_spikes(34, 100) == "34 spikes < min_spikes=100"
    assert R.NO_SPIKES == "no spikes"
    assert R.outside_reason("SSp") == (
        "recorded outside the cerebellar cortex (electrode location 'SSp'); the model knows cerebellar "
        "cortex cells only"
    )
    assert R.scored_without_waveform() == "scored from its discharge alone (no usable waveform)"
    assert R.scored_without_waveform("flat") == "scored from its discharge alone (no usable waveform: flat)"
    assert R.join_reasons(["no spikes", "no waveform"]) == "no spikes; no waveform"


@pytest.mark.parametrize(
    "fatal",
    [
        "no spikes",
        "34 spikes < min_spikes=100",
        "1 non-finite spike times",
        "C4 unit selection: refractory period violations",
        "no ACG/ISI in the tables",
        "recorded outside the cerebellar cortex (electrode location 'SSp')",
        "waves of spikes",  # neither "waveform" nor "no waveform"
    ],
)
def test_a_fatal_reason_is_not_taken_for_a_waveform_note(fatal):
    assert not R.is_waveform_reason(fatal)
    assert not R.is_edge_note(fatal)


def test_only_the_edge_note_is_an_edge_note():
    assert R.is_edge_note("waveform window cut near the spike (x; y)")
    for other in (
        "waveform: cut too close to the spike",
        "no waveform",
        "waveform has 60 samples, others 82",
    ):
        assert not R.is_edge_note(other), other


def test_reasons_split_on_the_separator_outside_brackets_only():
    text = (
        "no waveform (its spikes have [3; 4] per-spike waveforms each; NWB expects one); "
        "34 spikes < min_spikes=100; waveform window cut near the spike (a (b; c); d)"
    )
    assert R.reason_parts(text) == [
        "no waveform (its spikes have [3; 4] per-spike waveforms each; NWB expects one)",
        "34 spikes < min_spikes=100",
        "waveform window cut near the spike (a (b; c); d)",
    ]
    assert R.reason_parts("") == [] and R.reason_parts("one") == ["one"]
    assert units_reason_parts is R.reason_parts  # still importable where it was


def test_why_a_waveform_was_unusable_is_the_readers_first_else_the_features():
    assert (
        R.waveform_why(["no spikes", "waveform: flat", "no waveform (index malformed)"]) == "index malformed"
    )
    assert R.waveform_why(["waveform: flat", "waveform: NaN samples"]) == "flat"
    assert R.waveform_why(["no waveform (a; b)"]) == "a; b"
    assert R.waveform_why(["no waveform", "34 spikes < min_spikes=100"]) is None
    assert R.waveform_why(["no waveform ()"]) == ""  # said, if empty


def test_only_a_reason_that_starts_with_the_location_rule_counts_as_outside():
    assert R.is_outside_reason(R.outside_reason("SSp") + "; below the threshold")
    assert not R.is_outside_reason(
        "no spikes; recorded outside the cerebellar cortex (electrode location 'x')"
    )


def _batch(reasons: list[str]) -> UnitsBatch:
    n = len(reasons)
    t = np.sort(np.random.default_rng(0).uniform(0, 200, 2000))
    return UnitsBatch(
        unit_ids=np.arange(n),
        unit_indices=np.arange(n),
        spike_times_s=np.tile(t, n),
        spike_offsets=np.arange(n + 1) * len(t),
        extra={"reasons": np.array(reasons, dtype=object)},
    )


def test_the_features_keep_a_unit_with_a_waveform_note_and_drop_one_with_a_fatal_reason():
    """The reader's reasons as the features read them: a waveform reason (even one holding "; "
    in its brackets) leaves the unit usable, scored from its discharge; any other is fatal."""
    given = [
        "no waveform (its spikes have [3, 4] waveforms each; NWB expects one per electrode)",
        "waveform: no waveform given (the unit is not in the waveforms dict)",
        "waveforms set aside (axes swapped)",
        "no spikes",
        "waveform: flat; 3 spikes after 604800 s (wrong units?)",
    ]
    fs = extract_discharge_features(_batch(given))
    assert fs.usable.tolist() == [True, True, True, False, False]
    assert fs.reasons[0] == given[0] + "; no waveform"


def test_the_models_notes_read_the_vocabulary():
    from nwb_celltype.model.discharge_bundle import _no_waveform_note, _spike_notes

    given = "no waveform (a; b); 3 duplicate spike times dropped; waveform window cut near the spike (x)"
    assert _no_waveform_note(given) == "scored from its discharge alone (no usable waveform: a; b)"
    assert _spike_notes(given, waveform_used=True) == (
        "3 duplicate spike times dropped; waveform window cut near the spike (x)"
    )
    assert _spike_notes(given, waveform_used=False) == "3 duplicate spike times dropped"


#: how reasons start: outside reasons.py, no string may start with one (but exception messages)
_PREFIXES = (
    "no waveform (",
    "no waveform_mean, and its per-spike waveforms",
    "waveform: ",
    "waveform has ",
    R.EDGE_NOTE,
    R.OUTSIDE_REASON,
    "scored from its discharge alone (",
)
#: ... nor test a reason with these, nor build one from these names
_TESTED = ("no waveform", "waveform", R.EDGE_NOTE, R.OUTSIDE_REASON)
_NAMES = {"EDGE_NOTE", "OUTSIDE_REASON", "NO_WAVEFORM_NOTE", "NO_WAVEFORM", "WAVEFORM_PROBLEM"}


def _texts(node) -> list[str]:
    """The string constants of ``node`` (a constant, or a tuple of them)."""
    items = node.elts if isinstance(node, ast.Tuple) else [node]
    return [x.value for x in items if isinstance(x, ast.Constant) and isinstance(x.value, str)]


def _own_reason_text(source: str) -> list[int]:
    """Lines of ``source`` that test a reason's text by its start, or spell a reason's start (or
    build one from the vocabulary's constants) instead of calling :mod:`nwb_celltype.reasons`."""
    tree = ast.parse(source)
    skip = set()  # docstrings and exception messages: prose, not reasons
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and _texts(body[0].value):
            skip.add(id(body[0].value))
        if isinstance(node, ast.Call) and getattr(node.func, "id", "").endswith("Error"):
            skip.update(id(x) for x in ast.walk(node))
    lines = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("startswith", "removeprefix"):
            args = [t for a in node.args for t in _texts(a)]
            names = [x.id for a in node.args for x in ast.walk(a) if isinstance(x, ast.Name)]
            if any(t.startswith(_TESTED) for t in args) or _NAMES & set(names):
                lines.append(node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.startswith(_PREFIXES) or " spikes < min_spikes=" in node.value:
                lines.append(node.lineno)
        elif isinstance(node, ast.FormattedValue) and getattr(node.value, "id", None) in _NAMES:
            lines.append(node.lineno)
    return sorted(set(lines))


def test_no_module_tests_or_spells_a_reason_on_its_own():
    root = Path(nwb_celltype.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name != "reasons.py":
            text = path.read_text(encoding="utf-8")
            lines = text.splitlines()
            found += [f"{path.relative_to(root)}:{k}: {lines[k - 1].strip()}" for k in _own_reason_text(text)]
    assert not found, "use nwb_celltype.reasons:\n" + "\n".join(found)


def test_the_scan_finds_a_reason_tested_or_spelt_by_hand():
    """The check above can fail: each way a module used to handle a reason on its own is found."""
    hand = [
        'fatal = not part.startswith(("no waveform", "waveform"))',
        "ok = part.startswith(EDGE_NOTE)",
        'x = [p[len("waveform: ") :] for p in parts if p.startswith("waveform: ")]',
        'r.append(f"waveform: {exc}")',
        'r.append(f"{n} spikes < min_spikes={m}")',
        'r.append(f"{EDGE_NOTE} ({note})")',
        'r = "no waveform (the unit has no per-spike waveforms)"',
    ]
    hand += [
        'r = "no waveform_mean, and its per-spike waveforms are not averaged"',
        'r.append(f"waveform has {a} samples, others {b}")',
        'NOTE = "scored from its discharge alone (waveforms ignored on request)"',
    ]
    for line in hand:
        assert _own_reason_text(line), line
    assert not _own_reason_text('raise FeatureError(f"waveform: expected a 1-d array, got {w.shape}.")')
