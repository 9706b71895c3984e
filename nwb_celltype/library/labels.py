"""Ground-truth label tables (CSV/TSV keyed by unit id or phy ``cluster_id``, or a Units column
such as ``cell_type``) checked against a file's units and written into it as a new annotation
table, safely: a copy is written to a temporary file and renamed, never left half-written."""

from __future__ import annotations

import csv
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..errors import LibraryError, OutputError, SourceNotFoundError
from ..vocabulary import EVIDENCE_TYPES
from ._annotations import EVIDENCE_FIELDS, LABEL_VOCABULARY, read_ground_truth, write_ground_truth

logger = logging.getLogger(__name__)

#: Column names accepted for the unit key, in order of preference.
UNIT_COLUMNS: tuple[str, ...] = ("unit_id", "id", "cluster_id", "unit")
#: Column names accepted for the label, in order of preference.
LABEL_COLUMNS: tuple[str, ...] = ("label", "cell_type", "celltype", "class", "group")
_EVIDENCE_ALIASES = {
    "evidence_type": ("evidence_type",),
    "evidence_text": ("evidence_text", "evidence", "note", "notes"),
    "labelled_by": ("labelled_by", "labeled_by", "annotator"),
    "labelled_at": ("labelled_at", "labeled_at", "date"),
}
_MAX_ROWS_IN_MESSAGE = 10


@dataclass
class LabelTable:
    """Labels keyed by unit id, with evidence per row.

    Attributes
    ----------
    unit_ids : (n,) int64
        Unit ids (the Units table's ``id`` column; for phy, ``cluster_id``).
    labels : (n,) object (str)
        Class names in our vocabulary (:data:`LABEL_VOCABULARY`).
    evidence : dict of field -> (n,) object (str)
        ``evidence_type`` (one of ``vocabulary.EVIDENCE_TYPES``), ``evidence_text`` (free text),
        ``labelled_by``, ``labelled_at`` (ISO 8601).
    rows : (n,) object (str)
        Where each label came from (e.g. ``"labels.csv:4"``), for error messages.
    """

    unit_ids: np.ndarray
    labels: np.ndarray
    evidence: dict[str, np.ndarray]
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.unit_ids)


