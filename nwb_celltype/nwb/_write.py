"""Adding classifier provenance and annotation tables to an in-memory or opened NWB file.

Everything goes into one ProcessingModule (``cell_types``) so that several annotation tables (two
models, prediction and ground truth) live side by side. Tables are always new objects: pynwb cannot
append rows to a table already on disk, so re-annotating writes a new table under a new name.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

import numpy as np
import numpy.typing as npt
from hdmf.common import DynamicTableRegion, VectorData
from pynwb import NWBFile

from ..errors import AnnotationExistsError, InvalidAnnotationError
from ..vocabulary import ANNOTATION_KINDS, CELL_ONTOLOGY_IDS
from ._checks import as_str_array, check_columns, check_evidence, expected_status
from ._types import CellTypeAnnotations, CellTypeClassifier, CellTypeEvidence

logger = logging.getLogger(__name__)

#: Name of the processing module that holds the extension's objects.
MODULE_NAME = "cell_types"
MODULE_DESCRIPTION = "Cell-type annotations of units (ndx-celltype) and the classifiers that made them."
#: Keys of the ``evidence`` mapping of :func:`add_annotations`.
EVIDENCE_KEYS = ("evidence_type", "evidence_text", "labelled_by", "labelled_at")


def get_cell_types_module(nwbfile: NWBFile, *, create: bool = True):
    """The ``cell_types`` processing module of ``nwbfile`` (created if absent and ``create``)."""
    if MODULE_NAME in nwbfile.processing:
        return nwbfile.processing[MODULE_NAME]
    if not create:
        return None
    return nwbfile.create_processing_module(name=MODULE_NAME, description=MODULE_DESCRIPTION)


def _check_name(nwbfile: NWBFile, name: str, what: str) -> None:
    if not isinstance(name, str) or not name or "/" in name or ":" in name:
        raise InvalidAnnotationError(
            f"{what} name must be a non-empty string without '/' or ':', got {name!r}; e.g. 'c4_base'"
        )
    module = get_cell_types_module(nwbfile, create=False)
    if module is not None and name in module.data_interfaces:
        raise AnnotationExistsError(
            f"processing/{MODULE_NAME}/{name} already exists in this file; choose another {what} name "
            "(tables already on disk cannot be modified, new annotations go into a new table)"
        )


def _json(value, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError) as exc:
        raise InvalidAnnotationError(f"{what} cannot be stored as JSON ({exc}); pass a plain dict") from None


def add_classifier(
    nwbfile: NWBFile,
    *,
    name: str,
    version: str,
    weights_sha256: str,
    classes: Sequence[str],
    class_ontology_ids: Sequence[str] | None = None,
    feature_config_json: str = "",
    training_data: Sequence[str] = (),
    software_versions: Mapping[str, str] | None = None,
    threshold: float | None = None,
    parameters: Mapping | None = None,
    source: Mapping | None = None,
    description: str = "",
    created: datetime | str | None = None,
) -> CellTypeClassifier:
    """Add a classifier's provenance to ``nwbfile`` (in ``processing/cell_types/<name>``).

    Parameters
    ----------
    nwbfile : pynwb.NWBFile
        In-memory file, or one opened with ``NWBHDF5IO(..., mode="a")``.
    name : str
        Name of the classifier object in the file (no '/' or ':'); must be new in the module.
    version : str
        Version of the classifier (model bundle).
    weights_sha256 : str
        64 hex digits: sha256 of the weights ('' for a manual labelling procedure).
    classes : sequence of str, length k
        Class names in the classifier's output order.
    class_ontology_ids : sequence of str, length k, optional
        Cell Ontology id per class ('' where none); default from ``vocabulary.CELL_ONTOLOGY_IDS``.
    feature_config_json : str
        Feature configuration as JSON text (``FeatureConfig.to_json()``).
    training_data : sequence of str
        References to training data (URLs, DOIs, manifest hashes; `annotate` writes one JSON object
        per training library entry, from the model card).
    software_versions : mapping str -> str, optional
        Package versions; default: nwb-celltype, pynwb, hdmf, numpy.
    threshold : float, optional
        Confidence-ratio threshold (p(top1) / p(top2)) below which a unit is unclassified.
    parameters, source : mapping, optional
        Further parameters of the run; identity of the classified data (``SourceInfo.to_dict()``).
    description : str
    created : datetime or ISO 8601 str, optional
        When the annotations were made; default now (UTC).

    Returns
    -------
    CellTypeClassifier
    """
    _check_name(nwbfile, name, "classifier")
    if classes is None or isinstance(classes, str):
        raise InvalidAnnotationError(
            f"classifier {name!r}: classes must be a sequence of class names, got {classes!r}"
        )
    classes = [str(c) for c in classes]
    if class_ontology_ids is None:
        class_ontology_ids = [CELL_ONTOLOGY_IDS.get(c, "") for c in classes]
    if software_versions is None:
        software_versions = default_software_versions()
    if created is None:
        created = datetime.now(timezone.utc)
    if isinstance(created, datetime):
        if created.tzinfo is None:
            raise InvalidAnnotationError(
                f"created={created!r} has no time zone; pass an aware datetime, e.g. datetime.now(timezone.utc)"
            )
        created = created.isoformat()
    if isinstance(training_data, str):
        training_data = [training_data]
    clf = CellTypeClassifier(
        name=name,
        version=str(version),
        weights_sha256=str(weights_sha256),
        classes=classes,
        class_ontology_ids=[str(c) for c in class_ontology_ids],
        feature_config=feature_config_json,
        software_versions=_json(dict(software_versions), "software_versions"),
        created=str(created),
        description=description,
        threshold=None if threshold is None else float(threshold),
        training_data=[str(t) for t in training_data] or None,
        parameters=_json(None if parameters is None else dict(parameters), "parameters"),
        source=_json(None if source is None else dict(source), "source"),
    )
    get_cell_types_module(nwbfile).add(clf)
    logger.info("added classifier %s %s", name, version)
    return clf


def default_software_versions() -> dict[str, str]:
    """Versions of nwb-celltype and the NWB stack (what wrote the file), and the digest of
    nwb-celltype's sources (:func:`nwb_celltype._code_identity.code_digest`)."""
    from importlib.metadata import PackageNotFoundError, version

    from .._code_identity import code_digest

    out = {}
    for pkg in ("nwb-celltype", "pynwb", "hdmf", "h5py", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    out["nwb-celltype-code"] = code_digest()  # the version number alone does not identify the code
    return out


def _str_column(values, n: int, what: str, default: str | None = None) -> np.ndarray:
    if values is None:
        if default is None:
            raise InvalidAnnotationError(f"{what} is required")
        return np.full(n, default, dtype=object)
    if isinstance(values, str):
        return np.full(n, values, dtype=object)
    arr = as_str_array(values)
    if arr.shape != (n,):
        raise InvalidAnnotationError(
            f"{what} has shape {arr.shape}, expected ({n},): one value per annotated unit (units_region)"
        )
    return arr


def _numeric(values, what: str, dtype) -> np.ndarray | None:
    if values is None:
        return None
    try:
        arr = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InvalidAnnotationError(
            f"{what} must be numeric array data ({exc}); got {type(values).__name__}"
        ) from None
    if arr.dtype == object:
        raise InvalidAnnotationError(f"{what} must be a numeric array, got ragged or non-numeric values")
    return arr


def add_annotations(
    nwbfile: NWBFile,
    *,
    name: str,
    units_region: Sequence[int] | np.ndarray,
    labels: Sequence[str] | np.ndarray,
    classes: Sequence[str],
    probabilities: npt.ArrayLike | None = None,
    confidence: npt.ArrayLike | None = None,
    kind: str | Sequence[str] = "prediction",
    status: Sequence[str] | None = None,
    reasons: Sequence[str] | None = None,
    votes: npt.ArrayLike | None = None,
    ontology_ids: Sequence[str] | None = None,
    classifier: CellTypeClassifier | None = None,
    evidence: Mapping[str, Sequence] | None = None,
    description: str = "",
    units=None,
) -> CellTypeAnnotations:
    """Add a table of cell-type annotations of units to ``nwbfile`` (``processing/cell_types/<name>``).

    Parameters
    ----------
    nwbfile : pynwb.NWBFile
        File with a Units table (in memory or opened with mode "a").
    name : str
        Name of the new table (no '/' or ':'); must be new in the module.
    units_region : (n,) int
        Row indices (not ids) into ``nwbfile.units`` of the annotated units, each at most once.
    labels : (n,) str
        A class name, ``"unclassified"`` or ``"not_classifiable"`` per unit.
    classes : (k,) str
        Class order of ``probabilities`` and ``votes``.
    probabilities : (n, k) float, optional
        Per-class probabilities in [0, 1], rows summing to 1 (±1e-4); all-NaN rows allowed for units
        that could not be classified.
    confidence : (n,) float, optional
        Confidence ratio p(top1) / p(top2) (>= 0, NaN allowed).
    kind : str or (n,) str
        ``"prediction"``, ``"ground_truth"`` or ``"expert"`` (one for all rows, or one per row).
    status : (n,) str, optional
        ``classified`` / ``unclassified`` / ``not_classifiable``; derived from ``labels`` if omitted
        and must agree with them if given.
    reasons : (n,) str, optional
        Why a unit is unclassified / not classifiable ('' otherwise).
    votes : (n, k) int, optional
        Ensemble members voting for each class.
    ontology_ids : (n,) str, optional
        Cell Ontology id per row; default from the classifier's class ids or
        ``vocabulary.CELL_ONTOLOGY_IDS`` ('' for unclassified units).
    classifier : CellTypeClassifier, optional
        Provenance object (from :func:`add_classifier`); added to the file if not in it yet.
    evidence : mapping, optional
        ``{"evidence_type": (m,), "evidence_text": (m,), "labelled_by": (m,), "labelled_at": (m,)}``
        and optionally ``"row": (m,)`` (row of this table each item supports; several items per row
        allowed). Without ``"row"``, m == n and item i supports row i; rows whose evidence_type is ''
        are skipped. ``labelled_at`` entries may be datetimes or ISO 8601 text.
    description : str
    units : pynwb.misc.Units, optional
        The Units table the rows refer to (default ``nwbfile.units``; e.g. a second sorting in a
        processing module, :func:`units_table_at`).

    Returns
    -------
    CellTypeAnnotations

    Raises
    ------
    InvalidAnnotationError
        Any inconsistency (shapes, ranges, vocabulary), with the offending rows.
    AnnotationExistsError
        A table of that name exists already.
    """
    _check_name(nwbfile, name, "annotation table")
    if evidence is not None:
        _check_name(nwbfile, f"{name}_evidence", "annotation table")
    units = _units_table(nwbfile) if units is None else units
    rows = _unit_rows(units_region)
    n = len(rows)
    classes_arr = _class_order(classes)
    text = _text_columns(
        n,
        labels=labels,
        kind=kind,
        status=status,
        reasons=reasons,
        ontology_ids=ontology_ids,
        classifier=classifier,
    )
    numeric = {
        "probabilities": _numeric(probabilities, "probabilities", np.float64),
        "confidence": _numeric(confidence, "confidence", np.float64),
        "votes": _vote_counts(votes),
    }
    _check_annotation_columns(name, classes_arr, rows, len(units), text, numeric, classifier)
    columns = _annotation_columns(units, rows, text, numeric)

    table = CellTypeAnnotations(
        name=name,
        classes=classes_arr.tolist(),
        description=description or "Cell-type annotations of units.",
        classifier=classifier,
        columns=columns,
    )
    # the evidence is checked before the file changes: a refused call leaves the file as it was
    evidence_table = None if evidence is None else _evidence_table(table, evidence, n)
    module = get_cell_types_module(nwbfile)
    if classifier is not None and classifier.parent is None:
        module.add(classifier)
    module.add(table)
    if evidence_table is not None:
        module.add(evidence_table)
    logger.info("added annotation table %s (%d units)", name, n)
    return table


def units_table_at(nwbfile: NWBFile, path: str = "units"):
    """The Units table of ``nwbfile`` at HDF5 path ``path``: ``units`` (``nwbfile.units``) or
    ``processing/<module>/<name>`` (:func:`nwb_celltype.io.resolve_units_table` names them)."""
    from pynwb.misc import Units

    parts = str(path).strip("/").split("/")
    if parts == ["units"]:
        return _units_table(nwbfile)
    table = None
    if len(parts) == 3 and parts[0] == "processing" and parts[1] in nwbfile.processing:
        table = nwbfile.processing[parts[1]].data_interfaces.get(parts[2])
    if not isinstance(table, Units):
        raise InvalidAnnotationError(
            f"the NWB file has no Units table at /{'/'.join(parts)}; annotations refer to rows of one "
            "(NWBFile.units, or a Units table in a processing module)."
        )
    return table


def _units_table(nwbfile: NWBFile):
    """The file's Units table, which the annotations refer to (an error if it has none)."""
    units = nwbfile.units
    if units is None:
        raise InvalidAnnotationError(
            "the NWB file has no Units table (nwbfile.units is None); annotations refer to rows of it. "
            "Add the spike-sorted units first (nwbfile.add_unit / the units table of the source)."
        )
    return units


def _unit_rows(units_region) -> np.ndarray:
    """``units_region`` checked to be a 1-D sequence of integer row indices, as int64."""
    rows = np.asarray(units_region)
    if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
        raise InvalidAnnotationError(
            f"units_region must be a 1-D sequence of integer row indices into nwbfile.units, got "
            f"shape {rows.shape} dtype {rows.dtype}"
        )
    return rows.astype(np.int64)


def _class_order(classes) -> np.ndarray:
    """The class order of the table as a str array (an error if not a sequence of names)."""
    if classes is None or isinstance(classes, str):
        raise InvalidAnnotationError(
            f"classes must be a sequence of class names (the column order of probabilities), got {classes!r}"
        )
    return as_str_array(list(classes))


def _text_columns(
    n: int, *, labels, kind, status, reasons, ontology_ids, classifier
) -> dict[str, np.ndarray]:
    """The per-row text columns of an annotation table, in column order, with their defaults filled in."""
    labels_arr = _str_column(labels, n, "labels")
    kinds = _str_column(kind, n, "kind")
    status_arr = expected_status(labels_arr) if status is None else _str_column(status, n, "status")
    reasons_arr = _str_column(reasons, n, "reasons", default="")
    if ontology_ids is None:
        ontology_arr = _default_ontology_ids(labels_arr, classifier)
    else:
        ontology_arr = _str_column(ontology_ids, n, "ontology_ids")
    return {
        "label": labels_arr,
        "ontology_id": ontology_arr,
        "kind": kinds,
        "status": status_arr,
        "reason": reasons_arr,
    }


def _default_ontology_ids(labels: np.ndarray, classifier: CellTypeClassifier | None) -> np.ndarray:
    """Cell Ontology id of each label: the classifier's class ids, else ``CELL_ONTOLOGY_IDS``, else ''."""
    lookup = dict(CELL_ONTOLOGY_IDS)
    if classifier is not None:
        lookup.update(
            zip(as_str_array(classifier.classes), as_str_array(classifier.class_ontology_ids), strict=True)
        )
    return np.array([lookup.get(lab, "") for lab in labels], dtype=object)


def _vote_counts(votes) -> np.ndarray | None:
    """Ensemble votes as a numeric array; whole-number floats become integers."""
    v = _numeric(votes, "votes", None)
    if v is not None and v.size and np.issubdtype(v.dtype, np.floating) and np.array_equal(v, np.round(v)):
        v = v.astype(np.int64)
    return v


def _check_annotation_columns(
    name: str,
    classes: np.ndarray,
    rows: np.ndarray,
    n_units: int,
    text: dict[str, np.ndarray],
    numeric: dict[str, np.ndarray | None],
    classifier: CellTypeClassifier | None,
) -> None:
    """Raise InvalidAnnotationError listing every inconsistency of a new annotation table's columns."""
    problems = check_columns(
        n_rows=len(rows),
        classes=classes,
        labels=text["label"],
        ontology_ids=text["ontology_id"],
        kinds=text["kind"],
        status=text["status"],
        **numeric,
        unit_rows=rows,
        n_units=n_units,
    )
    problems += _classifier_class_problems(classifier, classes)
    if problems:
        raise InvalidAnnotationError(
            f"cannot add annotation table {name!r}: "
            + "; ".join(problems)
            + f" (allowed kinds: {ANNOTATION_KINDS})"
        )


def _classifier_class_problems(classifier: CellTypeClassifier | None, classes: np.ndarray) -> list[str]:
    """Problem of a class order that differs from the classifier's (none without a classifier)."""
    if classifier is None:
        return []
    clf_classes = as_str_array(classifier.classes).tolist()
    if clf_classes == classes.tolist():
        return []
    return [
        f"classes {classes.tolist()} differ from the classifier's classes {clf_classes}; "
        "pass the classifier's class order"
    ]


#: Description of each column of an annotation table written by :func:`add_annotations` other than "units".
_COLUMN_DESCRIPTIONS = {
    "label": "Cell-type label.",
    "ontology_id": "Cell Ontology id ('' if none).",
    "kind": "prediction, ground_truth or expert.",
    "status": "classified/unclassified/not_classifiable.",
    "reason": "Why unclassified / not classifiable.",
    "probabilities": "Per-class probabilities.",
    "confidence": "Ratio p(top1)/p(top2).",
    "votes": "Ensemble votes per class.",
}


def _annotation_columns(
    units, rows: np.ndarray, text: dict[str, np.ndarray], numeric: dict[str, np.ndarray | None]
) -> list:
    """The columns of a new annotation table: the units region, the text columns, the numeric ones given."""
    columns = [
        DynamicTableRegion(name="units", data=rows, description="Row of the Units table.", table=units)
    ]
    columns += [
        VectorData(name=key, data=arr.tolist(), description=_COLUMN_DESCRIPTIONS[key])
        for key, arr in text.items()
    ]
    for key, arr in numeric.items():
        if arr is not None:
            data = arr.astype(np.int64) if key == "votes" else arr  # votes of any integer type as int64
            columns.append(VectorData(name=key, data=data, description=_COLUMN_DESCRIPTIONS[key]))
    return columns


def _evidence_table(table: CellTypeAnnotations, evidence: Mapping[str, Sequence], n: int) -> CellTypeEvidence:
    unknown = sorted(set(evidence) - {*EVIDENCE_KEYS, "row"})
    if unknown or "evidence_type" not in evidence:
        raise InvalidAnnotationError(
            f"evidence must be a dict with keys {list(EVIDENCE_KEYS)} (+ optional 'row'); got keys "
            f"{sorted(evidence)}"
        )
    etype = as_str_array(list(evidence["evidence_type"]))
    m = len(etype)
    if "row" in evidence:
        rows = np.asarray(evidence["row"])
        if rows.shape != (m,) or (m and not np.issubdtype(rows.dtype, np.integer)):
            raise InvalidAnnotationError(
                f"evidence['row'] must be ({m},) integer rows of the annotation table, got shape {rows.shape}"
            )
        keep = np.ones(m, dtype=bool)
    else:
        if m != n:
            raise InvalidAnnotationError(
                f"evidence['evidence_type'] has {m} entries for {n} annotated units; give one per unit "
                "('' for none) or pass evidence['row'] with the table row of each item"
            )
        rows = np.arange(n)
        keep = etype != ""
    cols = {}
    for key in EVIDENCE_KEYS[1:]:
        vals = evidence.get(key)
        if vals is None:
            cols[key] = np.full(m, "", dtype=object)
            continue
        vals = [v.isoformat() if isinstance(v, datetime) else v for v in vals]
        arr = as_str_array(vals)
        if arr.shape != (m,):
            raise InvalidAnnotationError(f"evidence[{key!r}] has shape {arr.shape}, expected ({m},)")
        cols[key] = arr
    rows, etype = rows[keep].astype(np.int64), etype[keep]
    problems = check_evidence(n_rows=len(etype), n_annotations=n, evidence_types=etype, rows=rows)
    if problems:
        raise InvalidAnnotationError(f"evidence of annotation table {table.name!r}: " + "; ".join(problems))
    return CellTypeEvidence(
        name=f"{table.name}_evidence",
        columns=[
            DynamicTableRegion(
                name="annotations", data=rows, description="Row of the parent table.", table=table
            ),
            VectorData(name="evidence_type", data=etype.tolist(), description="Kind of evidence."),
            *(
                VectorData(name=key, data=cols[key][keep].tolist(), description=key.replace("_", " "))
                for key in EVIDENCE_KEYS[1:]
            ),
        ],
    )
