"""Looking at the annotations of a file: tables for people (``show``) and per-unit figures with a
summary page (``report``). Reads files with h5py only, so any NWB file with ndx-celltype tables works."""

from __future__ import annotations

import html
import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np

from .errors import InvalidValueError, NotNWBError, SourceNotFoundError

logger = logging.getLogger(__name__)


def load_annotations(path: str | os.PathLike) -> dict:
    """All annotation tables of the NWB file at ``path`` (see :func:`nwb_celltype.nwb.read_annotations`)."""
    import h5py

    from .nwb import read_annotations

    p = Path(path)
    if not p.exists():
        raise SourceNotFoundError(f"{p} does not exist; give the path of an annotated NWB file")
    try:
        with h5py.File(p, "r") as f:
            return read_annotations(f)
    except OSError as exc:
        raise NotNWBError(f"{p} is not an HDF5 NWB file ({exc})") from exc


#: Confidence ratios above this print as ">1000": p(top1)/p(top2) explodes as p(top2) -> 0, and
#: 228824364466617.25 says no more than "certain" (the files and --json keep the exact value).
CONFIDENCE_CAP = 1000.0


def format_confidence(value: float) -> str:
    """A confidence ratio for people: two decimals, ``>1000`` above :data:`CONFIDENCE_CAP`, '' for NaN."""
    value = float(value)
    if not np.isfinite(value):
        return "" if np.isnan(value) else f">{CONFIDENCE_CAP:.0f}"
    return f">{CONFIDENCE_CAP:.0f}" if value > CONFIDENCE_CAP else f"{value:.2f}"


def format_annotations(records: dict, *, table: str | None = None, max_rows: int | None = None) -> str:
    """Plain-text rendering: per table, label counts then one row per unit."""
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
        out.append(f"== {name}  ({', '.join(kinds)}; {len(rec.labels)} units)")
        if clf:
            params = clf.get("parameters") if isinstance(clf.get("parameters"), dict) else {}
            bundle = str(params.get("bundle_sha256", ""))[:12]
            out.append(
                f"   classifier {clf.get('name', '')} version {clf.get('version', '')} "
                + (f"bundle sha256 {bundle}, " if bundle else "")
                + f"weights sha256 {str(clf.get('weights_sha256', ''))[:12]}; "
                f"threshold {clf.get('threshold', '')}"
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
        if n < len(rec.labels):
            out.append(f"   ... {len(rec.labels) - n} more unit rows (--max-rows to show more)")
    return "\n".join(out)


def write_report(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    table: str | None = None,
    max_units: int | None = None,
    progress: bool = False,
) -> Path:
    """Draw per-unit figures (waveform, 3D ACG heatmap, class probabilities) and a summary page.

    Features are recomputed from the file's units with the feature configuration the classifier
    recorded (C4 defaults where none). Returns the path of ``index.html``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .features import extract_features
    from .features.config import FeatureConfig
    from .io import open_source, read_units

    records = load_annotations(path)
    if not records:
        raise InvalidValueError(f"{path} holds no cell-type annotations; run `nwb-celltype annotate` first")
    name = table or next(iter(records))
    if name not in records:
        raise InvalidValueError(f"no annotation table {name!r}; the file has {sorted(records)}")
    rec = records[name]
    cfg_json = (rec.classifier or {}).get("feature_config") or ""
    config = FeatureConfig.from_json(cfg_json) if cfg_json else FeatureConfig()

    out = Path(out_dir)
    (out / "units").mkdir(parents=True, exist_ok=True)
    wanted = np.asarray(rec.unit_indices)
    if max_units is not None:
        wanted = wanted[:max_units]
    row_of = {int(u): i for i, u in enumerate(rec.unit_indices)}
    pages: list[str] = []
    with open_source(path) as src:
        for batch in read_units(src):
            keep = np.isin(batch.unit_indices, wanted)
            if not keep.any():
                continue
            fs = extract_features(batch, config)
            for j in np.flatnonzero(keep):
                i = row_of[int(batch.unit_indices[j])]
                fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
                ax = axes[0]
                if batch.waveforms is not None and np.isfinite(batch.waveforms[j]).any():
                    rate = batch.waveform_rate_hz or 30000.0
                    t_ms = np.arange(batch.waveforms.shape[1]) / rate * 1e3
                    ax.plot(t_ms, batch.waveforms[j], color="k")
                ax.set(title="peak-channel waveform", xlabel="time (ms)")
                ax = axes[1]
                ax.imshow(fs.acg[j], aspect="auto", origin="lower", cmap="viridis")
                ax.set(title="3D ACG (log lags)", xlabel="log-lag index", ylabel="rate quantile")
                ax = axes[2]
                if rec.probabilities is not None and np.isfinite(rec.probabilities[i]).all():
                    ax.bar(range(len(rec.classes)), rec.probabilities[i], color="tab:blue")
                ax.set_xticks(range(len(rec.classes)), rec.classes, rotation=30)
                ax.set(ylim=(0, 1), title=f"{rec.labels[i]} ({rec.status[i]})")
                fig.suptitle(f"unit {rec.unit_ids[i]}")
                fig.tight_layout()
                fname = f"units/unit_{int(rec.unit_ids[i])}.png"
                fig.savefig(out / fname, dpi=80)
                plt.close(fig)
                pages.append(
                    f'<div id="unit-{int(rec.unit_ids[i])}"><h3>unit {int(rec.unit_ids[i])}: '
                    f"{html.escape(str(rec.labels[i]))}</h3>"
                    f'<img src="{fname}" width="900"></div>'
                )
    counts = Counter(map(str, rec.labels))
    fig, ax = plt.subplots(figsize=(6, 3))
    labels = sorted(counts)
    ax.bar(labels, [counts[k] for k in labels])
    ax.set(title=f"{name}: label counts", ylabel="units")
    plt.setp(ax.get_xticklabels(), rotation=30)
    fig.tight_layout()
    fig.savefig(out / "summary.png", dpi=80)
    plt.close(fig)
    index = out / "index.html"
    index.write_text(
        "<html><head><meta charset='utf-8'><title>nwb-celltype report</title></head><body>"
        f"<h1>{html.escape(str(path))}</h1><h2>{html.escape(name)}</h2>"
        f"<pre>{html.escape(format_annotations({name: rec}, max_rows=0))}</pre>"
        '<img src="summary.png">' + units_html_table(rec) + "".join(pages) + "</body></html>"
    )
    return index


def units_html_table(rec) -> str:
    """Every unit of an annotation record as an HTML table row: id (linked to its figure, where
    drawn), label, status, confidence, probability of each class, reason."""
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
        rows.append(
            f'<tr><td><a href="#unit-{uid}">{uid}</a></td>'
            + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
            + "</tr>"
        )
    return (
        '<table border="1" cellspacing="0" cellpadding="3"><thead><tr>'
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )
