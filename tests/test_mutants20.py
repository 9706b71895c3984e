"""Tests that kill the survivors of mutation audit 20 (notes/audit20_mutation.md): the validation
metrics (model.metrics.classification_metrics and the scorer of benchmarks/bench_real_validation.py
that makes the published numbers), agreement, the real-data model's input map, floors and OOD
scores, the location rule, and four survivors of audit 19. Every expected value is computed here by
hand, or with sklearn / numpy directly, never by the code under test."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, log_loss
from test_agreement import _record  # one builder of annotation records

from nwb_celltype.model.metrics import classification_metrics

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------------------------
# one worked example for both scorers: 6 units of 3 classes, threshold 2
#   unit  true  p                   top  ratio   at threshold 2
#   0     0     (.85, .10, .05)     0    8.5     right
#   1     0     (.32, .64, .04)     1    2.0     wrong (the ratio is exactly 2: 0.64 = 2 x 0.32)
#   2     1     (.20, .75, .05)     1    3.75    right, but the model abstained (e.g. OOD)
#   3     1     (.35, .45, .20)     1    1.29    below the threshold (right class)
#   4     2     (.10, .05, .85)     2    8.5     right
#   5     2     (.05, .55, .40)     1    1.375   below the threshold (wrong class)
Y = np.array([0, 0, 1, 1, 2, 2])
P = np.array(
    [
        [0.85, 0.10, 0.05],
        [0.32, 0.64, 0.04],
        [0.20, 0.75, 0.05],
        [0.35, 0.45, 0.20],
        [0.10, 0.05, 0.85],
        [0.05, 0.55, 0.40],
    ]
)
PRED = np.array([0, 1, 1, 1, 2, 1])
ABSTAIN = np.array([False, False, True, False, False, False])
KEEP = np.array([True, True, False, False, True, False])  # ratio >= 2 and not abstained


def _ece_by_hand() -> float:
    # bins of width 0.1: 0.85 x 2 (both right), 0.64 (wrong), 0.75 (right), 0.45 (right), 0.55 (wrong)
    return (2 * abs(1 - 0.85) + abs(0 - 0.64) + abs(1 - 0.75) + abs(1 - 0.45) + abs(0 - 0.55)) / 6


def test_classification_metrics_on_the_worked_example():
    m = classification_metrics(Y, P, ("a", "b", "c"), threshold=2.0, abstain=ABSTAIN)
    assert m["fraction_classified"] == pytest.approx(3 / 6)
    # balanced accuracy of every unit's top class, no threshold, no abstention (sklearn)
    assert m["balanced_accuracy_all"] == pytest.approx(balanced_accuracy_score(Y, PRED))
    # abstentions as misses: a 1/2 (unit 0), b 0/2 (2 abstained, 3 below), c 1/2 (unit 4)
    assert m["recall_abstain_as_miss"] == pytest.approx({"a": 0.5, "b": 0.0, "c": 0.5})
    assert m["confidently_wrong"] == pytest.approx(1 / 6)  # unit 1, of all units
    # macro F1 of the classified units only (sklearn, zero_division 0)
    f1 = f1_score(Y[KEEP], PRED[KEEP], labels=[0, 1, 2], average="macro", zero_division=0)
    assert m["macro_f1"] == pytest.approx(f1)
    assert m["nll"] == pytest.approx(log_loss(Y, P, labels=[0, 1, 2]))
    brier = np.mean([sum((P[i, c] - (Y[i] == c)) ** 2 for c in range(3)) for i in range(6)])
    assert m["brier"] == pytest.approx(brier)
    assert m["calibration"]["ece"] == pytest.approx(_ece_by_hand())


def test_accuracy_coverage_curve_keeps_the_models_abstentions():
    """Each point of the curve is the decision rule at its threshold *and* the model's own
    abstentions: unit 2 (abstained) is never classified; coverage is of all units."""
    m = classification_metrics(Y, P, ("a", "b", "c"), threshold=2.0, abstain=ABSTAIN)
    curve = {c["threshold"]: c for c in m["threshold_curve"]}
    # t = 1: every unit but the abstained one
    at1 = ~ABSTAIN
    assert curve[1.0]["fraction_classified"] == pytest.approx(5 / 6)
    assert curve[1.0]["accuracy"] == pytest.approx(np.mean(PRED[at1] == Y[at1]))
    assert curve[1.0]["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(Y[at1], PRED[at1]))
    # t = 3: units 0 and 4 (unit 2's ratio 3.75 passes, but it was abstained on)
    assert curve[3.0]["fraction_classified"] == pytest.approx(2 / 6)
    assert curve[3.0]["accuracy"] == 1.0
    at3 = np.array([0, 4])
    assert curve[3.0]["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(Y[at3], PRED[at3]))


def _bench():
    path = ROOT / "benchmarks" / "bench_real_validation.py"
    spec = importlib.util.spec_from_file_location("_bench_real_validation_t20", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_published_scorer_on_the_worked_example():
    """benchmarks/bench_real_validation.score (the numbers of docs/validation.md and the README):
    abstentions of any reason are misses, a class whose units were all abstained on scores 0,
    confidently wrong is of all units, ECE on every unit."""
    bench = _bench()
    p = np.zeros((6, len(bench.CLASSES)))
    p[:, :3] = P  # classes 0..2 of the bench's five; 3 and 4 absent from the test units
    reasons = {"out_of_distribution": ABSTAIN, "members_disagree": np.zeros(6, bool)}
    s = bench.score(Y, p, reasons)
    names = bench.CLASSES
    assert s["coverage_at_2"] == pytest.approx(3 / 6)
    assert s["abstained_by_model"] == pytest.approx(1 / 6)
    assert s["confidently_wrong"] == pytest.approx(1 / 6)
    assert s["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(Y, PRED))
    assert s["recall_at_2_abstain_as_miss"] == pytest.approx({names[0]: 0.5, names[1]: 0.0, names[2]: 0.5})
    assert s["balanced_recall_at_2_abstain_as_miss"] == pytest.approx(1 / 3)
    # of the classified units only: class 0 (units 0, 1) 1/2, class 2 (unit 4) 1/1; class 1 has none
    assert s["balanced_accuracy_at_2_classified"] == pytest.approx(0.75)
    assert s["ece"] == pytest.approx(_ece_by_hand())
    # labels given at 2: class 0 once (right), class 1 once (unit 1, wrong), class 2 once (right)
    assert s["labels_at_2"] == {
        names[0]: {"right": 1, "given": 1},
        names[1]: {"right": 0, "given": 1},
        names[2]: {"right": 1, "given": 1},
    }
    curve = {c["threshold"]: c for c in s["accuracy_coverage"]}
    assert curve[1.0]["coverage"] == pytest.approx(5 / 6)
    assert curve[1.0]["confidently_wrong"] == pytest.approx(2 / 6)  # units 1 and 5
    # unit 3 is right at 1.0; unit 2 stays a miss (abstained)
    assert curve[1.0]["recall_abstain_as_miss"] == pytest.approx(
        {names[0]: 0.5, names[1]: 0.5, names[2]: 0.5}
    )
    assert curve[3.0]["coverage"] == pytest.approx(2 / 6) and curve[3.0]["accuracy"] == 1.0


def test_published_scorer_joins_every_abstention_reason():
    bench = _bench()
    p = np.zeros((6, len(bench.CLASSES)))
    p[:, :3] = P
    one = np.zeros(6, bool)
    one[0] = True
    s = bench.score(Y, p, {"out_of_distribution": ABSTAIN, "members_disagree": one})
    assert s["coverage_at_2"] == pytest.approx(2 / 6)  # units 1 and 4
    assert s["abstention_reasons"] == {"out_of_distribution": pytest.approx(1 / 6), "members_disagree": 1 / 6}
    assert math.isclose(s["recall_at_2_abstain_as_miss"][bench.CLASSES[0]], 0.0)


# --------------------------------------------------------------------------------------------
# model.real_inputs: the quantile map, the availability masks, the decision bias


def test_quantile_map_by_the_documented_rule():
    """Reference quantiles 0, 1, 1, 3 (ranks 0, 1/3, 2/3, 1): inside, piecewise-linear rank; the tied
    quantile 1 takes the middle of its ranks (1/2); outside, linear with the range (3) as unit.
    A constant column (range 0) uses unit 1."""
    from nwb_celltype.model.real_inputs import quantile_map

    q = np.array([[0.0, 2.0], [1.0, 2.0], [1.0, 2.0], [3.0, 2.0]])
    x = np.array([[0.5, 2.0], [1.0, 5.0], [2.0, 0.0], [-3.0, 2.0], [6.0, 2.0]])
    expected = np.array(
        [
            [1 / 6, 0.5],  # 0.5: half-way through rank 0..1/3; 2 = every quantile: middle rank
            [0.5, 1 + 3 / 1],  # tie: middle of 1/3 and 2/3; 5: 3 above a constant column
            [2 / 3 + 1 / 6, -2 / 1],  # 2: half-way through 2/3..1; 0: 2 below
            [-3 / 3, 0.5],  # 3 below the lowest quantile, range 3
            [1 + 3 / 3, 0.5],  # 3 above the highest
        ]
    )
    np.testing.assert_allclose(quantile_map(x, q), expected, atol=1e-12)


def _unit_raw(has_discharge: bool, has_waveform: bool) -> dict:
    acg = np.zeros((1, 100))
    acg[0, 10:] = 3.0
    isi = np.zeros((1, 100))
    isi[0, 20:40] = 5.0
    t = np.arange(75)
    w = (-np.exp(-0.5 * ((t - 30) / 2.0) ** 2) + 0.3 * np.exp(-0.5 * ((t - 40) / 4.0) ** 2))[None]
    return {
        "acg_counts": acg,
        "isi_counts": isi,
        "waveform": w,
        "has_discharge": np.array([has_discharge]),
        "has_waveform": np.array([has_waveform]),
    }


def test_model_inputs_honour_the_availability_flags():
    """A unit whose tables say it has no waveform (or no discharge) is scored without it, whatever
    numbers sit in the arrays: no waveform input, no ACG pairs, discharge inputs of empty counts."""
    from nwb_celltype.features.discharge_inputs import discharge_inputs
    from nwb_celltype.model.real_inputs import _inputs

    both = _inputs(_unit_raw(True, True))
    assert both["has_waveform"].tolist() == [True] and both["acg_pairs"][0] == 3.0 * 90
    no_w = _inputs(_unit_raw(True, False))
    assert no_w["has_waveform"].tolist() == [False]
    no_d = _inputs(_unit_raw(False, True))
    assert no_d["acg_pairs"][0] == 0.0
    np.testing.assert_array_equal(no_d["discharge"], discharge_inputs(np.zeros((1, 100)), np.zeros((1, 100))))


def test_decision_bias_multiplies_by_exp_bias():
    from nwb_celltype.model.real_inputs import apply_decision_bias

    # (0.5, 0.5) x (3, 1), renormalised: (0.75, 0.25)
    np.testing.assert_allclose(
        apply_decision_bias(np.array([[0.5, 0.5]]), [math.log(3.0), 0.0]), [[0.75, 0.25]]
    )


# --------------------------------------------------------------------------------------------
# agreement (show / report / annotate / demo print it)


def test_agreement_skips_truth_rows_without_a_type_and_counts_expert_labels():
    """Rows of a ground-truth table saying "unlabeled" (or "", "unclassified") are no truth; an
    expert table is truth too (docs: kinds ground_truth and expert)."""
    from nwb_celltype.agreement import agreements

    pred = _record("pred", [1, 2, 3], ["A", "B", "A"], "prediction")
    truth = _record("gt", [1, 2, 3], ["A", "unlabeled", ""], "ground_truth")
    [a] = agreements({"pred": pred, "gt": truth})
    d = a.to_dict()
    assert d["n_units"] == 1 and (d["n_right"], d["n_wrong"]) == (1, 0)
    expert = _record("exp", [1, 2], ["A", "A"], "expert")
    [e] = agreements({"pred": pred, "exp": expert})
    assert e.reference_kind == "expert" and (e.to_dict()["n_right"], e.to_dict()["n_wrong"]) == (1, 1)


def test_agreement_never_compares_tables_of_two_units_tables():
    """Unit ids of two sortings name different units: no agreement between their tables."""
    from nwb_celltype.agreement import agreements

    pred = _record("pred", [1, 2], ["A", "B"], "prediction", units_table="/processing/ecephys/ks")
    truth = _record("gt", [1, 2], ["A", "B"], "ground_truth")
    assert agreements({"pred": pred, "gt": truth}) == []


def test_agreement_labels_given_count_right_per_label():
    """Per label given: of the units given A, how many are A (unit 3, truth B, given A, is wrong)."""
    from nwb_celltype.agreement import agreements

    pred = _record("pred", [1, 2, 3, 4], ["A", "unclassified", "A", "B"], "prediction")
    truth = _record("gt", [1, 2, 3, 4], ["A", "A", "B", "B"], "ground_truth")
    [a] = agreements({"pred": pred, "gt": truth})
    assert a.to_dict()["per_label"] == {"A": {"labelled": 2, "right": 1}, "B": {"labelled": 1, "right": 1}}


# --------------------------------------------------------------------------------------------
# four survivors of audit 19: RD1, DV1, SP3, SP5


def test_tables_of_one_name_in_two_modules_are_both_read():
    """RD1: two annotation tables named alike in two processing modules are keyed
    "<module>/<name>", neither hides the other (the file's table seen from a second module)."""
    from types import SimpleNamespace

    from nwb_celltype.nwb import read_annotations
    from nwb_celltype.testing import mock_CellTypeAnnotations, mock_NWBFile_with_units

    nwbfile = mock_NWBFile_with_units(4)
    mock_CellTypeAnnotations(nwbfile=nwbfile, name="preds")
    tables = nwbfile.processing["cell_types"].data_interfaces
    both = SimpleNamespace(
        processing={
            m: SimpleNamespace(name=m, data_interfaces={"preds": tables["preds"]})
            for m in ("cell_types", "other")
        }
    )
    recs = read_annotations(both)
    assert set(recs) == {"cell_types/preds", "other/preds"}
    assert [recs[k].module for k in ("cell_types/preds", "other/preds")] == ["cell_types", "other"]
    assert set(read_annotations(nwbfile)) == {"preds"}  # one module: the plain name


def test_derived_file_refuses_an_electrode_index_equal_to_the_table_size(tmp_path):
    """DV1: a Units electrodes value n_electrodes is not a row of the n-row electrodes table."""
    import h5py

    from nwb_celltype.nwb._derived import _units_electrodes

    class _File:
        electrodes = [0, 1, 2]  # 3 rows

    with h5py.File(tmp_path / "src.h5", "w") as f:
        f["units/electrodes"] = np.array([0, 1, 2, 3])
        f["units/electrodes_index"] = np.array([2, 4])
        assert _units_electrodes(f, np.array([0]), _File()) is None
        f["units/electrodes"][3] = 2  # every value a row: unit 1's electrodes are 2, 2
        data, index = _units_electrodes(f, np.array([1]), _File())
        assert data.tolist() == [2, 2] and index.tolist() == [2]


def test_a_class_at_exactly_the_minimum_is_not_warned_as_withheld():
    """SP3: the rule withholds labels of classes with *fewer* than min_species_class_units units;
    the warning names the same classes (5 units of A with a minimum of 5: A is given)."""
    from nwb_celltype.model.real_species import _withheld_classes, unsupported_for_species

    meta = {
        "classes": ["A", "B"],
        "config": {"min_species_class_units": 5},
        "species_support": {"Mus musculus": {"A": 5, "B": 4}},
    }
    assert _withheld_classes(meta) == ["Mus musculus: B"]
    withheld, _ = unsupported_for_species(meta, "mouse", np.array([0, 1]))
    assert withheld.tolist() == [False, True]


def test_species_without_a_labelled_unit_is_not_a_training_species():
    """SP5: units of a species with no labelled unit of the classes (only unlabelled or GrC units)
    teach the model nothing of it: the species is not in the support table, so its units get
    the cross-species note rather than every label withheld."""
    from nwb_celltype.model.real_species import species_support

    species = np.array(["mouse", "mouse", "macaque", "macaque"], dtype=object)
    labels = np.array(["A", "B", "unlabeled", "GrC"])
    support = species_support(species, labels, np.ones(4, bool), ("A", "B"))
    assert support == {"Mus musculus": {"A": 1, "B": 1}}


def test_agreement_per_label_counts_a_part_of_the_true_class_as_right():
    """MLI_A given to an MLI is right, in the per-label counts too."""
    from nwb_celltype.agreement import agreements

    classes = ("GoC", "MLI_A", "MLI_B")
    pred = _record("pred", [1, 2], ["MLI_A", "MLI_A"], "prediction", classes)
    truth = _record("gt", [1, 2], ["MLI", "GoC"], "ground_truth", classes)
    [a] = agreements({"pred": pred, "gt": truth})
    assert a.to_dict()["per_label"] == {"MLI_A": {"labelled": 2, "right": 1}}


# --------------------------------------------------------------------------------------------
# model.decision, model.real_floors


def test_rows_without_a_ratio_are_never_classified():
    """Decision.classified is False where the ratio is NaN (NaN or all-zero probabilities)."""
    from nwb_celltype.model.decision import decide

    d = decide(np.array([[np.nan, np.nan], [0.0, 0.0], [0.9, 0.1]]), 2.0)
    assert d.classified.tolist() == [False, False, True]


@pytest.mark.parametrize("bad", [True, np.bool_(True)])
def test_a_bool_threshold_is_refused(bad):
    from nwb_celltype.errors import InvalidValueError
    from nwb_celltype.model.decision import check_threshold

    with pytest.raises(InvalidValueError, match="finite confidence ratio"):
        check_threshold(bad)


def _two_class_p(ratio_top: float, top: int) -> list[float]:
    row = [1.0, 1.0]
    row[top] = ratio_top
    return [v / sum(row) for v in row]


def test_shared_budget_floors_maximise_balanced_not_pooled_recall():
    """Budget: one wrong label (max_wrong 0.06 of 17 units). Class 0: 12 units (8 right at ratio
    10, 3 right at 2.2, 1 given label 1 at 2.2); class 1: 5 units (2 at 10, 2 at 2.2, 1 given label 0
    at 2.2). Lowering class 0's floor (to 1) costs one wrong label and gives recalls 11/12, 2/5
    (balanced 0.658); lowering class 1's gives 8/12, 4/5 (balanced 0.733): the balanced choice is
    floors (2.5, 1), the lowest grid value above 2 for the other class. (Pooled recall would
    choose the other way: 13 against 12 units.)"""
    from nwb_celltype.model.real_floors import ratio_floors

    rows = (
        [(0, 0, 10.0)] * 8
        + [(0, 0, 2.2)] * 3
        + [(0, 1, 2.2)]
        + [(1, 1, 10.0)] * 2
        + [(1, 1, 2.2)] * 2
        + [(1, 0, 2.2)]
    )
    y = np.array([r[0] for r in rows])
    p = np.array([_two_class_p(r[2], r[1]) for r in rows])
    assert ratio_floors(p, y, 2, 0.06) == [2.5, 1.0]


def test_per_label_mixed_view_must_clear_the_full_views_floor():
    """per-label rule: the full view gives a wrong label 0 at ratio 1.8, so its floor for 0 is 2;
    the mixed view has no error (floor 1) but must clear the full view's floor: 2."""
    from nwb_celltype.model.real_floors import view_floors

    y = np.array([0, 0, 1, 1])
    full = np.array([_two_class_p(10, 0), _two_class_p(10, 0), _two_class_p(10, 1), _two_class_p(1.8, 0)])
    mixed = np.array([_two_class_p(10, 0), _two_class_p(10, 0), _two_class_p(10, 1), _two_class_p(10, 1)])
    w = {k: np.ones(4) for k in ("full", "mixed")}
    floors = view_floors({"full": full, "mixed": mixed}, {"full": y, "mixed": y}, w, 2, 0.0, "per-label")
    assert floors == {"full": [2.0, 1.0], "mixed": [2.0, 1.0]}


# --------------------------------------------------------------------------------------------
# model.real_ood: thresholds from out-of-fold distances, spaces and parts combined by their maximum


def test_ood_thresholds_are_out_of_fold_by_hand():
    """One class, 1-D codes 0, 2, 4, 6 in folds 0, 1, 0, 1. Fold 0 ({0, 4}) is scored by a Gaussian
    of {2, 6}: mean 4, variance (4 + 4) / 1 = 8, squared distances 16/8 = 2 and 0; fold 1 likewise
    2 and 0. With q = 1 the threshold is the largest, 2 (in both spaces: the input space's
    standardisation is affine, and a 1-D distance does not see it). The input space is standardised
    by the pre-training pool's mean and SD (+ 1e-3), not the labelled units'. Combined: the largest
    normalised distance of each unit (1, 0, 0, 1), its q = 1 quantile 1."""
    from nwb_celltype.model.real_ood import fit_ood

    z = np.array([[0.0], [2.0], [4.0], [6.0]])
    codes = {"discharge": {"latent": z, "input": z}}
    pool = np.array([[100.0], [102.0]])
    tensors, meta = fit_ood(
        codes,
        {"discharge": pool},
        {"discharge": np.ones(4, bool)},
        np.zeros(4, int),
        np.array([0, 1, 0, 1]),
        2,
        1.0,
    )
    assert meta["discharge"]["mahalanobis_threshold"] == pytest.approx(2.0)
    assert meta["discharge"]["input_mahalanobis_threshold"] == pytest.approx(2.0)
    assert meta["combined_threshold"] == pytest.approx(1.0)
    np.testing.assert_allclose(tensors["ood.discharge.input_mean"], [101.0])
    np.testing.assert_allclose(tensors["ood.discharge.input_std"], [1.0 + 1e-3], rtol=1e-6)


def _ood_1d(latent_mean: float, input_mean: float) -> tuple[dict, dict]:
    """Hand-made tensors: both parts, both spaces 1-D, one class, precision 1, thresholds 1."""
    t, meta = {}, {"spaces": ["latent", "input"], "combined_threshold": 1.0}
    for part in ("discharge", "waveform"):
        t[f"ood.{part}.class_means"] = np.array([[latent_mean]])
        t[f"ood.{part}.precision"] = np.array([[1.0]])
        t[f"ood.{part}.input_mean"] = np.array([0.0])
        t[f"ood.{part}.input_std"] = np.array([1.0])
        t[f"ood.{part}.input_class_means"] = np.array([[input_mean]])
        t[f"ood.{part}.input_precision"] = np.array([[1.0]])
        meta[part] = {"mahalanobis_threshold": 1.0, "input_mahalanobis_threshold": 1.0}
    return t, {"ood": meta}


def test_ood_score_is_the_largest_over_spaces_and_parts():
    """Squared distances: unit 0 discharge latent 2^2 = 4, input 0.5^2 = 0.25 -> 4; waveform 0 -> 4
    combined. Unit 1 discharge 0.25 / 0.25, waveform latent 3^2 = 9 -> 9 combined. Unit 2 has no
    waveform: its combined score is its discharge score, 1."""
    from nwb_celltype.model.real_ood import ood_scores

    tensors, meta = _ood_1d(0.0, 0.0)
    codes = {
        "discharge": {"latent": np.array([[2.0], [0.5], [1.0]]), "input": np.array([[0.5], [0.5], [0.0]])},
        "waveform": {"latent": np.array([[0.0], [3.0], [0.0]]), "input": np.array([[0.0], [0.0], [0.0]])},
    }
    avail = {"discharge": np.ones(3, bool), "waveform": np.array([True, True, False])}
    out = ood_scores(tensors, meta, codes, avail)
    np.testing.assert_allclose(out["discharge"], [4.0, 0.25, 1.0])
    np.testing.assert_allclose(out["waveform"][:2], [0.0, 9.0])
    assert np.isnan(out["waveform"][2])
    np.testing.assert_allclose(out["combined"], [4.0, 9.0, 1.0])


def test_a_class_without_training_units_is_never_the_nearest():
    """Labelled units of classes 0 (codes near 10) and 1 (near 20) of 3: a unit at 0 is far from
    every class the model learnt, so it is out of distribution (class 2's missing mean is no mean
    at the origin)."""
    from nwb_celltype.model.real_ood import fit_ood, ood_scores

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    z = (10.0 + 10.0 * y + rng.standard_normal(40))[:, None]
    avail = {"discharge": np.ones(40, bool), "waveform": np.zeros(40, bool)}
    codes = {"discharge": {"latent": z}, "waveform": {"latent": np.zeros((40, 1))}}
    tensors, meta = fit_ood(codes, {}, avail, y, np.arange(40) % 4, 3, 0.95, spaces=("latent",))
    new = {"discharge": {"latent": np.array([[0.0], [10.0]])}, "waveform": {"latent": np.zeros((2, 1))}}
    out = ood_scores(
        tensors, {"ood": meta}, new, {"discharge": np.ones(2, bool), "waveform": np.zeros(2, bool)}
    )
    assert out["combined"][0] > 10 and out["combined"][1] < 1


def test_decision_bias_maximises_balanced_not_pooled_accuracy():
    """Class 0: 6 units at p(1) = 0.40 and 2 at 0.44; class 1: 2 units at 0.45. No bias: every unit
    is called 0 (balanced accuracy 0.5, pooled 0.8). A log-factor -0.4 on class 0 (the first on the
    grid from -2 up that raises the score: 0.6 e^-0.4 = 0.402 > 0.40, 0.56 e^-0.4 < 0.44,
    0.55 e^-0.4 < 0.45) calls the 0.44 units and class 1 "1": balanced (6/8 + 1) / 2 = 0.875, pooled
    still 0.8. No grid step separates 0.44 from 0.45 (log(0.56/0.44) - log(0.55/0.45) < 0.1)."""
    from nwb_celltype.model.real_inputs import fit_decision_bias

    p1 = np.array([0.40] * 6 + [0.44] * 2 + [0.45] * 2)
    p = np.column_stack([1 - p1, p1])
    y = np.array([0] * 8 + [1] * 2)
    np.testing.assert_allclose(fit_decision_bias(p, y, np.ones(10), 2), [-0.4, 0.0], atol=1e-12)


# --------------------------------------------------------------------------------------------
# io._layers / io._regions: the location strings files hold


def test_location_names_as_files_write_them():
    """Allen's "CUL4, 5" (a comma, as in NWB files) is the culmen, cerebellar cortex; layer names
    padded with spaces or a newline map as written without; an acronym inside free text is no
    acronym (docs: anything else is unknown)."""
    from nwb_celltype.io import location_scope, map_location_to_layer

    assert location_scope("CUL4, 5") == "cerebellar cortex"
    assert map_location_to_layer(" molecular layer\n") == "ML"
    assert map_location_to_layer("CENT3mo ") == "ML"
    assert map_location_to_layer("probe near CENT3mo") == "unknown"


# --------------------------------------------------------------------------------------------
# features: the C4 waveform alignment and scipy's peak rule


def test_waveform_is_aligned_on_the_first_large_peak_not_the_largest():
    """A positive peak of 0.8 at sample 30 before a trough of 1 at sample 45 (30 kHz): the first
    peak above 0.75 of the largest is the one aligned to -1 ms (sample 30); flipped negative and
    scaled to -1 there, so the trough lands, positive, at sample 45 (docs: "align the first large
    peak")."""
    from nwb_celltype.features.waveform import preprocess_waveform

    t = np.arange(90.0)
    w = 0.8 * np.exp(-0.5 * ((t - 30) / 2.0) ** 2) - 1.0 * np.exp(-0.5 * ((t - 45) / 3.0) ** 2)
    out = preprocess_waveform(w, 30000.0)
    assert out[30] == pytest.approx(-1.0) and int(np.argmax(out)) == 45 and out[45] > 1.2


def test_find_peaks_keeps_peaks_exactly_distance_apart_as_scipy():
    from scipy.signal import find_peaks as scipy_find_peaks

    from nwb_celltype.features.waveform import find_peaks

    x = np.zeros(30)
    x[[5, 9, 12, 20]] = [1.0, 2.0, 1.5, 0.5]
    for distance in (3, 4, 4.5):
        np.testing.assert_array_equal(
            find_peaks(x, distance=distance), scipy_find_peaks(x, distance=distance)[0]
        )


# --------------------------------------------------------------------------------------------
# model.evaluate.cross_validate: what each fold trains on


def test_each_fold_trains_on_the_other_folds_only():
    """Every unit is scored once, by the fold holding it out, and no fold's training part (what
    the C4 family's members and every baseline fit) holds one of its test units."""
    from nwb_celltype.model.evaluate import cross_validate

    y = np.repeat([0, 1, 2], 7)
    calls = []

    def score(f, test_idx, train_idx):
        calls.append((set(test_idx.tolist()), set(train_idx.tolist())))
        return np.full((len(test_idx), 3), 1 / 3), None, {}

    cross_validate(y, 3, score, folds=3, leave_one_out=False, seed=0, base_names=())
    assert len(calls) == 3
    for test, train in calls:
        assert test and not (test & train) and test | train == set(range(len(y)))
    assert sorted(u for test, _ in calls for u in test) == list(range(len(y)))


def test_small_classes_are_spread_over_the_folds():
    """One unit in each of three classes, three folds: the rotation puts them in three folds (not all
    in fold 0, which would leave two folds without a test unit)."""
    from nwb_celltype.model.training import stratified_folds

    fold = stratified_folds(np.array([0, 1, 2]), 3, np.random.default_rng(0))
    assert sorted(fold.tolist()) == [0, 1, 2]


def test_only_units_with_a_discharge_are_scored():
    """evaluate (acg-isi-wave): rows scored are those labelled with a class, usable, with a discharge."""
    from types import SimpleNamespace

    from nwb_celltype.model.evaluate_discharge import _scored_rows

    fs = SimpleNamespace(usable=[True, True, True, False], has_discharge=[True, False, True, True])
    ts = SimpleNamespace(features=fs, labels=np.array(["B", "A", "GrC", "A"], dtype=object))
    rows, y = _scored_rows(ts, ("A", "B"))
    assert rows.tolist() == [0] and y.tolist() == [1]


def test_baseline_columns_follow_the_classes_a_fold_trained_on():
    """A fold whose training part lacks class 1 of 3: the baselines give class 1 probability 0 and
    classes 0 and 2 their own columns."""
    from nwb_celltype.model.evaluate_discharge import discharge_baselines

    rng = np.random.default_rng(0)

    def raw(y):
        n = len(y)
        acg = rng.poisson(5.0 + 20.0 * y[:, None], (n, 100)).astype(float)
        isi = rng.poisson(5.0 + 20.0 * (2 - y[:, None]), (n, 100)).astype(float)
        t = np.arange(75)
        w = -np.exp(-0.5 * ((t - 30) / (2.0 + y[:, None])) ** 2) + 0.01 * rng.standard_normal((n, 75))
        return {"acg_counts": acg, "isi_counts": isi, "waveform": w}

    y_train = np.repeat([0, 2], 15)
    y_test = np.array([0, 2, 0, 2])
    out = discharge_baselines(raw(y_train), y_train, raw(y_test), 3)
    for name, p in out.items():
        assert (p[:, 1] == 0).all(), name
        np.testing.assert_allclose(p.sum(1), 1.0)
        assert (p.argmax(1) == y_test).all(), name  # the separable classes land in their columns
