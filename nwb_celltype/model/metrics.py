"""Classification metrics of probabilistic predictions (numpy only): confusion matrix, per-class
precision / recall / F1, balanced accuracy, accuracy vs fraction classified as the confidence
threshold varies, and expected calibration error."""

from __future__ import annotations

import numpy as np

from .decision import confidence_ratio, decide

__all__ = [
    "THRESHOLD_GRID",
    "classification_metrics",
    "confidence_ratio",
    "expected_calibration_error",
    "metrics_with_baselines",
]

#: Confidence-ratio thresholds of the accuracy vs fraction-classified curve.
THRESHOLD_GRID: tuple[float, ...] = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 20.0, 50.0)


def _confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    return cm


def _per_class(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 per class; NaN where undefined (no predictions / no true units), F1 = 0
    for a class that has true units or predictions but no correct one (sklearn's zero_division=0)."""
    tp = np.diag(cm).astype(float)
    pred_n, true_n = cm.sum(0), cm.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred_n > 0, tp / pred_n, np.nan)
        recall = np.where(true_n > 0, tp / true_n, np.nan)
        f1 = np.where(pred_n + true_n > 0, 2 * tp / (pred_n + true_n), np.nan)
    return precision, recall, f1


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    recalls = [np.mean(pred[y == c] == c) for c in range(k) if np.any(y == c)]
    return float(np.mean(recalls)) if recalls else float("nan")


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> dict:
    """Top-label expected calibration error with ``n_bins`` equal-width confidence bins.

    Returns a dict with ``ece`` and the reliability diagram (bin centres, accuracy, confidence, count).
    """
    conf = p.max(1)
    correct = (p.argmax(1) == y).astype(float)
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, n_bins - 1)
    acc, cnf, cnt = [], [], []
    ece = 0.0
    for b in range(n_bins):
        m = which == b
        cnt.append(int(m.sum()))
        acc.append(float(correct[m].mean()) if m.any() else None)
        cnf.append(float(conf[m].mean()) if m.any() else None)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return {
        "ece": float(ece),
        "bins": {
            "centre": ((edges[:-1] + edges[1:]) / 2).tolist(),
            "accuracy": acc,
            "confidence": cnf,
            "count": cnt,
        },
    }


def classification_metrics(
    y: np.ndarray,
    p: np.ndarray,
    classes: tuple[str, ...] | list[str],
    *,
    threshold: float = 2.0,
    abstain: np.ndarray | None = None,
) -> dict:
    """Metrics of probabilities ``p`` (n, k) against true class indices ``y`` (n,).

    "At threshold" metrics use only units whose confidence ratio (top1 / top2) reaches ``threshold``
    and that the model did not abstain on otherwise (``abstain``, e.g. out of distribution); the
    others are "unclassified", as in C4. ``fraction_classified`` says how many were classified;
    ``recall_abstain_as_miss`` (per class) and ``balanced_recall_abstain_as_miss`` count every
    unclassified unit as a miss of its class, over every class present (a class whose units were all
    abstained on scores 0); ``confidently_wrong`` is the fraction of all units classified wrongly.
    Returns a JSON-serialisable dict.
    """
    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(p, dtype=np.float64)
    k = len(classes)
    decision = decide(p, threshold)
    pred, ratio, keep = decision.predicted, decision.confidence, decision.classified
    held = np.zeros(len(y), bool) if abstain is None else np.asarray(abstain, bool)
    if held.shape != y.shape:
        raise ValueError(f"abstain must have shape {y.shape}, got {held.shape}.")
    keep = keep & ~held
    hit = keep & (pred == y)
    present = [c for c in range(k) if np.any(y == c)]
    miss_recall = {c: float(hit[y == c].mean()) for c in present}
    cm_all = _confusion(y, pred, k)
    cm_thr = _confusion(y[keep], pred[keep], k)
    prec, rec, f1 = _per_class(cm_thr)
    prec_a, rec_a, f1_a = _per_class(cm_all)

    def _l(a):
        return [None if not np.isfinite(v) else float(v) for v in a]

    curve = []
    for t in THRESHOLD_GRID:
        m = (ratio >= t) & ~held  # the decision rule at threshold t
        curve.append(
            {
                "threshold": t,
                "fraction_classified": float(m.mean()) if len(m) else float("nan"),
                "accuracy": float(np.mean(pred[m] == y[m])) if m.any() else None,
                "balanced_accuracy": _balanced_accuracy(y[m], pred[m], k) if m.any() else None,
            }
        )
    eps = 1e-12
    return {
        "classes": list(classes),
        "n_units": int(len(y)),
        "class_counts": np.bincount(y, minlength=k).tolist(),
        "threshold": float(threshold),
        "fraction_classified": float(keep.mean()) if len(keep) else float("nan"),
        "balanced_accuracy": _balanced_accuracy(y[keep], pred[keep], k) if keep.any() else float("nan"),
        "accuracy": float(np.mean(pred[keep] == y[keep])) if keep.any() else float("nan"),
        "balanced_accuracy_all": _balanced_accuracy(y, pred, k),
        "balanced_recall_abstain_as_miss": float(np.mean(list(miss_recall.values())))
        if present
        else float("nan"),
        "recall_abstain_as_miss": {classes[c]: r for c, r in miss_recall.items()},
        "confidently_wrong": float(np.mean(keep & (pred != y))) if len(y) else float("nan"),
        "fraction_abstained_other": float(held.mean()) if len(y) else float("nan"),
        "accuracy_all": float(np.mean(pred == y)) if len(y) else float("nan"),
        "confusion_matrix": cm_thr.tolist(),
        "confusion_matrix_all": cm_all.tolist(),
        "per_class": {
            c: {"precision": _l(prec)[i], "recall": _l(rec)[i], "f1": _l(f1)[i]}
            for i, c in enumerate(classes)
        },
        "per_class_all": {
            c: {"precision": _l(prec_a)[i], "recall": _l(rec_a)[i], "f1": _l(f1_a)[i]}
            for i, c in enumerate(classes)
        },
        "macro_f1": float(np.nanmean(f1)) if np.isfinite(f1).any() else float("nan"),
        "threshold_curve": curve,
        "calibration": expected_calibration_error(y, p),
        "nll": float(-np.mean(np.log(p[np.arange(len(y)), y] + eps))) if len(y) else float("nan"),
        "brier": float(np.mean(np.sum((p - np.eye(k)[y]) ** 2, axis=1))) if len(y) else float("nan"),
    }


def metrics_with_baselines(
    y: np.ndarray,
    p: np.ndarray,
    baselines: dict[str, np.ndarray],
    classes: tuple[str, ...] | list[str],
    *,
    threshold: float = 2.0,
    abstain: np.ndarray | None = None,
) -> tuple[dict, dict]:
    """:func:`classification_metrics` of a model's out-of-fold probabilities ``p`` (with its own
    abstentions) and of each baseline's (name -> (n, k), the same units and folds, no abstentions)."""
    model = classification_metrics(y, p, classes, threshold=threshold, abstain=abstain)
    base = {
        name: classification_metrics(y, bp, classes, threshold=threshold) for name, bp in baselines.items()
    }
    return model, base
