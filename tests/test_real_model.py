"""The real-data ensemble (nwb_celltype.model.real_training, .real_ensemble) and its inputs
(.real_inputs), on small synthetic discharge features: renewal-process trains whose classes differ in
rate and regularity."""

from __future__ import annotations

import numpy as np
import pytest

from nwb_celltype.errors import FeatureError, ModelError
from nwb_celltype.features.discharge import compute_acg_counts, compute_isi_counts
from nwb_celltype.features.discharge_inputs import (
    DISCHARGE_INPUT_SIZE,
    acg_baseline_shape,
    discharge_inputs,
    isi_log_distribution,
    rate_cv2_width,
    waveform_inputs,
)

torch = pytest.importorskip("torch")
from nwb_celltype.model.real_ensemble import predict_real_ensemble  # noqa: E402
from nwb_celltype.model.real_networks import RealModelConfig  # noqa: E402
from nwb_celltype.model.real_training import train_real_ensemble  # noqa: E402

CLASSES = ("A", "B", "C")
#: (rate Hz, gamma shape, waveform width in samples) per class
SPEC = {"A": (8.0, 1.0, 4), "B": (40.0, 6.0, 8), "C": (15.0, 0.5, 14)}
#: the neural members alone (kernel members, on by default since 1.6: tests/test_real_kernel.py)
TINY = RealModelConfig(
    pretrain_epochs=30,
    epochs=60,
    folds=3,
    seeds=2,
    hidden_discharge=16,
    hidden_waveform=8,
    n_threads=1,
    kernel_share=0.0,
)


def _train(rng, rate, shape, duration_s=60.0):
    isi = rng.gamma(shape, 1.0 / (rate * shape), size=int(rate * duration_s * 1.5) + 10)
    t = np.cumsum(isi)
    return t[t < duration_s]


def _wave(rng, width):
    x = np.arange(75) - 30.0
    w = -np.exp(-0.5 * (x / 2.0) ** 2) + 0.4 * np.exp(-0.5 * ((x - width) / 3.0) ** 2)
    return (w + 0.02 * rng.standard_normal(75)) / 1.0


