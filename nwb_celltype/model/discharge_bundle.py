"""Bundles of models that read the ``acg-isi-wave`` feature family (models trained on real, identified
neurons from per-unit tables): safetensors weights + JSON model card, verified by sha256 like C4
bundles (:mod:`.bundle`), with their own network and prediction path (:mod:`.real_ensemble`).

On disk (same two files as every bundle)::

    weights.safetensors   the tensors of :func:`~.real_training.train_real_ensemble`
    model_card.json       card; ``feature_family`` = "acg-isi-wave", ``architecture.kind`` =
                          "real-ensemble", ``model_meta`` = the JSON half of the trained model
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ModelError, ModelMismatchError
from ..features.discharge import FAMILY, DischargeConfig, DischargeFeatureSet
from ..reasons import (  # noqa: F401  (the model's notes: re-exported)
    IGNORED_WAVEFORM_NOTE,
    NO_WAVEFORM_NOTE,
    SEPARATOR,
    is_edge_note,
    is_waveform_reason,
    join_reasons,
    reason_parts,
    scored_without_waveform,
    waveform_why,
)
from ..vocabulary import NOT_CLASSIFIABLE, UNCLASSIFIED
from .bundle import CardProperties
from .decision import BELOW_THRESHOLD, below_threshold_reason  # noqa: F401  (BELOW_THRESHOLD: re-exported)
from .real_species import SPECIES_REASON

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

KIND = "real-ensemble"
OOD_REASON = "out of distribution"
DISAGREE_REASON = "ensemble members disagree"
FLOOR_REASON = "confidence ratio below the model's floor for this label"
#: reason of a unit left unclassified by the threshold alone (elsewhere given as "")


@dataclass
class DischargeBundle(CardProperties):
    """A trained real-data ensemble and its model card (interface of :class:`~.bundle.ModelBundle`
    where annotate, predict and the NWB writer use it).

    Attributes
    ----------
    tensors : dict of str -> Tensor
        The model's weights (see :mod:`.real_training`).
    card : dict
        The model card; ``card["model_meta"]`` holds the model's JSON configuration.
    path : Path or None
    """

    tensors: dict[str, np.ndarray]
    card: dict
    path: Path | None = None
    _feature_config: DischargeConfig | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.tensors = _as_arrays(self.tensors)

    def __repr__(self) -> str:  # short: never the weights
        from .bundle import _bundle_repr

        meta = self.card.get("model_meta")
        n = _n_members(meta) if isinstance(meta, dict) else None
        return _bundle_repr(self, n_members=n or None, tensors=self.tensors)

    @property
    def uses_layer(self) -> bool:
        return False

    @property
    def meta(self) -> dict:
        return self.card["model_meta"]

    @property
    def n_members(self) -> int:
        return _n_members(self.meta)

    @property
    def device(self) -> str:
        """Always ``"cpu"``: the ensemble is small and runs in numpy."""
        return "cpu"

    @property
    def temperature(self) -> float:
        return float(self.card.get("calibration", {}).get("temperature", 1.0))

    def to(self, device: str | torch.device) -> DischargeBundle:
        """No-op kept for the bundle interface: the real-data ensemble runs in numpy on the CPU
        whatever device is asked for (it is a few hundred kB; a GPU would not speed it up)."""
        if str(device) != "cpu":
            logger.info("%s runs on the CPU (numpy); device %s not used", self.name, device)
        return self

    def _tensors(self) -> dict[str, torch.Tensor]:
        """The weights as torch tensors (what safetensors' torch writer stores)."""
        import torch

        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.tensors.items()}

    def predict(self, features: DischargeFeatureSet, *, threshold: float = 2.0, dtype=None, species=None):
        """Classify every unit of ``features``; see :func:`~.predict.predict_cell_types`."""
        return predict_discharge(self, features, threshold=threshold, species=species)


