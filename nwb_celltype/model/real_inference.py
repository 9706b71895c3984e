"""Inference of the real-data ensemble in numpy: the pre-trained encoders and the stacked classifier
heads of :mod:`.real_networks`, evaluated from their stored weights without importing torch.

The ensemble is small (about 1 MB with its kernel members), so numpy runs it at thousands of units per second; what
this buys is start-up: ``annotate``, ``predict`` and every ``annotate-dandiset`` worker with the
default model load no torch (~1 s of CPU and ~200 MB per process). Training stays in torch; the
numerics agree with the torch modules to float32 rounding (tests/test_real_model.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["NumpyEncoder", "gelu", "member_logits", "softmax"]

_SQRT_HALF = 0.7071067811865476
# erfc(x) = t exp(-x^2 + P(t)), t = 1 / (1 + x/2), x >= 0: fractional error < 1.2e-7 everywhere
# (Chebyshev fit of W. H. Press et al., Numerical Recipes, 2nd ed., section 6.2, "erfcc").
_ERFC_COEFFS = (
    -1.26551223,
    1.00002368,
    0.37409196,
    0.09678418,
    -0.18628806,
    0.27886807,
    -1.13520398,
    1.48851587,
    -0.82215223,
    0.17087277,
)


def _erf(x: np.ndarray) -> np.ndarray:
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = np.zeros_like(t)
    for c in reversed(_ERFC_COEFFS):
        poly = poly * t + c
    erfc = t * np.exp(-z * z + poly)
    return np.where(x >= 0, 1.0 - erfc, erfc - 1.0)


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU with the exact (erf) form, as ``torch.nn.functional.gelu``'s default, in float64."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * (1.0 + _erf(x * _SQRT_HALF))


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def _arr(v) -> np.ndarray:
    return np.asarray(v, dtype=np.float64)


class NumpyEncoder:
    """The encoder half of a stored :class:`~.real_networks.Autoencoder`
    (``enc1 -> GELU -> enc2``; dropout is off at inference)."""

    def __init__(self, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray) -> None:
        self.w1, self.b1, self.w2, self.b2 = _arr(w1), _arr(b1), _arr(w2), _arr(b2)

    @classmethod
    def from_tensors(cls, tensors: Mapping, part: str) -> NumpyEncoder:
        """From the bundle's ``ood.<part>.enc{1,2}.{weight,bias}`` (torch ``Linear`` layout: (out, in))."""
        p = f"ood.{part}."
        return cls(
            tensors[p + "enc1.weight"],
            tensors[p + "enc1.bias"],
            tensors[p + "enc2.weight"],
            tensors[p + "enc2.bias"],
        )

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Latent codes (n, latent) of standardised inputs x (n, d), float64."""
        h = gelu(_arr(x) @ self.w1.T + self.b1)
        return h @ self.w2.T + self.b2


def member_logits(tensors: Mapping, kind: str, x: np.ndarray) -> np.ndarray:
    """Logits (m, n, C) of the stacked heads of member kind ``kind`` for head inputs x (n, d):
    layers ``members.<kind>.h1 .. hL`` (weights (m, in, out), biases (m, out)), GELU between them."""
    prefix = f"members.{kind}.h"
    n_layers = sum(1 for k in tensors if k.startswith(prefix) and k.endswith("_weight"))
    if n_layers == 0:
        from ..errors import ModelError

        raise ModelError(f"the model has no {kind!r} members (no {prefix}1_weight tensor).")
    h = _arr(x)[None]  # (1, n, d), broadcast over members
    for k in range(1, n_layers + 1):
        w, b = _arr(tensors[f"{prefix}{k}_weight"]), _arr(tensors[f"{prefix}{k}_bias"])
        h = np.matmul(h, w) + b[:, None, :]
        if k < n_layers:
            h = gelu(h)
    return h