def _units(n_per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    acg, isi, wav, labels = [], [], [], []
    for c, (rate, shape, width) in SPEC.items():
        for _ in range(n_per_class):
            t = _train(rng, rate * np.exp(0.1 * rng.standard_normal()), shape)
            acg.append(compute_acg_counts(t))
            isi.append(compute_isi_counts(t))
            w = _wave(rng, width)
            wav.append(w / np.abs(w).max())
            labels.append(c)
    raw = {
        "acg_counts": np.array(acg),
        "isi_counts": np.array(isi),
        "waveform": np.array(wav, dtype=np.float32),
    }
    return raw, np.array(labels)


@pytest.fixture(scope="module")
def trained():
    raw, labels = _units(12, seed=0)
    tensors, meta = train_real_ensemble(raw, labels, CLASSES, None, TINY)
    return raw, labels, tensors, meta


def test_inputs_are_spike_count_free():
    rng = np.random.default_rng(1)
    t = _train(rng, 20.0, 2.0, duration_s=200.0)
    half = t[: len(t) // 2]  # same process, half the spikes
    a = discharge_inputs(compute_acg_counts(t)[None], compute_isi_counts(t)[None])
    b = discharge_inputs(compute_acg_counts(half)[None], compute_isi_counts(half)[None])
    assert a.shape == (1, DISCHARGE_INPUT_SIZE)
    # raw counts halve; the shapes the model sees barely move
    assert np.abs(a - b).mean() < 0.1
    assert np.abs(np.log1p(compute_acg_counts(t)) - np.log1p(compute_acg_counts(half))).mean() > 0.4


def test_acg_baseline_and_isi_distribution_definitions():
    acg = np.full((1, 100), 4.0)
    acg[0, :3] = 0.0  # refractory gap
    np.testing.assert_allclose(acg_baseline_shape(acg)[0, :3], 0.0)
    np.testing.assert_allclose(acg_baseline_shape(acg)[0, -1], np.log(2.0))
    isi = np.zeros((1, 100))
    isi[0, 9] = 5.0
    isi[0, 10] = 5.0
    p = np.exp(isi_log_distribution(isi)) - 1e-3  # probability per 1 ms, averaged within bins
    assert p[0, 9] == pytest.approx(0.5)  # 9..10 ms is its own bin
    assert p[0, 10] == pytest.approx(0.25)  # 10..12 ms is one bin of 2 ms
    with pytest.raises(FeatureError, match="non-negative"):
        discharge_inputs(-acg, isi)
    with pytest.raises(FeatureError, match="shape"):
        discharge_inputs(acg[:, :50], isi)


def test_waveform_inputs_flip_and_mask():
    w = np.zeros((3, 75), dtype=np.float32)
    w[0, 30], w[1, 30] = -0.5, 2.0
    w[2] = np.nan
    x, ok = waveform_inputs(w)
    assert ok.tolist() == [True, True, False]
    assert x[0, 30] == -1.0 and x[1, 30] == -1.0  # main peak made negative, scaled to -1
    assert x[0, 75] == 0.0 and x[1, 75] == 1.0  # original polarity kept as a flag
    assert not x[2].any()


def test_rate_cv2_proxy_orders_regularity():
    rng = np.random.default_rng(2)
    reg, poi = _train(rng, 30.0, 20.0, 100.0), _train(rng, 30.0, 1.0, 100.0)
    acg = np.array([compute_acg_counts(reg), compute_acg_counts(poi)])
    isi = np.array([compute_isi_counts(reg), compute_isi_counts(poi)])
    out = rate_cv2_width(acg, isi, np.full((2, 75), np.nan))
    assert out[0, 1] < out[1, 1]  # a regular train has the smaller CV2
    assert np.isnan(out[:, 2]).all()


def test_shapes_and_accuracy(trained):
    raw, labels, tensors, meta = trained
    test_raw, test_labels = _units(8, seed=3)
    out = predict_real_ensemble(tensors, meta, test_raw)
    n, m = len(test_labels), sum(meta["n_members"].values())
    assert out["probabilities"].shape == (n, 3)
    assert out["member_probabilities"].shape == (m, n, 3)
    np.testing.assert_allclose(out["probabilities"].sum(1), 1.0, atol=1e-5)
    acc = np.mean(np.array(CLASSES)[out["probabilities"].argmax(1)] == test_labels)
    assert acc > 0.8
    assert out["used_waveform"].all()
    assert out["out_of_distribution"].mean() < 0.3


def test_calibration_is_fitted_out_of_fold(trained):
    raw, labels, tensors, meta = trained
    assert set(meta["temperatures"]) == {"full", "discharge", "mixed"}
    assert all(0.2 <= t <= 10.0 for t in meta["temperatures"].values())
    assert meta["n_members"] == {"full": TINY.folds * TINY.seeds, "discharge": TINY.folds * TINY.seeds}
    # with random labels, members memorise their training units; the out-of-fold logits that
    # calibration and the reported inner accuracy use must stay near chance
    shuffled = np.random.default_rng(7).permutation(labels)
    cfg = RealModelConfig(
        **{**TINY.to_dict(), "epochs": 400, "lr": 1e-2, "dropout": 0.0, "weight_decay": 0.0}
    )
    t, m = train_real_ensemble(raw, shuffled, CLASSES, None, cfg)
    in_sample = np.mean(
        np.array(CLASSES)[predict_real_ensemble(t, m, raw)["probabilities"].argmax(1)] == shuffled
    )
    assert m["inner_oof_accuracy"]["full"] < 0.6 and m["inner_oof_accuracy"]["mixed"] < 0.6
    assert in_sample > m["inner_oof_accuracy"]["full"] + 0.2
    assert m["temperatures"]["full"] > meta["temperatures"]["full"]  # noise -> softer out-of-fold


def test_far_inputs_are_out_of_distribution(trained):
    raw, labels, tensors, meta = trained
    rng = np.random.default_rng(4)
    far = {
        "acg_counts": rng.uniform(0, 1000, (5, 100)) * (np.arange(100) % 7 == 0),
        "isi_counts": np.tile(np.eye(100)[97] * 50, (5, 1)),
        "waveform": np.tile(np.sin(np.linspace(0, 12 * np.pi, 75)), (5, 1)).astype(np.float32),
    }
    out = predict_real_ensemble(tensors, meta, far)
    assert out["out_of_distribution"].all()
    assert (out["ood_score"] > 1).all()


@pytest.fixture(scope="module")
def trained_one_view(trained):
    """The same units trained without ``mix_views``: units with a waveform see the full members only."""
    raw, labels, _, _ = trained
    cfg = RealModelConfig(**{**TINY.to_dict(), "mix_views": False})
    return train_real_ensemble(raw, labels, CLASSES, None, cfg)


def _half_without_waveform():
    test_raw, test_labels = _units(4, seed=5)
    test_raw["waveform"][::2] = np.nan
    no_w = np.zeros(len(test_labels), bool)
    no_w[::2] = True
    return test_raw, no_w


def test_discharge_members_used_without_waveform(trained_one_view):
    tensors, meta = trained_one_view
    assert "mixed" not in meta["temperatures"] and set(meta["ratio_floors"]) == {"full", "discharge"}
    test_raw, no_w = _half_without_waveform()
    out = predict_real_ensemble(tensors, meta, test_raw)
    assert (out["used_waveform"] == ~no_w).all()
    n_full = meta["n_members"]["full"]
    mp = out["member_probabilities"]
    assert np.isnan(mp[:n_full, no_w]).all() and np.isfinite(mp[n_full:, no_w]).all()
    assert np.isnan(mp[n_full:, ~no_w]).all() and np.isfinite(mp[:n_full, ~no_w]).all()
    assert np.isnan(out["ood_score_waveform"][no_w]).all()
    np.testing.assert_allclose(out["probabilities"][~no_w], mp[:n_full, ~no_w].mean(0), rtol=1e-6)


def test_mixed_views_score_waveform_units_with_both_kinds(trained):
    """With ``mix_views`` (the default), a unit with a waveform gets the mean of the full members'
    and the discharge members' mean probabilities, sharpened by the fitted ``mixed`` temperature
    (p ** (1 / T), renormalised); a unit without one gets the discharge members' mean."""
    raw, labels, tensors, meta = trained
    temp = meta["temperatures"]["mixed"]
    assert 0.2 <= temp <= 10.0 and set(meta["ratio_floors"]) == {"full", "discharge", "mixed"}
    test_raw, no_w = _half_without_waveform()
    out = predict_real_ensemble(tensors, meta, test_raw)
    n_full = meta["n_members"]["full"]
    mp = out["member_probabilities"].astype(np.float64)
    assert np.isnan(mp[:n_full, no_w]).all() and np.isfinite(mp[n_full:]).all()
    mix = 0.5 * (mp[:n_full, ~no_w].mean(0) + mp[n_full:, ~no_w].mean(0))
    expected = mix ** (1.0 / temp) / (mix ** (1.0 / temp)).sum(1, keepdims=True)
    np.testing.assert_allclose(out["probabilities"][~no_w], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out["probabilities"][no_w], mp[n_full:, no_w].mean(0), rtol=1e-6)
    assert (out["used_waveform"] == ~no_w).all()


def test_mixed_views_keep_a_misleading_waveform_from_outvoting_the_discharge(trained, trained_one_view):
    """Units of class A given class C's waveform: the full members alone follow the waveform more
    than the mixed view does (the discharge members still see A's train)."""
    raw, labels, tensors, meta = trained
    test_raw, test_labels = _units(6, seed=21)
    a = test_labels == "A"
    donor = test_raw["waveform"][test_labels == "C"]
    test_raw["waveform"][a] = donor[: a.sum()]
    p_mixed = predict_real_ensemble(tensors, meta, test_raw)["probabilities"][a]
    p_full = predict_real_ensemble(*trained_one_view, test_raw)["probabilities"][a]
    assert p_mixed[:, 0].mean() > p_full[:, 0].mean()


def test_deterministic_with_seed(trained):
    raw, labels, tensors, meta = trained
    t2, meta2 = train_real_ensemble(raw, labels, CLASSES, None, TINY)
    for k, v in tensors.items():
        assert torch.equal(v, t2[k]), k
    t3, _ = train_real_ensemble(raw, labels, CLASSES, None, RealModelConfig(**{**TINY.to_dict(), "seed": 1}))
    assert not torch.equal(tensors["members.full.h1_weight"], t3["members.full.h1_weight"])


def test_bad_inputs_raise():
    raw, labels = _units(2, seed=6)
    with pytest.raises(ModelError, match="at least"):
        train_real_ensemble(raw, labels, CLASSES, None, TINY)
    with pytest.raises(ModelError, match="acg_counts"):
        train_real_ensemble({"isi_counts": raw["isi_counts"]}, labels, CLASSES, None, TINY)


def test_members_start_from_independent_draws():
    """Each member of a stack gets its own initial weights (members that start alike stay alike:
    the ensemble's spread would then only reflect the folds)."""
    from nwb_celltype.model.real_networks import MemberStack

    torch.manual_seed(0)
    stack = MemberStack(RealModelConfig(head_layers=2), 3, 10, 4)
    assert stack.h1_weight.shape == (3, 10, RealModelConfig().head_hidden)
    assert stack.h3_weight.shape == (3, RealModelConfig().head_hidden, 4)
    for name in ("h1_weight", "h2_weight", "h3_weight", "h1_bias"):
        w = getattr(stack, name)
        assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2]), name
    assert stack(torch.zeros(5, 10)).shape == (3, 5, 4)


