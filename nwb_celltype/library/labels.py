"""Ground-truth labels written into an NWB file as a new annotation table, safely: a copy is written
to a temporary file and renamed, never left half-written. The labels come from a label table
(:mod:`.label_tables`: CSV/TSV keyed by unit id, phy ``cluster_id`` or ``unit_name``) or from a
Units column such as ``cell_type``."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .._annotate_output import check_nwb_output_path
from .._atomic import (
    RESERVE_BASE_BYTES,
    RESERVE_PER_UNIT_BYTES,
    atomic_write,
    check_replaceable,
    reserve_space,
)
from .._files import held_for_writing_here
from ..errors import LibraryError, OutputError
from ._annotations import GroundTruth, read_ground_truth, write_ground_truth
from .label_tables import (  # noqa: F401  (re-exported: the library's public names)
    _MAX_ROWS_IN_MESSAGE,
    AUTO_ID_COLUMNS,
    LABEL_COLUMNS,
    UNIT_COLUMNS,
    LabelTable,
    _finish_table,
    _key,
    _now_iso,
    _option_defaults,
    _rows_msg,
    parse_mapping,
    read_label_table,
)

logger = logging.getLogger(__name__)


def labels_from_units_column(
    nwbfile,
    column: str,
    *,
    mapping: Sequence[str] | Mapping[str, str] | None = None,
    evidence_type: str | None = None,
    evidence_text: str = "",
    labelled_by: str | None = None,
    labelled_at: str | None = None,
    units=None,
) -> LabelTable:
    """Labels from an existing Units column (e.g. ``cell_type``) of an open NWB file.

    Empty values are skipped (unlabelled); every other value must be in our vocabulary or mapped to
    it with ``mapping`` (``{"PC": "PkC_ss"}``); map a value to ``""`` to leave those units out.
    ``units``: the Units table to read (default ``nwbfile.units``; e.g. a sorting in a processing
    module, :func:`nwb_celltype.nwb.units_table_at`).
    """
    units = nwbfile.units if units is None else units
    if units is None or len(units) == 0:
        raise LibraryError("the file has no Units table (or it is empty); there is nothing to label.")
    if column not in units.colnames:
        raise LibraryError(
            f"{_units_name(units)} has no column {column!r}; its columns are {list(units.colnames)}. "
            "Name an existing column or give a --labels CSV/TSV table."
        )
    values = units[column].data[:]
    ids = units.id.data[:]
    raw = [(v.decode() if isinstance(v, bytes) else str(v)).strip() for v in values]
    rows = [f"Units[{column!r}] row {i} (id {int(u)})" for i, u in enumerate(ids)]
    if not evidence_text:
        evidence_text = f"from Units column {column!r}"
    defaults = _option_defaults(
        {
            "evidence_type": evidence_type,
            "evidence_text": evidence_text,
            "labelled_by": labelled_by,
            "labelled_at": labelled_at,
        }
    )
    return _finish_table(
        [int(u) for u in ids], raw, rows, {}, mapping=parse_mapping(mapping), defaults=defaults
    )


def free_table_name(path: str | os.PathLike, base: str = "ground_truth") -> str:
    """``base``, or ``base_2``, ``base_3``, ... : the first name no annotation table of the NWB file
    at ``path`` uses (tables on disk cannot be changed, so new labels need a new name)."""
    from .._files import open_nwb_h5

    with open_nwb_h5(path, "a local NWB file to label") as f:
        taken = set()
        for module in (f.get("processing") or {}).values():
            taken.update(module.keys())
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name


def _units_name(units) -> str:
    """``Units`` for ``NWBFile.units``, else the table's path, for messages (files with several)."""
    parent = getattr(units, "parent", None)
    if parent is not None and type(parent).__name__ == "ProcessingModule":
        return f"Units table /processing/{parent.name}/{units.name}"
    return "Units"


def _units_table_path(src: Path, units_table: str | None) -> str:
    """The HDF5 path of the Units table to label, chosen as ``annotate`` chooses it (``units_table``,
    else ``units``, else the file's only Units table; errors name the file's Units tables)."""
    from .._files import open_nwb_h5
    from ..io import resolve_units_table

    with open_nwb_h5(src, "a local NWB file to label") as f:
        return resolve_units_table(f, units_table)


