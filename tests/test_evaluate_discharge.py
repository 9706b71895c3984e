"""`evaluate` for the real-data (acg-isi-wave) family: the validation protocol as a package function
and a CLI command, on the real Hull/Lisberger tables. Held-out units never reach a fold's model;
abstentions count as misses; baselines run on the same folds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from nwb_celltype.cli import main
from nwb_celltype.features.discharge import DischargeConfig
from nwb_celltype.testing.real_data import real_c4_dir

REAL = real_c4_dir()
pytestmark = pytest.mark.skipif(REAL is None, reason="real tables not on this machine (NWB_CELLTYPE_REAL_C4)")


def _small():
    from nwb_celltype.model.real_networks import RealModelConfig

    return RealModelConfig(pretrain_epochs=15, epochs=20, folds=3, seeds=1, n_threads=1)


@pytest.fixture(scope="module")
def hull(tmp_path_factory):
    from nwb_celltype.library import load_training_set
    from nwb_celltype.library.tables import import_tables

    d = tmp_path_factory.mktemp("lib")
    import_tables([REAL / "hull"], d / "hull.toml")
    return d / "hull.toml", load_training_set(d / "hull.toml", config=DischargeConfig())


def test_held_out_units_never_reach_a_folds_model(hull, monkeypatch):
    """Every fold's model is trained without the units it scores (not even as unlabelled units), and
    every labelled unit is scored exactly once, as a unit of its table's species."""
    from nwb_celltype.model import discharge_bundle, evaluate_model

    _, ts = hull
    seen = []
    real_train = discharge_bundle.train_discharge_model

    def spy(part, **kw):
        seen.append(set(map(int, part.features.unit_ids)))
        return real_train(part, **kw)

    scored = []
    real_predict = discharge_bundle._predict_units

    species = []

    def spy_predict(bundle, fs, **kw):
        scored.append(set(map(int, fs.unit_ids)))
        species.append(kw.get("species"))
        return real_predict(bundle, fs, **kw)

    monkeypatch.setattr(discharge_bundle, "train_discharge_model", spy)
    monkeypatch.setattr(discharge_bundle, "_predict_units", spy_predict)
    rep = evaluate_model(ts, folds=3, config=_small(), baselines=False)
    assert len(seen) == len(scored) == 3
    for trained, tested in zip(seen, scored, strict=True):
        assert tested and not (trained & tested)
    assert sum(len(s) for s in scored) == len(ts.labels) == rep.metrics["n_units"] == 79
    assert set.union(*scored) == set(map(int, ts.features.unit_ids))
    # each held-out unit is scored as a unit of its table's species (dataset.json: mouse)
    assert all(len(s) == len(t) and set(s) == {"mouse"} for s, t in zip(species, scored, strict=True))


def test_evaluation_counts_abstentions_and_scores_baselines(hull):
    from nwb_celltype.model import evaluate_model

    _, ts = hull
    rep = evaluate_model(ts, folds=3, config=_small(), seed=1)
    m = rep.metrics
    assert rep.protocol["family"] == "acg-isi-wave" and rep.classes == (
        "PkC_ss",
        "PkC_cs",
        "MLI",
        "GoC",
        "MFB",
    )
    assert m["class_counts"] == [27, 26, 10, 2, 14]
    # every class present is scored, including GoC (2 units); abstentions only lower recall
    assert set(m["recall_abstain_as_miss"]) == set(rep.classes)
    for c in rep.classes:
        assert m["recall_abstain_as_miss"][c] <= m["per_class_all"][c]["recall"] + 1e-12
    assert 0 <= m["confidently_wrong"] <= 1 - m["accuracy"] * m["fraction_classified"] + 1e-12
    assert set(rep.baselines) == {"logreg_rate_cv2_width", "logreg_raw_features"}
    # the discharge features carry the mouse classes: far above chance (0.2) for the model and the raw baseline
    assert (
        m["balanced_accuracy_all"] > 0.5
        and rep.baselines["logreg_raw_features"]["balanced_accuracy_all"] > 0.5
    )
    assert np.allclose(rep.probabilities.sum(1), 1.0)


def test_a_c4_config_for_table_features_is_refused(hull):
    from nwb_celltype.errors import LibraryError
    from nwb_celltype.model import TrainConfig, evaluate_model

    with pytest.raises(LibraryError, match="RealModelConfig"):
        evaluate_model(hull[1], folds=3, config=TrainConfig())


