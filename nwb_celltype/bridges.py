"""Bridges from the annotation records to the tools people analyse units with: a pandas DataFrame
indexed by unit id, SpikeInterface unit properties and pynapple TsGroup metadata. phy's
``cluster_celltype.tsv`` is :mod:`nwb_celltype.phy`'s (its names are still reachable here).

Annotated files already carry 1-D Units columns (``cell_type``, ``cell_type_probability``,
``cell_type_confidence``) that SpikeInterface's ``read_nwb_sorting`` and pynapple's ``load_file``
pick up unaided; these helpers cover objects loaded some other way (a phy / Kilosort sorting, a
TsGroup built by hand) and files with several annotation tables.

Every helper takes ``annotations`` as any of: a path to an annotated NWB file, the file opened
with h5py or read by pynwb, an :class:`~nwb_celltype.nwb.AnnotationRecord`, the dict of records
from :func:`~nwb_celltype.nwb.read_annotations`, a DataFrame from :func:`annotations_dataframe`
(or ``classify_sorting`` / ``classify_tsgroup``), or a predictions TSV read by
:func:`~nwb_celltype.classify.read_predictions` (matched on its ``neuron_id``).
None of SpikeInterface, pynapple or phy is imported here: the helpers call methods of the objects
they are given.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .errors import InvalidValueError

logger = logging.getLogger(__name__)

#: Per-unit values set by :func:`set_spikeinterface_properties` and :func:`set_pynapple_metadata`:
#: name on the target object -> DataFrame column (the names match the NWB Units columns).
LABEL_FIELDS: dict[str, str] = {
    "cell_type": "cell_type",
    "cell_type_probability": "probability",
    "cell_type_confidence": "confidence",
}


def plain_owner(source) -> str | None:
    """The annotation table whose labels fill the plain ``cell_type`` column of a Units table of
    ``source`` (``/units`` first, then Units tables in processing modules): ``source`` is the path of
    an NWB file, an open h5py File or a pynwb NWBFile (the same table is picked for each)."""
    if hasattr(source, "visititems"):  # an open h5py File (a Group)
        return _plain_owner_h5(source)
    if hasattr(source, "processing"):  # a pynwb NWBFile
        return _plain_owner_nwbfile(source)
    import h5py

    with h5py.File(source, "r") as f:
        return _plain_owner_h5(f)


def _plain_owner_h5(f) -> str | None:
    from .io import units_table_paths
    from .nwb import units_columns_on_disk

    root = f.file if hasattr(f, "file") else f
    for units_path in units_table_paths(root):
        owner = units_columns_on_disk(root[units_path]).get("cell_type")
        if owner is not None:
            return owner
    return None


def _plain_owner_nwbfile(nwbfile) -> str | None:
    """:func:`plain_owner` of a pynwb NWBFile, in memory or read: the Units tables in the order
    :func:`nwb_celltype.io.units_table_paths` lists them in a file."""
    from .nwb._units_columns import owner_table

    tables = [getattr(nwbfile, "units", None)]
    for name in sorted(nwbfile.processing):
        for obj_name in sorted(nwbfile.processing[name].data_interfaces):
            obj = nwbfile.processing[name].data_interfaces[obj_name]
            if getattr(obj, "neurodata_type", None) == "Units":
                tables.append(obj)
    for units in tables:
        if units is None or "cell_type" not in getattr(units, "colnames", ()):
            continue
        owner = owner_table(getattr(units["cell_type"], "description", ""))
        if owner is not None:
            return owner
    return None


def _pick(records: Mapping, table: str | None, preferred: str | None, where: object = None):
    if not records:
        place = "" if where is None else f" in {where}"
        raise InvalidValueError(f"no cell-type annotations found{place}; run `nwb-celltype annotate` first")
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

        return _pick(load_annotations(annotations), table, plain_owner(Path(annotations)), annotations)
    # an h5py File / Group is a Mapping too: it is tested first, not taken as a dict of records
    if hasattr(annotations, "processing") or hasattr(annotations, "visititems"):
        return _pick(read_annotations(annotations), table, plain_owner(annotations))
    if isinstance(annotations, Mapping):
        return _pick(annotations, table, None)
    raise InvalidValueError(
        f"annotations must be a path, an AnnotationRecord, a dict of them, a DataFrame, a pynwb NWBFile or "
        f"an h5py File, got "
        f"{type(annotations).__name__}"
    )


def annotations_dataframe(annotations, *, table: str | None = None):
    """One annotation table as a pandas DataFrame indexed by unit id.

    Parameters
    ----------
    annotations : path, AnnotationRecord, dict of AnnotationRecord, pynwb NWBFile or h5py File
        Where the annotations come from.
    table : str, optional
        Which table, when there are several (default: the only one, or for a file, given as a path, an
        h5py File or a pynwb NWBFile, the one that fills the plain ``cell_type`` Units column).

    Returns
    -------
    pandas.DataFrame
        Index ``unit_id`` (the Units table's ids); columns ``cell_type`` (label, including
        ``unclassified`` / ``not_classifiable``), ``status``, ``reason``, ``probability`` (of the
        most probable class; NaN when not classifiable), ``confidence`` (p(top1)/p(top2)), ``kind``,
        ``ontology_id``, ``units_row`` (row in the Units table), then ``p_<class>`` and
        ``votes_<class>`` per class when the table has them, and ``unit_name`` where the annotated
        Units table has that column (a file's sorter ids, NeuroConv's layout), and ``n_spikes`` (the
        annotated units' spike counts, where the source is a file). ``df.attrs`` holds the
        table name, its classifier's provenance and the annotated ``units_table``.
    """
    import pandas as pd

    if isinstance(annotations, pd.DataFrame):
        return _frame_of_labels(annotations)
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
    names = _unit_names(annotations, rec)
    if names is not None:
        data["unit_name"] = names
    counts = _spike_counts(annotations, rec)
    if counts is not None:
        data["n_spikes"] = counts
    df = pd.DataFrame(data, index=pd.Index(rec.unit_ids, name="unit_id"))
    df.attrs = {
        "table": rec.name,
        "classes": list(rec.classes),
        "classifier": rec.classifier,
        "units_table": getattr(rec, "units_table", "/units"),
    }
    return df


def _frame_of_labels(df):
    """A DataFrame given as annotations: as given where it has a ``cell_type`` column
    (:func:`annotations_dataframe`, ``classify_sorting``, ``classify_tsgroup``; the setters also need
    the other :data:`LABEL_FIELDS` columns, :func:`_label_fields`); a predictions TSV read by
    :func:`nwb_celltype.classify.read_predictions` indexed by its ``neuron_id`` (else ``unit_id``), its
    ``label`` as ``cell_type`` and its top ``p_<class>`` as ``probability``; anything else is refused
    naming its columns."""
    import pandas as pd

    if "cell_type" in df:
        return df
    key = next((k for k in ("neuron_id", "unit_id") if k in df), None)
    if "label" in df and "confidence" in df and key is not None:
        p = df[[c for c in df if str(c).startswith("p_")]].to_numpy(dtype=np.float64)
        ok = np.isfinite(p).all(axis=1) & (p.shape[1] > 0)
        top = np.full(len(df), np.nan)
        top[ok] = p[ok].max(axis=1)
        out = df.drop(columns=[key]).rename(columns={"label": "cell_type"})
        out.insert(out.columns.get_loc("confidence"), "probability", top)
        out.index = pd.Index(df[key].to_numpy(), name="unit_id")
        out.attrs = dict(df.attrs)
        return out
    raise InvalidValueError(
        "a DataFrame given as annotations needs a cell_type column, indexed by unit id (annotations_dataframe, "
        "classify_sorting or classify_tsgroup give one), or must be a predictions TSV read by read_predictions "
        f"(label, neuron_id); this one has neither (its columns: {list(df.columns)[:8]})"
    )


def _label_fields(df):
    """``df`` where it has every column the helpers set (:data:`LABEL_FIELDS`); refused naming the
    ones it lacks."""
    missing = sorted(set(LABEL_FIELDS.values()) - set(df.columns))
    if missing:
        raise InvalidValueError(
            f"the annotations lack the columns {missing}, which set_spikeinterface_properties and "
            "set_pynapple_metadata set (as cell_type_probability / cell_type_confidence); give "
            "annotations_dataframe's, classify_sorting's or classify_tsgroup's DataFrame, or a predictions TSV"
        )
    return df


def _annotated_column(annotations, rec, column: str, nwb_column: str | None = None) -> np.ndarray | None:
    """One value per unit of a column of the Units table ``rec`` annotates, read from the file
    (``column``, its HDF5 name: a path or an open h5py File) or the pynwb NWBFile (``nwb_column``, default the same), or None
    where the source is neither, the table lacks the column, or it does not cover the annotated rows."""
    table = str(getattr(rec, "units_table", "/units") or "/units")
    rows = np.asarray(rec.unit_indices, dtype=np.int64)
    values = None
    if isinstance(annotations, (str, os.PathLike)) or hasattr(annotations, "visititems"):
        read = (
            _column_in(annotations, table, column)  # an open h5py File
            if hasattr(annotations, "visititems")
            else _read_column(annotations, table, column)
        )
        if read is not None and read[1].shape == read[0].shape:
            values = read[1]
    elif hasattr(annotations, "processing"):  # a pynwb NWBFile
        from .nwb import units_table_at

        units = units_table_at(annotations, table)
        name = nwb_column or column
        if units is not None and name in units.colnames:
            values = np.asarray(units[name].data[:])
    if values is None or (len(rows) and rows.max() >= len(values)):
        return None
    return np.asarray(values)


def _unit_names(annotations, rec) -> np.ndarray | None:
    """The annotated Units table's ``unit_name`` column for the annotated rows (NeuroConv and
    SpikeInterface keep the sorter's unit id there, and SpikeInterface's NWB reader uses it as the
    unit id), or None where the table has none or the source is not a file."""
    values = _annotated_column(annotations, rec, "unit_name")
    if values is None:
        return None
    rows = np.asarray(rec.unit_indices, dtype=np.int64)
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values[rows]], dtype=object)


def _spike_counts(annotations, rec) -> np.ndarray | None:
    """Spike counts of the annotated units in their Units table (to check that the object given
    labels is that sorting), or None where the source is not a file or has no spike_times."""
    index = _annotated_column(annotations, rec, "spike_times_index", "spike_times")  # end offsets
    if index is None:
        return None
    rows = np.asarray(rec.unit_indices, dtype=np.int64)
    return np.diff(np.r_[0, index.astype(np.int64)])[rows]


def _check_same_units(df, hit: np.ndarray, want: list[str], counts: np.ndarray | None) -> None:
    """Refuse labels for another sorting's units: a matched unit with more spikes than the annotated
    unit of that id is not that unit (a subset of its spikes, e.g. a TsGroup restricted to epochs, may
    have fewer: a warning)."""
    if counts is None or "n_spikes" not in df:
        return
    ok = hit >= 0
    have = np.asarray(counts, dtype=np.int64)[ok]
    annotated = df["n_spikes"].to_numpy(dtype=np.int64)[hit[ok]]
    ids = np.asarray(want, dtype=object)[ok]
    where = df.attrs.get("units_table", "/units")
    more = np.flatnonzero(have > annotated)
    if len(more):
        i = more[0]
        raise InvalidValueError(
            f"{len(more)} of the {int(ok.sum())} matched units have more spikes than the annotated units of "
            f"{where} with the same id (unit {ids[i]}: {have[i]} here, {annotated[i]} annotated): these "
            "annotations label another sorting's units; pass the annotations of this sorting (table=...)"
        )
    fewer = np.flatnonzero(have < annotated)
    if len(fewer):
        i = fewer[0]
        logger.warning(
            "%d matched units have fewer spikes than the annotated units of %s (unit %s: %d here, %d "
            "annotated): a subset of their spikes (restricted to epochs?) or another sorting's units",
            len(fewer),
            where,
            ids[i],
            have[i],
            annotated[i],
        )


def _aligned(df, ids, *, names_first: bool = False, counts=None) -> dict[str, np.ndarray]:
    """LABEL_FIELDS values for the unit ids ``ids`` of a target object ('' / NaN for units the
    annotations do not cover, with a warning). Ids match the NWB unit ids (as integers or text), or,
    with ``names_first`` and where every id is one, the annotated table's ``unit_name`` values
    (SpikeInterface's NWB reader makes a ``unit_name`` column the unit ids, and NeuroConv's exports
    keep the sorter's id there while the NWB ids are 0..n-1)."""
    want = [str(i) for i in ids]
    keys = [str(i) for i in df.index]
    if names_first and "unit_name" in df and len(want) and set(want) <= set(df["unit_name"]):
        keys = [str(v) for v in df["unit_name"]]
        if len(set(keys)) < len(keys):
            raise InvalidValueError(
                "the annotated Units table's unit_name values repeat, so they cannot name its units; "
                "set the properties by NWB unit id instead"
            )
    pos = {k: i for i, k in enumerate(keys)}
    hit = np.array([pos.get(k, -1) for k in want], dtype=np.int64)
    if len(want) and not (hit >= 0).any():
        raise InvalidValueError(
            f"none of the object's unit ids ({want[:5]}...) are annotated unit ids ({keys[:5]}...); "
            "pass annotations whose unit ids are the object's unit ids"
        )
    if (hit < 0).any():
        miss = [w for w, h in zip(want, hit, strict=True) if h < 0]
        logger.warning(
            "%d of the object's %d units have no annotation (ids %s%s): they get '' / NaN",
            len(miss),
            len(want),
            miss[:5],
            " ..." if len(miss) > 5 else "",
        )
    _check_same_units(df, hit, want, counts)
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
    get '' / NaN (with a warning). Where the annotated Units table has a ``unit_name`` column (NeuroConv
    and SpikeInterface exports) and the sorting's ids are its values (SpikeInterface's NWB reader makes
    them the unit ids), units are matched by name. Returns ``sorting``.
    """
    _check_sorting(sorting)
    df = _label_fields(annotations_dataframe(annotations, table=table))
    keys = sorting.get_property_keys() if hasattr(sorting, "get_property_keys") else []
    _warn_replaced([k for k in LABEL_FIELDS if k in keys], "unit properties of the sorting")
    counts = [
        sum(len(sorting.get_unit_spike_train(u, segment_index=s)) for s in range(sorting.get_num_segments()))
        for u in sorting.unit_ids
    ]
    for name, values in _aligned(df, sorting.unit_ids, names_first=True, counts=counts).items():
        sorting.set_property(name, values.astype(str) if values.dtype == object else values)
    return sorting


def set_pynapple_metadata(tsgroup, annotations, *, table: str | None = None):
    """Set ``cell_type``, ``cell_type_probability`` and ``cell_type_confidence`` as metadata of a
    pynapple TsGroup, matching its index to unit ids.

    ``set_pynapple_metadata(units, "session.celltype.nwb")``, then
    ``units[units.cell_type == "PkC_ss"]``. Returns ``tsgroup``.
    """
    _check_tsgroup(tsgroup)
    df = _label_fields(annotations_dataframe(annotations, table=table))
    columns = getattr(tsgroup, "metadata_columns", None)
    if columns is None:
        meta = getattr(tsgroup, "_metadata", None)
        columns = list(getattr(meta, "columns", []))
    _warn_replaced([k for k in LABEL_FIELDS if k in list(columns)], "metadata of the TsGroup")
    index = np.asarray(tsgroup.index)
    counts = [len(tsgroup[u]) for u in index]
    tsgroup.set_info(**dict(_aligned(df, index, counts=counts).items()))
    return tsgroup


def _check_sorting(sorting) -> None:
    """Refuse, before reading any annotations, an object that is not a SpikeInterface sorting."""
    needed = ("unit_ids", "get_unit_spike_train", "get_num_segments", "set_property")
    if all(hasattr(sorting, a) for a in needed):
        return
    hint = (
        "; for a sorting analyzer pass its sorting (analyzer.sorting)"
        if hasattr(sorting, "sorting")
        else "; load one with spikeinterface (e.g. read_kilosort, read_nwb_sorting)"
    )
    raise InvalidValueError(
        f"expected a SpikeInterface sorting (a BaseSorting), got {_describe(sorting)}{hint}"
    )


def _check_tsgroup(tsgroup) -> None:
    """Refuse, before reading any annotations, an object that is not a pynapple TsGroup."""
    if hasattr(tsgroup, "index") and hasattr(tsgroup, "set_info") and hasattr(tsgroup, "__getitem__"):
        return
    raise InvalidValueError(
        f"expected a pynapple TsGroup, got {_describe(tsgroup)}; build one with "
        "nap.TsGroup({unit_id: nap.Ts(spike_times_s), ...}) or nap.load_file(path)['units']"
    )


def _describe(obj) -> str:
    """The type of a wrong argument, with its value where that is short (a path given first)."""
    kind = type(obj).__name__
    if isinstance(obj, (str, os.PathLike)):
        return f"{kind} {str(obj)!r} (the object comes first, then the annotations)"
    return "None" if obj is None else kind


def _warn_replaced(names: list[str], where: str) -> None:
    if names:
        logger.warning(
            "replacing the existing %s %s (labels read from a file, or another classifier's): copy them "
            "first to keep them",
            where,
            ", ".join(names),
        )


def _read_column(path: str | os.PathLike, units_table: str, column: str):
    """``(ids, values)`` of one column of the Units table ``units_table`` of the NWB file ``path``, or
    None where the table or the column is missing."""
    import h5py

    with h5py.File(path, "r") as f:
        return _column_in(f, units_table, column)


def _column_in(f, units_table: str, column: str):
    """:func:`_read_column` of an open h5py File (or a Group of it: ``units_table`` is from the root)."""
    root = f.file if hasattr(f, "file") else f
    units = root.get("/" + str(units_table).strip("/"))
    if units is None or column not in units:
        return None
    return units["id"][()], units[column][()]


def __getattr__(name: str):
    """phy's names (:mod:`nwb_celltype.phy`), which lived here until they got their own module, are
    still reachable from here."""
    from . import phy

    if name in phy.__all__:
        return getattr(phy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
