"""Plain Units columns that mirror an annotation table, so that tools reading Units columns
(SpikeInterface ``read_nwb_sorting``, pynapple ``load_file``, ``units.to_dataframe()``) see the
labels without knowing the extension.

The annotation table (``processing/cell_types/<name>``) stays the full record; the Units columns
are a one-dimensional copy of a few of its fields (pynapple drops 2-D columns), each with a
description that names the table. Which names a table gets (the rule, also in docs/annotate.md):

- the plain names (``cell_type``, ``cell_type_probability``, ...) when none of them is in the Units
  table yet, i.e. the first model that annotates a file fills them;
- otherwise -- a ``cell_type`` column written by someone else (CellExplorer conversions have one),
  or plain columns already filled from another annotation table -- model-suffixed names
  (``cell_type_<tag>``, ``cell_type_probability_<tag>``, ...; ``<tag>`` from the table name).
  Nothing already in the Units table is ever modified.

Columns we wrote are recognised by their description (it starts with :data:`MARKER` and names the
table); :func:`remove_units_columns` deletes one table's columns from a file on disk, which is how
``--overwrite`` replaces them together with the table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import h5py
import numpy as np

from ..errors import AnnotationExistsError, InvalidAnnotationError
from ._checks import as_str_array

#: Every description of a Units column we write starts with this.
MARKER = "nwb-celltype:"


def _top_probability(cols: Mapping[str, np.ndarray]) -> np.ndarray | None:
    p = cols.get("probabilities")
    if p is None:
        return None
    p = np.asarray(p, dtype=np.float64)
    out = np.full(len(p), np.nan)
    ok = np.isfinite(p).all(axis=1) if p.size else np.zeros(len(p), bool)
    out[ok] = p[ok].max(axis=1)
    return out


@dataclass(frozen=True)
class UnitsColumn:
    """One Units column copied from an annotation table.

    Attributes
    ----------
    base : str
        Column name when the plain names are free (``cell_type...``); the model-suffixed name is
        ``f"{base}_{tag}"``.
    source : str or callable
        Name of a 1-D column of the annotation table, or a function of the table's columns
        (``{name: array}``) returning an (n,) array (or None when the table lacks the input).
    text : str
        What the column holds; the description adds the table's path.
    fill : object
        Value for Units rows the table does not annotate ('' for text, NaN for numbers).
    """

    base: str
    source: str | Callable[[Mapping[str, np.ndarray]], np.ndarray | None]
    text: str
    fill: object = np.nan


#: The Units columns written for each annotation table. Adding one is one line here.
UNITS_COLUMNS: tuple[UnitsColumn, ...] = (
    UnitsColumn(
        "cell_type",
        "label",
        "cell-type label: a class name, 'unclassified' (no label: below the threshold or the model "
        "abstained) or 'not_classifiable' (no usable features); the reason is in the table's "
        "'reason' column",
        fill="",
    ),
    UnitsColumn(
        "cell_type_probability",
        _top_probability,
        "probability of the most probable class (NaN when not classifiable)",
    ),
    UnitsColumn(
        "cell_type_confidence",
        "confidence",
        "confidence ratio p(top1)/p(top2) of the label (NaN when not classifiable)",
    ),
)


def column_tag(table_name: str) -> str:
    """The suffix of a table's model-suffixed column names: its name without a leading
    ``celltype_``, with every character other than letters, digits and '_' replaced by '_'."""
    tag = table_name.removeprefix("celltype_")
    return re.sub(r"[^0-9A-Za-z_]", "_", tag)


def column_names(table_name: str, *, plain: bool) -> list[str]:
    """Units column names of :data:`UNITS_COLUMNS` for ``table_name`` (plain or suffixed)."""
    tag = column_tag(table_name)
    return [c.base if plain else f"{c.base}_{tag}" for c in UNITS_COLUMNS]


def describe(column: UnitsColumn, table_path: str) -> str:
    """Description of a Units column copied from the annotation table at ``table_path``."""
    return (
        f"{MARKER} {column.text}; copied from the annotation table {table_path} (full record: "
        "per-class probabilities, votes, status, reason, classifier provenance)"
    )


def owner_table(description) -> str | None:
    """Name of the annotation table a Units column was copied from, or None if the column is not
    ours (its description does not start with :data:`MARKER`)."""
    if isinstance(description, bytes):
        description = description.decode("utf-8", "replace")
    text = str(description)
    if not text.startswith(MARKER):
        return None
    m = re.search(r"annotation table (?:\S*/)?([^/\s]+) \(full record", text)
    return m.group(1) if m else None


def _table_columns(table) -> dict[str, np.ndarray]:
    out = {}
    for name in table.colnames:
        data = table[name].data
        out[name] = np.asarray(data[:] if not isinstance(data, (list, np.ndarray)) else data)
    return out


def _full(column: UnitsColumn, values: np.ndarray, rows: np.ndarray, n_units: int) -> np.ndarray:
    if isinstance(column.fill, str):
        out = np.full(n_units, column.fill, dtype=object)
        out[rows] = as_str_array(values)
        return out
    out = np.full(n_units, column.fill, dtype=np.result_type(np.asarray(values).dtype, np.float64))
    out[rows] = values
    return out


def add_units_columns(nwbfile, table, *, module: str = "cell_types", units=None) -> list[str]:
    """Copy the labels, probability and confidence of an annotation table into 1-D Units columns.

    Parameters
    ----------
    nwbfile : pynwb.NWBFile
        The file holding ``table`` (in memory, or opened with ``NWBHDF5IO(..., mode="a")``).
    table : CellTypeAnnotations
        The annotation table; its ``units`` region must point at ``nwbfile.units``.
    module : str
        Processing module of the table (named in the descriptions).
    units : pynwb.misc.Units, optional
        The Units table the annotation's rows refer to (default ``nwbfile.units``).

    Returns
    -------
    list of str
        Names of the columns added (plain or model-suffixed, see the module docstring).

    Raises
    ------
    AnnotationExistsError
        The model-suffixed names are taken too (remove those columns or the table first).
    """
    units = nwbfile.units if units is None else units
    if units is None:
        raise InvalidAnnotationError("the NWB file has no Units table to add cell-type columns to")
    existing = set(units.colnames)
    plain = column_names(table.name, plain=True)
    names = plain if not existing.intersection(plain) else column_names(table.name, plain=False)
    taken = sorted(existing.intersection(names))
    if taken:
        raise AnnotationExistsError(
            f"the Units table already has columns {taken}; remove them (or annotate with "
            "--overwrite, which replaces the columns of the same model) before adding "
            f"{table.name}'s columns"
        )
    cols = _table_columns(table)
    rows = np.asarray(cols["units"], dtype=np.int64)
    table_path = f"processing/{module}/{table.name}"
    added = []
    for column, name in zip(UNITS_COLUMNS, names, strict=True):
        values = column.source(cols) if callable(column.source) else cols.get(column.source)
        if values is None:
            continue
        units.add_column(
            name=name,
            description=describe(column, table_path),
            data=_full(column, np.asarray(values), rows, len(units)),
        )
        added.append(name)
    return added


def units_columns_on_disk(units_group) -> dict[str, str]:
    """Our Units columns in an h5py Units group: column name -> annotation table it copies."""
    out = {}
    for name, obj in units_group.items():
        owner = owner_table(obj.attrs.get("description", ""))
        if owner is not None:
            out[name] = owner
    return out


def remove_units_columns(h5file, table_name: str, *, units_path: str = "units") -> list[str]:
    """Delete, in a file opened with h5py in mode "a", the Units columns copied from the annotation
    table ``table_name`` (ours only: recognised by their description) and drop them from the
    table's ``colnames``. Returns the names removed. Other datasets are left untouched."""
    units = h5file.get(units_path)
    if units is None:
        return []
    gone = [n for n, owner in units_columns_on_disk(units).items() if owner == table_name]
    for n in gone:
        del units[n]
    if gone:
        colnames = [c.decode() if isinstance(c, bytes) else str(c) for c in units.attrs["colnames"]]
        # variable-length text named as such: h5py cannot tell the type of an empty object array
        # (a Units table whose only columns were ours: ids and nothing else)
        kept = [c for c in colnames if c not in gone]
        units.attrs["colnames"] = np.array(kept, dtype=h5py.string_dtype())
    return gone
