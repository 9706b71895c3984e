"""``nwb-celltype report``: per-unit figures (waveform in µV over ms, 3D ACG over lags in ms with a
colour bar in Hz, class probabilities, or the reason a unit could not be classified) and a summary
page with every unit's row.

Speed: one figure is built once and its artists are updated for each unit (no new figure, no
layout pass per unit); the units are split over a small process pool. See docs/performance.md.
"""

from __future__ import annotations

import html
import logging
import multiprocessing
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ._atomic import atomic_folder, atomic_write
from ._atomic_files import write_figure, write_text_file
from .errors import InvalidValueError
from .inspect_file import figure_stem

logger = logging.getLogger(__name__)

#: Below this many units one process draws them all: a spawned worker's start-up (importing the
#: NWB stack and matplotlib, ~3 s on 2 shared cores) costs more than it saves at ~0.06 s per unit.
POOL_MIN_UNITS = 200
#: What a report folder holds (:func:`nwb_celltype._atomic.atomic_folder` patterns): it is replaced
#: as a whole, and a folder holding anything else is refused.
REPORT_FILES = ("index.html", "summary.png", "units", "units/unit_*.png")
#: Figure size (inches) and resolution of the per-unit figures.
FIGSIZE = (12.0, 3.2)
DPI = 80


def _microvolts(w: np.ndarray) -> np.ndarray:
    """NWB stores waveform_mean in volts; files that wrote µV (values far above 1 V) pass as is."""
    finite = np.abs(w[np.isfinite(w)])
    return w * 1e6 if finite.size and finite.max() < 0.05 else w


#: Waveform half-ranges (µV) and colour-bar tops (Hz) the figures snap to: a handful of panel
#: backgrounds (axes, ticks, labels) is drawn once each and reused, so a unit costs only its data.
WAVE_SCALES_UV = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)
RATE_SCALES_HZ = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


def _snap(value: float, scales) -> float:
    return next((s for s in scales if s >= value), scales[-1])


#: Time span (ms) of the waveform panel of a unit without a usable waveform (~75 samples at 30 kHz).
NO_WAVE_SPAN_MS = (0.0, 2.5)
#: Characters per line (and lines at most) of the reasons written in the ACG and probability panels:
#: what fits their width at the figure's size, so no reason runs past a panel or off the figure.
NOTE_WIDTH = {"acg": 34, "prob": 30}
NOTE_LINES = 7


def _wrap(text: str, width: int, max_lines: int = NOTE_LINES) -> str:
    """``text`` broken into lines of at most ``width`` characters (its own line breaks kept), at most
    ``max_lines`` of them (the last ending in "…" when cut)."""
    import textwrap

    lines = [w for part in text.split("\n") for w in (textwrap.wrap(part, width) or [""])]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: width - 1].rstrip() + "…"
    return "\n".join(lines)


