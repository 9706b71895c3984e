"""NWB Inspector checks for the ndx-celltype types.

nwbinspector 0.7 finds third-party checks by importing the module that registers them (it does not
read entry points): ``nwbinspector FILE --modules nwb_celltype.nwb.inspector_checks`` or
``inspect_nwbfile(..., modules=["nwb_celltype.nwb.inspector_checks"])`` /
``inspect_all(path, modules=[...])``. Importing this module needs nwbinspector (the ``test`` extra).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from nwbinspector import Importance, InspectorMessage, register_check

from ._checks import ONTOLOGY_ID_RE, as_str_array, check_evidence
from ._types import CellTypeAnnotations, CellTypeClassifier, CellTypeEvidence, table_problems


@register_check(importance=Importance.CRITICAL, neurodata_type=CellTypeAnnotations)
def check_cell_type_annotations_consistent(table: CellTypeAnnotations) -> Iterator[InspectorMessage]:
    """Labels, probabilities (shape, [0, 1], rows sum to 1), votes, vocabulary and the Units region
    (in range, pointing at the Units table) of an annotation table."""
    for problem in table_problems(table):
        yield InspectorMessage(message=f"CellTypeAnnotations '{table.name}': {problem}")


@register_check(importance=Importance.CRITICAL, neurodata_type=CellTypeEvidence)
def check_cell_type_evidence(table: CellTypeEvidence) -> Iterator[InspectorMessage]:
    """Evidence types from the controlled vocabulary; rows in range of the annotation table."""
    region = table["annotations"]
    target = region.table
    problems = check_evidence(
        n_rows=len(table.id),
        n_annotations=None if target is None else len(target),
        evidence_types=table["evidence_type"].data[:],
        rows=region.data[:],
    )
    if target is not None and getattr(target, "neurodata_type", None) != "CellTypeAnnotations":
        problems.append(
            f"the 'annotations' region points at {target.name!r}, not a CellTypeAnnotations table"
        )
    for problem in problems:
        yield InspectorMessage(message=f"CellTypeEvidence '{table.name}': {problem}")


@register_check(importance=Importance.BEST_PRACTICE_VIOLATION, neurodata_type=CellTypeClassifier)
def check_cell_type_classifier(classifier: CellTypeClassifier) -> Iterator[InspectorMessage]:
    """Class list and ontology ids aligned and well-formed; JSON fields parse."""
    classes = as_str_array(classifier.classes)
    ids = as_str_array(classifier.class_ontology_ids)
    if ids.shape != classes.shape:
        yield InspectorMessage(
            message=f"CellTypeClassifier '{classifier.name}': {len(ids)} ontology ids for {len(classes)} classes"
        )
    bad = [v for v in ids if v and not ONTOLOGY_ID_RE.match(v)]
    if bad:
        yield InspectorMessage(
            message=f"CellTypeClassifier '{classifier.name}': malformed Cell Ontology ids {bad}"
        )
    for key in ("feature_config", "software_versions", "parameters", "source"):
        text = getattr(classifier, key, None)
        if not text:
            continue
        try:
            json.loads(text)
        except ValueError:
            yield InspectorMessage(message=f"CellTypeClassifier '{classifier.name}': {key} is not valid JSON")
