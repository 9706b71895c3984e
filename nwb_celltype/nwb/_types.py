"""Python classes of the ``ndx-celltype`` types, with keyword constructors that check their values.

Checks run only when a user builds an object; objects read from a file are built without them
(files are checked by :mod:`nwb_celltype.nwb.inspector_checks` instead), so a bad file can still be
opened and reported on.
"""

from __future__ import annotations

import numpy as np
from hdmf.common import DynamicTable
from hdmf.utils import docval, get_docval, popargs
from pynwb import register_class
from pynwb.core import NWBDataInterface

from ..errors import InvalidAnnotationError
from ._checks import as_str_array, check_columns, check_evidence
from ._namespace import NAMESPACE, load_namespace

load_namespace()


def _column_data(table: DynamicTable, name: str):
    if name not in table.colnames:
        return None
    data = table[name].data
    return data[:] if not isinstance(data, (list, np.ndarray)) else data


@register_class("CellTypeClassifier", NAMESPACE)
class CellTypeClassifier(NWBDataInterface):
    """Provenance of a cell-type classifier (or a labelling procedure); the object's name is the
    classifier's name. See docs/extension.md for each field."""

    __nwbfields__ = (
        "description",
        "version",
        "weights_sha256",
        "created",
        "threshold",
        "classes",
        "class_ontology_ids",
        "feature_config",
        "training_data",
        "software_versions",
        "parameters",
        "source",
    )

    @docval(
        {"name": "name", "type": str, "doc": "Name of the classifier (no '/' or ':')."},
        {"name": "version", "type": str, "doc": "Version of the classifier."},
        {"name": "weights_sha256", "type": str, "doc": "Hex sha256 of the weights ('' if none)."},
        {"name": "classes", "type": ("array_data", "data"), "doc": "(k,) class names in output order."},
        {"name": "class_ontology_ids", "type": ("array_data", "data"), "doc": "(k,) CL ids or ''."},
        {"name": "feature_config", "type": str, "doc": "Feature configuration, JSON text."},
        {"name": "software_versions", "type": str, "doc": "JSON object package -> version."},
        {"name": "created", "type": str, "doc": "ISO 8601 date-time of the run."},
        {"name": "description", "type": str, "doc": "Free-text description.", "default": ""},
        {"name": "threshold", "type": float, "doc": "Confidence-ratio threshold.", "default": None},
        {"name": "training_data", "type": ("array_data", "data"), "doc": "References.", "default": None},
        {"name": "parameters", "type": str, "doc": "JSON object of parameters.", "default": None},
        {"name": "source", "type": str, "doc": "JSON object: identity of the data.", "default": None},
        allow_positional=False,
    )
    def __init__(self, **kwargs):
        fields = {f: kwargs.pop(f) for f in self.__nwbfields__ if f in kwargs}
        super().__init__(**kwargs)
        if not self._in_construct_mode:
            _check_classifier(self.name, fields)
        for key, value in fields.items():
            setattr(self, key, value)


def _check_classifier(name: str, f: dict) -> None:
    import json

    from ._checks import ONTOLOGY_ID_RE

    where = f"classifier {name!r}"
    classes = as_str_array(f["classes"])
    ids = as_str_array(f["class_ontology_ids"])
    if classes.ndim != 1 or len(classes) == 0 or len(set(classes.tolist())) != len(classes):
        raise InvalidAnnotationError(
            f"{where}: classes must be a non-empty list of unique names, got {classes.tolist()}"
        )
    if ids.shape != classes.shape:
        raise InvalidAnnotationError(
            f"{where}: class_ontology_ids has {len(ids)} entries for {len(classes)} classes "
            f"{classes.tolist()}; give one id per class ('' where no Cell Ontology term exists)"
        )
    bad = [v for v in ids if v and not ONTOLOGY_ID_RE.match(v)]
    if bad:
        raise InvalidAnnotationError(
            f"{where}: class_ontology_ids {bad} are not Cell Ontology ids of the form 'CL:0000121'; "
            "use '' where no term exists"
        )
    w = f["weights_sha256"]
    if w and not (len(w) == 64 and all(c in "0123456789abcdef" for c in w)):
        raise InvalidAnnotationError(
            f"{where}: weights_sha256 must be 64 lowercase hex digits (or '' for no weights), got {w!r}"
        )
    if f.get("threshold") is not None and not np.isfinite(f["threshold"]):
        raise InvalidAnnotationError(f"{where}: threshold must be finite, got {f['threshold']!r}")
    for key in ("feature_config", "software_versions", "parameters", "source"):
        text = f.get(key)
        if text is None or (key == "feature_config" and text == ""):
            continue
        try:
            json.loads(text)
        except ValueError as exc:
            raise InvalidAnnotationError(
                f"{where}: {key} must be JSON text ({exc}); pass a dict to add_classifier or json.dumps it"
            ) from None


