"""Ground-truth label tables (CSV/TSV keyed by unit id, phy ``cluster_id`` or ``unit_name``, or a
Units column such as ``cell_type``) checked against a file's units and written into it as a new
annotation table, safely: a copy is written to a temporary file and renamed, never left half-written.
"""

from __future__ import annotations

import csv
import difflib
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np

from .._atomic import (
    RESERVE_BASE_BYTES,
    RESERVE_PER_UNIT_BYTES,
    atomic_write,
    check_replaceable,
    reserve_space,
)
from ..errors import LibraryError, OutputError, SourceNotFoundError
from ..vocabulary import EVIDENCE_TYPES
from ._annotations import (
    EVIDENCE_FIELDS,
    LABEL_VOCABULARY,
    GroundTruth,
    read_ground_truth,
    write_ground_truth,
)

logger = logging.getLogger(__name__)

#: Column names accepted for the unit key, in order of preference.
UNIT_COLUMNS: tuple[str, ...] = ("unit_id", "id", "cluster_id", "unit", "unit_name")
#: Key columns of a label table that refer to the Units column of the same name when the file has
#: one (NeuroConv / SpikeInterface exports keep the sorter's ids there, the NWB ids are 0..n-1).
AUTO_ID_COLUMNS: tuple[str, ...] = ("cluster_id", "unit_name")
#: Column names accepted for the label, in order of preference.
LABEL_COLUMNS: tuple[str, ...] = ("label", "cell_type", "celltype", "class", "group")
_EVIDENCE_ALIASES = {
    "evidence_type": ("evidence_type",),
    "evidence_text": ("evidence_text", "evidence", "note", "notes"),
    "labelled_by": ("labelled_by", "labeled_by", "annotator"),
    "labelled_at": ("labelled_at", "labeled_at", "date"),
}
_MAX_ROWS_IN_MESSAGE = 10
_ISO_EXAMPLE = "e.g. 2024-05-01 or 2024-05-01T10:00:00+00:00"


@dataclass
class LabelTable:
    """Labels keyed by unit id, with evidence per row.

    Attributes
    ----------
    unit_ids : (n,) int64, or object (str)
        Unit keys: the Units table's ``id`` values, or values of the Units column they are matched
        through (``cluster_id``, ``unit_name``, or ``id_column`` of :func:`label_file`). Names that are
        not integers (object dtype) are only allowed when keys are matched through a Units column.
    labels : (n,) object (str)
        Class names in our vocabulary (:data:`LABEL_VOCABULARY`).
    evidence : dict of field -> (n,) object (str)
        ``evidence_type`` (one of ``vocabulary.EVIDENCE_TYPES``), ``evidence_text`` (free text),
        ``labelled_by``, ``labelled_at`` (ISO 8601).
    rows : (n,) object (str)
        Where each label came from (e.g. ``"labels.csv:4"``), for error messages.
    key_column : str, optional
        The label table's column the keys came from (``"cluster_id"``, ...); a ``cluster_id`` or
        ``unit_name`` key column is matched through the Units column of that name when there is one.
    """

    unit_ids: np.ndarray
    labels: np.ndarray
    evidence: dict[str, np.ndarray]
    rows: np.ndarray
    key_column: str | None = None

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


def _iso_or_none(value) -> str | None:
    """``value`` (text, date or datetime) as ISO 8601 text (``2024-05-01`` or
    ``2024-05-01T10:00:00+00:00``), or None when it is not an ISO 8601 date or date-time."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    text = str(value).strip()
    if text[-1:] in ("Z", "z") and "T" in text.upper():  # UTC designator (Python 3.10 lacks it)
        text = text[:-1] + "+00:00"
    for parse in (date.fromisoformat, datetime.fromisoformat):
        try:
            return parse(text).isoformat()
        except ValueError:
            continue
    return None


def _option_defaults(ev: Mapping) -> dict:
    """The keyword (option) evidence values as row defaults; ``labelled_at`` defaults to now."""
    return {
        "evidence_type": ev.get("evidence_type") or "",
        "evidence_text": ev.get("evidence_text") or "",
        "labelled_by": ev.get("labelled_by") or "",
        "labelled_at": ev.get("labelled_at") or _now_iso(),
    }


def _close(value: str, choices) -> str:
    near = difflib.get_close_matches(value, list(choices), n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _key(value):
    """A unit key as compared: an int when it is an integer (``7``, ``"7"``, ``7.0``), else the text."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else str(value)
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        f = float(text)
    except ValueError:
        return text
    return int(f) if f.is_integer() else text