def _as_arrays(tensors: dict) -> dict[str, np.ndarray]:
    """Weights as contiguous numpy arrays (torch tensors from training are copied to the CPU)."""
    out = {}
    for k, v in tensors.items():
        if not isinstance(v, np.ndarray):
            v = v.detach().cpu().numpy()
        out[k] = np.ascontiguousarray(v)
    return out


def _n_members(meta: dict) -> int:
    n = meta.get("n_members", 0)
    return int(sum(n.values())) if isinstance(n, dict) else int(n)


def make_discharge_bundle(
    tensors: dict[str, torch.Tensor],
    meta: dict,
    *,
    classes: tuple[str, ...],
    feature_config: DischargeConfig,
    name: str,
    version: str,
    description: str = "",
    card_extra: dict | None = None,
) -> DischargeBundle:
    """Wrap a trained real-data ensemble (:func:`~.real_training.train_real_ensemble`) in a bundle."""
    from ._bundle_digest import _bundle_digest, _weights_digest
    from .bundle import WEIGHTS_FILE
    from .card import card_header, software_versions

    card: dict[str, Any] = {
        **card_header(name=name, version=version, description=description, classes=classes),
        "uses_layer": False,
        "feature_family": FAMILY,
        "feature_config": feature_config.to_dict(),
        "feature_config_sha256": feature_config.sha256,
        "architecture": {
            "kind": KIND,
            "n_members": _n_members(meta),
            "members_by_kind": meta.get("n_members"),
            **(
                {
                    "kernel_members_by_kind": {
                        k: meta["kernel"]["n_members"] for k in meta["kernel"]["temperatures"]
                    }
                }
                if meta.get("kernel")
                else {}
            ),
        },
        "calibration": dict(meta.get("calibration", {"method": "temperature"})),
        "decision": "mean probability over members"
        + (
            f", mixed with the kernel members' mean ({meta['kernel']['share']:g} of it; model_meta.kernel)"
            if meta.get("kernel")
            else ""
        )
        + "; label = argmax; confidence = p(top1) / p(top2); "
        "unclassified: confidence below the threshold or below the model's floor for the label "
        "(model_meta.ratio_floors, per member kind and class), out of distribution "
        "(model_meta.ood), or no majority of members behind the label (config.min_agreement)"
        + (
            ", or a label whose class the unit's species gave the model fewer than "
            f"{meta['config']['min_species_class_units']} training units of (model_meta.species_support; "
            "units of other or unstated species are not affected)"
            if meta.get("species_support") and meta["config"].get("min_species_class_units", 0) > 0
            else ""
        ),
        "software": software_versions(),
        "weights_file": WEIGHTS_FILE,
        "model_meta": meta,
    }
    card.update(card_extra or {})
    tensors = _as_arrays(tensors)
    card["weights_sha256"] = _weights_digest(tensors)
    card["sha256"] = _bundle_digest(card)
    return DischargeBundle(tensors=tensors, card=card, _feature_config=feature_config)


def load_discharge_bundle(path: Path, card: dict, tensors: dict[str, np.ndarray]) -> DischargeBundle:
    """Build a bundle from a verified card + weights (called by :func:`~.bundle.load_bundle`)."""
    if card.get("architecture", {}).get("kind") != KIND:
        raise ModelError(
            f"{path}: feature family {FAMILY!r} with architecture {card.get('architecture')!r}; this "
            f"nwb-celltype runs {KIND!r} models of that family. Upgrade nwb-celltype."
        )
    try:
        fc = DischargeConfig.from_dict(card["feature_config"])
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelMismatchError(f"feature configuration in {path} is unreadable: {exc}") from exc
    if fc.sha256 != card.get("feature_config_sha256"):
        raise ModelMismatchError(
            f"feature configuration of {path} hashes to {fc.sha256[:12]} but the card records "
            f"{str(card.get('feature_config_sha256'))[:12]}; re-train or use the recorded nwb-celltype."
        )
    if not isinstance(card.get("model_meta"), dict):
        raise ModelError(f"{path}: model card lacks 'model_meta' (the model's configuration).")
    return DischargeBundle(tensors=tensors, card=card, path=path, _feature_config=fc)


