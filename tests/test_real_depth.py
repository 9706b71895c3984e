"""Recording depth (nwb_celltype.model.real_depth): thinned tables of shorter recordings, the depth
copies the real ensemble trains on, and its per-depth-band ratio floors."""

from __future__ import annotations

import numpy as np
import pytest

from nwb_celltype.model.real_depth import (
    acg_pairs,
    depth_copies,
    donate_waveforms,
    stretch_waveforms,
    thin_counts,
)


def _flat(depths, isi_share=0.25) -> dict:
    """Units whose ACG spreads ``depths[i]`` pairs evenly over the 100 lags."""
    d = np.asarray(depths, float)[:, None]
    return {
        "acg_counts": np.repeat(d / 100.0, 100, axis=1),
        "isi_counts": np.repeat(isi_share * d / 100.0, 100, axis=1),
        "waveform": np.arange(len(d) * 75, dtype=np.float32).reshape(len(d), 75),
    }


def test_thin_counts_keeps_each_count_with_the_given_probability():
    raw = _flat([40_000, 40_000])
    before = raw["acg_counts"].copy()
    out = thin_counts(raw, np.array([1.0, 0.25]), np.random.default_rng(0))
    np.testing.assert_array_equal(out["acg_counts"][0], before[0])  # scale 1: unchanged
    # scale 0.25: binomial(400, 0.25) per lag -> the 100-lag sum is 10,000 with SD sqrt(100 * 75) = 87
    assert abs(out["acg_counts"][1].sum() - 10_000) < 5 * 87
    # ISI: binomial(100, 0.25) per bin -> 2,500 with SD sqrt(100 * 18.75) = 43
    assert abs(out["isi_counts"][1].sum() - 2_500) < 5 * 43
    assert np.array_equal(out["acg_counts"], np.round(out["acg_counts"]))
    assert (out["acg_counts"] <= before).all()
    np.testing.assert_array_equal(raw["acg_counts"], before)  # the input is left as it was
    assert out["waveform"] is raw["waveform"]
    assert thin_counts(raw, np.zeros(2), np.random.default_rng(0))["acg_counts"].sum() == 0


def test_depth_copies_cover_every_depth_between_the_floor_and_the_units_own():
    raw = _flat([50, 10_000, 1_000_000])
    source, copies = depth_copies(raw, np.array([0, 1, 2]), k=200, min_pairs=100, seed=1)
    # the unit already shallower than min_pairs gets no copy; the others k each
    np.testing.assert_array_equal(np.bincount(source, minlength=3), [0, 200, 200])
    np.testing.assert_array_equal(copies["waveform"], raw["waveform"][source])
    depth = acg_pairs(copies["acg_counts"])
    for unit, own in ((1, 1e4), (2, 1e6)):
        d = np.log(depth[source == unit])
        lo, hi = np.log(100), np.log(own)
        assert d.max() <= hi and d.min() > lo - 0.5  # binomial noise around the drawn depth
        # log-uniform: each quarter of the log range holds about a quarter of the copies (50 +- 6)
        quarters = np.histogram(d, bins=np.linspace(lo, hi, 5))[0]
        assert (np.abs(quarters - 50) < 25).all(), quarters
    again = depth_copies(raw, np.array([0, 1, 2]), k=200, min_pairs=100, seed=1)
    np.testing.assert_array_equal(again[1]["acg_counts"], copies["acg_counts"])
    only = depth_copies(raw, np.array([1]), k=3, min_pairs=100, seed=1)[0]
    np.testing.assert_array_equal(only, [1, 1, 1])


