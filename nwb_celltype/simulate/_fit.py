"""Fit the simulator to real identified cerebellar units and write the parameter file it ships.

Reads the per-unit tables of the real-c4 folder (``--data``, default
:func:`nwb_celltype.testing.real_data.real_c4_dir`; layout in its README: the C4
database's Hull, Lisberger and Hausser units as published by the HIPPIE benchmark release) and
writes ``nwb_celltype/simulate/fitted_params.json``: for every species preset and class, one row of
discharge parameters per real unit (the closed-form model of ``_model.py`` fitted to the unit's ACG
and ISI tables) and one set of waveform phases per real unit (a sum of Gaussians fitted to its
aligned peak-channel waveform). The simulator draws a unit by picking one fitted row at random and
jittering it, so that the simulated classes spread across units as the real ones do. Only fitted
parameters are shipped; the data stay where they are.

Every row carries the identity of its real unit (``discharge_ids``, ``waveform_ids``: the
``neuron_id`` of the lab's ``units.csv``, e.g. ``"hull_12"``), so that a simulation can leave out
the units a test scores (``exclude_real_units`` of :func:`nwb_celltype.simulate.simulate_units`).

Usage: ``python -m nwb_celltype.simulate._fit [--data DIR] [--out FILE] [--add-ids]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from ._model import DISCHARGE_FIELDS, model_rate_hz, model_tables

PARAMS_FILE = Path(__file__).with_name("fitted_params.json")
C4 = ("PkC_ss", "PkC_cs", "MLI", "GoC", "MFB")
#: Which labs feed which preset (discharge tables, waveform tables).
SOURCES: dict[str, dict[str, tuple[str, ...]]] = {
    "mouse": {"discharge": ("hull",), "waveform": ("hull", "hausser")},
    "macaque": {"discharge": ("lisberger",), "waveform": ("lisberger",)},
}
#: Classes fitted from waveforms only (no discharge tables exist): granule cells (Hausser).
WAVEFORM_ONLY = ("GrC",)

# bounds of (w_b, m_b_ms, d_ms, k_d, k, mu_ms, sigma) in the fit (log space except w_b, sigma); the
# refractory mean may exceed the tables' 100 ms (complex spikes: their ACG and ISI rise over the
# whole window, a recovery longer than 100 ms, not a dead time that ends inside it)
_LO = np.array([1e-5, 0.3, 0.3, 1.0, 0.5, 0.5, 0.0])
_HI = np.array([0.7, 10.0, 400.0, 60.0, 40.0, 5000.0, 1.2])
_LOG = np.array([False, True, True, True, True, True, False])

WAVE_RATE_HZ = 30000.0
WAVE_PRE_MS = 1.0
N_PHASES = 5


def read_lab(data: Path, lab: str) -> dict:
    """Labels, unit identities (``neuron_id`` of ``units.csv``, e.g. ``"hull_12"``) and the raw
    tables of one lab (ACG lags 1..100, ISI 0..99, waveforms)."""
    import pandas as pd

    d = data / lab
    meta = json.loads((d / "dataset.json").read_text())
    out = {
        "labels": pd.read_csv(d / "labels.csv")["label"].to_numpy().astype(str),
        "waveforms": pd.read_csv(d / "waveforms.csv").to_numpy(dtype=np.float64),
        "rate_hz": float(meta["waveform_rate_hz"]),
    }
    units = d / "units.csv"
    ids = pd.read_csv(units)["neuron_id"].astype(str).to_numpy() if units.exists() else None
    if ids is None or len(ids) != len(out["labels"]):  # no provenance column: the lab and the row
        ids = np.array([f"{lab}_{i}" for i in range(len(out["labels"]))])
    out["neuron_ids"] = ids
    if (d / "acg.csv").exists():
        acg = pd.read_csv(d / "acg.csv")
        lags = np.array([float(c) for c in acg.columns])
        out["acg"] = acg.to_numpy(dtype=np.float64)[:, (lags >= 1) & (lags <= 100)]
        out["isi"] = pd.read_csv(d / "isi_dist.csv").to_numpy(dtype=np.float64)[:, :100]
    return out


# ------------------------------------------------------------------------------------ discharge


def _to_theta(p: np.ndarray) -> np.ndarray:
    return np.where(_LOG, np.log(np.maximum(p, 1e-12)), p)


def _from_theta(th: np.ndarray) -> np.ndarray:
    return np.where(_LOG, np.exp(th), th)


def _deviance(y: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Signed Poisson deviance residuals of counts ``y`` under means ``m``: like square-root
    residuals for large counts, and for the sparse tables of complex spikes they punish model mass
    where the data have none and missing mass where they have some."""
    m = np.maximum(m, 1e-9)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(y > 0, y * np.log(y / m), 0.0) - (y - m)
    return np.sign(y - m) * np.sqrt(2 * np.maximum(t, 0.0))


