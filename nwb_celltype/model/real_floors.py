"""Ratio floors of the real-trained ensemble: per view and class, the confidence ratio
p(top1) / p(top2) below which a label is withheld (reason "confidence ratio below the model's floor
for this label"), fitted on the inner out-of-fold probabilities of the labelled units. numpy only.

Two rules (``RealModelConfig.floor_rule``; docs/validation.md, "How the floor rule of 1.4 was
chosen"): ``shared-budget`` (:func:`ratio_floors`, 1.4) chooses a view's floors together under one
budget of confidently wrong labels; ``per-label`` (:func:`per_label_floors`, 1.2-1.3) allows each
label a share of its own units.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import ModelError
from .decision import confidence_ratio

__all__ = [
    "FLOOR_GRID",
    "FLOOR_RULES",
    "FLOOR_THRESHOLD",
    "MIXED",
    "per_label_floors",
    "ratio_floors",
    "view_floors",
]

#: The view of units with a waveform scored by both member kinds (``RealModelConfig.mix_views``).
MIXED = "mixed"


#: Confidence ratios p(top1) / p(top2) among which :func:`ratio_floors` picks each class's floor.
FLOOR_GRID = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0, 1e6)
#: The decision threshold the floors are fitted for (C4's; ``confidently wrong`` is counted there).
FLOOR_THRESHOLD = 2.0


def ratio_floors(
    p: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    max_wrong: float,
    weights: np.ndarray | None = None,
    threshold: float = FLOOR_THRESHOLD,
) -> list[float]:
    """Per predicted class, a floor on the confidence ratio, the classes' floors chosen together:
    the floors that keep the most balanced recall at ``threshold`` while the confidently wrong labels
    (ratio reaching both the threshold and the label's floor, label wrong) weigh at most
    ``max_wrong`` of all units.

    p (n, C) out-of-fold probabilities of labelled units, y (n,) their classes, weights (n,) their
    weights (default 1; the lab weights, so that every lab's errors count the same). A unit labelled
    c counts when its ratio reaches ``max(threshold, floor_c)``; recall of class c is the weight of its
    units so labelled over the weight of its units, and the balanced recall their mean. Candidate
    floors are 1 (no floor) and the :data:`FLOOR_GRID` values above the threshold (1e6 = never).
    Among floors with the best balanced recall the lowest win (the budget is there to be used: a
    floor raised to just below the training units' correct labels cuts new units' correct labels).
    One budget over all classes lets a class whose errors are rare keep a low floor and a small
    class (MLI) keep its labels, where a per-class allowance of ``max_wrong`` of a small class's
    labels allows no error at all. Returns C floats.
    """
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    pred, ratio = p.argmax(1), confidence_ratio(p)
    options = (1.0,) + tuple(g for g in FLOOR_GRID if g > threshold)
    budget = max_wrong * w.sum() + 1e-9
    step = 1e-9  # tie-break: a lower floor (option index) is worth less than any recall difference
    # per class and option: (weight of confidently wrong labels, recall + tie-break)
    per_class = []
    for c in range(n_classes):
        as_c, total = pred == c, w[y == c].sum()
        opts = []
        for i, t in enumerate(options):
            kept = as_c & (ratio >= max(t, threshold))
            rec = w[kept & (y == c)].sum() / total if total > 0 else 0.0
            opts.append((float(w[kept & (y != c)].sum()), rec / n_classes - step * i, i))
        per_class.append(opts)
    # Pareto front over (wrong weight, value) built class by class: a choice survives only if no other
    # with at most its wrong weight has a higher value
    front: list[tuple[float, float, tuple[int, ...]]] = [(0.0, 0.0, ())]
    for opts in per_class:
        merged = sorted(
            (
                (fw + ow, fv + ov, fc + (oi,))
                for fw, fv, fc in front
                for ow, ov, oi in opts
                if fw + ow <= budget
            ),
            key=lambda t: (t[0], -t[1]),
        )
        front, best = [], -np.inf
        for cand in merged:
            if cand[1] > best:
                front.append(cand)
                best = cand[1]
    choice = max(front, key=lambda t: t[1])[2]
    return [options[i] for i in choice]


def per_label_floors(p: np.ndarray, y: np.ndarray, n_classes: int, max_wrong: float) -> list[float]:
    """The ``per-label`` rule (models 1.2-1.3): per predicted class, the lowest :data:`FLOOR_GRID`
    ratio above which at most ``max_wrong`` of the units given that label were wrong (all ratios
    counted, whatever the threshold). A small class's allowance is often below one unit, so any error
    among its labels raises its floor above that unit. A class never predicted gets no floor."""
    pred, ratio = p.argmax(1), confidence_ratio(p)
    floors = []
    for c in range(n_classes):
        as_c = pred == c
        wrong_above = ((as_c & (ratio >= t) & (y != c)).sum() for t in FLOOR_GRID)
        ok = (t for t, n in zip(FLOOR_GRID, wrong_above, strict=True) if n <= max_wrong * as_c.sum())
        floors.append(next(ok, FLOOR_GRID[-1]))
    return floors


#: Floor rules (``RealModelConfig.floor_rule``).
FLOOR_RULES = ("shared-budget", "per-label")


def view_floors(
    oof_p: Mapping, oof_y: Mapping, oof_w: Mapping, n_classes: int, max_wrong: float, rule: str
) -> dict:
    """Ratio floors per view, each fitted on the view's own inner out-of-fold units (lab weights
    ``oof_w``): :func:`ratio_floors` for the ``shared-budget`` rule, :func:`per_label_floors` for the
    ``per-label`` rule, where the mixed view must also clear the full view's floor for its label (a
    unit unlike every class must not get through more easily because the discharge members lend the
    mixture confidence). The shared budget fits the mixed view on its own: raising its floors to the
    full members' mixes two allocations and cut the mixed view's PkC_ss recall from 0.85 to 0.5 on the
    inner out-of-fold units."""
    if rule == "shared-budget":
        return {k: ratio_floors(oof_p[k], oof_y[k], n_classes, max_wrong, oof_w[k]) for k in oof_p}
    if rule != "per-label":
        raise ModelError(f"floor_rule must be one of {FLOOR_RULES}, got {rule!r}.")
    floors = {k: per_label_floors(oof_p[k], oof_y[k], n_classes, max_wrong) for k in oof_p}
    if MIXED in floors:
        floors[MIXED] = [max(a, b) for a, b in zip(floors[MIXED], floors["full"], strict=True)]
    return floors
