"""Evaluation of the real-data model family (``acg-isi-wave``): the protocol of docs/validation.md as a
package function, for any library of feature tables or NWB files with ground truth.

Protocol: stratified outer folds (or leave-one-out, or a separate test set). For each outer fold a
whole model is trained with :func:`~.discharge_bundle.train_discharge_model` on the training part:
its autoencoders pre-train on the training units and every unlabelled unit (labels unused), **never
on the held-out units**; its temperatures and out-of-distribution thresholds come from its own inner
out-of-fold scores. The held-out units are then classified by
:func:`~.discharge_bundle.predict_discharge`, the same code as ``annotate``, so every abstention
(below the confidence threshold or the model's floor for the label, out of distribution, members
disagreeing) counts: recall with abstentions as misses,
coverage and the confidently-wrong fraction are reported beside accuracy. Baselines on the same
folds: logistic regression on log rate + CV2 + waveform width, and on the raw features.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ..agreement import NO_LABEL
from ..errors import LibraryError, ModelMismatchError
from ..features.discharge import FAMILY
from ..features.discharge_inputs import (
    acg_minmax_shape,
    isi_log_distribution,
    rate_cv2_width,
    waveform_inputs,
)

__all__ = ["BASELINES", "discharge_baselines", "evaluate_discharge"]

logger = logging.getLogger(__name__)

C4_CLASSES = ("PkC_ss", "PkC_cs", "MLI", "GoC", "MFB")

#: The baselines scored on the same folds, and what each one reads.
BASELINES = {
    "logreg_rate_cv2_width": "logistic regression on log rate proxy + CV2 proxy + waveform width "
    "(nwb_celltype.features.discharge_inputs.rate_cv2_width), C = 1, balanced class weights",
    "logreg_raw_features": "logistic regression on min-max ACG + log ISI distribution + waveform, "
    "C = 0.01, balanced class weights",
}


def _simple(raw: dict) -> np.ndarray:
    x = rate_cv2_width(raw["acg_counts"], raw["isi_counts"], raw["waveform"])
    return np.column_stack([x[:, :2], np.nan_to_num(x[:, 2], nan=0.3), np.isnan(x[:, 2])])


def _raw_features(raw: dict) -> np.ndarray:
    return np.concatenate(
        [
            acg_minmax_shape(raw["acg_counts"]),
            isi_log_distribution(raw["isi_counts"]),
            waveform_inputs(raw["waveform"])[0],
        ],
        1,
    )


def discharge_baselines(train_raw: dict, y_train: np.ndarray, test_raw: dict, n_classes: int) -> dict:
    """Held-out probabilities (n_test, n_classes) of the :data:`BASELINES`, trained on ``train_raw``.

    ``*_raw`` are dicts of ``acg_counts`` (n, 100), ``isi_counts`` (n, 100) and ``waveform``
    (n, 75; NaN rows where missing); ``y_train`` (n_train,) class indices.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = {}
    for name, f, c in (("logreg_rate_cv2_width", _simple, 1.0), ("logreg_raw_features", _raw_features, 0.01)):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000, class_weight="balanced"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(f(train_raw), y_train)
        p = np.zeros((len(test_raw["acg_counts"]), n_classes))
        p[:, clf.classes_] = clf.predict_proba(f(test_raw))
        out[name] = p
    return out


@dataclass
class _Part:
    """A training-set-like slice (what :func:`~.discharge_bundle.train_discharge_model` reads)."""

    features: object
    labels: np.ndarray
    references: list
    file_index: np.ndarray

    def without(self, rows: np.ndarray) -> _Part:
        """This set less ``rows``: held-out units give a model neither labels nor pre-training."""
        keep = np.ones(len(self.features), bool)
        keep[rows] = False
        return _Part(
            self.features.subset(np.flatnonzero(keep)),
            self.labels[keep],
            self.references,
            self.file_index[keep],
        )


def _raw(fs) -> dict:
    w = np.where(np.asarray(fs.has_waveform, bool)[:, None], fs.waveform, np.nan)
    return {"acg_counts": fs.acg_counts, "isi_counts": fs.isi_counts, "waveform": w}


def _scored_rows(training_set, classes) -> tuple[np.ndarray, np.ndarray]:
    """Rows that can be scored (label in ``classes``, discharge present) and their class indices."""
    fs = training_set.features
    labels = np.asarray(training_set.labels, dtype=object).astype(str)
    ok = np.isin(labels, classes) & np.asarray(fs.usable, bool) & np.asarray(fs.has_discharge, bool)
    rows = np.flatnonzero(ok)
    return rows, np.array([classes.index(v) for v in labels[rows]], dtype=np.int64)


def _species(part, rows: np.ndarray) -> np.ndarray:
    """The species each of ``rows`` of a training set's units comes from (its file's or table's
    reference; "" where none is stated)."""
    refs, index = part.references, np.asarray(part.file_index)[rows]
    return np.array([str(refs[int(k)].get("species") or "") for k in index], dtype=object)


