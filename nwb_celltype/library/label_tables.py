"""Ground-truth label tables as files: a CSV/TSV keyed by unit id, phy ``cluster_id`` or
``unit_name``, read and checked (vocabulary, evidence, ISO 8601 dates, repeated or conflicting rows,
the delimiter its suffix implies) into a :class:`LabelTable`. Writing them into an NWB file is
:mod:`.labels`."""

from __future__ import annotations

import csv
import difflib
import io
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np

from ..errors import LibraryError, SourceNotFoundError
from ..vocabulary import EVIDENCE_TYPES
from ._annotations import EVIDENCE_FIELDS, LABEL_VOCABULARY

logger = logging.getLogger(__name__)

#: Column names accepted for the unit key, in order of preference.
UNIT_COLUMNS: tuple[str, ...] = ("unit_id", "id", "cluster_id", "unit", "unit_name")
#: Key columns of a label table that refer to the Units column of the same name (NeuroConv /
#: SpikeInterface exports keep the sorter's ids there, the NWB ids are 0..n-1); a file without that
#: column needs ``id_column`` (the keys are never assumed to be the NWB ids).
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


def _checked_defaults(defaults: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The option defaults with ``labelled_at`` as ISO 8601, and the problems of a bad
    ``evidence_type`` / ``labelled_at`` option value (each named once, as the option's value)."""
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
    return defaults, problems


def _mapped_labels(
    raw_labels: list[str], rows: list[str], mapping: dict[str, str]
) -> tuple[list[str], list[int], list[str]]:
    """The file's labels in our vocabulary: (labels, the row index of each, problems). Rows mapped
    (or left) empty are not labelled; labels outside the vocabulary are a problem naming their rows."""
    labels, keep = [], []
    unknown, problems = [], []
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
    return labels, keep, problems


def _row_evidence(
    keep: list[int], rows: list[str], evidence_rows: dict[str, list[str]], defaults: dict[str, str]
) -> tuple[dict[str, list[str]], list[str]]:
    """The evidence of each kept row (its own value, else the option default; ``labelled_at`` as
    ISO 8601) and its problems: evidence type missing or unknown, no labeller, dates not ISO 8601."""
    problems = []
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
    return ev, problems


def _without_repeats(unit_ids: list, labels: list[str], rows: list[str], keep: list[int]) -> list[int]:
    """Positions (into ``keep``) of the first label of each unit: identical repeats collapse,
    conflicting ones are an error naming both rows."""
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
    return [j for j in range(len(keep)) if j not in drop]


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
    defaults, problems = _checked_defaults(defaults)
    labels, keep, label_problems = _mapped_labels(raw_labels, rows, mapping)
    ev, evidence_problems = _row_evidence(keep, rows, evidence_rows, defaults)
    problems += label_problems + evidence_problems
    if problems:
        # every problem at once, so that one corrected command runs
        raise LibraryError(f"{len(problems)} problem(s): " + "; ".join(problems) + ".")
    sel = _without_repeats(unit_ids, labels, rows, keep)
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
        # the first physical line: str.splitlines would also split at U+2028, \x0c, \x85 ...
        first = text.split("\n", 1)[0].rstrip("\r")
        try:
            delim = csv.Sniffer().sniff(first, delimiters=",\t;").delimiter
        except csv.Error:
            delim = ","
    records = _csv_records(path, text, delim)
    header = [h.strip() for h in (records[0][1] if records else [])]
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
    for line_no, cells in records[1:]:
        rec = dict(zip(header, cells, strict=False))  # a short row's missing cells read as empty
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


def _csv_records(path: Path, text: str, delim: str) -> list[tuple[int, list[str]]]:
    """The non-blank records of ``text`` with the line each starts on. Records end only at a
    newline (\\n, \\r\\n or \\r) outside quotes: a quoted cell keeps its newlines, and U+2028,
    form feeds and the like are text, not line breaks (as :meth:`str.splitlines` would have them)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    out, prev = [], 0
    try:
        for cells in reader:
            if cells:  # a blank line is no record
                out.append((prev + 1, cells))
            prev = reader.line_num
    except csv.Error as exc:
        raise LibraryError(f"{path}:{prev + 1}: not readable as CSV ({exc}).") from None
    return out


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
