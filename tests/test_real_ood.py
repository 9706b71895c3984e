"""Out-of-distribution scores and abstention rules of the real-trained ensemble (numpy; no torch):
nwb_celltype.model.real_ood, the ratio floors of the training and its calibration weights
(nwb_celltype.model.real_calibration)."""

from __future__ import annotations

import numpy as np
import pytest

from nwb_celltype.model.real_ood import fit_gaussians, fit_ood, mahalanobis, ood_scores


def test_gaussians_and_distance_by_hand():
    # 1-D: class 0 at {0, 2}, class 1 at {10, 12}: means 1 and 11; residuals -1, 1, -1, 1 ->
    # covariance 4/3 (shrinking a 1x1 covariance towards its own trace changes nothing); precision 3/4
    z = np.array([[0.0], [2.0], [10.0], [12.0]])
    means, prec = fit_gaussians(z, np.array([0, 0, 1, 1]), 3)
    np.testing.assert_allclose(means[:2, 0], [1.0, 11.0])
    assert np.isnan(means[2]).all()  # class 2 absent
    np.testing.assert_allclose(prec, [[0.75]])
    # nearest mean: 5 -> 1 (distance 4, squared 16, x 3/4 = 12); 11 -> 0; the absent class is skipped
    np.testing.assert_allclose(mahalanobis(np.array([[5.0], [11.0], [-3.0]]), means, prec), [12.0, 0.0, 12.0])


def _blobs(rng, n_per_class=60):
    y = np.repeat(np.arange(3), n_per_class)
    centres = np.array([[0.0, 0.0, 0.0, 0.0], [4.0, 0.0, 0.0, 0.0], [0.0, 4.0, 0.0, 0.0]])
    x = centres[y] + rng.standard_normal((len(y), 4))
    return x, y


def _fit(x, y, latent, q=0.95):
    fold = np.arange(len(y)) % 5
    avail = {"discharge": np.ones(len(y), bool), "waveform": np.zeros(len(y), bool)}
    codes = {
        "discharge": {"latent": latent, "input": x},
        "waveform": {"latent": np.zeros((len(y), 2)), "input": np.zeros((len(y), 3))},
    }
    pools = {"discharge": x, "waveform": np.zeros((len(y), 3))}
    return fit_ood(codes, pools, avail, y, fold, 3, q)


def _score(tensors, meta, x, latent):
    n = len(x)
    codes = {
        "discharge": {"latent": latent, "input": x},
        "waveform": {"latent": np.zeros((n, 2)), "input": np.zeros((n, 3))},
    }
    return ood_scores(
        tensors, {"ood": meta}, codes, {"discharge": np.ones(n, bool), "waveform": np.zeros(n, bool)}
    )


def test_input_space_sees_what_a_squashing_code_hides():
    """A code that saturates (as the quantile map does far in a tail) puts a unit 40 SD outside the
    training range next to the training units; the score on the un-mapped inputs flags it."""
    rng = np.random.default_rng(0)
    x, y = _blobs(rng)
    squash = np.tanh  # bounded "latent code" of the inputs
    tensors, meta = _fit(x, y, squash(x))
    far = np.array([[40.0, 0.0, 0.0, 0.0]])
    s = _score(tensors, meta, far, squash(far))
    # the latent distance alone is below its threshold: tanh(40) ~ tanh(4) = class 1's code
    means = tensors["ood.discharge.class_means"].astype(float)
    prec = tensors["ood.discharge.precision"].astype(float)
    latent_only = mahalanobis(squash(far), means, prec)[0] / meta["discharge"]["mahalanobis_threshold"]
    assert latent_only < 1.0
    assert s["combined"][0] > 1.0 and s["discharge"][0] == s["combined"][0]
    assert np.isnan(s["waveform"]).all()  # no waveform: no waveform score


def test_combined_threshold_keeps_the_share_of_training_like_units_flagged():
    rng = np.random.default_rng(1)
    x, y = _blobs(rng, 100)
    tensors, meta = _fit(x, y, np.tanh(x))
    # combining two spaces raises the maximum: the combined threshold is above 1 ...
    assert meta["combined_threshold"] > 1.0
    # ... so that new units from the same classes are flagged at about 1 - q, not at the union's rate
    xt, yt = _blobs(np.random.default_rng(2), 300)
    flagged = _score(tensors, meta, xt, np.tanh(xt))["combined"] > 1
    assert 0.01 < flagged.mean() < 0.10
    # a model with latent space only (before 1.2: no input tensors, no combined threshold) still scores
    old = {k: v for k, v in meta.items() if k not in ("combined_threshold", "spaces")}
    s_old = _score(tensors, old, xt, np.tanh(xt))["combined"]
    d = mahalanobis(np.tanh(xt), tensors["ood.discharge.class_means"], tensors["ood.discharge.precision"])
    np.testing.assert_allclose(s_old, d / meta["discharge"]["mahalanobis_threshold"], rtol=1e-5)


