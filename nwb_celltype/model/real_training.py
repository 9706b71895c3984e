"""Training of the real-trained ensemble from raw discharge features of real units.

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
flagged a third of in-distribution held-out units.) Since 1.6 kernel members (:mod:`.real_kernel`,
which also trains them) are mixed into each view's probabilities. Temperatures:
:mod:`.real_calibration`; inputs shared with prediction: :mod:`.real_inputs`; prediction:
:mod:`.real_ensemble`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ModelError
from .metrics import _balanced_accuracy
from .real_calibration import _fit_mixture_temperature, _fit_temperature
from .real_depth import depth_copies, donate_waveforms
from .real_floors import MIXED, view_floors
from .real_inference import softmax
from .real_inputs import (
    _PARTS,
    FAMILY,
    KINDS,
    _head_inputs,
    _inputs,
    _latents,
    _normalise,
    _standardise,
    apply_decision_bias,
    fit_decision_bias,
    quantile_map,
    sharpen,
)
from .real_kernel import kernel_meta, kernel_row_inputs, mix_kernel_views, train_kernel_kinds
from .real_ood import fit_ood
from .real_species import species_support, warn_withheld_classes

if TYPE_CHECKING:
    import torch

    from .real_networks import RealModelConfig

__all__ = ["train_real_ensemble"]


def _row_weights(groups: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Weight per out-of-fold row: every group (lab) weighs the same in total, every labelled unit
    within its group the same, and the rows of one unit (itself, its depth copies) share its
    weight; (n,), mean 1. Without copies, :func:`.real_calibration._group_weights`."""
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


def _check_config(cfg) -> None:
    """Refuse settings that cannot train (clear errors before any work)."""
    if cfg.waveform_stretch < 0 or (cfg.waveform_stretch > 0 and cfg.depth_copies == 0):
        raise ModelError(
            f"waveform_stretch={cfg.waveform_stretch} needs depth_copies > 0 and a log-sd >= 0: the "
            "stretched waveforms are those of the depth copies (set depth_copies, or waveform_stretch=0)."
        )
    if not (0.0 <= cfg.kernel_share <= 1.0 and cfg.kernel_features >= 1 and cfg.kernel_c > 0):
        raise ModelError(
            f"kernel_share={cfg.kernel_share} must be a share in [0, 1], kernel_features={cfg.kernel_features} "
            f"at least 1 and kernel_c={cfg.kernel_c} positive (kernel_share=0: no kernel members)."
        )
    if cfg.min_species_class_units < 0:
        raise ModelError(
            f"min_species_class_units={cfg.min_species_class_units} must be >= 0 (0: no species rule)."
        )
    if not 0.0 <= cfg.waveform_donors <= 1.0 or (cfg.waveform_donors > 0 and cfg.depth_copies == 0):
        raise ModelError(
            f"waveform_donors={cfg.waveform_donors} must be a share in [0, 1] and needs depth_copies > 0: "
            "the donors' waveforms go to the depth copies (set depth_copies, or waveform_donors=0)."
        )