class _UnitFigure:
    """One reusable figure: waveform, 3D ACG heatmap with colour bar, class probabilities.

    Drawing a full figure costs ~0.3 s (text layout of every tick label); here the static parts are
    drawn once per waveform scale / colour scale and blitted, and only the data artists and titles
    are drawn per unit."""

    def __init__(self, classes: list[str], lags_ms: np.ndarray, rate_bins: int, hz_per_unit: float):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.hz_per_unit = hz_per_unit
        self.fig = fig = Figure(figsize=FIGSIZE, dpi=DPI)  # no pyplot: no global figure registry
        self.canvas = FigureCanvasAgg(fig)
        ax_w = fig.add_axes((0.085, 0.17, 0.215, 0.66))
        ax_a = fig.add_axes((0.37, 0.17, 0.24, 0.66))
        ax_c = fig.add_axes((0.62, 0.17, 0.01, 0.66))
        ax_p = fig.add_axes((0.77, 0.17, 0.21, 0.66))
        (self.wave,) = ax_w.plot([], [], color="k", lw=1.2)
        ax_w.set(title="peak-channel mean waveform", xlabel="time (ms)", ylabel="µV", xlim=NO_WAVE_SPAN_MS)
        self.wave_note = ax_w.text(0.5, 0.5, "", ha="center", va="center", transform=ax_w.transAxes)
        edges = np.sqrt(lags_ms[1:] * lags_ms[:-1])
        edges = np.concatenate([[lags_ms[0] ** 2 / edges[0]], edges, [lags_ms[-1] ** 2 / edges[-1]]])
        self.mesh = ax_a.pcolormesh(
            edges, np.arange(rate_bins + 1) + 0.5, np.zeros((rate_bins, len(lags_ms))), cmap="viridis"
        )
        ax_a.set_xscale("log")
        ax_a.set(
            title="3D autocorrelogram",
            xlabel="lag (ms)",
            ylabel="firing-rate bin (low → high)",
            xlim=(edges[0], edges[-1]),
        )
        fig.colorbar(self.mesh, cax=ax_c).set_label("rate (Hz)")
        self.acg_note = ax_a.text(
            0.5, 0.5, "", ha="center", va="center", transform=ax_a.transAxes, fontsize=9
        )
        self.bars = list(ax_p.bar(range(len(classes)), np.zeros(len(classes)), color="tab:blue"))
        ax_p.set_xticks(range(len(classes)), classes, rotation=30)
        ax_p.set(ylim=(0, 1), ylabel="probability")
        self.prob_title = ax_p.set_title("")
        self.prob_note = ax_p.text(
            0.5, 0.5, "", ha="center", va="center", transform=ax_p.transAxes, fontsize=9
        )
        self.suptitle = fig.suptitle("")
        self.dynamic = [
            self.wave,
            self.wave_note,
            self.mesh,
            self.acg_note,
            *self.bars,
            self.prob_title,
            self.prob_note,
            self.suptitle,
        ]
        for a in self.dynamic:
            a.set_animated(True)
        self.ax_w, self.ax_a, self.ax_c = ax_w, ax_a, ax_c
        # the static figure with both scale-dependent panels blank
        self.panel_axes = {"wave": ax_w, "rate": ax_c}
        for ax in self.panel_axes.values():
            ax.set_visible(False)
        self.canvas.draw()
        self.base = self.canvas.copy_from_bbox(fig.bbox)
        for ax in self.panel_axes.values():
            ax.set_visible(True)
        self.wave_bg: dict[tuple, object] = {}
        self.rate_bg: dict[float, object] = {}

    #: Figure-width fractions of the two scale-dependent panels (waveform with its y ticks; colour
    #: bar with its ticks and label): restored whole, so no tick label of another scale survives.
    PANELS = {"wave": (0.0, 0.325), "rate": (0.612, 0.735)}

    def _panel(self, cache: dict, key: float, which: str, setter):
        """The bitmap of a panel with its ticks and labels at scale ``key`` (drawn once per key)."""
        from matplotlib.transforms import Bbox

        if key not in cache:
            # only this panel's axes (ticks, labels; not the animated data) on the blank base
            setter(key)
            self.canvas.restore_region(self.base)
            self.fig.draw_artist(self.panel_axes[which])
            x0, x1 = self.PANELS[which]
            w, h = self.fig.bbox.width, self.fig.bbox.height
            cache[key] = self.canvas.copy_from_bbox(Bbox.from_extents(x0 * w, 0, x1 * w, h))
        return cache[key]

    def _wave_limits(self, key: tuple[float, float, float]) -> None:
        half, t0, t1 = key
        self.ax_w.set(ylim=(-half, half), xlim=(t0, t1))

    def draw(self, path: Path, *, title, label, status, reason, t_ms, wave_uv, acg, probs) -> None:
        from PIL import Image

        has_wave = wave_uv is not None and np.isfinite(wave_uv).any()
        half = _snap(1.1 * float(np.nanmax(np.abs(wave_uv))), WAVE_SCALES_UV) if has_wave else 100
        classifiable = status != "not_classifiable" and acg is not None and np.isfinite(acg).all()
        hz = acg * self.hz_per_unit if classifiable else None
        top = _snap(float(hz.max()), RATE_SCALES_HZ) if classifiable else 100
        # a fixed span without a waveform (not the previous unit's, nor matplotlib's -0.05..0.05)
        span = (float(t_ms[0]), float(t_ms[-1])) if has_wave else NO_WAVE_SPAN_MS
        wave_bg = self._panel(self.wave_bg, (half, *span), "wave", self._wave_limits)
        rate_bg = self._panel(self.rate_bg, top, "rate", lambda k: self.mesh.set_clim(0, k))
        self.canvas.restore_region(self.base)
        self.canvas.restore_region(wave_bg)
        self.canvas.restore_region(rate_bg)
        self._wave_limits((half, *span))
        self.mesh.set_clim(0, top)

        self.suptitle.set_text(title)
        if has_wave:
            self.wave.set_data(t_ms, wave_uv)
        self.wave.set_visible(has_wave)
        self.wave_note.set_text("" if has_wave else "no waveform")
        self.mesh.set_visible(classifiable)
        if classifiable:
            self.mesh.set_array(hz.ravel())
        self.acg_note.set_text(
            ""
            if classifiable
            else _wrap(f"not classifiable:\n{reason or 'no usable features'}", NOTE_WIDTH["acg"])
        )
        ok = probs is not None and np.isfinite(probs).all()
        for bar, p in zip(self.bars, probs if ok else np.zeros(len(self.bars)), strict=True):
            bar.set_height(float(p))
        self.prob_note.set_text("" if ok else _wrap(reason or "no probabilities", NOTE_WIDTH["prob"]))
        self.prob_title.set_text(f"{label} ({status})")
        for a in self.dynamic:
            self.fig.draw_artist(a)
        # RGB (the figure is opaque) at low compression: encoding is the largest per-unit cost left
        rgb = np.ascontiguousarray(np.asarray(self.canvas.buffer_rgba())[..., :3])
        with atomic_write(path, replace=True, lock=False) as tmp:
            Image.fromarray(rgb).save(tmp, format="PNG", compress_level=1)


