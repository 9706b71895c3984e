"""Bridges from the annotation records to the tools people analyse units with: a pandas DataFrame
indexed by unit id, SpikeInterface unit properties, pynapple TsGroup metadata, and phy's
``cluster_celltype.tsv``.

Annotated files already carry 1-D Units columns (``cell_type``, ``cell_type_probability``,
``cell_type_confidence``) that SpikeInterface's ``read_nwb_sorting`` and pynapple's ``load_file``
pick up unaided; these helpers cover objects loaded some other way (a phy / Kilosort sorting, a
TsGroup built by hand) and files with several annotation tables.

Every helper takes ``annotations`` as any of: a path to an annotated NWB file, an
:class:`~nwb_celltype.nwb.AnnotationRecord`, the dict of records from
:func:`~nwb_celltype.nwb.read_annotations`, or a DataFrame from :func:`annotations_dataframe`.
None of SpikeInterface, pynapple or phy is imported here: the helpers call methods of the objects
they are given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ._atomic import write_text_file
from .errors import InvalidValueError, OutputError

#: Per-unit values set by :func:`set_spikeinterface_properties` and :func:`set_pynapple_metadata`:
#: name on the target object -> DataFrame column (the names match the NWB Units columns).
LABEL_FIELDS: dict[str, str] = {
    "cell_type": "cell_type",
    "cell_type_probability": "probability",
    "cell_type_confidence": "confidence",
}


def plain_owner(path: Path) -> str | None:
    """The annotation table whose labels fill the plain ``cell_type`` column of ``path``'s Units
    table (``/units`` first, then Units tables in processing modules)."""
    import h5py

    from .io import units_table_paths
    from .nwb import units_columns_on_disk

    with h5py.File(path, "r") as f:
        for units_path in units_table_paths(f):
            owner = units_columns_on_disk(f[units_path]).get("cell_type")
            if owner is not None:
                return owner
    return None


def _pick(records: Mapping, table: str | None, preferred: str | None):
    if not records:
        raise InvalidValueError("no cell-type annotations found; run `nwb-celltype annotate` first")
    if table is not None:
        if table not in records:
            raise InvalidValueError(f"no annotation table {table!r}; there are {sorted(records)}")
        return records[table]
    if len(records) == 1:
        return next(iter(records.values()))
    if preferred in records:
        return records[preferred]
    raise InvalidValueError(
        f"{len(records)} annotation tables ({sorted(records)}); choose one with table=... (--table)"
    )


def _record(annotations, table: str | None):
    from .nwb import AnnotationRecord, read_annotations

    if isinstance(annotations, AnnotationRecord):
        return annotations
    if isinstance(annotations, (str, os.PathLike)):
        from .inspect_file import load_annotations

        return _pick(load_annotations(annotations), table, plain_owner(Path(annotations)))
    if isinstance(annotations, Mapping):
        return _pick(annotations, table, None)
    if hasattr(annotations, "processing") or hasattr(annotations, "visititems"):
        return _pick(read_annotations(annotations), table, None)
    raise InvalidValueError(
        f"annotations must be a path, an AnnotationRecord, a dict of them or a DataFrame, got "
        f"{type(annotations).__name__}"
    )


def annotations_dataframe(annotations, *, table: str | None = None):
    """One annotation table as a pandas DataFrame indexed by unit id.

    Parameters
    ----------
    annotations : path, AnnotationRecord, dict of AnnotationRecord, pynwb NWBFile or h5py File
        Where the annotations come from.
    table : str, optional
        Which table, when there are several (default: the only one, or for a file the one that fills
        the plain ``cell_type`` Units column).

    Returns
    -------
    pandas.DataFrame
        Index ``unit_id`` (the Units table's ids); columns ``cell_type`` (label, including
        ``unclassified`` / ``not_classifiable``), ``status``, ``reason``, ``probability`` (of the
        most probable class; NaN when not classifiable), ``confidence`` (p(top1)/p(top2)), ``kind``,
        ``ontology_id``, ``units_row`` (row in the Units table), then ``p_<class>`` and
        ``votes_<class>`` per class when the table has them. ``df.attrs`` holds the table name and
        its classifier's provenance.
    """
    import pandas as pd

    if isinstance(annotations, pd.DataFrame):
        return annotations
    rec = _record(annotations, table)
    n = len(rec)
    p = rec.probabilities
    top = np.full(n, np.nan)
    if p is not None and n:
        ok = np.isfinite(p).all(axis=1)
        top[ok] = p[ok].max(axis=1)
    data = {
        "cell_type": rec.labels.astype(str),
        "status": rec.status.astype(str),
        "reason": rec.reasons.astype(str),
        "probability": top,
        "confidence": np.full(n, np.nan) if rec.confidence is None else rec.confidence,
        "kind": rec.kinds.astype(str),
        "ontology_id": rec.ontology_ids.astype(str),
        "units_row": rec.unit_indices,
    }
    for j, cls in enumerate(rec.classes):
        if p is not None:
            data[f"p_{cls}"] = p[:, j]
    for j, cls in enumerate(rec.classes):
        if rec.votes is not None:
            data[f"votes_{cls}"] = rec.votes[:, j]
    df = pd.DataFrame(data, index=pd.Index(rec.unit_ids, name="unit_id"))
    df.attrs = {"table": rec.name, "classes": list(rec.classes), "classifier": rec.classifier}
    return df


def _aligned(df, ids) -> dict[str, np.ndarray]:
    """LABEL_FIELDS values for the unit ids ``ids`` of a target object ('' / NaN for units the
    annotations do not cover). Ids match as integers, or as text (SpikeInterface turns a
    ``unit_name`` column into string ids)."""
    keys = [str(i) for i in df.index]
    pos = {k: i for i, k in enumerate(keys)}
    want = [str(i) for i in ids]
    hit = np.array([pos.get(k, -1) for k in want], dtype=np.int64)
    if len(want) and not (hit >= 0).any():
        raise InvalidValueError(
            f"none of the object's unit ids ({want[:5]}...) are annotated unit ids ({keys[:5]}...); "
            "pass annotations whose unit ids are the object's unit ids"
        )
    out = {}
    for name, col in LABEL_FIELDS.items():
        values = df[col].to_numpy()
        if values.dtype.kind in "OUT" or col == "cell_type":
            full = np.array(["" if h < 0 else str(values[h]) for h in hit], dtype=object)
        else:
            full = np.where(hit >= 0, values[np.maximum(hit, 0)].astype(np.float64), np.nan)
        out[name] = full
    return out


def set_spikeinterface_properties(sorting, annotations, *, table: str | None = None):
    """Set ``cell_type``, ``cell_type_probability`` and ``cell_type_confidence`` as unit properties
    of a SpikeInterface sorting (or sorting analyzer's sorting), matching unit ids.

    ``set_spikeinterface_properties(sorting, "session.celltype.nwb")``. Units without an annotation
    get '' / NaN. Returns ``sorting``.
    """
    df = annotations_dataframe(annotations, table=table)
    for name, values in _aligned(df, sorting.unit_ids).items():
        sorting.set_property(name, values.astype(str) if values.dtype == object else values)
    return sorting


def set_pynapple_metadata(tsgroup, annotations, *, table: str | None = None):
    """Set ``cell_type``, ``cell_type_probability`` and ``cell_type_confidence`` as metadata of a
    pynapple TsGroup, matching its index to unit ids.

    ``set_pynapple_metadata(units, "session.celltype.nwb")``, then
    ``units[units.cell_type == "PkC_ss"]``. Returns ``tsgroup``.
    """
    df = annotations_dataframe(annotations, table=table)
    index = np.asarray(tsgroup.index)
    tsgroup.set_info(**dict(_aligned(df, index).items()))
    return tsgroup


def unit_column(path: str | os.PathLike, column: str) -> dict[int, object]:
    """Unit id -> value of one 1-D Units column of an NWB file (e.g. the sorter's cluster id)."""
    import h5py

    with h5py.File(path, "r") as f:
        units = f.get("units")
        if units is None or column not in units:
            have = [] if units is None else sorted(k for k in units if isinstance(units[k], h5py.Dataset))
            raise InvalidValueError(f"the Units table of {path} has no column {column!r}; it has {have}")
        ids = units["id"][()]
        values = units[column][()]
    if values.shape != ids.shape:
        raise InvalidValueError(f"Units column {column!r} is not one value per unit (shape {values.shape})")
    return {
        int(i): v.decode("utf-8") if isinstance(v, bytes) else np.asarray(v).item()
        for i, v in zip(ids, values, strict=True)
    }


def export_phy(
    annotations,
    out: str | os.PathLike,
    *,
    table: str | None = None,
    cluster_ids: Mapping | None = None,
    field: str = "celltype",
    overwrite: bool = False,
) -> Path:
    """Write the labels as a phy cluster-metadata file (``cluster_<field>.tsv``: ``cluster_id``
    and the label, tab-separated), which phy shows as a column and which any sorter GUI reading
    TSV loads.

    Parameters
    ----------
    annotations
        As for :func:`annotations_dataframe`.
    out : path
        The phy folder (the file goes to ``out/cluster_<field>.tsv``) or a ``.tsv`` file path.
    cluster_ids : mapping unit id -> cluster id, optional
        When the NWB unit ids are not the sorter's cluster ids (see :func:`unit_column`).
    field : str
        Column name phy shows.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path of the file written.
    """
    df = annotations_dataframe(annotations, table=table)
    out = Path(out)
    path = out if out.suffix == ".tsv" else out / f"cluster_{field}.tsv"
    if not path.parent.is_dir():
        raise OutputError(f"folder {path.parent} does not exist; give the phy folder")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    ids = df.index.to_numpy()
    if cluster_ids is not None:
        missing = [int(i) for i in ids if int(i) not in cluster_ids]
        if missing:
            raise InvalidValueError(f"no cluster id for unit ids {missing[:10]}")
        ids = np.array([cluster_ids[int(i)] for i in ids])
    lines = [f"cluster_id\t{field}"]
    lines += [f"{cid}\t{label}" for cid, label in zip(ids, df["cell_type"], strict=True)]
    return write_text_file(path, "\n".join(lines) + "\n", replace=overwrite)
