"""The real-data (acg-isi-wave) model through the whole package: training from feature tables, the
bundle on disk, `predict` without NWB, `annotate` choosing the family the bundle declares, units
without a waveform, and units unlike every class."""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest
from click.testing import CliRunner

from nwb_celltype.cli import main
from nwb_celltype.features.discharge import DischargeConfig
from nwb_celltype.testing.real_data import real_c4_dir

REAL = real_c4_dir()
pytestmark = pytest.mark.skipif(REAL is None, reason="real tables not on this machine (NWB_CELLTYPE_REAL_C4)")


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory):
    """A real (small, fast) training run on the Hull tables + Hausser waveforms."""
    from nwb_celltype.library import load_training_set
    from nwb_celltype.library.tables import import_tables
    from nwb_celltype.model import save_bundle
    from nwb_celltype.model.discharge_bundle import train_discharge_model
    from nwb_celltype.model.real_networks import RealModelConfig

    d = tmp_path_factory.mktemp("bundle")
    import_tables([REAL / "hull", REAL / "hausser"], d / "lib.toml")
    ts = load_training_set(d / "lib.toml", config=DischargeConfig())
    cfg = RealModelConfig(pretrain_epochs=30, epochs=40, folds=3, seeds=1, n_threads=1)
    bundle = train_discharge_model(ts, config=cfg, name="test-real", version="0.0.1")
    return save_bundle(bundle, d / "model")


def test_bundle_round_trip_and_card(small_bundle):
    from nwb_celltype.errors import ModelError
    from nwb_celltype.model import load_bundle

    b = load_bundle(small_bundle)
    assert b.feature_family == "acg-isi-wave" and b.feature_config == DischargeConfig()
    assert b.classes == ("PkC_ss", "PkC_cs", "MLI", "GoC", "MFB")
    card = json.loads((small_bundle / "model_card.json").read_text())
    assert card["training"]["class_counts"]["PkC_ss"] == 27  # Hull's 27 simple-spike units
    assert {r["name"] for r in card["training_data"]} == {"hull", "hausser"}
    # the manifest it was trained from, by identity, and no folder of the build machine
    lib = small_bundle.parent / "lib.toml"
    assert card["training_manifest"]["file_name"] == "lib.toml"
    assert card["training_manifest"]["sha256"] == hashlib.sha256(lib.read_bytes()).hexdigest()
    assert str(small_bundle.parent) not in json.dumps(card)
    assert b.n_members > 0
    # an edited card is refused
    card["name"] = "edited"
    (small_bundle.parent / "edited").mkdir()
    (small_bundle.parent / "edited" / "model_card.json").write_text(json.dumps(card))
    (small_bundle.parent / "edited" / "weights.safetensors").write_bytes(
        (small_bundle / "weights.safetensors").read_bytes()
    )
    with pytest.raises(ModelError, match="edited"):
        load_bundle(small_bundle.parent / "edited")