def predict_discharge(
    bundle: DischargeBundle, features: DischargeFeatureSet, *, threshold: float = 2.0, species=None
):
    """Per-unit predictions of a real-data bundle: mean calibrated probability over members, the
    decision rule, and abstention on out-of-distribution units, on units whose label no majority
    of members backs and on units whose confidence ratio is below the model's floor for their label
    (status ``unclassified``, reason says which). Units without discharge features are ``not_classifiable``; units without a waveform are
    classified by the discharge-only members and their reason says so (and whether the waveforms
    were set aside on request: :meth:`~nwb_celltype.features.discharge.DischargeFeatureSet.without_waveforms`).

    ``species``: the units' species (one name, e.g. an NWB Subject's ``species``, or one per unit;
    default ``features.meta["species"]``, which feature tables carry from their dataset.json): a unit
    of a species the model was trained on is not given a label whose class that species gave the
    model fewer than ``min_species_class_units`` training units (:mod:`.real_species`)."""
    pred = _predict_units(bundle, features, threshold=threshold, species=species)
    status = np.asarray(pred.status)
    logger.info(
        "classified %d / %d units (%d unclassified, %d out of distribution, %d not classifiable) with %s",
        int((status == "classified").sum()),
        len(status),
        int((status == "unclassified").sum()),
        int(np.asarray(pred.out_of_distribution, bool).sum()),
        int((status == "not_classifiable").sum()),
        bundle.name,
    )
    return pred


def _predict_units(bundle: DischargeBundle, features: DischargeFeatureSet, *, threshold=2.0, species=None):
    """:func:`predict_discharge` without its log line (evaluation folds predict at ratio 1 and say
    what they labelled at their own threshold)."""
    from .decision import check_threshold
    from .predict import Predictions

    _check_features(bundle, features)
    threshold = check_threshold(threshold)
    ok = np.asarray(features.usable, dtype=bool) & np.asarray(features.has_discharge, dtype=bool)
    rows = np.flatnonzero(ok)
    if species is None:
        species = features.meta.get("species")
    s = _score_units(bundle, features, rows, species)
    labels, status, conf = _decide_units(bundle, s, rows, threshold)
    reasons = _reasons(bundle, features, ok, s, status, conf, threshold)
    return Predictions(
        classes=bundle.classes,
        probabilities=s.probs,
        labels=labels,
        confidence=conf,
        votes=s.votes,
        status=status,
        reasons=reasons,
        unit_ids=np.asarray(features.unit_ids),
        threshold=float(threshold),
        out_of_distribution=s.ood,
        ood_score=s.ood_score,
        used_waveform=s.used_wave,
    )


def _check_features(bundle: DischargeBundle, features) -> None:
    """Refuse features of another family or computed with another configuration than the bundle's."""
    if not isinstance(features, DischargeFeatureSet):
        raise ModelMismatchError(
            f"model {bundle.name} reads {FAMILY!r} features, got {type(features).__name__}; compute them "
            "with the bundle's family (nwb_celltype.features.get_family(bundle.feature_family))."
        )
    features.config.check_same(bundle.feature_config, f"model {bundle.name}")


@dataclass
class _UnitScores:
    """The ensemble's outputs per unit, for every unit (NaN / 0 / False / "" where it did not run)."""

    probs: np.ndarray
    votes: np.ndarray
    ood: np.ndarray
    ood_score: np.ndarray
    disagree: np.ndarray
    agreement: np.ndarray
    below_floor: np.ndarray
    floor: np.ndarray
    species_withheld: np.ndarray
    species_units: np.ndarray
    used_wave: np.ndarray
    shallow_note: np.ndarray


