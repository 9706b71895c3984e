"""What training and prediction of the real-trained ensemble share: the feature family and member
kinds, the model inputs from raw discharge features, their transform (quantile map, standardisation),
the frozen autoencoders' latent codes, the member heads' inputs, and the sharpening of mixed
probabilities. numpy (torch only to encode with an autoencoder while training)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ModelError
from ..features.discharge_inputs import discharge_inputs, waveform_inputs
from .real_depth import acg_pairs
from .real_inference import NumpyEncoder

if TYPE_CHECKING:  # torch for training only: prediction runs in numpy (real_inference.py)
    from .real_networks import Autoencoder

__all__ = ["FAMILY", "KINDS", "apply_decision_bias", "fit_decision_bias", "quantile_map", "sharpen"]

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


def _latents(pre: Mapping[str, Autoencoder | NumpyEncoder], x: Mapping[str, np.ndarray]) -> dict:
    """Latent codes (n, k), float64, of every part's inputs x[part] (n, d)."""
    return {p: _latent(pre[p], x[p]) for p in _PARTS}


def _head_inputs(lat: Mapping[str, np.ndarray], x: Mapping[str, np.ndarray], kind: str) -> np.ndarray:
    """Head input of a member kind (n, k): the frozen latents ``lat``, then the standardised inputs."""
    parts = _PARTS if kind == "full" else ("discharge",)
    return np.concatenate([lat[p].astype(np.float32) for p in parts] + [x[p] for p in parts], axis=1).astype(
        np.float32
    )


def sharpen(p: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities p (n, C) raised to ``1 / temperature`` and renormalised: the temperature of
    a mixture of calibrated members (``softmax(log p / T)``); (n, C)."""
    z = np.log(np.clip(p, 1e-12, None)) / temperature
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def apply_decision_bias(p: np.ndarray, bias) -> np.ndarray:
    """Probabilities p (n, C) times ``exp(bias)`` (C,) per class, renormalised; (n, C)."""
    q = np.asarray(p, dtype=np.float64) * np.exp(np.asarray(bias, dtype=np.float64))
    return q / q.sum(-1, keepdims=True)


def fit_decision_bias(p: np.ndarray, y: np.ndarray, w: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class log-factors (C,) on p (n, C) that maximise the w-weighted balanced accuracy of
    their most probable class against y: coordinate search over [-2, 2] in steps of 0.1, three
    sweeps, a change kept only when it raises the score (ties keep 0, no bias)."""
    lp = np.log(np.clip(p, 1e-12, None))
    present = [c for c in range(n_classes) if np.any(y == c)]

    def score(b: np.ndarray) -> float:
        pred = (lp + b).argmax(1)
        return float(np.mean([np.sum(w[y == c] * (pred[y == c] == c)) / np.sum(w[y == c]) for c in present]))

    bias = np.zeros(n_classes)
    best = score(bias)
    for _ in range(3):
        for c in range(n_classes):
            for g in np.round(np.linspace(-2.0, 2.0, 41), 1):
                trial = bias.copy()
                trial[c] = g
                s = score(trial)
                if s > best + 1e-9:
                    best, bias = s, trial
    return bias
