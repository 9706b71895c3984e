"""Reading annotation tables back as plain numpy, from any reader: our classes, pynwb's classes
generated from the cached spec (package not imported), or raw h5py objects."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidAnnotationError
from ._checks import as_str_array

ANNOTATIONS_TYPE = "CellTypeAnnotations"
CLASSIFIER_TYPE = "CellTypeClassifier"
EVIDENCE_TYPE = "CellTypeEvidence"
EVIDENCE_FIELDS = ("evidence_type", "evidence_text", "labelled_by", "labelled_at")


@dataclass
class AnnotationRecord:
    """One annotation table as plain numpy arrays.

    Attributes
    ----------
    name : str
        Name of the table in its processing module.
    classes : tuple of str, length k
        Class order of ``probabilities`` and ``votes``.
    unit_indices : (n,) int64
        Row indices into the file's Units table.
    unit_ids : (n,) int64
        Ids (``units.id``) of those rows.
    labels, ontology_ids, kinds, status, reasons : (n,) object (str)
    probabilities : (n, k) float64 or None
    confidence : (n,) float64 or None
    votes : (n, k) int64 or None
    classifier : dict or None
        Provenance of the linked classifier (JSON fields parsed), with its ``name``.
    evidence : dict of str -> (m,) arrays or None
        ``row`` (row of this table), ``evidence_type``, ``evidence_text``, ``labelled_by``,
        ``labelled_at``.
    description : str
    module : str
        Processing module holding the table.
    units_table : str
        HDF5 path of the Units table its rows refer to (``/units``, or a Units table in a processing
        module).
    """

    name: str
    classes: tuple[str, ...]
    unit_indices: np.ndarray
    unit_ids: np.ndarray
    labels: np.ndarray
    ontology_ids: np.ndarray
    kinds: np.ndarray
    status: np.ndarray
    reasons: np.ndarray
    probabilities: np.ndarray | None = None
    confidence: np.ndarray | None = None
    votes: np.ndarray | None = None
    classifier: dict | None = None
    evidence: dict[str, np.ndarray] | None = None
    description: str = ""
    module: str = ""
    extra: dict = field(default_factory=dict)
    units_table: str = "/units"

    def __len__(self) -> int:
        return len(self.unit_indices)

    @property
    def kind(self) -> str:
        """The annotation kind of every row, or ``"mixed"`` when rows differ (``"prediction"`` if empty)."""
        uniq = sorted(set(self.kinds.tolist()))
        if not uniq:
            return "prediction"
        return uniq[0] if len(uniq) == 1 else "mixed"


def _str(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _str(value[()])
    return str(value)


def _parse_json(text):
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _classifier_dict(get, name: str) -> dict:
    """``get(key)`` returns a field's raw value or None."""
    out = {"name": name}
    for key in ("description", "version", "weights_sha256", "created"):
        v = get(key)
        out[key] = "" if v is None else _str(v)
    t = get("threshold")
    out["threshold"] = None if t is None else float(np.asarray(t))
    for key in ("classes", "class_ontology_ids", "training_data"):
        v = get(key)
        out[key] = [] if v is None else as_str_array(v).tolist()
    out["feature_config"] = "" if get("feature_config") is None else _str(get("feature_config"))
    for key in ("software_versions", "parameters", "source"):
        v = get(key)
        out[key] = None if v is None else _parse_json(_str(v))
    return out


def read_annotations(nwbfile) -> dict[str, AnnotationRecord]:
    """All cell-type annotation tables of a file, as plain numpy.

    Parameters
    ----------
    nwbfile : pynwb.NWBFile or h5py.File / h5py.Group
        A file read by pynwb (with or without nwb_celltype's classes registered), or the root of an
        NWB file opened with h5py.

    Returns
    -------
    dict of str -> AnnotationRecord
        Keyed by table name (``"<module>/<name>"`` if two modules hold tables of one name).
    """
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is a dependency
        h5py = None
    if h5py is not None and isinstance(nwbfile, h5py.Group):
        records = _read_h5py(nwbfile)
    elif hasattr(nwbfile, "processing"):
        records = _read_pynwb(nwbfile)
    else:
        raise InvalidAnnotationError(
            f"read_annotations needs a pynwb NWBFile or an h5py File, got {type(nwbfile).__name__}; "
            "open the file with pynwb.NWBHDF5IO(path).read() or h5py.File(path)"
        )
    out: dict[str, AnnotationRecord] = {}
    names = [r.name for r in records]
    for r in records:
        key = r.name if names.count(r.name) == 1 else f"{r.module}/{r.name}"
        out[key] = r
    return out


def _neurodata_type(obj) -> str | None:
    return getattr(obj, "neurodata_type", None) or getattr(type(obj), "neurodata_type", None)


def _read_pynwb(nwbfile) -> list[AnnotationRecord]:
    records = []
    for module in nwbfile.processing.values():
        objs = list(module.data_interfaces.values())
        evidence = {}
        for obj in objs:
            if _neurodata_type(obj) == EVIDENCE_TYPE:
                evidence.setdefault(id(obj["annotations"].table), []).append(obj)
        for obj in objs:
            if _neurodata_type(obj) == ANNOTATIONS_TYPE:
                records.append(_record_from_table(obj, module.name, evidence.get(id(obj), [])))
    return records