def test_predict_cli_writes_one_row_per_unit(small_bundle, tmp_path):
    out = tmp_path / "p.tsv"
    res = CliRunner().invoke(
        main, ["predict", str(REAL / "lisberger"), "--out", str(out), "--model", str(small_bundle)]
    )
    assert res.exit_code == 0, res.output
    with open(out) as f:
        assert f.readline().startswith("# model: test-real 0.0.1 sha256=")
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 984
    assert {
        "row",
        "neuron_id",
        "true_label",
        "label",
        "status",
        "confidence",
        "p_PkC_ss",
        "acg_pairs",
        "reason",
    } <= set(rows[0])
    # the depth column: the ACG table's pair count at lags 1-100 ms, row by row (empty without one)
    acg = np.loadtxt(REAL / "lisberger" / "acg.csv", delimiter=",", skiprows=1)  # lags -100..100 ms
    pairs = acg[:, 101:].sum(1)
    got = [r["acg_pairs"] for r in rows]
    assert [g for g in got if g == ""] == [""]  # the one unit without ACG/ISI
    ok = [i for i, g in enumerate(got) if g != ""]
    np.testing.assert_allclose([float(got[i]) for i in ok], np.round(pairs[ok]))
    statuses = {r["status"] for r in rows}
    assert statuses <= {"classified", "unclassified", "not_classifiable"}
    # one Lisberger row has no ACG/ISI: not classifiable, with the reason
    nc = [r for r in rows if r["status"] == "not_classifiable"]
    assert len(nc) == 1 and "no ACG/ISI" in nc[0]["reason"]
    for r in rows:
        if r["status"] != "not_classifiable":
            p = np.array([float(r[f"p_{c}"]) for c in ("PkC_ss", "PkC_cs", "MLI", "GoC", "MFB")])
            assert abs(p.sum() - 1) < 1e-4
            assert (r["status"] == "classified") == (r["label"] not in ("unclassified",))
    # the --json summary's comparison with the tables' labels, counted here from the rows written
    js = CliRunner().invoke(
        main,
        [
            "predict",
            str(REAL / "lisberger"),
            "--out",
            str(tmp_path / "j.tsv"),
            "--model",
            str(small_bundle),
            "--json",
        ],
    )
    assert js.exit_code == 0, js.output
    summary = json.loads(js.output)
    classes = ("PkC_ss", "PkC_cs", "MLI", "GoC", "MFB")
    known = [r for r in rows if r["true_label"] in classes]
    labelled = [r for r in known if r["label"] in classes]
    right = [r for r in labelled if r["label"] == r["true_label"]]
    assert summary["n_labelled"] == len(known) == 500
    assert summary["coverage"] == pytest.approx(len(labelled) / len(known))
    assert summary["accuracy_of_classified"] == pytest.approx(len(right) / len(labelled))
    assert summary["confidently_wrong"] == pytest.approx((len(labelled) - len(right)) / len(known))
    recall = [
        sum(r["label"] == c for r in known if r["true_label"] == c) / sum(r["true_label"] == c for r in known)
        for c in classes
    ]
    assert summary["balanced_accuracy_abstentions_as_misses"] == pytest.approx(np.mean(recall))
    for c in classes:
        mine = [r for r in known if r["true_label"] == c]
        assert summary["per_class"][c] == {
            "n": len(mine),
            "labelled": sum(r["label"] in classes for r in mine),
            "right": sum(r["label"] == c for r in mine),
        }
    text = (
        CliRunner()
        .invoke(
            main,
            [
                "predict",
                str(REAL / "lisberger"),
                "--out",
                str(tmp_path / "t.tsv"),
                "--model",
                str(small_bundle),
            ],
        )
        .output
    )
    right = summary["per_class"]["PkC_ss"]["right"]
    assert f"PkC_ss {right}/158" in text and "unclassified counts as a miss" in text
    # the reasons are counted as annotate counts them: the one Lisberger unit without ACG/ISI
    assert text.startswith("predicted 984 units with")
    assert "not classifiable, by reason:\n     1  no ACG/ISI in the tables" in text
    n_uncl = sum(r["status"] == "unclassified" for r in rows)
    block = text.split("unclassified, by reason:\n", 1)[1].split("not classifiable, by reason:")[0]
    assert sum(int(line.split()[0]) for line in block.strip().splitlines()) == n_uncl
    res = CliRunner().invoke(
        main, ["predict", str(REAL / "lisberger"), "--out", str(out), "--model", str(small_bundle)]
    )
    assert res.exit_code == 1 and "exists" in res.output


def test_predict_refuses_the_wrong_family(small_bundle, demo_bundle, tmp_path):
    from nwb_celltype.classify import predict_features
    from nwb_celltype.errors import ModelMismatchError

    with pytest.raises(ModelMismatchError, match="feature tables"):
        predict_features(REAL / "hull", model=demo_bundle)


def test_predict_with_a_c4_model_writes_its_table(demo_bundle, tmp_path):
    """C4 feature sets carry no ``meta``: the TSV header and the summary still work."""
    from nwb_celltype.classify import predict_features, summarise, write_predictions_tsv
    from nwb_celltype.features import get_family
    from nwb_celltype.io import read_units
    from nwb_celltype.simulate import simulate_recording

    src = tmp_path / "s.nwb"
    simulate_recording(src, n_units=6, duration_s=60, seed=5)
    fam = get_family("c4-3d")
    fs = fam.concatenate([fam.extract_features(b, demo_bundle.feature_config) for b in read_units(src)])
    result = predict_features(fs, model=demo_bundle)
    path = write_predictions_tsv(result, tmp_path / "p.tsv")
    header = path.read_text().splitlines()[0]
    assert header.startswith("# model: ") and "family=c4-3d" in header and "waveforms=ignored" not in header
    summary = summarise(result)
    assert summary["n_units"] == 6 and summary["ignore_waveforms"] is False