def test_member_agreement_counts_the_members_behind_the_label():
    from nwb_celltype.model.real_ensemble import member_agreement

    nan = np.full(3, np.nan)
    mp = np.array(
        [
            [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], nan],
            [[0.6, 0.3, 0.1], [0.1, 0.2, 0.7], nan],
            [[0.2, 0.7, 0.1], [0.3, 0.3, 0.4], nan],
            [[0.5, 0.4, 0.1], nan, nan],
        ]
    )  # (4 members, 3 units, 3 classes); unit 1 scored by 3 members, unit 2 by none
    probs = np.array([[0.5, 0.4, 0.1], [0.17, 0.43, 0.4], [np.nan] * 3])
    agree = member_agreement(mp, probs)
    np.testing.assert_allclose(agree[:2], [3 / 4, 1 / 3])
    assert np.isnan(agree[2])


def test_members_disagree_flag_follows_min_agreement(trained):
    raw, labels, tensors, meta = trained
    test_raw, _ = _units(4, seed=8)
    out = predict_real_ensemble(tensors, meta, test_raw)
    assert (out["member_agreement"] > 0).all() and (out["member_agreement"] <= 1).all()
    np.testing.assert_array_equal(out["members_disagree"], out["member_agreement"] < TINY.min_agreement)
    strict = {**meta, "config": {**meta["config"], "min_agreement": 1.01}}
    assert predict_real_ensemble(tensors, strict, test_raw)["members_disagree"].all()


