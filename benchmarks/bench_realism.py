"""How real do simulated units look? The simulator (nwb_celltype.simulate) against real identified
cerebellar units (the C4 database's Hull mouse and Lisberger macaque units, HIPPIE tables in
the real-c4 folder found by ``nwb_celltype.testing.real_data.real_c4_dir``; see its README).

Measures, per species preset:
1. per class, a distance between the simulated and the real distributions of the three feature
   blocks (min-max ACG lags 1..100 ms, min-max log ISI histogram 0..99 ms, aligned waveform): the
   normalised energy distance ``E = (2 E|X-Y| - E|X-X'| - E|Y-Y'|) / (2 E|X-Y|)`` (0: same
   distribution, 1: disjoint), and a figure per class (median and 10-90 % band, real vs simulated);
2. the transfer test: a logistic regression on those features trained on simulated units and tested
   on every labelled real unit of the lab (balanced accuracy); the ceiling, trained on real units
   (5-fold CV), is reported beside it. The simulator draws each unit from the fit to one real
   unit, so this plain test is leaky (the scored units' own fits are in the pool); the
   **cross-fitted** test is not: the lab's labelled units are split into 5 stratified folds (seed
   0), and each fold is scored by classifiers trained on units simulated only from the fits of the
   other folds' units (``exclude_real_units``; classes with sparse tables, whose fits lean on their
   class prior, from rows refitted to those units alone); predictions are pooled. Two classifiers: the
   logistic regression and the package's real-data model (``train_discharge_model``, the small
   setting of tests/test_real_pipeline.py), the latter also trained on the real units of the other
   folds (its real ceiling);
3. how easy the simulated task is from summary statistics alone: log rate + CV2, logistic
   regression, 5-fold CV balanced accuracy on simulated units;
4. the reverse direction: a model bundle trained on real units (``--bundle``, default: the
   package's default model) classifies a simulated recording per preset; skipped with a message
   until a bundle of the ``acg-isi-wave`` feature family exists.

Simulated units are as long as the real tables' recordings (``table_duration_s``: ~2000 s for
Hull, ~4500 s for Lisberger, estimated from each real unit's counts and fitted rate), so that their
ACG and ISI tables are as dense as the real ones; ``--duration`` overrides it.

Run: ``python benchmarks/bench_realism.py [--data REAL_C4_DIR] [--quick] [--bundle PATH]
[--no-cross-fit] [--skip-reverse]``; writes
``benchmarks/results/realism.json`` and the figures ``docs/figures/realism_<class>.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

C4 = ("PkC_ss", "PkC_cs", "MLI", "GoC", "MFB")
LABS = {"mouse": ("hull", ("hull", "hausser")), "macaque": ("lisberger", ("lisberger",))}
ROOT = Path(__file__).resolve().parents[1]
FAMILY = "acg-isi-wave"


# ------------------------------------------------------------------------------------ features


def minmax(x: np.ndarray) -> np.ndarray:
    """Per-row min-max normalisation to [0, 1] (flat rows become 0)."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = x.min(1, keepdims=True), x.max(1, keepdims=True)
    return (x - lo) / np.where(hi > lo, hi - lo, 1.0)


def blocks(acg: np.ndarray, isi: np.ndarray, wave: np.ndarray) -> dict[str, np.ndarray]:
    """The three normalised feature blocks of the README's logistic-regression baseline."""
    return {"acg": minmax(acg), "isi": minmax(np.log1p(isi)), "waveform": minmax(wave)}


def design(b: dict[str, np.ndarray]) -> np.ndarray:
    return np.hstack([b["acg"], b["isi"], b["waveform"]])