def test_ratio_floors_by_hand():
    from nwb_celltype.model.real_floors import ratio_floors

    # five units labelled class 0 with ratios 1.2 (wrong), 3, 4 (wrong), 6, 8; class 1 never predicted.
    # At the threshold (2) the unit at 1.2 is not labelled anyway.
    ratios = np.array([1.2, 3.0, 4.0, 6.0, 8.0])
    p = np.column_stack([ratios / (1 + ratios), 1 / (1 + ratios)])
    y = np.array([1, 0, 1, 0, 0])
    # 20 % of 5 units = 1 confidently wrong allowed: the unit at 4 fits, no floor
    assert ratio_floors(p, y, 2, 0.2) == [1.0, 1.0]
    # none allowed: the floor must pass 4 -> the next grid value, 5 (the units at 6 and 8 stay)
    assert ratio_floors(p, y, 2, 0.0) == [5.0, 1.0]
    # the same budget in lab weights: the wrong unit at 4 weighs 3 of 7 -> 1.4 allowed is too little
    assert ratio_floors(p, y, 2, 0.2, weights=np.array([1.0, 1.0, 3.0, 1.0, 1.0])) == [5.0, 1.0]
    # fitted for threshold 3: the wrong unit at 4 still counts, the floor options start above 3
    assert ratio_floors(p, y, 2, 0.0, threshold=3.0) == [5.0, 1.0]


def test_ratio_floors_share_one_budget_across_classes():
    """One budget for all classes: the error goes where it costs the least balanced recall. A
    per-class allowance would give the small class no error at all and cut half its labels."""
    from nwb_celltype.model.real_floors import ratio_floors

    # class 0: 10 right at ratio 10, 1 wrong (a class-1 unit) at 3;
    # class 1: 2 right at 3 and 5, 1 wrong (a class-0 unit) at 4. 14 units, 10 % -> 1.4 wrong allowed.
    ratios = np.array([10.0] * 10 + [3.0, 3.0, 5.0, 4.0])
    pred = np.array([0] * 11 + [1] * 3)
    y = np.array([0] * 10 + [1, 1, 1, 0])
    p = np.where(pred[:, None] == np.arange(2), (ratios / (1 + ratios))[:, None], (1 / (1 + ratios))[:, None])
    # cutting class 0's wrong label (floor 4: the lowest grid value above 3) costs no recall; cutting
    # class 1's (floor 5) would cost a third of class 1's recall -> class 0 gets the floor
    assert ratio_floors(p, y, 2, 0.1) == [4.0, 1.0]
    # no error allowed: both cut, at the lowest floors that do it
    assert ratio_floors(p, y, 2, 0.0) == [4.0, 5.0]
    # two allowed: no floor anywhere
    assert ratio_floors(p, y, 2, 0.15) == [1.0, 1.0]


def test_per_label_floors_by_hand_and_the_rule_switch():
    """The 1.2-1.3 rule: per label, a share of that label's units; the mixed view also clears the
    full view's floor. An unknown rule is refused."""
    import pytest

    from nwb_celltype.errors import ModelError
    from nwb_celltype.model.real_floors import per_label_floors, view_floors

    ratios = np.array([1.2, 3.0, 4.0, 6.0, 8.0])
    p = np.column_stack([ratios / (1 + ratios), 1 / (1 + ratios)])
    y = np.array([1, 0, 1, 0, 0])
    # 20 % of the 5 units labelled 0 = 1 wrong allowed: every ratio counts, so 1.5 (only 4 above)
    assert per_label_floors(p, y, 2, 0.2) == [1.5, 1.0]
    assert per_label_floors(p, y, 2, 0.0) == [5.0, 1.0]
    views = {"full": p, "mixed": p[::-1].copy()}
    ys = {"full": y, "mixed": y[::-1].copy()}
    ws = {k: np.ones(5) for k in views}
    flat = {"full": np.column_stack([np.full(5, 0.9), np.full(5, 0.1)]), "mixed": views["mixed"]}
    # per-label: the mixed floors are raised to the full members' (here 1.0 -> stays 5.0 for class 0)
    assert view_floors(views, ys, ws, 2, 0.0, "per-label") == {"full": [5.0, 1.0], "mixed": [5.0, 1.0]}
    # full members that are never wrong above 1 leave the mixed view its own floor
    assert view_floors(flat, {"full": np.zeros(5, int), "mixed": ys["mixed"]}, ws, 2, 0.0, "per-label")[
        "mixed"
    ] == [5.0, 1.0]
    assert view_floors(views, ys, ws, 2, 0.2, "shared-budget") == {"full": [1.0, 1.0], "mixed": [1.0, 1.0]}
    with pytest.raises(ModelError, match="floor_rule"):
        view_floors(views, ys, ws, 2, 0.0, "strict")


def test_calibration_weights_and_weighted_temperature():
    from nwb_celltype.model.real_calibration import _group_weights, _temperature

    # 3 units of lab a, 1 of lab b: 1/3 each and 1, scaled to mean 1 -> 2/3, 2/3, 2/3, 2
    np.testing.assert_allclose(_group_weights(np.array(["a", "a", "a", "b"])), [2 / 3, 2 / 3, 2 / 3, 2.0])
    # lab a's logits are right and sharp, lab b's wrong: weighting b up softens the temperature
    logits = np.array([[[4.0, 0.0], [4.0, 0.0], [4.0, 0.0], [4.0, 0.0]]])
    y = np.array([0, 0, 0, 1])
    t_plain = _temperature(logits, y)
    t_lab = _temperature(logits, y, _group_weights(np.array(["a", "a", "a", "b"])))
    assert t_lab > t_plain
    # the NLL of p = sigmoid(4 / T) with 3 right and 1 wrong is minimised at 4 / T = log 3
    assert t_plain == pytest.approx(4 / np.log(3), rel=0.03)
    # with equal lab weights (3 x 1/6 right, 1/2 wrong) the optimum is p = 1/2: T at the grid's top
    assert t_lab == pytest.approx(10.0)