def _torch_reference(tensors, meta, raw):
    """Probabilities (M, n, C) of the stored ensemble run by its torch modules (real_networks), as the
    package ran it before inference moved to numpy: the reference the numpy path must reproduce."""
    import torch

    from nwb_celltype.features.discharge_inputs import discharge_inputs, waveform_inputs
    from nwb_celltype.model.real_networks import Autoencoder, MemberStack

    cfg = RealModelConfig(**meta["config"])
    t = {k: torch.as_tensor(np.asarray(v)) for k, v in tensors.items()}
    x = {
        "discharge": discharge_inputs(raw["acg_counts"], raw["isi_counts"]),
        "waveform": waveform_inputs(raw["waveform"])[0],
    }
    from nwb_celltype.model.real_inputs import quantile_map

    x = {
        p: quantile_map(v, t[f"norm.{p}.quantiles"].numpy()) if f"norm.{p}.quantiles" in t else v
        for p, v in x.items()
    }
    x = {
        p: ((v - t[f"norm.{p}.mean"].numpy()) / t[f"norm.{p}.std"].numpy()).astype(np.float32)
        for p, v in x.items()
    }
    hidden = {"discharge": cfg.hidden_discharge, "waveform": cfg.hidden_waveform}
    latent = {"discharge": cfg.latent_discharge, "waveform": cfg.latent_waveform}
    lat = {}
    for p in x:
        ae = Autoencoder(x[p].shape[1], hidden[p], latent[p])
        ae.load_state_dict(
            {
                k[len(f"ood.{p}.") :]: v
                for k, v in t.items()
                if k.startswith(f"ood.{p}.") and k.split(".")[2] in ("enc1", "enc2", "dec1", "dec2")
            }
        )
        with torch.no_grad():
            lat[p] = ae.eval().encode(torch.from_numpy(x[p])).numpy()
    head_in = np.concatenate([lat["discharge"], lat["waveform"], x["discharge"], x["waveform"]], 1).astype(
        np.float32
    )
    prefix = "members.full."
    stack = MemberStack(cfg, meta["n_members"]["full"], head_in.shape[1], len(meta["classes"]))
    stack.load_state_dict({k[len(prefix) :]: v for k, v in t.items() if k.startswith(prefix)})
    with torch.no_grad():
        logits = stack.eval()(torch.from_numpy(head_in))
    return torch.softmax(logits / meta["temperatures"]["full"], dim=-1).numpy()


