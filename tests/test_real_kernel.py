"""Kernel members of the real-data ensemble (nwb_celltype.model.real_kernel): random Fourier features
that approximate an RBF kernel, logistic-regression members per fold with a balanced decision, and
their place in training and prediction (``RealModelConfig.kernel_share``)."""

from __future__ import annotations

import numpy as np
import pytest

from nwb_celltype.model.real_kernel import (
    fit_feature_map,
    kernel_features,
    kernel_inputs,
    kernel_logits,
    train_kernel_members,
)

torch = pytest.importorskip("torch")
from test_real_model import CLASSES, TINY, _half_without_waveform, _units  # noqa: E402

from nwb_celltype.model.real_ensemble import predict_real_ensemble  # noqa: E402
from nwb_celltype.model.real_inputs import sharpen  # noqa: E402
from nwb_celltype.model.real_networks import RealModelConfig  # noqa: E402
from nwb_celltype.model.real_training import train_real_ensemble  # noqa: E402


def test_random_fourier_features_approximate_the_rbf_kernel():
    """z(x).z(x') -> exp(-gamma |x - x'|^2) with gamma = 1 / (d var(pool)), scikit-learn's "scale"."""
    rng = np.random.default_rng(0)
    pool = rng.uniform(0, 1, (400, 12))
    w, b = fit_feature_map(pool, 40000, seed=1)
    x = pool[:30]
    z = kernel_features(x, w, b)
    gamma = 1.0 / (12 * pool.var())
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(z @ z.T, np.exp(-gamma * d2), atol=0.03)
    assert w.dtype == np.float32 and w.shape == (12, 40000)


