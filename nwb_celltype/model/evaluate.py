"""Evaluation of the classifier: stratified k-fold or leave-one-out cross-validation (or a separate
test set, e.g. the cross-species check), baselines on the same folds (logistic regression on the same
features; a CellExplorer-style rule classifier on waveform width + firing rate), JSON + PNG output.

Protocol: the VAEs are pre-trained once on every usable unit with labels unused (as C4 pre-trains on
all its recordings, test units included, without labels); for each outer fold a full ensemble (inner
CV folds, temperature) is trained on the training part and predicts the held-out units."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .._atomic import atomic_folder, write_figure, write_npz, write_text_file
from ..errors import LibraryError
from ._bundle_digest import _json_safe
from .metrics import metrics_with_baselines
from .training import (
    TrainConfig,
    TrainingSetLike,
    labelled_rows,
    pretrain_encoders,
    stratified_folds,
    tensors_from_features,
    train_ensemble,
    usable_rows,
)

logger = logging.getLogger(__name__)

__all__ = ["EvaluationReport", "evaluate_model", "rule_features"]

_RATE_KEYS = ("mean_rate_hz", "firing_rate_hz", "rate_hz", "mean_firing_rate_hz")

#: The baselines scored on the same folds, and what each one reads.
_BASELINES = {
    "logistic_regression": "standardised ACG + waveform + layer, L2 (C=0.1), balanced class weights",
    "rule_width_rate": "CellExplorer-style rules on trough-to-peak width + log firing rate "
    "(depth-3 decision tree learned on the training folds)",
}


@dataclass
class EvaluationReport:
    """Result of :func:`evaluate_model`.

    Attributes
    ----------
    classes : tuple of str
    y : (n,) int64
        True class index of each evaluated unit.
    probabilities : (n, k) float64
        Held-out ensemble probabilities.
    metrics : dict
        :func:`~.metrics.classification_metrics` of the ensemble at ``threshold``.
    baselines : dict of name -> metrics
        Same folds, same units.
    protocol : dict
        How the numbers were made (folds, seeds, config, timings).
    data : dict
        What was evaluated: ``training`` (and ``test``) references of the data (source, sha256,
        library, counts per file, as the model card records them) and ``software_versions``.
    units : dict of str -> (n,) array
        Which unit each row of ``y`` is: ``source`` (its file or tables) and ``unit_id``, where the
        data say (:func:`describe_data`).
    """

    classes: tuple[str, ...]
    y: np.ndarray
    probabilities: np.ndarray
    metrics: dict
    baselines: dict = field(default_factory=dict)
    protocol: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    units: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return _json_safe(
            {
                "classes": list(self.classes),
                "metrics": self.metrics,
                "baselines": self.baselines,
                "protocol": self.protocol,
                "data": self.data,
            }
        )

    def summary(self) -> str:
        """A few lines for humans."""
        m = self.metrics
        lines = [
            f"units evaluated: {m['n_units']} ({self.protocol.get('scheme')})",
            f"balanced accuracy @ threshold {m['threshold']:g}: {score_text(m['balanced_accuracy'])} "
            f"(fraction classified {m['fraction_classified']:.3f}); without threshold "
            f"{m['balanced_accuracy_all']:.3f}; ECE {m['calibration']['ece']:.3f}",
            f"abstentions counted as misses: balanced recall {m['balanced_recall_abstain_as_miss']:.3f}; "
            f"confidently wrong {m['confidently_wrong']:.3f} of all units",
            "per class (recall, abstentions as misses; units): "
            + ", ".join(
                f"{c} {r:.2f} (n={m['class_counts'][self.classes.index(c)]})"
                for c, r in m["recall_abstain_as_miss"].items()
            ),
        ]
        for name, b in self.baselines.items():
            lines.append(
                f"baseline {name}: balanced accuracy {b['balanced_accuracy_all']:.3f} without threshold; "
                f"{b['balanced_accuracy']:.3f} on the {b['fraction_classified']:.0%} classified at "
                f"{b['threshold']:g}"
            )
        return "\n".join(lines)

    def write(self, out_dir: str | Path, *, figures: bool = True) -> list[Path]:
        """Write ``evaluation.json`` and PNG figures (confusion matrix, per-class P/R/F1,
        accuracy vs fraction classified, reliability diagram) into ``out_dir``; returns the paths.

        The folder is written whole or not at all (:func:`nwb_celltype._atomic.atomic_folder`): an
        earlier evaluation there is replaced only once every file is written, and a folder holding
        other files (:data:`EVALUATION_FILES` are ours) is refused with
        :class:`~nwb_celltype.errors.OutputError`."""
        out = Path(out_dir)
        with atomic_folder(out, replace=True, owned=EVALUATION_FILES, what="an evaluation") as tmp:
            write_text_file(tmp / "evaluation.json", json.dumps(self.to_dict(), indent=1, allow_nan=False))
            units = {k: np.asarray(v) for k, v in self.units.items()}
            true = np.asarray(self.classes, dtype=str)[np.asarray(self.y, dtype=np.int64)]
            write_npz(
                tmp / "predictions.npz",
                {"y": self.y, "probabilities": self.probabilities, "true_label": true, **units},
                compressed=False,
            )
            paths = [tmp / "evaluation.json", tmp / "predictions.npz"]
            if figures:
                paths += _figures(self, tmp)
        return [out / p.name for p in paths]


#: What an evaluation folder holds (:func:`nwb_celltype._atomic.atomic_folder` patterns).
EVALUATION_FILES = (
    "evaluation.json",
    "predictions.npz",
    "confusion_matrix.png",
    "per_class.png",
    "threshold_curve.png",
    "reliability.png",
)


@dataclass
class HeldOut:
    """Held-out predictions of the scored units, as either evaluation scheme makes them.

    Attributes
    ----------
    scheme : str
        How the units were held out (:func:`outer_folds`, :func:`transfer_scheme`).
    y : (n,) int64
        True class index of each scored unit.
    p : (n, k) float64
        The model's probabilities, each from a model that never saw the unit's label.
    base_p : dict of name -> (n, k) float64
        The baselines' probabilities, from the same training parts.
    abstain : (n,) bool, optional
        Units the model did not classify (counted as misses); None where the family does not say.
    """

    scheme: str
    y: np.ndarray
    p: np.ndarray
    base_p: dict[str, np.ndarray]
    abstain: np.ndarray | None = None
    #: rows of the evaluated set (the test set of a transfer) the scored units are, where known
    rows: np.ndarray | None = None

    def report(
        self, classes: tuple[str, ...], threshold: float, describe: Callable[[], dict]
    ) -> EvaluationReport:
        """Metrics of the model and the baselines on these units; ``describe()`` (called last) gives the protocol."""
        metrics, base_metrics = metrics_with_baselines(
            self.y, self.p, self.base_p, classes, threshold=threshold, abstain=self.abstain
        )
        return EvaluationReport(
            classes=classes,
            y=self.y,
            probabilities=self.p,
            metrics=metrics,
            baselines=base_metrics,
            protocol=describe(),
        )


def describe_data(
    report: EvaluationReport, training_set, test_set, rows: np.ndarray | None
) -> EvaluationReport:
    """Record in ``report`` what was evaluated: the data references of the training (and test) set,
    the software versions, and which unit (source, unit id) each scored row is (``rows``: indices
    into the evaluated set, the test set of a transfer)."""
    from ..annotate import _software_versions

    def refs(ts) -> list:
        return [dict(r) for r in (getattr(ts, "references", None) or [])]

    report.data = {"training": refs(training_set), "software_versions": _software_versions()}
    if test_set is not None:
        report.data["test"] = refs(test_set)
    evaluated = test_set if test_set is not None else training_set
    fi = getattr(evaluated, "file_index", None)
    if rows is not None and fi is not None and len(rows) == len(report.y):
        sources = [str(r.get("source", "")) for r in refs(evaluated)]
        fi = np.asarray(fi, dtype=np.int64)[rows]
        report.units = {
            "source": np.array([sources[i] if 0 <= i < len(sources) else "" for i in fi], dtype=str),
            "unit_id": np.asarray(evaluated.features.unit_ids, dtype=np.int64)[rows],
        }
    return report


def _figures(rep: EvaluationReport, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    m, classes = rep.metrics, list(rep.classes)
    paths = []
    cm = np.asarray(m["confusion_matrix"], dtype=float)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", color="k" if norm[i, j] < 0.6 else "w")
    ax.set_xticks(range(len(classes)), classes, rotation=45)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion (threshold {m['threshold']:g}, {m['fraction_classified']:.0%} classified)")
    fig.tight_layout()
    paths.append(out / "confusion_matrix.png")
    write_figure(fig, paths[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    w = 0.27
    for i, key in enumerate(("precision", "recall", "f1")):
        vals = [m["per_class"][c][key] if m["per_class"][c][key] is not None else np.nan for c in classes]
        ax.bar(np.arange(len(classes)) + (i - 1) * w, vals, w, label=key)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"per class (balanced accuracy {m['balanced_accuracy']:.3f})")
    ax.legend(loc="lower right")
    fig.tight_layout()
    paths.append(out / "per_class.png")
    write_figure(fig, paths[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4))
    curve = [c for c in m["threshold_curve"] if c["accuracy"] is not None]
    ax.plot([c["fraction_classified"] for c in curve], [c["accuracy"] for c in curve], "o-", label="accuracy")
    ax.plot(
        [c["fraction_classified"] for c in curve],
        [c["balanced_accuracy"] for c in curve],
        "s--",
        label="balanced accuracy",
    )
    for c in curve:
        ax.annotate(f"{c['threshold']:g}", (c["fraction_classified"], c["accuracy"]), fontsize=7)
    ax.set_xlabel("fraction classified")
    ax.set_ylabel("accuracy of classified units")
    ax.set_title("accuracy vs fraction classified (threshold)")
    ax.legend()
    fig.tight_layout()
    paths.append(out / "threshold_curve.png")
    write_figure(fig, paths[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4))
    b = m["calibration"]["bins"]
    xs = [c for c, a in zip(b["centre"], b["accuracy"], strict=True) if a is not None]
    ys = [a for a in b["accuracy"] if a is not None]
    cs = [c for c in b["confidence"] if c is not None]
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.plot(cs, ys, "o-")
    ax.bar(xs, ys, width=0.1, alpha=0.2)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {m['calibration']['ece']:.3f})")
    fig.tight_layout()
    paths.append(out / "reliability.png")
    write_figure(fig, paths[-1], dpi=100)
    plt.close(fig)
    return paths


def rule_features(features) -> np.ndarray:
    """(n, 2) [trough-to-peak width (ms), log10 firing rate] for the rule-based baseline.

    The rate comes from ``features.stats`` (``mean_rate_hz`` or similar) when present, else from the
    ACG's long-lag level (proportional to the firing rate)."""
    wv = np.asarray(features.waveform, dtype=float)
    trough = np.nanargmin(wv, axis=1)
    after = np.where(np.arange(wv.shape[1])[None, :] >= trough[:, None], wv, -np.inf)
    peak = np.argmax(after, axis=1)
    width_ms = (peak - trough) / (features.config.waveform_rate_hz / 1000.0)
    rate = None
    for k in _RATE_KEYS:
        if k in features.stats:
            rate = np.asarray(features.stats[k], dtype=float)
            break
    if rate is None:
        rate = np.nanmean(np.asarray(features.acg, dtype=float)[:, :, -10:], axis=(1, 2))
    return np.stack([width_ms, np.log10(np.maximum(rate, 1e-3))], axis=1)