def test_numpy_inference_equals_the_torch_modules(trained):
    """Prediction runs in numpy (no torch import); the same weights through the torch modules give the
    same probabilities to float32 rounding, for the test ensemble and for the shipped default model."""
    from nwb_celltype.model.shipped import load_default_bundle

    raw, _, tensors, meta = trained
    out = predict_real_ensemble(tensors, meta, raw)
    ref = _torch_reference(tensors, meta, raw)
    np.testing.assert_allclose(out["member_probabilities"][: len(ref)], ref, atol=2e-6)
    bundle = load_default_bundle()
    assert all(isinstance(v, np.ndarray) for v in bundle.tensors.values())
    real_raw, _ = _units(4, seed=3)
    out = predict_real_ensemble(bundle.tensors, bundle.meta, real_raw)
    ref = _torch_reference(bundle.tensors, bundle.meta, real_raw)
    np.testing.assert_allclose(out["member_probabilities"][: len(ref)], ref, atol=2e-6)
    # the shipped model scores units with a waveform in the mixed view: both kinds, then p ** (1/T)
    # (its kernel members' share, mixed in after: tests/test_real_kernel.py)
    assert bundle.meta["kernel"]["share"] == 0.5
    neural_meta = {k: v for k, v in bundle.meta.items() if k != "kernel"}
    neural = predict_real_ensemble(bundle.tensors, neural_meta, real_raw)
    n_neural = sum(bundle.meta["n_members"].values())
    np.testing.assert_allclose(neural["member_probabilities"], out["member_probabilities"][:n_neural])
    mix = 0.5 * (ref.mean(0) + neural["member_probabilities"][len(ref) :].mean(0))
    sharp = mix ** (1.0 / bundle.meta["temperatures"]["mixed"])
    np.testing.assert_allclose(neural["probabilities"], sharp / sharp.sum(1, keepdims=True), atol=2e-6)


