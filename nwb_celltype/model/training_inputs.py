"""Inputs of the c4-3d training: which rows are usable and labelled, in which class order, whether
the arrays have the network's shapes, and the float32 tensors the network takes; and what a model
card records of them (sources, the manifest that listed them) without the build machine's paths."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import PurePosixPath, PureWindowsPath
from typing import Protocol

import numpy as np

from ..errors import LibraryError, ModelError, ModelMismatchError
from ..features.config import FeatureSet
from ..library.manifest import identify_manifest
from ..vocabulary import C4_CLASSES, LAYERS

# torch is imported where tensors are made: checking a manifest against a card needs none

__all__ = [
    "TrainingSetLike",
    "check_feature_shapes",
    "identify_manifest",
    "labelled_rows",
    "tensors_from_features",
    "training_data_card",
    "usable_rows",
    "verify_training_manifest",
]


class TrainingSetLike(Protocol):
    """What :func:`~.training.train_model` needs: ``features`` (FeatureSet) and ``labels`` ((n,) object array of
    class names, ``""`` for unlabelled units); ``references`` (list of dicts) and ``manifest`` (what
    :func:`identify_manifest` returns for the manifest the set was loaded from) are optional."""

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
    from .network import ACG_SHAPE

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
    import torch

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
    ``labelled_by``, the labelled units' count of each value), ``simulated_label_fraction`` (the
    labelled units whose label a simulation made, where any did: :func:`_simulated`) and
    ``trained_on_simulated_data`` True when every one did (then annotate flags the model as it flags
    the demo model). {} where the training set records no evidence."""
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
    simulated = _simulated(ev, len(labels))[labelled]
    if simulated.any():
        card["simulated_label_fraction"] = float(simulated.mean())
    if len(simulated) and simulated.all():
        card["trained_on_simulated_data"] = True
    return card


def _simulated(ev: Mapping, n: int) -> np.ndarray:
    """(n,) bool: units whose label comes from a simulation, by its evidence (``simulation``) or by
    what the package's simulator writes beside its stand-in evidence types (``labelled_by``
    "nwb_celltype.simulate ...", ``evidence_text`` "SIMULATED unit ...")."""
    out = np.zeros(n, dtype=bool)
    for field, test in (
        ("evidence_type", lambda v: v == "simulation"),
        ("labelled_by", lambda v: v.startswith("nwb_celltype.simulate")),
        ("evidence_text", lambda v: v.startswith("SIMULATED")),
    ):
        vals = ev.get(field)
        if vals is not None and len(vals) == n:
            out |= np.array([test(str(v)) for v in np.asarray(vals, dtype=object)], dtype=bool)
    return out


#: How a card's ``training_manifest`` is checked against a manifest file (stored in the card).
VERIFY_TEXT = (
    "the manifest file's bytes must have this sha256 (`sha256sum FILE`, or "
    "nwb_celltype.model.training_inputs.verify_training_manifest(card, FILE)); its file name may differ"
)


def _portable_source(ref: Mapping) -> dict:
    """``ref`` with an absolute local ``source`` (a path on the build machine) cut to its file name;
    its ``sha256`` still identifies the file."""
    ref = dict(ref)
    src = ref.get("source")
    if isinstance(src, str) and (PurePosixPath(src).is_absolute() or PureWindowsPath(src).is_absolute()):
        ref["source"] = PureWindowsPath(src).name if "\\" in src else PurePosixPath(src).name
        ref["source_note"] = "file name only: the absolute path on the build machine is not recorded"
    return ref


def training_data_card(training_set) -> dict:
    """Card fields on where the training data came from: ``training_data`` (the set's
    ``references``: one per source, with its content ``sha256``; a source is an entry's path as the
    manifest lists it, relative to the manifest's folder, and an absolute path is cut to its file
    name) and, when the set records the manifest it was loaded from (``manifest``: a path or
    :func:`identify_manifest`'s dict), ``training_manifest``: that file's name, sha256 and size and
    how to check a manifest against it (:data:`VERIFY_TEXT`) — never its absolute location."""
    refs = [_portable_source(r) for r in (getattr(training_set, "references", None) or [])]
    card: dict = {"training_data": refs}
    manifest = getattr(training_set, "manifest", None)
    if isinstance(manifest, (str, os.PathLike)):
        manifest = identify_manifest(manifest)
    if manifest:
        card["training_manifest"] = {
            "file_name": str(manifest["file_name"]),
            "sha256": str(manifest["sha256"]),
            "size_bytes": int(manifest["size_bytes"]),
            "sources": "training_data lists the manifest's entries; their paths are relative to its folder",
            "verify": VERIFY_TEXT,
        }
    return card


def verify_training_manifest(card, path: str | os.PathLike) -> dict:
    """Check that the manifest file ``path`` is the one the model of ``card`` (a model card dict, or
    a bundle with ``.card``) was trained from: the same bytes (sha256), whatever its name or folder.
    Returns the card's ``training_manifest`` record.

    Raises
    ------
    ModelError
        The card records no training manifest (a model trained before cards recorded it, or not
        from a manifest).
    ModelMismatchError
        ``path`` is another manifest, or another version of it.
    """
    card = getattr(card, "card", card)
    record = card.get("training_manifest") if isinstance(card, Mapping) else None
    if not record:
        raise ModelError(
            f"model {card.get('name', '?') if isinstance(card, Mapping) else '?'} records no training "
            "manifest (trained from a list of files, or before cards recorded it); compare its "
            "training_data sha256 values with your files instead."
        )
    got = identify_manifest(path)
    if got["sha256"] != record["sha256"]:
        raise ModelMismatchError(
            f"{path} (sha256 {got['sha256'][:12]}..., {got['size_bytes']} bytes) is not the manifest "
            f"model {card.get('name', '?')} was trained from ({record['file_name']}, sha256 "
            f"{record['sha256'][:12]}..., {record['size_bytes']} bytes); find that version of it."
        )
    return dict(record)
