"""Controlled vocabularies of nwb-celltype: cell-type classes, layers, annotation kinds and
ground-truth evidence. The NWB spec language has no enums, so these tuples are the single source
of allowed values; the NWB layer enforces them and docs/extension.md documents them."""

from __future__ import annotations

#: The five C4 cerebellar classes in the order of the C4 models' outputs (index 0 = GoC), as in
#: ``LABELLING_NO_GRC`` of the reference code.
C4_CLASSES: tuple[str, ...] = ("GoC", "MLI", "MFB", "PkC_ss", "PkC_cs")
#: Output order of C4's ``mli_clustering`` variants (MLI split into two clusters).
C4_CLASSES_MLI_CLUSTERING: tuple[str, ...] = ("GoC", "MLI_A", "MLI_B", "MFB", "PkC_ss", "PkC_cs")
#: Classes that are a part of a C4 class: an MLI_A or MLI_B label names a molecular layer interneuron.
PARENT_CLASS: dict[str, str] = {"MLI_A": "MLI", "MLI_B": "MLI"}

#: Label given to a unit whose confidence ratio is below the threshold (it keeps its probabilities).
UNCLASSIFIED = "unclassified"
#: Label given to a unit that could not be classified at all (reason stored beside it).
NOT_CLASSIFIABLE = "not_classifiable"

#: Cell Ontology ids, only where a term exists for what the class denotes (checked against the CL /
#: UBERON sources: CL:0000121 "Purkinje cell", CL:0000119 "cerebellar Golgi cell"). PkC_ss and PkC_cs
#: are the simple and complex spikes of one cell type, so both carry the Purkinje cell term (the term
#: names the cell that fired, not the spike type). Left out on purpose: MLI (no single CL term covers
#: basket + stellate cells), MFB (an axon terminal, not a cell); their ontology id is "".
CELL_ONTOLOGY_IDS: dict[str, str] = {
    "PkC_ss": "CL:0000121",
    "PkC_cs": "CL:0000121",
    "GoC": "CL:0000119",
}

#: Layer vocabulary of C4's 4-d one-hot, index order = one-hot position.
LAYERS: tuple[str, ...] = ("unknown", "GCL", "PCL", "ML")

#: Kinds of annotation a row can be.
ANNOTATION_KINDS: tuple[str, ...] = ("prediction", "ground_truth", "expert")

#: Status of an annotated unit: classified (label is a class), unclassified (confidence below the
#: threshold; probabilities kept) or not_classifiable (no features; reason stored beside it).
ANNOTATION_STATUSES: tuple[str, ...] = ("classified", "unclassified", "not_classifiable")

#: Kinds of evidence behind a ground-truth label.
EVIDENCE_TYPES: tuple[str, ...] = (
    "optotagging",
    "pharmacology",
    "juxtacellular",
    "expert",
    "anatomy",
    "simulation",
    "other",
)