def _residuals(th: np.ndarray, acg: np.ndarray, isi: np.ndarray) -> np.ndarray:
    p = _from_theta(th[:7])
    mi, ma = model_tables(p)
    return np.concatenate([_deviance(isi, np.exp(th[7]) * mi), _deviance(acg, np.exp(th[8]) * ma)])


def _sqrt_r2(th: np.ndarray, acg: np.ndarray, isi: np.ndarray) -> float:
    """Fraction of the variance of the square-root counts (both tables) that the fit explains."""
    mi, ma = model_tables(_from_theta(th[:7]))
    y = np.sqrt(np.concatenate([isi, acg]))
    m = np.sqrt(np.maximum(np.concatenate([np.exp(th[7]) * mi, np.exp(th[8]) * ma]), 0.0))
    return float(1.0 - ((y - m) ** 2).sum() / max(float(((y - y.mean()) ** 2).sum()), 1e-12))


#: Complex spikes: the interval after the refractory time is held Poisson (k = 1) at ~1 Hz (mu =
#: 1 s): 100 ms tables cannot tell the rate, and CS discharge is irregular at ~1 Hz (Zhou et al.
#: 2014; Van Dijck et al. 2013). The simulator re-solves mu for each unit's drawn CS rate.
FIXED = {"PkC_cs": {4: 1.0, 5: 1000.0}}


def fit_discharge(
    acg: np.ndarray, isi: np.ndarray, fixed: dict[int, float] | None = None
) -> tuple[np.ndarray, float]:
    """Fit the discharge model to one unit's ACG (lags 1..100 ms) and ISI (0..99 ms) counts.

    The ACG and ISI get separate scales (the tables need not come from the same spikes).

    Returns
    -------
    params : (7,) float64
        ``DISCHARGE_FIELDS`` values.
    r2 : float
        Fraction of the variance of the square-root counts explained (both tables).
    """
    far = max(float(acg[79:].mean()), 1e-3)
    n_guess = max(float(isi.sum()), 1.0)
    rate0 = float(np.clip(far / n_guess * 1000.0, 0.5, 300.0))
    # where the ACG first reaches a fifth of its plateau: the refractory period's scale (spikelets
    # and double detections in the first bins do not count)
    first = int(np.argmax(acg > 0.2 * far)) + 1 if (acg > 0.2 * far).any() else 5
    best, best_cost = None, np.inf
    nfev = 80
    for k0, d_frac, w0 in ((2.0, 0.7, 0.01), (8.0, 0.5, 0.05)):
        d0 = float(np.clip(d_frac * max(first, 1), 0.5, 80.0))
        mu0 = float(np.clip(1000.0 / rate0 - d0, 1.0, 4000.0))
        p0 = np.array([w0, 1.5, d0, 6.0, k0, mu0, 0.3])
        th0 = np.concatenate([_to_theta(p0), [np.log(n_guess / max(0.05, min(1.0, rate0 / 20))), 0.0]])
        th0[8] = np.log(max(far, 1e-3) / max(model_tables(p0)[1][79:].mean(), 1e-9))
        lo = np.concatenate([_to_theta(_LO), [-5.0, -30.0]])
        hi = np.concatenate([_to_theta(_HI), [30.0, 30.0]])
        for j, v in (fixed or {}).items():  # held parameters: a bound interval of width ~1e-6
            p0[j] = v
            th0[j] = _to_theta(p0)[j]
            lo[j], hi[j] = th0[j] - 1e-6, th0[j] + 1e-6
        th0 = np.clip(th0, lo + 1e-6, hi - 1e-6)
        # finite differences of 1e-3 (relative) and Jacobian scaling: with the default tiny steps the
        # model's 0.2 ms grid makes the gradient look flat and the fit stopped near its start
        res = least_squares(
            _residuals,
            th0,
            bounds=(lo, hi),
            args=(acg, isi),
            max_nfev=nfev,
            x_scale="jac",
            diff_step=1e-3,
        )
        if res.cost < best_cost:
            best, best_cost = res.x, res.cost
        if _sqrt_r2(best, acg, isi) > 0.98:  # a good fit from the first start: done
            break
    r2 = _sqrt_r2(best, acg, isi)
    return _from_theta(best[:7]), float(r2)