def _fit_and_score(part: _Part, test_fs, classes, config, threshold, species=None):
    """Train a whole model on ``part``; classify ``test_fs`` (units of ``species``) as annotate does.
    Returns the held-out probabilities, the units the model abstained on by its own rules (out of
    distribution, members disagreeing, below the label's ratio floor, species; unusable features),
    not by the threshold: :func:`~.metrics.classification_metrics` applies the threshold, and each
    threshold of its accuracy-coverage curve, itself; and the labels given at ``threshold``."""
    from ..vocabulary import UNCLASSIFIED
    from .discharge_bundle import _predict_units, train_discharge_model

    bundle = train_discharge_model(part, classes=classes, config=config, name="evaluate", version="0")
    # at ratio 1 every unit with probabilities passes the threshold: what is left unclassified is what
    # the model's rules withheld (none of them depends on the threshold)
    pred = _predict_units(bundle, test_fs, threshold=1.0, species=species)
    by_rules = np.asarray(pred.status) != "classified"
    with np.errstate(invalid="ignore"):
        below = np.asarray(pred.confidence, float) < threshold
    given = np.where(~by_rules & below, UNCLASSIFIED, np.asarray(pred.labels, dtype=object))
    logger.info(
        "labelled %d / %d held-out units at threshold %g (%d withheld by the model's rules, %d below the threshold)",
        int((~by_rules & ~below).sum()),
        len(by_rules),
        threshold,
        int(by_rules.sum()),
        int((~by_rules & below).sum()),
    )
    return np.asarray(pred.probabilities, float), by_rules, given


def evaluate_discharge(
    training_set,
    *,
    folds: int = 5,
    leave_one_out: bool = False,
    test_set=None,
    config=None,
    seed: int = 0,
    threshold: float = 2.0,
    baselines: bool = True,
    progress: bool = False,
    classes: tuple[str, ...] | None = None,
):
    """Cross-validate the real-data model family (or train on all and test on ``test_set``).

    Parameters
    ----------
    training_set : TrainingSet
        A library loaded with ``config=DischargeConfig()`` (:func:`nwb_celltype.library.load_training_set`).
        Units labelled with a class outside ``classes`` (e.g. GrC) and unlabelled ones only
        pre-train the encoders of each fold's model.
    folds, leave_one_out, test_set, seed, threshold, baselines, progress
        As :func:`~.evaluate.evaluate_model`.
    config : RealModelConfig, optional
        Settings of each trained model (default: those of the shipped model).
    classes : tuple of str, optional
        Classes to learn and score (default: the C4 classes present among the labels).

    Returns
    -------
    EvaluationReport
        ``metrics`` with abstentions (out of distribution, below the threshold or the label's ratio
        floor, members disagreeing) counted as misses in
        ``recall_abstain_as_miss``; baselines on the same folds.
    """
    from .decision import check_threshold
    from .evaluate import check_test_set_independent, cross_validate
    from .evaluation_report import describe_data
    from .real_networks import RealModelConfig

    threshold = check_threshold(threshold)  # before any training, not after the last fold
    fs = training_set.features
    _check_family(fs)
    if test_set is not None:
        _check_family(test_set.features)
        check_test_set_independent(training_set, test_set)
    config = config or RealModelConfig(seed=seed)
    labels = np.asarray(training_set.labels, dtype=object).astype(str)
    # test units of these classes are scored even where the training set lacks their class
    scope = C4_CLASSES if classes is None else tuple(classes)
    classes = _classes_to_score(labels, classes)
    rows, y = _scored_rows(training_set, classes)
    t0 = time.perf_counter()
    whole = _Part(fs, labels, training_set.references, np.asarray(training_set.file_index))
    if test_set is not None:
        held = _transfer(training_set, test_set, rows, y, (classes, scope), config, threshold, baselines)
    else:
        held = cross_validate(
            y,
            len(classes),
            _fold_scorer(whole, rows, y, classes, config, threshold, baselines),
            folds=folds,
            leave_one_out=leave_one_out,
            seed=seed,
            base_names=tuple(BASELINES) if baselines else (),
            abstain=True,
            progress=progress,
        )
        held.rows = rows
    report = held.report(
        classes, threshold, lambda: _protocol(held.scheme, config, seed, threshold, baselines, t0)
    )
    return describe_data(report, training_set, test_set, held.rows)


def _check_family(fs) -> None:
    """Refuse features of another family than ``acg-isi-wave``."""
    if getattr(fs, "family", None) != FAMILY:
        raise ModelMismatchError(
            f"evaluate_discharge needs {FAMILY!r} features; load the library with config=DischargeConfig() "
            "(CLI: evaluate --family acg-isi-wave)."
        )


def _classes_to_score(labels: np.ndarray, classes) -> tuple[str, ...]:
    """``classes``, or the C4 classes present among ``labels``; at least two."""
    if classes is None:
        classes = tuple(c for c in C4_CLASSES if c in set(labels))
    classes = tuple(classes)
    if len(classes) < 2:
        raise LibraryError(f"evaluation needs labelled units of at least 2 classes; found {list(classes)}.")
    return classes


