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
_ACRONYM = re.compile(r"[A-Za-z][A-Za-z0-9, /]*?(mo|pu|gr)")
_SUFFIX_LAYER = {"mo": "ML", "pu": "PCL", "gr": "GCL"}


def map_location_to_layer(location: str | bytes | None) -> str:
    """Map a layer name or a brain-area acronym to the C4 layer vocabulary
    (:data:`nwb_celltype.vocabulary.LAYERS`).

    Rule, in order (case-insensitive): a C4 layer name (``ML``, ``PCL``, ``GCL``, ``unknown``) or a
    common spelling (``molecular layer``, ``Purkinje layer``, ``granular layer``, ...) maps to that
    layer; an Allen-CCF-style cerebellar acronym (letters/digits, no hyphen) ending in ``mo`` maps
    to ``ML``, in ``pu`` to ``PCL``, in ``gr`` to ``GCL`` (``CENT3mo``, ``SIMpu``, ``CUL4, 5gr``);
    anything else is ``unknown``. Hyphenated acronyms (``DG-mo`` is the dentate gyrus) are not
    cerebellar layers and map to ``unknown``.
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
    if m is not None and "-" not in s:
        return _SUFFIX_LAYER[m.group(1)]
    return "unknown"
