"""Synthetic feature sets for tests and benchmarks of the model layer: class-dependent shapes of the
log-lag 3D ACG and of the waveform plus noise. Not a neuron simulator (see nwb_celltype.simulate)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..features.config import FeatureConfig, FeatureSet
from ..vocabulary import C4_CLASSES, LAYERS

__all__ = ["SyntheticTrainingSet", "make_synthetic_features", "make_synthetic_training_set"]

#: C4's ground-truth class counts (mouse).
C4_COUNTS: dict[str, int] = {"PkC_ss": 69, "PkC_cs": 58, "MLI": 27, "GoC": 18, "MFB": 30}
# per class: (refractory lag index, burst peak height, baseline rate, waveform trough width (samples),
# after-peak amplitude, typical layer)
_PARAMS = {
    "GoC": (12, 0.2, 0.6, 7.0, 0.25, "GCL"),
    "MLI": (6, 0.6, 1.2, 4.0, 0.45, "ML"),
    "MFB": (3, 1.6, 1.5, 2.5, 0.15, "GCL"),
    "PkC_ss": (5, 0.9, 3.0, 3.5, 0.35, "PCL"),
    "PkC_cs": (30, 0.3, 0.1, 9.0, 0.6, "PCL"),
}


@dataclass
class SyntheticTrainingSet:
    """features + labels ("" = unlabelled) + references, like library.TrainingSet."""

    features: FeatureSet
    labels: np.ndarray
    references: list = field(default_factory=list)


def make_synthetic_features(
    classes: np.ndarray, *, seed: int = 0, noise: float = 0.15, with_layer: bool = False, shift: float = 0.0
) -> FeatureSet:
    """FeatureSet with one row per entry of ``classes`` (class names), C4 shapes (10, 101) / 90 / 4.

    ``shift`` perturbs every class's parameters (a crude "other species" test)."""
    rng = np.random.default_rng(seed)
    n = len(classes)
    lags = np.arange(101, dtype=float)
    t = np.arange(90, dtype=float)
    acg = np.empty((n, 10, 101), np.float32)
    wvf = np.empty((n, 90), np.float32)
    layer = np.zeros((n, 4), np.float32)
    for i, c in enumerate(classes):
        refr, burst, base, width, after, lay = _PARAMS[str(c)]
        refr = refr * (1 + shift) * np.exp(0.15 * rng.normal())
        base = base * np.exp(0.2 * rng.normal())
        rate_gain = np.linspace(0.5, 1.5, 10)[:, None]
        rise = 1 / (1 + np.exp(-(lags - refr) / max(refr / 4, 0.5)))
        bump = burst * np.exp(-0.5 * ((lags - 1.5 * refr) / (0.5 * refr + 1)) ** 2)
        a = rate_gain * base * rise + bump
        a[:, 0] = 0
        acg[i] = a * (1 + noise * rng.normal(size=a.shape) * 0.5) + noise * 0.1 * rng.normal(size=a.shape)
        w = width * (1 + shift) * np.exp(0.1 * rng.normal())
        trough = -np.exp(-0.5 * ((t - 30) / w) ** 2)
        peak = after * np.exp(-0.5 * ((t - 30 - 3 * w) / (2 * w)) ** 2)
        wv = trough + peak + noise * 0.1 * rng.normal(size=90)
        wvf[i] = wv / -wv.min()
        if with_layer:
            layer[i, LAYERS.index(lay) if rng.random() > 0.1 else 0] = 1
        else:
            layer[i, 0] = 1
    return FeatureSet(
        unit_ids=np.arange(n, dtype=np.int64),
        acg=acg,
        waveform=wvf,
        layer=layer,
        stats={"mean_rate_hz": np.array([_PARAMS[str(c)][2] * 20 for c in classes], float)},
        usable=np.ones(n, bool),
        reasons=np.full(n, "", dtype=object),
        config=FeatureConfig(),
    )


def make_synthetic_training_set(
    counts: dict[str, int] | None = None, n_unlabelled: int = 300, *, seed: int = 0, **kw
) -> SyntheticTrainingSet:
    """Labelled units with ``counts`` per class (default C4's) + unlabelled units of random classes."""
    counts = counts or C4_COUNTS
    rng = np.random.default_rng(seed)
    lab = np.concatenate([[c] * k for c, k in counts.items()]).astype(object)
    unl = rng.choice(np.array(C4_CLASSES, dtype=object), size=n_unlabelled)
    feats = make_synthetic_features(np.concatenate([lab, unl]), seed=seed, **kw)
    labels = np.concatenate([lab, np.full(n_unlabelled, "", dtype=object)])
    return SyntheticTrainingSet(
        features=feats, labels=labels, references=[{"kind": "synthetic", "seed": seed}]
    )
