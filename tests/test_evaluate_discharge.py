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
    every labelled unit is scored exactly once."""
    from nwb_celltype.model import discharge_bundle, evaluate_model

    _, ts = hull
    seen = []
    real_train = discharge_bundle.train_discharge_model

    def spy(part, **kw):
        seen.append(set(map(int, part.features.unit_ids)))
        return real_train(part, **kw)

    scored = []
    real_predict = discharge_bundle.predict_discharge

    def spy_predict(bundle, fs, **kw):
        scored.append(set(map(int, fs.unit_ids)))
        return real_predict(bundle, fs, **kw)

    monkeypatch.setattr(discharge_bundle, "train_discharge_model", spy)
    monkeypatch.setattr(discharge_bundle, "predict_discharge", spy_predict)
    rep = evaluate_model(ts, folds=3, config=_small(), baselines=False)
    assert len(seen) == len(scored) == 3
    for trained, tested in zip(seen, scored, strict=True):
        assert tested and not (trained & tested)
    assert sum(len(s) for s in scored) == len(ts.labels) == rep.metrics["n_units"] == 79
    assert set.union(*scored) == set(map(int, ts.features.unit_ids))


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

    monkeypatch.setattr(evaluate_cli, "make_real_config", lambda folds, seed, threads: _small())
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