def _finish_table(
    unit_ids: list[int],
    raw_labels: list[str],
    rows: list[str],
    evidence_rows: dict[str, list[str]],
    *,
    mapping: dict[str, str],
    defaults: dict[str, str],
    key_column: str | None = None,
) -> LabelTable:
    """Map labels, apply defaults, check vocabulary / evidence / duplicates, drop identical repeats.

    ``defaults`` are the keyword (command-line option) values: a bad one is reported once, as the
    option's value, not once per row that uses it."""
    problems = []
    defaults = dict(defaults)
    opt_type = defaults.get("evidence_type", "")
    if opt_type and opt_type not in EVIDENCE_TYPES:
        problems.append(
            f"--evidence-type {opt_type!r} (evidence_type= in Python) is not an evidence type"
            f"{_close(opt_type, EVIDENCE_TYPES)}; expected one of {list(EVIDENCE_TYPES)}"
        )
    opt_at = defaults.get("labelled_at", "")
    if opt_at:
        iso = _iso_or_none(opt_at)
        if iso is None:
            problems.append(
                f"--labelled-at {str(opt_at)!r} (labelled_at= in Python) is not an ISO 8601 date or "
                f"date-time ({_ISO_EXAMPLE})"
            )
        else:
            defaults["labelled_at"] = iso
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
    if unknown:
        problems.append(
            f"unknown labels in rows {_rows_msg(unknown)}; expected one of {list(LABEL_VOCABULARY)}. "
            "Map the file's vocabulary to ours with --map FILE_LABEL=OUR_LABEL (e.g. 'PC=PkC_ss')"
        )
    ev: dict[str, list[str]] = {}
    for f in EVIDENCE_FIELDS:
        col = evidence_rows.get(f)
        ev[f] = [(col[i] if col is not None and col[i] else defaults.get(f, "")) for i in keep]
    # a row's own bad value is named with its row; the option's value was reported above
    from_row = evidence_rows.get("evidence_type")
    bad_ev = [
        f"{rows[i]} ({t!r})"
        for i, t in zip(keep, ev["evidence_type"], strict=True)
        if t not in EVIDENCE_TYPES and (not t or (from_row is not None and from_row[i]))
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
    at_row = evidence_rows.get("labelled_at")
    bad_at = []
    if at_row is not None:
        for j, i in enumerate(keep):
            if at_row[i]:
                iso = _iso_or_none(at_row[i])
                if iso is None:
                    bad_at.append(f"{rows[i]} ({at_row[i]!r})")
                else:
                    ev["labelled_at"][j] = iso
    if bad_at:
        problems.append(
            f"labelled_at values in rows {_rows_msg(bad_at)} are not ISO 8601 dates or date-times "
            f"({_ISO_EXAMPLE})"
        )
    if problems:
        # every problem at once, so that one corrected command runs
        raise LibraryError(f"{len(problems)} problem(s): " + "; ".join(problems) + ".")
    # duplicates: identical repeats collapse, conflicting ones are an error naming both rows
    first: dict = {}
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
    keys = [unit_ids[keep[j]] for j in sel]
    all_int = all(isinstance(k, int) for k in keys)
    return LabelTable(
        unit_ids=np.asarray(keys, dtype=np.int64 if all_int else object),
        labels=np.asarray([labels[j] for j in sel], dtype=object),
        evidence={f: np.asarray([ev[f][j] for j in sel], dtype=object) for f in EVIDENCE_FIELDS},
        rows=np.asarray([rows[keep[j]] for j in sel], dtype=object),
        key_column=key_column,
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
    id_column: str | None = None,
) -> LabelTable:
    """Read a CSV/TSV label table.

    The delimiter is taken from the suffix (``.tsv``/``.tab`` -> tab, ``.csv`` -> comma) or sniffed
    (other suffixes: comma, tab or semicolon). The unit key column is ``unit_id``, ``id``,
    ``cluster_id`` (phy), ``unit`` or ``unit_name`` unless ``unit_column`` is given; the label column
    ``label``, ``cell_type``, ``celltype``, ``class`` or ``group`` (phy's ``cluster_group.tsv``
    style) unless ``label_column`` is given. Optional columns ``evidence_type``, ``evidence_text``
    (or ``evidence``), ``labelled_by``, ``labelled_at`` (or ``date``, ISO 8601) override the keyword
    defaults row by row.

    Keys must be integers unless they are matched through a Units column (``id_column`` other than
    ``"id"``, or a ``unit_name`` key column): which rows of the file they name is decided by
    :func:`label_file`.

    Raises
    ------
    LibraryError
        Unknown labels, missing evidence, dates that are not ISO 8601, non-integer unit ids or
        conflicting duplicate labels (the message names the rows, ``file:line``); a bad
        ``evidence_type`` / ``labelled_at`` keyword value (named once); a header whose delimiter
        does not match the file's suffix.
    """
    from .._files import require_regular_file

    path = require_regular_file(path, "a CSV/TSV label table")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LibraryError(
            f"label table {path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8 "
            "CSV/TSV."
        ) from None
    except OSError as exc:
        raise SourceNotFoundError(f"cannot read label table {path}: {exc}") from exc
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
    _check_delimiter(path, header, delim)

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
    # names (not integers) can only be matched through a Units column, never against NWB ids
    names_ok = (id_column is not None and id_column != "id") or (id_column is None and ucol == "unit_name")
    for line_no, rec in enumerate(reader, start=2):
        where = f"{path.name}:{line_no}"
        key = (rec.get(ucol) or "").strip()
        uid = _key(key)
        if not isinstance(uid, int) and not (names_ok and key):
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
            "Units table's ids (or phy cluster ids), or name a Units column that holds these keys "
            "with --id-column (id_column= in Python)."
        )
    mapping = parse_mapping(mapping)
    defaults = _option_defaults(
        {
            "evidence_type": evidence_type,
            "evidence_text": evidence_text,
            "labelled_by": labelled_by,
            "labelled_at": labelled_at,
        }
    )
    return _finish_table(unit_ids, raw, rows, ev_rows, mapping=mapping, defaults=defaults, key_column=ucol)


