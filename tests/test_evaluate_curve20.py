"""evaluate --family acg-isi-wave: the units the model abstained on by its own rules are told apart
from those left unclassified by the threshold alone, so that the accuracy-coverage curve below the
threshold and ``fraction_abstained_other`` count what they say (audit 20)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from nwb_celltype.model import discharge_bundle
from nwb_celltype.model.evaluate_discharge import _fit_and_score
from nwb_celltype.model.metrics import classification_metrics

# unit 0: ratio 3, no rule; unit 1: ratio 1.5 (below 2 only); unit 2: ratio 3, out of distribution;
# unit 3: no features (NaN probabilities)
P = np.array([[0.75, 0.25], [0.4, 0.6], [0.75, 0.25], [np.nan, np.nan]])
RULE = np.array([False, False, True, False])
CLASSES = ("A", "B")


def _fake_predict(bundle, fs, *, threshold=2.0, species=None):
    """predict_discharge's contract: classified where the ratio reaches the threshold and no rule
    withholds the label; not_classifiable without probabilities."""
    srt = np.sort(P, axis=1)
    with np.errstate(invalid="ignore"):
        conf = srt[:, -1] / srt[:, -2]
        passed = conf >= threshold
    ok = np.isfinite(conf)
    keep = ok & passed & ~RULE
    status = np.where(keep, "classified", np.where(ok, "unclassified", "not_classifiable"))
    names = np.array(CLASSES, dtype=object)[np.nan_to_num(P).argmax(1)]
    labels = np.where(keep, names, np.where(ok, "unclassified", "not_classifiable")).astype(object)
    return SimpleNamespace(probabilities=P, status=status, labels=labels, confidence=conf)


def test_rule_abstentions_and_labels_at_the_threshold(monkeypatch, caplog):
    monkeypatch.setattr(discharge_bundle, "train_discharge_model", lambda part, **kw: object())
    monkeypatch.setattr(discharge_bundle, "_predict_units", _fake_predict)
    with caplog.at_level("INFO", logger="nwb_celltype.model.evaluate_discharge"):
        p, held, given = _fit_and_score(None, None, CLASSES, None, 2.0)
    # the fold says what it labelled at the evaluation's threshold, not at the ratio 1 it predicts at
    assert (
        "labelled 1 / 4 held-out units at threshold 2 (2 withheld by the model's rules, 1 below the threshold)"
        in (caplog.text)
    )
    np.testing.assert_array_equal(p, P)
    # unit 1 is not held by a rule: only the threshold leaves it unclassified; unit 3 has no features
    assert held.tolist() == [False, False, True, True]
    assert given.tolist() == ["A", "unclassified", "unclassified", "not_classifiable"]
    y = np.array([0, 1, 0, 1])
    m = classification_metrics(y, np.nan_to_num(P), CLASSES, threshold=2.0, abstain=held)
    assert m["fraction_classified"] == pytest.approx(1 / 4)  # unit 0, as predict at 2 gives
    assert m["fraction_abstained_other"] == pytest.approx(2 / 4)
    curve = {c["threshold"]: c for c in m["threshold_curve"]}
    # at 1.25 unit 1 (ratio 0.6 / 0.4) is classified, and right; unit 2 stays abstained at any threshold
    assert curve[1.25]["fraction_classified"] == pytest.approx(2 / 4) and curve[1.25]["accuracy"] == 1.0
    assert curve[3.0]["fraction_classified"] == pytest.approx(1 / 4)  # unit 0 (ratio exactly 3)