def parse_mapping(items: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """``["PC=PkC_ss", "CS=PkC_cs"]`` -> ``{"PC": "PkC_ss", "CS": "PkC_cs"}``.

    A value may be empty (``"unknown="``): units with that file label are left unlabelled.
    """
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return {str(k): str(v) for k, v in items.items()}
    out: dict[str, str] = {}
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            if "=" not in part:
                raise LibraryError(
                    f"label mapping {part!r} has no '='; expected FILE_LABEL=OUR_LABEL, e.g. 'PC=PkC_ss'."
                )
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    bad = sorted(v for v in out.values() if v and v not in LABEL_VOCABULARY)
    if bad:
        raise LibraryError(
            f"label mapping targets {bad} are not in the vocabulary {list(LABEL_VOCABULARY)}; "
            "map each file label to one of these (or to nothing to leave it unlabelled)."
        )
    return out


def _rows_msg(rows) -> str:
    rows = list(rows)
    shown = ", ".join(str(r) for r in rows[:_MAX_ROWS_IN_MESSAGE])
    more = f" and {len(rows) - _MAX_ROWS_IN_MESSAGE} more" if len(rows) > _MAX_ROWS_IN_MESSAGE else ""
    return shown + more


def _now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _finish_table(
    unit_ids: list[int],
    raw_labels: list[str],
    rows: list[str],
    evidence_rows: dict[str, list[str]],
    *,
    mapping: dict[str, str],
    defaults: dict[str, str],
) -> LabelTable:
    """Map labels, apply defaults, check vocabulary / evidence / duplicates, drop identical repeats."""
    labels, keep = [], []
    unknown = []
    for i, raw in enumerate(raw_labels):
        lab = mapping.get(raw, raw)
        if lab == "":
            continue  # mapped (or left) empty: not labelled
        if lab not in LABEL_VOCABULARY:
            unknown.append(f"{rows[i]} ({raw!r})")
            continue
        labels.append(lab)
        keep.append(i)
    problems = []
    if unknown:
        problems.append(
            f"unknown labels in rows {_rows_msg(unknown)}; expected one of {list(LABEL_VOCABULARY)}. "
            "Map the file's vocabulary to ours with --map FILE_LABEL=OUR_LABEL (e.g. 'PC=PkC_ss')"
        )
    ev: dict[str, list[str]] = {}
    for f in EVIDENCE_FIELDS:
        col = evidence_rows.get(f)
        ev[f] = [(col[i] if col is not None and col[i] else defaults.get(f, "")) for i in keep]
    bad_ev = [
        f"{rows[i]} ({t!r})"
        for i, t in zip(keep, ev["evidence_type"], strict=True)
        if t not in EVIDENCE_TYPES
    ]
    if bad_ev:
        problems.append(
            f"evidence type missing or unknown in rows {_rows_msg(bad_ev)}; expected one of "
            f"{list(EVIDENCE_TYPES)}. Give an evidence_type column or --evidence-type"
        )
    no_who = [rows[i] for i, w in zip(keep, ev["labelled_by"], strict=True) if not w]
    if no_who:
        problems.append(
            f"no labeller for rows {_rows_msg(no_who)}; give a labelled_by column or --labelled-by NAME"
        )
    if problems:
        # every problem at once, so that one corrected command runs
        raise LibraryError(f"{len(problems)} problem(s): " + "; ".join(problems) + ".")
    # duplicates: identical repeats collapse, conflicting ones are an error naming both rows
    first: dict[int, int] = {}
    conflicts, drop = [], set()
    for j, i in enumerate(keep):
        uid = unit_ids[i]
        if uid in first:
            j0 = first[uid]
            if labels[j0] != labels[j]:
                conflicts.append(
                    f"unit {uid}: {rows[keep[j0]]} says {labels[j0]!r}, {rows[i]} says {labels[j]!r}"
                )
            else:
                drop.add(j)
        else:
            first[uid] = j
    if conflicts:
        raise LibraryError(
            f"conflicting duplicate labels: {'; '.join(conflicts[:_MAX_ROWS_IN_MESSAGE])}. "
            "Keep one label per unit."
        )
    sel = [j for j in range(len(keep)) if j not in drop]
    return LabelTable(
        unit_ids=np.asarray([unit_ids[keep[j]] for j in sel], dtype=np.int64),
        labels=np.asarray([labels[j] for j in sel], dtype=object),
        evidence={f: np.asarray([ev[f][j] for j in sel], dtype=object) for f in EVIDENCE_FIELDS},
        rows=np.asarray([rows[keep[j]] for j in sel], dtype=object),
    )


def read_label_table(
    path: str | os.PathLike,
    *,
    mapping: Sequence[str] | Mapping[str, str] | None = None,
    unit_column: str | None = None,
    label_column: str | None = None,
    evidence_type: str | None = None,
    evidence_text: str = "",
    labelled_by: str | None = None,
    labelled_at: str | None = None,
) -> LabelTable:
    """Read a CSV/TSV label table.

    The delimiter is taken from the suffix (``.tsv`` -> tab, ``.csv`` -> comma) or sniffed. The unit
    key column is ``unit_id``, ``id``, ``cluster_id`` (phy) or ``unit`` unless ``unit_column`` is
    given; the label column ``label``, ``cell_type``, ``celltype``, ``class`` or ``group`` (phy's
    ``cluster_group.tsv`` style) unless ``label_column`` is given. Optional columns
    ``evidence_type``, ``evidence_text`` (or ``evidence``), ``labelled_by``, ``labelled_at``
    override the keyword defaults row by row.

    Raises
    ------
    LibraryError
        Unknown labels, missing evidence, non-integer unit ids or conflicting duplicate labels; the
        message names the rows (``file:line``).
    """
    path = Path(path)
    if not path.is_file():
        raise SourceNotFoundError(f"label table {path} does not exist; give a CSV/TSV file path.")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".tsv", ".tab"):
        delim = "\t"
    elif path.suffix.lower() == ".csv":
        delim = ","
    else:
        try:
            delim = csv.Sniffer().sniff(text.splitlines()[0] if text else "", delimiters=",\t;").delimiter
        except csv.Error:
            delim = ","
    reader = csv.DictReader(text.splitlines(), delimiter=delim)
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header

    def pick(given, candidates, what):
        if given is not None:
            if given not in header:
                raise LibraryError(f"{path}: no column {given!r} ({what}); columns are {header}.")
            return given
        for c in candidates:
            if c in header:
                return c
        raise LibraryError(
            f"{path}: no {what} column; expected one of {list(candidates)}, got columns {header}. "
            f"Name the column with --{'unit' if what == 'unit id' else 'label'}-column "
            f"({'unit' if what == 'unit id' else 'label'}_column= in Python)."
        )

    ucol = pick(unit_column, UNIT_COLUMNS, "unit id")
    lcol = pick(label_column, LABEL_COLUMNS, "label")
    ev_cols = {f: next((a for a in al if a in header), None) for f, al in _EVIDENCE_ALIASES.items()}
    unit_ids, raw, rows = [], [], []
    ev_rows: dict[str, list[str]] = {f: [] for f, c in ev_cols.items() if c}
    bad_ids = []
    for line_no, rec in enumerate(reader, start=2):
        where = f"{path.name}:{line_no}"
        key = (rec.get(ucol) or "").strip()
        try:
            uid = int(key)
        except ValueError:
            try:
                fuid = float(key)
            except ValueError:
                fuid = float("nan")
            if fuid.is_integer():
                uid = int(fuid)
            else:
                bad_ids.append(f"{where} ({key!r})")
                continue
        unit_ids.append(uid)
        raw.append((rec.get(lcol) or "").strip())
        rows.append(where)
        for f, c in ev_cols.items():
            if c:
                ev_rows[f].append((rec.get(c) or "").strip())
    if bad_ids:
        raise LibraryError(
            f"unit ids in rows {_rows_msg(bad_ids)} are not integers; column {ucol!r} must hold the "
            "Units table's ids (or phy cluster ids)."
        )
    mapping = parse_mapping(mapping)
    defaults = {
        "evidence_type": evidence_type or "",
        "evidence_text": evidence_text,
        "labelled_by": labelled_by or "",
        "labelled_at": labelled_at or _now_iso(),
    }
    return _finish_table(unit_ids, raw, rows, ev_rows, mapping=mapping, defaults=defaults)


