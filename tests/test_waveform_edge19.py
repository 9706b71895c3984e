"""Mean waveforms whose main trough lies near the window's edge (audit 19, finding 2): the aligner
searches the main peak in the central 60 % of the window; a trough in the first or last 20 % was
silently misaligned on a later phase or on its own flank. Now it is aligned on (when it dominates and
the window holds enough around it), set aside with a reason (too near the edge) or kept with a
logged warning (ambiguous)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from nwb_celltype.errors import FeatureError
from nwb_celltype.features._main_peak import EDGE_NOTE
from nwb_celltype.features.discharge import DischargeConfig, align_waveform, extract_discharge_features
from nwb_celltype.model.discharge_bundle import _no_waveform_note
from nwb_celltype.units import UnitsBatch

RATE = 30000.0
N = 90  # input window: 3 ms at 30 kHz
LOGGER = "nwb_celltype.features.discharge"


def _bump(t: np.ndarray, half: float) -> np.ndarray:
    """(1 - (t/half)^2)^2 inside |t| < half, exactly 0 outside (compact support: no tails)."""
    return np.clip(1.0 - (t / half) ** 2, 0.0, None) ** 2


def _spike(trough: int, n: int = N) -> np.ndarray:
    """A biphasic spike on a zero baseline, sampled at integer offsets from its trough: trough -1 at
    offset 0 (nonzero for |offset| < 6), repolarisation peak +0.35 at offset +12 (|offset - 12| < 8)."""
    t = np.arange(n, dtype=np.float64) - trough
    return (-_bump(t, 6.0) + 0.35 * _bump(t - 12.0, 8.0)).astype(np.float32).astype(np.float64)


def _expected() -> np.ndarray:
    """First principles: the model's window is -1 ms .. +1.5 ms around the trough (30 + 45 samples at
    30 kHz), i.e. the same spike sampled at offsets -30..44. Its first 0.5 ms (the baseline) is 0 and
    its largest |value| is the trough's 1, so baseline removal and scaling leave it as it is. Where the
    input window starts less than 1 ms before the trough, the aligner repeats its first sample, which
    is the zero baseline here (the spike starts 5 samples before its trough)."""
    e = _spike(30, 75)
    assert e[30] == -1.0 and np.abs(e).max() == 1.0 and not e[:15].any()
    return e


def _batch(waveforms) -> UnitsBatch:
    rng = np.random.default_rng(19)
    trains = [np.sort(rng.uniform(0, 100, 2000)) for _ in waveforms]
    return UnitsBatch(
        unit_ids=np.arange(len(trains), dtype=np.int64) + 700,
        unit_indices=np.arange(len(trains), dtype=np.int64),
        spike_times_s=np.concatenate(trains),
        spike_offsets=np.r_[0, np.cumsum([len(t) for t in trains])].astype(np.int64),
        waveforms=np.asarray(waveforms, dtype=np.float32),
        waveform_rate_hz=RATE,
    )


def _edge_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


@pytest.mark.parametrize("trough", [10, 15, 16])
def test_trough_in_first_fifth_is_aligned_on(trough):
    """Trough at sample 10 / 15 / 16 of 90 (the central span starts at 18): it dominates what the
    centre holds (the repolarisation peak, 1 / 0.35; at 15 and 16 the trough's own flank at sample
    18, 1.78x and 1.27x), and the window holds 0.33-0.53 ms before it: aligned on it, exactly the
    first-principles window (the original aligner put sample 22 or 18 at sample 30)."""
    w = _spike(trough)
    assert np.abs(w[18:72]).max() < 1.0  # the trough lies outside the central span
    out = align_waveform(w, RATE)
    assert out.shape == (DischargeConfig().waveform_samples,)
    assert int(np.argmax(np.abs(out))) == 30
    assert np.array_equal(out, _expected())
    # shifting the window by a known number of samples changes nothing: same as the centred spike
    assert np.array_equal(out, align_waveform(_spike(45), RATE))


def test_trough_in_first_fifth_through_the_units_path(caplog):
    """Same through extract_discharge_features (the NWB path): waveform used, and a logged warning
    names the unit and says it was aligned on the edge deflection."""
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        fs = extract_discharge_features(_batch([_spike(10), _spike(45)]))
    assert fs.has_waveform.tolist() == [True, True] and fs.usable.tolist() == [True, True]
    np.testing.assert_array_equal(fs.waveform[0], _expected().astype(np.float32))
    np.testing.assert_array_equal(fs.waveform[1], _expected().astype(np.float32))
    # the unit's reasons say so too (session 20: the annotated table's row, not only the log)
    assert fs.reasons[1] == "" and fs.reasons[0].startswith(f"{EDGE_NOTE} (largest deflection"), fs.reasons
    assert "aligned on it" in fs.reasons[0]
    (msg,) = _edge_warnings(caplog)
    assert "unit 700:" in msg and "aligned on it" in msg and "unit 701" not in msg


def test_trough_in_last_fifth_is_unusable_with_a_reason(caplog):
    """Trough at sample 75 of 90: it dominates the centre (3.2x its own flank at sample 71) but the
    window ends 14 samples (0.47 ms) after it, less than the 0.6 ms needed: the waveform is unusable
    (the original aligner put sample 71, the flank, at sample 30), the unit is scored from its
    discharge alone and its reason says why."""
    w = _spike(75)
    with pytest.raises(FeatureError, match="cut too close to the spike"):
        align_waveform(w, RATE)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        fs = extract_discharge_features(_batch([_spike(45), w]))
    assert fs.has_waveform.tolist() == [True, False]
    assert fs.usable.tolist() == [True, True]  # classified from its discharge
    assert fs.has_discharge.tolist() == [True, True]
    assert not fs.waveform[1].any()
    reason = fs.reasons[1]
    assert reason.startswith("waveform: largest deflection at 2.50 of 3.00 ms, outside the central 60 %")
    assert "0.47 ms before its end" in reason and "; " not in reason
    note = _no_waveform_note(reason)  # what the unit's label row says
    assert note.startswith("scored from its discharge alone (no usable waveform: largest deflection")
    (msg,) = _edge_warnings(caplog)
    assert "unit 701:" in msg and "scored from its discharge alone" in msg


def test_ambiguous_edge_deflection_keeps_the_central_peak_with_a_warning(caplog):
    """A centred spike plus an unrelated edge deflection 1.2x its trough (not the trough's flank,
    below the 1.5x rule): the central peak is kept (output unchanged: the edge lies outside the
    model's window) but not silently: a warning names the unit."""
    w = _spike(45)
    w[2] = 1.2  # a sharp artefact 0.07 ms into the window
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        fs = extract_discharge_features(_batch([w]))
    np.testing.assert_array_equal(fs.waveform[0], _expected().astype(np.float32))
    assert fs.has_waveform.tolist() == [True]
    (msg,) = _edge_warnings(caplog)
    assert "unit 700:" in msg and "(1.20x)" in msg and "kept the central peak at 1.50 ms" in msg
    assert fs.reasons[0].startswith(EDGE_NOTE) and "kept the central peak at 1.50 ms" in fs.reasons[0]


@pytest.mark.parametrize("trough", [18, 30, 45, 60, 69])
def test_centred_waveform_unchanged(trough, caplog):
    """Regression guard (passes with the original aligner too, by design): a trough anywhere in the
    central span (18..69 of 90: the window then holds the whole spike) gives the first-principles window, and no warning."""
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        fs = extract_discharge_features(_batch([_spike(trough)]))
    assert np.array_equal(align_waveform(_spike(trough), RATE), _expected())
    np.testing.assert_array_equal(fs.waveform[0], _expected().astype(np.float32))
    assert fs.reasons.tolist() == [""] and _edge_warnings(caplog) == []
