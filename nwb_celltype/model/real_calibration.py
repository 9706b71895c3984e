"""Temperatures of the real-trained ensemble (:mod:`.real_training`): each member kind's, each kernel
kind's (:mod:`.real_kernel`) and each mixed view's, fitted on the inner out-of-fold logits of the
labelled units, so that calibration never sees the units it is scored on; with
``RealModelConfig.calibrate_per_lab`` every lab (group) weighs the same in the fit.
"""

from __future__ import annotations

import numpy as np


def _temperature(logits: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Temperature minimising the (weighted) NLL of the seed-averaged softmax(logits / T); logits
    (S, n, C), y (n,), weights (n,) (default: equal)."""
    grid = np.exp(np.linspace(np.log(0.2), np.log(10.0), 161))
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    best, best_t = np.inf, 1.0
    for t in grid:
        z = logits / t
        z = z - z.max(-1, keepdims=True)
        p = np.exp(z)
        p = (p / p.sum(-1, keepdims=True)).mean(0)
        nll = -np.sum(w * np.log(p[np.arange(len(y)), y] + 1e-12))
        if nll < best:
            best, best_t = nll, float(t)
    return best_t


def _fit_temperature(cfg, logits: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """:func:`_temperature` of out-of-fold logits (S, n, C) of labelled units (classes y, labs
    groups), every lab weighing the same with ``cfg.calibrate_per_lab``."""
    return _temperature(logits, y, _group_weights(groups) if cfg.calibrate_per_lab else None)


def _fit_mixture_temperature(cfg, mix: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """The temperature that sharpens a mixture of calibrated probabilities mix (n, C)
    (:func:`.real_inputs.sharpen`), fitted as :func:`_fit_temperature` on its log-probabilities."""
    return _fit_temperature(cfg, np.log(mix + 1e-12)[None], y, groups)


def _group_weights(groups: np.ndarray) -> np.ndarray:
    """Weight per unit so that every group (lab) weighs the same in total; (n,), mean 1."""
    _, inv, counts = np.unique(groups, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inv]
    return w / w.mean()