def labels_from_units_column(
    nwbfile,
    column: str,
    *,
    mapping: Sequence[str] | Mapping[str, str] | None = None,
    evidence_type: str | None = None,
    evidence_text: str = "",
    labelled_by: str | None = None,
    labelled_at: str | None = None,
) -> LabelTable:
    """Labels from an existing Units column (e.g. ``cell_type``) of an open NWB file.

    Empty values are skipped (unlabelled); every other value must be in our vocabulary or mapped to
    it with ``mapping`` (``{"PC": "PkC_ss"}``); map a value to ``""`` to leave those units out.
    """
    units = nwbfile.units
    if units is None or len(units) == 0:
        raise LibraryError("the file has no Units table (or it is empty); there is nothing to label.")
    if column not in units.colnames:
        raise LibraryError(
            f"Units has no column {column!r}; its columns are {list(units.colnames)}. "
            "Name an existing column or give a --labels CSV/TSV table."
        )
    values = units[column].data[:]
    ids = units.id.data[:]
    raw = [(v.decode() if isinstance(v, bytes) else str(v)).strip() for v in values]
    rows = [f"Units[{column!r}] row {i} (id {int(u)})" for i, u in enumerate(ids)]
    if not evidence_text:
        evidence_text = f"from Units column {column!r}"
    defaults = {
        "evidence_type": evidence_type or "",
        "evidence_text": evidence_text,
        "labelled_by": labelled_by or "",
        "labelled_at": labelled_at or _now_iso(),
    }
    return _finish_table(
        [int(u) for u in ids], raw, rows, {}, mapping=parse_mapping(mapping), defaults=defaults
    )


def free_table_name(path: str | os.PathLike, base: str = "ground_truth") -> str:
    """``base``, or ``base_2``, ``base_3``, ... : the first name no annotation table of the NWB file
    at ``path`` uses (tables on disk cannot be changed, so new labels need a new name)."""
    import h5py

    with h5py.File(path, "r") as f:
        taken = set()
        for module in (f.get("processing") or {}).values():
            taken.update(module.keys())
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name