def real_set(data: Path, lab: str) -> dict:
    """Labelled C4 units of one lab: blocks, labels (and the raw tables)."""
    from nwb_celltype.library.tables import read_feature_tables

    fs = read_feature_tables(data / lab)
    keep = np.isin(fs.labels.astype(str), C4)
    if fs.has_discharge.any():
        keep &= fs.has_discharge
    return {
        "labels": fs.labels.astype(str)[keep],
        "ids": np.asarray(fs.meta["neuron_ids"], dtype=str)[keep],
        "acg": fs.acg_counts[keep],
        "isi": fs.isi_counts[keep],
        "wave": fs.waveform[keep].astype(np.float64),
        "features": fs.subset(np.flatnonzero(keep)),
        "has_discharge": bool(fs.has_discharge.any()),
    }


def simulated_set(
    preset: str,
    n_per_class: int,
    duration_s: float,
    seed: int,
    exclude: np.ndarray | None = None,
    discharge_rows: dict | None = None,
) -> dict:
    """Defect-free simulated units of the five classes (as a curated ground-truth library):
    features from their spike times and peak-channel waveforms, plus log rate and CV2. ``exclude``:
    real units (neuron_id) whose fitted rows no simulated unit may come from; ``discharge_rows``:
    replacement rows per class (``simulate_units``)."""
    from nwb_celltype.features.discharge import align_waveform, compute_acg_counts, compute_isi_counts
    from nwb_celltype.simulate import simulate_units

    counts = {c: n_per_class for c in C4}
    res, _ = simulate_units(
        preset=preset,
        class_counts=counts,
        duration_s=duration_s,
        seed=seed,
        defects=False,
        exclude_real_units=None if exclude is None else [str(u) for u in exclude],
        discharge_rows=discharge_rows,
    )
    n = len(res.classes)
    acg, isi = np.zeros((n, 100)), np.zeros((n, 100))
    wave = np.zeros((n, 75))
    rate, cv2 = np.zeros(n), np.zeros(n)
    for i in range(n):
        t = res.spike_times_s[res.spike_offsets[i] : res.spike_offsets[i + 1]]
        acg[i] = compute_acg_counts(t)
        isi[i] = compute_isi_counts(t)
        wave[i] = align_waveform(res.waveforms[i, :, res.peak_channels[i]], res.waveform_rate_hz)
        d = np.diff(t)
        rate[i] = len(t) / duration_s
        cv2[i] = np.mean(2 * np.abs(np.diff(d)) / (d[1:] + d[:-1])) if len(d) > 2 else np.nan
    return {
        "labels": res.classes.astype(str),
        "acg": acg,
        "isi": isi,
        "wave": wave,
        "rate": rate,
        "cv2": cv2,
        "sources": {u for s in (*res.discharge_sources, *res.waveform_sources) for u in s.split("+") if u},
    }


def table_duration_s(preset: str, real: dict) -> float:
    """How long the real tables' recordings are, in seconds of spiking: per labelled real unit
    (complex spikes aside: their 100 ms tables see a few % of their intervals), its ISI table's
    count / (its fitted model's fraction of intervals below 100 ms x the model's rate); the median
    over units, rounded to 100 s. A simulation this long gives tables as dense as the real ones
    (a 600 s one gives 4-8 times sparser ACGs, which matters for complex spikes)."""
    from nwb_celltype.simulate._model import model_rate_hz, model_tables
    from nwb_celltype.simulate._params import fitted_classes

    row = {u: i for i, u in enumerate(real["ids"])}
    est = []
    for cls, fit in fitted_classes(preset).items():
        if cls == "PkC_cs":
            continue
        for p, u in zip(fit.discharge, fit.discharge_ids, strict=True):
            if u in row and real["isi"][row[u]].sum() > 0:
                est.append(real["isi"][row[u]].sum() / (model_tables(p)[0].sum() * model_rate_hz(p)))
    return float(np.round(np.median(est), -2))


# ------------------------------------------------------------------------------------- metrics


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Normalised energy distance between two samples of feature vectors (rows), in [0, 1]."""
    from scipy.spatial.distance import cdist

    if len(x) < 2 or len(y) < 2:
        return float("nan")
    xy = cdist(x, y).mean()
    xx = cdist(x, x).sum() / (len(x) * (len(x) - 1))
    yy = cdist(y, y).sum() / (len(y) * (len(y) - 1))
    return float((2 * xy - xx - yy) / (2 * xy))


def _classifier():
    """The README's baseline: a plain logistic regression on the min-max normalised blocks."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=5000)