def _draw_units(job: dict) -> int:
    """Draw the units of one job (a worker's share) into ``job['out']``; returns how many."""
    fig = _UnitFigure(job["classes"], job["lags_ms"], job["rate_bins"], job["hz_per_unit"])
    for u in job["units"]:
        fig.draw(job["out"] / u.pop("file"), **u)
    return len(job["units"])


def _unit_jobs(path, rec, config, wanted: np.ndarray, out: Path) -> list[dict]:
    """Per-unit drawing inputs (waveform in µV, log ACG, probabilities, texts) read in batches."""
    from .features import extract_features
    from .io import open_source, read_units

    row_of = {int(u): i for i, u in enumerate(rec.unit_indices)}
    units = []
    # the local file load_annotations read: a Path, never a DANDI reference (an annotate-dandiset
    # --out named 000409 holds 000409/sub-1/...)
    with open_source(Path(path)) as src:
        for batch in read_units(src, require_waveforms=False, units_table=rec.units_table):
            keep = np.isin(batch.unit_indices, wanted)
            if not keep.any():
                continue
            fs = extract_features(batch, config)
            rate = batch.waveform_rate_hz or 30000.0
            for j in np.flatnonzero(keep):
                i = row_of[int(batch.unit_indices[j])]
                wave = None if batch.waveforms is None else _microvolts(np.asarray(batch.waveforms[j], float))
                uid = int(rec.unit_ids[i])
                units.append(
                    {
                        "file": f"units/{figure_stem(rec, i)}.png",
                        "title": f"unit {uid}",
                        "label": str(rec.labels[i]),
                        "status": str(rec.status[i]),
                        "reason": str(rec.reasons[i]),
                        "t_ms": None if wave is None else np.arange(len(wave)) / rate * 1e3,
                        "wave_uv": wave,
                        "acg": np.asarray(fs.acg[j][:, 1:], dtype=np.float64),
                        "probs": None if rec.probabilities is None else rec.probabilities[i],
                    }
                )
    return units


def _display_config(cfg_json: str):
    """The C4 (3D ACG) configuration the figures are drawn with: the classifier's own when it read
    C4 features, else C4's defaults (a model of another family, e.g. the default acg-isi-wave one,
    records a configuration the 3D ACG cannot use; the heatmap is a display, not its input)."""
    import json

    from .features.config import FeatureConfig

    if not cfg_json:
        return FeatureConfig()
    try:
        d = json.loads(cfg_json)
    except ValueError as exc:
        raise InvalidValueError(f"the annotation's feature_config is not valid JSON ({exc})") from exc
    if not isinstance(d, dict) or d.get("family", FeatureConfig.family) != FeatureConfig.family:
        return FeatureConfig()
    return FeatureConfig.from_dict(d)


def default_table(path, records: dict) -> str:
    """The table a report shows by default: the one filling the plain ``cell_type`` Units column,
    else the first prediction table, else the first table."""
    from .bridges import plain_owner

    owner = plain_owner(Path(path))
    if owner in records:
        return owner
    return next((n for n, r in records.items() if r.kind == "prediction"), next(iter(records)))


