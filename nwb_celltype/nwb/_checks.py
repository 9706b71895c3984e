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
    problems: list[str] = []
    classes = np.asarray(classes, dtype=object)
    k = len(classes)
    if k == 0:
        problems.append("the class list is empty; give at least one class name")
    elif len(set(classes.tolist())) != k:
        problems.append(f"the class list {classes.tolist()} has duplicates; class names must be unique")
    elif any(not c for c in classes):
        problems.append(f"the class list {classes.tolist()} has an empty name")

    def _len(name, arr):
        if arr is not None and len(arr) != n_rows:
            problems.append(f"'{name}' has {len(arr)} rows, expected {n_rows} (one per annotated unit)")
            return False
        return arr is not None

    if _len("label", labels):
        allowed = {*classes.tolist(), UNCLASSIFIED, NOT_CLASSIFIABLE}
        bad = ~np.isin(labels, list(allowed))
        if bad.any():
            problems.append(
                f"labels not in the class list {classes.tolist()} nor {UNCLASSIFIED!r}/{NOT_CLASSIFIABLE!r}: "
                f"{_first(bad, labels)}"
            )
    if _len("ontology_id", ontology_ids):
        bad = np.array([bool(v) and not ONTOLOGY_ID_RE.match(v) for v in ontology_ids], dtype=bool)
        if bad.any():
            problems.append(
                f"ontology ids must look like 'CL:0000121' or be empty: {_first(bad, ontology_ids)}"
            )
    if _len("kind", kinds):
        bad = ~np.isin(kinds, list(ANNOTATION_KINDS))
        if bad.any():
            problems.append(f"kind must be one of {list(ANNOTATION_KINDS)}: {_first(bad, kinds)}")
    if _len("status", status):
        bad = ~np.isin(status, list(ANNOTATION_STATUSES))
        if bad.any():
            problems.append(f"status must be one of {list(ANNOTATION_STATUSES)}: {_first(bad, status)}")
        elif labels is not None and len(labels) == n_rows:
            bad = status != expected_status(labels)
            if bad.any():
                problems.append(
                    "status disagrees with label (label 'unclassified' <-> status 'unclassified', "
                    "'not_classifiable' <-> 'not_classifiable', a class name <-> 'classified'): "
                    + ", ".join(
                        f"row {i}: label {labels[i]!r} status {status[i]!r}" for i in np.flatnonzero(bad)[:5]
                    )
                )
    if probabilities is not None:
        p = np.asarray(probabilities, dtype=np.float64)
        if p.ndim != 2 or p.shape != (n_rows, k):
            problems.append(
                f"probabilities has shape {p.shape}, expected ({n_rows}, {k}) = (rows, classes in the "
                f"order {classes.tolist()})"
            )
        else:
            nan_rows = np.isnan(p).all(axis=1)
            partial = np.isnan(p).any(axis=1) & ~nan_rows
            if partial.any():
                problems.append(
                    "probability rows must be all finite or all NaN (not classifiable): "
                    f"{_first(partial)} are partly NaN"
                )
            ok = ~np.isnan(p).any(axis=1)
            q = p[ok]
            out = ((q < 0) | (q > 1) | ~np.isfinite(q)).any(axis=1)
            if out.any():
                problems.append(
                    f"probabilities must lie in [0, 1]: {_first(_expand(ok, out))} have values outside"
                )
            sums = q.sum(axis=1)
            off = np.abs(sums - 1.0) > PROBABILITY_SUM_TOL
            if off.any():
                rows = np.flatnonzero(_expand(ok, off))[:5]
                problems.append(
                    f"probability rows must sum to 1 (tolerance {PROBABILITY_SUM_TOL}): "
                    + ", ".join(f"row {i} sums to {p[i].sum():.6g}" for i in rows)
                )
    if confidence is not None:
        c = np.asarray(confidence, dtype=np.float64)
        if c.shape != (n_rows,):
            problems.append(f"confidence has shape {c.shape}, expected ({n_rows},)")
        else:
            bad = ~np.isnan(c) & (c < 0)
            if bad.any():
                problems.append(f"confidence must be >= 0 or NaN: {_first(bad, c)}")
    if votes is not None:
        v = np.asarray(votes)
        if v.shape != (n_rows, k):
            problems.append(f"votes has shape {v.shape}, expected ({n_rows}, {k})")
        elif not np.issubdtype(v.dtype, np.integer):
            problems.append(f"votes must be integers, got dtype {v.dtype}")
        elif (v < 0).any():
            problems.append(f"votes must be >= 0: {_first((v < 0).any(axis=1))} have negative counts")
    if unit_rows is not None:
        r = np.asarray(unit_rows)
        if r.shape != (n_rows,):
            problems.append(f"the units region has shape {r.shape}, expected ({n_rows},)")
        elif n_rows and not np.issubdtype(r.dtype, np.integer):
            problems.append(f"the units region must hold integer row indices, got dtype {r.dtype}")
        elif n_units is not None:
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