def _units_key_column(units, table: LabelTable, id_column: str | None) -> str | None:
    """The Units column ``table``'s keys refer to, or None for the NWB ids (``units.id``)."""
    if id_column is not None:
        if id_column == "id":
            return None
        if id_column not in units.colnames:
            raise LibraryError(
                f"{_units_name(units)} has no column {id_column!r} (--id-column); its columns are "
                f"{list(units.colnames)}. Name the Units column that holds the label table's ids, or "
                "'id' for the NWB unit ids."
            )
        return id_column
    key = table.key_column
    if key in AUTO_ID_COLUMNS:
        if key in units.colnames:
            return key
        # NeuroConv numbers units 0..n-1 and keeps the sorter's ids elsewhere: matching these keys
        # against the NWB ids would label the wrong units without a word
        raise LibraryError(
            f"the label table is keyed by {key!r} (the sorter's ids) but {_units_name(units)} has no "
            f"{key!r} column (its columns are {list(units.colnames)}), so its ids cannot be assumed to "
            f"be the NWB unit ids{_unit_name_hint(units, table, key)}; name the Units column that holds "
            "them with --id-column (id_column= in Python), or --id-column id if they are the NWB unit "
            "ids. Nothing was written."
        )
    return None


def _unit_name_hint(units, table: LabelTable, key: str) -> str:
    """``: ... use --id-column unit_name`` when the Units column ``unit_name`` holds every key."""
    if key == "unit_name" or "unit_name" not in units.colnames:
        return ""
    names = {_key(v) for v in units["unit_name"].data[:]}
    if not all(_key(u) in names for u in table.unit_ids):
        return ""
    return f"; its 'unit_name' column holds every {key} of the table: use --id-column unit_name"


def _resolve_rows(units, table: LabelTable, id_column: str | None = None) -> np.ndarray:
    """Rows of the Units table ``units`` that ``table``'s keys name: by NWB id, or through a Units
    column (``id_column``, or automatically a ``cluster_id``/``unit_name`` column matching the key
    column)."""
    if units is None:
        raise LibraryError("the file has no Units table; labels need units to point at.")
    ids = np.asarray(units.id.data[:], dtype=np.int64)
    col = _units_key_column(units, table, id_column)
    keys = [_key(u) for u in table.unit_ids]
    if col is None:
        logger.info("label table ids matched against the NWB Units ids (the 'id' column)")
        names = [f"{r} ({u!r})" for u, r in zip(keys, table.rows, strict=True) if not isinstance(u, int)]
        if names:
            raise LibraryError(
                f"unit ids in rows {_rows_msg(names)} are not integers, so they cannot be NWB unit "
                "ids; name the Units column that holds them with --id-column (id_column= in Python)."
            )
        pos = {int(u): i for i, u in enumerate(ids)}
        missing = [f"{r} (unit {u})" for u, r in zip(keys, table.rows, strict=True) if u not in pos]
        if missing:
            idlike = [c for c in units.colnames if "id" in c.lower() or "name" in c.lower()]
            hint = (
                f" (or name the Units column that holds these ids with --id-column, e.g. {idlike})"
                if idlike
                else ""
            )
            raise LibraryError(
                f"unknown units in rows {_rows_msg(missing)}: the ids of the file's {_units_name(units)} are "
                f"{ids.min() if len(ids) else '-'}..{ids.max() if len(ids) else '-'} ({len(ids)} units). "
                "Check that the table belongs to this file and is keyed by unit id (phy: cluster_id)"
                + hint
                + "."
            )
        return np.asarray([pos[u] for u in keys], dtype=np.int64)
    logger.info(
        "label table ids (column %r) matched through the Units column %r, not the NWB ids",
        table.key_column,
        col,
    )
    values = [_key(v) for v in units[col].data[:]]
    where: dict = {}
    for i, v in enumerate(values):
        where.setdefault(v, []).append(i)
    missing, ambiguous = [], []
    for u, r in zip(keys, table.rows, strict=True):
        hits = where.get(u, [])
        if not hits:
            missing.append(f"{r} ({col} {u})")
        elif len(hits) > 1:
            shown = ", ".join(f"row {i} (id {int(ids[i])})" for i in hits[:_MAX_ROWS_IN_MESSAGE])
            ambiguous.append(f"{r} ({col} {u}: Units {shown})")
    problems = []
    if missing:
        problems.append(
            f"unknown units in rows {_rows_msg(missing)}: no Units row has that {col!r} value "
            f"({len(values)} units). Check that the table belongs to this file, or pass --id-column id "
            "if its ids are the NWB unit ids"
        )
    if ambiguous:
        problems.append(
            f"ambiguous units in rows {_rows_msg(ambiguous)}: the Units column {col!r} holds these "
            "values more than once (e.g. several sortings in one table), so the labels cannot be "
            "matched to one unit; label by NWB unit id (--id-column id) or through a column whose "
            "values are unique (--id-column NAME)"
        )
    if problems:
        raise LibraryError("; ".join(problems) + ". Nothing was written.")
    return np.asarray([where[u][0] for u in keys], dtype=np.int64)


