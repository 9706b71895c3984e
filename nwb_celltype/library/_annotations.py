"""The one place where the library reads and writes ground-truth annotation tables; everything
NWB-specific goes through :mod:`nwb_celltype.nwb` (``add_annotations`` / ``read_annotations``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import LibraryError
from ..vocabulary import C4_CLASSES, C4_CLASSES_MLI_CLUSTERING

#: Every class name a ground-truth label may carry (C4 classes, plus the MLI clusters).
LABEL_VOCABULARY: tuple[str, ...] = tuple(dict.fromkeys(C4_CLASSES + C4_CLASSES_MLI_CLUSTERING))

#: The per-row evidence fields of a ground-truth table.
EVIDENCE_FIELDS: tuple[str, ...] = ("evidence_type", "evidence_text", "labelled_by", "labelled_at")


@dataclass
class GroundTruth:
    """Ground-truth labels of one annotation table, as plain numpy.

    Attributes
    ----------
    table : str
        Name of the annotation table in the NWB file.
    kind : str
        ``"ground_truth"`` or ``"expert"``.
    unit_indices : (n,) int64
        Row indices into the Units table at ``units_table``.
    labels : (n,) object (str)
    evidence : dict of field -> (n,) object (str)
        ``evidence_type``, ``evidence_text``, ``labelled_by``, ``labelled_at`` (ISO 8601).
    units_table : str
        HDF5 path of the Units table the rows refer to: ``/units`` (``NWBFile.units``) or a sorting in
        a processing module (``/processing/ecephys/kilosort``); :func:`units_of` opens it.
    """

    table: str
    kind: str
    unit_indices: np.ndarray
    labels: np.ndarray
    evidence: dict[str, np.ndarray]
    units_table: str = "/units"

    def __len__(self) -> int:
        return len(self.labels)


#: What to do with labels written as kind ``expert``: libraries (stats, validate, training) read only
#: kind ``ground_truth`` tables.
RELABEL_EXPERT = (
    "libraries train on kind ground_truth tables only; relabel with `nwb-celltype library label "
    "--kind ground_truth --evidence-type expert` to train on expert labels"
)


def expert_tables(nwbfile) -> list[str]:
    """Names of the annotation tables of an open NWB file holding rows of kind ``expert`` (which
    libraries do not read)."""
    from ..nwb import read_annotations

    return [
        name
        for name, rec in read_annotations(nwbfile).items()
        if any(_text(k) == "expert" for k in rec.kinds)
    ]


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else ("" if v is None else str(v))


def _evidence_per_row(rec, n: int) -> dict[str, np.ndarray]:
    """The evidence table's items mapped onto annotation rows (several items of one row are joined
    with '; ', in their order)."""
    out = {f: [[] for _ in range(n)] for f in EVIDENCE_FIELDS}
    ev = rec.evidence
    if ev is not None:
        rows = np.asarray(ev.get("row", np.arange(n)), dtype=np.int64)
        for f in EVIDENCE_FIELDS:
            col = ev.get(f)
            if col is None:
                continue
            for r, v in zip(rows, col, strict=True):
                if 0 <= r < n and _text(v):
                    out[f][r].append(_text(v))
    return {
        f: np.asarray(["; ".join(dict.fromkeys(items)) for items in out[f]], dtype=object)
        for f in EVIDENCE_FIELDS
    }


def read_ground_truth(nwbfile, *, kinds: tuple[str, ...] = ("ground_truth",), name: str | None = None):
    """Ground-truth tables of an open NWB file.

    Parameters
    ----------
    nwbfile : pynwb.NWBFile or h5py.File
    kinds : tuple of str
        Row kinds to return (default only ``"ground_truth"``); rows of other kinds are dropped.
    name : str, optional
        Only the table of this name (an error if it is absent or holds no rows of these kinds).

    Returns
    -------
    list of GroundTruth
        One per table that holds rows of the requested kinds.
    """
    from ..nwb import read_annotations

    records = read_annotations(nwbfile)
    if name is not None:
        if name not in records:
            raise LibraryError(
                f"annotation table {name!r} not found; the file has {sorted(records) or 'none'}. "
                "Pass one of these names (or none to use every ground-truth table)."
            )
        records = {name: records[name]}
    out = []
    for tname, rec in records.items():
        row_kinds = np.asarray([_text(k) for k in rec.kinds], dtype=object)
        keep = np.isin(row_kinds, list(kinds))
        if not keep.any():
            if name is not None:
                has = sorted(set(row_kinds.tolist()))
                hint = f"; {RELABEL_EXPERT}" if "expert" in has and "expert" not in kinds else ""
                raise LibraryError(
                    f"annotation table {name!r} holds no rows of kind {list(kinds)} (it has {has}); name a "
                    f"ground-truth table{hint}."
                )
            continue
        ev = _evidence_per_row(rec, len(rec))
        labels = np.asarray([_text(v) for v in rec.labels], dtype=object)
        out.append(
            GroundTruth(
                table=tname,
                kind=str(row_kinds[keep][0]),
                unit_indices=np.asarray(rec.unit_indices, dtype=np.int64)[keep],
                labels=labels[keep],
                evidence={f: v[keep] for f, v in ev.items()},
                units_table=rec.units_table,
            )
        )
    return out


def units_of(nwbfile, units_table: str = "/units"):
    """The Units table of an open NWB file at HDF5 path ``units_table`` (a :class:`GroundTruth`'s)."""
    from ..nwb import units_table_at

    return units_table_at(nwbfile, units_table)


def units_tables(nwbfile) -> list[str]:
    """HDF5 paths of the Units tables of an open NWB file: ``/units`` first if present, then those
    in processing modules (``/processing/<module>/<name>``)."""
    from pynwb.misc import Units

    found = ["/units"] if nwbfile.units is not None else []
    for m, module in nwbfile.processing.items():
        found += [
            f"/processing/{m}/{n}" for n, obj in module.data_interfaces.items() if isinstance(obj, Units)
        ]
    return found


def default_units_table(nwbfile) -> str | None:
    """HDF5 path of the Units table ``annotate`` reads from an open NWB file: ``/units``, else the
    file's only Units table in a processing module; None when it has none, or several."""
    found = units_tables(nwbfile)
    return found[0] if found and (found[0] == "/units" or len(found) == 1) else None


def labelled_units_table(nwbfile, tables: list[GroundTruth], where: str) -> str | None:
    """HDF5 path of the one Units table the ground-truth ``tables`` label (without tables,
    :func:`default_units_table`). Tables labelling units of several Units tables (two sortings of one
    recording: possibly the same neurons twice) are an error."""
    paths = list(dict.fromkeys(g.units_table for g in tables))
    if len(paths) > 1:
        raise LibraryError(
            f"{where}: its ground-truth tables label units of several Units tables ("
            + ", ".join(f"{g.table!r} -> {g.units_table}" for g in tables)
            + "), possibly the same neurons sorted twice; name one table with annotation = NAME in "
            "the manifest (annotation_name= in load_training_set)."
        )
    return paths[0] if paths else default_units_table(nwbfile)


def write_ground_truth(
    nwbfile,
    *,
    name: str,
    unit_indices: np.ndarray,
    labels: np.ndarray,
    evidence: dict[str, np.ndarray],
    kind: str = "ground_truth",
    units=None,
):
    """Add a ground-truth (or expert) annotation table to an open, writable NWB file; its rows
    ``unit_indices`` refer to ``units`` (a pynwb Units table: default ``nwbfile.units``; a sorting in
    a processing module through :func:`units_of`)."""
    from ..nwb import add_annotations

    labels = np.asarray(labels, dtype=object)
    classes = C4_CLASSES if set(labels) <= set(C4_CLASSES) else LABEL_VOCABULARY
    return add_annotations(
        nwbfile,
        units=units,
        name=name,
        units_region=np.asarray(unit_indices, dtype=np.int64),
        labels=labels,
        classes=list(classes),
        kind=kind,
        evidence={f: list(evidence[f]) for f in EVIDENCE_FIELDS},
    )
