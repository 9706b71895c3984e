"""The C4 classifier's forward pass written by hand in float64 numpy from its state dict: an
expected value for the tests that shares no code with nwb_celltype.model (nor with torch).

Architecture (C4's ``CNNCerebellum``, eval mode: batch norms use running statistics, no dropout):
ACG (n, 10, 101) as one channel -> conv 1x10 (8) -> average pool 2x2 -> ReLU -> batch norm ->
conv 5x1 (16) -> average pool 1x2 -> ReLU -> batch norm -> flatten (368) -> linear 200 + ReLU ->
linear 20 (first 10: latent mean). Waveform (n, 90) -> linear 600 + GELU -> linear 300 + GELU ->
linear 20 (first 10). Head: [mean_acg, mean_wvf (, layer)] -> batch norm -> linear 100 + ReLU
(, layer) -> linear k.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import erf

EPS = 1e-5  # torch's BatchNorm default


def _p(state, name: str) -> np.ndarray:
    v = state[name]
    return np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, dtype=np.float64)


def _linear(state, prefix: str, x: np.ndarray) -> np.ndarray:
    return x @ _p(state, prefix + ".weight").T + _p(state, prefix + ".bias")


def _batch_norm(state, prefix: str, x: np.ndarray) -> np.ndarray:
    """Normalise axis 1 of x with running statistics, then scale and shift."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean, var = _p(state, prefix + ".running_mean"), _p(state, prefix + ".running_var")
    w, b = _p(state, prefix + ".weight"), _p(state, prefix + ".bias")
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + EPS) * w.reshape(shape) + b.reshape(shape)


def _conv2d(state, prefix: str, x: np.ndarray) -> np.ndarray:
    """'valid' cross-correlation: out[n, o, i, j] = b[o] + sum_{c,u,v} x[n, c, i+u, j+v] w[o, c, u, v]."""
    w = _p(state, prefix + ".weight")
    patches = sliding_window_view(x, w.shape[2:], axis=(2, 3))  # (n, c, H', W', kh, kw)
    return np.einsum("ncijuv,ocuv->noij", patches, w) + _p(state, prefix + ".bias")[None, :, None, None]


def _avg_pool(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    n, c, h, w = x.shape
    x = x[:, :, : h // kh * kh, : w // kw * kw]
    return x.reshape(n, c, h // kh, kh, w // kw, kw).mean(axis=(3, 5))


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def numpy_c4_forward(state, acg, waveform, layer=None) -> tuple[np.ndarray, np.ndarray]:
    """(logits (n, k), input of the last linear layer (n, 100 [+4])) in float64."""
    a = np.asarray(acg, dtype=np.float64).reshape(-1, 1, 10, 101)
    x = _batch_norm(state, "acg_head.batchnorm1", _relu(_avg_pool(_conv2d(state, "acg_head.conv1", a), 2, 2)))
    x = _batch_norm(state, "acg_head.batchnorm2", _relu(_avg_pool(_conv2d(state, "acg_head.conv2", x), 1, 2)))
    x = _relu(_linear(state, "acg_head.fc1", x.reshape(len(x), -1)))
    mu_acg = _linear(state, "acg_head.fc2", x)[:, :10]
    w = np.asarray(waveform, dtype=np.float64)
    w = _gelu(_linear(state, "wvf_head.encoder.0", w))
    w = _gelu(_linear(state, "wvf_head.encoder.3", w))
    mu_wvf = _linear(state, "wvf_head.encoder.6", w)[:, :10]
    z = np.concatenate([mu_acg, mu_wvf], axis=1)
    if layer is not None:
        z = np.concatenate([z, np.asarray(layer, dtype=np.float64)], axis=1)
    h = _relu(_linear(state, "fc1", _batch_norm(state, "batch_norm", z)))
    if layer is not None:
        h = np.concatenate([h, np.asarray(layer, dtype=np.float64)], axis=1)
    return _linear(state, "fc2", h), h
