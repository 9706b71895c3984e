"""Map the layer names and brain-area acronyms found in NWB files to C4's layer vocabulary."""

from __future__ import annotations

import re

from ..vocabulary import LAYERS

__all__ = ["map_location_to_layer"]

_LAYER_NAMES = {
    "ml": "ML",
    "molecular": "ML",
    "molecular layer": "ML",
    "pcl": "PCL",
    "pl": "PCL",
    "purkinje": "PCL",
    "purkinje layer": "PCL",
    "purkinje cell layer": "PCL",
    "gcl": "GCL",
    "gl": "GCL",
    "granular": "GCL",
    "granular layer": "GCL",
    "granule cell layer": "GCL",
    "granule layer": "GCL",
    "unknown": "unknown",
}
#: Allen CCF cerebellar-cortex regions (vermis lobules, hemisphere lobules, flocculus) followed by
#: their layer suffix: CENT3mo, SIMpu, CUL4, 5gr, ANcr1mo, PFLgr; not MOBgr (olfactory bulb).
_ACRONYM = re.compile(
    r"(LING|CENT\d?|CUL(\d(, ?\d)?)?|DEC|FOTU|PYR|UVU|NOD|SIM|AN(cr[12])?|PRM|COPY|PFL|FL)(mo|pu|gr)",
    re.IGNORECASE,
)
_SUFFIX_LAYER = {"mo": "ML", "pu": "PCL", "gr": "GCL"}


def map_location_to_layer(location: str | bytes | None) -> str:
    """Map a layer name or a brain-area acronym to the C4 layer vocabulary
    (:data:`nwb_celltype.vocabulary.LAYERS`).

    Rule, in order (case-insensitive): a C4 layer name (``ML``, ``PCL``, ``GCL``, ``unknown``) or a
    common spelling (``molecular layer``, ``Purkinje layer``, ``granular layer``, ...) maps to that
    layer; an Allen CCF cerebellar-cortex acronym (a lobule: LING, CENT, CUL, DEC, FOTU, PYR, UVU,
    NOD, SIM, AN/ANcr1/ANcr2, PRM, COPY, PFL, FL) ending in ``mo`` maps to ``ML``, in ``pu`` to
    ``PCL``, in ``gr`` to ``GCL`` (``CENT3mo``, ``SIMpu``, ``CUL4, 5gr``); anything else is
    ``unknown``, including other structures' layers (``MOBgr``, the olfactory bulb's granule layer;
    ``DG-mo``, the dentate gyrus).
    """
    if location is None:
        return "unknown"
    if isinstance(location, bytes):
        location = location.decode("utf-8", "replace")
    s = str(location).strip()
    named = _LAYER_NAMES.get(s.lower())
    if named is not None:
        return named
    for layer in LAYERS:
        if s.lower() == layer.lower():
            return layer
    m = _ACRONYM.fullmatch(s)
    if m is not None:
        return _SUFFIX_LAYER[m.group(5).lower()]
    return "unknown"