# ------------------------------------------------------------------------------------- waveform


def align_real_waveform(w: np.ndarray, rate_hz: float) -> np.ndarray:
    """The package's ``acg-isi-wave`` alignment (30 kHz, main peak at 1 ms of -1..+1.5 ms, sign
    kept, max |value| = 1): :func:`nwb_celltype.features.discharge.align_waveform`, in float64."""
    from ..features.discharge import align_waveform

    return align_waveform(np.asarray(w, dtype=np.float64), rate_hz)


def _gauss_sum(ph: np.ndarray, t_ms: np.ndarray) -> np.ndarray:
    ph = ph.reshape(-1, 3)
    return (ph[:, :1] * np.exp(-0.5 * ((t_ms[None] - ph[:, 1:2]) / ph[:, 2:3]) ** 2)).sum(0)


def fit_waveform(y: np.ndarray) -> tuple[np.ndarray, float]:
    """Sum of ``N_PHASES`` Gaussians (amplitude, centre ms, sd ms) fitted to an aligned waveform
    (main peak at 0 ms); phases are added greedily at the largest residual, then refined jointly.

    Returns
    -------
    phases : (N_PHASES, 3) float64
        Sorted by |amplitude|, the main phase first.
    noise : float
        Residual sd (relative to the main peak).
    """
    t = (np.arange(len(y)) - int(round(WAVE_PRE_MS * WAVE_RATE_HZ / 1000))) / WAVE_RATE_HZ * 1e3
    ph = np.zeros((0, 3))
    lo_row, hi_row = [-2.0, -1.0, 0.015], [2.0, 1.6, 1.0]
    for _ in range(N_PHASES):
        r = y - _gauss_sum(ph, t) if len(ph) else y.copy()
        j = int(np.argmax(np.abs(r)))
        ph = np.vstack([ph, [r[j], t[j], 0.08]])
        lo = np.tile(lo_row, len(ph))
        hi = np.tile(hi_row, len(ph))
        x0 = np.clip(ph.ravel(), lo + 1e-9, hi - 1e-9)
        res = least_squares(lambda x: _gauss_sum(x, t) - y, x0, bounds=(lo, hi), max_nfev=300)
        ph = res.x.reshape(-1, 3)
    ph = ph[np.argsort(-np.abs(ph[:, 0]))]
    noise = float(np.std(y - _gauss_sum(ph, t)))
    return ph, noise


# ----------------------------------------------------------------------------------------- main


#: Pseudo-counts of the class's pooled shape added to each unit's ACG and ISI table before its fit.
PRIOR_COUNTS = 200.0


def _class_shape(tab: np.ndarray) -> np.ndarray:
    tot = tab.sum(1)
    ok = tot > 0
    if not ok.any():
        return np.full(tab.shape[1], 1.0 / tab.shape[1])
    m = np.mean(tab[ok] / tot[ok, None], axis=0)
    return m / max(m.sum(), 1e-12) if m.sum() > 0 else np.full(tab.shape[1], 1.0 / tab.shape[1])