def _col(table, name, *, text=False):
    if name not in table.colnames:
        return None
    data = table[name].data
    arr = data[:] if not isinstance(data, (list, np.ndarray)) else data
    return as_str_array(arr) if text else np.asarray(arr)


def _merge_evidence(parts: list[dict]) -> dict | None:
    if not parts:
        return None
    return {k: np.concatenate([p[k] for p in parts]) for k in ("row", *EVIDENCE_FIELDS)}


def _build_record(
    col, *, name, classes, rows, ids, classifier, evidence, description, module, units_table="/units"
) -> AnnotationRecord:
    """An AnnotationRecord from a column getter ``col(name, text=False)`` (pynwb or h5py reader)."""
    p = col("probabilities")
    c = col("confidence")
    v = col("votes")
    return AnnotationRecord(
        name=name,
        classes=classes,
        unit_indices=rows,
        unit_ids=ids[rows] if len(rows) else np.zeros(0, np.int64),
        labels=col("label", text=True),
        ontology_ids=col("ontology_id", text=True),
        kinds=col("kind", text=True),
        status=col("status", text=True),
        reasons=col("reason", text=True),
        probabilities=None if p is None else p.astype(np.float64),
        confidence=None if c is None else c.astype(np.float64),
        votes=None if v is None else v.astype(np.int64),
        classifier=classifier,
        evidence=evidence,
        description=description,
        module=module,
        units_table=units_table,
    )


def _units_path_of(units) -> str:
    """HDF5 path of a pynwb Units table: ``/units``, or ``/processing/<module>/<name>``."""
    parent = getattr(units, "parent", None)
    if parent is not None and type(parent).__name__ == "ProcessingModule":
        return f"/processing/{parent.name}/{units.name}"
    return "/units"


def _record_from_table(table, module: str, evidence_tables: list) -> AnnotationRecord:
    region = table["units"]
    rows = np.asarray(region.data[:], dtype=np.int64)
    ids = np.asarray(region.table.id[:], dtype=np.int64)
    clf = getattr(table, "classifier", None)
    classifier = None
    if clf is not None:
        classifier = _classifier_dict(lambda k: getattr(clf, k, None), clf.name)
    parts = []
    for ev in evidence_tables:
        part = {"row": np.asarray(ev["annotations"].data[:], dtype=np.int64)}
        for key in EVIDENCE_FIELDS:
            part[key] = _col(ev, key, text=True)
        parts.append(part)
    evidence = _merge_evidence(parts)
    return _build_record(
        lambda name, text=False: _col(table, name, text=text),
        name=table.name,
        classes=tuple(as_str_array(table.classes).tolist()),
        rows=rows,
        ids=ids,
        classifier=classifier,
        evidence=evidence,
        description=_str(table.description),
        module=module,
        units_table=_units_path_of(region.table),
    )


# --- h5py ---------------------------------------------------------------------------------------


def _h5_type(obj) -> str | None:
    t = obj.attrs.get("neurodata_type")
    return None if t is None else _str(t)


def _read_h5py(root) -> list[AnnotationRecord]:
    records = []
    processing = root.get("processing")
    if processing is None:
        return records
    for mname, module in processing.items():
        objs = list(module.values())
        evidence = {}
        for obj in objs:
            if _h5_type(obj) == EVIDENCE_TYPE:
                target = root[obj["annotations"].attrs["table"]].name
                evidence.setdefault(target, []).append(obj)
        for obj in objs:
            if _h5_type(obj) == ANNOTATIONS_TYPE:
                records.append(_record_from_h5(obj, mname, root, evidence.get(obj.name, [])))
    return records


def _h5_col(group, name, *, text=False):
    if name not in group:
        return None
    arr = group[name][()]
    return as_str_array(arr) if text else np.asarray(arr)


def _record_from_h5(group, module: str, root, evidence_groups: list) -> AnnotationRecord:
    rows = np.asarray(group["units"][()], dtype=np.int64)
    units = root[group["units"].attrs["table"]]
    ids = np.asarray(units["id"][()], dtype=np.int64)
    classifier = None
    if "classifier" in group:
        clf = group["classifier"]

        def get(key):
            if key in clf.attrs:
                return clf.attrs[key]
            if key in clf:
                return clf[key][()]
            return None

        link = group.get("classifier", getlink=True)
        target = getattr(link, "path", None) or clf.name
        classifier = _classifier_dict(get, target.rsplit("/", 1)[-1])
    parts = []
    for ev in evidence_groups:
        part = {"row": np.asarray(ev["annotations"][()], dtype=np.int64)}
        for key in EVIDENCE_FIELDS:
            part[key] = _h5_col(ev, key, text=True)
        parts.append(part)
    evidence = _merge_evidence(parts)
    return _build_record(
        lambda name, text=False: _h5_col(group, name, text=text),
        name=group.name.rsplit("/", 1)[-1],
        classes=tuple(as_str_array(group.attrs["classes"]).tolist()),
        rows=rows,
        ids=ids,
        classifier=classifier,
        evidence=evidence,
        description=_str(group.attrs.get("description", "")),
        module=module,
        units_table=units.name,
    )