def _score_units(
    bundle: DischargeBundle, features: DischargeFeatureSet, rows: np.ndarray, species
) -> _UnitScores:
    """Run the ensemble on the units ``rows`` of ``features`` (of ``species``: one name or one per
    unit, or None) and spread its outputs over all units."""
    from .real_ensemble import predict_real_ensemble

    n, k = len(features), len(bundle.classes)
    s = _UnitScores(
        probs=np.full((n, k), np.nan),
        votes=np.zeros((n, k), dtype=np.int64),
        ood=np.zeros(n, dtype=bool),
        ood_score=np.full(n, np.nan),
        disagree=np.zeros(n, dtype=bool),
        agreement=np.full(n, np.nan),
        below_floor=np.zeros(n, dtype=bool),
        floor=np.full(n, np.nan),
        species_withheld=np.zeros(n, dtype=bool),
        species_units=np.full(n, -1, dtype=np.int64),
        used_wave=np.zeros(n, dtype=bool),
        shallow_note=np.full(n, "", dtype=object),
    )
    if not len(rows):
        return s
    sub = features.subset(rows)
    raw = {
        "acg_counts": sub.acg_counts,
        "isi_counts": sub.isi_counts,
        "waveform": sub.waveform,
        "has_waveform": sub.has_waveform,
    }
    if species is not None:
        raw["species"] = np.broadcast_to(np.asarray(species, dtype=object), (n,))[rows]
    out = predict_real_ensemble(bundle.tensors, bundle.meta, raw)
    s.probs[rows] = out["probabilities"]
    mp = np.asarray(out["member_probabilities"])  # (M, r, k), NaN where a member was not used
    used = ~np.isnan(mp).any(-1)
    top = np.where(used, np.nan_to_num(mp).argmax(-1), -1)
    s.votes[rows] = np.stack([(top == c).sum(0) for c in range(k)], axis=1)
    s.ood[rows] = out["out_of_distribution"]
    s.ood_score[rows] = out["ood_score"]
    s.disagree[rows] = out["members_disagree"]
    s.agreement[rows] = out["member_agreement"]
    s.below_floor[rows] = out["below_ratio_floor"]
    s.floor[rows] = out["ratio_floor"]
    s.species_withheld[rows] = out["species_unsupported"]
    s.species_units[rows] = out["species_class_units"]
    s.used_wave[rows] = out["used_waveform"]
    s.shallow_note[rows] = _depth_notes(bundle.meta, out)
    return s


def _decide_units(bundle: DischargeBundle, s: _UnitScores, rows: np.ndarray, threshold: float):
    """Label, status and confidence per unit: the decision rule, abstaining where the ensemble flags a unit."""
    from .decision import decide

    n = len(s.ood)
    labels = np.full(n, NOT_CLASSIFIABLE, dtype=object)
    status = np.full(n, "not_classifiable", dtype=object)
    conf = np.full(n, np.nan)
    if len(rows):
        dec = decide(s.probs[rows], threshold)
        conf[rows] = dec.confidence
        # out-of-distribution units, units without a majority of members behind the label, units
        # below their label's ratio floor and units of a species too few of whose training units
        # had that label are abstained on
        keep = dec.classified & ~s.ood[rows] & ~s.disagree[rows] & ~s.below_floor[rows]
        keep &= ~s.species_withheld[rows]
        labels[rows] = np.where(keep, dec.labels(bundle.classes), UNCLASSIFIED)
        status[rows] = np.where(keep, "classified", "unclassified")
    return labels, status, conf


