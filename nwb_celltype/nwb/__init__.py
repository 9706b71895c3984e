"""The NWB layer: the ``ndx-celltype`` extension's classes, and adding / reading cell-type
annotations and classifier provenance in NWB files (the only layer that builds extension objects).

NWB Inspector checks for these types live in :mod:`nwb_celltype.nwb.inspector_checks`; load them with
``nwbinspector --modules nwb_celltype.nwb.inspector_checks`` (or ``modules=[...]`` in Python).
"""

from __future__ import annotations

from ._namespace import NAMESPACE, load_namespace, namespace_path, spec_dir
from ._read import AnnotationRecord, read_annotations
from ._types import CellTypeAnnotations, CellTypeClassifier, CellTypeEvidence
from ._write import (
    EVIDENCE_KEYS,
    MODULE_NAME,
    add_annotations,
    add_classifier,
    default_software_versions,
    get_cell_types_module,
)

__all__ = [
    "EVIDENCE_KEYS",
    "MODULE_NAME",
    "NAMESPACE",
    "AnnotationRecord",
    "CellTypeAnnotations",
    "CellTypeClassifier",
    "CellTypeEvidence",
    "add_annotations",
    "add_classifier",
    "default_software_versions",
    "get_cell_types_module",
    "load_namespace",
    "namespace_path",
    "read_annotations",
    "spec_dir",
]
