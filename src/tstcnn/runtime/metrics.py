"""Classification metrics: confusion matrices, per-class precision / recall / F1, grouped accuracies.

One implementation shared by ``tstcnn evaluate`` and ``tstcnn score-classification``. Confusion
matrices have one row per true class; normalisation is per row (per true class), as MediaEval's
figures should be (the 2022 scorer's plot divides along the wrong axis; we do not reproduce that).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tstcnn.taxonomy import GROUPINGS, Taxonomy

__all__ = ["confusion_matrix", "normalize_rows", "per_class_scores", "group_confusion", "classification_report"]


def confusion_matrix(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                     num_classes: int) -> np.ndarray:
    """``cm[i, j]`` = number of samples of true class ``i`` predicted as ``j`` (int64, ``num_classes`` square)."""
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.size} vs {y_pred.size}")
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} holds class indices outside [0, {num_classes})")
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def normalize_rows(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the recall view); rows of classes without samples stay 0."""
    cm = np.asarray(cm, dtype=np.float64)
    totals = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)


def per_class_scores(cm: np.ndarray, names: Sequence[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class; a ratio with a zero denominator is 0."""
    cm = np.asarray(cm, dtype=np.float64)
    if cm.shape != (len(names), len(names)):
        raise ValueError(f"confusion matrix of shape {cm.shape} does not match {len(names)} class names")
    true_positives = np.diag(cm)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    precision = np.divide(true_positives, predicted, out=np.zeros_like(true_positives), where=predicted > 0)
    recall = np.divide(true_positives, support, out=np.zeros_like(true_positives), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    return [{"name": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(names, precision, recall, f1, support)]


def group_confusion(cm: np.ndarray, group_map: Sequence[int], num_groups: int) -> np.ndarray:
    """Fold a fine confusion matrix onto coarse classes (``group_map[i]`` = group of fine class ``i``)."""
    cm = np.asarray(cm, dtype=np.int64)
    fold = np.zeros((cm.shape[0], num_groups), dtype=np.int64)
    fold[np.arange(cm.shape[0]), np.asarray(group_map)] = 1
    return fold.T @ cm @ fold


def _accuracy(cm: np.ndarray) -> float:
    total = int(cm.sum())
    return float(np.trace(cm) / total) if total else 0.0


def classification_report(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                          taxonomy: Taxonomy) -> dict[str, Any]:
    """Everything a classification run is judged on, as plain JSON-ready data.

    Returns:
        ``accuracy`` (fraction), ``num_samples``, ``macro_f1``, ``per_class`` (class name →
        precision / recall / f1 / support, in taxonomy order), ``confusion_matrix`` (list of lists,
        rows = true class), ``classes``, and ``groupings`` {grouping: {names, confusion_matrix,
        accuracy}} for ``type``, ``hand`` and ``type_hand`` when the taxonomy's names support them.
    """
    names = list(taxonomy.classes)
    cm = confusion_matrix(y_true, y_pred, len(names))
    scores = per_class_scores(cm, names)
    report: dict[str, Any] = {
        "accuracy": _accuracy(cm),
        "num_samples": int(cm.sum()),
        "macro_f1": float(np.mean([s["f1"] for s in scores])),
        "per_class": {s["name"]: {k: s[k] for k in ("precision", "recall", "f1", "support")} for s in scores},
        "classes": names,
        "confusion_matrix": cm.tolist(),
        "groupings": {},
    }
    if taxonomy.supports_groupings():
        for grouping in GROUPINGS:
            group_names = list(taxonomy.group_names(grouping))
            grouped = group_confusion(cm, taxonomy.group_map(grouping), len(group_names))
            report["groupings"][grouping] = {"names": group_names, "confusion_matrix": grouped.tolist(),
                                             "accuracy": _accuracy(grouped)}
    return report