def test_numpy_gelu_matches_torch():
    import torch

    from nwb_celltype.model.real_inference import gelu

    x = np.concatenate([np.linspace(-12, 12, 20001), np.random.default_rng(0).standard_normal(1000) * 4])
    ref = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()  # float64, exact erf form
    np.testing.assert_allclose(gelu(x), ref, atol=2e-7 * np.maximum(1, np.abs(x)).max(), rtol=0)


def test_weights_digest_is_the_same_for_numpy_and_torch_tensors():
    import torch

    from nwb_celltype.model.bundle import _weights_digest

    rng = np.random.default_rng(0)
    arrays = {
        "a": rng.standard_normal((3, 4)).astype(np.float32),
        "b": rng.standard_normal(5),
        "c": np.arange(6, dtype=np.int64).reshape(2, 3),
        "d": np.array([True, False, True]),
    }
    before = _weights_digest(arrays)
    assert before == _weights_digest({k: torch.from_numpy(v) for k, v in arrays.items()})
    arrays["a"][0, 0] += 1e-6
    assert _weights_digest(arrays) != before


def test_ratio_floor_follows_the_label_and_member_kind(trained):
    """Each unit's floor is the model's floor for its top class and the member kind that scored it;
    units below it are flagged, and a model with no floor flags none."""
    raw, labels, tensors, meta = trained
    test_raw, _ = _units(4, seed=9)
    test_raw["waveform"][::3] = np.nan  # some units scored by the discharge-only members
    floors = {"full": [2.0, 2.0, 2.0], "mixed": [1.0, 1e6, 3.0], "discharge": [1e6, 1.0, 1.0]}
    # one depth band (the model's shallow bands' floors are tested in test_real_depth.py)
    meta = {**meta, "depth_bands": []}
    out = predict_real_ensemble(tensors, {**meta, "ratio_floors": floors}, test_raw)
    top = out["probabilities"].argmax(1)
    kind = np.where(out["used_waveform"], "mixed", "discharge")  # units with a waveform: both kinds
    expected = np.array([floors[k][c] for k, c in zip(kind, top, strict=True)])
    np.testing.assert_array_equal(out["ratio_floor"], expected)
    srt = np.sort(out["probabilities"], 1)
    with np.errstate(divide="ignore"):  # a sharpened mixture can leave an exact 0 runner-up
        ratio = srt[:, -1] / srt[:, -2]
    np.testing.assert_array_equal(out["below_ratio_floor"], ratio < expected)
    assert out["below_ratio_floor"].any() and not out["below_ratio_floor"].all()
    none = {"full": [1.0] * 3, "mixed": [1.0] * 3, "discharge": [1.0] * 3}
    assert not predict_real_ensemble(tensors, {**meta, "ratio_floors": none}, test_raw)[
        "below_ratio_floor"
    ].any()
    # the trained model's floors: one per class and kind, from the grid
    from nwb_celltype.model.real_floors import FLOOR_GRID

    assert set(meta["ratio_floors"]) == {"full", "mixed", "discharge"}
    assert all(len(v) == 3 and set(v) <= set(FLOOR_GRID) for v in meta["ratio_floors"].values())


def test_floors_are_fitted_on_the_out_of_fold_units_handed_out():
    """``oof=`` hands out, per view, the inner out-of-fold probabilities, classes and lab weights the
    floors were fitted on: refitting the floors from them gives the model's floors, with the labs
    weighted equally (two labs of 2 : 1 units -> weights 0.75 and 1.5)."""
    from nwb_celltype.model.real_floors import ratio_floors

    raw, labels = _units(6, seed=3)
    groups = np.where(np.arange(len(labels)) % 3 == 0, "lab_b", "lab_a")
    oof: dict = {}
    # without depth copies (one set of floors, on the labelled units; with copies, the deepest
    # band's rows are handed out: test_real_depth.py)
    cfg = RealModelConfig(**{**TINY.to_dict(), "max_confidently_wrong": 0.05, "depth_copies": 0})
    _, meta = train_real_ensemble(raw, labels, CLASSES, None, cfg, groups, oof=oof)
    assert set(oof) == {"full", "discharge", "mixed"}
    for view, v in oof.items():
        assert v["p"].shape == (len(labels), len(CLASSES)) and len(v["y"]) == len(labels)
        np.testing.assert_allclose(v["p"].sum(1), 1.0, rtol=1e-6)
        np.testing.assert_allclose(np.unique(np.round(v["w"], 6)), [0.75, 1.5])
        assert meta["ratio_floors"][view] == ratio_floors(v["p"], v["y"], len(CLASSES), 0.05, v["w"])
    # the inner out-of-fold balanced accuracy in the card is computed on the same probabilities
    full = oof["full"]
    recall = [np.mean(full["p"][full["y"] == c].argmax(1) == c) for c in range(len(CLASSES))]
    assert abs(meta["inner_oof_balanced_accuracy"]["full"] - np.mean(recall)) < 1e-9