def _check_delimiter(path: Path, header: list[str], delim: str) -> None:
    """A header read as one cell that holds another delimiter: the file's delimiter does not match
    what its suffix says (an error that says so, not a missing column)."""
    if len(header) != 1 or path.suffix.lower() not in (".csv", ".tsv", ".tab"):
        return  # other suffixes are sniffed
    names = {"\t": "tab", ",": "comma", ";": "semicolon"}
    found = [d for d in ("\t", ";", ",") if d != delim and d in header[0]]
    if not found:
        return
    seen, suffix = found[0], path.suffix.lower()
    rule = (
        "the delimiter comes from the suffix: .csv is read comma-separated, .tsv and .tab "
        "tab-separated, other suffixes are detected (comma, tab or semicolon)"
    )
    if seen == "\t":
        fix = f"rename it to {path.stem}.tsv, or re-save it comma-separated"
    elif seen == ",":
        fix = f"rename it to {path.stem}.csv, or re-save it tab-separated"
    else:
        fix = (
            "re-save it comma-separated (.csv) or tab-separated (.tsv), or rename it to "
            f"{path.stem}.txt so that the semicolons are detected"
        )
    raise LibraryError(
        f"{path}: the header is read as one column {header[0]!r}: the file is "
        f"{names[seen]}-separated but its suffix {suffix} says {names[delim]}-separated ({rule}). "
        f"To fix, {fix}."
    )


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