def train_real_ensemble(
    raw: Mapping[str, np.ndarray],
    labels: np.ndarray,
    classes: tuple[str, ...],
    unlabelled_raw: Mapping[str, np.ndarray] | None = None,
    config: RealModelConfig | None = None,
    groups: np.ndarray | None = None,
    oof: dict | None = None,
    species: np.ndarray | None = None,
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
        discharge are used for pre-training only, except that a labelled unit of ``classes`` with a
        waveform and no discharge also lends its waveform to depth copies of its class
        (``config.waveform_donors``).
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
    species : (n,) str, optional
        Species of each labelled unit: a donor lends its waveform only to copies of units of its
        own species (``config.waveform_donors``; default: all one species); the model records the
        units each species gave per class (``species_support``), and withholds from units of a
        species the labels of classes it gave fewer than ``config.min_species_class_units``
        (:mod:`.real_species`).

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
    _check_config(cfg)
    donors = np.flatnonzero(np.isin(labels, classes) & ~lab["has_discharge"] & lab["has_waveform"])
    copies, n_donated = _unit_copies(cfg, raw, lab, labels, classes, species, donors)
    t0 = time.perf_counter()
    with _torch_settings(cfg.seed, cfg.n_threads):
        tensors, meta = _train(cfg, lab, labels, tuple(classes), unl, groups, oof, copies)
    meta["donor_waveforms"] = {"n_donors": int(len(donors)), "n_copies_with_donor_waveform": n_donated}
    meta["species_support"] = species_support(species, labels, lab["has_discharge"], tuple(classes))
    warn_withheld_classes(meta)
    meta["training_seconds"] = round(time.perf_counter() - t0, 2)
    return tensors, meta


def _unit_copies(cfg, raw, lab: dict, labels: np.ndarray, classes, species, donors: np.ndarray):
    """With ``cfg.depth_copies``, the shallower copies of the labelled units of ``classes`` with a
    discharge (:func:`.real_depth.depth_copies`): (the unit each copy is of, the copies' inputs), and
    how many copies took the waveform of a donor (``donors``: labelled units of a class with a
    waveform and no discharge) of their class and species (``cfg.waveform_donors``,
    :func:`.real_depth.donate_waveforms`). Without copies, (None, 0)."""
    if cfg.depth_copies <= 0:
        return None, 0
    n_donated = 0
    known = np.flatnonzero(np.isin(labels, classes) & lab["has_discharge"])
    source, thinned = depth_copies(
        raw, known, cfg.depth_copies, cfg.depth_min_pairs, cfg.seed, cfg.waveform_stretch
    )
    if cfg.waveform_donors > 0 and len(donors):  # some copies take another lab's spike of their class
        sp = np.asarray(species).astype(str) if species is not None else np.full(len(labels), "")
        key = np.char.add(np.char.add(labels, "|"), sp)  # class and species
        wave, donated = donate_waveforms(
            thinned["waveform"],
            key[source],
            np.asarray(raw["waveform"])[donors],
            key[donors],
            cfg.waveform_donors,
            cfg.seed,
        )
        has_w = np.asarray(thinned.get("has_waveform", np.ones(len(source), bool)), bool)
        thinned = {**thinned, "waveform": wave, "has_waveform": has_w | donated}
        n_donated = int(donated.sum())
    return (source, _inputs(thinned)), n_donated


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
        temps[kind] = _fit_temperature(cfg, oof[kind][:, fit], r.y[fit], r.groups[fit])
        for k, v in stack.state_dict().items():
            tensors[f"members.{kind}.{k}"] = v.clone()
    return oof, temps


def _oof_views(cfg, oof: dict, temps: dict, r: _Rows) -> tuple[dict, dict]:
    """Per view (kinds, and ``mixed`` with ``mix_views``, whose temperature is fitted here and
    added to ``temps``): the calibrated out-of-fold probabilities and the rows of ``r`` they score."""
    oof_p, oof_rows = {}, {}
    for kind in KINDS:
        ok = ~np.isnan(oof[kind][0, :, 0])
        oof_p[kind], oof_rows[kind] = softmax(oof[kind][:, ok] / temps[kind]).mean(0), np.flatnonzero(ok)
    if cfg.mix_views and r.has_w.any():  # rows with a waveform: both kinds together
        mix = 0.5 * (oof_p["full"] + oof_p["discharge"][r.has_w])
        fit = r.is_unit[r.has_w]
        temps[MIXED] = _fit_mixture_temperature(cfg, mix[fit], r.y[r.has_w][fit], r.groups[r.has_w][fit])
        oof_p[MIXED], oof_rows[MIXED] = sharpen(mix, temps[MIXED]), np.flatnonzero(r.has_w)
    return oof_p, oof_rows


def _decision_biases(cfg, oof_p: dict, oof_rows: dict, r: _Rows, n_classes: int) -> dict:
    """With ``cfg.decision_bias``, per view the bias :func:`fit_decision_bias` fits on the labelled
    units' out-of-fold probabilities; ``oof_p`` is biased in place (the floors are fitted after)."""
    if not cfg.decision_bias:
        return {}
    out = {}
    for k, v in _oof_set(oof_p, oof_rows, r, r.is_unit).items():
        b = fit_decision_bias(v["p"], v["y"], v["w"], n_classes)
        oof_p[k] = apply_decision_bias(oof_p[k], b)
        out[k] = [float(x) for x in b]
    return out


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


def _band_floors(
    cfg, oof_p: dict, oof_rows: dict, r: _Rows, n_classes: int, edges: list
) -> tuple[list, list]:
    """One set of ratio floors per depth band (``edges``: ACG pairs), fitted on the out-of-fold rows
    (units and copies) whose ACG depth falls in it; without bands, one set fitted on the labelled
    units. Returns the floors and the out-of-fold sets (:func:`_oof_set`) they were fitted on, by
    band, the deepest last."""
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
    return floors, sets


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
    x_c = None
    if copies is not None:  # shallower copies of the labelled units (``depth_copies``)
        x_c = {p: _normalise(copies[1][p], tensors, p) for p in _PARTS}
        at = np.searchsorted(rows, copies[0])
        r = r.with_copies(at, x_c, _latents(pre, x_c), copies[1]["acg_pairs"], copies[1]["has_waveform"])
    # kernel inputs of the rows of r (units, then copies), for kernel members
    k_in = kernel_row_inputs(cfg, {p: v[rows] for p, v in x.items()}, x_c, tensors)
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
    kernel_oof, kernel_temps = train_kernel_kinds(cfg, r, k_in, n_classes, tensors)
    view_temps = mix_kernel_views(cfg, oof_p, oof_rows, kernel_oof, kernel_temps, r)
    biases = _decision_biases(cfg, oof_p, oof_rows, r, n_classes)
    edges = sorted(float(e) for e in cfg.depth_bands) if copies is not None else []
    floors, sets = _band_floors(cfg, oof_p, oof_rows, r, n_classes, edges)
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
        **({"decision_bias": biases} if biases else {}),
        **kernel_meta(cfg, tensors, kernel_temps, view_temps),
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