def _resolve_rows(nwbfile, table: LabelTable) -> np.ndarray:
    units = nwbfile.units
    if units is None:
        raise LibraryError("the file has no Units table; labels need units to point at.")
    ids = np.asarray(units.id.data[:], dtype=np.int64)
    pos = {int(u): i for i, u in enumerate(ids)}
    missing = [
        f"{r} (unit {u})" for u, r in zip(table.unit_ids, table.rows, strict=True) if int(u) not in pos
    ]
    if missing:
        raise LibraryError(
            f"unknown units in rows {_rows_msg(missing)}: the file's Units ids are "
            f"{ids.min() if len(ids) else '-'}..{ids.max() if len(ids) else '-'} ({len(ids)} units). "
            "Check that the table belongs to this file and is keyed by unit id (phy: cluster_id)."
        )
    return np.asarray([pos[int(u)] for u in table.unit_ids], dtype=np.int64)


def _open_rw(path: Path, mode: str):
    from pynwb import NWBHDF5IO

    from .. import nwb  # noqa: F401  (registers the extension's classes before the file is read)

    return NWBHDF5IO(str(path), mode=mode, load_namespaces=True)


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
        Append the table to ``source`` itself (HDF5 mode ``"a"``) instead of writing a copy.
    name : str, optional
        Name of the new annotation table; default ``kind`` (``ground_truth``), or ``ground_truth_2``,
        ``_3``, ... when the file already has that table (see :func:`free_table_name`). A table
        already on disk cannot be changed, so a name given here that the file uses is an error.
    overwrite : bool
        Replace an existing ``out`` file (never the source).
    evidence_type, evidence_text, labelled_by, labelled_at
        Defaults for rows that do not give them (``labelled_at`` defaults to now, UTC).
    kind : str
        ``"ground_truth"`` (identified units) or ``"expert"`` (expert opinion).
    unit_column, label_column : str, optional
        Columns of the label table holding unit ids and labels (see :func:`read_label_table`).

    Returns
    -------
    pathlib.Path
        The file that now holds the labels.
    """
    src = Path(source)
    if not src.is_file():
        raise SourceNotFoundError(f"NWB file {src} does not exist; label a local NWB file.")
    if (labels is None) == (column is None):
        raise LibraryError("give exactly one of a label table (--labels) or a Units column (--column).")
    if in_place and out is not None:
        raise LibraryError("--in-place and --out exclude each other; choose one.")
    if name is None:
        name = free_table_name(src, kind)
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
        )
    if in_place:
        target = src
        work = src
    else:
        target = Path(out) if out is not None else src.with_name(src.stem + ".labelled.nwb")
        if target.resolve() == src.resolve():
            raise OutputError(f"--out {target} is the source itself; use --in-place to modify it.")
        if target.exists() and not overwrite:
            raise OutputError(f"{target} exists; pass overwrite (--overwrite) or choose another --out.")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp.nwb", dir=target.parent)
        os.close(fd)
        work = Path(tmp)
        shutil.copyfile(src, work)
    try:
        with _open_rw(work, "a") as io:
            nwbfile = io.read()
            if column is not None:
                labels = labels_from_units_column(
                    nwbfile,
                    column,
                    mapping=mapping,
                    evidence_type=evidence_type,
                    evidence_text=evidence_text,
                    labelled_by=labelled_by,
                    labelled_at=labelled_at,
                )
            if len(labels) == 0:
                raise LibraryError("the label table holds no labels; nothing to write.")
            existing = {
                g.table for g in read_ground_truth(nwbfile, kinds=("ground_truth", "expert", "prediction"))
            }
            if name in existing:
                raise LibraryError(
                    f"{src} already has an annotation table {name!r}; tables on disk cannot be "
                    "changed, so give the new labels another --name."
                )
            rows = _resolve_rows(nwbfile, labels)
            write_ground_truth(
                nwbfile,
                name=name,
                unit_indices=rows,
                labels=labels.labels,
                evidence=labels.evidence,
                kind=kind,
            )
            io.write(nwbfile)
    except BaseException:
        if work != src:
            work.unlink(missing_ok=True)
        raise
    if work != target:
        from .._files import give_mode

        give_mode(work)  # mkstemp made it 0600: a new file gets the umask's mode
        os.replace(work, target)
    logger.info("wrote %d %s labels to %s (table %r)", len(labels), kind, target, name)
    return target