def shrink_to_class(acg: np.ndarray, isi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each unit's tables plus ``PRIOR_COUNTS`` pseudo-counts shaped like the class's pooled
    tables (empirical-Bayes shrinkage): units with rich tables (1e4-1e6 counts) keep their own
    shape, sparse ones (complex spikes: tens to hundreds of intervals below 100 ms, some none) lean
    on their class instead of fitting noise. The class shape is the mean of the units' normalised
    tables (every unit weighs the same, whatever its count). Not the median: in sparse tables most
    bins of most units are empty, and a per-bin median erased the short-interval mass (spikelets)
    that real complex spikes have (Lisberger: 0 instead of 13 % of the ACG below 30 ms)."""
    pa, pi = _class_shape(acg) * PRIOR_COUNTS, _class_shape(isi) * PRIOR_COUNTS
    return [(a + pa, i + pi) for a, i in zip(acg, isi, strict=True)]


def _fit_discharge_row(args: tuple[np.ndarray, np.ndarray, dict | None]) -> tuple[list[float], float]:
    p, r2 = fit_discharge(*args)
    return [round(float(x), 5) for x in p], round(r2, 4)


def _fit_waveform_row(y: np.ndarray) -> dict:
    ph, noise = fit_waveform(y)
    return {"phases": np.round(ph, 5).tolist(), "noise": round(noise, 5)}


def source_rows(labs: dict, preset: str, cls: str, part: str) -> list[tuple[str, int]]:
    """The real unit behind each fitted row of one class: ``(lab, table row)`` in the parameter
    file's order (``part`` "discharge" or "waveform": the labs of ``SOURCES[preset][part]`` in
    turn, each in table order)."""
    return [
        (lab, int(i)) for lab in SOURCES[preset][part] for i in np.flatnonzero(labs[lab]["labels"] == cls)
    ]


def unit_ids(labs: dict, preset: str, cls: str, part: str) -> list[str]:
    """``neuron_id`` (lab and row, e.g. ``"hull_12"``) of the real unit behind each fitted row."""
    return [str(labs[lab]["neuron_ids"][i]) for lab, i in source_rows(labs, preset, cls, part)]


def add_unit_ids(params: dict, labs: dict) -> dict:
    """Write the real unit's identity beside every fitted row (``discharge_ids``,
    ``waveform_ids``) of a parameter file fitted before the file carried them: the rows follow
    :func:`source_rows`' order, so the identities follow from the tables without refitting.

    Raises
    ------
    ValueError
        When a class's row count differs from its real units' (the file was fitted to other tables).
    """
    for preset, entry in params["presets"].items():
        for part, key in (("discharge", "discharge_ids"), ("waveform", "waveform_ids")):
            entry[key] = {}
            for cls, rows in entry[part].items():
                ids = unit_ids(labs, preset, cls, part)
                if len(ids) != len(rows):
                    raise ValueError(
                        f"{preset} {cls}: {len(rows)} fitted {part} rows but {len(ids)} real units in the "
                        "tables; refit with python -m nwb_celltype.simulate._fit."
                    )
                entry[key][cls] = ids
    return params


def refit_discharge(labs: dict, preset: str, cls: str, keep) -> tuple[np.ndarray, list[str]]:
    """The discharge rows of one class fitted as :func:`fit_all` does, but to the real units named
    in ``keep`` only, their class prior (:func:`shrink_to_class`) included: for cross-fitted tests,
    where no held-out unit may shape the rows a simulation draws from (the prior dominates the fits
    of sparse classes, complex spikes).

    Returns
    -------
    rows : (k, 7) float64
        ``DISCHARGE_FIELDS`` per kept unit, in :func:`source_rows` order.
    ids : list of str
        Their ``neuron_id``.
    """
    keep = {str(u) for u in keep}
    rows, ids = [], []
    for lab in SOURCES[preset]["discharge"]:
        t = labs[lab]
        idx = [i for i in np.flatnonzero(t["labels"] == cls) if str(t["neuron_ids"][i]) in keep]
        for (a, s), i in zip(shrink_to_class(t["acg"][idx], t["isi"][idx]), idx, strict=True):
            rows.append(_fit_discharge_row((a, s, FIXED.get(cls)))[0])
            ids.append(str(t["neuron_ids"][i]))
    return np.array(rows, dtype=np.float64).reshape(-1, 7), ids


def fit_all(data: Path, jobs: int = 1, log=print) -> dict:
    """Fit every labelled unit of every lab (``jobs`` worker processes); returns the parameter
    file's content. Deterministic: the fits start from data-derived guesses, no random draws."""
    from concurrent.futures import ProcessPoolExecutor

    labs = {lab: read_lab(data, lab) for lab in ("hull", "lisberger", "hausser")}
    out: dict = {
        "about": (
            "Simulator parameters fitted to real identified cerebellar units (C4 database, Beau et al. "
            "2025, tables of the HIPPIE benchmark release): one row per real unit. Regenerate with "
            "python -m nwb_celltype.simulate._fit; see docs/simulation.md."
        ),
        "discharge_fields": list(DISCHARGE_FIELDS),
        "presets": {},
    }
    with ProcessPoolExecutor(max(jobs, 1)) as pool:
        for preset, src in SOURCES.items():
            entry: dict = {"discharge": {}, "discharge_r2": {}, "waveform": {}, "amplitude_log": {}}
            for cls in C4:
                tabs = []
                for lab in src["discharge"]:  # the order of source_rows
                    idx = np.flatnonzero(labs[lab]["labels"] == cls)
                    tabs += [
                        (a, i, FIXED.get(cls))
                        for a, i in shrink_to_class(labs[lab]["acg"][idx], labs[lab]["isi"][idx])
                    ]
                fits = list(pool.map(_fit_discharge_row, tabs))
                entry["discharge"][cls] = [f[0] for f in fits]
                entry["discharge_r2"][cls] = [f[1] for f in fits]
                r2 = np.median([f[1] for f in fits]) if fits else np.nan
                log(f"{preset} {cls}: {len(fits)} discharge fits, median R2 {r2:.3f}", flush=True)
            for cls in (*C4, *WAVEFORM_ONLY):
                waves, amps = [], []
                for lab in src["waveform"]:
                    t = labs[lab]
                    idx = np.flatnonzero(t["labels"] == cls)
                    waves += [align_real_waveform(t["waveforms"][i], t["rate_hz"]) for i in idx]
                    if lab != "hausser":  # Hausser waveforms are already normalised
                        amps += [float(np.log(np.abs(t["waveforms"][i]).max())) for i in idx]
                if waves:
                    entry["waveform"][cls] = list(pool.map(_fit_waveform_row, waves))
                if len(amps) > 1:
                    entry["amplitude_log"][cls] = [
                        round(float(np.median(amps)), 4),
                        round(float(np.std(amps)), 4),
                    ]
                log(f"{preset} {cls}: {len(waves)} waveform fits", flush=True)
            out["presets"][preset] = entry
    return add_unit_ids(out, labs)


