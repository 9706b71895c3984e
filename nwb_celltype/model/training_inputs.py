"""Inputs of the c4-3d training: which rows are usable and labelled, in which class order, whether
the arrays have the network's shapes, and the float32 tensors the network takes."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from ..errors import LibraryError, ModelError
from ..features.config import FeatureSet
from ..vocabulary import C4_CLASSES, LAYERS
from .network import ACG_SHAPE

__all__ = ["TrainingSetLike", "check_feature_shapes", "labelled_rows", "tensors_from_features", "usable_rows"]


class TrainingSetLike(Protocol):
    """What :func:`~.training.train_model` needs: ``features`` (FeatureSet) and ``labels`` ((n,) object array of
    class names, ``""`` for unlabelled units); ``references`` (list of dicts) is optional."""

    features: FeatureSet
    labels: np.ndarray


def usable_rows(features: FeatureSet) -> np.ndarray:
    """Boolean mask (n,) of rows that are usable and have finite ACG, waveform and layer values."""
    n = len(features)
    finite = (
        np.isfinite(features.acg.reshape(n, -1)).all(1)
        & np.isfinite(features.waveform.reshape(n, -1)).all(1)
        & np.isfinite(features.layer.reshape(n, -1)).all(1)
    )
    return np.asarray(features.usable, dtype=bool) & finite


def check_feature_shapes(features: FeatureSet) -> None:
    """Raise :class:`ModelError` unless the arrays have the shapes the network takes."""
    n = len(features)
    want = {"acg": (n, *ACG_SHAPE), "waveform": (n, 90), "layer": (n, len(LAYERS))}
    bad = [
        f"{k}: expected {v}, got {tuple(np.shape(getattr(features, k)))}"
        for k, v in want.items()
        if tuple(np.shape(getattr(features, k))) != v
    ]
    if bad:
        raise ModelError(
            "features do not have the shapes of the C4 network (" + "; ".join(bad) + "); compute them "
            "with nwb_celltype.features.extract_features and the default FeatureConfig layout."
        )


def tensors_from_features(features: FeatureSet, rows: np.ndarray | None = None):
    """(acg (n,10,101), waveform (n,90), layer (n,4)) float32 tensors of ``rows``."""
    sl = slice(None) if rows is None else rows
    acg = torch.from_numpy(np.ascontiguousarray(features.acg[sl], dtype=np.float32))
    wvf = torch.from_numpy(np.ascontiguousarray(features.waveform[sl], dtype=np.float32))
    lay = torch.from_numpy(np.ascontiguousarray(features.layer[sl], dtype=np.float32))
    return acg, wvf, lay


def labelled_rows(training_set: TrainingSetLike, classes: tuple[str, ...] | None = None):
    """(rows, y, classes): usable labelled rows, their class indices and the class order."""
    feats = training_set.features
    labels = np.asarray(training_set.labels, dtype=object)
    if len(labels) != len(feats):
        raise LibraryError(
            f"training set has {len(feats)} feature rows but {len(labels)} labels; they must match "
            "one to one ('' for unlabelled units)."
        )
    is_lab = np.array([isinstance(v, str) and v != "" for v in labels])
    ok = usable_rows(feats)
    present = sorted({str(v) for v in labels[is_lab & ok]})
    if classes is None:
        # C4's order for C4's classes, then any others alphabetically
        classes = tuple([c for c in C4_CLASSES if c in present] + [c for c in present if c not in C4_CLASSES])
    unknown = sorted(set(present) - set(classes))
    if unknown:
        raise LibraryError(f"labels {unknown} are not among the model's classes {list(classes)}.")
    rows = np.flatnonzero(is_lab & ok)
    y = np.array([classes.index(str(v)) for v in labels[rows]], dtype=np.int64)
    return rows, y, tuple(classes)


def evidence_card(training_set) -> dict:
    """Card fields on the labels' evidence: ``evidence`` (per field, ``evidence_type`` and
    ``labelled_by``, the labelled units' count of each value), and ``trained_on_simulated_data``
    True when every labelled unit's evidence is ``simulation`` (then annotate flags the model as it
    flags the demo model). {} where the training set records no evidence."""
    from collections import Counter

    ev = getattr(training_set, "evidence", None) or {}
    labels = np.asarray(training_set.labels, dtype=object)
    labelled = np.array([isinstance(v, str) and v != "" for v in labels], dtype=bool)
    summary = {}
    for f in ("evidence_type", "labelled_by"):
        vals = ev.get(f)
        if vals is not None and len(vals) == len(labels):
            counts = Counter(str(v) or "unknown" for v in np.asarray(vals, dtype=object)[labelled])
            summary[f] = dict(sorted(counts.items()))
    card: dict = {"evidence": summary} if summary else {}
    types = set(summary.get("evidence_type", {}))
    if types and types <= {"simulation"}:
        card["trained_on_simulated_data"] = True
    return card