def test_annotate_dispatches_on_the_bundles_family(small_bundle, tmp_path):
    """A simulated recording annotated with the real-data bundle: features of its family, every unit
    a row, provenance names the family; units whose waveform is removed are classified from their
    discharge alone and say so."""
    import h5py

    from nwb_celltype.annotate import annotate
    from nwb_celltype.cli._common import format_summary
    from nwb_celltype.nwb import read_annotations
    from nwb_celltype.simulate import simulate_recording

    src = tmp_path / "s.nwb"
    simulate_recording(src, n_units=12, duration_s=120, seed=3)
    res = annotate(src, model=small_bundle, out=tmp_path / "a.nwb")
    assert res.n_units == 12
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(tmp_path / "a.nwb"), "r") as io:
        rec = next(iter(read_annotations(io.read()).values()))
    params, cfg = rec.classifier["parameters"], rec.classifier["feature_config"]
    params = json.loads(params) if isinstance(params, str) else params
    cfg = json.loads(cfg) if isinstance(cfg, str) else cfg
    assert params["feature_family"] == "acg-isi-wave" and cfg["family"] == "acg-isi-wave"

    # the same file without waveform_mean: still classified, from discharge alone
    nowave = tmp_path / "nowave.nwb"
    nowave.write_bytes(src.read_bytes())
    with h5py.File(nowave, "a") as f:
        for k in [k for k in f["units"] if k.startswith("waveform")]:
            del f["units"][k]
        cols = [c for c in f["units"].attrs["colnames"] if not str(c).startswith("waveform")]
        f["units"].attrs["colnames"] = np.array(cols, dtype=object)
    res2 = annotate(nowave, model=small_bundle, out=tmp_path / "b.nwb")
    with NWBHDF5IO(str(tmp_path / "b.nwb"), "r") as io:
        rec2 = next(iter(read_annotations(io.read()).values()))
    ok = rec2.status != "not_classifiable"
    # removing the waveform makes no unit unclassifiable: the same units as with waveforms
    assert res2.n_units == 12 and ok.sum() >= 6
    assert np.array_equal(ok, rec.status != "not_classifiable")
    assert all(
        "discharge alone" in str(r)
        for r, s in zip(rec2.reasons, rec2.status, strict=True)
        if s != "not_classifiable" and "out of distribution" not in str(r)
    )

    scored2 = [str(r) for r, s in zip(rec2.reasons, rec2.status, strict=True) if s != "not_classifiable"]
    assert all("no usable waveform" in r and "ignored on request" not in r for r in scored2)
    # ignore_waveforms on the file *with* waveforms: exactly what the file without them gives
    res3 = annotate(src, model=small_bundle, out=tmp_path / "c.nwb", ignore_waveforms=True)
    with NWBHDF5IO(str(tmp_path / "c.nwb"), "r") as io:
        rec3 = next(iter(read_annotations(io.read()).values()))
    assert res3.n_units == 12 and res3.ignore_waveforms and not res.ignore_waveforms
    assert "waveforms ignored" in format_summary(res3) and "waveforms ignored" not in format_summary(res)
    np.testing.assert_allclose(rec3.probabilities, rec2.probabilities, rtol=0, atol=1e-6)
    assert list(rec3.labels) == list(rec2.labels) and list(rec3.status) == list(rec2.status)
    assert not np.allclose(np.nan_to_num(rec3.probabilities), np.nan_to_num(rec.probabilities), atol=1e-3)
    assert all(
        "waveforms ignored on request" in str(r)
        for r, s in zip(rec3.reasons, rec3.status, strict=True)
        if s != "not_classifiable" and "out of distribution" not in str(r)
    )
    assert all(  # out-of-distribution units too say how they were scored
        "waveforms ignored on request" in str(r)
        for r, s in zip(rec3.reasons, rec3.status, strict=True)
        if s != "not_classifiable"
    )
    params3 = rec3.classifier["parameters"]
    params3 = json.loads(params3) if isinstance(params3, str) else params3
    assert params3["ignore_waveforms"] is True and params["ignore_waveforms"] is False
    from nwb_celltype.inspect_file import format_annotations

    with NWBHDF5IO(str(tmp_path / "c.nwb"), "r") as io:
        assert "waveforms ignored" in format_annotations(read_annotations(io.read()))
    with NWBHDF5IO(str(tmp_path / "a.nwb"), "r") as io:
        assert "waveforms ignored" not in format_annotations(read_annotations(io.read()))