def _same_labels(new: GroundTruth, old: GroundTruth) -> bool:
    """Whether two tables assign the same label, evidence type and labeller to the same units."""

    def assignments(gt: GroundTruth) -> set:
        return set(
            zip(
                (int(r) for r in gt.unit_indices),
                (str(x) for x in gt.labels),
                (str(x) for x in gt.evidence["evidence_type"]),
                (str(x) for x in gt.evidence["labelled_by"]),
                strict=True,
            )
        )

    return len(new) == len(old) and assignments(new) == assignments(old)


def _open_rw(path: Path, mode: str):
    from pynwb import NWBHDF5IO

    from .. import nwb  # noqa: F401  (registers the extension's classes before the file is read)

    return NWBHDF5IO(str(path), mode=mode, load_namespaces=True)


def _append_labels(
    work: Path, src: Path, labels, column, name, kind, mapping, ev: dict, id_column=None, units_path="units"
) -> LabelTable:
    """Append the label table ``name``, on the Units table at ``units_path``, to the NWB file ``work``
    (a copy of ``src``), unless a table of the same kind already holds the same labels of that Units
    table (an error: a second copy would count them twice)."""
    from ..nwb import read_annotations, units_table_at

    with _open_rw(work, "a") as io:
        nwbfile = io.read()
        units = units_table_at(nwbfile, units_path)
        if column is not None:
            labels = labels_from_units_column(nwbfile, column, mapping=mapping, units=units, **ev)
        if len(labels) == 0:
            raise LibraryError("the label table holds no labels; nothing to write.")
        records = read_annotations(nwbfile)
        if name in records:
            raise LibraryError(
                f"{src} already has an annotation table {name!r}; tables on disk cannot be "
                "changed, so give the new labels another --name."
            )
        rows = _resolve_rows(units, labels, id_column)
        new = GroundTruth(name, kind, rows, labels.labels, labels.evidence, units_table="/" + units_path)
        # row numbers only mean the same units within one Units table
        on_table = {n for n, r in records.items() if r.units_table.strip("/") == units_path}
        same = [
            g.table
            for g in read_ground_truth(nwbfile, kinds=(kind,))
            if g.table in on_table and _same_labels(new, g)
        ]
        if same:
            raise LibraryError(
                f"{src} already holds these labels: table {same[0]!r} labels the same {len(new)} units "
                "the same way, with the same evidence type and labeller. Nothing was written (a second "
                "copy would make `library validate` report every unit as labelled twice and "
                "`library stats` count it twice); labels that differ go into a new table as before."
            )
        write_ground_truth(
            nwbfile,
            name=name,
            unit_indices=rows,
            labels=labels.labels,
            evidence=labels.evidence,
            kind=kind,
            units=units,
        )
        io.write(nwbfile)
    return labels


def _target(src: Path, out, in_place: bool, overwrite: bool, allow_read_only: bool, allow_hard_links: bool):
    """The file the labels go to, checked before any copy: ``src`` itself (``in_place``, if it may be
    replaced), or ``out`` / ``<stem>.labelled.nwb`` in an existing folder, not clobbering ``src`` nor
    (without ``overwrite``) another file."""
    if in_place:
        check_replaceable(src, allow_read_only=allow_read_only, allow_hard_links=allow_hard_links)
        return src
    target = Path(out) if out is not None else src.with_name(src.stem + ".labelled.nwb")
    if target.resolve() == src.resolve():
        raise OutputError(f"--out {target} is the source itself; use --in-place to modify it.")
    check_nwb_output_path(target, None)  # a missing folder is refused, as by annotate --out
    if target.exists() and not overwrite:
        raise OutputError(f"{target} exists; pass --overwrite (overwrite=True) or choose another --out.")
    return target


