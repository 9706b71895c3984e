"""Which labels the real-trained ensemble gives units of a species it was trained on (numpy only).

A model trained on a species' units learns each class of that species from its labelled units. Where
a class has almost none of them (the Hull tables hold 2 mouse Golgi cells, against 141 macaque ones),
the model's labels of that class on the species' units rest on the other species' units of the class,
and on the units of the validation those labels were wrong every time (docs/validation.md, "Labels a
species' training units cannot support"). So the training records how many labelled units with a
discharge of each class each species gave (``model_meta.species_support``), and a unit whose species
is known and among them does not get a label whose class that species gave fewer than
``RealModelConfig.min_species_class_units`` units (status ``unclassified``, reason
:data:`SPECIES_REASON`). A unit of another species (the cross-species case) or of no stated species is
labelled as before: what the model does there is what the cross-species rows of the validation
measure.

Species names are compared after :func:`canonical_species` (``"mouse"`` in the tables' dataset.json,
``"Mus musculus"`` in an NWB file's Subject, an NCBI taxonomy term in DANDI metadata).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "SPECIES_REASON",
    "SpeciesCoverage",
    "canonical_species",
    "species_coverage",
    "species_support",
    "unsupported_for_species",
]

#: The abstention reason of a label withheld by :func:`unsupported_for_species`.
SPECIES_REASON = "too few training units of this class in this species"

# lower-case aliases -> binomial name (NCBI taxonomy ids as DANDI writes them)
_ALIASES = {
    "Mus musculus": (
        "mouse",
        "mice",
        "house mouse",
        "mus musculus",
        "ncbitaxon:10090",
        "ncbitaxon_10090",
        "http://purl.obolibrary.org/obo/ncbitaxon_10090",
    ),
    "Macaca mulatta": (
        "macaque",
        "macaques",
        "rhesus",
        "rhesus macaque",
        "rhesus monkey",
        "macaca mulatta",
        "ncbitaxon:9544",
        "ncbitaxon_9544",
        "http://purl.obolibrary.org/obo/ncbitaxon_9544",
    ),
    "Rattus norvegicus": (
        "rat",
        "rats",
        "norway rat",
        "brown rat",
        "rattus norvegicus",
        "ncbitaxon:10116",
        "ncbitaxon_10116",
        "http://purl.obolibrary.org/obo/ncbitaxon_10116",
    ),
}
_CANONICAL = {alias: name for name, aliases in _ALIASES.items() for alias in aliases}
_UNKNOWN = ("", "unknown", "none", "nan", "n/a")


def canonical_species(name) -> str:
    """The binomial name of ``name`` where it is a known alias (mouse, Mus musculus, NCBITaxon_10090;
    macaque, rhesus macaque, Macaca mulatta, NCBITaxon_9544), else ``name`` stripped; "" for no
    species (None, "", "unknown")."""
    s = "" if name is None else str(name).strip()
    if s.lower() in _UNKNOWN:
        return ""
    key = s.lower()
    if key in _CANONICAL:
        return _CANONICAL[key]
    return _species_in(s) or s


def _species_in(s: str) -> str:
    """The known species a longer name states (a strain or note beside it), else "": the part before
    a comma, semicolon, " - " or bracket ("Mus musculus, C57BL/6J", "mouse [PV-Cre]"), read as a
    binomial followed by more ("Mus musculus C57BL/6J") or a common name after strain-like words
    ("C57BL/6J mouse", "PV-Cre mice", "Sprague Dawley rat"; not "mouse lemur" nor "deer mouse")."""
    head = re.split(r"[,;(\[]|\s-\s", s, maxsplit=1)[0].strip()
    words = head.split()
    if not words:
        return ""
    for cand in (head, " ".join(words[:2])):
        if cand.lower() in _CANONICAL:
            return _CANONICAL[cand.lower()]
    if words[-1].lower() in _CANONICAL and all(_strain_like(w) for w in words[:-1]):
        return _CANONICAL[words[-1].lower()]
    return ""


def _strain_like(word: str) -> bool:
    """A strain or genotype word: C57BL/6J, PV-Cre, Long-Evans, Sprague (capitalised or with a digit,
    a hyphen or a slash), not a common noun ("deer")."""
    return word[:1].isupper() or any(c.isdigit() or c in "-/" for c in word)


def species_support(
    species: np.ndarray | None, labels: np.ndarray, has_discharge: np.ndarray, classes: tuple[str, ...]
) -> dict[str, dict[str, int]]:
    """Per named species, the labelled units with a discharge of each class (the units whose class
    the members learn). Units of no stated species count for none."""
    if species is None:
        return {}
    sp = np.array([canonical_species(s) for s in np.asarray(species, dtype=object)], dtype=object)
    labels, heads = np.asarray(labels).astype(str), np.asarray(has_discharge, dtype=bool)
    out = {}
    for s in sorted({x for x in sp if x}):
        here = heads & (sp == s)
        if np.isin(labels[here], classes).any():
            out[str(s)] = {c: int((here & (labels == c)).sum()) for c in classes}
    return out


def unsupported_for_species(meta: Mapping, species, top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Units whose top class (``top``, indices into ``meta["classes"]``; -1 for none) their species
    gave the model fewer than ``min_species_class_units`` training units of: ``(withheld (n,) bool,
    units (n,) the species' training units of that class, -1 where no rule applies)``.

    ``species``: one name for every unit, or (n,) names; None, "" or a species the model was not
    trained on withholds nothing (nor does a model trained before this rule: no ``species_support``)."""
    n = len(top)
    counts = np.full(n, -1, dtype=np.int64)
    support = meta.get("species_support") or {}
    need = int(meta["config"].get("min_species_class_units", 0))
    if species is None or not support or need <= 0:
        return np.zeros(n, dtype=bool), counts
    names = np.broadcast_to(np.asarray(species, dtype=object), (n,))
    classes = list(meta["classes"])
    for s in {str(x) for x in names}:
        table = support.get(canonical_species(s))
        if table is None:
            continue
        here = (names == s) & (top >= 0)
        counts[here] = [int(table.get(classes[t], 0)) for t in top[here]]
    return (counts >= 0) & (counts < need), counts


