"""Whether an electrode's ``location`` names the cerebellar cortex, a brain region outside it, or
neither: the scope check of ``annotate`` (docs/annotate.md, "Units recorded outside the cerebellar
cortex"). The Allen CCF acronyms come from ``data/brain_regions.json`` (built from the Allen
structure ontology by ``benchmarks/make_brain_regions.py``)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from ._layers import map_location_to_layer

__all__ = ["CEREBELLAR_CORTEX", "OUTSIDE", "UNKNOWN", "location_scope"]

#: A location in the cerebellar cortex (a C4 layer name, a lobule or its layer).
CEREBELLAR_CORTEX = "cerebellar cortex"
#: A grey-matter region outside the cerebellar cortex (the cerebellar nuclei included).
OUTSIDE = "outside"
#: Anything else: no location, free text, fibre tracts, ventricles, "CB" (cortex and nuclei).
UNKNOWN = "unknown"


def _key(s: str) -> str:
    # "CUL4, 5gr" in NWB files, "CUL4 5gr" in the ontology's CSV
    return " ".join(s.replace(",", " ").split())


#: Allen acronyms of regions outside the cerebellar cortex that cerebellar labs write for other
#: things: lobules in Roman numerals ("VI": lobule VI, Allen's abducens nucleus), lobulus simplex
#: ("LS"), paraflocculus ("PF"), granular / molecular layer ("GR", "MO"), Purkinje ("P"), simplex
#: ("SI"). A unit placed there by such a string is not withheld.
AMBIGUOUS = frozenset(
    {
        "I",
        "II",
        "III",
        "IV",
        "V",
        "VI",
        "VII",
        "VIII",
        "IX",
        "X",
        "XI",
        "XII",
        "Xi",
        "x",
        "y",
        "z",
        "LS",
        "PF",
        "GR",
        "MO",
        "P",
        "SI",
    }
)


@lru_cache(maxsize=1)
def _scopes() -> tuple[dict[str, str], dict[str, str]]:
    """(outside, cortex): Allen acronyms outside the cerebellar cortex, matched with their case (the
    atlas's acronyms are case-sensitive: "GR" is the gracile nucleus, "gr" a granular layer suffix),
    and cerebellar-cortex acronyms, matched without."""
    data = json.loads((resources.files("nwb_celltype") / "data" / "brain_regions.json").read_text("utf-8"))
    outside = {_key(a): OUTSIDE for a in data["outside"] if _key(a) not in AMBIGUOUS}
    cortex = {_key(a).lower(): CEREBELLAR_CORTEX for a in data["cerebellar_cortex"]}
    return outside, cortex


def location_scope(location: str | bytes | None) -> str:
    """:data:`CEREBELLAR_CORTEX`, :data:`OUTSIDE` or :data:`UNKNOWN` for an electrode's location.

    A C4 layer name or cerebellar acronym that
    :func:`~nwb_celltype.io.map_location_to_layer` maps to a layer is cerebellar cortex; an Allen
    CCF acronym is looked up (``CA1``, ``VISp5``, ``MOBgr``, ``IP`` -> outside, with their case;
    ``SIM``, ``CENT3``, ``PFLgr`` -> cerebellar cortex, any case); anything else (free text, ``arb``,
    ``root``, ``CB``, the :data:`AMBIGUOUS` acronyms such as ``VI``) is unknown.
    """
    if location is None:
        return UNKNOWN
    if isinstance(location, bytes):
        location = location.decode("utf-8", "replace")
    s = str(location).strip()
    if not s:
        return UNKNOWN
    outside, cortex = _scopes()
    key = _key(s)
    if key in outside:  # an atlas acronym as the atlas writes it: "PL" is the prelimbic area
        return OUTSIDE
    if map_location_to_layer(s) != "unknown":
        return CEREBELLAR_CORTEX
    return cortex.get(key.lower(), UNKNOWN)