def write_report(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    table: str | None = None,
    max_units: int | None = None,
    progress: bool = False,
    workers: int | None = None,
) -> Path:
    """Draw per-unit figures and a summary page (``out_dir/index.html``) of an annotated file.

    The 3D ACG is recomputed from the file's units with the feature configuration the classifier
    recorded when it read C4 (3D ACG) features, else with C4's defaults.

    Parameters
    ----------
    path : path
        Annotated NWB file.
    out_dir : path
        Folder for ``index.html``, ``summary.png`` and ``units/unit_<id>.png``. It is written whole
        or not at all (:func:`nwb_celltype._atomic.atomic_folder`): the report is drawn into a new
        folder beside it, which replaces an earlier report only once complete (figures of units
        the earlier one drew and this one does not go with it). A folder holding files other than a
        report's is refused (:class:`~nwb_celltype.errors.OutputError`), since they would go too.
    table : str, optional
        Annotation table to draw (default: :func:`default_table`).
    max_units : int, optional
        Draw at most this many units (the page still lists every unit).
    progress : bool
        Show a progress bar.
    workers : int, optional
        Processes drawing figures (default: 2 from :data:`POOL_MIN_UNITS` units on, else 1).
    """
    from .inspect_file import load_annotations

    records = load_annotations(path)
    if not records:
        raise InvalidValueError(f"{path} holds no cell-type annotations; run `nwb-celltype annotate` first")
    name = table or default_table(path, records)
    if name not in records:
        raise InvalidValueError(f"no annotation table {name!r}; the file has {sorted(records)}")
    rec = records[name]
    config = _display_config((rec.classifier or {}).get("feature_config") or "")

    out = Path(out_dir)
    with atomic_folder(out, replace=True, owned=REPORT_FILES, what="a report") as tmp:
        _write_report_files(path, tmp, records, name, rec, config, max_units, progress, workers)
    return out / "index.html"


def _write_report_files(path, out: Path, records: dict, name: str, rec, config, max_units, progress, workers):
    """Every file of the report into the (new, empty) folder ``out``."""
    from tqdm.auto import tqdm

    from .agreement import agreements, format_agreement
    from .features._geometry import log_geometry
    from .inspect_file import format_annotations, units_html_table

    (out / "units").mkdir()
    wanted = np.asarray(rec.unit_indices)
    if max_units is not None:
        wanted = wanted[:max_units]
    units = _unit_jobs(path, rec, config, wanted, out)
    base = {
        "classes": list(rec.classes),
        "lags_ms": np.asarray(log_geometry(config).log_lags_ms, dtype=np.float64),
        "rate_bins": int(config.acg_rate_bins),
        # the log ACG is P(spike in a bin) x acg_scale: Hz = value / scale / bin (s)
        "hz_per_unit": 1.0 / config.acg_scale / (config.acg_bin_ms / 1e3),
        "out": out,
    }
    n_workers = workers or (min(2, os.cpu_count() or 1) if len(units) >= POOL_MIN_UNITS else 1)
    shares = [units[k::n_workers] for k in range(n_workers)] if units else []
    bar = tqdm(total=len(units), unit="unit", desc="report", disable=not progress, leave=False)
    if n_workers <= 1:
        for share in shares:
            bar.update(_draw_units({**base, "units": share}))
    else:
        # spawn, not fork: the parent runs JAX, whose threads make fork unsafe
        with ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for n in pool.map(_draw_units, [{**base, "units": s} for s in shares]):
                bar.update(n)
    bar.close()
    drawn = np.isin(rec.unit_indices, wanted)
    _summary_figure(rec, name, out / "summary.png")
    pages = [
        f'<div id="{figure_stem(rec, i).replace("_", "-")}"><h3>unit {uid}: {html.escape(str(lab))}</h3>'
        f'<img src="units/{figure_stem(rec, i)}.png" width="960"></div>'
        for i, (uid, lab) in enumerate(zip(rec.unit_ids.tolist(), rec.labels, strict=True))
        if drawn[i]
    ]
    # against the labels the file already holds (ground truth, expert), as `show` prints it
    agreed = "".join(
        f"<pre>{html.escape(format_agreement(a))}</pre>" for a in agreements(records) if a.prediction == name
    )
    write_text_file(
        out / "index.html",
        "<html><head><meta charset='utf-8'><title>nwb-celltype report</title></head><body>"
        f"<h1>{html.escape(str(path))}</h1><h2>{html.escape(name)}</h2>"
        # the page's table lists every unit: no "more unit rows (--max-units ...)" note, which would
        # point at show's option (report's --max-units limits the figures)
        f"<pre>{html.escape(format_annotations({name: rec}, max_rows=0, more_rows_note=False))}</pre>"
        + agreed
        + '<img src="summary.png">'
        + (
            f"<p>Figures of the first {int(drawn.sum())} of {len(drawn)} units (--max-units); the others "
            "are listed without a link.</p>"
            if not drawn.all()
            else ""
        )
        + units_html_table(rec, drawn)
        + "".join(pages)
        + "</body></html>",
    )


def _summary_figure(rec, name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = Counter(map(str, rec.labels))
    fig, ax = plt.subplots(figsize=(6, 3))
    labels = sorted(counts)
    ax.bar(labels, [counts[k] for k in labels])
    ax.set(title=f"{name}: label counts", ylabel="units")
    plt.setp(ax.get_xticklabels(), rotation=30)
    fig.tight_layout()
    write_figure(fig, path, dpi=DPI)
    plt.close(fig)
