"""Where the spike is in its mean-waveform window: the main peak the waveform is aligned on, and the
rule for a window cut so that the spike's largest deflection lies near its edge (docs/features.md,
"Main peak near the window's edge")."""

from __future__ import annotations

import numpy as np

from ..errors import FeatureError
from ..reasons import EDGE_NOTE as EDGE_NOTE  # how a unit's reasons note this rule (re-exported)

#: The main peak is searched in the window's central 60 % (not transients or other spikes at its
#: edges); a deflection in its first or last 20 % replaces it only when > this many times larger. In
#: the 3,033 real table waveforms (centred by their publishers) such deflections reach 1.33x (a
#: drifting Hausser unit; a labelled Lisberger complex spike's pre-peak is 1.18x its trough): 1.5
#: keeps them all, while a spike's trough cut 5-15 samples from the edge mostly dominates more.
EDGE_PEAK_RATIO = 1.5
#: ... or > this many times where the central pick is that same deflection's flank (same sign, |w|
#: rising to it): the span cut the spike. The tables' two such units sit on flat tops (1.03x, 1.04x).
#: Below these ratios the central peak is kept, with a logged warning (ambiguous).
EDGE_FLANK_RATIO = 1.1
#: ... where the window holds this much before / after it (the -1 .. +1.5 ms is filled by repeating
#: the edge sample, as for any short window): on edge-cropped copies of the table waveforms, 0.25 ms
#: before (8 samples at 30 kHz) and 0.6 ms after keep the error (90th percentile of max |difference|
#: from the uncropped) within the 0.42 the central search accepts at its own boundary (18 samples
#: after the peak in a 90-sample window); nearer the edge it grows fast (0.57 at 0.2 ms before, 0.53
#: at 0.5 ms after). Otherwise the waveform is unusable: its unit is scored from its discharge alone.
EDGE_MIN_PRE_MS = 0.25
EDGE_MIN_POST_MS = 0.6


class _EdgePeakError(FeatureError):
    """A dominant deflection too near the window's edge to align on (:func:`_main_peak`)."""


def _main_peak(w: np.ndarray, rate_hz: float) -> tuple[int, str]:
    """Main peak of the baseline-removed ``w`` (at ``rate_hz``) and a note, "" unless the largest
    deflection lies outside the central 60 %; :class:`_EdgePeakError` if dominant but too near the edge."""
    n = len(w)
    lo, hi = int(n * 0.2), max(int(np.ceil(n * 0.8)), int(n * 0.2) + 1)
    ref = lo + int(np.argmax(np.abs(w[lo:hi])))
    top = int(np.argmax(np.abs(w)))
    if lo <= top < hi or not abs(w[top]) > abs(w[ref]):
        return ref, ""
    ms = 1000.0 / rate_hz
    ratio = abs(w[top]) / abs(w[ref]) if w[ref] != 0 else np.inf
    what = f"largest deflection at {top * ms:.2f} of {n * ms:.2f} ms, outside the central 60 % ({ratio:.2f}x)"
    seg = w[min(ref, top) : max(ref, top) + 1] * np.sign(w[ref])  # > 0, rising to top: one deflection
    flank = (seg > 0).all() and (np.diff(seg if top > ref else seg[::-1]) >= 0).all()
    need = [int(np.ceil(t * rate_hz / 1000 - 1e-9)) for t in (EDGE_MIN_PRE_MS, EDGE_MIN_POST_MS)]
    dominant = abs(w[top]) > (EDGE_FLANK_RATIO if flank else EDGE_PEAK_RATIO) * abs(w[ref])
    if not (dominant or flank):
        return (
            ref,
            f"{what}: kept the central peak at {ref * ms:.2f} ms, misaligned if the edge one is the spike",
        )
    # a central pick on the edge deflection's own flank (a blunt trough cut by the span's boundary) is
    # kept, but needs the window around it as the deflection would: else a blunt trough would pass
    # where a sharp one, cut alike, is set aside
    pick = top if dominant else ref
    where = f"{pick * ms:.2f} ms after the window's start, {(n - 1 - pick) * ms:.2f} ms before its end"
    if not dominant:
        where = f"the central pick on its flank at {where}"
    if pick < need[0] or n - 1 - pick < need[1]:
        raise _EdgePeakError(
            f"{what}, {where} (aligning needs >= {EDGE_MIN_PRE_MS} and {EDGE_MIN_POST_MS} ms): the window "
            "is cut too close to the spike to align it"
        )
    if dominant:
        return top, f"{what}: aligned on it ({where})"
    return ref, f"{what}: kept the central peak at {ref * ms:.2f} ms, on that deflection's flank"
