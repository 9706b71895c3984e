"""What the real-c4 tables can teach: plain logistic regressions on the shared tables (seconds).

Checks, not the validation protocol (that is bench_real_validation.py): whether the issue-14
targets are within reach of these inputs at all, and two ideas measured before building them into
the model. Every number is a 5-fold stratified CV (seed 0) or a train-on-one-lab, test-on-the-other
split; balanced accuracy over every class present, per-class recall beside it.

- ``readme_baseline``: the shared README's baseline features (min-max ACG lags 1..100 ms, min-max
  log(1 + ISI counts), min-max aligned waveform), over five classes and over the four without GoC;
- ``per_lab_normalisation``: macaque -> mouse with each lab's inputs standardised by its own units
  (a transductive alignment), against one scale for both;
- ``rate_shape_feature``: the model's 74 discharge inputs with and without log(share of ISIs at
  50-100 ms / share of ACG pairs at 50-100 ms), within lab, thinned to 300 ACG pairs, across species;
- ``demo_units``: a logistic regression trained on every real unit's discharge inputs, on the
  shipped demo recording's labelled units (>= 100 spikes).

Usage: python benchmarks/bench_table_limits.py --data ../shared/real-c4
Writes benchmarks/results/table_limits.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nwb_celltype.features.discharge import compute_acg_counts, compute_isi_counts
from nwb_celltype.features.discharge_inputs import discharge_inputs
from nwb_celltype.library.tables import read_feature_tables
from nwb_celltype.model.real_inputs import _inputs
from nwb_celltype.simulate import demo_recording_path

CLASSES = ("PkC_ss", "PkC_cs", "MLI", "GoC", "MFB")
OUT = Path(__file__).parent / "results" / "table_limits.json"


def _recalls(y: np.ndarray, pred: np.ndarray, without: tuple[str, ...] = ()) -> dict:
    """Balanced accuracy (mean recall over the classes present, less ``without``) and recalls."""
    rec = {CLASSES[c]: float(np.mean(pred[y == c] == c)) for c in np.unique(y)}
    kept = [v for k, v in rec.items() if k not in without]
    return {
        "balanced_accuracy": round(float(np.mean(kept)), 3),
        "recall": {k: round(v, 2) for k, v in rec.items()},
    }


def _cv(x: np.ndarray, y: np.ndarray, make, test_x=None) -> np.ndarray:
    """Out-of-fold predictions of ``make()`` (test rows replaced by ``test_x(rows)`` if given)."""
    pred = np.zeros_like(y)
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=0).split(x, y):
        model = make().fit(x[tr], y[tr])
        pred[te] = model.predict(x[te] if test_x is None else test_x(te))
    return pred


def _logreg(c: float = 0.1, balanced: bool = True, scaled: bool = True):
    def make():
        lr = LogisticRegression(C=c, max_iter=5000, class_weight="balanced" if balanced else None)
        return make_pipeline(StandardScaler(), lr) if scaled else lr

    return make


def _lab(data: dict, lab: str) -> dict:
    """Labelled units with a discharge: ACG lags 1..100, ISI counts, waveform, class index."""
    fs = data[lab]
    rows = np.flatnonzero(np.isin(fs.labels, CLASSES) & np.asarray(fs.has_discharge, bool))
    s = fs.subset(rows)
    return {
        "acg": np.nan_to_num(np.asarray(s.acg_counts, float))[:, -100:],
        "isi": np.nan_to_num(np.asarray(s.isi_counts, float)),
        "waveform": np.where(np.asarray(s.has_waveform)[:, None], s.waveform, np.nan),
        "y": np.array([CLASSES.index(v) for v in fs.labels[rows]]),
    }


def _minmax(a: np.ndarray) -> np.ndarray:
    lo, hi = a.min(1, keepdims=True), a.max(1, keepdims=True)
    return (a - lo) / np.where(hi > lo, hi - lo, 1.0)


def _model_inputs(u: dict) -> np.ndarray:
    """The real-trained model's discharge and waveform inputs, unmapped."""
    i = _inputs({"acg_counts": u["acg"], "isi_counts": u["isi"], "waveform": u["waveform"]})
    return np.hstack([i["discharge"], np.nan_to_num(i["waveform"])])


def readme_baseline(labs: dict) -> dict:
    out = {}
    for name, u in labs.items():
        x = np.hstack([_minmax(u["acg"]), _minmax(np.log1p(u["isi"])), _minmax(np.nan_to_num(u["waveform"]))])
        for c, bal in ((1.0, False), (1.0, True), (0.1, True)):
            pred = _cv(x, u["y"], _logreg(c, bal, scaled=False))
            key = f"{name}, C={c}{', balanced classes' if bal else ''}"
            out[key] = {"five classes": _recalls(u["y"], pred)}
            if name == "hull":  # 2 GoC units, each learnt from the other alone
                out[key]["without GoC"] = _recalls(u["y"], pred, ("GoC",))
    return out