@dataclass(frozen=True)
class SpeciesCoverage:
    """Whether the species of the units a model scores is one it learnt from.

    ``kind``: ``"trained"`` (every unit's species is among the model's training species),
    ``"not_trained"`` (some unit's stated species is not: its labels are a cross-species transfer),
    ``"unstated"`` (some unit has no stated species, so the species rule cannot apply to it), or
    ``"unrecorded"`` (the model records no training species: models before 1.7, C4-family models).
    ``stated``: the canonical species named for the units; ``trained``: the model's training species;
    ``note``: what a user should know ("" for ``trained`` and ``unrecorded``)."""

    kind: str
    stated: tuple[str, ...]
    trained: tuple[str, ...]
    note: str

    def to_dict(self) -> dict:
        """As JSON holds it (lists for the tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _withheld_classes(meta: Mapping) -> list[str]:
    """``"species: class, class"`` for each training species with classes below the minimum."""
    need = int((meta.get("config") or {}).get("min_species_class_units", 0))
    out = []
    for s, table in sorted((meta.get("species_support") or {}).items()):
        few = [c for c in meta.get("classes", table) if int(table.get(c, 0)) < need]
        if need > 0 and few:
            out.append(f"{s}: {', '.join(few)}")
    return out


def warn_withheld_classes(meta: Mapping) -> list[str]:
    """Log a warning, at training, naming the labels a model of ``meta`` will never give units of
    a species (:func:`_withheld_classes`); returns them."""
    withheld = _withheld_classes(meta)
    if withheld:
        need = int((meta.get("config") or {}).get("min_species_class_units", 0))
        logging.getLogger(__name__).warning(
            "the model will not give units of these species these labels: fewer than %d training units "
            "of the class (with a discharge) came from that species (%s). Add labelled units of those "
            "classes, or lower min_species_class_units.",
            need,
            "; ".join(withheld),
        )
    return withheld


def species_coverage(meta: Mapping, species) -> SpeciesCoverage:
    """How the units' species (``species``: None, one name, or (n,) names; "" for a unit of no stated
    species) stands to the species a model of ``meta`` (``model_meta``) was trained on."""
    trained = tuple(sorted(meta.get("species_support") or {}))
    if species is None:
        names = [""]
    else:
        names = [canonical_species(x) for x in np.atleast_1d(np.asarray(species, dtype=object))] or [""]
    stated = tuple(sorted({x for x in names if x}))
    if not trained:
        return SpeciesCoverage("unrecorded", stated, trained, "")
    learnt = " and ".join(trained)
    others = [x for x in stated if x not in trained]
    if others:
        note = (
            f"the model was not trained on units of {' or '.join(others)} (it learnt from {learnt}): its "
            "labels of these units are a transfer across species, which the validation measured with "
            "more confident errors than within a species (docs/validation.md, cross-species rows); "
            "state the right species if the file's is wrong"
        )
        return SpeciesCoverage("not_trained", stated, trained, note)
    if "" in names:
        withheld = _withheld_classes(meta)
        note = (
            f"{'the' if not stated else 'some'} units' species is not stated (an NWB file's "
            "general/subject/species, a table's dataset.json, or the species option): the model learnt "
            f"from {learnt}, and it withholds the labels a species gave it too few training units of"
            + (f" ({'; '.join(withheld)})" if withheld else "")
            + " only from units whose species is stated"
        )
        return SpeciesCoverage("unstated", stated, trained, note)
    return SpeciesCoverage("trained", stated, trained, "")