def test_cli_evaluates_a_tables_manifest_and_a_test_lab(hull, tmp_path, monkeypatch):
    """`evaluate MANIFEST` picks the real-data family for tables; `--test` trains on one lab and tests
    on another (macaque -> mouse here, the classes both have)."""
    from nwb_celltype.cli import evaluate as evaluate_cli
    from nwb_celltype.library.tables import import_tables

    monkeypatch.setattr(evaluate_cli, "make_real_config", lambda folds, seed, threads, **floors: _small())
    manifest, _ = hull
    import_tables([REAL / "lisberger"], tmp_path / "lis.toml")
    res = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(tmp_path / "lis.toml"),
            "--test",
            str(manifest),
            "--out",
            str(tmp_path / "ev"),
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "abstentions counted as misses" in res.output and "baseline logreg_rate_cv2_width" in res.output
    doc = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert doc["protocol"]["family"] == "acg-isi-wave" and doc["metrics"]["n_units"] == 79
    assert doc["protocol"]["scheme"].startswith("train on all 499 labelled units")  # one has no ACG
    # what was evaluated, and which unit each scored row is (the evaluation said neither)
    assert [r["name"] for r in doc["data"]["training"]] == ["lisberger"]
    assert [r["name"] for r in doc["data"]["test"]] == ["hull"] and "numpy" in doc["data"][
        "software_versions"
    ]
    with np.load(tmp_path / "ev" / "predictions.npz") as z:
        assert len(z["unit_id"]) == len(z["y"]) == 79 and set(z["source"]) == {
            doc["data"]["test"][0]["source"]
        }
        assert sorted(set(z["true_label"])) == sorted(doc["classes"])
        assert (np.asarray(doc["classes"])[z["y"]] == z["true_label"]).all()


def test_cli_train_passes_the_floor_rule_and_budget_to_the_model(hull, tmp_path, monkeypatch):
    """`train --floor-rule/--max-confidently-wrong/--kernel-share/--min-species-class-units` reach the
    acg-isi-wave model: with the per-label rule and a budget of 1 every floor is 1 (no floor);
    --kernel-share 0.25 trains kernel members mixed at a quarter; the species minimum reaches the card;
    a budget or share outside [0, 1], a negative minimum or an unknown rule is refused before anything
    is trained."""
    from nwb_celltype.cli import train as train_cli
    from nwb_celltype.model.real_networks import RealModelConfig

    cfg = train_cli.make_real_config(5, 3, 1, floor_rule="per-label", max_confidently_wrong=0.5)
    assert (cfg.floor_rule, cfg.max_confidently_wrong, cfg.folds, cfg.seed) == ("per-label", 0.5, 5, 3)
    assert cfg.kernel_share == RealModelConfig().kernel_share  # not given: the shipped recipe's
    assert cfg.min_species_class_units == RealModelConfig().min_species_class_units == 5
    assert (
        train_cli.make_real_config(
            5, 3, 1, floor_rule="per-label", max_confidently_wrong=0.5, kernel_share=0.0
        ).kernel_share
        == 0.0
    )
    small = {k: v for k, v in _small().to_dict().items() if k not in ("folds", "seed", "n_threads")}

    def make(folds, seed, threads, **floors):
        given = {k: v for k, v in floors.items() if v is not None}
        return RealModelConfig(**{**small, "folds": folds, "seed": seed, "n_threads": threads, **given})

    monkeypatch.setattr(train_cli, "make_real_config", make)
    manifest, _ = hull
    out = tmp_path / "m"
    args = ["train", str(manifest), "--out", str(out), "--folds", "3", "--no-progress"]
    res = CliRunner().invoke(
        main,
        [
            *args,
            *("--floor-rule", "per-label", "--max-confidently-wrong", "1", "--kernel-share", "0.25"),
            *("--min-species-class-units", "12"),
        ],
    )
    assert res.exit_code == 0, res.output
    card = json.loads((out / "model_card.json").read_text())
    meta = card["model_meta"]
    assert meta["config"]["floor_rule"] == "per-label" and meta["config"]["max_confidently_wrong"] == 1.0
    assert all(f == 1.0 for view in meta["ratio_floors"].values() for f in view)
    # Hull's 10 MLI and 2 GoC are fewer than 12: the card says which labels mouse units do not get
    assert meta["config"]["min_species_class_units"] == 12
    assert meta["species_support"]["Mus musculus"]["MLI"] == 10 and "fewer than 12" in card["decision"]
    assert meta["kernel"]["share"] == 0.25 and card["architecture"]["kernel_members_by_kind"] == {
        "full": 3,
        "discharge": 3,
    }
    for bad in (
        ["--max-confidently-wrong", "1.5"],
        ["--floor-rule", "strict"],
        ["--kernel-share", "2"],
        ["--min-species-class-units", "-1"],
    ):
        res = CliRunner().invoke(main, [*args[:3], "--out", str(tmp_path / "x"), *bad])
        assert res.exit_code != 0 and "Invalid value" in res.output and not (tmp_path / "x").exists(), (
            res.output
        )