def test_decision_bias_fit_finds_the_factor_a_balanced_decision_needs():
    """Units of class 1 all scored [0.6, 0.4] and of class 0 [0.7, 0.3]: the most probable class is
    always 0 (balanced accuracy 0.5); class 1 needs a log-factor b with 0.4 e^b > 0.6 and
    0.3 e^b < 0.7, i.e. b in (0.405, 0.847), to get every unit right."""
    from nwb_celltype.model.real_inputs import apply_decision_bias, fit_decision_bias

    p = np.array([[0.7, 0.3]] * 30 + [[0.6, 0.4]] * 5)
    y = np.array([0] * 30 + [1] * 5)
    b = fit_decision_bias(p, y, np.ones(len(y)), 2)
    assert np.log(0.6 / 0.4) < b[1] - b[0] < np.log(0.7 / 0.3)
    q = apply_decision_bias(p, b)
    np.testing.assert_allclose(q.sum(1), 1.0)
    assert (q.argmax(1) == y).all()
    # already right: no bias at all
    assert (fit_decision_bias(np.eye(2)[y] * 0.8 + 0.1, y, np.ones(len(y)), 2) == 0).all()


def test_decision_bias_is_applied_per_view_at_prediction(trained):
    """A model whose card holds a decision bias multiplies each unit's probabilities (and its
    members') by exp(bias) of the view that scored it: the mixed view's for units with a waveform,
    the discharge members' for the others."""
    from nwb_celltype.model.real_inputs import apply_decision_bias

    raw, labels, tensors, meta = trained
    test_raw, no_w = _half_without_waveform()
    plain = predict_real_ensemble(tensors, meta, test_raw)
    biased_meta = {**meta, "decision_bias": {"mixed": [0.0, 0.0, 8.0], "discharge": [0.0, 0.0, 0.0]}}
    out = predict_real_ensemble(tensors, biased_meta, test_raw)
    np.testing.assert_allclose(
        out["probabilities"][~no_w],
        apply_decision_bias(plain["probabilities"][~no_w], [0, 0, 8.0]),
        rtol=1e-6,
    )
    np.testing.assert_allclose(out["probabilities"][no_w], plain["probabilities"][no_w])
    members = plain["member_probabilities"][:, ~no_w].astype(np.float64)
    used = np.isfinite(members[..., 0])
    np.testing.assert_allclose(
        out["member_probabilities"][:, ~no_w][used],
        apply_decision_bias(members[used], [0, 0, 8.0]),
        rtol=1e-5,
    )


def test_decision_bias_option_trains_and_records_it():
    """``decision_bias=True`` stores one bias per view in the card, fitted on the inner out-of-fold
    units; without it there is none."""
    raw, labels = _units(12, seed=0)
    cfg = RealModelConfig(**{**TINY.to_dict(), "decision_bias": True})
    _, meta = train_real_ensemble(raw, labels, CLASSES, None, cfg)
    assert set(meta["decision_bias"]) == {"full", "discharge", "mixed"}
    assert all(len(v) == 3 and all(-2.0 <= x <= 2.0 for x in v) for v in meta["decision_bias"].values())