def _units_key_column(units, table: LabelTable, id_column: str | None) -> str | None:
    """The Units column ``table``'s keys refer to, or None for the NWB ids (``units.id``)."""
    if id_column is not None:
        if id_column == "id":
            return None
        if id_column not in units.colnames:
            raise LibraryError(
                f"Units has no column {id_column!r} (--id-column); its columns are "
                f"{list(units.colnames)}. Name the Units column that holds the label table's ids, or "
                "'id' for the NWB unit ids."
            )
        return id_column
    if table.key_column in AUTO_ID_COLUMNS:
        if table.key_column in units.colnames:
            return table.key_column
        if table.key_column == "unit_name":
            raise LibraryError(
                f"the label table is keyed by 'unit_name' but Units has no 'unit_name' column (its "
                f"columns are {list(units.colnames)}); name the Units column that holds these ids "
                "with --id-column, or --id-column id if they are the NWB unit ids."
            )
    return None


def _resolve_rows(nwbfile, table: LabelTable, id_column: str | None = None) -> np.ndarray:
    """Rows of the Units table that ``table``'s keys name: by NWB id, or through a Units column
    (``id_column``, or automatically a ``cluster_id``/``unit_name`` column matching the key column)."""
    units = nwbfile.units
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
                f"unknown units in rows {_rows_msg(missing)}: the file's Units ids are "
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
    work: Path, src: Path, labels, column, name, kind, mapping, ev: dict, id_column: str | None = None
) -> LabelTable:
    """Append the label table ``name`` to the NWB file ``work`` (a copy of ``src``), unless a table of
    the same kind already holds the same labels (an error: a second copy would count them twice)."""
    with _open_rw(work, "a") as io:
        nwbfile = io.read()
        if column is not None:
            labels = labels_from_units_column(nwbfile, column, mapping=mapping, **ev)
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
        rows = _resolve_rows(nwbfile, labels, id_column)
        new = GroundTruth(name, kind, rows, labels.labels, labels.evidence)
        same = [g.table for g in read_ground_truth(nwbfile, kinds=(kind,)) if _same_labels(new, g)]
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
        )
        io.write(nwbfile)
    return labels


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
        column is matched through the Units column of that name when the file has one (NeuroConv /
        SpikeInterface exports keep the sorter's ids there). Keys missing from that column, or held
        by several units, are an error naming the rows.

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
    if in_place:
        target = src
        check_replaceable(src, allow_read_only=allow_read_only, allow_hard_links=allow_hard_links)
    else:
        target = Path(out) if out is not None else src.with_name(src.stem + ".labelled.nwb")
        if target.resolve() == src.resolve():
            raise OutputError(f"--out {target} is the source itself; use --in-place to modify it.")
        if target.exists() and not overwrite:
            raise OutputError(f"{target} exists; pass overwrite (--overwrite) or choose another --out.")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the folder of {target}: {exc}") from exc
    # one mechanism for every mode: a copy of the source, written and renamed under the target's lock
    with atomic_write(target, replace=in_place or overwrite, keep_mode_of=src if in_place else None) as work:
        shutil.copyfile(src, work)
        n = len(labels) if isinstance(labels, LabelTable) else 4096
        reserve_space(work, RESERVE_BASE_BYTES + RESERVE_PER_UNIT_BYTES * n)
        # under the lock: two runs adding labels to one file get ground_truth and ground_truth_2
        name = name if name is not None else free_table_name(work, kind)
        labels = _append_labels(work, src, labels, column, name, kind, mapping, ev_defaults, id_column)
    logger.info("wrote %d %s labels to %s (table %r)", len(labels), kind, target, name)
    return target
