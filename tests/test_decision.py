"""C4's decision rule (model/decision.py), checked on hand-made probabilities, and the three places
that use it (predict, predict_c4, classification_metrics) agreeing with it."""

from __future__ import annotations

import numpy as np
import pytest

from nwb_celltype.errors import InvalidValueError
from nwb_celltype.model.decision import confidence_ratio, decide
from nwb_celltype.model.metrics import classification_metrics

CLASSES = ("a", "b", "c")


def test_rule_on_hand_made_probabilities():
    p = np.array(
        [
            [0.6, 0.3, 0.1],  # ratio 2.0: exactly the threshold -> classified
            [0.5, 0.3, 0.2],  # 5/3 < 2 -> unclassified
            [0.0, 1.0, 0.0],  # top2 = 0 -> inf -> classified
            [0.1, 0.2, 0.7],  # 3.5
            [0.4, 0.4, 0.2],  # tie: ratio 1, argmax takes the first
        ]
    )
    members = np.array(
        [
            [[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0, 1, 0], [0, 0, 1], [0.5, 0.3, 0.2]],
            [[0.5, 0.4, 0.1], [0.8, 0.1, 0.1], [0, 1, 0], [0.2, 0.1, 0.7], [0.3, 0.5, 0.2]],
        ]
    )
    d = decide(p, 2.0, members)
    np.testing.assert_array_equal(d.predicted, [0, 0, 1, 2, 0])
    np.testing.assert_allclose(d.confidence, [2.0, 5 / 3, np.inf, 3.5, 1.0])
    np.testing.assert_array_equal(d.classified, [True, False, True, True, False])
    assert list(d.labels(CLASSES)) == ["a", "unclassified", "b", "c", "unclassified"]
    np.testing.assert_array_equal(d.votes, [[2, 0, 0], [1, 1, 0], [0, 2, 0], [0, 0, 2], [1, 1, 0]])
    assert decide(p, 2.0).votes is None
    np.testing.assert_array_equal(decide(p, 1.0).classified, [True] * 5)


@pytest.mark.parametrize("bad", [0.5, float("nan"), float("inf")])
def test_threshold_must_be_a_finite_ratio_of_at_least_one(bad):
    with pytest.raises(InvalidValueError, match="finite confidence ratio >= 1"):
        decide(np.array([[0.5, 0.5]]), bad)


def test_one_class_is_an_error():
    with pytest.raises(InvalidValueError, match="at least 2 classes"):
        decide(np.ones((3, 1)), 2.0)


def test_metrics_use_the_rule():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=200)
    y = rng.integers(0, 3, 200)
    m = classification_metrics(y, p, CLASSES, threshold=1.5)
    keep = confidence_ratio(p) >= 1.5
    assert m["fraction_classified"] == pytest.approx(keep.mean())
    assert m["accuracy"] == pytest.approx(np.mean(p[keep].argmax(1) == y[keep]))