def test_stretch_waveforms_widens_about_the_peak():
    t = np.arange(75, dtype=float)
    tri = np.maximum(0.0, 1.0 - np.abs(t - 30) / 10.0)  # a triangle of half-width 10 samples at 30
    out = stretch_waveforms(np.stack([tri, tri, np.full(75, np.nan)]), np.array([2.0, 0.5, 1.0]))
    # factor 2: half-width 20 samples, peak kept; factor 0.5: half-width 5
    np.testing.assert_allclose(out[0], np.maximum(0.0, 1.0 - np.abs(t - 30) / 20.0), atol=1e-12)
    np.testing.assert_allclose(out[1], np.maximum(0.0, 1.0 - np.abs(t - 30) / 5.0), atol=1e-12)
    assert np.isnan(out[2]).all()  # no waveform stays no waveform
    np.testing.assert_array_equal(stretch_waveforms(tri[None], np.ones(1))[0], tri)


def test_stretched_copies_keep_the_thinning_draws_and_vary_the_width():
    t = np.arange(75, dtype=float)
    raw = _flat([10_000] * 400)
    raw["waveform"] = np.tile(np.maximum(0.0, 1.0 - np.abs(t - 30) / 10.0), (400, 1))
    rows = np.arange(400)
    source, plain = depth_copies(raw, rows, k=1, min_pairs=100, seed=3)
    source2, wide = depth_copies(raw, rows, k=1, min_pairs=100, seed=3, stretch_sd=0.2)
    np.testing.assert_array_equal(source, source2)
    np.testing.assert_array_equal(wide["acg_counts"], plain["acg_counts"])  # same thinning
    np.testing.assert_array_equal(plain["waveform"], raw["waveform"])
    # half-width = 10 * factor samples: the area under the triangle is 10 * factor
    log_f = np.log(wide["waveform"].sum(1) / 10.0)
    assert abs(log_f.mean()) < 0.05 and abs(log_f.std() - 0.2) < 0.03, (log_f.mean(), log_f.std())


