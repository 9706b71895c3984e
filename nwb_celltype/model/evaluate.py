"""Evaluation of the classifier: stratified k-fold or leave-one-out cross-validation (or a separate
test set, e.g. the cross-species check), baselines on the same folds (logistic regression on the same
features; a CellExplorer-style rule classifier on waveform width + firing rate), JSON + PNG output
(:mod:`.evaluation_report`).

Protocol: the VAEs are pre-trained once on every usable unit with labels unused (as C4 pre-trains on
all its recordings, test units included, without labels); for each outer fold a full ensemble (inner
CV folds, temperature) is trained on the training part and predicts the held-out units."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..errors import LibraryError
from .evaluation_report import EVALUATION_FILES, EvaluationReport, HeldOut, describe_data, score_text
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

__all__ = [
    "EVALUATION_FILES",
    "EvaluationReport",
    "HeldOut",
    "check_test_set_independent",
    "describe_data",
    "evaluate_model",
    "rule_features",
    "score_text",
]

_RATE_KEYS = ("mean_rate_hz", "firing_rate_hz", "rate_hz", "mean_firing_rate_hz")

#: The baselines scored on the same folds, and what each one reads.
_BASELINES = {
    "logistic_regression": "standardised ACG + waveform + layer, L2 (C=0.1), balanced class weights",
    "rule_width_rate": "CellExplorer-style rules on trough-to-peak width + log firing rate "
    "(depth-3 decision tree learned on the training folds)",
}


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


def transfer_scheme(n_train: int, n_test: int, untrained: dict[str, int] | None = None) -> str:
    """Description of the scheme that trains on all of the training set and scores the test set
    (``untrained``: class -> count of test units of classes the training set lacks, scored as misses)."""
    scheme = f"train on all {n_train} labelled units, test on {n_test} labelled units of test_set"
    if untrained:
        listed = ", ".join(f"{c} {n}" for c, n in untrained.items())
        scheme += (
            f" ({sum(untrained.values())} of classes the training set lacks, scored as misses: {listed})"
        )
    return scheme


#: Feature arrays compared, row by row, between a training and a test set (whichever a family has).
_CONTENT_ARRAYS = ("acg_counts", "isi_counts", "acg", "waveform")


def _labelled_feature_rows(ts) -> set[bytes]:
    """The feature rows (bytes) of ``ts``'s labelled units, less rows without any finite non-zero content."""
    fs = ts.features
    n = len(fs)
    x = np.concatenate(
        [
            np.asarray(getattr(fs, a), dtype=np.float64).reshape(n, -1)
            for a in _CONTENT_ARRAYS
            if hasattr(fs, a)
        ],
        axis=1,
    )
    labelled = np.array([isinstance(v, str) and v != "" for v in np.asarray(ts.labels, dtype=object)], bool)
    keep = labelled & np.isfinite(x).all(1) & (x != 0).any(1)
    return {x[i].tobytes() for i in np.flatnonzero(keep)}


def check_test_set_independent(training_set, test_set) -> None:
    """Refuse a test set that holds data of the training set: scores on units a model was trained on
    are in-sample, not a transfer. Raises :class:`~nwb_celltype.errors.LibraryError` where an entry
    of each has the same content sha256 (their references), or where a labelled test unit's feature
    row equals a labelled training unit's (the same units, imported or cut differently)."""
    train_sha = {str(r.get("sha256") or ""): r for r in getattr(training_set, "references", None) or []}
    shared = [
        r
        for r in getattr(test_set, "references", None) or []
        if str(r.get("sha256") or "") in train_sha.keys() - {""}
    ]
    fix = (
        "a transfer evaluation needs a test library of other recordings; to score the training library "
        "itself, drop --test (test_set) and cross-validate."
    )
    if shared:
        names = ", ".join(
            f"{r.get('name') or r.get('source')} (sha256 {str(r['sha256'])[:12]})" for r in shared
        )
        raise LibraryError(
            f"the test library shares {len(shared)} entr{'y' if len(shared) == 1 else 'ies'} with the training "
            f"library: {names}; its scores would be in-sample; {fix}"
        )
    same = _labelled_feature_rows(test_set) & _labelled_feature_rows(training_set)
    if same:
        raise LibraryError(
            f"{len(same)} labelled units of the test library have the same features as labelled units of the "
            f"training library (the same units, imported again?); their scores would be in-sample; {fix}"
        )


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
        (e.g. mouse -> macaque). Its units also pre-train the VAEs, labels unused. Refused where it
        holds training data (:func:`check_test_set_independent`); its units of classes the training
        set lacks are scored as misses (``EvaluationReport.untrained``).
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
    if test_set is not None:
        check_test_set_independent(training_set, test_set)
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
    """Train one ensemble on all of ``training_set``; score the labelled units of ``test_set``, those of
    classes the training set lacks too (as misses: the ensemble cannot give their label)."""
    untrained = tuple(c for c in labelled_rows(test_set)[2] if c not in classes)
    t_rows, t_y, _ = labelled_rows(test_set, classes + untrained)
    if not len(t_rows):
        raise LibraryError("the test set has no usable labelled unit: nothing to score.")
    result = train_ensemble(
        training_set, config, seed=seed, progress=progress, encoders=pre.encoders, classes=classes
    )
    p = _ensemble_proba(result, test_set.features, t_rows)
    base_p = {}
    if baselines:
        comb_rows = np.concatenate([rows, len(training_set.features) + t_rows])
        train_idx, test_idx = np.arange(len(rows)), np.arange(len(rows), len(comb_rows))
        base_p = _baselines(pre.features, comb_rows, np.concatenate([y, t_y]), train_idx, test_idx, seed)
    counts = {c: int(np.sum(t_y == len(classes) + i)) for i, c in enumerate(untrained)}
    scheme = transfer_scheme(len(rows), len(t_rows), counts)
    return HeldOut(scheme, t_y, p, base_p, rows=t_rows, untrained=untrained)


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
