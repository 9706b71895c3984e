"""The real-trained ensemble: train from raw discharge features of real units, predict, calibrate,
abstain out of distribution.

Recipe (docs/validation.md): autoencoders pre-trained on every unit given (labelled and not);
``folds x seeds`` members of two kinds fine-tuned on labelled units - *full* (discharge + waveform)
and *discharge* (for units with no waveform); one temperature per kind fitted on the inner
out-of-fold logits (so calibration never sees the units it is scored on); out-of-distribution
scores (:mod:`.real_ood`: squared Mahalanobis distance to the nearest class mean in the frozen
latent codes and in the un-mapped inputs, per part), thresholded at the ``ood_quantile`` of their
inner out-of-fold values on the labelled units; per-view, per-class ratio floors fitted on the same
out-of-fold probabilities (:mod:`.real_floors`). Since 1.5 the members also train on thinned copies
of the labelled units (shorter recordings, :mod:`.real_depth`), scored out of fold like the units,
and the floors are fitted once per band of ACG depth on the rows of that depth. (An autoencoder
reconstruction-error score was tried and dropped: its threshold can only be set in-sample, and it
flagged a third of in-distribution held-out units.)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ModelError
from ..features.discharge_inputs import discharge_inputs, waveform_inputs
from .decision import confidence_ratio
from .metrics import _balanced_accuracy
from .real_depth import acg_pairs, depth_copies
from .real_floors import MIXED, view_floors
from .real_inference import NumpyEncoder, member_logits, softmax
from .real_ood import fit_ood, ood_scores

if TYPE_CHECKING:  # torch for training only: prediction runs in numpy (real_inference.py)
    import torch

    from .real_networks import Autoencoder, RealModelConfig

__all__ = [
    "FAMILY",
    "KINDS",
    "member_agreement",
    "predict_real_ensemble",
    "quantile_map",
    "sharpen",
    "train_real_ensemble",
]

#: Feature family the ensemble reads (the lead's registry name for ACG/ISI to 100 ms + waveform).
FAMILY = "acg-isi-wave"
#: Member kinds: discharge + waveform, discharge only.
KINDS = ("full", "discharge")
_PARTS = ("discharge", "waveform")


def _inputs(raw: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Model inputs (unstandardised) and availability masks from the raw feature arrays."""
    for key in ("acg_counts", "isi_counts", "waveform"):
        if key not in raw:
            raise ModelError(f"raw features lack {key!r}; give the discharge family's arrays.")
    n = len(raw["acg_counts"])
    has_d = np.asarray(raw.get("has_discharge", np.ones(n, bool)), bool)
    acg = np.where(has_d[:, None], np.nan_to_num(np.asarray(raw["acg_counts"], float)), 0.0)
    isi = np.where(has_d[:, None], np.nan_to_num(np.asarray(raw["isi_counts"], float)), 0.0)
    xw, ok_w = waveform_inputs(raw["waveform"])
    has_w = ok_w & np.asarray(raw.get("has_waveform", np.ones(n, bool)), bool)
    return {
        "discharge": discharge_inputs(acg, isi),
        "waveform": xw,
        "has_discharge": has_d,
        "has_waveform": has_w,
        "acg_pairs": acg_pairs(acg),
    }


def _standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((x - mean) / std).astype(np.float32)