def test_feature_sets_with_waveforms_set_aside_stay_so_when_concatenated():
    from nwb_celltype.features.discharge import DischargeFeatureSet
    from nwb_celltype.library.tables import read_feature_tables

    fs = read_feature_tables(REAL / "hull")
    a, b = fs.subset(np.arange(5)), fs.subset(np.arange(5, 9))
    both = DischargeFeatureSet.concatenate([a.without_waveforms(), b.without_waveforms()])
    assert both.meta["waveforms_ignored"] and not both.has_waveform.any() and len(both) == 9
    assert not both.waveform.any()
    mixed = DischargeFeatureSet.concatenate([a.without_waveforms(), b])
    assert "waveforms_ignored" not in mixed.meta and mixed.has_waveform[5:].any()
    assert fs.has_waveform[:9].any()  # the input keeps its waveforms


def test_ignore_waveforms_is_refused_for_models_that_need_them(small_bundle, demo_bundle, tmp_path):
    """C4-family models read the waveform as a required input: asking them to ignore it is a clear
    error before anything is read or written; `predict --ignore-waveforms` with the real-data model
    scores every unit from its discharge and says so."""
    from nwb_celltype.annotate import annotate
    from nwb_celltype.errors import FeatureError
    from nwb_celltype.simulate import simulate_recording

    src = tmp_path / "s.nwb"
    simulate_recording(src, n_units=6, duration_s=60, seed=5)
    before = src.read_bytes()
    with pytest.raises(FeatureError, match="need each unit's waveform"):
        annotate(src, model=demo_bundle, out=tmp_path / "x.nwb", ignore_waveforms=True)
    assert not (tmp_path / "x.nwb").exists() and src.read_bytes() == before

    out = tmp_path / "p.tsv"
    args = ["predict", str(REAL / "hull"), "--out", str(out), "--model", str(small_bundle)]
    res = CliRunner().invoke(main, [*args, "--ignore-waveforms", "--json"])
    assert res.exit_code == 0, res.output
    with open(out) as f:
        f.readline()
        rows = list(csv.DictReader(f, delimiter="\t"))
    scored = [r for r in rows if r["status"] != "not_classifiable"]
    assert scored and all(r["used_waveform"] == "False" for r in scored)
    # a unit the threshold alone leaves unlabelled says so, beside the waveform note
    low = [r for r in scored if r["status"] == "unclassified" and float(r["confidence"]) < 2.0]
    # (out of distribution and members disagreeing take precedence: their reasons say that)
    own = [r for r in low if not r["reason"].startswith(("out of distribution", "ensemble members disagree"))]
    assert own and all(r["reason"].startswith("confidence ratio below the threshold (") for r in own), own
    assert all(
        "waveforms ignored on request" in r["reason"]
        for r in scored
        if "out of distribution" not in r["reason"]
    )
    # without the option the Hull units' waveforms are used
    res = CliRunner().invoke(main, [*args, "--overwrite"])
    with open(out) as f:
        f.readline()
        assert any(r["used_waveform"] == "True" for r in csv.DictReader(f, delimiter="\t"))


def test_far_away_units_are_abstained_on(small_bundle):
    """Units whose features resemble no training unit are unclassified with an OOD reason."""
    from nwb_celltype.features.discharge import DischargeFeatureSet
    from nwb_celltype.model import load_bundle, predict_cell_types

    rng = np.random.default_rng(0)
    n = 20
    t = np.arange(100)
    acg = np.tile(1e4 * np.exp(-((t - 50) ** 2) / 4.0), (n, 1))  # a sharp 50 ms oscillation
    isi = np.tile(1e4 * np.exp(-((t - 49) ** 2) / 2.0), (n, 1))
    wave = np.zeros((n, 75), dtype=np.float32)
    wave[:, 30:] = np.sin(np.linspace(0, 40, 45)) * rng.uniform(0.5, 1, (n, 1))  # ringing, not a spike
    wave /= np.abs(wave).max(1, keepdims=True)
    fs = DischargeFeatureSet(
        unit_ids=np.arange(n),
        acg_counts=acg,
        isi_counts=isi,
        waveform=wave,
        has_discharge=np.ones(n, bool),
        has_waveform=np.ones(n, bool),
        usable=np.ones(n, bool),
        reasons=np.full(n, "", dtype=object),
    )
    p = predict_cell_types(load_bundle(small_bundle), fs)
    assert p.out_of_distribution.all()
    assert (p.status == "unclassified").all()
    assert all("out of distribution" in r for r in p.reasons)


