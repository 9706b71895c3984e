"""Training, bundles (safetensors + card, hashes), prediction and evaluation on synthetic features."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from nwb_celltype.errors import (
    InvalidValueError,
    LibraryError,
    ModelError,
    ModelMismatchError,
    OutputError,
    UnsafeFileError,
)
from nwb_celltype.features.config import FeatureConfig
from nwb_celltype.model import (
    TrainConfig,
    evaluate_model,
    load_bundle,
    predict_cell_types,
    save_bundle,
    train_model,
)
from nwb_celltype.model._synthetic import make_synthetic_features, make_synthetic_training_set
from nwb_celltype.model.metrics import classification_metrics, confidence_ratio
from nwb_celltype.vocabulary import NOT_CLASSIFIABLE, UNCLASSIFIED

FAST = TrainConfig(vae_epochs=10, head_epochs=8, folds=3, repeats=1, vae_batch_size=32)
COUNTS = {"GoC": 8, "MLI": 8, "MFB": 8, "PkC_ss": 8, "PkC_cs": 8}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def tset():
    return make_synthetic_training_set(COUNTS, n_unlabelled=60, seed=3)


@pytest.fixture(scope="module")
def bundle(tset):
    return train_model(tset, config=FAST, seed=0, name="test-model")


def test_train_model_card_and_accuracy(bundle, tset):
    card = bundle.card
    assert bundle.classes == ("GoC", "MLI", "MFB", "PkC_ss", "PkC_cs")
    assert bundle.n_members == 3 and card["architecture"]["shared_encoders"] is True
    assert card["architecture"]["parameters_per_member"] == 322_177
    assert card["feature_config_sha256"] == FeatureConfig().sha256
    assert card["training"]["seed"] == 0 and card["training"]["n_unlabelled"] == 60
    assert card["training"]["class_counts"] == COUNTS | {}
    assert card["training_data"] == [{"kind": "synthetic", "seed": 3}]
    assert {c["name"] for c in card["classes"]} == set(COUNTS)
    assert all("cell_ontology_id" in c for c in card["classes"])
    assert "torch" in card["software"] and card["calibration"]["method"] == "temperature"
    assert (
        bundle.uses_layer is False
        and "no labelled unit has a known layer" in card["training"]["use_layer_reason"]
    )
    # well separated synthetic classes: cross-validated accuracy must be high even with tiny settings
    m = card["metrics"]["cross_validated"]
    assert m["balanced_accuracy_all"] > 0.8, m
    p = predict_cell_types(bundle, tset.features.subset(np.arange(40)))
    assert np.mean(p.predicted_class == tset.labels[:40]) > 0.8


def test_training_is_deterministic(tset, bundle):
    again = train_model(tset, config=FAST, seed=0, name="test-model")
    assert again.card["weights_sha256"] == bundle.card["weights_sha256"]
    other = train_model(tset, config=FAST, seed=1, name="test-model")
    assert other.card["weights_sha256"] != bundle.card["weights_sha256"]


def test_layer_choice_is_automatic_and_recorded():
    ts = make_synthetic_training_set(COUNTS, n_unlabelled=0, seed=4, with_layer=True)
    cfg = replace(FAST, vae_epochs=1, head_epochs=2)
    b = train_model(ts, config=cfg, seed=0)
    assert b.uses_layer and b.card["uses_layer"] is True
    assert "some labelled units have a known layer" in b.card["training"]["use_layer_reason"]
    b2 = train_model(ts, config=replace(cfg, use_layer=False), seed=0)
    assert not b2.uses_layer and b2.card["training"]["use_layer_reason"] == "set explicitly"
    p = predict_cell_types(b, ts.features)
    assert p.probabilities.shape == (len(ts.labels), 5)


def test_predictions_contract(bundle):
    feats = make_synthetic_features(
        np.array(["GoC", "MLI", "MFB", "PkC_ss", "PkC_cs"] * 4, dtype=object), seed=8
    )
    feats.usable[3] = False
    feats.reasons[3] = "fewer than 100 spikes"
    feats.waveform[5, 10] = np.nan  # marked usable but not finite
    p = predict_cell_types(bundle, feats)
    n, k = 20, 5
    assert p.probabilities.shape == (n, k) and p.votes.shape == (n, k) and p.labels.shape == (n,)
    assert np.isnan(p.probabilities[[3, 5]]).all()
    assert p.labels[3] == NOT_CLASSIFIABLE and p.status[3] == "not_classifiable"
    assert p.reasons[3] == "fewer than 100 spikes" and p.reasons[5] == "non-finite feature values"
    ok = p.status != "not_classifiable"
    np.testing.assert_allclose(p.probabilities[ok].sum(1), 1.0, rtol=1e-6)
    assert (p.votes[ok].sum(1) == bundle.n_members).all() and (p.votes[~ok] == 0).all()
    assert (p.confidence[ok] >= 1).all()
    np.testing.assert_allclose(p.confidence[ok], confidence_ratio(p.probabilities[ok]))
    cls = p.status == "classified"
    assert set(p.labels[cls]) <= set(bundle.classes)
    assert (p.confidence[cls] >= 2.0).all() and (p.labels[p.status == "unclassified"] == UNCLASSIFIED).all()
    # a huge threshold leaves every row (with its probabilities) but classifies none
    p2 = predict_cell_types(bundle, feats, threshold=1e9)
    assert (p2.labels[ok] == UNCLASSIFIED).all()
    np.testing.assert_allclose(p2.probabilities[ok], p.probabilities[ok])
    assert list(p.unit_ids) == list(feats.unit_ids)


@pytest.mark.parametrize("threshold", [0.5, float("nan"), float("inf")])
def test_bad_threshold(bundle, threshold):
    feats = make_synthetic_features(np.array(["GoC"], dtype=object))
    with pytest.raises(InvalidValueError, match="threshold"):
        predict_cell_types(bundle, feats, threshold=threshold)


def test_feature_config_mismatch_is_refused(bundle):
    feats = make_synthetic_features(np.array(["GoC", "MLI"], dtype=object))
    feats.config = FeatureConfig(min_spikes=50)
    with pytest.raises(ModelMismatchError, match=r"min_spikes=50 \(100\) \(the model.s values in brackets\)"):
        predict_cell_types(bundle, feats)


def test_bundle_round_trip(bundle, tmp_path):
    path = save_bundle(bundle, tmp_path / "b")
    assert sorted(p.name for p in path.iterdir()) == ["model_card.json", "weights.safetensors"]
    loaded = load_bundle(path)
    assert loaded.sha256 == bundle.sha256 and loaded.classes == bundle.classes
    assert loaded.temperature == pytest.approx(bundle.temperature)
    feats = make_synthetic_features(np.array(["GoC", "MLI", "PkC_cs"] * 3, dtype=object), seed=2)
    a, b = predict_cell_types(bundle, feats), predict_cell_types(loaded, feats)
    np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=1e-6)
    assert list(a.labels) == list(b.labels)
    # a card in strict JSON (no NaN)
    json.loads((path / "model_card.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    with pytest.raises(OutputError, match="not empty"):
        save_bundle(bundle, path)
    save_bundle(bundle, path, overwrite=True)
    assert load_bundle(path / "model_card.json").sha256 == bundle.sha256
    assert load_bundle(path, feature_config=FeatureConfig()).name == "test-model"


def test_tampered_bundles_are_refused(bundle, tmp_path):
    path = save_bundle(bundle, tmp_path / "b")
    card = json.loads((path / "model_card.json").read_text())
    card["classes"][0]["name"] = "PkC_xx"
    (path / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="card was edited"):
        load_bundle(path)

    path2 = save_bundle(bundle, tmp_path / "c")
    from safetensors.torch import load_file, save_file

    t = load_file(str(path2 / "weights.safetensors"))
    t["ensemble.fc2.bias"] = t["ensemble.fc2.bias"] + 1
    save_file(t, str(path2 / "weights.safetensors"))
    with pytest.raises(ModelError, match="corrupt or was modified"):
        load_bundle(path2)

    path3 = save_bundle(bundle, tmp_path / "d")
    with pytest.raises(ModelMismatchError, match="min_spikes"):
        load_bundle(path3, feature_config=FeatureConfig(min_spikes=10))
    (path3 / "weights.safetensors").write_bytes(b"\x80\x04garbage")
    with pytest.raises(ModelError, match="safetensors"):
        load_bundle(path3)


def test_pickle_and_non_bundles_are_refused(tmp_path):
    pt = tmp_path / "model_0.pt"
    torch.save({"a": torch.zeros(1)}, pt)
    with pytest.raises(UnsafeFileError, match="pickle"):
        load_bundle(pt)
    with pytest.raises(ModelError, match="not a model bundle"):
        load_bundle(tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "model_card.json").write_text("{}")
    (tmp_path / "x" / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match="not an nwb-celltype model card"):
        load_bundle(tmp_path / "x")


def test_training_input_errors():
    ts = make_synthetic_training_set({"GoC": 2, "MLI": 8}, n_unlabelled=0)
    with pytest.raises(LibraryError, match="fewer than folds"):
        train_model(ts, config=FAST)
    one = make_synthetic_training_set({"GoC": 8}, n_unlabelled=0)
    with pytest.raises(LibraryError, match="at least 2 classes"):
        train_model(one, config=FAST)
    ts.labels = ts.labels[:-1]
    with pytest.raises(LibraryError, match="one to one"):
        train_model(ts, config=FAST)
    with pytest.raises(ModelError, match="folds must be >= 2"):
        TrainConfig(folds=1)


def test_metrics_reference_values():
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.eye(3)[[0, 0, 1, 2, 2, 2]] * 0.9 + 0.1 / 3
    m = classification_metrics(y, p, ("a", "b", "c"))
    assert m["confusion_matrix"] == [[2, 0, 0], [0, 1, 1], [0, 0, 2]]
    assert m["balanced_accuracy"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["per_class"]["c"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["b"]["recall"] == pytest.approx(0.5)
    assert m["fraction_classified"] == 1.0
    # confidence 0.9333 on every row, accuracy 5/6 -> ECE = |5/6 - 0.9333|
    assert m["calibration"]["ece"] == pytest.approx(abs(5 / 6 - (0.9 + 0.1 / 3)))
    low = classification_metrics(y, np.full((6, 3), 1 / 3), ("a", "b", "c"))
    assert low["fraction_classified"] == 0.0 and np.isnan(low["balanced_accuracy"])


def test_metrics_count_abstentions_as_misses_and_confident_errors():
    """Hand-computed: 6 units of classes a, b, c; unit 3 (b) is wrong but confident, unit 5 (c) is
    right but abstained on (e.g. out of distribution), unit 1 (a) is below the threshold."""
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.eye(3)[[0, 0, 1, 2, 2, 2]] * 0.9 + 0.1 / 3
    p[1] = [0.45, 0.35, 0.20]  # ratio 1.29 < 2: unclassified
    abstain = np.array([False, False, False, False, False, True])
    m = classification_metrics(y, p, ("a", "b", "c"), abstain=abstain)
    assert m["fraction_classified"] == pytest.approx(4 / 6)
    assert m["recall_abstain_as_miss"] == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.5})
    assert m["balanced_recall_abstain_as_miss"] == pytest.approx(0.5)
    assert m["confidently_wrong"] == pytest.approx(1 / 6)
    assert m["fraction_abstained_other"] == pytest.approx(1 / 6)
    # without abstentions unit 5 counts as classified and right
    m0 = classification_metrics(y, p, ("a", "b", "c"))
    assert m0["recall_abstain_as_miss"]["c"] == 1.0 and m0["fraction_classified"] == pytest.approx(5 / 6)
    # a class whose every unit was abstained on scores 0, it is not dropped
    m1 = classification_metrics(y, p, ("a", "b", "c"), abstain=y == 2)
    assert m1["recall_abstain_as_miss"]["c"] == 0.0
    assert m1["balanced_recall_abstain_as_miss"] == pytest.approx((0.5 + 0.5 + 0.0) / 3)


def test_evaluate_model_writes_json_and_figures(tset, tmp_path):
    rep = evaluate_model(tset, folds=3, config=replace(FAST, vae_epochs=2, head_epochs=4), seed=0)
    assert rep.probabilities.shape == (40, 5) and len(rep.y) == 40
    assert set(rep.baselines) == {"logistic_regression", "rule_width_rate"}
    assert "3-fold" in rep.protocol["scheme"]
    paths = rep.write(tmp_path / "ev")
    names = {p.name for p in paths}
    assert {
        "evaluation.json",
        "confusion_matrix.png",
        "per_class.png",
        "threshold_curve.png",
        "reliability.png",
    } <= names
    data = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert data["metrics"]["n_units"] == 40 and "threshold_curve" in data["metrics"]
    assert (tmp_path / "ev" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert "balanced accuracy" in rep.summary()


def test_evaluate_transfer_to_test_set(tset):
    shifted = make_synthetic_training_set(COUNTS, n_unlabelled=0, seed=11, shift=0.1)
    rep = evaluate_model(
        tset, test_set=shifted, config=replace(FAST, vae_epochs=2, head_epochs=4), baselines=False
    )
    assert rep.metrics["n_units"] == 40 and "test_set" in rep.protocol["scheme"]
    assert rep.protocol["baselines"] == {}  # none were scored: none are described


def test_cli_train_and_evaluate(tset, tmp_path, monkeypatch):
    from nwb_celltype.cli import main
    from nwb_celltype.cli import train as train_mod

    monkeypatch.setattr(train_mod, "load_library", lambda *a, **k: tset)
    runner = CliRunner()
    out = tmp_path / "bundle"
    args = ["--vae-epochs", "1", "--head-epochs", "2", "--folds", "3", "--repeats", "1", "--no-progress"]
    res = runner.invoke(main, ["train", "lib.toml", "--out", str(out), *args])
    assert res.exit_code == 0, res.output
    assert "balanced accuracy" in res.output and load_bundle(out).n_members == 3
    res = runner.invoke(main, ["train", "lib.toml", "--out", str(out), *args])
    assert res.exit_code == 1 and res.output.startswith("Error:") and "overwrite" in res.output
    import nwb_celltype.cli.evaluate as ev_mod

    monkeypatch.setattr(ev_mod, "load_library", lambda *a, **k: tset)
    res = runner.invoke(
        main, ["evaluate", "lib.toml", "--out", str(tmp_path / "ev"), "--outer-folds", "2", *args]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ev" / "evaluation.json").exists()


def test_demo_bundle_is_marked_simulated():
    from nwb_celltype.model import load_demo_bundle

    b = load_demo_bundle()
    assert b.card["trained_on_simulated_data"] is True
    assert "SIMULATED" in b.card["intended_use"] and "not for scientific" in b.card["description"].lower()
    assert b.classes == ("GoC", "MLI", "MFB", "PkC_ss", "PkC_cs")
    feats = make_synthetic_features(np.array(["GoC", "MLI"], dtype=object))
    p = predict_cell_types(b, feats)
    assert p.probabilities.shape == (2, 5)
    size = sum(f.stat().st_size for f in b.path.iterdir())
    assert size < 5e6, f"demo bundle is {size / 1e6:.1f} MB"


@pytest.mark.gpu
def test_bundle_loads_on_gpu(bundle, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    path = save_bundle(bundle, tmp_path / "g")
    g = load_bundle(path, device="cuda")
    assert g.device.type == "cuda"
    feats = make_synthetic_features(np.array(["GoC", "MLI", "PkC_ss"], dtype=object), seed=1)
    np.testing.assert_allclose(
        predict_cell_types(g, feats).probabilities, predict_cell_types(bundle, feats).probabilities, rtol=1e-4
    )


def test_leave_one_out_evaluation():
    small = make_synthetic_training_set(dict.fromkeys(COUNTS, 3), n_unlabelled=0, seed=5)
    cfg = replace(FAST, vae_epochs=1, head_epochs=1, folds=2, min_batches_per_epoch=1)
    rep = evaluate_model(small, leave_one_out=True, config=cfg, baselines=False)
    assert "leave-one-out over 15" in rep.protocol["scheme"]
    assert rep.probabilities.shape == (15, 5) and np.isfinite(rep.probabilities).all()


def test_macro_f1_counts_never_predicted_classes_as_zero():
    y = np.array([0, 0, 1, 1])
    p = np.eye(2)[[0, 0, 0, 0]] * 0.9 + 0.05
    m = classification_metrics(y, p, ("a", "b"))
    assert m["per_class"]["b"]["f1"] == 0.0 and m["per_class"]["b"]["precision"] is None
    assert m["per_class"]["a"]["f1"] == pytest.approx(2 * 2 / (4 + 2))
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)


def test_finetuned_encoders_give_per_member_encoders(tset):
    cfg = replace(FAST, vae_epochs=1, head_epochs=1, finetune_encoders=True, min_batches_per_epoch=2)
    b = train_model(tset, config=cfg, seed=0)
    assert b.card["architecture"]["shared_encoders"] is False and b.ensemble.n_encoders == 3
    assert b.card["training"]["config"]["finetune_encoders"] is True
    feats = make_synthetic_features(np.array(["GoC", "PkC_cs"], dtype=object), seed=4)
    p = predict_cell_types(b, feats)
    np.testing.assert_allclose(p.probabilities.sum(1), 1.0, rtol=1e-6)


def test_the_card_summarises_the_labels_evidence():
    """A user's model records how its labels were obtained, and one trained on simulation evidence
    alone is flagged as the demo model is (annotate then says so)."""
    from types import SimpleNamespace

    from nwb_celltype.model.training_inputs import evidence_card

    labels = np.array(["GoC", "", "MLI", "PkC_ss"], dtype=object)
    ev = {
        "evidence_type": np.array(["optotagging", "", "expert", "expert"], dtype=object),
        "labelled_by": np.array(["ana", "", "ben", "ben"], dtype=object),
    }
    card = evidence_card(SimpleNamespace(labels=labels, evidence=ev))
    assert card == {
        "evidence": {"evidence_type": {"expert": 2, "optotagging": 1}, "labelled_by": {"ana": 1, "ben": 2}}
    }
    ev["evidence_type"] = np.array(["simulation"] * 4, dtype=object)
    assert evidence_card(SimpleNamespace(labels=labels, evidence=ev))["trained_on_simulated_data"] is True
    assert evidence_card(SimpleNamespace(labels=labels, evidence={})) == {}
    # the package's simulator writes stand-in evidence types ("optotagging", "expert") and says who
    # labelled: such labels are simulated too (a model trained on `simulate` output was not flagged)
    ev = {
        "evidence_type": np.array(["optotagging", "", "expert", "expert"], dtype=object),
        "labelled_by": np.array(["nwb_celltype.simulate 0.9"] * 3 + ["ben"], dtype=object),
    }
    card = evidence_card(SimpleNamespace(labels=labels, evidence=ev))
    assert (
        card["simulated_label_fraction"] == pytest.approx(2 / 3) and "trained_on_simulated_data" not in card
    )
    ev["labelled_by"] = np.array(["nwb_celltype.simulate 0.9"] * 4, dtype=object)
    assert evidence_card(SimpleNamespace(labels=labels, evidence=ev))["trained_on_simulated_data"] is True