def per_lab_normalisation(labs: dict) -> dict:
    src, dst = _model_inputs(labs["lisberger"]), _model_inputs(labs["hull"])
    ys, yd = labs["lisberger"]["y"], labs["hull"]["y"]

    def std(a, ref):
        return (a - ref.mean(0)) / (ref.std(0) + 1e-6)

    def ranks(a):
        return np.column_stack([rankdata(col) / len(col) for col in a.T])

    variants = {
        "one scale (Lisberger's)": (std(src, src), std(dst, src)),
        "per-lab standardised": (std(src, src), std(dst, dst)),
        "per-lab ranks": (ranks(src), ranks(dst)),
    }
    make = _logreg(0.1)
    return {k: _recalls(yd, make().fit(a, ys).predict(b)) for k, (a, b) in variants.items()}


def _rate_shape(acg: np.ndarray, isi: np.ndarray) -> np.ndarray:
    """log(share of ISIs at 50..99 ms / share of ACG pairs at lags 50..100 ms), +1-smoothed."""
    a_share = (acg[:, 49:].sum(1) + 1) / (acg.sum(1) + 2)
    i_share = (isi[:, 50:].sum(1) + 1) / (isi.sum(1) + 2)
    return np.log(i_share / a_share)[:, None]


def _discharge_x(acg: np.ndarray, isi: np.ndarray, extra: bool) -> np.ndarray:
    x = discharge_inputs(acg, isi)
    return np.hstack([x, _rate_shape(acg, isi)]) if extra else x


def _thin(u: dict, rows: np.ndarray, pairs: float) -> tuple[np.ndarray, np.ndarray]:
    """ACG and ISI counts of ``rows`` binomially thinned to about ``pairs`` ACG pairs."""
    rng = np.random.default_rng(1)
    acg, isi = u["acg"][rows], u["isi"][rows]
    s = np.minimum(1.0, pairs / np.maximum(acg.sum(1), 1))[:, None]
    return rng.binomial(np.rint(acg).astype(int), s).astype(float), rng.binomial(
        np.rint(isi).astype(int), s
    ).astype(float)


def rate_shape_feature(labs: dict) -> dict:
    out = {}
    make = _logreg(0.1)
    for extra in (False, True):
        res = {}
        for name, u in labs.items():
            x = _discharge_x(u["acg"], u["isi"], extra)
            res[name] = _recalls(u["y"], _cv(x, u["y"], make))
            res[f"{name}, thinned to 300 ACG pairs"] = _recalls(
                u["y"],
                _cv(x, u["y"], make, lambda te, u=u, extra=extra: _discharge_x(*_thin(u, te, 300), extra)),
            )
        src, dst = labs["lisberger"], labs["hull"]
        model = make().fit(_discharge_x(src["acg"], src["isi"], extra), src["y"])
        res["macaque -> mouse"] = _recalls(
            dst["y"], model.predict(_discharge_x(dst["acg"], dst["isi"], extra))
        )
        out["with rate-shape input" if extra else "model's 74 discharge inputs"] = res
    return out


def demo_units(labs: dict) -> dict:
    import pynwb

    with pynwb.NWBHDF5IO(str(demo_recording_path()), "r") as io:
        units = io.read().units.to_dataframe()
    keep = units.simulated_class.isin(CLASSES).values & (units.spike_times.apply(len) >= 100).values
    trains = [np.asarray(t) for t in units.spike_times[keep]]
    acg = np.stack([compute_acg_counts(t)[-100:] for t in trains])
    isi = np.stack([compute_isi_counts(t) for t in trains])
    y = np.array([CLASSES.index(v) for v in units.simulated_class[keep]])
    x = np.vstack([discharge_inputs(u["acg"], u["isi"]) for u in labs.values()])
    ytr = np.concatenate([u["y"] for u in labs.values()])
    pred = _logreg(0.1)().fit(x, ytr).predict(discharge_inputs(acg, isi))
    return {"units": int(len(y)), **_recalls(y, pred)}


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        names = [ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")]
        cpu = f"{names[0]} x{len(names)}" if names else cpu
    except OSError:
        pass
    return f"{cpu}, {platform.system()}, Python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/real-c4", help="the real-c4 folder (hull/, lisberger/)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    data = {lab: read_feature_tables(Path(args.data) / lab) for lab in ("hull", "lisberger")}
    for fs in data.values():
        fs.labels = np.asarray(fs.labels, dtype=object).astype(str)
    labs = {lab: _lab(data, lab) for lab in data}
    res = {
        "readme_baseline": readme_baseline(labs),
        "per_lab_normalisation": per_lab_normalisation(labs),
        "rate_shape_feature": rate_shape_feature(labs),
        "demo_units": demo_units(labs),
    }
    res["seconds"] = round(time.perf_counter() - t0, 1)
    res["machine"] = _machine()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
