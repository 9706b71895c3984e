"""C4's decision rule, written once: from mean class probabilities to a label or "unclassified".

The label is the argmax of the ensemble's mean probabilities; the confidence is the ratio of the top
two mean probabilities, p(top1) / p(top2) (inf where top2 is 0); a unit is classified when the
confidence reaches the threshold (C4: 2). The votes count, per class, the members whose own argmax it
is. Used by :func:`nwb_celltype.model.predict.predict`, :func:`nwb_celltype.model.c4.predict_c4` and
:func:`nwb_celltype.model.metrics.classification_metrics`. numpy only.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidValueError
from ..vocabulary import UNCLASSIFIED

__all__ = ["Decision", "check_threshold", "confidence_ratio", "decide"]

#: Reason of a unit left unclassified by the threshold alone.
BELOW_THRESHOLD = "confidence ratio below the threshold"


def below_threshold_reason(confidence: float, threshold: float) -> str:
    """The reason of a unit left unclassified by the threshold alone: "confidence ratio below the
    threshold (1.49 < 2)" (the ratio rounded down: never "2.00 < 2")."""
    shown = np.floor(confidence * 100) / 100
    return f"{BELOW_THRESHOLD} ({shown:.2f} < {threshold:g})"


def check_threshold(threshold: float) -> float:
    """The threshold as a float; :class:`InvalidValueError` unless it is a real number (int, float,
    numpy scalar; not a bool, str, None or sequence) that is a finite ratio >= 1. The one check of
    the threshold: :func:`nwb_celltype.annotate`, ``classify_*`` and the models use it."""
    is_number = isinstance(threshold, numbers.Real) and not isinstance(threshold, bool | np.bool_)
    if not is_number or not np.isfinite(threshold) or threshold < 1.0:
        got = f"{threshold!r}" if is_number else f"{threshold!r} ({type(threshold).__name__})"
        raise InvalidValueError(
            f"threshold must be a finite confidence ratio >= 1 (a number: p(top1) / p(top2)), got {got}; "
            "C4's default is 2."
        )
    return float(threshold)


def confidence_ratio(p: np.ndarray) -> np.ndarray:
    """p(top1) / p(top2) per row of probabilities ``p`` (n, k), float64; inf where top2 is 0 (and
    NaN where the row has NaN or is all zero)."""
    srt = np.sort(np.asarray(p, dtype=np.float64), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return srt[:, -1] / srt[:, -2]


@dataclass(frozen=True)
class Decision:
    """The decision for n units over k classes.

    Attributes
    ----------
    predicted : (n,) int64
        Index of the top mean probability (whatever the confidence).
    confidence : (n,) float64
        p(top1) / p(top2) of the mean probabilities.
    classified : (n,) bool
        ``confidence >= threshold`` (False where the confidence is NaN).
    votes : (n, k) int64 or None
        Members whose own argmax is each class (None when no member probabilities were given).
    """

    predicted: np.ndarray
    confidence: np.ndarray
    classified: np.ndarray
    votes: np.ndarray | None

    def labels(self, classes: Sequence[str]) -> np.ndarray:
        """(n,) object array: the class name where classified, else ``"unclassified"``."""
        names = np.asarray(list(classes), dtype=object)[self.predicted]
        return np.where(self.classified, names, UNCLASSIFIED).astype(object)


def decide(
    probabilities: np.ndarray, threshold: float, member_probabilities: np.ndarray | None = None
) -> Decision:
    """Apply the decision rule.

    Parameters
    ----------
    probabilities : (n, k) array
        Mean class probabilities over the ensemble.
    threshold : float
        Minimum confidence ratio p(top1) / p(top2) for a label (>= 1; C4: 2).
    member_probabilities : (M, n, k) array, optional
        Each member's probabilities, for the votes.

    Returns
    -------
    Decision

    Raises
    ------
    InvalidValueError
        ``threshold`` is not a finite ratio >= 1, or fewer than 2 classes.
    """
    threshold = check_threshold(threshold)
    p = np.asarray(probabilities)
    if p.ndim != 2:
        raise InvalidValueError(f"probabilities must be (n, k), got shape {p.shape}.")
    n, k = p.shape
    if k < 2:
        raise InvalidValueError(
            f"the decision rule needs at least 2 classes, got probabilities of shape {p.shape}."
        )
    confidence = confidence_ratio(p)
    predicted = p.argmax(axis=1).astype(np.int64)
    votes = None
    if member_probabilities is not None:
        top = np.asarray(member_probabilities).argmax(axis=-1)  # (M, n)
        votes = np.stack([(top == c).sum(axis=0) for c in range(k)], axis=1).astype(np.int64)
        votes = votes.reshape(n, k)
    return Decision(predicted, confidence, confidence >= threshold, votes)