def label_file(
    source: str | os.PathLike,
    labels: LabelTable | str | os.PathLike | None = None,
    *,
    column: str | None = None,
    mapping: Sequence[str] | Mapping[str, str] | None = None,
    out: str | os.PathLike | None = None,
    in_place: bool = False,
    name: str | None = None,
    overwrite: bool = False,
    evidence_type: str | None = None,
    evidence_text: str = "",
    labelled_by: str | None = None,
    labelled_at: str | None = None,
    kind: str = "ground_truth",
    unit_column: str | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    units_table: str | None = None,
    allow_read_only: bool = False,
    allow_hard_links: bool = False,
) -> Path:
    """Write ground-truth labels into a local NWB file as a new annotation table.

    Parameters
    ----------
    source : path
        The NWB file whose units are labelled.
    labels : LabelTable or path, optional
        The labels, or a CSV/TSV to read with :func:`read_label_table`. Give this or ``column``.
    column : str, optional
        Take the labels from this existing Units column instead (with ``mapping``).
    out : path, optional
        Where the labelled copy goes (default ``<stem>.labelled.nwb`` beside ``source``). It is
        written to a temporary file in the same folder and renamed, so it is never half-written.
    in_place : bool
        Add the table to ``source`` itself instead of writing a copy: done on a copy that then
        replaces ``source`` atomically (see :func:`nwb_celltype._atomic.atomic_write`), keeping its
        mode; a read-only source or one with other hard links is refused unless ``allow_read_only``
        / ``allow_hard_links``.
    name : str, optional
        Name of the new annotation table; default ``kind`` (``ground_truth``), or ``ground_truth_2``,
        ``_3``, ... when the file already has that table (see :func:`free_table_name`). A table
        already on disk cannot be changed, so a name given here that the file uses is an error.
        Labels identical to a table of the same ``kind`` already in the file (same units, labels,
        evidence types and labellers) are refused: nothing is written.
    overwrite : bool
        Replace an existing ``out`` file (never the source).
    evidence_type, evidence_text, labelled_by, labelled_at
        Defaults for rows that do not give them (``labelled_at``: ISO 8601 date or date-time,
        default now, UTC). A bad ``evidence_type`` or ``labelled_at`` is an error naming the value.
    kind : str
        ``"ground_truth"`` (identified units) or ``"expert"`` (expert opinion).
    unit_column, label_column : str, optional
        Columns of the label table holding unit ids and labels (see :func:`read_label_table`).
    id_column : str, optional
        The Units column the label table's ids refer to (e.g. ``"cluster_id"``; ``"id"`` for the
        NWB unit ids). Default: the NWB ids, except that a ``cluster_id`` (or ``unit_name``) key
        column is matched through the Units column of that name (NeuroConv / SpikeInterface exports
        keep the sorter's ids there), and is an error when the Units table has no such column (the
        sorter's ids are not the NWB ids there; the error names a ``unit_name`` column holding
        them). Keys missing from that column, or held by several units, are an error naming the rows.
    units_table : str, optional
        HDF5 path of the Units table whose units are labelled, for files holding several sortings
        (e.g. ``processing/ecephys/kilosort``; a leading "/" is allowed). Default, as for
        :func:`nwb_celltype.annotate`: ``/units``, else the file's only Units table in a processing
        module; an error naming the file's Units tables when several could be meant or the path is
        not one. The annotation table's rows refer to that table.

    Returns
    -------
    pathlib.Path
        The file that now holds the labels.
    """
    from .._files import require_regular_file

    src = require_regular_file(source, "a local NWB file to label")
    if (labels is None) == (column is None):
        raise LibraryError("give exactly one of a label table (--labels) or a Units column (--column).")
    if in_place and out is not None:
        raise LibraryError("--in-place and --out exclude each other; choose one.")
    if column is not None and id_column is not None:
        raise LibraryError(
            "--id-column applies to a --labels table; labels from a Units column (--column) belong "
            "to their own rows."
        )
    free_table_name(src, kind)  # a clear error now if the source is not HDF5 (before any copy)
    units_path = _units_table_path(src, units_table)
    ev_defaults = {
        "evidence_type": evidence_type,
        "evidence_text": evidence_text,
        "labelled_by": labelled_by,
        "labelled_at": labelled_at,
    }
    if labels is not None and not isinstance(labels, LabelTable):
        labels = read_label_table(
            labels,
            mapping=mapping,
            unit_column=unit_column,
            label_column=label_column,
            evidence_type=evidence_type,
            evidence_text=evidence_text,
            labelled_by=labelled_by,
            labelled_at=labelled_at,
            id_column=id_column,
        )
    elif column is not None:  # the option values are checked before any copy is made
        _finish_table([], [], [], {}, mapping={}, defaults=_option_defaults(ev_defaults))
    target = _target(src, out, in_place, overwrite, allow_read_only, allow_hard_links)
    for held in dict.fromkeys([src, target]):  # HDF5's lock keeps other processes out, not this one
        if held_for_writing_here(held):
            raise OutputError(
                f"{held} is open for writing in this Python process (an h5py.File or NWBHDF5IO with mode "
                "'a', 'r+' or 'w'); close it there and retry: a copy would miss what it has not flushed, "
                "and replacing the file would discard what is written through it later"
            )
    # one mechanism for every mode: a copy of the source, written and renamed under the target's lock
    with atomic_write(target, replace=in_place or overwrite, keep_mode_of=src if in_place else None) as work:
        shutil.copyfile(src, work)
        n = len(labels) if isinstance(labels, LabelTable) else 4096
        reserve_space(work, RESERVE_BASE_BYTES + RESERVE_PER_UNIT_BYTES * n)
        # under the lock: two runs adding labels to one file get ground_truth and ground_truth_2
        name = name if name is not None else free_table_name(work, kind)
        labels = _append_labels(
            work, src, labels, column, name, kind, mapping, ev_defaults, id_column, units_path
        )
    logger.info("wrote %d %s labels of /%s to %s (table %r)", len(labels), kind, units_path, target, name)
    return target