def _baselines(features, rows, y, train_idx, test_idx, seed) -> dict[str, np.ndarray]:
    """Held-out probabilities of the baselines for one fold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    n = len(features)
    x = np.concatenate(
        [features.acg.reshape(n, -1), features.waveform.reshape(n, -1), features.layer.reshape(n, -1)], axis=1
    )[rows]
    k = int(y.max()) + 1
    out = {}
    lr = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced"))
    lr.fit(x[train_idx], y[train_idx])
    out["logistic_regression"] = _full_proba(lr.predict_proba(x[test_idx]), lr[-1].classes_, k)
    xr = rule_features(features)[rows]
    tree = DecisionTreeClassifier(max_depth=3, class_weight="balanced", random_state=seed)
    tree.fit(xr[train_idx], y[train_idx])
    out["rule_width_rate"] = _full_proba(tree.predict_proba(xr[test_idx]), tree.classes_, k)
    return out


def _full_proba(p: np.ndarray, present: np.ndarray, k: int) -> np.ndarray:
    full = np.zeros((p.shape[0], k))
    full[:, present] = p
    return full


def _ensemble_proba(result, features, rows) -> np.ndarray:
    from .ensemble_cnn import EnsembleCNN

    ens = EnsembleCNN(result.states).eval()
    acg, wvf, lay = tensors_from_features(features, rows)
    with torch.inference_mode():
        logits, _ = ens(acg, wvf, lay if ens.use_layer else None)
        return torch.softmax(logits / result.temperature, dim=-1).mean(0).double().numpy()


class _Subset:
    def __init__(self, features, labels):
        self.features = features
        self.labels = labels


def outer_folds(y: np.ndarray, folds: int, leave_one_out: bool, seed: int) -> tuple[np.ndarray, int, str]:
    """Outer fold of each labelled unit (stratified, or one per unit), their number and a description."""
    if leave_one_out:
        return np.arange(len(y)), len(y), f"leave-one-out over {len(y)} labelled units"
    if folds < 2:
        raise LibraryError(f"folds must be >= 2, got {folds}; or pass leave_one_out=True.")
    fold = stratified_folds(y, folds, np.random.default_rng(seed + 7))
    return fold, folds, f"{folds}-fold stratified cross-validation"


def transfer_scheme(n_train: int, n_test: int) -> str:
    """Description of the scheme that trains on all of the training set and scores the test set."""
    return f"train on all {n_train} labelled units, test on {n_test} labelled units of test_set"


#: What a family's fold scorer returns for one outer fold: the held-out units' probabilities, their
#: abstentions (None where the family does not say) and the baselines' probabilities (name -> array).
FoldScores = tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]]


def cross_validate(
    y: np.ndarray,
    n_classes: int,
    score_fold: Callable[[int, np.ndarray, np.ndarray], FoldScores],
    *,
    folds: int,
    leave_one_out: bool,
    seed: int,
    base_names: tuple[str, ...] | list[str],
    abstain: bool = False,
    progress: bool = False,
) -> HeldOut:
    """Score every unit once, from the outer fold that held it out, and pool the out-of-fold predictions.

    ``score_fold(f, test_idx, train_idx)`` (indices into ``y``) trains on the training part of fold
    ``f`` and returns :data:`FoldScores` of its held-out units."""
    fold, n_folds, scheme = outer_folds(y, folds, leave_one_out, seed)
    p = np.zeros((len(y), n_classes))
    held = HeldOut(
        scheme, y, p, {b: np.zeros_like(p) for b in base_names}, np.zeros(len(y), bool) if abstain else None
    )
    it = range(n_folds)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="outer folds")
    for f in it:
        test_idx = np.flatnonzero(fold == f)
        held.p[test_idx], fold_abstain, fold_base_p = score_fold(f, test_idx, np.flatnonzero(fold != f))
        if held.abstain is not None:
            held.abstain[test_idx] = fold_abstain
        for name, bp in fold_base_p.items():
            held.base_p[name][test_idx] = bp
    return held


#: Evaluation of the other feature families' models: family -> "module:function" (lazy import).
FAMILY_EVALUATORS = {"acg-isi-wave": ".evaluate_discharge:evaluate_discharge"}


def _evaluate_other_family(family: str, training_set, *, config, **kw) -> EvaluationReport:
    import importlib

    if family not in FAMILY_EVALUATORS:
        raise LibraryError(
            f"no evaluation procedure for feature family {family!r}; known: {sorted(FAMILY_EVALUATORS)}."
        )
    if isinstance(config, TrainConfig):
        raise LibraryError(
            f"a TrainConfig (c4-3d settings) was given for {family!r} features; pass that family's "
            "configuration (nwb_celltype.model.real_networks.RealModelConfig for acg-isi-wave) or None."
        )
    module, _, func = FAMILY_EVALUATORS[family].partition(":")
    fn = getattr(importlib.import_module(module, __package__), func)
    return fn(training_set, config=config, **kw)


def evaluate_model(
    training_set: TrainingSetLike,
    *,
    folds: int = 5,
    leave_one_out: bool = False,
    test_set: TrainingSetLike | None = None,
    config: TrainConfig | None = None,
    seed: int = 0,
    threshold: float = 2.0,
    baselines: bool = True,
    progress: bool = False,
) -> EvaluationReport:
    """Cross-validate the full training procedure (or train on all and test on ``test_set``).

    Parameters
    ----------
    training_set : TrainingSetLike
        ``features`` + ``labels`` ("" = unlabelled; unlabelled units only pre-train the VAEs).
    folds : int
        Outer stratified folds (ignored with ``leave_one_out`` or ``test_set``).
    leave_one_out : bool
        One outer fold per labelled unit (slow: one ensemble per unit; use a small ``config``).
    test_set : TrainingSetLike, optional
        Train once on all of ``training_set``, evaluate on the labelled units of ``test_set``
        (e.g. mouse -> macaque). Its units also pre-train the VAEs, labels unused.
    config : TrainConfig, optional
        Settings of each trained ensemble. For features of another family (e.g. ``acg-isi-wave``
        tables) that family's evaluation runs instead (:data:`FAMILY_EVALUATORS`; for
        ``acg-isi-wave``: :func:`~.evaluate_discharge.evaluate_discharge`, ``config`` a
        ``RealModelConfig`` or None).
    seed : int
    threshold : float
        Confidence-ratio threshold of the "at threshold" metrics.
    baselines : bool
        Also score logistic regression and the width + rate rule classifier on the same folds.
    progress : bool

    Returns
    -------
    EvaluationReport
    """
    from ..features.families import family_of

    family = family_of(training_set.features).name
    if family != "c4-3d":
        return _evaluate_other_family(
            family,
            training_set,
            folds=folds,
            leave_one_out=leave_one_out,
            test_set=test_set,
            config=config,
            seed=seed,
            threshold=threshold,
            baselines=baselines,
            progress=progress,
        )
    config = config or TrainConfig()
    t0 = time.perf_counter()
    rows, y, classes = labelled_rows(training_set)
    pre = _pretrain_once(training_set, test_set, config, seed=seed, progress=progress, t0=t0)
    if test_set is not None:
        held = _transfer(training_set, test_set, rows, y, classes, pre, config, seed, progress, baselines)
    else:
        held = cross_validate(
            y,
            len(classes),
            _fold_scorer(training_set, rows, y, classes, pre.encoders, config, seed, baselines),
            folds=folds,
            leave_one_out=leave_one_out,
            seed=seed,
            base_names=tuple(_BASELINES) if baselines else (),
            progress=progress,
        )
        held.rows = rows
    report = held.report(
        classes, threshold, lambda: _protocol(held.scheme, config, seed, threshold, pre, t0, baselines)
    )
    return describe_data(report, training_set, test_set, held.rows)


@dataclass
class _SharedPretraining:
    """The VAEs pre-trained once for the whole evaluation, labels unused."""

    features: object  # every unit they could see: the training set's, then the test set's
    n_units: int
    encoders: tuple[dict, dict]
    history: dict
    seconds: float  # since the evaluation started


def _pretrain_once(training_set, test_set, config: TrainConfig, *, seed: int, progress: bool, t0: float):
    """Pre-train the VAEs once on every usable unit of the training (and test) set, labels unused."""
    from ..features.config import FeatureSet

    feats = training_set.features
    all_feats = FeatureSet.concatenate([feats, test_set.features]) if test_set is not None else feats
    pre_rows = np.flatnonzero(usable_rows(all_feats))
    acg_s, wvf_s, hist = pretrain_encoders(all_feats, pre_rows, config, seed=seed, progress=progress)
    return _SharedPretraining(all_feats, len(pre_rows), (acg_s, wvf_s), hist, time.perf_counter() - t0)


def _transfer(training_set, test_set, rows, y, classes, pre, config, seed, progress, baselines) -> HeldOut:
    """Train one ensemble on all of ``training_set``; score the labelled units of ``test_set``."""
    t_rows, t_y, _ = labelled_rows(test_set, classes)
    result = train_ensemble(
        training_set, config, seed=seed, progress=progress, encoders=pre.encoders, classes=classes
    )
    p = _ensemble_proba(result, test_set.features, t_rows)
    base_p = {}
    if baselines:
        comb_rows = np.concatenate([rows, len(training_set.features) + t_rows])
        train_idx, test_idx = np.arange(len(rows)), np.arange(len(rows), len(comb_rows))
        base_p = _baselines(pre.features, comb_rows, np.concatenate([y, t_y]), train_idx, test_idx, seed)
    return HeldOut(transfer_scheme(len(rows), len(t_rows)), t_y, p, base_p, rows=t_rows)


def _fold_scorer(training_set, rows, y, classes, encoders, config, seed, baselines):
    """Scorer of one outer fold: an ensemble trained with the held-out labels hidden, and the baselines."""
    feats = training_set.features
    labels = np.asarray(training_set.labels, dtype=object)

    def score(f: int, test_idx: np.ndarray, train_idx: np.ndarray) -> FoldScores:
        sub_labels = labels.copy()
        sub_labels[rows[test_idx]] = ""  # held-out labels are never seen
        inner = _inner_config(config, y[train_idx], len(classes))
        result = train_ensemble(
            _Subset(feats, sub_labels), inner, seed=seed + f, encoders=encoders, classes=classes
        )
        p = _ensemble_proba(result, feats, rows[test_idx])
        base_p = _baselines(feats, rows, y, train_idx, test_idx, seed) if baselines else {}
        return p, None, base_p

    return score


def _inner_config(config: TrainConfig, y_train: np.ndarray, n_classes: int) -> TrainConfig:
    """``config`` with its inner folds lowered to the smallest class of the training part (at least 2)."""
    counts = np.bincount(y_train, minlength=n_classes)
    if counts.min() < config.folds:
        return replace(config, folds=max(2, int(counts.min())))
    return config


def _protocol(
    scheme: str, config: TrainConfig, seed: int, threshold: float, pre: _SharedPretraining, t0, baselines=True
):
    """How the numbers were made: scheme, seed, config, pre-training, timings, baselines."""
    return {
        "scheme": scheme,
        "seed": seed,
        "threshold": threshold,
        "config": config.to_dict(),
        "pretraining": f"VAEs pre-trained once on {pre.n_units} usable units, labels unused",
        "pretrain_seconds": pre.seconds,
        "seconds": time.perf_counter() - t0,
        "vae_final_loss": {k: v[-1] if v else None for k, v in pre.history.items()},
        "baselines": dict(_BASELINES) if baselines else {},
    }


def score_text(x) -> str:
    """A score to 3 decimals, or "n/a (no unit classified)" where it is undefined (NaN)."""
    return "n/a (no unit classified)" if x is None or x != x else f"{x:.3f}"
