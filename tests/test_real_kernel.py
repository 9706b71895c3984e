"""Kernel members of the real-data ensemble (nwb_celltype.model.real_kernel): random Fourier features
that approximate an RBF kernel, logistic-regression members per fold with a balanced decision, and
their place in training and prediction (``RealModelConfig.kernel_share``)."""

from __future__ import annotations

import numpy as np
import pytest

from nwb_celltype.errors import ModelError
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


def test_binary_folds_and_classes_absent_from_some_folds():
    """A fold whose training rows hold two classes uses scikit-learn's binary layout (the second
    class's logit w.z + b against 0); a class a member never saw gets -30 and never wins."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    y = np.array([0] * 20 + [2] * 20 + [1])  # class 1: one unit, in fold 0 only
    z = rng.standard_normal((41, 4)) + (y[:, None] == 2) * 1.5
    fold = np.concatenate([np.tile(np.arange(2), 20), [0]])
    usable = np.ones(41, bool)
    coef, icpt, oof = train_kernel_members(z, y, fold, usable, 3, c=1.0)
    # member 0 trains on fold 1: classes 0 and 2 only (binary)
    train = fold == 1
    ref = LogisticRegression(C=1.0, max_iter=5000, tol=1e-6).fit(z[train], y[train])
    assert icpt[0, 1] == -30.0 and (coef[0, 1] == 0).all()
    held = fold == 0
    share = np.array([np.mean(y[train] == 0), np.mean(y[train] == 2)])
    expect = ref.predict_proba(z[held]) / share
    expect /= expect.sum(1, keepdims=True)
    lg = oof[0, held][:, [0, 2]]
    got = np.exp(lg - lg.max(1, keepdims=True))
    np.testing.assert_allclose(got / got.sum(1, keepdims=True), expect, atol=1e-4)
    assert (oof[0, held].argmax(1) != 1).all()
    # member 1 saw class 1 (three classes): its logit is finite
    assert icpt[1, 1] > -30.0
    # a member whose training rows hold one class says that class (a small library does not fail)
    y1 = np.where(fold[:40] == 1, 0, y[:40])
    coef, icpt, oof = train_kernel_members(z[:40], y1, fold[:40], usable[:40], 3, 1.0)
    assert (icpt[0] == [0.0, -30.0, -30.0]).all() and (coef[0] == 0).all()
    assert (oof[0, fold[:40] == 0].argmax(1) == 0).all()


def test_training_rows_match_prediction_inputs(monkeypatch):
    """The kernel members train on the same inputs prediction gives them: every labelled unit's
    out-of-fold kernel logits, recomputed by prediction's code from the stored members (the member
    that never saw its fold), equal the ones training scored and calibrated."""
    import nwb_celltype.model.real_training as rt
    from nwb_celltype.model.real_inputs import _inputs, _normalise

    captured = {}
    original = rt.train_kernel_kinds

    def spy(cfg, r, k_in, n_classes, tensors):
        oof, temps = original(cfg, r, k_in, n_classes, tensors)
        captured.update(r=r, oof=oof)
        return oof, temps

    monkeypatch.setattr(rt, "train_kernel_kinds", spy)
    raw, labels = _units(10, seed=4)
    raw["waveform"][::3] = np.nan  # a third of the units without a waveform
    cfg = RealModelConfig(**{**TINY.to_dict(), "kernel_share": 0.5, "kernel_features": 64})
    tensors, meta = train_real_ensemble(raw, labels, CLASSES, None, cfg)
    r = captured["r"]
    assert len(r.y) > r.n_units  # depth copies are part of the rows
    inp = _inputs(raw)
    x = {p: _normalise(inp[p], tensors, p) for p in ("discharge", "waveform")}
    for kind in ("full", "discharge"):
        k_in = kernel_inputs(x, tensors, kind)
        logits = kernel_logits(tensors, kind, k_in)  # (F, n, C), every unit, every member
        units = np.arange(r.n_units)
        own = logits[r.fold[units], units]  # each unit by the member without its fold
        ok = np.isfinite(captured["oof"][kind][0, units, 0])
        assert ok.sum() == (inp["has_waveform"].sum() if kind == "full" else len(units))
        np.testing.assert_allclose(own[ok], captured["oof"][kind][0, units][ok], rtol=1e-3, atol=1e-3)


def test_agreement_weighs_neural_and_kernel_members_as_the_mixture(trained_kernel):
    """member_agreement = (1 - share) x the neural members' fraction + share x the kernel members';
    the kernel members' probabilities follow the neural members' in member_probabilities."""
    from nwb_celltype.model.real_ensemble import member_agreement

    raw, labels, tensors, meta = trained_kernel
    test_raw, no_w = _half_without_waveform()
    out = predict_real_ensemble(tensors, meta, test_raw)
    n_neural = sum(meta["n_members"].values())
    mp = out["member_probabilities"]
    assert mp.shape[0] == n_neural + 2 * meta["kernel"]["n_members"]
    kernel = mp[n_neural:]
    # full kernel members for units with a waveform, discharge kernel members for the others
    assert np.isfinite(kernel[: TINY.folds, ~no_w]).all() and np.isnan(kernel[: TINY.folds, no_w]).all()
    assert np.isfinite(kernel[TINY.folds :, no_w]).all() and np.isnan(kernel[TINY.folds :, ~no_w]).all()
    expect = 0.5 * member_agreement(mp[:n_neural], out["probabilities"]) + 0.5 * member_agreement(
        kernel, out["probabilities"]
    )
    np.testing.assert_allclose(out["member_agreement"], expect)
    # hand-made: 4 neural members, 2 kernel members; the label is class 0
    p = np.array([[0.6, 0.4]])
    votes = np.array([[[0.9, 0.1]], [[0.8, 0.2]], [[0.2, 0.8]], [[0.3, 0.7]]])  # 2 of 4 back it
    assert member_agreement(votes, p)[0] == 0.5


def test_one_view_model_mixes_the_full_view():
    """Without mix_views, units with a waveform are scored by the full members, mixed with the full
    kernel members and sharpened by the full view's temperature."""
    raw, labels = _units(12, seed=0)
    cfg = RealModelConfig(
        **{
            **TINY.to_dict(),
            "mix_views": False,
            "kernel_share": 0.5,
            "kernel_features": 100,
            "kernel_c": 10.0,
        }
    )
    tensors, meta = train_real_ensemble(raw, labels, CLASSES, None, cfg)
    assert set(meta["kernel"]["view_temperatures"]) == {"full", "discharge"}
    test_raw, no_w = _half_without_waveform()
    out = predict_real_ensemble(tensors, meta, test_raw)
    neural = predict_real_ensemble(tensors, {k: v for k, v in meta.items() if k != "kernel"}, test_raw)
    kern = meta["kernel"]
    pk = np.nanmean(out["member_probabilities"][sum(meta["n_members"].values()) :][: TINY.folds, ~no_w], 0)
    expect = sharpen(0.5 * neural["probabilities"][~no_w] + 0.5 * pk, kern["view_temperatures"]["full"])
    np.testing.assert_allclose(out["probabilities"][~no_w], expect, rtol=1e-5, atol=1e-7)