def _reasons(
    bundle: DischargeBundle,
    features: DischargeFeatureSet,
    ok: np.ndarray,
    s: _UnitScores,
    status: np.ndarray,
    conf: np.ndarray,
    threshold: float,
) -> np.ndarray:
    """Per unit, why it has no label (or how it was scored without a waveform); "" otherwise."""
    n = len(ok)
    reasons = np.full(n, "", dtype=object)
    given = np.asarray(features.reasons, dtype=object)
    ood_thr = 1.0  # the model reports the largest part score divided by its threshold
    min_agree = float(bundle.meta["config"].get("min_agreement", 0.0))
    ignored = bool(features.meta.get("waveforms_ignored"))
    no_waves = [IGNORED_WAVEFORM_NOTE if ignored else _no_waveform_note(g) for g in given]
    # what an abstention adds
    wave_note = [("" if s.used_wave[i] else f"{SEPARATOR}{no_waves[i]}") for i in range(n)]
    for i in range(n):
        if not ok[i]:
            reasons[i] = str(given[i]) or "unusable features"
        elif s.ood[i]:
            reasons[i] = (
                f"{OOD_REASON} (score {s.ood_score[i]:.2f} > {ood_thr:.0f}: unlike every training class)"
                f"{wave_note[i]}"
            )
        elif s.species_withheld[i] and status[i] == "unclassified" and conf[i] >= threshold:
            top = bundle.classes[int(np.nanargmax(s.probs[i]))]
            need = int(bundle.meta["config"].get("min_species_class_units", 0))
            reasons[i] = (
                f"{SPECIES_REASON} ({top}: the model was trained on {s.species_units[i]} such units of the "
                f"unit's species, fewer than {need}; its {top} labels on them were not validated){wave_note[i]}"
            )
        elif s.disagree[i]:
            reasons[i] = (
                f"{DISAGREE_REASON} (only {s.agreement[i]:.0%} of members back the top class, fewer than "
                f"{min_agree:.0%}){wave_note[i]}"
            )
        elif s.below_floor[i] and status[i] == "unclassified" and conf[i] >= threshold:
            top = bundle.classes[int(np.nanargmax(s.probs[i]))]
            reasons[i] = (
                f"{FLOOR_REASON} (ratio {conf[i]:.2f} < {s.floor[i]:g} for {top}: "
                "on the model's training units, labels of this class below that ratio were wrong too often"
                f"{s.shallow_note[i]}){wave_note[i]}"
            )
        else:  # said with the threshold where that is why it has no label
            below = below_threshold_reason(conf[i], threshold) if status[i] == "unclassified" else ""
            if not s.used_wave[i]:
                reasons[i] = join_reasons([below, no_waves[i]]) if below else no_waves[i]
            else:
                reasons[i] = below
    for i in np.flatnonzero(ok):  # what was set aside before counting, e.g. spikes outside obs_intervals
        notes = _spike_notes(given[i], waveform_used=bool(s.used_wave[i]))
        if notes:
            reasons[i] = join_reasons(filter(None, [reasons[i], notes]))
    return reasons


def _no_waveform_note(given) -> str:
    """:data:`~nwb_celltype.reasons.NO_WAVEFORM_NOTE`, with why the unit's waveform was unusable
    where its feature reasons say (:func:`~nwb_celltype.reasons.waveform_why`)."""
    return scored_without_waveform(waveform_why(reason_parts(str(given or ""))))


def _spike_notes(given, waveform_used: bool = True) -> str:
    """The notes of a classifiable unit's feature reasons on its spike times (duplicates, non-finite
    times, spikes outside its observation intervals), and, where its waveform was used, that its
    window was cut near the spike (:func:`~nwb_celltype.reasons.edge_note`); a missing waveform is
    said otherwise."""
    parts = reason_parts(str(given or ""))
    keep = [p for p in parts if not is_waveform_reason(p)]
    return join_reasons(keep + [p for p in parts if waveform_used and is_edge_note(p)])


__all__ = [
    "KIND",
    "NOT_CLASSIFIABLE",
    "UNCLASSIFIED",
    "DischargeBundle",
    "load_discharge_bundle",
    "make_discharge_bundle",
    "predict_discharge",
]


def card_json(bundle: DischargeBundle) -> str:
    """The card as canonical JSON (for tests and `show`)."""
    from ._bundle_digest import _json_safe

    return json.dumps(_json_safe(bundle.card), sort_keys=True)


def _raw(fs: DischargeFeatureSet) -> dict[str, np.ndarray]:
    return {
        "acg_counts": fs.acg_counts,
        "isi_counts": fs.isi_counts,
        "waveform": fs.waveform,
        "has_discharge": fs.has_discharge,
        "has_waveform": fs.has_waveform,
    }