def test_donate_waveforms_gives_a_share_of_the_rows_a_donor_of_their_class():
    n = 3000
    labels = np.array(["a", "b", "c"] * (n // 3))
    own = np.zeros((n, 75))
    donors = np.stack([np.full(75, v) for v in (1.0, 2.0, 3.0)])
    donor_labels = np.array(["a", "a", "b"])  # class c has no donor
    out, donated = donate_waveforms(own, labels, donors, donor_labels, 0.25, seed=0)
    assert (own == 0).all()  # the input is left as it was
    assert not donated[labels == "c"].any()
    assert (out[~donated] == 0).all()  # rows not picked keep their own waveform
    assert set(out[donated & (labels == "a"), 0]) == {1.0, 2.0}  # a donor of the row's own class
    assert set(out[donated & (labels == "b"), 0]) == {3.0}
    # each row of a class with donors is picked with probability 0.25: binomial(2000, 0.25) = 500 +- 19
    assert abs(donated.sum() - 500) < 5 * 19, donated.sum()
    # the two donors of class a are drawn about equally often (binomial(~250, 0.5): SD ~0.03)
    assert abs((out[donated & (labels == "a"), 0] == 1.0).mean() - 0.5) < 0.12
    np.testing.assert_array_equal(donate_waveforms(own, labels, donors, donor_labels, 0.25, 0)[0], out)
    assert not donate_waveforms(own, labels, donors, donor_labels, 0.0, 0)[1].any()
    np.testing.assert_array_equal(
        donate_waveforms(own, labels, donors, donor_labels, 1.0, 0)[1], labels != "c"
    )


torch = pytest.importorskip("torch")
from test_real_model import CLASSES, TINY, _units  # noqa: E402

from nwb_celltype.model.discharge_bundle import _depth_notes  # noqa: E402
from nwb_celltype.model.real_ensemble import predict_real_ensemble  # noqa: E402
from nwb_celltype.model.real_networks import RealModelConfig  # noqa: E402
from nwb_celltype.model.real_training import train_real_ensemble  # noqa: E402

EDGE = 1000.0


@pytest.fixture(scope="module")
def banded():
    raw, labels = _units(10, seed=4)
    cfg = RealModelConfig(
        **{**TINY.to_dict(), "depth_copies": 2, "depth_min_pairs": 100.0, "depth_bands": (EDGE,)}
    )
    oof: dict = {}
    tensors, meta = train_real_ensemble(raw, labels, CLASSES, None, cfg, oof=oof)
    return raw, labels, tensors, meta, oof


def test_depth_copies_train_the_members_and_fit_one_set_of_floors_per_band(banded):
    raw, labels, tensors, meta, oof = banded
    depth = acg_pairs(raw["acg_counts"])
    assert depth.min() < EDGE < depth.max()  # the synthetic units fall in both bands
    assert meta["n_labelled"] == len(labels) and sum(meta["class_counts"].values()) == len(labels)
    assert meta["n_depth_copies"] == 2 * int((depth > 100).sum())
    [band] = meta["depth_bands"]
    assert band["below_pairs"] == EDGE and set(band["ratio_floors"]) == {"full", "discharge", "mixed"}
    # the floors handed out are the deepest band's: units and copies with at least EDGE pairs, so
    # fewer rows than units + copies and more than the deep units alone
    n_deep = int((depth >= EDGE).sum())
    assert n_deep < len(oof["discharge"]["y"]) < len(labels) + meta["n_depth_copies"]


def test_units_take_the_floors_of_their_depth_band(banded):
    raw, labels, tensors, meta, _ = banded
    never = {k: [1e6] * len(CLASSES) for k in ("full", "discharge", "mixed")}
    none = {k: [1.0] * len(CLASSES) for k in ("full", "discharge", "mixed")}
    meta = {**meta, "ratio_floors": none, "depth_bands": [{"below_pairs": EDGE, "ratio_floors": never}]}
    # scored without waveforms: the discharge-only members leave finite ratios on these easy units
    raw = {**raw, "waveform": np.full_like(raw["waveform"], np.nan)}
    out = predict_real_ensemble(tensors, meta, raw)
    shallow = acg_pairs(raw["acg_counts"]) < EDGE
    np.testing.assert_array_equal(out["depth_band"], np.where(shallow, 0, 1))
    np.testing.assert_array_equal(out["ratio_floor"], np.where(shallow, 1e6, 1.0))
    srt = np.sort(out["probabilities"], 1)
    with np.errstate(divide="ignore"):  # a sharpened mixture can leave an exact 0 runner-up
        ratio = srt[:, -1] / srt[:, -2]
    np.testing.assert_array_equal(out["below_ratio_floor"], shallow & (ratio < 1e6))
    assert out["below_ratio_floor"].any()
    notes = _depth_notes(meta, out)
    assert all(("fewer than 1000 pairs" in s) == sh for s, sh in zip(notes, shallow, strict=True))
    # a model without bands (before 1.5): every unit in one band, the main floors
    old = predict_real_ensemble(tensors, {**meta, "depth_bands": []}, raw)
    assert (old["depth_band"] == 0).all() and not old["below_ratio_floor"].any()


def test_without_depth_copies_there_are_no_bands():
    raw, labels = _units(6, seed=5)
    _, meta = train_real_ensemble(
        raw,
        labels,
        CLASSES,
        None,
        RealModelConfig(**{**TINY.to_dict(), "depth_copies": 0, "depth_bands": (EDGE,)}),
    )
    assert meta["n_depth_copies"] == 0 and meta["depth_bands"] == []


def test_waveform_stretch_without_copies_or_negative_is_refused():
    from nwb_celltype.errors import ModelError

    raw, labels = _units(2, seed=5)
    for bad in ({"depth_copies": 0, "waveform_stretch": 0.1}, {"waveform_stretch": -0.1}):
        with pytest.raises(ModelError, match="waveform_stretch"):
            train_real_ensemble(raw, labels, CLASSES, None, RealModelConfig(**{**TINY.to_dict(), **bad}))


def test_band_floors_refit_from_the_rows_handed_out(banded):
    """``oof=`` hands out the deepest band's out-of-fold rows (units and copies): refitting the
    floors from them gives the model's main floors."""
    from nwb_celltype.model.real_floors import ratio_floors

    *_, meta, oof = banded
    for view, v in oof.items():
        floors = ratio_floors(v["p"], v["y"], len(CLASSES), TINY.max_confidently_wrong, v["w"])
        assert meta["ratio_floors"][view] == floors


def test_a_units_rows_share_its_weight_and_labs_weigh_the_same():
    from nwb_celltype.model.real_training import _row_weights

    # lab a: unit 0 with one copy (two rows), unit 1 alone; lab b: unit 2 alone
    w = _row_weights(np.array(["a", "a", "a", "b"]), np.array([0, 0, 1, 2]))
    np.testing.assert_allclose(w, [0.5, 0.5, 1.0, 2.0])


def _with_donors(n_per_class: int, n_donors: int, seed: int) -> tuple[dict, np.ndarray]:
    """Synthetic labelled units; the last ``n_donors`` of each class are known by their waveform
    alone (no ACG/ISI: a waveform-only table such as Hausser's)."""
    raw, labels = _units(n_per_class, seed=seed)
    last = np.concatenate([np.flatnonzero(labels == c)[-n_donors:] for c in CLASSES])
    has_d = np.ones(len(labels), bool)
    has_d[last] = False
    raw = {**raw, "has_discharge": has_d}
    for key in ("acg_counts", "isi_counts"):
        raw[key] = np.where(has_d[:, None], raw[key], 0.0)
    return raw, labels


def test_waveform_donors_reach_the_full_members_only():
    """Labelled units without a discharge lend their waveforms to a share of the depth copies of
    their class: the full members change, the discharge-only members (same discharges, same
    seeds) do not; without the option the donors only pre-train the encoder."""
    raw, labels = _with_donors(8, 2, seed=6)
    base = {**TINY.to_dict(), "depth_copies": 2}
    t0, m0 = train_real_ensemble(raw, labels, CLASSES, None, RealModelConfig(**base))
    t1, m1 = train_real_ensemble(
        raw, labels, CLASSES, None, RealModelConfig(**{**base, "waveform_donors": 1.0})
    )
    assert m0["donor_waveforms"] == {"n_donors": 2 * len(CLASSES), "n_copies_with_donor_waveform": 0}
    # share 1 and every class has donors: every depth copy carries a donor's waveform
    assert m1["donor_waveforms"]["n_copies_with_donor_waveform"] == m1["n_depth_copies"] > 0
    assert m1["n_labelled"] == m0["n_labelled"] == 6 * len(CLASSES)  # donors are not labelled rows
    assert m1["config"]["waveform_donors"] == 1.0
    full = [k for k in t0 if k.startswith("members.full.")]
    disc = [k for k in t0 if k.startswith("members.discharge.")]
    assert full and disc
    assert any(not torch.equal(t0[k], t1[k]) for k in full)
    assert all(torch.equal(t0[k], t1[k]) for k in disc)
    # donors lend only to units of their own species: donors of another one leave the training as it was
    species = np.where(raw["has_discharge"], "macaque", "mouse")
    t2, m2 = train_real_ensemble(
        raw, labels, CLASSES, None, RealModelConfig(**{**base, "waveform_donors": 1.0}), species=species
    )
    assert m2["donor_waveforms"]["n_copies_with_donor_waveform"] == 0
    assert all(torch.equal(t0[k], t2[k]) for k in full)


def test_waveform_donors_out_of_range_or_without_copies_are_refused():
    from nwb_celltype.errors import ModelError

    raw, labels = _with_donors(3, 1, seed=7)
    for bad in (
        {"waveform_donors": 1.5},
        {"waveform_donors": -0.1},
        {"depth_copies": 0, "waveform_donors": 0.5},
    ):
        with pytest.raises(ModelError, match="waveform_donors"):
            train_real_ensemble(raw, labels, CLASSES, None, RealModelConfig(**{**TINY.to_dict(), **bad}))
