"""Reading the CSV files of a feature-table folder (:mod:`.tables`): rows split only at real
line breaks, numeric tables with the delimiter and the cell at fault named, and the labels
(``labels.csv`` or ``units.csv``) with their line numbers, padding stripped and near-miss
spellings named."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from ..errors import LibraryError

logger = logging.getLogger("nwb_celltype.library.tables")

#: labels a table may carry: the C4 classes, non-C4 cerebellar types (kept as ground truth for
#: abstention tests) and "unlabeled" (used for pre-training only)
TABLE_LABELS = ("PkC_ss", "PkC_cs", "MLI", "GoC", "MFB", "GrC", "UBC", "PC_layer_other", "unlabeled")
UNLABELLED = "unlabeled"


def _csv_rows(path: Path):
    """Every row of a CSV file with its line number (a BOM, Excel's "CSV UTF-8", dropped), read as
    it is iterated; our errors for text that is not UTF-8, an unreadable file and an empty one."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            empty = True
            reader = csv.reader(f)
            for row in reader:
                empty = False
                yield reader.line_num, row
    except UnicodeDecodeError as exc:
        raise LibraryError(f"{path} is not UTF-8 text ({exc}); save the table as UTF-8 CSV.") from exc
    except OSError as exc:
        raise LibraryError(f"cannot read {path}: {exc}") from exc
    if empty:
        raise LibraryError(f"{path} is empty; expected a header row and one row per unit.")


def _read_csv_lines(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """(header, data rows, each data row's line number in the file); blank lines skipped."""
    rows = list(_csv_rows(path))
    data = [(n, r) for n, r in rows[1:] if r]
    return rows[0][1], [r for _, r in data], [n for n, _ in data]


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    header, rows, _ = _read_csv_lines(path)
    return header, rows


def _count_rows(path: Path) -> int:
    """Data rows of a CSV as :func:`_read_csv` counts them (blank lines skipped), without keeping them."""
    rows = _csv_rows(path)
    next(rows)  # the header
    return sum(1 for _, r in rows if r)


def _text_column(path: Path, table: tuple, name: str) -> np.ndarray:
    """The cells of the header column ``name`` of the CSV ``table`` (:func:`_read_csv_lines` of
    ``path``), as object; a row too short to hold one is an error naming the file and line."""
    header, rows, lines = table
    j = header.index(name)
    for r, line in zip(rows, lines, strict=True):
        if len(r) <= j:
            raise LibraryError(
                f"{path}:{line}: the row ({','.join(r)[:40]}) has {len(r)} value(s) but the header has "
                f"{len(header)} columns ({','.join(header)[:60]}): no {name!r} cell; every row needs "
                "one value per header column."
            )
    return np.array([r[j] for r in rows], dtype=object)


def _numeric_table(path: Path, expected_columns: list[int] | None) -> np.ndarray:
    """A numeric CSV as (rows, columns) float64, checking the header against ``expected_columns``."""
    header, rows = _read_csv(path)
    sep = next((c for c in ";\t" if len(header) == 1 and c in header[0]), None)
    hint = f" The values are separated by {sep!r}, not commas." if sep else ""
    if expected_columns is not None:
        try:
            got = [int(round(float(h))) for h in header]
        except ValueError:
            got = None
        if got != expected_columns:
            raise LibraryError(
                f"{path}: expected {len(expected_columns)} columns named {expected_columns[0]}.."
                f"{expected_columns[-1]} (ms), got {len(header)} columns "
                f"({', '.join(h[:12] for h in header[:3])}, ...).{hint} Check the table's layout "
                "(docs/library.md)."
            )
    elif sep:
        raise LibraryError(
            f"{path}: the header is read as one column ({header[0][:24]}...).{hint} Save the table "
            "comma-separated (CSV, docs/library.md)."
        )
    elif _looks_numeric(header):
        raise LibraryError(
            f"{path}: its first row ({', '.join(header[:3])}, ...) is numbers, not a header; add a header "
            "row (e.g. the sample index 0, 1, 2, ...) above the first unit's row."
        )
    for i, r in enumerate(rows):
        if len(r) != len(header):
            raise LibraryError(
                f"{path}: row {i + 1} has {len(r)} values but the header has {len(header)} columns."
            )
    try:
        arr = np.array(rows, dtype=np.float64).reshape(len(rows), len(header))
    except ValueError:
        i, j, cell = _first_non_numeric(rows)
        raise LibraryError(
            f"{path}: row {i + 1}, column {j + 1} ({header[j]!r}) holds {cell!r}, not a number; every "
            "cell must be a number."
        ) from None
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise LibraryError(f"{path}: row {bad + 1} has NaN or infinite values.")
    return arr


def _looks_numeric(header: list[str]) -> bool:
    """Whether a header row is all numbers with a fractional or large value (a unit's data row
    rather than sample or lag names)."""
    try:
        vals = [float(h) for h in header]
    except ValueError:
        return False
    return bool(vals) and any(v != round(v) or abs(v) > 1e4 for v in vals)


def _first_non_numeric(rows: list[list[str]]) -> tuple[int, int, str]:
    for i, r in enumerate(rows):
        for j, cell in enumerate(r):
            try:
                float(cell)
            except ValueError:
                return i, j, cell
    return 0, 0, ""


def _read_label_lines(path: Path) -> tuple[tuple[list[str], list[list[str]], list[int]], list[int]]:
    """(:func:`_read_csv_lines` of labels.csv / units.csv, the lines of its blank data lines). Their
    rows are aligned with the feature tables': a blank line between rows (an empty label, in
    one-column labels.csv) is an error (:func:`_refuse_blank_lines`), not skipped, which would shift
    every later label onto the next unit. Blank lines after the last row are ignored."""
    rows = list(_csv_rows(path))
    data = rows[1:]
    while data and not data[-1][1]:
        data.pop()
    blank = [n for n, r in data if not r]
    data = [(n, r) for n, r in data if r]
    return (rows[0][1], [r for _, r in data], [n for n, _ in data]), blank


def _refuse_blank_lines(path: Path, blank: list[int]) -> None:
    if blank:
        raise LibraryError(
            f"{path}:{blank[0]}: the line is blank (an empty label?){_more(blank)}; each line is one "
            "unit, aligned with the other tables: write 'unlabeled' for a unit without ground truth, "
            "or delete the line if it is no unit."
        )


def _more(lines: list) -> str:
    """ ", and 2 more line(s) (7, 9)" for the lines after the first one named."""
    if len(lines) < 2:
        return ""
    shown = ", ".join(map(str, lines[1:6])) + (" ..." if len(lines) > 6 else "")
    return f", and {len(lines) - 1} more line(s) ({shown})"


def _label_column(path: Path, table: tuple, required: bool) -> np.ndarray:
    """The ``label`` cells of labels.csv / units.csv, stripped of surrounding whitespace; an empty
    one is an error naming its line when labels are ``required``, else read as unlabeled."""
    labels = np.array([str(x).strip() for x in _text_column(path, table, "label")], dtype=object)
    empty = [table[2][i] for i in np.flatnonzero(labels == "")]
    if empty and required:
        raise LibraryError(
            f"{path}:{empty[0]}: empty label{_more(empty)}; write 'unlabeled' for a unit without "
            "ground truth."
        )
    labels[labels == ""] = UNLABELLED
    return labels


def _label_hint(label: str) -> str:
    """The label of :data:`TABLE_LABELS` that ``label`` may mean (a case variant first), as
    ``"'GoC' for 'goc'"``, or "" when none is close."""
    import difflib

    same = [x for x in TABLE_LABELS if x.lower() == label.lower()]
    near = same or difflib.get_close_matches(label, TABLE_LABELS, n=1)
    return f"{near[0]!r} for {label!r}" if near else ""


def _read_labels(folder: Path, required: bool = True) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(labels, neuron ids) from labels.csv and/or units.csv; they must agree where both exist.
    Labels are stripped of surrounding whitespace. Without ``required`` (classifying, not training)
    a folder without labels gives (None, ids or None), and labels outside :data:`TABLE_LABELS` are
    read as unlabeled (compared with nothing; a warning names them)."""
    labels = ids = None
    if (folder / "units.csv").exists():
        table, blank = _read_label_lines(folder / "units.csv")
        header = table[0]
        if "label" not in header and (required or "neuron_id" not in header):
            raise LibraryError(f"{folder / 'units.csv'} has no 'label' column (columns: {header}).")
        if "neuron_id" in header:
            ids = np.array(
                [str(x).strip() for x in _text_column(folder / "units.csv", table, "neuron_id")], dtype=object
            )
        if "label" in header:
            _text_column(folder / "units.csv", table, "label")  # a short row named before a blank line
        _refuse_blank_lines(folder / "units.csv", blank)
        if "label" in header:
            labels = _label_column(folder / "units.csv", table, required)
    if (folder / "labels.csv").exists():
        table, blank = _read_label_lines(folder / "labels.csv")
        if "label" not in table[0]:
            raise LibraryError(f"{folder / 'labels.csv'} has no 'label' column (columns: {table[0]}).")
        _text_column(folder / "labels.csv", table, "label")
        _refuse_blank_lines(folder / "labels.csv", blank)
        lab2 = _label_column(folder / "labels.csv", table, required)
        if labels is not None and len(lab2) != len(labels):
            raise LibraryError(
                f"{folder}: labels.csv has {len(lab2)} rows and units.csv {len(labels)}; rows must be "
                "aligned across files."
            )
        if labels is not None and (lab2 != labels).any():
            i = int(np.flatnonzero(lab2 != labels)[0])
            raise LibraryError(
                f"{folder}: labels.csv and units.csv disagree first at row {i + 1} ({lab2[i]!r} vs "
                f"{labels[i]!r}); rows must be aligned across files, with the same labels."
            )
        labels = lab2
    if ids is not None:
        _check_unique_ids(folder, ids)
    if labels is None:
        if not required:
            return None, ids
        raise LibraryError(f"{folder} has neither labels.csv nor units.csv: one gives each row's label.")
    unknown = sorted(set(labels) - set(TABLE_LABELS))
    hints = [h for h in (_label_hint(x) for x in unknown) if h]
    if len(unknown) == 1 and hints:
        hints = [hints[0].split(" for ")[0]]  # "did you mean 'GoC'?"
    named = f"{unknown}" + (f" (did you mean {', '.join(hints)}?)" if hints else "")
    if unknown and not required:
        logger.warning("%s: labels %s are not in the tables' vocabulary; read as unlabeled", folder, named)
        labels = np.array([x if x in TABLE_LABELS else UNLABELLED for x in labels], dtype=object)
    elif unknown:
        raise LibraryError(
            f"{folder}: unknown labels {named}; allowed: {list(TABLE_LABELS)}. Rename them, or use "
            "'unlabeled' for units without ground truth."
        )
    if ids is None:
        ids = np.array([f"{folder.name}_{i}" for i in range(len(labels))], dtype=object)
    return labels, ids


def _check_unique_ids(folder: Path, ids: np.ndarray) -> None:
    """Refuse repeated neuron ids: one unit twice could sit on both sides of a cross-validation."""
    values, counts = np.unique(ids.astype(str), return_counts=True)
    if (counts > 1).any():
        rep = [f"{v} (x{c})" for v, c in zip(values[counts > 1], counts[counts > 1], strict=True)]
        raise LibraryError(
            f"{folder}/units.csv: neuron_id {', '.join(rep[:5])}{' ...' if len(rep) > 5 else ''} "
            "are repeated; each row must be another unit (remove the repeated rows)."
        )