def test_members_leave_their_fold_out_and_decide_balanced():
    """Member f is scikit-learn's logistic regression on the other folds' rows, with each class's
    log share of those rows taken off its logit; the out-of-fold logits are member f's on fold f."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(2)
    y = np.repeat([0, 1, 2], [60, 20, 10])
    z = rng.standard_normal((90, 6)) + y[:, None] * 0.8
    fold = np.tile(np.arange(3), 30)
    usable = np.ones(90, bool)
    usable[:5] = False
    coef, icpt, oof = train_kernel_members(z, y, fold, usable, 4, c=2.0)
    assert coef.shape == (3, 4, 6) and icpt.shape == (3, 4) and oof.shape == (1, 90, 4)
    assert np.isnan(oof[0, :5]).all() and np.isfinite(oof[0, 5:]).all()
    assert (icpt[:, 3] == -30.0).all()  # a class no member saw
    for f in range(3):
        train = usable & (fold != f)
        ref = LogisticRegression(C=2.0, max_iter=5000, tol=1e-6).fit(z[train], y[train])
        share = np.bincount(y[train], minlength=3) / train.sum()
        held = usable & (fold == f)
        expect = ref.predict_proba(z[held]) / share
        expect /= expect.sum(1, keepdims=True)
        got = np.exp(oof[0, held, :3] - oof[0, held, :3].max(1, keepdims=True))
        np.testing.assert_allclose(got / got.sum(1, keepdims=True), expect, atol=1e-4)
    # kernel_logits reads the same members back from stored tensors
    w = np.eye(6, 6, dtype=np.float32)
    tensors = {"kernel.full.map_w": w, "kernel.full.map_b": np.zeros(6, np.float32)}
    tensors.update({"kernel.full.coef": coef, "kernel.full.intercept": icpt})
    zx = kernel_features(z[:4], w, np.zeros(6))
    np.testing.assert_allclose(kernel_logits(tensors, "full", z[:4])[1], zx @ coef[1].T + icpt[1], rtol=1e-5)


def test_kernel_inputs_are_the_quantile_mapped_parts():
    """Standardised inputs times their scale: the quantile-mapped inputs less their mean; the full
    kind reads discharge then waveform, the discharge kind the discharge alone."""
    x = {"discharge": np.array([[1.0, -1.0]]), "waveform": np.array([[2.0, np.nan]])}
    t = {"norm.discharge.std": np.array([0.5, 0.25]), "norm.waveform.std": np.array([0.1, 0.2])}
    np.testing.assert_allclose(kernel_inputs(x, t, "full"), [[0.5, -0.25, 0.2, 0.0]])
    np.testing.assert_allclose(kernel_inputs(x, t, "discharge"), [[0.5, -0.25]])


@pytest.fixture(scope="module")
def trained_kernel():
    raw, labels = _units(12, seed=0)
    cfg = RealModelConfig(**{**TINY.to_dict(), "kernel_share": 0.5, "kernel_features": 200, "kernel_c": 10.0})
    tensors, meta = train_real_ensemble(raw, labels, CLASSES, None, cfg)
    return raw, labels, tensors, meta


def test_kernel_share_trains_and_records_the_members(trained_kernel):
    raw, labels, tensors, meta = trained_kernel
    kern = meta["kernel"]
    assert kern["share"] == 0.5 and kern["n_members"] == TINY.folds
    assert set(kern["temperatures"]) == {"full", "discharge"}
    assert set(kern["view_temperatures"]) == {"full", "discharge", "mixed"}
    assert tensors["kernel.full.coef"].shape == (TINY.folds, 3, 200)
    assert tensors["kernel.discharge.map_w"].shape[1] == 200
    # the separable toy classes stay separable out of fold with the kernel mixed in
    assert meta["inner_oof_balanced_accuracy"]["mixed"] > 0.9
    without = RealModelConfig(**{**TINY.to_dict(), "kernel_share": 0.0})
    t0, m0 = train_real_ensemble(raw, labels, CLASSES, None, without)
    assert "kernel" not in m0 and not any(k.startswith("kernel.") for k in t0)


def test_prediction_mixes_each_view_with_its_kernel_kind(trained_kernel):
    """Units with a waveform: the mixed view's neural probabilities and the full kernel members'
    mean, mixed half and half and sharpened by the view's temperature; units without: the discharge
    members' and the discharge kernel members'."""
    from nwb_celltype.model.real_inference import softmax
    from nwb_celltype.model.real_inputs import _inputs, _normalise

    raw, labels, tensors, meta = trained_kernel
    test_raw, no_w = _half_without_waveform()
    out = predict_real_ensemble(tensors, meta, test_raw)
    neural = predict_real_ensemble(tensors, {k: v for k, v in meta.items() if k != "kernel"}, test_raw)
    inp = _inputs(test_raw)
    x = {p: _normalise(inp[p], tensors, p) for p in ("discharge", "waveform")}
    kern = meta["kernel"]
    for rows, kind, view in ((~no_w, "full", "mixed"), (no_w, "discharge", "discharge")):
        parts = ("discharge", "waveform") if kind == "full" else ("discharge",)
        k_in = np.hstack([x[p][rows] * np.asarray(tensors[f"norm.{p}.std"]) for p in parts])
        zx = kernel_features(k_in, tensors[f"kernel.{kind}.map_w"], tensors[f"kernel.{kind}.map_b"])
        logits = np.einsum("nd,fcd->fnc", zx, np.asarray(tensors[f"kernel.{kind}.coef"], float))
        logits += np.asarray(tensors[f"kernel.{kind}.intercept"], float)[:, None]
        pk = softmax(logits / kern["temperatures"][kind]).mean(0)
        expect = sharpen(0.5 * neural["probabilities"][rows] + 0.5 * pk, kern["view_temperatures"][view])
        np.testing.assert_allclose(out["probabilities"][rows], expect, rtol=1e-5, atol=1e-7)
    assert not np.allclose(out["probabilities"], neural["probabilities"])
    truth = np.repeat(np.arange(len(CLASSES)), 4)  # _half_without_waveform: 4 units per class
    assert (out["probabilities"].argmax(1) == truth).mean() > 0.9
