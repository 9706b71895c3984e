"""What a derived file keeps of its source beyond the units' data: the whole Subject, the Units
table's own resolution and the sorter's simple per-unit columns (``unit_name``, ``cluster_id``,
``KSLabel``, quality metrics...), so that tools matching units by name (SpikeInterface's
``read_nwb_sorting``, the bridges, ``export --id-column``) see the source's units.
"""

from __future__ import annotations

import logging
import math

import numpy as np

logger = logging.getLogger(__name__)

#: Units columns a derived file writes its own way (or never copies): the predefined Units
#: columns (ragged, references, waveforms) and the ones ``derived_nwbfile`` writes itself.
OWN_COLUMNS = frozenset(
    {
        "spike_times",
        "obs_intervals",
        "electrodes",
        "electrode_group",
        "waveform_mean",
        "waveform_sd",
        "waveforms",
        "source_unit_row",
        "source_unit_id",
        "layer",
        "peak_electrode",
    }
)

#: neurodata types of Units columns that are not plain values.
_NOT_PLAIN = ("VectorIndex", "DynamicTableRegion", "ElementIdentifiers")
#: Source columns named like ours (``cell_type``, ``cell_type_probability``... e.g. CellExplorer's
#: putative cell types) are copied as ``source_<name>``: our labels keep the plain names, which
#: pynapple and NWB widgets show.
OURS_PREFIX = "cell_type"
RENAMED_PREFIX = "source_"


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def copy_subject(subject):
    """A new ``Subject`` with every field of ``subject`` that is set (date_of_birth, strain,
    genotype, weight, age reference... whichever this pynwb knows), or None."""
    if subject is None:
        return None
    from hdmf.utils import get_docval
    from pynwb.file import Subject

    kwargs = {}
    for arg in get_docval(Subject.__init__):
        name = arg["name"]
        if name == "name":
            continue
        value = getattr(subject, name, None)
        if value is not None:
            kwargs[name] = value
    return Subject(**kwargs)


def source_resolution(h5, units_path: str) -> float | None:
    """The source Units table's ``resolution`` (s; an attribute of its ``spike_times`` dataset)
    where it states a positive, finite one."""
    node = h5.get(f"{units_path}/spike_times") if h5 is not None else None
    value = node.attrs.get("resolution") if node is not None else None
    try:
        value = float(np.asarray(value).item()) if value is not None else None
    except (TypeError, ValueError):
        return None
    return value if value is not None and math.isfinite(value) and value > 0 else None


def _plain_column(group, name: str, n_rows: int):
    """The dataset of a simple per-unit column ``name`` of ``group`` (1-D, one value a row,
    number / bool / text), or None."""
    import h5py

    from ._units_columns import owner_table

    if name in OWN_COLUMNS or name.endswith("_index") or f"{name}_index" in group:
        return None
    ds = group.get(name)
    if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or ds.shape[0] != n_rows:
        return None
    if _text(ds.attrs.get("neurodata_type")) in _NOT_PLAIN:
        return None
    if owner_table(_text(ds.attrs.get("description"))) is not None:
        return None  # a column of an earlier annotation, whose table stays in the source
    dt = ds.dtype
    if h5py.check_string_dtype(dt) is not None:
        return ds
    if h5py.check_ref_dtype(dt) is not None or dt.names is not None or dt.kind not in "biuf":
        return None
    return ds


def source_unit_columns(h5, units_path: str, rows: np.ndarray) -> list:
    """The source Units table's simple per-unit columns at ``rows``, as ``VectorData`` (with the
    source's descriptions), in the table's column order. Each column is read once, whole (one
    value per unit: a few bytes a unit); ragged, region and reference columns, waveforms and the
    columns the derived file writes itself are left out. A column named like ours (``cell_type``,
    any name starting with it) is copied as ``source_<name>``, its description prefixed by
    "from the source: " (an earlier nwb-celltype annotation's columns are not copied at all)."""
    from hdmf.common import VectorData

    group = h5.get(units_path) if h5 is not None else None
    if group is None or "id" not in group:
        return []
    n_rows = int(group["id"].shape[0])
    names = [_text(raw) for raw in np.atleast_1d(group.attrs.get("colnames", []))]
    taken = set(names) | OWN_COLUMNS
    cols = []
    for name in names:
        ds = _plain_column(group, name, n_rows)
        if ds is None:
            continue
        values = ds[()][rows] if len(rows) else ds[()][:0]
        if ds.dtype.kind in "OSU":
            values = [_text(v) for v in values]
        description = _text(ds.attrs.get("description")) or name
        if name.startswith(OURS_PREFIX):  # the plain names are our labels' (see OURS_PREFIX)
            new = RENAMED_PREFIX + name
            while new in taken:
                new = RENAMED_PREFIX + new
            taken.add(new)
            name, description = new, f"from the source: {description}"
        cols.append(VectorData(name=name, description=description, data=values))
    if cols:
        logger.debug("derived file: copying the source's Units columns %s", [c.name for c in cols])
    return cols