def quantile_map(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Each column of x (n, d) mapped through its reference distribution's quantiles q (K, d).

    Inside the reference range a value becomes its rank in [0, 1] (piecewise-linear between the K
    quantiles; tied quantiles, e.g. many zeros, take the middle of their ranks). Outside, the map
    continues linearly with the column's range as unit, so a unit far beyond every reference unit
    stays far (the out-of-distribution scores read it). Returns (n, d) float64.
    """
    x = np.asarray(x, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    ranks = np.linspace(0.0, 1.0, len(q))
    out = np.empty_like(x)
    for j in range(x.shape[1]):
        qj, xj = q[:, j], x[:, j]
        up = np.interp(xj, qj, ranks)
        down = -np.interp(-xj, -qj[::-1], -ranks[::-1])
        span = qj[-1] - qj[0] if qj[-1] > qj[0] else 1.0
        out[:, j] = np.where(
            xj < qj[0],
            (xj - qj[0]) / span,
            np.where(xj > qj[-1], 1.0 + (xj - qj[-1]) / span, 0.5 * (up + down)),
        )
    return out


def _normalise(x: np.ndarray, tensors: Mapping, part: str) -> np.ndarray:
    """The model's input transform of one part: quantile map (where the bundle has one), then
    standardise."""
    key = f"norm.{part}.quantiles"
    if key in tensors:
        x = quantile_map(x, np.asarray(tensors[key]))
    return _standardise(x, np.asarray(tensors[f"norm.{part}.mean"]), np.asarray(tensors[f"norm.{part}.std"]))


def _latent(ae: Autoencoder | NumpyEncoder, x: np.ndarray) -> np.ndarray:
    """Latent codes (n, k), float64, of a pre-trained encoder: the torch autoencoder while training,
    its numpy twin (:class:`~.real_inference.NumpyEncoder`) when predicting."""
    if isinstance(ae, NumpyEncoder):
        return ae.encode(x)
    import torch

    with torch.no_grad():
        return ae.encode(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy().astype(np.float64)


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


def sharpen(p: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities p (n, C) raised to ``1 / temperature`` and renormalised: the temperature of
    a mixture of calibrated members (``softmax(log p / T)``); (n, C)."""
    z = np.log(np.clip(p, 1e-12, None)) / temperature
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def _group_weights(groups: np.ndarray) -> np.ndarray:
    """Weight per unit so that every group (lab) weighs the same in total; (n,), mean 1."""
    _, inv, counts = np.unique(groups, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inv]
    return w / w.mean()


def _row_weights(groups: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Weight per out-of-fold row: every group (lab) weighs the same in total, every labelled unit
    within its group the same, and the rows of one unit (itself, its depth copies) share its
    weight; (n,), mean 1. Without copies, :func:`_group_weights`."""
    _, inv, counts = np.unique(source, return_inverse=True, return_counts=True)
    per_row = 1.0 / counts[inv]
    w = np.zeros(len(groups))
    for g in np.unique(groups):
        here = groups == g
        w[here] = per_row[here] / per_row[here].sum()
    return w / w.mean() if len(w) else w  # a depth band without rows has no weights


def _unit_weights(y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Loss weight per labelled unit: every class weighs the same, and within a class each group
    (lab) in proportion to the square root of its count (so a small lab is not drowned)."""
    w = np.zeros(len(y))
    for c in np.unique(y):
        in_c = y == c
        gs, counts = np.unique(groups[in_c], return_counts=True)
        share = np.sqrt(counts) / np.sqrt(counts).sum()
        for g, cnt, sh in zip(gs, counts, share, strict=True):
            w[in_c & (groups == g)] = sh / cnt
    return w / w.mean()


def train_real_ensemble(
    raw: Mapping[str, np.ndarray],
    labels: np.ndarray,
    classes: tuple[str, ...],
    unlabelled_raw: Mapping[str, np.ndarray] | None = None,
    config: RealModelConfig | None = None,
    groups: np.ndarray | None = None,
    oof: dict | None = None,
) -> tuple[dict[str, torch.Tensor], dict]:
    """Train the real-unit ensemble.

    Parameters
    ----------
    raw : mapping
        Raw discharge-family arrays of the labelled units: ``acg_counts`` (n, 100), ``isi_counts``
        (n, 100), ``waveform`` (n, 75; NaN rows where none), optional ``has_discharge`` /
        ``has_waveform`` (n,) bool.
    labels : (n,) str
        Class of each unit; units whose label is not in ``classes`` (e.g. ``"GrC"``) or that lack a
        discharge are used for pre-training only.
    classes : tuple of str
        Class names, in output order.
    unlabelled_raw : mapping, optional
        The same arrays for unlabelled units (pre-training only).
    config : RealModelConfig, optional
    groups : (n,) str, optional
        Lab (or other group) of each labelled unit; balances the loss across labs within a class.
    oof : dict, optional
        Filled, per view (``full``, ``discharge``, ``mixed``), with ``{"p", "y", "w"}``: the inner
        out-of-fold probabilities of the labelled units, their classes and lab weights, on which
        the temperatures and the ratio floors were fitted (for studies of the abstention rules,
        e.g. benchmarks/bench_floor_rules.py).

    Returns
    -------
    tensors : dict of str -> torch.Tensor
        Everything :func:`predict_real_ensemble` needs that is an array (safetensors-ready).
    meta : dict
        JSON-able: classes, config, member kinds, temperatures, thresholds, training summary.
    """
    from .real_networks import RealModelConfig
    from .training import _torch_settings

    cfg = config or RealModelConfig()
    labels = np.asarray(labels).astype(str)
    lab = _inputs(raw)
    n = len(labels)
    if len(lab["discharge"]) != n:
        raise ModelError(f"labels has {n} rows but the raw features have {len(lab['discharge'])}.")
    groups = np.asarray(groups).astype(str) if groups is not None else np.full(n, "all")
    unl = _inputs(unlabelled_raw) if unlabelled_raw is not None else None
    copies = None
    if cfg.depth_copies > 0:  # shallower copies of the labelled units (:mod:`.real_depth`)
        known = np.flatnonzero(np.isin(labels, classes) & lab["has_discharge"])
        source, thinned = depth_copies(
            raw, known, cfg.depth_copies, cfg.depth_min_pairs, cfg.seed, cfg.waveform_stretch
        )
        copies = (source, _inputs(thinned))
    t0 = time.perf_counter()
    with _torch_settings(cfg.seed, cfg.n_threads):
        tensors, meta = _train(cfg, lab, labels, tuple(classes), unl, groups, oof, copies)
    meta["training_seconds"] = round(time.perf_counter() - t0, 2)
    return tensors, meta


def _pool(lab: dict, unl: dict | None, part: str) -> np.ndarray:
    mask = "has_discharge" if part == "discharge" else "has_waveform"
    xs = [lab[part][lab[mask]]] + ([unl[part][unl[mask]]] if unl is not None else [])
    return np.concatenate(xs)


@dataclass
class _Rows:
    """The rows the members train on and are scored on out of fold: the labelled units with a
    discharge, then (``depth_copies``) their shallower copies, each in its unit's fold."""

    head_in: dict[str, np.ndarray]  # per member kind (n, k)
    y: np.ndarray
    fold: np.ndarray
    weight: np.ndarray  # loss weight (classes and labs balanced)
    has_w: np.ndarray
    groups: np.ndarray
    depth: np.ndarray  # ACG pairs at lags 1-100 ms
    source: np.ndarray  # the labelled unit (row < n_units) each row is or was copied from
    n_units: int

    @property
    def is_unit(self) -> np.ndarray:
        return np.arange(len(self.y)) < self.n_units

    def with_copies(
        self, source: np.ndarray, x: dict, lat: dict, depth: np.ndarray, has_w: np.ndarray
    ) -> _Rows:
        """These rows, then copies of the units ``source`` (row indices) with inputs ``x`` and
        latents ``lat``: each copy takes its unit's class, fold, loss weight and lab."""
        cat = np.concatenate
        return _Rows(
            head_in={k: cat([v, _head_inputs(lat, x, k)]) for k, v in self.head_in.items()},
            y=cat([self.y, self.y[source]]),
            fold=cat([self.fold, self.fold[source]]),
            weight=cat([self.weight, self.weight[source]]),
            has_w=cat([self.has_w, has_w]),
            groups=cat([self.groups, self.groups[source]]),
            depth=cat([self.depth, depth]),
            source=cat([self.source, source]),
            n_units=self.n_units,
        )


def _pretrain(cfg, lab: dict, unl: dict | None, tensors: dict) -> tuple[dict, dict]:
    """Per part: the quantile map, standardisation and denoising autoencoder, fitted on the
    pre-training pool (every unit given, labelled or not) and stored in ``tensors``. Returns the
    autoencoders and the normalised inputs of the units of ``lab``."""
    import torch

    from .real_networks import pretrain_autoencoder

    hidden = {"discharge": cfg.hidden_discharge, "waveform": cfg.hidden_waveform}
    latent = {"discharge": cfg.latent_discharge, "waveform": cfg.latent_waveform}
    pre, x = {}, {}
    for part in _PARTS:
        pool = _pool(lab, unl, part)
        if len(pool) < 10:
            raise ModelError(f"only {len(pool)} units have a {part}; pre-training needs at least 10.")
        if cfg.input_quantiles > 0:
            qs = np.quantile(pool, np.linspace(0.0, 1.0, cfg.input_quantiles), axis=0)
            tensors[f"norm.{part}.quantiles"] = torch.from_numpy(qs.astype(np.float32))
            pool = quantile_map(pool, tensors[f"norm.{part}.quantiles"].numpy())
        mean, std = pool.mean(0), pool.std(0) + 1e-3
        tensors[f"norm.{part}.mean"] = torch.from_numpy(mean.astype(np.float32))
        tensors[f"norm.{part}.std"] = torch.from_numpy(std.astype(np.float32))
        pre[part] = pretrain_autoencoder(
            _standardise(pool, mean, std), hidden[part], latent[part], cfg, cfg.seed
        )
        for k, v in pre[part].state_dict().items():
            tensors[f"ood.{part}.{k}"] = v.clone()
        x[part] = _normalise(lab[part], tensors, part)
    return pre, x


def _train_kinds(cfg, r: _Rows, member_fold: np.ndarray, n_classes: int, tensors: dict) -> tuple[dict, dict]:
    """Train both member kinds on ``r`` (member j without fold ``member_fold[j]``); store them in
    ``tensors``. Returns per kind the out-of-fold logits (seeds, n, C), NaN where a row lacks the
    kind's inputs, and the temperature fitted on the labelled units' own out-of-fold logits."""
    import torch

    from .real_networks import MemberStack, train_members

    oof, temps = {}, {}
    for kind in KINDS:
        full = kind == "full"
        stack = MemberStack(cfg, len(member_fold), r.head_in[kind].shape[1], n_classes)
        avail = r.has_w if full else np.ones(len(r.y), bool)
        weight = (r.fold[None, :] != member_fold[:, None]) * avail[None, :] * r.weight[None, :]
        train_members(stack, cfg, r.head_in[kind], r.y, weight, cfg.seed + (7 if full else 0))
        with torch.no_grad():
            logits = stack(torch.from_numpy(r.head_in[kind])).numpy()
        # out-of-fold logits (seeds, n, C): each row scored by the members that never saw its fold
        held = np.stack([logits[member_fold == f] for f in range(cfg.folds)])  # (F, S, n, C)
        oof[kind] = np.where(
            avail[None, :, None], held[r.fold, :, np.arange(len(r.y))].transpose(1, 0, 2), np.nan
        )
        fit = avail & r.is_unit
        cal_w = _group_weights(r.groups[fit]) if cfg.calibrate_per_lab else None
        temps[kind] = _temperature(oof[kind][:, fit], r.y[fit], cal_w)
        for k, v in stack.state_dict().items():
            tensors[f"members.{kind}.{k}"] = v.clone()
    return oof, temps


def _oof_views(cfg, oof: dict, temps: dict, r: _Rows) -> tuple[dict, dict]:
    """Per view (kinds, and ``mixed`` with ``mix_views``, whose temperature is fitted here and
    added to ``temps``): the calibrated out-of-fold probabilities and the rows of ``r`` they score."""
    oof_p, oof_rows = {}, {}
    for kind in KINDS:
        ok = ~np.isnan(oof[kind][0, :, 0])
        z = oof[kind][:, ok] / temps[kind]
        p = np.exp(z - z.max(-1, keepdims=True))
        oof_p[kind], oof_rows[kind] = (p / p.sum(-1, keepdims=True)).mean(0), np.flatnonzero(ok)
    if cfg.mix_views and r.has_w.any():  # rows with a waveform: both kinds together
        mix = 0.5 * (oof_p["full"] + oof_p["discharge"][r.has_w])
        fit = r.is_unit[r.has_w]
        cal_w = _group_weights(r.groups[r.has_w][fit]) if cfg.calibrate_per_lab else None
        temps[MIXED] = _temperature(np.log(mix[fit] + 1e-12)[None], r.y[r.has_w][fit], cal_w)
        oof_p[MIXED], oof_rows[MIXED] = sharpen(mix, temps[MIXED]), np.flatnonzero(r.has_w)
    return oof_p, oof_rows


def _oof_set(oof_p: dict, oof_rows: dict, r: _Rows, select: np.ndarray) -> dict:
    """Per view, the out-of-fold rows ``select`` (over the rows of ``r``) picks: probabilities,
    classes and weights (:func:`_row_weights`)."""
    out = {}
    for k, rows in oof_rows.items():
        rows = rows[select[rows]]
        out[k] = {
            "p": oof_p[k][np.searchsorted(oof_rows[k], rows)],
            "y": r.y[rows],
            "w": _row_weights(r.groups[rows], r.source[rows]),
        }
    return out


def _train(cfg, lab, labels, classes, unl, groups, oof_out=None, copies=None):
    import torch

    from .training import stratified_folds

    n_classes = len(classes)
    tensors: dict[str, torch.Tensor] = {}
    pre, x = _pretrain(cfg, lab, unl, tensors)
    rows = np.flatnonzero(np.isin(labels, classes) & lab["has_discharge"])
    if len(rows) < cfg.folds * 2:
        raise ModelError(f"only {len(rows)} labelled units with a discharge; need at least {cfg.folds * 2}.")
    y = np.array([classes.index(v) for v in labels[rows]], dtype=np.int64)
    lat = _latents(pre, x)  # once per part: the heads and the OOD scores read the same codes
    r = _Rows(
        head_in={kind: _head_inputs(lat, x, kind)[rows] for kind in KINDS},
        y=y,
        fold=stratified_folds(y, cfg.folds, np.random.default_rng(cfg.seed)),
        weight=_unit_weights(y, groups[rows]),
        has_w=lab["has_waveform"][rows],
        groups=groups[rows],
        depth=lab["acg_pairs"][rows],
        source=np.arange(len(rows)),
        n_units=len(rows),
    )
    if copies is not None:  # shallower copies of the labelled units (``depth_copies``)
        x_c = {p: _normalise(copies[1][p], tensors, p) for p in _PARTS}
        at = np.searchsorted(rows, copies[0])
        r = r.with_copies(at, x_c, _latents(pre, x_c), copies[1]["acg_pairs"], copies[1]["has_waveform"])
    member_fold = np.repeat(np.arange(cfg.folds), cfg.seeds)  # member j holds out fold member_fold[j]
    oof, temps = _train_kinds(cfg, r, member_fold, n_classes, tensors)
    units = slice(0, r.n_units)
    codes = {p: {"latent": lat[p][rows], "input": lab[p][rows]} for p in _PARTS}
    ood_t, ood_meta = fit_ood(
        codes,
        {p: _pool(lab, unl, p) for p in _PARTS},
        {"discharge": lab["has_discharge"][rows], "waveform": r.has_w[units]},
        y,
        r.fold[units],
        n_classes,
        cfg.ood_quantile,
        ("latent", "input") if cfg.ood_input_space else ("latent",),
    )
    tensors.update({k: torch.from_numpy(v) for k, v in ood_t.items()})
    oof_p, oof_rows = _oof_views(cfg, oof, temps, r)
    # one set of floors per depth band, fitted on the out-of-fold rows (units and copies) whose ACG
    # depth falls in it; without bands, on the labelled units
    edges = sorted(float(e) for e in cfg.depth_bands) if copies is not None else []
    bounds = zip([0.0, *edges], [*edges, np.inf], strict=True)
    select = [(r.depth >= lo) & (r.depth < hi) for lo, hi in bounds] if edges else [r.is_unit]
    sets = [_oof_set(oof_p, oof_rows, r, s) for s in select]
    floors = [
        view_floors(
            *({k: v[key] for k, v in views.items()} for key in ("p", "y", "w")),
            n_classes,
            cfg.max_confidently_wrong,
            cfg.floor_rule,
        )
        for views in sets
    ]
    if oof_out is not None:  # the deepest band's (the only one without bands)
        oof_out.update(sets[-1])
    # the reported inner out-of-fold scores are the labelled units' own (never their copies')
    on_units = {k: (v["y"], v["p"].argmax(1)) for k, v in _oof_set(oof_p, oof_rows, r, r.is_unit).items()}
    meta = {
        "family": FAMILY,
        "classes": list(classes),
        "config": cfg.to_dict(),
        "n_members": {k: int(len(member_fold)) for k in KINDS},
        "temperatures": temps,
        "ratio_floors": floors[-1],
        "depth_bands": [{"below_pairs": e, "ratio_floors": f} for e, f in zip(edges, floors, strict=False)],
        "ood": ood_meta,
        "n_labelled": int(r.n_units),
        "n_labelled_with_waveform": int(r.has_w[units].sum()),
        "n_depth_copies": int(len(r.y) - r.n_units),
        "class_counts": {c: int((y == i).sum()) for i, c in enumerate(classes)},
        "n_pretrain": {part: int(len(_pool(lab, unl, part))) for part in _PARTS},
        "inner_oof_accuracy": {k: float(np.mean(t == pr)) for k, (t, pr) in on_units.items()},
        "inner_oof_balanced_accuracy": {
            k: _balanced_accuracy(t, pr, n_classes) for k, (t, pr) in on_units.items()
        },
    }
    return tensors, meta


def _latents(pre: Mapping[str, Autoencoder | NumpyEncoder], x: Mapping[str, np.ndarray]) -> dict:
    """Latent codes (n, k), float64, of every part's inputs x[part] (n, d)."""
    return {p: _latent(pre[p], x[p]) for p in _PARTS}


def _head_inputs(lat: Mapping[str, np.ndarray], x: Mapping[str, np.ndarray], kind: str) -> np.ndarray:
    """Head input of a member kind (n, k): the frozen latents ``lat``, then the standardised inputs."""
    parts = _PARTS if kind == "full" else ("discharge",)
    return np.concatenate([lat[p].astype(np.float32) for p in parts] + [x[p] for p in parts], axis=1).astype(
        np.float32
    )


def predict_real_ensemble(
    tensors: Mapping[str, torch.Tensor], meta: Mapping, raw: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Class probabilities and out-of-distribution flags for units given as raw feature arrays.

    Units with a waveform are scored by the *full* members, the others by the *discharge* members;
    with the ``mix_views`` configuration, units with a waveform by both kinds (the mean of the two
    kinds' mean probabilities, sharpened by the ``mixed`` temperature: :func:`sharpen`). Units
    without a discharge get NaN probabilities (only their waveform's OOD score is computed).

    Returns
    -------
    dict with ``probabilities`` (n, C) mean over the members used; ``member_probabilities``
    (M, n, C), NaN where a member was not used for a unit; ``ood_score`` (n,) (> 1 means out of
    distribution: the largest of the part scores divided by their thresholds);
    ``ood_score_discharge`` / ``ood_score_waveform`` (n,), NaN where the part is missing;
    ``out_of_distribution`` (n,) bool; ``member_agreement`` (n,) the fraction of the members used
    whose own top class is the ensemble's (NaN without a discharge); ``members_disagree`` (n,) bool,
    agreement below the configuration's ``min_agreement`` (no majority of members backs the label);
    ``ratio_floor`` (n,) the model's floor on the confidence ratio for the unit's top class and member
    kind (:mod:`.real_floors`; NaN without a discharge); ``below_ratio_floor`` (n,) bool, the
    unit's ratio is below it;
    ``used_waveform`` (n,) bool; ``has_discharge`` (n,) bool.
    """
    inp = _inputs(raw)
    n = len(inp["discharge"])
    x = {p: _normalise(inp[p], tensors, p) for p in _PARTS}
    has_d, has_w = inp["has_discharge"], inp["has_waveform"]
    used_w = has_d & has_w
    n_classes = len(meta["classes"])
    lat = _latents({p: NumpyEncoder.from_tensors(tensors, p) for p in _PARTS}, x)
    mixed = MIXED in meta["temperatures"]  # models trained with mix_views
    blocks = []
    for kind in KINDS:
        rows = used_w if kind == "full" else (has_d if mixed else has_d & ~has_w)
        mp = np.full((meta["n_members"][kind], n, n_classes), np.nan, dtype=np.float32)
        if rows.any():
            head_in = _head_inputs(
                {p: v[rows] for p, v in lat.items()}, {p: v[rows] for p, v in x.items()}, kind
            )
            logits = member_logits(tensors, kind, head_in)
            mp[:, rows] = softmax(logits / meta["temperatures"][kind])
        blocks.append(mp)
    member_p = np.concatenate(blocks)
    used = ~np.isnan(member_p)
    with np.errstate(invalid="ignore"):  # units without a discharge: no member used, NaN
        probs = np.where(used, member_p, 0.0).sum(0) / used.sum(0)
    if mixed and used_w.any():
        n_full = meta["n_members"]["full"]
        kind_means = member_p[:n_full, used_w].mean(0), member_p[n_full:, used_w].mean(0)
        probs[used_w] = sharpen(0.5 * (kind_means[0] + kind_means[1]), meta["temperatures"][MIXED])
    codes = {p: {"latent": lat[p], "input": inp[p]} for p in _PARTS}
    scores = ood_scores(tensors, meta, codes, {"discharge": has_d, "waveform": has_w})
    ood = scores["combined"]
    agreement = member_agreement(member_p, probs)
    min_agree = float(meta["config"].get("min_agreement", 0.0))
    floor = np.ones(n)  # models before 1.2 have no floors
    top = np.nan_to_num(probs, nan=-1.0).argmax(1)
    # depth bands (models before 1.5 have none): units shallower than a band's edge take its floors
    bands = meta.get("depth_bands") or []
    band = np.searchsorted([b["below_pairs"] for b in bands], inp["acg_pairs"], side="right")
    for b, floors in enumerate([b["ratio_floors"] for b in bands] + [meta.get("ratio_floors") or {}]):
        for kind, kind_rows in ((MIXED if mixed else "full", used_w), ("discharge", has_d & ~has_w)):
            if floors:  # a mixed view without floors of its own takes the full members' (as strict)
                kind_floor = np.asarray(floors.get(kind, floors.get("full")), dtype=np.float64)
                here = kind_rows & (band == b)
                floor[here] = kind_floor[top[here]]
    with np.errstate(invalid="ignore"):
        below_floor = has_d & (confidence_ratio(probs) < floor)
    return {
        "probabilities": probs,
        "member_probabilities": member_p,
        "ood_score": ood,
        "ood_score_discharge": scores["discharge"],
        "ood_score_waveform": scores["waveform"],
        "out_of_distribution": np.nan_to_num(ood, nan=np.inf) > 1.0,
        "member_agreement": agreement,
        "members_disagree": np.nan_to_num(agreement, nan=1.0) < min_agree,
        "ratio_floor": np.where(has_d, floor, np.nan),
        "acg_pairs": inp["acg_pairs"],
        "depth_band": np.where(has_d, band, -1),
        "below_ratio_floor": below_floor,
        "used_waveform": used_w,
        "has_discharge": has_d,
    }


def member_agreement(member_p: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Fraction of the members used (non-NaN rows of member_p (M, n, C)) whose top class is the
    top class of the mean probabilities probs (n, C); (n,), NaN where no member was used."""
    used = ~np.isnan(member_p).any(-1)
    top = np.nan_to_num(probs, nan=-1.0).argmax(-1)
    votes = (np.nan_to_num(member_p, nan=-1.0).argmax(-1) == top[None]) & used
    n_used = used.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_used > 0, votes.sum(0) / n_used, np.nan)