@register_class("CellTypeEvidence", NAMESPACE)
class CellTypeEvidence(DynamicTable):
    """Evidence behind ground-truth / expert labels: one row per piece of evidence, pointing at a row
    of a CellTypeAnnotations table in the same processing module."""

    __columns__ = (
        {
            "name": "annotations",
            "description": "Row of the annotation table.",
            "required": True,
            "table": True,
        },
        {
            "name": "evidence_type",
            "description": "Kind of evidence (vocabulary.EVIDENCE_TYPES).",
            "required": True,
        },
        {"name": "evidence_text", "description": "Free-text description of the evidence.", "required": True},
        {"name": "labelled_by", "description": "Who labelled the unit.", "required": True},
        {"name": "labelled_at", "description": "When the unit was labelled (ISO 8601).", "required": True},
    )

    @docval(
        {"name": "name", "type": str, "doc": "Name of the table (by convention '<annotations>_evidence')."},
        {
            "name": "description",
            "type": str,
            "doc": "Description of the table.",
            "default": "Evidence behind ground-truth and expert labels.",
        },
        *get_docval(DynamicTable.__init__, "id", "columns", "colnames", "target_tables"),
        allow_positional=False,
    )
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not self._in_construct_mode and len(self.id):
            region = self["annotations"]
            problems = check_evidence(
                n_rows=len(self.id),
                n_annotations=len(region.table) if region.table is not None else None,
                evidence_types=_column_data(self, "evidence_type"),
                rows=np.asarray(region.data),
            )
            if problems:
                raise InvalidAnnotationError(f"evidence table {self.name!r}: " + "; ".join(problems))


@register_class("CellTypeAnnotations", NAMESPACE)
class CellTypeAnnotations(DynamicTable):
    """Cell-type annotations of units of the file's Units table (one row per unit), with per-class
    probabilities in the order of :attr:`classes`, and a link to the classifier."""

    __fields__ = (
        "classes",
        {"name": "classifier", "child": False},
    )
    __columns__ = (
        {"name": "units", "description": "Row of the Units table.", "required": True, "table": True},
        {"name": "label", "description": "Cell-type label.", "required": True},
        {
            "name": "ontology_id",
            "description": "Cell Ontology id of the label ('' if none).",
            "required": True,
        },
        {"name": "kind", "description": "prediction, ground_truth or expert.", "required": True},
        {"name": "status", "description": "classified, unclassified or not_classifiable.", "required": True},
        {"name": "reason", "description": "Why unclassified / not classifiable.", "required": True},
        {"name": "probabilities", "description": "(units, classes) probabilities.", "required": False},
        {"name": "confidence", "description": "Ratio p(top1)/p(top2).", "required": False},
        {"name": "votes", "description": "(units, classes) ensemble votes.", "required": False},
    )

    @docval(
        {"name": "name", "type": str, "doc": "Name of the table (unique in its processing module)."},
        {"name": "classes", "type": ("array_data", "data"), "doc": "(k,) class names, column order."},
        {
            "name": "description",
            "type": str,
            "doc": "Description of the table.",
            "default": "Cell-type annotations of units.",
        },
        {
            "name": "classifier",
            "type": CellTypeClassifier,
            "doc": "Classifier that made them.",
            "default": None,
        },
        *get_docval(DynamicTable.__init__, "id", "columns", "colnames", "target_tables"),
        allow_positional=False,
    )
    def __init__(self, **kwargs):
        classes, classifier = popargs("classes", "classifier", kwargs)
        super().__init__(**kwargs)
        self.classes = classes
        self.classifier = classifier
        if not self._in_construct_mode:
            problems = self.problems()
            if problems:
                raise InvalidAnnotationError(f"annotation table {self.name!r}: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """Consistency problems of this table (empty list when consistent)."""
        return table_problems(self)


def table_problems(table) -> list[str]:
    """Problems of any CellTypeAnnotations-like table (ours or pynwb's generated class)."""
    n = len(table.id)
    region = table["units"] if "units" in table.colnames else None
    units_table = getattr(region, "table", None)
    problems = check_columns(
        n_rows=n,
        classes=as_str_array(table.classes),
        labels=_opt_str(table, "label"),
        ontology_ids=_opt_str(table, "ontology_id"),
        kinds=_opt_str(table, "kind"),
        status=_opt_str(table, "status"),
        probabilities=_column_data(table, "probabilities"),
        confidence=_column_data(table, "confidence"),
        votes=_column_data(table, "votes"),
        unit_rows=None if region is None else np.asarray(region.data[:]),
        n_units=None if units_table is None else len(units_table),
    )
    if region is None:
        problems.append("the table has no 'units' region into the Units table")
    elif units_table is not None and getattr(units_table, "neurodata_type", None) != "Units":
        problems.append(
            f"the 'units' region must point at the file's Units table, not at {units_table.name!r} "
            f"({getattr(units_table, 'neurodata_type', type(units_table).__name__)})"
        )
    return problems


def _opt_str(table, name):
    data = _column_data(table, name)
    return None if data is None else as_str_array(data)
