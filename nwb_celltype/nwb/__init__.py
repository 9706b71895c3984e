"""The NWB layer: the ``ndx-celltype`` extension's classes, and adding / reading cell-type
annotations and classifier provenance in NWB files (the only layer that builds extension objects).

NWB Inspector checks for these types live in :mod:`nwb_celltype.nwb.inspector_checks`; load them with
``nwbinspector --modules nwb_celltype.nwb.inspector_checks`` (or ``modules=[...]`` in Python).
"""

from __future__ import annotations

from ._derived import derived_nwbfile
from ._namespace import NAMESPACE, load_namespace, namespace_path, spec_dir
from ._read import AnnotationRecord, read_annotations
from ._types import CellTypeAnnotations, CellTypeClassifier, CellTypeEvidence
from ._units_columns import (
    UNITS_COLUMNS,
    UnitsColumn,
    add_units_columns,
    column_names,
    remove_units_columns,
    units_columns_on_disk,
)
from ._write import (
    EVIDENCE_KEYS,
    MODULE_NAME,
    add_annotations,
    add_classifier,
    default_software_versions,
    get_cell_types_module,
    units_table_at,
)

__all__ = [
    "EVIDENCE_KEYS",
    "MODULE_NAME",
    "NAMESPACE",
    "UNITS_COLUMNS",
    "AnnotationRecord",
    "CellTypeAnnotations",
    "CellTypeClassifier",
    "CellTypeEvidence",
    "UnitsColumn",
    "add_annotations",
    "add_classifier",
    "add_units_columns",
    "column_names",
    "default_software_versions",
    "derived_nwbfile",
    "get_cell_types_module",
    "load_namespace",
    "namespace_path",
    "read_annotations",
    "remove_units_columns",
    "spec_dir",
    "units_columns_on_disk",
    "units_table_at",
]