def scores(truth: np.ndarray, pred: np.ndarray, prefix: str = "sim_to_real") -> dict:
    """Balanced accuracy (all classes, and classes with >= 5 real units) and confusion matrix."""
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix

    present = [c for c in C4 if (truth == c).any()]
    big = [c for c in present if (truth == c).sum() >= 5]
    m = np.isin(truth, big)
    return {
        f"{prefix}_balanced_accuracy": float(balanced_accuracy_score(truth, pred)),
        f"{prefix}_balanced_accuracy_classes_n5": float(balanced_accuracy_score(truth[m], pred[m])),
        f"{prefix}_confusion": {
            "classes": present,
            "matrix": confusion_matrix(truth, pred, labels=present).tolist(),
        },
        "classes_n5": big,
    }


def transfer(sim: dict, real: dict) -> dict:
    """Trained on simulated units (drawn from the fits to every real unit, the scored ones too:
    leaky), tested on real ones; the other way round; and the real 5-fold ceiling."""
    from sklearn.metrics import balanced_accuracy_score

    xs, xr = (
        design(blocks(sim["acg"], sim["isi"], sim["wave"])),
        design(blocks(real["acg"], real["isi"], real["wave"])),
    )
    pred = _classifier().fit(xs, sim["labels"]).predict(xr)
    out = scores(real["labels"], pred)
    # the same classifier the other way: trained on the real units, tested on the simulated ones
    back = _classifier().fit(xr, real["labels"]).predict(xs)
    out["real_to_sim_balanced_accuracy"] = float(balanced_accuracy_score(sim["labels"], back))
    pr = np.empty(len(xr), dtype=object)
    for tr, te in folds(real["labels"]):
        pr[te] = _classifier().fit(xr[tr], real["labels"][tr]).predict(xr[te])
    ceiling = scores(real["labels"], pr.astype(str), "real_cv")
    out["real_cv_balanced_accuracy"] = ceiling["real_cv_balanced_accuracy"]
    out["real_cv_balanced_accuracy_classes_n5"] = ceiling["real_cv_balanced_accuracy_classes_n5"]
    return out


# ------------------------------------------------------------------------- cross-fitted transfer

#: Folds of the cross-fitted transfer test (stratified by class, fixed seed).
N_FOLDS = 5