def parameter_table(params: dict) -> str:
    """Markdown table of the shipped fits: per preset and class, median [10th-90th percentile] of
    every discharge parameter and of the model's rate over the real units (docs/simulation.md)."""
    lines = [
        "| preset | class | n | rate Hz | w_b | m_b ms | d ms | k_d | k | mu ms | sigma | median R² |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def q(x: np.ndarray) -> str:
        lo, med, hi = np.percentile(x, [10, 50, 90])
        f = (lambda v: f"{v:.3g}") if med < 100 else (lambda v: f"{v:.0f}")
        return f"{f(med)} [{f(lo)}–{f(hi)}]"

    for preset, e in params["presets"].items():
        for cls, rows in e["discharge"].items():
            a = np.array(rows)
            if not len(a):
                continue
            rate = np.array([model_rate_hz(r) for r in a])
            cells = [q(rate)] + [q(a[:, j]) for j in range(7)]
            if cls == "PkC_cs":
                cells[0] = "1.0 (literature)"
                cells[6] = "from rate"
            lines.append(
                f"| {preset} | {cls} | {len(a)} | "
                + " | ".join(cells)
                + f" | {np.median(e['discharge_r2'][cls]):.3f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", default=None, help="folder of the real-c4 tables (default: found by real_c4_dir)"
    )
    ap.add_argument("--out", default=str(PARAMS_FILE), help="parameter file to write")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    ap.add_argument("--table", action="store_true", help="print the docs' table of the shipped fits")
    ap.add_argument(
        "--add-ids",
        action="store_true",
        help="only add the real units' identities to the rows of an existing file (no refit)",
    )
    args = ap.parse_args(argv)
    if args.table:
        print(parameter_table(json.loads(Path(args.out).read_text())))
        return
    from ..testing.real_data import real_c4_dir

    data = Path(args.data) if args.data else real_c4_dir()
    if data is None or not (data / "hull" / "dataset.json").is_file():
        raise SystemExit(
            f"no real-c4 tables found (looked at {args.data or 'the real_c4_dir() places'}); pass --data DIR"
        )
    if args.add_ids:
        labs = {lab: read_lab(data, lab) for lab in ("hull", "lisberger", "hausser")}
        params = add_unit_ids(json.loads(Path(args.out).read_text()), labs)
    else:
        params = fit_all(data, jobs=args.jobs)
    Path(args.out).write_text(json.dumps(params, indent=None, separators=(",", ":")) + "\n")
    for preset, e in params["presets"].items():
        for cls, rows in e["discharge"].items():
            rates = [model_rate_hz(np.array(r)) for r in rows]
            if rates:
                print(f"{preset} {cls}: model rate median {np.median(rates):.1f} Hz")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
