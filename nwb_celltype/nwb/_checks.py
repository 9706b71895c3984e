"""Consistency checks of annotation tables, shared by the constructors (raise), the NWB Inspector
checks (report) and :func:`nwb_celltype.nwb.add_annotations`. They work on any DynamicTable-like
object (our classes or pynwb's generated ones) through its columns, so files read without our
classes are checked alike."""

from __future__ import annotations

import re

import numpy as np

from ..vocabulary import ANNOTATION_KINDS, ANNOTATION_STATUSES, EVIDENCE_TYPES, NOT_CLASSIFIABLE, UNCLASSIFIED

#: Tolerance on the row sums of probabilities.
PROBABILITY_SUM_TOL = 1e-4
#: Form of a Cell Ontology id.
ONTOLOGY_ID_RE = re.compile(r"^CL:\d{7}$")


def as_str_array(values) -> np.ndarray:
    """Text values (str, bytes, h5py/hdmf string datasets) as an object array of ``str``."""
    arr = np.asarray(values[:] if hasattr(values, "shape") and not isinstance(values, np.ndarray) else values)
    out = np.empty(arr.shape, dtype=object)
    flat = out.reshape(-1)
    for i, v in enumerate(arr.reshape(-1)):
        flat[i] = v.decode("utf-8") if isinstance(v, bytes) else str(v)
    return out


def expected_status(labels: np.ndarray) -> np.ndarray:
    """Status implied by each label: not_classifiable / unclassified / classified."""
    labels = np.asarray(labels, dtype=object)
    status = np.full(labels.shape, "classified", dtype=object)
    status[labels == UNCLASSIFIED] = "unclassified"
    status[labels == NOT_CLASSIFIABLE] = "not_classifiable"
    return status


def _first(mask: np.ndarray, values=None, limit: int = 5) -> str:
    idx = np.flatnonzero(mask)[:limit]
    if values is None:
        return f"rows {idx.tolist()}"
    return ", ".join(f"row {i}: {_py(values[i])!r}" for i in idx)


def _py(value):
    return value.item() if isinstance(value, np.generic) else value


def check_columns(
    *,
    n_rows: int,
    classes: np.ndarray,
    labels: np.ndarray | None = None,
    ontology_ids: np.ndarray | None = None,
    kinds: np.ndarray | None = None,
    status: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
    votes: np.ndarray | None = None,
    unit_rows: np.ndarray | None = None,
    n_units: int | None = None,
) -> list[str]:
    """Problems with the columns of one annotation table (empty list when consistent).

    Parameters
    ----------
    n_rows : int
        Number of rows of the table.
    classes : (k,) str
        Class order of the table.
    labels, ontology_ids, kinds, status : (n_rows,) str, optional
    probabilities : (n_rows, k) float, optional
    confidence : (n_rows,) float, optional
    votes : (n_rows, k) int, optional
    unit_rows : (n_rows,) int, optional
        Row indices into the Units table.
    n_units : int, optional
        Number of rows of the Units table (to check ``unit_rows`` is in range).
    """
    classes = np.asarray(classes, dtype=object)
    problems = _class_list_problems(classes)
    problems += _text_column_problems(
        n_rows, classes, labels=labels, ontology_ids=ontology_ids, kinds=kinds, status=status
    )
    if probabilities is not None:
        problems += _probability_problems(np.asarray(probabilities, dtype=np.float64), n_rows, classes)
    if confidence is not None:
        problems += _confidence_problems(np.asarray(confidence, dtype=np.float64), n_rows)
    if votes is not None:
        problems += _vote_problems(np.asarray(votes), n_rows, len(classes))
    if unit_rows is not None:
        problems += _unit_row_problems(np.asarray(unit_rows), n_rows, n_units)
    return problems


def _class_list_problems(classes: np.ndarray) -> list[str]:
    """Problems of the class list: empty, duplicated or empty names."""
    k = len(classes)
    if k == 0:
        return ["the class list is empty; give at least one class name"]
    if len(set(classes.tolist())) != k:
        return [f"the class list {classes.tolist()} has duplicates; class names must be unique"]
    if any(not c for c in classes):
        return [f"the class list {classes.tolist()} has an empty name"]
    return []


def _outside(vocabulary):
    """Function giving the mask of the values not in ``vocabulary``."""
    allowed = list(vocabulary)
    return lambda values: ~np.isin(values, allowed)


def _malformed_ontology_ids(ids: np.ndarray) -> np.ndarray:
    """Mask of the ontology ids that are neither empty nor of the form 'CL:0000121'."""
    return np.array([bool(v) and not ONTOLOGY_ID_RE.match(v) for v in ids], dtype=bool)


def _text_column_problems(
    n_rows: int, classes: np.ndarray, *, labels, ontology_ids, kinds, status
) -> list[str]:
    """Problems of the per-row text columns: their lengths, their vocabularies, status against label."""
    label_vocabulary = {*classes.tolist(), UNCLASSIFIED, NOT_CLASSIFIABLE}
    rules = (  # column, its values, mask of the values outside its vocabulary, the vocabulary in words
        (
            "label",
            labels,
            _outside(label_vocabulary),
            f"labels not in the class list {classes.tolist()} nor {UNCLASSIFIED!r}/{NOT_CLASSIFIABLE!r}",
        ),
        (
            "ontology_id",
            ontology_ids,
            _malformed_ontology_ids,
            "ontology ids must look like 'CL:0000121' or be empty",
        ),
        ("kind", kinds, _outside(ANNOTATION_KINDS), f"kind must be one of {list(ANNOTATION_KINDS)}"),
        (
            "status",
            status,
            _outside(ANNOTATION_STATUSES),
            f"status must be one of {list(ANNOTATION_STATUSES)}",
        ),
    )
    problems: list[str] = []
    in_vocabulary = set()
    for name, values, outside, vocabulary in rules:
        if values is None:
            continue
        if len(values) != n_rows:
            problems.append(f"'{name}' has {len(values)} rows, expected {n_rows} (one per annotated unit)")
            continue
        bad = outside(values)
        if bad.any():
            problems.append(f"{vocabulary}: {_first(bad, values)}")
        else:
            in_vocabulary.add(name)
    if "status" in in_vocabulary and labels is not None and len(labels) == n_rows:
        problems += _status_label_problems(status, labels)
    return problems