def folds(labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds of a lab's labelled real units (seed 0; classes with fewer units than
    folds, Hull's 2 GoC, fall in fewer folds)."""
    from sklearn.model_selection import StratifiedKFold

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return list(StratifiedKFold(N_FOLDS, shuffle=True, random_state=0).split(labels, labels))


#: Settings of the real-data model family the transfer tests train (``--model-recipe``).
MODEL_RECIPES = ("small", "shipped")


def discharge_config(recipe: str = "small"):
    """The package's real-data model family: ``small``, the setting of tests/test_real_pipeline.py;
    ``shipped``, the default model's recipe (``RealModelConfig()``, as benchmarks/make_real_bundle.py
    trains it), on one thread."""
    from nwb_celltype.model.real_networks import RealModelConfig

    if recipe == "shipped":
        return RealModelConfig(n_threads=1)
    if recipe != "small":
        raise ValueError(f"model recipe must be one of {MODEL_RECIPES}, got {recipe!r}")
    return RealModelConfig(pretrain_epochs=30, epochs=40, folds=3, seeds=1, n_threads=1)


def _feature_set(d: dict):
    """A labelled ``acg-isi-wave`` feature set of simulated units (as ``extract_discharge_features``
    computes from their spike times and peak-channel waveforms)."""
    from nwb_celltype.features.discharge import DischargeFeatureSet

    n = len(d["labels"])
    return DischargeFeatureSet(
        unit_ids=np.arange(n, dtype=np.int64),
        acg_counts=d["acg"],
        isi_counts=d["isi"],
        waveform=d["wave"].astype(np.float32),
        has_discharge=np.ones(n, dtype=bool),
        has_waveform=np.ones(n, dtype=bool),
        usable=np.ones(n, dtype=bool),
        reasons=np.full(n, "", dtype=object),
        labels=d["labels"].astype(object),
    )


def discharge_model_predict(train: dict, test_features, config=None) -> dict:
    """Train the package's real-data model (``train_discharge_model``) on labelled units
    (``train``: simulated, or a real training fold) and predict ``test_features``.

    Returns
    -------
    dict
        ``argmax``: the most probable class per unit (forced choice, as the logistic regression);
        ``labels``: the model's decision (``unclassified`` where it abstains).
    """
    from nwb_celltype.library.training import TrainingSet
    from nwb_celltype.model.discharge_bundle import predict_discharge, train_discharge_model

    fs = train["features"] if "features" in train else _feature_set(train)
    labels = np.asarray(train["labels"], dtype=object)
    ts = TrainingSet(
        features=fs,
        labels=labels,
        references=[{"source": "bench_realism", "lab": "train"}],
        file_index=np.zeros(len(labels), dtype=np.int64),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bundle = train_discharge_model(ts, config=config or discharge_config(), name="bench-realism")
    p = predict_discharge(bundle, test_features)
    return {
        "argmax": np.asarray(bundle.classes)[np.nan_to_num(p.probabilities, nan=-1.0).argmax(1)],
        "labels": np.asarray(p.labels, dtype=str),
    }


def sparse_classes(real: dict, share: float = 0.1) -> list[str]:
    """Classes with a unit whose fit the class prior weighs on (its pseudo-counts more than ``share``
    of the unit's counts): the shipped rows of such classes carry the shapes of all the class's units,
    held-out ones included, so cross-fitting refits them per fold (complex spikes always; Lisberger's
    sparsest GoC and MLI)."""
    from nwb_celltype.simulate._fit import PRIOR_COUNTS

    counts = np.minimum(real["acg"].sum(1), real["isi"].sum(1))
    weighed = PRIOR_COUNTS / (counts + PRIOR_COUNTS) > share
    return [c for c in C4 if (weighed & (real["labels"] == c)).any()]


def cross_fitted(
    preset: str, real: dict, n_per_class: int, duration_s: float, seed: int, data: Path, config=None
) -> dict:
    """Sim -> real transfer without leakage: for each fold of the real units, simulate units only
    from the fitted rows of the real units outside the fold (classes with sparse tables: rows
    refitted to those units alone, class prior included), train on them, predict the fold; pool.

    Two classifiers: the plain logistic regression on the min-max blocks, and the package's
    real-data model (``train_discharge_model``, ``config``: default the small setting). The same
    model trained on the real units of the other folds (the real CV ceiling) is reported beside it."""
    config = config or discharge_config()
    from nwb_celltype.simulate._fit import SOURCES, read_lab, refit_discharge

    labs = {lab: read_lab(data, lab) for lab in SOURCES[preset]["discharge"]}
    refit = sparse_classes(real)
    n = len(real["labels"])
    pred = {k: np.empty(n, dtype=object) for k in ("logistic", "model", "model_decision", "model_real_cv")}
    t0 = time.perf_counter()
    for f, (tr, te) in enumerate(folds(real["labels"])):
        held = real["ids"][te]
        rows = {c: refit_discharge(labs, preset, c, real["ids"][tr]) for c in refit}
        sim = simulated_set(
            preset, n_per_class, duration_s, seed + 101 * (f + 1), exclude=held, discharge_rows=rows
        )
        leaked = sim["sources"] & set(held)
        if leaked:  # the simulator's guarantee, checked where it matters
            raise RuntimeError(
                f"fold {f}: simulated units drawn from held-out real units {sorted(leaked)[:5]}"
            )
        xs = design(blocks(sim["acg"], sim["isi"], sim["wave"]))
        xr = design(blocks(real["acg"][te], real["isi"][te], real["wave"][te]))
        pred["logistic"][te] = _classifier().fit(xs, sim["labels"]).predict(xr)
        test = real["features"].subset(te)
        m = discharge_model_predict(sim, test, config)
        pred["model"][te], pred["model_decision"][te] = m["argmax"], m["labels"]
        train_real = {"features": real["features"].subset(tr), "labels": real["labels"][tr]}
        pred["model_real_cv"][te] = discharge_model_predict(train_real, test, config)["argmax"]
        print(f"  {preset} fold {f + 1}/{N_FOLDS}: {len(te)} real units held out", flush=True)
    truth = real["labels"]
    decided = np.isin(pred["model_decision"].astype(str), C4)
    out = {
        "folds": N_FOLDS,
        "seconds": round(time.perf_counter() - t0, 1),
        "logistic": scores(truth, pred["logistic"].astype(str)),
        "model": scores(truth, pred["model"].astype(str)),
        "model_real_cv": scores(truth, pred["model_real_cv"].astype(str), "real_cv"),
        "model_config": config.to_dict(),
        "refit_per_fold": refit,
    }
    out["model"]["fraction_classified"] = float(decided.mean())
    if decided.any():
        out["model"]["balanced_accuracy_on_classified"] = float(
            np.mean(
                [
                    np.mean(pred["model_decision"][decided & (truth == c)] == c)
                    for c in C4
                    if (decided & (truth == c)).any()
                ]
            )
        )
    return out


def summary_stats_accuracy(sim: dict) -> float:
    """5-fold CV balanced accuracy of log rate + CV2 (logistic regression) on simulated units."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = np.column_stack([np.log(np.maximum(sim["rate"], 1e-3)), np.nan_to_num(sim["cv2"], nan=1.0)])
    pr = cross_val_predict(
        _classifier(), x, sim["labels"], cv=StratifiedKFold(5, shuffle=True, random_state=0)
    )
    return float(balanced_accuracy_score(sim["labels"], pr))


def class_distances(sim: dict, real: dict, real_waves: dict) -> dict:
    bs, br = blocks(sim["acg"], sim["isi"], sim["wave"]), blocks(real["acg"], real["isi"], real["wave"])
    out = {}
    for c in C4:
        s, r = sim["labels"] == c, real["labels"] == c
        d = {k: energy_distance(bs[k][s], br[k][r]) for k in ("acg", "isi")}
        d["waveform"] = energy_distance(bs["waveform"][s], minmax(real_waves[c]))
        d["n_real"] = int(r.sum())
        out[c] = d
    return out


# ------------------------------------------------------------------------------------- figures


def _band(ax, x, y, color, label):
    lo, med, hi = np.percentile(y, [10, 50, 90], axis=0)
    ax.fill_between(x, lo, hi, color=color, alpha=0.25, lw=0)
    ax.plot(x, med, color=color, lw=1.5, label=label)


def figures(per_preset: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    lags, bins = np.arange(1, 101), np.arange(100)
    t_wave = (np.arange(75) - 30) / 30.0
    for c in C4:
        fig, axes = plt.subplots(len(per_preset), 3, figsize=(11, 3.2 * len(per_preset)), squeeze=False)
        for row, (preset, d) in enumerate(per_preset.items()):
            sim, real, rw = d["sim"], d["real"], d["real_waves"]
            s, r = sim["labels"] == c, real["labels"] == c
            bs, br = (
                blocks(sim["acg"][s], sim["isi"][s], sim["wave"][s]),
                blocks(real["acg"][r], real["isi"][r], real["wave"][r]),
            )
            lab = LABS[preset][0]
            for ax, key, x, xl in (
                (axes[row, 0], "acg", lags, "lag (ms)"),
                (axes[row, 1], "isi", bins, "ISI (ms)"),
            ):
                if r.any():
                    _band(ax, x, br[key], "k", f"real ({lab}, n={int(r.sum())})")
                _band(ax, x, bs[key], "tab:red", f"simulated (n={int(s.sum())})")
                ax.set_xlabel(xl)
                ax.set_title(f"{preset} {c}: {'ACG' if key == 'acg' else 'log ISI histogram'} (min-max)")
            ax = axes[row, 2]
            if len(rw[c]):
                _band(ax, t_wave, rw[c], "k", f"real (n={len(rw[c])})")
            _band(ax, t_wave, sim["wave"][s], "tab:red", "simulated")
            ax.set_xlabel("time from main peak (ms)")
            ax.set_title(f"{preset} {c}: waveform (max |.| = 1)")
            axes[row, 0].legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        p = out_dir / f"realism_{c}.png"
        fig.savefig(p, dpi=80)
        plt.close(fig)
        paths.append(p)
    return paths


# ----------------------------------------------------------------------------- reverse direction


def reverse_direction(bundle_arg: str | None, duration_s: dict[str, float], out_dir: Path) -> dict:
    """A real-trained bundle of the acg-isi-wave family classifies simulated recordings (one per
    preset, ``duration_s[preset]`` seconds long)."""
    from nwb_celltype.model import load_bundle

    try:
        if bundle_arg:
            bundle = load_bundle(bundle_arg)
        else:
            from nwb_celltype.annotate import _resolve_model

            bundle, _ = _resolve_model(None)
    except Exception as exc:
        return {"skipped": f"no model bundle could be loaded ({exc})"}
    if bundle.feature_family != FAMILY:
        return {
            "skipped": (
                f"the bundle {bundle.card.get('name', '?')!r} is not of the {FAMILY!r} feature family "
                "(not trained on the real tables); pass --bundle PATH to a real-trained bundle once it exists"
            )
        }
    import pynwb

    from nwb_celltype.annotate import annotate
    from nwb_celltype.nwb import read_annotations
    from nwb_celltype.simulate import simulate_recording

    out = {"bundle": f"{bundle.card.get('name')} {bundle.card.get('version', '')}".strip(), "presets": {}}
    for preset in LABS:
        src = out_dir / f"realism_{preset}.nwb"
        res = simulate_recording(
            src,
            preset=preset,
            duration_s=duration_s[preset],
            seed=11,
            class_counts={c: 20 for c in C4},
            labelled_fraction=0.0,
        )
        ann = annotate(src, model=bundle, out=out_dir / f"realism_{preset}.celltype.nwb", overwrite=True)
        with pynwb.NWBHDF5IO(str(ann.output_path), "r") as io:
            rec = read_annotations(io.read())[ann.table_name]
            labels = np.asarray(rec.labels, dtype=str)
            rows = np.asarray(rec.unit_indices)
            probs, classes = rec.probabilities, [str(c) for c in rec.classes]
        truth = res.classes[rows]
        # the model's most probable class, abstentions aside (the real-data tables' "no threshold" column)
        has_p = np.isfinite(probs).all(1)
        top = np.where(has_p, np.asarray(classes)[np.nan_to_num(probs, nan=-1.0).argmax(1)], "")
        recall_top = {c: float(np.mean(top[truth == c] == c)) for c in C4}
        ok = np.isin(labels, C4)
        acc = [
            float(np.mean(labels[truth == c][ok[truth == c]] == c)) if ok[truth == c].any() else 0.0
            for c in C4
        ]
        out["presets"][preset] = {
            "duration_s": duration_s[preset],
            "balanced_accuracy_classified": float(np.mean(acc)),
            "fraction_classified": float(ok.mean()),
            "balanced_accuracy_all": float(np.mean([np.mean(labels[truth == c] == c) for c in C4])),
            "balanced_accuracy_no_threshold": float(np.mean(list(recall_top.values()))),
            "recall_no_threshold": recall_top,
            "recall_abstain_as_miss": {c: float(np.mean(labels[truth == c] == c)) for c in C4},
            "by_waveform_lab": _by_source_lab(truth, top, res.waveform_sources[rows]),
        }
    return out


def _by_source_lab(truth: np.ndarray, top: np.ndarray, sources: np.ndarray) -> dict:
    """Recall without threshold per class and per lab of the real unit each simulated waveform was
    drawn from (``hull_12`` -> ``hull``; a merge of two units, ``a+b``, counts for the first's lab), with counts: a class whose misses all come from one
    lab's waveforms points at a model that does not carry across labs, not at the simulator."""
    lab = np.array([s.split("_")[0] if s else "template" for s in np.asarray(sources, dtype=str)])
    out: dict = {}
    for c in C4:
        for name in np.unique(lab[truth == c]):
            m = (truth == c) & (lab == name)
            out.setdefault(c, {})[str(name)] = {"n": int(m.sum()), "recall": float(np.mean(top[m] == c))}
    return out


# ----------------------------------------------------------------------------------------- main


def measure_preset(preset: str, data: Path, args: argparse.Namespace) -> tuple[dict, dict]:
    """Everything measured on one preset against its lab: (results entry, arrays for the figures)."""
    lab, wave_labs = LABS[preset]
    config = discharge_config(args.model_recipe)
    real = real_set(data, lab)
    duration = args.duration or table_duration_s(preset, real)
    t0 = time.perf_counter()
    sim = simulated_set(preset, args.n_per_class, duration, args.seed)
    t_sim = time.perf_counter() - t0
    waves = [real_set(data, w) if w != lab else real for w in wave_labs]
    real_waves = {c: np.vstack([w["wave"][w["labels"] == c] for w in waves]) for c in C4}
    r = {
        "lab": lab,
        "duration_s": duration,
        "simulate_and_features_s": round(t_sim, 1),
        "distance": class_distances(sim, real, real_waves),
        **transfer(sim, real),
        "summary_stats_balanced_accuracy": summary_stats_accuracy(sim),
    }
    r["leaky_model"] = scores(
        real["labels"], discharge_model_predict(sim, real["features"], config)["argmax"]
    )
    print(
        f"{preset}: sim->{lab} (leaky: fits of the scored units) {r['sim_to_real_balanced_accuracy']:.3f} "
        f"(classes with >= 5 real units {r['sim_to_real_balanced_accuracy_classes_n5']:.3f}), real-data model "
        f"{r['leaky_model']['sim_to_real_balanced_accuracy']:.3f}; real 5-fold CV ceiling "
        f"{r['real_cv_balanced_accuracy']:.3f} ({r['real_cv_balanced_accuracy_classes_n5']:.3f}); log rate + CV2 on simulated "
        f"{r['summary_stats_balanced_accuracy']:.3f}; real-trained on simulated {r['real_to_sim_balanced_accuracy']:.3f}",
        flush=True,
    )
    if not args.no_cross_fit:
        cf = r["cross_fitted"] = cross_fitted(
            preset, real, args.n_per_class, duration, args.seed, data, config
        )
        print(
            f"{preset}: cross-fitted sim->{lab}: logistic {cf['logistic']['sim_to_real_balanced_accuracy']:.3f} "
            f"({cf['logistic']['sim_to_real_balanced_accuracy_classes_n5']:.3f}); real-data model "
            f"{cf['model']['sim_to_real_balanced_accuracy']:.3f} "
            f"({cf['model']['sim_to_real_balanced_accuracy_classes_n5']:.3f}); the model trained on real units "
            f"(same folds) {cf['model_real_cv']['real_cv_balanced_accuracy']:.3f}",
            flush=True,
        )
    for c, d in r["distance"].items():
        print(f"  {c:7s} energy distance ACG {d['acg']:.3f} ISI {d['isi']:.3f} waveform {d['waveform']:.3f}")
    return r, {"sim": sim, "real": real, "real_waves": real_waves}


def _reverse(args: argparse.Namespace, known: dict[str, float] | None = None) -> dict:
    """The reverse direction, or (``--skip-reverse``) the last measured one, saying so. ``known``:
    recording durations the presets just measured (not derived from the tables again)."""
    if args.skip_reverse:
        old = Path(args.out)
        prev = json.loads(old.read_text()).get("reverse", {}) if old.exists() else {}
        return {**prev, "kept_from_previous_run": True} if prev else {"skipped": "--skip-reverse"}
    with tempfile.TemporaryDirectory() as work:
        return reverse_direction(args.bundle, _durations(args, known or {}), Path(work))


def _durations(args: argparse.Namespace, known: dict[str, float]) -> dict[str, float]:
    """Seconds per simulated recording: ``--duration``, else as long as each lab's real tables
    (``known`` where already measured)."""
    if args.duration:
        return {p: float(args.duration) for p in LABS}
    from nwb_celltype.testing.real_data import real_c4_dir

    data = Path(args.data) if args.data else real_c4_dir()
    return {p: known[p] if p in known else table_duration_s(p, real_set(data, LABS[p][0])) for p in LABS}


def _write(results: dict, out: str | Path) -> None:
    """The results as indented JSON at ``out`` (folders made)."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(results, indent=1) + "\n")


def _write_reverse_only(args: argparse.Namespace) -> None:
    """Replace the reverse direction in ``args.out`` (kept otherwise) by a new measurement."""
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    results["reverse"] = _reverse(args)
    _write(results, out)
    print(json.dumps(results["reverse"], indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="real-c4 folder (default: real_c4_dir())")
    ap.add_argument("--n-per-class", type=int, default=120)
    ap.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds per simulated unit (default: as long as the real tables' recordings, per preset)",
    )
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--bundle", default=None, help="real-trained model bundle (default: the package default)")
    ap.add_argument("--quick", action="store_true", help="40 units per class, 300 s")
    ap.add_argument(
        "--no-cross-fit",
        action="store_true",
        help="skip the cross-fitted transfer (5 simulations per preset)",
    )
    ap.add_argument("--skip-reverse", action="store_true", help="skip the reverse direction")
    ap.add_argument(
        "--reverse-only",
        action="store_true",
        help="measure only the reverse direction and replace it in OUT (e.g. after rebuilding the default model)",
    )
    ap.add_argument(
        "--model-recipe",
        choices=MODEL_RECIPES,
        default="small",
        help="setting of the real-data model the transfer tests train: small (fast) or shipped (the default model's recipe)",
    )
    ap.add_argument("--presets", default=",".join(LABS), help="comma-separated presets to measure")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "realism.json"))
    ap.add_argument("--figures", default=str(ROOT / "docs" / "figures"))
    args = ap.parse_args()
    if args.quick:
        args.n_per_class, args.duration = 40, 300.0
    if args.reverse_only:
        _write_reverse_only(args)
        return
    from nwb_celltype.testing.real_data import real_c4_dir

    data = Path(args.data) if args.data else real_c4_dir()
    if data is None:
        raise SystemExit("no real-c4 tables found: pass --data DIR (see docs/validation.md)")
    results: dict = {
        "n_per_class": args.n_per_class,
        "model_recipe": args.model_recipe,
        "duration_s": args.duration or "per preset, matched to the real tables (table_duration_s)",
        "presets": {},
    }
    per_preset = {}
    for preset in LABS:
        if preset in args.presets.split(","):
            results["presets"][preset], per_preset[preset] = measure_preset(preset, data, args)
    results["figures"] = [os.path.relpath(p, ROOT) for p in figures(per_preset, Path(args.figures))]
    results["reverse"] = _reverse(args, {p: r["duration_s"] for p, r in results["presets"].items()})
    if "skipped" in results["reverse"]:
        print("reverse direction skipped:", results["reverse"]["skipped"])
    else:
        for p, d in results["reverse"]["presets"].items():
            print(f"real-trained model on simulated {p}: balanced accuracy {d['balanced_accuracy_all']:.3f}")
    _write(results, args.out)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