def train_discharge_model(
    training_set,
    *,
    classes: tuple[str, ...] = ("PkC_ss", "PkC_cs", "MLI", "GoC", "MFB"),
    config=None,
    name: str = "nwb-celltype-real",
    version: str = "0.1.0",
    description: str = "",
    card_extra: dict | None = None,
) -> DischargeBundle:
    """Train a real-data ensemble on a training set of ``acg-isi-wave`` features
    (:func:`nwb_celltype.library.load_training_set` with a ``DischargeConfig``) and bundle it.

    Labelled units of ``classes`` train the classifier heads; every other unit (unlabelled, or
    labelled with a non-C4 type such as GrC) pre-trains the encoders only. Each unit's library entry
    (lab) balances the loss across labs within a class.
    """
    from .real_training import train_real_ensemble
    from .training_inputs import evidence_card, training_data_card

    fs = training_set.features
    if getattr(fs, "family", None) != FAMILY:
        raise ModelMismatchError(
            f"train_discharge_model needs {FAMILY!r} features; load the library with "
            "config=DischargeConfig() (CLI: train --family acg-isi-wave)."
        )
    labels = np.asarray(training_set.labels, dtype=object).astype(str)
    refs = training_set.references
    groups = np.array(
        [str(refs[int(k)].get("lab") or refs[int(k)].get("source")) for k in training_set.file_index],
        dtype=object,
    )
    species = np.array(
        [str(refs[int(k)].get("species") or "unknown") for k in training_set.file_index], dtype=object
    )
    labelled = labels != ""
    if not np.isin(labels[labelled], list(classes)).any():
        raise ModelError(f"no labelled unit of the classes {list(classes)} in the training set.")
    tensors, meta = train_real_ensemble(
        _raw(fs.subset(labelled)),
        labels[labelled],
        tuple(classes),
        unlabelled_raw=_raw(fs.subset(~labelled)) if (~labelled).any() else None,
        config=config,
        groups=groups[labelled],
        species=species[labelled],
    )
    # heads learn from labelled units that have a discharge; the rest only pre-train the encoders
    heads = fs.has_discharge.astype(bool)
    counts = {c: int(((labels == c) & heads).sum()) for c in classes}
    extra = {
        "training": {
            "method": "semi-supervised: autoencoders pre-trained on all units (labels unused), ensembles of "
            "classifier heads (discharge + waveform, and discharge-only) over CV folds, temperature "
            "scaling on out-of-fold logits (labs weighted equally), out-of-distribution thresholds from "
            "out-of-fold distances (latent codes and un-mapped inputs), per-class confidence-ratio floors "
            "from out-of-fold labels",
            "n_units": len(fs),
            "n_labelled": int(labelled.sum()),
            "class_counts": counts,
            "class_counts_meaning": "labelled units with ACG/ISI that trained the classifier heads",
            "n_pretrain_only": int(len(fs) - sum(counts.values())),
            "seconds": meta.get("training_seconds"),
        },
        **training_data_card(training_set),  # sources and manifest, no absolute paths
        **evidence_card(training_set),
    }
    extra.update(card_extra or {})
    return make_discharge_bundle(
        tensors,
        meta,
        classes=tuple(classes),
        feature_config=fs.config,
        name=name,
        version=version,
        description=description,
        card_extra=extra,
    )


def _depth_notes(meta: dict, out: dict) -> np.ndarray:
    """Per unit, what the floor reason adds for a unit in a shallow depth band (models with
    ``depth_bands``): how many ACG pairs it holds and below which depth those floors apply."""
    edges = [b["below_pairs"] for b in meta.get("depth_bands") or []]
    notes = np.full(len(out["depth_band"]), "", dtype=object)
    for i, b in enumerate(out["depth_band"]):
        if 0 <= b < len(edges):
            notes[i] = (
                f"; its ACG holds {out['acg_pairs'][i]:.0f} pairs at lags 1-100 ms, so the floors fitted "
                f"on units with fewer than {edges[b]:g} pairs apply"
            )
    return notes