def test_bad_kernel_settings_are_refused():
    raw, labels = _units(6, seed=0)
    # a share outside [0, 1]: refused by the configuration itself
    with pytest.raises(ModelError, match=r"kernel_share must be in \[0, 1\], got 1.5"):
        RealModelConfig(**{**TINY.to_dict(), "kernel_share": 1.5})
    # no kernel regularisation with a kernel share: refused by the training
    bad = {"kernel_share": 0.5, "kernel_c": 0.0}
    with pytest.raises(Exception, match="kernel_share=.*must be a share"):
        train_real_ensemble(raw, labels, CLASSES, None, RealModelConfig(**{**TINY.to_dict(), **bad}))


def test_sample_weights_reach_the_regression_and_its_balanced_decision():
    """With weights, member f is scikit-learn's regression fitted with those weights (scaled to mean
    1), and the balanced decision divides out the weighted class shares."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(5)
    y = np.repeat([0, 1], [30, 30])
    z = rng.standard_normal((60, 3)) + y[:, None]
    fold = np.tile(np.arange(2), 30)
    weight = np.where(np.arange(60) % 3 == 0, 4.0, 1.0)
    coef, icpt, oof = train_kernel_members(z, y, fold, np.ones(60, bool), 2, 1.0, weight=weight)
    train = fold == 1
    w = weight[train] / weight[train].mean()
    ref = LogisticRegression(C=1.0, max_iter=5000, tol=1e-6).fit(z[train], y[train], sample_weight=w)
    share = np.array([w[y[train] == 0].sum(), w[y[train] == 1].sum()]) / w.sum()
    expect = ref.predict_proba(z[fold == 0]) / share
    expect /= expect.sum(1, keepdims=True)
    lg = oof[0, fold == 0]
    got = np.exp(lg - lg.max(1, keepdims=True))
    np.testing.assert_allclose(got / got.sum(1, keepdims=True), expect, atol=1e-4)
    unweighted = train_kernel_members(z, y, fold, np.ones(60, bool), 2, 1.0)[2]
    assert not np.allclose(unweighted[0, fold == 0], oof[0, fold == 0], atol=1e-3)
