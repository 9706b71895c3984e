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
  shipped demo recording's labelled units (>= 100 spikes);
- ``classic_classifiers`` (session 11): logistic regression, an RBF support-vector machine and
  gradient-boosted trees on the model's own inputs (quantile-mapped on the training and unlabelled
  units), on **the validation benchmark's folds** (bench_real_validation.py: within lab, pooled,
  across species), each decided by its most probable class and by the most probable class after
  dividing by the training class frequencies (a balanced decision), and at confidence ratio 2
  (coverage, balanced recall with abstentions as misses, confidently wrong; also at 3, 5, 10, 20);
- ``self_training`` (session 11): pseudo-labels on the 484 unlabelled Lisberger units for a
  logistic regression (same folds);
- ``model_decision_bias`` (session 11, option ``--model-bias``, ~15 min on 2 cores): the real-data
  model of bench_real_validation.py with a per-class bias on its log-probabilities fitted on its own
  inner out-of-fold predictions (coordinate search maximising their balanced accuracy), and its
  probabilities mixed half and half with the RBF SVM's balanced decision, on the benchmark's folds
  (within lab, pooled, macaque -> mouse) (without the option, the previous run's values are kept and marked so).

Usage: python benchmarks/bench_table_limits.py --data ../shared/real-c4 [--model-bias]
Writes benchmarks/results/table_limits.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import rankdata
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import QuantileTransformer, StandardScaler
from sklearn.svm import SVC

from nwb_celltype.features.discharge import compute_acg_counts, compute_isi_counts
from nwb_celltype.features.discharge_inputs import discharge_inputs
from nwb_celltype.library.tables import read_feature_tables
from nwb_celltype.model.real_inputs import _inputs
from nwb_celltype.model.training import stratified_folds
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


def _input_matrix(raw: dict) -> np.ndarray:
    """The real-trained model's discharge and waveform inputs, unmapped, of raw feature arrays."""
    i = _inputs(raw)
    return np.hstack([i["discharge"], np.nan_to_num(i["waveform"])])


def _model_inputs(u: dict) -> np.ndarray:
    """:func:`_input_matrix` of a :func:`_lab` set of units."""
    return _input_matrix({"acg_counts": u["acg"], "isi_counts": u["isi"], "waveform": u["waveform"]})


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


def _benchmark_splits(labs: dict) -> dict:
    """The splits of bench_real_validation.py: (train units, test lab, rows per fold or None)."""
    out = {}
    for lab, other in (("hull", "lisberger"), ("lisberger", "hull")):
        fold = stratified_folds(labs[lab]["y"], 5, np.random.default_rng(0))
        out[f"{lab} within-lab CV"] = (lab, None, fold)
        out[f"{lab} CV, other lab pooled"] = (lab, other, fold)
    out["macaque -> mouse"] = ("lisberger", "hull", None)
    out["mouse -> macaque"] = ("hull", "lisberger", None)
    return out


def _split_rows(labs: dict, split: tuple):
    """(train x, train y, test x, test y) per fold of a :func:`_benchmark_splits` split."""
    lab, other, fold = split
    x = {k: _model_inputs(u) for k, u in labs.items()}
    if fold is None:  # across species: train on one lab, test on the other
        yield x[lab], labs[lab]["y"], x[other], labs[other]["y"], np.arange(len(x[other]))
        return
    for f in range(5):
        tr, te = fold != f, fold == f
        xs, ys = [x[lab][tr]], [labs[lab]["y"][tr]]
        if other is not None:
            xs.append(x[other])
            ys.append(labs[other]["y"])
        yield np.vstack(xs), np.concatenate(ys), x[lab][te], labs[lab]["y"][te], np.flatnonzero(te)


def _scores(y: np.ndarray, p: np.ndarray) -> dict:
    """No threshold, and at confidence ratio 2 (abstentions count as misses); ``by_threshold``: the
    accuracy-coverage curve, at each ratio threshold classified / balanced recall with abstentions as
    misses / confidently wrong."""
    pred = p.argmax(1)
    top2 = np.sort(p, 1)[:, -2:]

    def at(t: float) -> list[float]:
        sure = top2[:, 1] >= t * top2[:, 0]
        recall = [np.mean(sure[y == c] & (pred[y == c] == c)) for c in np.unique(y)]
        return [round(float(v), 3) for v in (sure.mean(), np.mean(recall), np.mean(sure & (pred != y)))]

    at_2 = at(2)
    return {
        **_recalls(y, pred),
        "classified_at_2": at_2[0],
        "balanced_recall_at_2": at_2[1],
        "confidently_wrong_at_2": at_2[2],
        "by_threshold": {str(t): at(t) for t in (3, 5, 10, 20)},
    }


def _quantile_mapped(a: np.ndarray, b: np.ndarray, unlabelled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """a and b through the quantile map of a's and the unlabelled units' inputs."""
    q = QuantileTransformer(n_quantiles=200).fit(np.vstack([a, unlabelled]))
    return q.transform(a), q.transform(b)


def _balanced_decision(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """p divided by the training class frequencies (of y), renormalised."""
    q = p / np.array([max(np.mean(y == c), 1e-9) for c in range(len(CLASSES))])
    return q / q.sum(1, keepdims=True)


def _classic_probabilities(a: np.ndarray, y: np.ndarray, b: np.ndarray) -> dict:
    """Class probabilities (n, 5) of the three classifiers trained on (a, y), for b."""
    if not hasattr(SVC(), "probability"):
        raise SystemExit("classic_classifiers needs scikit-learn < 1.11 (SVC(probability=True)).")
    warnings.filterwarnings("ignore", "The `probability` parameter", FutureWarning)
    models = {
        "logistic regression": LogisticRegression(C=0.1, max_iter=3000, class_weight="balanced"),
        # libsvm's Platt scaling with pairwise coupling (works with Hull's 1-2 GoC per training fold,
        # where CalibratedClassifierCV's 5 folds do not); deprecated in scikit-learn 1.9
        "RBF SVM": SVC(C=3.0, class_weight="balanced", probability=True, random_state=0),
        "gradient boosting": HistGradientBoostingClassifier(
            max_iter=300, learning_rate=0.05, class_weight="balanced", random_state=0
        ),
    }
    out = {}
    for name, m in models.items():
        p = np.zeros((len(b), len(CLASSES)))
        m.fit(a, y)
        p[:, m.classes_] = m.predict_proba(b)
        out[name] = p
    out["mean of the three"] = sum(out.values()) / 3
    return out


def classic_classifiers(labs: dict, unlabelled: np.ndarray) -> dict:
    res = {}
    for name, split in _benchmark_splits(labs).items():
        n_test = len(labs[split[1] if split[2] is None else split[0]]["y"])
        probs, y_all = {}, np.zeros(n_test, int)
        for a, y, b, yb, rows in _split_rows(labs, split):
            ma, mb = _quantile_mapped(a, b, unlabelled)
            for k, p in _classic_probabilities(ma, y, mb).items():
                for decision, pp in (
                    ("most probable", p / p.sum(1, keepdims=True)),
                    ("balanced decision", _balanced_decision(p, y)),
                ):
                    probs.setdefault(f"{k}, {decision}", np.zeros((n_test, len(CLASSES))))[rows] = pp
            y_all[rows] = yb
        res[name] = {k: _scores(y_all, p) for k, p in probs.items()}
    return res


def self_training(labs: dict, unlabelled: np.ndarray) -> dict:
    u = labs["lisberger"]
    x, y = _model_inputs(u), u["y"]
    fold = stratified_folds(y, 5, np.random.default_rng(0))
    make = _logreg(0.1, scaled=False)
    preds = {
        k: np.zeros_like(y) for k in ("labelled units only", "pseudo-labels p >= 0.9", "3 rounds, p >= 0.8")
    }
    for f in range(5):
        tr, te = fold != f, fold == f
        q = QuantileTransformer(n_quantiles=200).fit(np.vstack([x[tr], unlabelled]))
        a, b, un = q.transform(x[tr]), q.transform(x[te]), q.transform(unlabelled)
        m = make().fit(a, y[tr])
        preds["labelled units only"][te] = m.predict(b)
        for key, cut, rounds in (("pseudo-labels p >= 0.9", 0.9, 1), ("3 rounds, p >= 0.8", 0.8, 3)):
            mm = m
            for _ in range(rounds):
                pu = mm.predict_proba(un)
                sel = pu.max(1) >= cut
                w = np.r_[np.ones(int(tr.sum())), np.full(int(sel.sum()), 0.5)]
                ya = np.r_[y[tr], mm.classes_[pu[sel].argmax(1)]]
                mm = make().fit(np.vstack([a, un[sel]]), ya, sample_weight=w)
            preds[key][te] = mm.predict(b)
    return {k: _recalls(y, p) for k, p in preds.items()}


def model_decision_bias(data_dir: str, labs: dict, unlabelled: np.ndarray) -> dict:
    """The real-data model of bench_real_validation.py on its folds: most probable class, with a
    decision bias fitted on its inner out-of-fold units, and mixed half and half with the RBF SVM's
    balanced-decision probabilities trained on the same units (all without the model's abstentions;
    :func:`_scores`)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    import bench_real_validation as brv

    from nwb_celltype.model.real_ensemble import predict_real_ensemble
    from nwb_celltype.model.real_inputs import fit_decision_bias
    from nwb_celltype.model.real_networks import RealModelConfig
    from nwb_celltype.model.real_training import train_real_ensemble

    cfg = RealModelConfig(n_threads=2)
    data, unl = brv.load_tables(data_dir)

    def run(sources, te_fs, te):
        oof = {}
        raw = brv._cat(*(brv._raw(data[lab], r) for lab, r in sources))
        labels = np.concatenate([data[lab].labels[r].astype(str) for lab, r in sources])
        groups = np.concatenate([np.full(len(r), lab) for lab, r in sources])
        species = np.array([brv.SPECIES[g] for g in groups])
        t, m = train_real_ensemble(raw, labels, CLASSES, unl, cfg, groups, oof=oof, species=species)
        p = predict_real_ensemble(t, m, brv._raw(te_fs, te))["probabilities"]
        o = oof["mixed"]
        bias = fit_decision_bias(np.asarray(o["p"]), np.asarray(o["y"]), np.asarray(o["w"]), len(CLASSES))
        # the RBF SVM as classic_classifiers trains it, on the same units
        y = brv._index(labels)
        a, b = _quantile_mapped(_input_matrix(raw), _input_matrix(brv._raw(te_fs, te)), unlabelled)
        return p, bias, _balanced_decision(_classic_probabilities(a, y, b)["RBF SVM"], y)

    def rows(fs):
        return np.flatnonzero(np.isin(fs.labels.astype(str), CLASSES) & fs.has_discharge)

    def summary(y, p, pb, svm):
        return {
            "most probable": _recalls(y, p.argmax(1)),
            "with bias": _recalls(y, pb.argmax(1)),
            "model probabilities": _scores(y, p),
            "RBF SVM, balanced decision": _scores(y, svm),
            "model and SVM, half and half": _scores(y, 0.5 * (p + svm)),
        }

    res = {}
    for name, (lab, other, fold) in _benchmark_splits(labs).items():
        if name == "mouse -> macaque":
            continue
        if fold is None:  # across species: every unit of one lab trains, the other's are scored
            p, bias, svm = run([(lab, rows(data[lab]))], data[other], rows(data[other]))
            res[name] = {
                **summary(labs[other]["y"], p, np.log(p + 1e-9) + bias, svm),
                "bias": [round(float(v), 2) for v in bias],
            }
            continue
        r, y = rows(data[lab]), labs[lab]["y"]
        p, pb, svm = (np.zeros((len(y), 5)) for _ in range(3))
        for f in range(5):
            sources = [(lab, r[fold != f])] + ([(other, rows(data[other]))] if other else [])
            p[fold == f], bias, svm[fold == f] = run(sources, data[lab], r[fold == f])
            pb[fold == f] = np.log(p[fold == f] + 1e-9) + bias
        res[name] = summary(y, p, pb, svm)
    return res


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
    ap.add_argument(
        "--model-bias",
        action="store_true",
        help="also train the real-data model on the benchmark's folds with a decision bias (~8 min)",
    )
    args = ap.parse_args()
    t0 = time.perf_counter()
    data = {lab: read_feature_tables(Path(args.data) / lab) for lab in ("hull", "lisberger")}
    for fs in data.values():
        fs.labels = np.asarray(fs.labels, dtype=object).astype(str)
    labs = {lab: _lab(data, lab) for lab in data}
    lis = data["lisberger"]
    unl = lis.subset(np.flatnonzero((lis.labels == "unlabeled") & np.asarray(lis.has_discharge, bool)))
    unlabelled = _model_inputs(
        {
            "acg": unl.acg_counts,
            "isi": unl.isi_counts,
            "waveform": np.where(unl.has_waveform[:, None], unl.waveform, np.nan),
        }
    )
    res = {
        "readme_baseline": readme_baseline(labs),
        "per_lab_normalisation": per_lab_normalisation(labs),
        "rate_shape_feature": rate_shape_feature(labs),
        "demo_units": demo_units(labs),
        "classic_classifiers": classic_classifiers(labs, unlabelled),
        "self_training": self_training(labs, unlabelled),
    }
    if args.model_bias:
        res["model_decision_bias"] = model_decision_bias(args.data, labs, unlabelled)
    elif OUT.exists() and "model_decision_bias" in (old := json.loads(OUT.read_text())):
        res["model_decision_bias"] = {**old["model_decision_bias"], "kept_from_previous_run": True}
    res["seconds"] = round(time.perf_counter() - t0, 1)
    res["machine"] = _machine()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
