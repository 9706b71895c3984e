"""Inference: per-unit class probabilities, label, confidence ratio and ensemble votes from a model
bundle and a FeatureSet; low-confidence units are "unclassified", unusable ones "not_classifiable"."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..vocabulary import NOT_CLASSIFIABLE
from .decision import below_threshold_reason, check_threshold, decide

if TYPE_CHECKING:  # torch is imported only by the C4 family's path: the real-data models run in numpy
    import torch

    from ..features.config import FeatureSet
    from .bundle import ModelBundle

logger = logging.getLogger(__name__)

__all__ = ["STATUSES", "Predictions", "predict_cell_types", "predict_member_probabilities"]

#: Values of :attr:`Predictions.status`.
STATUSES: tuple[str, ...] = ("classified", "unclassified", "not_classifiable")
_CHUNK = 1024  # units per batched ensemble call: keeps activations in cache


@dataclass
class Predictions:
    """Per-unit output of :func:`predict_cell_types`.

    Attributes
    ----------
    classes : tuple of str
        Class order of ``probabilities`` and ``votes``.
    probabilities : (n, k) float64
        Mean calibrated probability over members; NaN rows for not-classifiable units.
    labels : (n,) object
        Class name, ``"unclassified"`` (confidence below threshold) or ``"not_classifiable"``.
    confidence : (n,) float64
        p(top1) / p(top2) (>= 1; inf if top2 is 0); NaN for not-classifiable units.
    votes : (n, k) int64
        Number of members whose own argmax is each class.
    status : (n,) object
        "classified", "unclassified" or "not_classifiable".
    reasons : (n,) object
        Why a unit is not classifiable (the feature layer's reason) or unclassified (the model's
        abstention: "out of distribution ...", "ensemble members disagree ...", "confidence ratio
        below the model's floor ...", "confidence ratio below the threshold (r < t)", a withheld
        label's reason; "; scored from its discharge alone ..." where the waveform was not used),
        else "".
    unit_ids : (n,) int64
        Copied from the features.
    threshold : float
        Confidence-ratio threshold that was applied.
    out_of_distribution : (n,) bool or None
        Units the model abstained on because they resemble no training class (models that check).
    ood_score : (n,) float64 or None
        The out-of-distribution score behind it (larger = further from the training units).
    used_waveform : (n,) bool or None
        Whether the waveform entered the prediction (False: classified from discharge alone).
    """

    classes: tuple[str, ...]
    probabilities: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    votes: np.ndarray
    status: np.ndarray
    reasons: np.ndarray
    unit_ids: np.ndarray
    threshold: float
    out_of_distribution: np.ndarray | None = None
    ood_score: np.ndarray | None = None
    used_waveform: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:  # short: counts, never the arrays
        from .._repr import compact_repr, counts

        return compact_repr(
            self,
            n_units=len(self),
            classes=", ".join(map(str, self.classes)),
            threshold=self.threshold,
            status=counts(self.status),
            labels=counts(self.labels),
            probabilities=self.probabilities,
        )

    @property
    def predicted_class(self) -> np.ndarray:
        """Argmax class name per unit regardless of the threshold ("" if not classifiable)."""
        out = np.full(len(self), "", dtype=object)
        ok = self.status != "not_classifiable"
        out[ok] = np.asarray(self.classes, dtype=object)[np.nanargmax(self.probabilities[ok], axis=1)]
        return out


def predict_member_probabilities(
    bundle: ModelBundle,
    acg: torch.Tensor,
    waveform: torch.Tensor,
    layer: torch.Tensor,
    *,
    dtype: str | torch.dtype = "float32",
) -> torch.Tensor:
    """Calibrated probabilities of every member, (M, n, k) in ``dtype``, for tensors on the bundle's
    device (see :func:`predict_cell_types` for ``dtype``)."""
    import torch

    from .c4 import resolve_dtype

    dtype = resolve_dtype(dtype)
    acg, waveform, layer = acg.to(dtype), waveform.to(dtype), layer.to(dtype)
    if bundle.card.get("decision_rule") == "c4_laplace_probit_mean":
        # imported C4 ensembles (up to ~2,000 members): same rule, run in member blocks (model/c4.py)
        from .c4 import c4_member_probabilities

        return c4_member_probabilities(bundle, acg, waveform, layer, dtype=dtype)
    ens = bundle.ensemble
    laplace = bundle.laplace
    if next(iter(ens.buffers())).dtype != dtype:  # a converted copy; the bundle is left as it is
        ens = copy.deepcopy(ens).to(dtype)
        laplace = None if laplace is None else laplace.to(dtype)
    outs = []
    with torch.inference_mode():
        for i in range(0, acg.shape[0], _CHUNK):
            sl = slice(i, i + _CHUNK)
            logits, feats = ens(acg[sl], waveform[sl], layer[sl] if ens.use_layer else None)
            if laplace is not None:
                from .laplace import predictive_variance, probit_probabilities

                outs.append(probit_probabilities(logits, predictive_variance(laplace, feats)))
            else:
                outs.append(torch.softmax(logits / bundle.temperature, dim=-1))
    if not outs:
        return torch.zeros((ens.n_members, 0, ens.n_classes), dtype=dtype)
    return torch.cat(outs, dim=1)


def predict_cell_types(
    bundle: ModelBundle,
    features: FeatureSet,
    *,
    threshold: float = 2.0,
    dtype: str | torch.dtype = "float32",
    species: str | None = None,
) -> Predictions:
    """Classify every unit of ``features`` with the ensemble of ``bundle``.

    Parameters
    ----------
    bundle : ModelBundle
        From :func:`load_bundle`, :func:`load_demo_bundle` or :func:`train_model`.
    features : FeatureSet
        Computed with the bundle's feature configuration (``bundle.feature_config``).
    threshold : float
        Minimum confidence ratio p(top1) / p(top2) for a label (C4: 2); >= 1.
    dtype : {torch.float32, torch.float64} or its name
        Precision of the network and calibration. float32 (default) is how the models are trained
        and how C4 runs them; float64 runs the same stored weights (converted exactly) in double
        precision, 2-3.5x slower: a reference to check float32 results against.
    species : str, optional
        The units' species (an NWB Subject's ``species``, "mouse", "Macaca mulatta", ...). Models of
        the ``acg-isi-wave`` family from 1.7 do not give a unit of a species they were trained on a
        label whose class that species gave them fewer than ``min_species_class_units`` training
        units (:mod:`nwb_celltype.model.real_species`); default: what the features say
        (``features.meta["species"]`` for feature tables), else no species. C4-family models ignore it.

    Returns
    -------
    Predictions
        One row per unit, in the order of ``features``; no unit is dropped.

    Raises
    ------
    ModelMismatchError
        The features were computed with another configuration than the model was trained on.
    InvalidValueError
        ``threshold`` < 1 or not finite.
    ModelError
        ``dtype`` is not float32 or float64.
    """
    if getattr(bundle, "feature_family", "c4-3d") != "c4-3d":  # another family's own prediction path
        return bundle.predict(features, threshold=threshold, dtype=dtype, species=species)
    import torch

    from .c4 import resolve_dtype
    from .training import check_feature_shapes, usable_rows

    dtype = resolve_dtype(dtype)
    check_threshold(threshold)
    features.config.check_same(bundle.feature_config, f"model {bundle.name}")
    check_feature_shapes(features)
    n, k = len(features), len(bundle.classes)
    ok = usable_rows(features)
    rows = np.flatnonzero(ok)
    probs = np.full((n, k), np.nan)
    votes = np.zeros((n, k), dtype=np.int64)
    member = np.zeros((1, 0, k))  # (M, rows, k) member probabilities
    dev = bundle.device
    if len(rows):
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        acg = torch.from_numpy(np.ascontiguousarray(features.acg[rows], dtype=np_dtype)).to(dev)
        wvf = torch.from_numpy(np.ascontiguousarray(features.waveform[rows], dtype=np_dtype)).to(dev)
        lay = torch.from_numpy(np.ascontiguousarray(features.layer[rows], dtype=np_dtype)).to(dev)
        pm = predict_member_probabilities(bundle, acg, wvf, lay, dtype=dtype)  # (M, r, k)
        probs[rows] = pm.mean(0).double().cpu().numpy()
        member = pm.cpu().numpy()
    decision = decide(probs[rows], threshold, member)
    votes[rows] = decision.votes
    conf = np.full(n, np.nan)
    conf[rows] = decision.confidence
    classified = np.zeros(n, dtype=bool)
    classified[rows] = decision.classified
    labels = np.full(n, NOT_CLASSIFIABLE, dtype=object)
    status = np.full(n, "not_classifiable", dtype=object)
    labels[rows] = decision.labels(bundle.classes)
    status[rows] = np.where(decision.classified, "classified", "unclassified")
    reasons = np.full(n, "", dtype=object)
    for i in np.flatnonzero(status == "unclassified"):
        reasons[i] = below_threshold_reason(conf[i], threshold)
    given = np.asarray(features.reasons, dtype=object)
    for i in np.flatnonzero(~ok):
        r = given[i] if isinstance(given[i], str) and given[i] else ""
        reasons[i] = r or ("non-finite feature values" if features.usable[i] else "unusable features")
    logger.info(
        "classified %d / %d units (%d unclassified, %d not classifiable) with %s",
        int(classified.sum()),
        n,
        int((status == "unclassified").sum()),
        int((~ok).sum()),
        bundle.name,
    )
    return Predictions(
        classes=bundle.classes,
        probabilities=probs,
        labels=labels,
        confidence=conf,
        votes=votes,
        status=status,
        reasons=reasons,
        unit_ids=np.asarray(features.unit_ids),
        threshold=float(threshold),
    )
