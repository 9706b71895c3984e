"""Independent references (no npyx, no code shared with the code under test): the hand-written numpy
network against hand arithmetic and against our torch network, waveform resampling against an
analytic band-limited signal at the rates real files come at, and the dense 3D ACG reference's
independence from the fast path."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy_network import _avg_pool, _conv2d, _gelu, numpy_c4_forward
from test_c4 import _random_member

import nwb_celltype.features.reference as reference_module
from nwb_celltype.features.config import FeatureConfig
from nwb_celltype.features.waveform import preprocess_waveform
from nwb_celltype.model.network import CNNCerebellum

# ------------------------------------------------------------------ the numpy network itself


def test_numpy_layers_on_hand_computed_values():
    x = np.array([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]])  # (1, 1, 2, 3)
    state = {"c.weight": np.array([[[[1.0, -1.0]]]]), "c.bias": np.array([10.0])}
    # kernel [1, -1] along the row: x[i, j] - x[i, j+1] + 10
    np.testing.assert_array_equal(_conv2d(state, "c", x), [[[[9.0, 9.0], [9.0, 9.0]]]])
    state = {"c.weight": np.array([[[[0.5], [2.0]]]]), "c.bias": np.array([0.0])}
    # kernel [0.5, 2] down the column: 0.5 x[0, j] + 2 x[1, j]
    np.testing.assert_array_equal(_conv2d(state, "c", x), [[[[8.5, 11.0, 13.5]]]])
    np.testing.assert_array_equal(_avg_pool(np.arange(12.0).reshape(1, 1, 2, 6), 2, 2), [[[[3.5, 5.5, 7.5]]]])
    np.testing.assert_array_equal(_avg_pool(np.arange(5.0).reshape(1, 1, 1, 5), 1, 2), [[[[0.5, 2.5]]]])
    # GELU(x) = x Phi(x): Phi(1) = 0.841344746068543, Phi(-2) = 0.0227501319481792
    np.testing.assert_allclose(
        _gelu(np.array([0.0, 1.0, -2.0])), [0.0, 0.841344746068543, -0.0455002638963584]
    )


def test_numpy_head_on_a_tiny_hand_computed_network():
    """Only the head varies (encoders zeroed): logits = fc2(relu(fc1(bn(z)))) by hand."""
    net = CNNCerebellum(n_classes=2, use_layer=False)
    state = {k: torch.zeros_like(v) for k, v in net.state_dict().items()}
    state["batch_norm.running_var"] = torch.ones(20)
    state["batch_norm.weight"] = torch.ones(20)
    state["acg_head.fc2.bias"][:10] = torch.arange(10.0)  # latent mean of the ACG = 0..9
    state["wvf_head.encoder.6.bias"][:10] = -1.0  # latent mean of the waveform = -1
    state["fc1.weight"][0, :] = 1.0  # h0 = relu(sum z / sqrt(1 + 1e-5)) = relu((45 - 10) / sqrt(1.00001))
    state["fc1.weight"][1, 10] = -1.0  # h1 = relu(1 / sqrt(1.00001))
    state["fc2.weight"][:, :2] = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    state["fc2.bias"][:] = torch.tensor([0.25, -0.5])
    h0, h1 = 35 / math.sqrt(1.00001), 1 / math.sqrt(1.00001)
    want = np.array([[h0 + 2 * h1 + 0.25, -h0 + 0.5 * h1 - 0.5]] * 3)
    logits, _ = numpy_c4_forward(state, np.zeros((3, 10, 101)), np.zeros((3, 90)))
    np.testing.assert_allclose(logits, want, rtol=1e-15)
    net.load_state_dict(state)
    with torch.no_grad():
        got = net.eval().double()(
            torch.zeros(3, 10, 101, dtype=torch.float64), torch.zeros(3, 90, dtype=torch.float64)
        )
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-14)


@pytest.mark.parametrize("use_layer", [False, True])
def test_torch_network_equals_numpy_network(use_layer):
    net = CNNCerebellum(n_classes=6, use_layer=use_layer)
    net.load_state_dict(_random_member(6, use_layer, seed=3))  # non-trivial batch-norm statistics
    net.eval().double()
    rng = np.random.default_rng(4)
    acg = rng.gamma(2.0, 0.5, size=(17, 10, 101))
    wvf = rng.normal(size=(17, 90)) * 0.3
    layer = np.eye(4)[rng.integers(0, 4, 17)] if use_layer else None
    want, want_phi = numpy_c4_forward(net.state_dict(), acg, wvf, layer)
    assert np.abs(want).max() > 1.0  # not a degenerate network
    with torch.no_grad():
        args = [
            torch.from_numpy(acg),
            torch.from_numpy(wvf),
            None if layer is None else torch.from_numpy(layer),
        ]
        got, phi = net(*args).numpy(), net.features(*args).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11 * np.abs(want).max())
    np.testing.assert_allclose(phi, want_phi, rtol=1e-11, atol=1e-11 * np.abs(want_phi).max())


# ------------------------------------------------------------------ waveform resampling


def _spike(t_ms: np.ndarray, peak_ms: float) -> np.ndarray:
    """A band-limited spike: Gaussian trough (0.15 ms) and repolarisation (0.3 ms). Its spectrum is
    below 1e-18 of its peak from 10 kHz up, and it is ~0 (< 1e-20) at both ends of a 4 ms window, so
    sampled at any rate >= 20 kHz it is a periodic band-limited signal up to float rounding."""
    return -np.exp(-(((t_ms - peak_ms) / 0.15) ** 2)) + 0.35 * np.exp(-(((t_ms - peak_ms - 0.5) / 0.3) ** 2))


@pytest.mark.parametrize("rate", [20000.0, 25000.0, 30000.0, 32000.0, 40000.0])
@pytest.mark.parametrize("peak_sample", [36, 39, 45])
def test_waveform_resampling_against_analytic_signal(rate, peak_sample):
    """At 20-40 kHz, a 4 ms band-limited spike resampled to 30 kHz, aligned, baseline-subtracted and
    normalised equals the analytic signal evaluated on the 30 kHz grid around its trough."""
    cfg = FeatureConfig()
    assert cfg.waveform_rate_hz == 30000 and cfg.waveform_samples == 90
    n = int(round(4e-3 * rate))
    peak_ms = peak_sample / 30.0  # on the 30 kHz grid (not on the input grid at 25 or 32 kHz)
    got = preprocess_waveform(120.0 * _spike(np.arange(n) / rate * 1000, peak_ms), rate, cfg)
    t_out = peak_ms + (np.arange(90) - 30) / 30.0  # -1 ms .. +2 ms around the trough, in ms
    expect = _spike(t_out, peak_ms)
    expect = expect - np.median(expect[:30])
    expect = expect / abs(expect[30])
    assert np.abs(got - expect).max() < 1e-9, f"{rate} Hz: max error {np.abs(got - expect).max():.2e}"


# ------------------------------------------------------------------ 3D ACG reference


def test_acg_reference_shares_no_code_with_the_fast_path():
    tree = ast.parse(Path(reference_module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    assert imported <= {"__future__", "math", "numpy", ".config"}, imported