def test_units_without_a_majority_of_members_are_abstained_on_with_a_reason(small_bundle):
    """A bundle that asks more member agreement than any unit has abstains on every unit it would
    classify, and each row says the members disagree; with no such rule, no row says so."""
    from nwb_celltype.library.tables import read_feature_tables
    from nwb_celltype.model import load_bundle, predict_cell_types
    from nwb_celltype.model.discharge_bundle import DISAGREE_REASON

    fs = read_feature_tables(REAL / "hull", config=DischargeConfig())
    b = load_bundle(small_bundle)
    b.card["model_meta"]["config"]["min_agreement"] = 0.0
    relaxed = predict_cell_types(b, fs)
    assert (relaxed.status == "classified").any()
    assert not any(DISAGREE_REASON in r for r in relaxed.reasons)
    b.card["model_meta"]["config"]["min_agreement"] = 1.01
    strict = predict_cell_types(b, fs)
    assert not (strict.status == "classified").any()
    flagged = (relaxed.status == "classified") & ~strict.out_of_distribution
    assert flagged.any()
    assert all(DISAGREE_REASON in r for r in strict.reasons[flagged])


def test_default_model_is_the_real_one_and_its_card_says_so():
    """What `annotate` uses with no model: trained on real tables, its card citing the data, the
    protocol, validated numbers and limits; the family it declares is what `features` computes."""
    from nwb_celltype.features.families import DEFAULT_MODEL_FAMILY
    from nwb_celltype.model.shipped import load_default_bundle, resolve_model

    b = load_default_bundle()
    assert b.feature_family == DEFAULT_MODEL_FAMILY == "acg-isi-wave"
    card = b.card
    assert "Beau" in card["citation"] and "HIPPIE" in card["citation"]
    assert {r["species"] for r in card["training_data"]} == {"mouse", "macaque"}
    assert card["training"]["class_counts"] == {
        "PkC_ss": 185,
        "PkC_cs": 135,
        "MLI": 37,
        "GoC": 143,
        "MFB": 78,
    }
    assert "hull within-lab CV" in card["validation"]["evaluations"]
    assert any("Cerebellar cortex only" in lim for lim in card["limits"])
    assert not card.get("trained_on_simulated_data")
    bundle, is_demo = resolve_model(None)
    assert bundle.sha256 == b.sha256 and not is_demo
    size = sum(p.stat().st_size for p in b.path.iterdir())
    assert size < 2_000_000  # small enough to ship inside the package


def test_units_below_their_labels_floor_are_abstained_on_with_a_reason(small_bundle):
    """With a floor no unit reaches, every unit that would be classified is unclassified and says why;
    with no floor, no row says so."""
    from nwb_celltype.library.tables import read_feature_tables
    from nwb_celltype.model import load_bundle, predict_cell_types
    from nwb_celltype.model.discharge_bundle import FLOOR_REASON

    fs = read_feature_tables(REAL / "hull", config=DischargeConfig())
    b = load_bundle(small_bundle)
    meta = b.card["model_meta"]
    meta["config"]["min_agreement"] = 0.0

    def set_floors(value: float) -> None:  # every view's, in every depth band
        for floors in [meta["ratio_floors"]] + [band["ratio_floors"] for band in meta["depth_bands"]]:
            floors.update({k: [value] * 5 for k in floors})

    set_floors(1.0)
    relaxed = predict_cell_types(b, fs)
    assert (relaxed.status == "classified").any()
    assert not any(FLOOR_REASON in r for r in relaxed.reasons)
    set_floors(1e6)
    strict = predict_cell_types(b, fs)
    assert not (strict.status == "classified").any()
    was = relaxed.status == "classified"
    assert all(r.startswith(FLOOR_REASON) and "< 1e+06" in r for r in strict.reasons[was])
    # Hull complex-spike units hold a few hundred ACG pairs: their reason names the shallow band
    shallow = [r for r in strict.reasons[was] if "pairs at lags 1-100 ms" in r]
    assert shallow and all("fewer than 1000 pairs" in r for r in shallow)
