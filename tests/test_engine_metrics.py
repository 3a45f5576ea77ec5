"""Confusion matrices, per-class scores and grouped accuracies against hand-computed values and sklearn."""

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import precision_recall_fscore_support

from tstcnn.runtime.metrics import (
    classification_report,
    confusion_matrix,
    group_confusion,
    normalize_rows,
    per_class_scores,
)
from tstcnn.taxonomy import Taxonomy, ttstroke21


def test_confusion_matrix_rows_are_true_classes():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 4)
    assert cm.dtype == np.int64
    assert cm.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]


def test_confusion_matrix_matches_sklearn_and_rejects_bad_indices():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 21, 500), rng.integers(0, 21, 500)
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, 21), sk_confusion(y_true, y_pred, labels=range(21)))
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="length"):
        confusion_matrix([0, 1], [0], 3)


def test_normalize_rows_keeps_empty_rows_zero():
    normalized = normalize_rows(np.array([[3, 1], [0, 0]]))
    np.testing.assert_allclose(normalized, [[0.75, 0.25], [0.0, 0.0]])


def test_per_class_scores_match_sklearn():
    rng = np.random.default_rng(1)
    y_true, y_pred = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    y_pred[:100] = y_true[:100]
    scores = per_class_scores(confusion_matrix(y_true, y_pred, 6), list("abcdef"))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=range(6),
                                                                     zero_division=0)
    assert [s["name"] for s in scores] == list("abcdef")
    np.testing.assert_allclose([s["precision"] for s in scores], precision)
    np.testing.assert_allclose([s["recall"] for s in scores], recall)
    np.testing.assert_allclose([s["f1"] for s in scores], f1)
    assert [s["support"] for s in scores] == support.tolist()
    assert scores[5] == {"name": "f", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_group_confusion_sums_blocks():
    cm = np.arange(9).reshape(3, 3)
    np.testing.assert_array_equal(group_confusion(cm, [0, 0, 1], 2), [[0 + 1 + 3 + 4, 2 + 5], [6 + 7, 8]])


def test_classification_report_on_ttstroke21_groupings():
    taxonomy = ttstroke21()
    # A forehand topspin serve called a backhand topspin serve: wrong class and hand, right type.
    y_true = [taxonomy.index("Serve Forehand Topspin"), taxonomy.index("Negative"),
              taxonomy.index("Offensive Backhand Hit")]
    y_pred = [taxonomy.index("Serve Backhand Topspin"), taxonomy.index("Negative"),
              taxonomy.index("Offensive Backhand Hit")]
    report = classification_report(y_true, y_pred, taxonomy)
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["num_samples"] == 3
    assert len(report["confusion_matrix"]) == 21 and sum(map(sum, report["confusion_matrix"])) == 3
    assert report["per_class"]["Negative"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert report["per_class"]["Serve Forehand Topspin"]["recall"] == 0.0
    assert report["groupings"]["type"]["accuracy"] == 1.0
    assert report["groupings"]["hand"]["accuracy"] == pytest.approx(2 / 3)
    assert report["groupings"]["type_hand"]["names"][:2] == ["Serve Forehand", "Serve Backhand"]
    assert len(report["groupings"]["type_hand"]["confusion_matrix"]) == 7


def test_classification_report_without_groupings_for_custom_classes():
    report = classification_report([0, 1, 1], [0, 1, 0], Taxonomy(("cat", "dog")))
    assert report["groupings"] == {}
    assert report["per_class"]["dog"]["recall"] == 0.5
    assert report["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 2)
