"""Kernel members of the real-trained ensemble: a multinomial logistic regression on random Fourier
features of the model's quantile-mapped inputs (an approximate RBF-kernel classifier), beside the
neural members.

Why (docs/validation.md, "Kernel members (new in 1.6)"): on the validation benchmark's folds an RBF support
vector machine on the same inputs labelled macaque MLI and units of the other species better than
the neural members (benchmarks/bench_table_limits.py), and the two were partly complementary. A
support vector machine stores its support vectors - copies of the training units' features - so the
shipped model uses random Fourier features instead (Rahimi & Recht, NIPS 2007): ``z(x) = sqrt(2/D)
cos(x W + b)``, ``W ~ N(0, 2 gamma)``, ``b ~ U(0, 2 pi)``, whose inner products approximate the RBF
kernel ``exp(-gamma |x - x'|^2)``; what ships is the random map and the regression weights, no unit.
``gamma`` is scikit-learn's ``"scale"`` rule, ``1 / (d var(x))`` over the rows the members train
on (every fold's: labels unused).

The regression is trained without class balancing (optional sample weights, e.g. the labs within a
class: ``RealModelConfig.kernel_lab_weights``) and decided *balanced*: its log-probabilities minus the
log of each class's (weighted) share of the training rows (probabilities divided by the training class
frequencies), which labelled the small classes (MLI) better than class-weighted training on the same
folds. One
member per fold (trained without it), like the neural members; a kernel kind per neural kind
(``full``: discharge + waveform inputs, ``discharge``: discharge inputs only). numpy at prediction;
scikit-learn (a runtime dependency) to train.

Within the training recipe (:mod:`.real_training`): :func:`kernel_row_inputs` (the inputs of the
rows the members train on), :func:`train_kernel_kinds` (per kind: the random map, the members, the
temperature of their out-of-fold logits), :func:`mix_kernel_views` (each view's out-of-fold
probabilities mixed with its kernel kind's and sharpened) and :func:`kernel_meta` (the model
card's ``kernel`` entry), which prediction (:mod:`.real_ensemble`) reads back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ModelError
from .real_calibration import _fit_mixture_temperature, _fit_temperature
from .real_inference import softmax
from .real_inputs import KINDS, sharpen

if TYPE_CHECKING:
    from .real_training import _Rows

__all__ = [
    "fit_feature_map",
    "kernel_features",
    "kernel_inputs",
    "kernel_kind",
    "kernel_logits",
    "kernel_meta",
    "kernel_row_inputs",
    "mix_kernel",
    "mix_kernel_views",
    "train_kernel_kinds",
    "train_kernel_members",
]

#: Logit of a class absent from a member's training rows (never its most probable class).
_ABSENT = -30.0


def kernel_kind(view: str) -> str:
    """The kernel kind whose members mix into a view: ``discharge`` for the discharge-only view,
    ``full`` for the others (``full``, ``mixed``)."""
    return "discharge" if view == "discharge" else "full"


def mix_kernel(p: np.ndarray, p_kernel: np.ndarray, share: float) -> np.ndarray:
    """A view's probabilities p (n, C) mixed with its kernel members' mean p_kernel (n, C):
    ``(1 - share) p + share p_kernel`` (before the view's sharpening), at training and prediction."""
    return (1.0 - share) * p + share * p_kernel


def kernel_inputs(x: Mapping[str, np.ndarray], tensors: Mapping, kind: str) -> np.ndarray:
    """Kernel input (n, d) of member kind ``kind`` from the standardised model inputs ``x[part]``:
    each part times its standardisation scale (the quantile-mapped inputs, shifted by their pool mean,
    which an RBF kernel does not see), discharge then waveform (``full``) or discharge only."""
    parts = ("discharge", "waveform") if kind == "full" else ("discharge",)
    cols = [np.asarray(x[p], np.float64) * np.asarray(tensors[f"norm.{p}.std"], np.float64) for p in parts]
    return np.nan_to_num(np.concatenate(cols, axis=1))


def fit_feature_map(pool: np.ndarray, n_features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The random map (W (d, D), b (D,)) for kernel inputs like ``pool`` (n, d): gamma =
    ``1 / (d var(pool))``, W ~ N(0, 2 gamma), b ~ U(0, 2 pi); float32."""
    pool = np.asarray(pool, np.float64)
    d = pool.shape[1]
    gamma = 1.0 / (d * max(float(pool.var()), 1e-12))
    rng = np.random.default_rng(seed)
    w = rng.normal(0.0, np.sqrt(2.0 * gamma), (d, n_features))
    b = rng.uniform(0.0, 2.0 * np.pi, n_features)
    return w.astype(np.float32), b.astype(np.float32)


def kernel_features(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Random Fourier features ``sqrt(2/D) cos(x W + b)`` (n, D), float64."""
    w, b = np.asarray(w, np.float64), np.asarray(b, np.float64)
    return np.sqrt(2.0 / w.shape[1]) * np.cos(np.asarray(x, np.float64) @ w + b)


def train_kernel_members(
    z: np.ndarray,
    y: np.ndarray,
    fold: np.ndarray,
    usable: np.ndarray,
    n_classes: int,
    c: float,
    kind: str = "full",
    weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One logistic regression per fold f on the usable rows of the other folds.

    z (n, D) features, y (n,) classes, fold (n,) fold of each row, usable (n,) bool, weight (n,)
    optional sample weights (scaled to mean 1 over each member's training rows). Each member's
    intercept includes minus the log of each class's (weighted) share of its training rows (the balanced
    decision; a class absent from them gets a logit of -30; a member whose rows hold one class says
    that class). Returns coefficients (F, C, D),
    intercepts (F, C) and the out-of-fold logits (1, n, C) of the usable rows (NaN elsewhere).
    """
    from sklearn.linear_model import LogisticRegression

    folds = int(fold.max()) + 1
    coef = np.zeros((folds, n_classes, z.shape[1]))
    intercept = np.full((folds, n_classes), _ABSENT)
    oof = np.full((1, len(y), n_classes), np.nan)
    for f in range(folds):
        train = usable & (fold != f)
        present = np.unique(y[train])
        held = usable & (fold == f)
        if len(present) == 0:
            raise ModelError(
                f"the {kind!r} kernel member without fold {f} has no labelled rows to train on; give "
                "more labelled units (or train with kernel_share=0)."
            )
        if len(present) == 1:  # a small library: the member can only say the class it saw
            intercept[f, present[0]] = 0.0
            oof[0, held] = intercept[f]
            continue
        w = np.ones(int(train.sum())) if weight is None else np.asarray(weight, np.float64)[train]
        w = w / w.mean()
        m = LogisticRegression(C=c, max_iter=5000, tol=1e-6).fit(z[train], y[train], sample_weight=w)
        share = np.array([w[y[train] == k].sum() / w.sum() for k in m.classes_])
        if len(present) == 2:  # scikit-learn's binary layout: one row for the second class
            coef[f, present[1]] = m.coef_[0]
            intercept[f, present] = (0.0, m.intercept_[0])
        else:
            coef[f, m.classes_], intercept[f, m.classes_] = m.coef_, m.intercept_
        intercept[f, m.classes_] -= np.log(share)
        oof[0, held] = z[held] @ coef[f].T + intercept[f]
    return coef.astype(np.float32), intercept.astype(np.float32), oof


def kernel_logits(tensors: Mapping, kind: str, x: np.ndarray) -> np.ndarray:
    """Logits (F, n, C) of the kernel members of kind ``kind`` for kernel inputs x (n, d):
    ``kernel.<kind>.map_w`` / ``map_b`` (the random map), ``coef`` (F, C, D), ``intercept`` (F, C)."""
    p = f"kernel.{kind}."
    if p + "coef" not in tensors:
        raise ModelError(f"the model has no {kind!r} kernel members (no {p}coef tensor).")
    zx = kernel_features(x, tensors[p + "map_w"], tensors[p + "map_b"])
    coef, icpt = np.asarray(tensors[p + "coef"], np.float64), np.asarray(tensors[p + "intercept"], np.float64)
    return np.einsum("nd,fcd->fnc", zx, coef) + icpt[:, None, :]


def kernel_row_inputs(cfg, x_units: Mapping, x_copies: Mapping | None, tensors: Mapping) -> dict:
    """Per member kind (none with ``kernel_share=0``), the kernel inputs (:func:`kernel_inputs`) of
    the rows the members train on: the labelled units' (standardised inputs ``x_units[part]``), then
    their depth copies' (``x_copies``, None without copies)."""
    return {
        kind: np.concatenate(
            [kernel_inputs(x_units, tensors, kind)]
            + ([kernel_inputs(x_copies, tensors, kind)] if x_copies is not None else [])
        )
        for kind in (KINDS if cfg.kernel_share > 0 else ())
    }


def train_kernel_kinds(cfg, r: _Rows, k_in: dict, n_classes: int, tensors: dict) -> tuple[dict, dict]:
    """With ``cfg.kernel_share > 0``, per member kind the kernel members (:func:`fit_feature_map`,
    :func:`train_kernel_members`) trained on the rows of ``r`` (the training's rows: units, then
    depth copies; kernel inputs ``k_in[kind]``, one member without each fold) and stored in
    ``tensors``. Returns per kind the out-of-fold logits (1, n, C), NaN where a row lacks the kind's
    inputs, and the temperature fitted on the labelled units' own out-of-fold logits."""
    import torch

    oof, temps = {}, {}
    if cfg.kernel_share <= 0:
        return oof, temps
    # kernel_lab_weights: within each class the labs weigh as in the neural members' loss (square
    # root of their counts), each class keeping its number of rows (its prior, which the balanced
    # decision divides out)
    lab_weight = r.weight * np.bincount(r.y, minlength=n_classes)[r.y]
    for kind in KINDS:
        usable = r.has_w if kind == "full" else np.ones(len(r.y), bool)
        if len(np.unique(r.y[usable])) < 2:
            raise ModelError(
                f"kernel members of kind {kind!r} need labelled units of two classes or more "
                f"{'with a waveform ' if kind == 'full' else ''}(found {len(np.unique(r.y[usable]))}); "
                "train with kernel_share=0."
            )
        w, b = fit_feature_map(
            k_in[kind][usable], cfg.kernel_features, cfg.seed + (7 if kind == "full" else 0)
        )
        z = kernel_features(k_in[kind], w, b)
        coef, icpt, oof[kind] = train_kernel_members(
            z,
            r.y,
            r.fold,
            usable,
            n_classes,
            cfg.kernel_c,
            kind,
            lab_weight if cfg.kernel_lab_weights else None,
        )
        fit = usable & r.is_unit
        temps[kind] = _fit_temperature(cfg, oof[kind][:, fit], r.y[fit], r.groups[fit])
        for name, v in (("map_w", w), ("map_b", b), ("coef", coef), ("intercept", icpt)):
            tensors[f"kernel.{kind}.{name}"] = torch.from_numpy(np.ascontiguousarray(v))
    return oof, temps


def mix_kernel_views(
    cfg, oof_p: dict, oof_rows: dict, kernel_oof: dict, kernel_temps: dict, r: _Rows
) -> dict:
    """Each view's out-of-fold probabilities mixed with its kernel kind's (:func:`kernel_kind`),
    ``(1 - kernel_share) p + kernel_share p_kernel`` (:func:`mix_kernel`), sharpened by a temperature
    per view fitted on the labelled units (in place), as prediction does
    (:func:`.real_ensemble._mix_kernel`). Returns the view temperatures (none without kernel
    members: ``kernel_oof`` empty)."""
    if not kernel_oof:
        return {}
    out = {}
    for view, rows in oof_rows.items():
        kind = kernel_kind(view)
        pk = softmax(kernel_oof[kind][:, rows] / kernel_temps[kind]).mean(0)
        mix = mix_kernel(oof_p[view], pk, cfg.kernel_share)
        fit = r.is_unit[rows]
        out[view] = _fit_mixture_temperature(cfg, mix[fit], r.y[rows][fit], r.groups[rows][fit])
        oof_p[view] = sharpen(mix, out[view])
    return out


def kernel_meta(cfg, tensors: dict, kernel_temps: dict, view_temps: dict) -> dict:
    """The card's ``kernel`` entry (models with kernel members; empty otherwise)."""
    if not kernel_temps:
        return {}
    return {
        "kernel": {
            "share": cfg.kernel_share,
            "n_members": int(tensors["kernel.full.coef"].shape[0]),
            "n_features": cfg.kernel_features,
            "c": cfg.kernel_c,
            "lab_weights": cfg.kernel_lab_weights,
            "temperatures": kernel_temps,
            "view_temperatures": view_temps,
        }
    }