def _status_label_problems(status: np.ndarray, labels: np.ndarray) -> list[str]:
    """Problem of the rows whose status is not the one their label implies."""
    bad = status != expected_status(labels)
    if not bad.any():
        return []
    return [
        "status disagrees with label (label 'unclassified' <-> status 'unclassified', "
        "'not_classifiable' <-> 'not_classifiable', a class name <-> 'classified'): "
        + ", ".join(f"row {i}: label {labels[i]!r} status {status[i]!r}" for i in np.flatnonzero(bad)[:5])
    ]


def _probability_problems(p: np.ndarray, n_rows: int, classes: np.ndarray) -> list[str]:
    """Problems of the probabilities: shape, partly-NaN rows, values outside [0, 1], row sums."""
    k = len(classes)
    if p.ndim != 2 or p.shape != (n_rows, k):
        return [
            f"probabilities has shape {p.shape}, expected ({n_rows}, {k}) = (rows, classes in the "
            f"order {classes.tolist()})"
        ]
    problems: list[str] = []
    nan_rows = np.isnan(p).all(axis=1)
    partial = np.isnan(p).any(axis=1) & ~nan_rows
    if partial.any():
        problems.append(
            f"probability rows must be all finite or all NaN (not classifiable): {_first(partial)} are partly NaN"
        )
    ok = ~np.isnan(p).any(axis=1)
    q = p[ok]
    out = ((q < 0) | (q > 1) | ~np.isfinite(q)).any(axis=1)
    if out.any():
        problems.append(f"probabilities must lie in [0, 1]: {_first(_expand(ok, out))} have values outside")
    off = np.abs(q.sum(axis=1) - 1.0) > PROBABILITY_SUM_TOL
    if off.any():
        rows = np.flatnonzero(_expand(ok, off))[:5]
        problems.append(
            f"probability rows must sum to 1 (tolerance {PROBABILITY_SUM_TOL}): "
            + ", ".join(f"row {i} sums to {p[i].sum():.6g}" for i in rows)
        )
    return problems


def _confidence_problems(c: np.ndarray, n_rows: int) -> list[str]:
    """Problems of the confidence ratios: shape, negative values."""
    if c.shape != (n_rows,):
        return [f"confidence has shape {c.shape}, expected ({n_rows},)"]
    bad = ~np.isnan(c) & (c < 0)
    return [f"confidence must be >= 0 or NaN: {_first(bad, c)}"] if bad.any() else []


def _vote_problems(v: np.ndarray, n_rows: int, k: int) -> list[str]:
    """Problems of the ensemble votes: shape, integer type, negative counts."""
    if v.shape != (n_rows, k):
        return [f"votes has shape {v.shape}, expected ({n_rows}, {k})"]
    if not np.issubdtype(v.dtype, np.integer):
        return [f"votes must be integers, got dtype {v.dtype}"]
    if (v < 0).any():
        return [f"votes must be >= 0: {_first((v < 0).any(axis=1))} have negative counts"]
    return []


def _unit_row_problems(r: np.ndarray, n_rows: int, n_units: int | None) -> list[str]:
    """Problems of the units region: shape, integer type, rows outside the Units table, repeated rows."""
    if r.shape != (n_rows,):
        return [f"the units region has shape {r.shape}, expected ({n_rows},)"]
    if n_rows and not np.issubdtype(r.dtype, np.integer):
        return [f"the units region must hold integer row indices, got dtype {r.dtype}"]
    if n_units is None:
        return []
    problems: list[str] = []
    bad = (r < 0) | (r >= n_units)
    if bad.any():
        problems.append(
            f"the units region points outside the Units table (it has {n_units} rows, valid "
            f"indices 0..{n_units - 1}): {_first(bad, r)}"
        )
    uniq, counts = np.unique(r, return_counts=True)
    if (counts > 1).any():
        problems.append(
            f"units annotated more than once in one table: Units rows {uniq[counts > 1][:5].tolist()}"
        )
    return problems


def check_evidence(*, n_rows: int, n_annotations: int | None, evidence_types, rows) -> list[str]:
    """Problems of an evidence table: types from ``vocabulary.EVIDENCE_TYPES``, rows in range."""
    problems: list[str] = []
    et = as_str_array(evidence_types)
    if len(et) != n_rows:
        problems.append(f"evidence_type has {len(et)} rows, expected {n_rows}")
    else:
        bad = ~np.isin(et, list(EVIDENCE_TYPES))
        if bad.any():
            problems.append(f"evidence_type must be one of {list(EVIDENCE_TYPES)}: {_first(bad, et)}")
    r = np.asarray(rows)
    if n_annotations is not None and len(r):
        bad = (r < 0) | (r >= n_annotations)
        if bad.any():
            problems.append(
                f"evidence rows point outside the annotation table ({n_annotations} rows): {_first(bad, r)}"
            )
    return problems


def _expand(mask: np.ndarray, sub: np.ndarray) -> np.ndarray:
    full = np.zeros(mask.shape, dtype=bool)
    full[np.flatnonzero(mask)[sub]] = True
    return full
