"""Prediction of the real-trained ensemble (numpy): class probabilities, member agreement, ratio
floors and out-of-distribution flags for units given as raw discharge features.

Training is in :mod:`.real_training` (the recipe), what training and prediction share in
:mod:`.real_inputs`; :func:`train_real_ensemble`, :func:`quantile_map` and the other names that lived
here before the split are re-exported, so ``nwb_celltype.model.real_ensemble`` keeps its public API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from .decision import confidence_ratio
from .real_floors import MIXED
from .real_inference import NumpyEncoder, member_logits, softmax
from .real_inputs import (
    _PARTS,
    FAMILY,
    KINDS,
    _head_inputs,
    _inputs,
    _latents,
    _normalise,
    apply_decision_bias,
    quantile_map,
    sharpen,
)
from .real_kernel import kernel_inputs, kernel_kind, kernel_logits, mix_kernel
from .real_ood import ood_scores
from .real_species import unsupported_for_species
from .real_training import train_real_ensemble

if TYPE_CHECKING:  # torch in annotations only: prediction runs in numpy (real_inference.py)
    import torch

__all__ = [
    "FAMILY",
    "KINDS",
    "member_agreement",
    "predict_real_ensemble",
    "quantile_map",
    "sharpen",
    "train_real_ensemble",
]


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
    (M, n, C), NaN where a member was not used for a unit (the neural members, then a model's
    kernel members: :mod:`.real_kernel`); ``ood_score`` (n,) (> 1 means out of
    distribution: the largest of the part scores divided by their thresholds);
    ``ood_score_discharge`` / ``ood_score_waveform`` (n,), NaN where the part is missing;
    ``out_of_distribution`` (n,) bool; ``member_agreement`` (n,) the fraction of the members used
    whose own top class is the ensemble's (NaN without a discharge; with kernel members, the neural
    and the kernel members' fractions weighted as in the mixture, ``model_meta.kernel.share``); ``members_disagree`` (n,) bool,
    agreement below the configuration's ``min_agreement`` (no majority of members backs the label);
    ``ratio_floor`` (n,) the model's floor on the confidence ratio for the unit's top class and member
    kind (:mod:`.real_floors`; NaN without a discharge); ``below_ratio_floor`` (n,) bool, the
    unit's ratio is below it;
    ``species_unsupported`` (n,) bool, the unit's species (``raw["species"]``: one name or (n,)
    names, optional) gave the model too few training units of its top class
    (:func:`.real_species.unsupported_for_species`), and ``species_class_units`` (n,) how many (-1
    where no species rule applies);
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
    views = ((MIXED if mixed else "full", used_w), ("discharge", has_d & ~has_w))
    kernel_p, share = _mix_kernel(tensors, meta, probs, x, views)
    neural = len(member_p)
    member_p = np.concatenate([member_p, kernel_p])  # the kernel members after the neural ones
    # models trained with decision_bias: each row's view bias, on the ensemble and on its members
    for view, rows in views:
        bias = (meta.get("decision_bias") or {}).get(view)
        if bias is not None and rows.any():
            probs[rows] = apply_decision_bias(probs[rows], bias)
            with np.errstate(invalid="ignore"):  # members not used for a row stay NaN
                member_p[:, rows] = apply_decision_bias(member_p[:, rows], bias)
    codes = {p: {"latent": lat[p], "input": inp[p]} for p in _PARTS}
    scores = ood_scores(tensors, meta, codes, {"discharge": has_d, "waveform": has_w})
    ood = scores["combined"]
    agreement = member_agreement(member_p[:neural], probs)
    if share > 0:  # neural and kernel members weigh as in the mixture
        agreement = (1.0 - share) * agreement + share * member_agreement(member_p[neural:], probs)
    min_agree = float(meta["config"].get("min_agreement", 0.0))
    top = np.nan_to_num(probs, nan=-1.0).argmax(1)
    floor, band = _unit_floors(meta, top, inp["acg_pairs"], views)
    with np.errstate(invalid="ignore"):
        below_floor = has_d & (confidence_ratio(probs) < floor)
    withheld, species_units = unsupported_for_species(meta, raw.get("species"), np.where(has_d, top, -1))
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
        "species_unsupported": withheld,
        "species_class_units": species_units,
        "used_waveform": used_w,
        "has_discharge": has_d,
    }


def _unit_floors(
    meta: Mapping, top: np.ndarray, acg_pairs: np.ndarray, views
) -> tuple[np.ndarray, np.ndarray]:
    """Each unit's ratio floor for its top class ``top`` in its view (``views``: (view, rows) pairs)
    and depth band: ``(floor (n,), band (n,))``. Units shallower than a band's edge take that band's
    floors (models before 1.5 have no bands); models before 1.2 have no floors (1)."""
    floor = np.ones(len(top))
    bands = meta.get("depth_bands") or []
    band = np.searchsorted([b["below_pairs"] for b in bands], acg_pairs, side="right")
    for b, floors in enumerate([b["ratio_floors"] for b in bands] + [meta.get("ratio_floors") or {}]):
        for kind, kind_rows in views:
            if floors:  # a mixed view without floors of its own takes the full members' (as strict)
                kind_floor = np.asarray(floors.get(kind, floors.get("full")), dtype=np.float64)
                here = kind_rows & (band == b)
                floor[here] = kind_floor[top[here]]
    return floor, band


def _mix_kernel(
    tensors: Mapping, meta: Mapping, probs: np.ndarray, x: Mapping, views
) -> tuple[np.ndarray, float]:
    """Models trained with ``kernel_share`` (from 1.6): each view's rows of ``probs`` (in place) mixed
    with the mean probabilities of its kernel kind's members and sharpened by the view's temperature
    (:func:`.real_kernel.mix_kernel_views`); x the standardised inputs per part, views (view, rows)
    pairs. Returns the kernel members' calibrated probabilities (K, n, C) - the full kind's members,
    then the discharge kind's, NaN where a member was not used - and the kernel's share (K = 0 and
    share 0 for models without kernel members)."""
    n, n_classes = probs.shape
    kern = meta.get("kernel")
    if not kern:
        return np.zeros((0, n, n_classes), np.float32), 0.0
    share = float(kern["share"])
    blocks = []
    for view, rows in views:
        kind = kernel_kind(view)
        kp = np.full((int(kern["n_members"]), n, n_classes), np.nan, np.float32)
        if rows.any():
            k_in = kernel_inputs({p: v[rows] for p, v in x.items()}, tensors, kind)
            kp[:, rows] = softmax(kernel_logits(tensors, kind, k_in) / kern["temperatures"][kind])
            mix = mix_kernel(probs[rows], kp[:, rows].mean(0), share)
            probs[rows] = sharpen(mix, kern["view_temperatures"][view])
        blocks.append(kp)
    return np.concatenate(blocks), share


def member_agreement(member_p: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Fraction of the members used (non-NaN rows of member_p (M, n, C)) whose top class is the
    top class of the mean probabilities probs (n, C); (n,), NaN where no member was used."""
    used = ~np.isnan(member_p).any(-1)
    top = np.nan_to_num(probs, nan=-1.0).argmax(-1)
    votes = (np.nan_to_num(member_p, nan=-1.0).argmax(-1) == top[None]) & used
    n_used = used.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_used > 0, votes.sum(0) / n_used, np.nan)
