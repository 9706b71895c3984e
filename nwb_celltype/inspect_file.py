"""Looking at the annotations of a file: tables for people (``show``) and per-unit figures with a
summary page (``report``). Reads files with h5py only, so any NWB file with ndx-celltype tables works."""

from __future__ import annotations

import html
import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np

from .errors import InvalidValueError

logger = logging.getLogger(__name__)


#: what ``show`` adds for a provenance's ``species_coverage`` (annotate from model 1.7 on)
_COVERAGE_NOTES = {
    "not_trained": " (a species the model was not trained on: cross-species labels)",
    "unstated": "; species not stated (the model's species rule did not apply)",
}


def load_annotations(path: str | os.PathLike) -> dict:
    """All annotation tables of the NWB file at ``path`` (see :func:`nwb_celltype.nwb.read_annotations`)."""

    from ._files import open_nwb_h5
    from .nwb import read_annotations

    with open_nwb_h5(path, "the path of an annotated NWB file") as f:
        return read_annotations(f)


#: Confidence ratios above this print as ">1000": p(top1)/p(top2) explodes as p(top2) -> 0, and
#: 228824364466617.25 says no more than "certain" (the files and --json keep the exact value).
CONFIDENCE_CAP = 1000.0


def format_confidence(value: float) -> str:
    """A confidence ratio for people: two decimals, ``>1000`` above :data:`CONFIDENCE_CAP`, '' for NaN."""
    value = float(value)
    if not np.isfinite(value):
        return "" if np.isnan(value) else f">{CONFIDENCE_CAP:.0f}"
    return f">{CONFIDENCE_CAP:.0f}" if value > CONFIDENCE_CAP else f"{value:.2f}"


def format_annotations(
    records: dict, *, table: str | None = None, max_rows: int | None = None, more_rows_note: bool = True
) -> str:
    """Plain-text rendering: per table, label counts then one row per unit (at most ``max_rows``,
    then, with ``more_rows_note``, how many more `show --max-units` would print)."""
    if not records:
        return "no cell-type annotations in this file"
    if table is not None and table not in records:
        raise InvalidValueError(f"no annotation table {table!r}; the file has {sorted(records)}")
    out: list[str] = []
    for name, rec in records.items():
        if table is not None and name != table:
            continue
        clf = rec.classifier or {}
        kinds = sorted(set(map(str, rec.kinds)))
        of = getattr(rec, "units_table", "/units")
        out.append(
            f"== {name}  ({', '.join(kinds)}; {len(rec.labels)} units"
            + (f" of {of}" if of != "/units" else "")
            + ")"
        )
        if clf:
            params = clf.get("parameters") if isinstance(clf.get("parameters"), dict) else {}
            bundle = str(params.get("bundle_sha256", ""))[:12]
            out.append(
                f"   classifier {clf.get('name', '')} version {clf.get('version', '')} "
                + (f"bundle sha256 {bundle}, " if bundle else "")
                + f"weights sha256 {str(clf.get('weights_sha256', ''))[:12]}; "
                f"threshold {clf.get('threshold', '')}"
                + (
                    "; waveforms ignored (every unit scored from its discharge)"
                    if params.get("ignore_waveforms")
                    else ""
                )
                + (f"; units scored as {params['species']}" if params.get("species") else "")
                + _COVERAGE_NOTES.get(str(params.get("species_coverage", "")), "")
            )
        counts = Counter(map(str, rec.labels))
        width = max(len(k) for k in counts)
        out.append("   label counts:")
        for label, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            out.append(f"     {label:<{width}}  {n}")
        header = ["unit_id", "label", "status", "confidence", *rec.classes, "reason"]
        rows = []
        n = len(rec.labels) if max_rows is None else min(max_rows, len(rec.labels))
        for i in range(n):
            probs = (
                [f"{p:.3f}" for p in rec.probabilities[i]]
                if rec.probabilities is not None
                else [""] * len(rec.classes)
            )
            conf = "" if rec.confidence is None else format_confidence(rec.confidence[i])
            rows.append(
                [
                    str(rec.unit_ids[i]),
                    str(rec.labels[i]),
                    str(rec.status[i]),
                    conf,
                    *probs,
                    str(rec.reasons[i]),
                ]
            )
        if rows:
            widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(header)]
            out.append("   " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
            for r in rows:
                out.append("   " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        if n < len(rec.labels) and more_rows_note:
            out.append(f"   ... {len(rec.labels) - n} more unit rows (--max-units to show more)")
    return "\n".join(out)


def write_report(path: str | os.PathLike, out_dir: str | os.PathLike, **kwargs) -> Path:
    """Per-unit figures and a summary page; see :func:`nwb_celltype.report.write_report`."""
    from .report import write_report as _write

    return _write(path, out_dir, **kwargs)


def figure_stem(rec, i: int) -> str:
    """Name of unit row ``i``'s report figure: ``unit_<id>``, with ``_row<row>`` where ids repeat
    (a file with one id for two units must not draw both into one file)."""
    uid = int(rec.unit_ids[i])
    repeated = int((np.asarray(rec.unit_ids) == uid).sum()) > 1
    return f"unit_{uid}_row{int(rec.unit_indices[i])}" if repeated else f"unit_{uid}"


def units_html_table(rec, drawn=None) -> str:
    """Every unit of an annotation record as an HTML table row: id (linked to its figure, where
    drawn: ``drawn`` (n,) bool, default every unit), label, status, confidence, probability of each
    class, reason."""
    head = ["unit id", "label", "status", "confidence", *rec.classes, "reason"]
    rows = []
    for i in range(len(rec.labels)):
        uid = int(rec.unit_ids[i])
        probs = (
            [f"{p:.3f}" if np.isfinite(p) else "" for p in rec.probabilities[i]]
            if rec.probabilities is not None
            else [""] * len(rec.classes)
        )
        conf = "" if rec.confidence is None else format_confidence(rec.confidence[i])
        cells = [str(rec.labels[i]), str(rec.status[i]), conf, *probs, str(rec.reasons[i])]
        link = drawn is None or bool(drawn[i])
        anchor = f'<a href="#{figure_stem(rec, i).replace("_", "-")}">{uid}</a>' if link else str(uid)
        rows.append(f"<tr><td>{anchor}</td>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return (
        '<table border="1" cellspacing="0" cellpadding="3"><thead><tr>'
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )
