"""MediaEval Sport Task metrics, and checks that a submission matches the ground truth.

Detection (one XML of ``<action begin end/>`` per video, ``end`` exclusive):

* **frame IoU**: frames inside any stroke, intersection over union summed over the whole set (not a
  mean of per-video IoUs);
* strokes are matched one-to-one to true strokes at each IoU threshold 0.50, 0.55 … 0.95 (a
  prediction takes the unmatched true stroke it overlaps most, when their IoU reaches the threshold),
  giving a precision and a recall per threshold. Two summaries carry the name "mAP" in the task's
  history, and both are given under distinct names:

  - ``map_2021``: the 2021 scorer's "Average Precision at IoU=.50:.05:.95": the (recall, precision)
    points of the ten thresholds sorted by recall, each precision replaced by the maximum at equal or
    higher recall ("max-left"), summed with the recall increments as weights;
  - ``map_2022``: the 2022 scorer's figure, the mean over the ten thresholds of precision × recall.

Classification (``<videos><video name class/>``): accuracy and confusion matrices, computed by
:mod:`tstcnn.runtime.metrics`. Videos are matched by file name without its extension.

Conventions for empty sets: a precision with no prediction, a recall with no true stroke and an IoU
with an empty union are 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tstcnn.io.mediaeval import Action, read_actions, read_submission
from tstcnn.runtime.metrics import classification_report

__all__ = ["IOU_THRESHOLDS", "SubmissionError", "interval_iou", "actions_to_mask", "match_strokes", "map_2021",
           "map_2022", "DetectionScores", "validate_detection", "score_detection", "read_detection_dir",
           "validate_classification", "score_classification", "read_classification_truth"]

IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


class SubmissionError(ValueError):
    """A submission that does not match the ground truth; ``problems`` lists each one, naming the video."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        more = f" (and {len(self.problems) - 3} more)" if len(self.problems) > 3 else ""
        super().__init__("; ".join(self.problems[:3]) + more)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else 0.0


def interval_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """IoU of two frame intervals ``[begin, end)``."""
    intersection = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - intersection
    return _ratio(intersection, union)


def actions_to_mask(actions: Iterable[Action], num_frames: int) -> np.ndarray:
    """Boolean ``(num_frames,)``: True on the frames inside any action."""
    mask = np.zeros(num_frames, dtype=bool)
    for action in actions:
        mask[max(0, action.begin):max(0, action.end)] = True
    return mask


def match_strokes(predicted: Sequence[Action], truth: Sequence[Action],
                  thresholds: Sequence[float] = IOU_THRESHOLDS) -> np.ndarray:
    """``(len(thresholds), 3)`` int array of true positives, false positives and false negatives.

    Predictions are taken in time order; each one matches at most one true stroke.
    """
    counts = np.zeros((len(thresholds), 3), dtype=np.int64)
    ious = np.array([[interval_iou(p[:2], t[:2]) for t in truth] for p in sorted(predicted)]).reshape(
        len(predicted), len(truth))
    for k, threshold in enumerate(thresholds):
        free = np.ones(len(truth), dtype=bool)
        for row in ious:
            candidates = np.where(free & (row >= threshold), row, -1.0)
            if len(candidates) and candidates.max() >= 0:
                free[int(candidates.argmax())] = False
                counts[k, 0] += 1
            else:
                counts[k, 1] += 1
        counts[k, 2] = int(free.sum())
    return counts


def map_2021(precision: Sequence[float], recall: Sequence[float]) -> float:
    """The 2021 scorer's average precision over IoU thresholds (max-left interpolation over recall)."""
    points = sorted(zip(recall, precision))
    recalls = np.array([r for r, _ in points])
    precisions = np.array([p for _, p in points])
    max_left = np.maximum.accumulate(precisions[::-1])[::-1]
    steps = np.diff(recalls, prepend=0.0)
    return float((max_left * steps).sum())


def map_2022(precision: Sequence[float], recall: Sequence[float]) -> float:
    """The 2022 scorer's figure: the mean over IoU thresholds of precision × recall."""
    return float(np.mean(np.asarray(precision) * np.asarray(recall)))


@dataclass(frozen=True)
class DetectionScores:
    """Detection metrics over a set of videos; ``per_video`` holds each video's frame IoU and counts."""

    frame_iou: float
    map_2021: float
    map_2022: float
    thresholds: tuple[float, ...]
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    true_positives: tuple[int, ...]
    false_positives: tuple[int, ...]
    false_negatives: tuple[int, ...]
    num_predicted: int
    num_true: int
    per_video: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def validate_detection(predictions: Mapping[str, Sequence[Action]], truth: Mapping[str, Sequence[Action]],
                       num_frames: Mapping[str, int] | None = None,
                       classes: Sequence[str] | None = None) -> list[str]:
    """Every way the predictions fail to match the ground truth, one message per problem naming the video.

    Checks: a video of the ground truth without predictions, predictions for an unknown video, a stroke
    that is empty or starts before frame 0, a stroke ending after the video's last frame (when
    ``num_frames`` knows the video), a class outside ``classes`` (when given and the stroke has one).
    """
    num_frames = num_frames or {}
    problems = [f"video {v!r}: no prediction" for v in sorted(set(truth) - set(predictions))]
    problems += [f"video {v!r}: predicted but not in the ground truth" for v in sorted(set(predictions) - set(truth))]
    for video in sorted(set(predictions) & set(truth)):
        for action in predictions[video]:
            where = f"video {video!r}: stroke [{action.begin}, {action.end})"
            if action.begin < 0 or action.end <= action.begin:
                problems.append(f"{where} is empty or starts before frame 0")
            elif video in num_frames and action.end > num_frames[video]:
                problems.append(f"{where} ends after the video's {num_frames[video]} frames")
            if classes is not None and action.move is not None and action.move not in classes:
                problems.append(f"{where} has unknown class {action.move!r}")
    return problems


def score_detection(predictions: Mapping[str, Sequence[Action]], truth: Mapping[str, Sequence[Action]],
                    num_frames: Mapping[str, int] | None = None, classes: Sequence[str] | None = None,
                    thresholds: Sequence[float] = IOU_THRESHOLDS) -> DetectionScores:
    """Frame IoU over the set and both mAPs; raises :class:`SubmissionError` when the submission does not match."""
    problems = validate_detection(predictions, truth, num_frames, classes)
    if problems:
        raise SubmissionError(problems)
    if not truth:
        raise ValueError("no ground-truth videos to score")
    num_frames = num_frames or {}
    counts = np.zeros((len(thresholds), 3), dtype=np.int64)
    intersection = union = 0
    per_video = {}
    for video in sorted(truth):
        predicted, true = predictions[video], truth[video]
        length = max([num_frames.get(video, 0), *(a.end for a in [*predicted, *true])])
        pred_mask, true_mask = actions_to_mask(predicted, length), actions_to_mask(true, length)
        both, either = int((pred_mask & true_mask).sum()), int((pred_mask | true_mask).sum())
        intersection, union = intersection + both, union + either
        counts += match_strokes(predicted, true, thresholds)
        per_video[video] = {"frame_iou": _ratio(both, either), "predicted": len(predicted), "true": len(true)}
    tp, fp, fn = counts.T
    precision = [_ratio(t, t + f) for t, f in zip(tp, fp)]
    recall = [_ratio(t, t + f) for t, f in zip(tp, fn)]
    return DetectionScores(
        frame_iou=_ratio(intersection, union), map_2021=map_2021(precision, recall),
        map_2022=map_2022(precision, recall), thresholds=tuple(thresholds), precision=tuple(precision),
        recall=tuple(recall), true_positives=tuple(int(v) for v in tp), false_positives=tuple(int(v) for v in fp),
        false_negatives=tuple(int(v) for v in fn), num_predicted=sum(len(p) for p in predictions.values()),
        num_true=sum(len(t) for t in truth.values()), per_video=per_video)


def read_detection_dir(folder: str | Path) -> dict[str, list[Action]]:
    """``{video id: actions}`` from every ``<id>.xml`` in a folder (a MediaEval detection run or ground truth)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    return {path.stem: read_actions(path) for path in sorted(folder.glob("*.xml"))}


def _key(name: str) -> str:
    return Path(name).stem


def validate_classification(submission: Mapping[str, str], truth: Mapping[str, str],
                            classes: Sequence[str]) -> list[str]:
    """Problems of a classification submission: missing or unknown videos, unknown classes (one message each)."""
    predicted = {_key(n): (n, c) for n, c in submission.items()}
    expected = {_key(n): n for n in truth}
    problems = [f"video {expected[k]!r}: no prediction" for k in sorted(set(expected) - set(predicted))]
    problems += [f"video {predicted[k][0]!r}: predicted but not in the ground truth"
                 for k in sorted(set(predicted) - set(expected))]
    problems += [f"video {name!r}: unknown class {label!r}" for name, label in sorted(predicted.values())
                 if label not in classes]
    problems += [f"video {name!r}: ground truth has unknown class {label!r}" for name, label in sorted(truth.items())
                 if label not in classes]
    return problems


def score_classification(submission: Mapping[str, str], truth: Mapping[str, str], taxonomy: Any) -> dict[str, Any]:
    """Accuracy, per-class scores and confusion matrices (fine and grouped) of a classification submission.

    ``taxonomy`` is a :class:`~tstcnn.taxonomy.Taxonomy`; raises :class:`SubmissionError` on a mismatch.
    """
    problems = validate_classification(submission, truth, taxonomy.classes)
    if problems:
        raise SubmissionError(problems)
    if not truth:
        raise ValueError("no ground-truth videos to score")
    predicted = {_key(n): c for n, c in submission.items()}
    names = sorted(truth)
    y_true = [taxonomy.index(truth[n]) for n in names]
    y_pred = [taxonomy.index(predicted[_key(n)]) for n in names]
    report = classification_report(y_true, y_pred, taxonomy)
    report["num_videos"] = len(names)
    return report


def read_classification_truth(path: str | Path) -> dict[str, str]:
    """``{video name: class}`` from a ``<videos>`` XML, or from a ``<Class>/<video>`` folder layout."""
    path = Path(path)
    if path.is_file():
        return read_submission(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such ground-truth file or folder")
    truth = {video.name: folder.name for folder in sorted(path.iterdir()) if folder.is_dir()
             for video in sorted(folder.iterdir()) if video.suffix.lower() in VIDEO_SUFFIXES}
    if not truth:
        raise ValueError(f"{path}: no <Class>/<video> files found")
    return truth