def _transfer(training_set, test_set, rows, y, classes_scope, config, threshold, baselines):
    """Train one model on all of ``training_set``; classify the labelled units of ``test_set`` whose
    class is in ``scope`` (``classes_scope`` = (the model's classes, scope)): those of a class the
    model was not trained on are scored as misses (it cannot give their label)."""
    from .evaluate import transfer_scheme
    from .evaluation_report import HeldOut

    classes, scope = classes_scope
    test_labels = set(np.asarray(test_set.labels, dtype=object).astype(str))
    untrained = tuple(c for c in scope if c in test_labels and c not in classes)
    t_rows, t_y = _scored_rows(test_set, classes + untrained)
    if not len(t_rows):
        raise LibraryError(f"the test set has no labelled unit of the classes {list(classes)}.")
    o_rows, o_labels = _outside_rows(test_set, scope)
    both = np.concatenate([t_rows, o_rows])
    p, abstain, given = _fit_and_score(
        training_set, test_set.features.subset(both), classes, config, threshold, _species(test_set, both)
    )
    n = len(t_rows)
    outside = outside_classes_summary(o_labels, given[n:], ~np.isin(given[n:], classes))
    p, abstain, test_fs = p[:n], abstain[:n], test_set.features.subset(t_rows)
    base_p = {}
    if baselines:
        base_p = discharge_baselines(_raw(training_set.features.subset(rows)), y, _raw(test_fs), len(classes))
    counts = {c: int(np.sum(t_y == len(classes) + i)) for i, c in enumerate(untrained)}
    scheme = transfer_scheme(len(rows), len(t_rows), counts)
    return HeldOut(scheme, t_y, p, base_p, abstain, rows=t_rows, untrained=untrained, outside=outside)


def _outside_rows(test_set, scope) -> tuple[np.ndarray, np.ndarray]:
    """Rows of test units labelled with a class outside ``scope`` (GrC, UBC, ...) that the model can
    score (discharge present), and their labels: no model here can give their label, so what counts
    is how often it labels them at all."""
    fs = test_set.features
    labels = np.asarray(test_set.labels, dtype=object).astype(str)
    named = ~np.isin(labels, list(scope)) & ~np.isin(np.char.lower(labels.astype(str)), list(NO_LABEL))
    rows = np.flatnonzero(named & np.asarray(fs.usable, bool) & np.asarray(fs.has_discharge, bool))
    return rows, labels[rows]


def outside_classes_summary(labels: np.ndarray, given: np.ndarray, abstain: np.ndarray) -> dict:
    """Per class outside the model's (``labels`` of the units): ``units``, ``confidently_labelled``
    (units given a C4 label, at the threshold and the model's rules), its ``fraction`` and
    ``labels_given`` (label -> units)."""
    out = {}
    for c in dict.fromkeys(labels.tolist()):
        m = labels == c
        lab = m & ~abstain
        out[c] = {
            "units": int(m.sum()),
            "confidently_labelled": int(lab.sum()),
            "fraction": float(lab.sum() / m.sum()),
            "labels_given": {
                str(k): int(v) for k, v in zip(*np.unique(given[lab], return_counts=True), strict=True)
            },
        }
    return out


def _fold_scorer(whole: _Part, rows, y, classes, config, threshold, baselines):
    """Scorer of one outer fold: a whole model trained without the held-out units, and the baselines."""
    fs = whole.features

    def score(f: int, test_idx: np.ndarray, train_idx: np.ndarray):
        test_fs = fs.subset(rows[test_idx])
        p, abstain, _ = _fit_and_score(
            whole.without(rows[test_idx]),
            test_fs,
            classes,
            config,
            threshold,
            _species(whole, rows[test_idx]),
        )
        base_p = {}
        if baselines:
            train_raw = _raw(fs.subset(rows[train_idx]))
            base_p = discharge_baselines(train_raw, y[train_idx], _raw(test_fs), len(classes))
        return p, abstain, base_p

    return score


def _protocol(scheme: str, config, seed: int, threshold: float, baselines: bool, t0: float) -> dict:
    """How the numbers were made: scheme, seed, config, what pre-trains, what abstains, timing, baselines."""
    return {
        "family": FAMILY,
        "scheme": scheme,
        "seed": seed,
        "threshold": threshold,
        "config": config.to_dict(),
        "pretraining": "each fold's autoencoders pre-train on its training units and every unlabelled unit "
        "(labels unused), never on the held-out units",
        "abstentions": "below the threshold or the model's floor for the label, out of distribution, no "
        "majority of members behind the label, or a label whose class the unit's species (its file's or "
        "table's) gave the model too few training units of "
        "(predict_discharge, as annotate); "
        "counted as misses in recall_abstain_as_miss",
        "seconds": time.perf_counter() - t0,
        "baselines": dict(BASELINES) if baselines else {},
    }
