"""MediaEval Sport Task metrics, and checks that a submission matches the ground truth as the organisers check it.

Detection (one XML of ``<action begin end/>`` per video, ``end`` exclusive; ``move`` is ignored, as the
organisers' scripts ignore it, so a run with its own classes is scored as well):

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

Everything is computed from interval arithmetic, never from per-frame arrays, and strokes are clipped to the
video's frame count when it is known (the organisers' per-frame vectors have that length), so a stroke ending
at frame 10¹² costs no memory. Matching takes the predictions in time order and looks each one up among the
true strokes indexed by length scale and begin: memory is linear in the number of strokes. A zero-length
stroke (``begin == end``) is accepted and, overlapping nothing, is a false positive.

The organisers' format asks that two predicted strokes of one video do not overlap with an IoU above 0.5
(their check flags IoU > 0.5). Such pairs are reported by name: logged as warnings, or refused with
``strict=True``.

Classification (``<videos><video name class/>``): accuracy and confusion matrices, computed by
:mod:`tstcnn.runtime.metrics`. Videos are matched by exact file name, as the organisers match them;
``match_stem=True`` compares names without their extension instead.

Conventions for empty sets: a precision with no prediction, a recall with no true stroke and an IoU
with an empty union are 0.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tstcnn.io.mediaeval import Action, read_actions, read_submission
from tstcnn.runtime.metrics import classification_report

__all__ = ["IOU_THRESHOLDS", "SAME_STROKE_IOU", "SubmissionError", "interval_iou", "match_strokes", "map_2021",
           "map_2022", "DetectionScores", "same_stroke_pairs", "validate_detection", "overlap_problems",
           "score_detection", "read_detection_dir", "validate_classification", "score_classification",
           "read_classification_truth"]

logger = logging.getLogger(__name__)

IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
SAME_STROKE_IOU = 0.5  # two predicted strokes of a video above this IoU are one stroke in the organisers' format
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")

Span = tuple[Any, Any]


class SubmissionError(ValueError):
    """A submission that does not match the ground truth; ``problems`` lists each one, naming the video."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        more = f" (and {len(self.problems) - 3} more)" if len(self.problems) > 3 else ""
        super().__init__("; ".join(self.problems[:3]) + more)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else 0.0


def interval_iou(a: Span, b: Span) -> float:
    """IoU of two frame intervals ``[begin, end)``."""
    intersection = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - intersection
    return _ratio(intersection, union)


def _merged(spans: Iterable[Span], limit: int | None = None) -> list[Span]:
    """Disjoint, sorted intervals covering the same frames as ``spans`` within ``[0, limit)``."""
    clipped = sorted((max(0, b), e if limit is None else min(e, limit)) for b, e in spans)
    merged: list[Span] = []
    for begin, end in clipped:
        if end <= begin:
            continue
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((begin, end))
    return merged


def _covered(merged: Sequence[Span]) -> int:
    return sum(end - begin for begin, end in merged)


def _common(a: Sequence[Span], b: Sequence[Span]) -> int:
    """Frames in both of two merged interval lists (one pass over each)."""
    i = j = total = 0
    while i < len(a) and j < len(b):
        total += max(0, min(a[i][1], b[j][1]) - max(a[i][0], b[j][0]))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def _length_scale(length: float) -> int:
    """``e`` with ``2**(e-1) <= length < 2**e``: strokes of one scale differ in length by less than a factor 2."""
    return math.frexp(length)[1]


class _TruthIndex:
    """True strokes of positive length by length scale, each scale sorted by begin, to find a prediction's
    candidates: an IoU of ``t`` needs lengths within a factor ``t`` of each other, so a few scales hold them all,
    and within a scale a begin window bounds them (however long the prediction and however many strokes)."""

    def __init__(self, spans: Sequence[Span]) -> None:
        scales: dict[int, list[tuple[Any, int]]] = {}
        for i, (begin, end) in enumerate(spans):
            if end > begin:
                scales.setdefault(_length_scale(end - begin), []).append((begin, i))
        self.scales: dict[int, tuple[list[Any], list[int]]] = {}
        for scale, strokes in scales.items():
            strokes.sort()
            self.scales[scale] = ([b for b, _ in strokes], [i for _, i in strokes])

    def near(self, begin: Any, end: Any, lowest: float) -> list[int]:
        """Indices of every stroke whose IoU with ``[begin, end)`` can reach ``lowest`` (0 < lowest <= 1)."""
        length = end - begin
        margin = 1 + 1e-9  # covers the rounding of the float IoU and of the bounds
        found: list[int] = []
        for scale in range(_length_scale(length * lowest / margin), _length_scale(length / lowest * margin) + 1):
            if scale in self.scales:
                begins, indices = self.scales[scale]
                # a stroke of this scale that overlaps begins less than 2**scale frames before begin
                found += indices[bisect_left(begins, begin - 2 ** scale - 1):bisect_left(begins, end)]
        return found


def match_strokes(predicted: Sequence[Action] | Sequence[Span], truth: Sequence[Action] | Sequence[Span],
                  thresholds: Sequence[float] = IOU_THRESHOLDS) -> np.ndarray:
    """``(len(thresholds), 3)`` int array of true positives, false positives and false negatives.

    Predictions are taken in time order; at each threshold each one takes the unmatched true stroke of highest
    IoU (the first in ``truth``'s order on a tie) when that IoU reaches the threshold. Each prediction looks only
    at the true strokes that can reach the lowest threshold (:class:`_TruthIndex`), so memory is linear in the
    strokes and time near-linear unless many true strokes pile up on the same frames. A threshold of 0 or below
    lets any unmatched stroke match, as ``IoU >= 0`` always holds.
    """
    thresholds = [float(t) for t in thresholds]
    spans = [(t[0], t[1]) for t in truth]
    reachable = [(k, t) for k, t in enumerate(thresholds) if t <= 1]  # above 1, or NaN, no IoU reaches it
    any_level = any(t <= 0 for _, t in reachable)
    lowest = min((t for _, t in reachable if t > 0), default=1.0)
    index = _TruthIndex(spans)
    free = [bytearray(b"\x01") * len(spans) for _ in thresholds]
    first_free = [0] * len(thresholds)  # where to look for the lowest unmatched index (thresholds <= 0)
    true_positives = [0] * len(thresholds)
    for begin, end in sorted((p[0], p[1]) for p in predicted):
        candidates: list[tuple[float, int]] = []
        if end > begin:
            # at a threshold <= 0 every overlapping stroke counts: the widest search, for a threshold never used
            near = range(len(spans)) if any_level else index.near(begin, end, lowest)
            for i in near:
                iou = interval_iou((begin, end), spans[i])
                if iou > 0 and (any_level or iou >= lowest):
                    candidates.append((-iou, i))
            candidates.sort()  # highest IoU first, then the first in truth's order
        elif not any_level:
            continue
        for k, threshold in reachable:
            taken = None
            for negative, i in candidates:
                if -negative < threshold:
                    break
                if free[k][i]:
                    taken = i
                    break
            if taken is None and threshold <= 0:
                while first_free[k] < len(spans) and not free[k][first_free[k]]:
                    first_free[k] += 1
                taken = first_free[k] if first_free[k] < len(spans) else None
            if taken is not None:
                free[k][taken] = 0
                true_positives[k] += 1
    counts = np.zeros((len(thresholds), 3), dtype=np.int64)
    for k, tp in enumerate(true_positives):
        counts[k] = (tp, len(predicted) - tp, len(spans) - tp)
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
    """Detection metrics over a set of videos; ``per_video`` holds each video's frame IoU and counts.

    ``warnings`` lists the format problems that did not stop the scoring (strokes that are one stroke).
    """

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
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def same_stroke_pairs(actions: Sequence[Action] | Sequence[Span], max_pairs: int | None = None
                      ) -> list[tuple[Span, Span]]:
    """Pairs of strokes of one video whose IoU is above :data:`SAME_STROKE_IOU`, in time order.

    Such a pair is one stroke in the organisers' format. For strokes sorted by begin, an IoU above 0.5 needs the
    later one to begin within the first half of the earlier, so the sweep looks no further; it stops after
    ``max_pairs`` pairs when given.
    """
    spans = sorted((a[0], a[1]) for a in actions)
    begins = [b for b, _ in spans]
    pairs: list[tuple[Span, Span]] = []
    for i, (begin, end) in enumerate(spans):
        length = end - begin
        if length <= 0:
            continue
        # exact integer test of IoU > 1/2: twice the intersection exceeds the union
        for j in range(i + 1, bisect_left(begins, begin + (length + 1) // 2, lo=i + 1)):
            other = spans[j]
            if other[1] <= other[0]:
                continue
            common = max(0, min(end, other[1]) - other[0])
            if 2 * common > length + (other[1] - other[0]) - common:
                pairs.append(((begin, end), other))
                if max_pairs is not None and len(pairs) >= max_pairs:
                    return pairs
    return pairs


def overlap_problems(predictions: Mapping[str, Sequence[Action]], max_pairs: int = 10) -> list[str]:
    """One message per pair of predicted strokes that the organisers' format calls one stroke, naming the video.

    At most ``max_pairs`` pairs are named per video, and the message says when there are more.
    """
    problems = []
    for video in sorted(predictions):
        pairs = same_stroke_pairs(predictions[video], max_pairs + 1)
        for a, b in pairs[:max_pairs]:
            problems.append(f"video {video!r}: strokes [{a[0]}, {a[1]}) and [{b[0]}, {b[1]}) overlap with IoU "
                            f"{interval_iou(a, b):.3f} > {SAME_STROKE_IOU}: the organisers' format takes them for "
                            "one stroke")
        if len(pairs) > max_pairs:
            problems.append(f"video {video!r}: more pairs of strokes with IoU > {SAME_STROKE_IOU} not listed")
    return problems


def validate_detection(predictions: Mapping[str, Sequence[Action]], truth: Mapping[str, Sequence[Action]],
                       num_frames: Mapping[str, int] | None = None) -> list[str]:
    """Every way the predictions fail to match the ground truth, one message per problem naming the video.

    Checks, as the organisers' scripts do: a video of the ground truth without predictions, predictions for an
    unknown video, a stroke that starts before frame 0 or ends before it begins, a stroke ending after the
    video's last frame (when ``num_frames`` knows the video). ``move`` is not checked: detection ignores it.
    """
    num_frames = num_frames or {}
    problems = [f"video {v!r}: no prediction" for v in sorted(set(truth) - set(predictions))]
    problems += [f"video {v!r}: predicted but not in the ground truth" for v in sorted(set(predictions) - set(truth))]
    for video in sorted(set(predictions) & set(truth)):
        for action in predictions[video]:
            where = f"video {video!r}: stroke [{action.begin}, {action.end})"
            if action.begin < 0:
                problems.append(f"{where} starts before frame 0")
            elif action.end < action.begin:
                problems.append(f"{where} ends before it begins")
            elif video in num_frames and action.end > num_frames[video]:
                problems.append(f"{where} ends after the video's {num_frames[video]} frames")
    return problems


def score_detection(predictions: Mapping[str, Sequence[Action]], truth: Mapping[str, Sequence[Action]],
                    num_frames: Mapping[str, int] | None = None, thresholds: Sequence[float] = IOU_THRESHOLDS,
                    *, strict: bool = False) -> DetectionScores:
    """Frame IoU over the set and both mAPs; raises :class:`SubmissionError` when the submission does not match.

    Pairs of predicted strokes with IoU above 0.5 (one stroke in the organisers' format) are logged as warnings
    and kept in ``warnings``, or refused with the other problems when ``strict``.
    """
    problems = validate_detection(predictions, truth, num_frames)
    overlaps = overlap_problems(predictions)
    if strict:
        problems += overlaps
    if problems:
        raise SubmissionError(problems)
    if not truth:
        raise ValueError("no ground-truth videos to score")
    for message in overlaps:
        logger.warning("%s", message)
    num_frames = num_frames or {}
    counts = np.zeros((len(thresholds), 3), dtype=np.int64)
    intersection = union = 0
    per_video = {}
    for video in sorted(truth):
        limit = num_frames.get(video)
        predicted, true = predictions[video], truth[video]
        if limit is not None:  # the organisers' per-frame vectors end with the video
            true = [(min(max(a[0], 0), limit), min(max(a[1], 0), limit)) for a in true]
        pred_frames = _merged(((a[0], a[1]) for a in predicted), limit)
        true_frames = _merged(((a[0], a[1]) for a in true), limit)
        both = _common(pred_frames, true_frames)
        either = _covered(pred_frames) + _covered(true_frames) - both
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
        num_true=sum(len(t) for t in truth.values()), per_video=per_video, warnings=tuple(overlaps))


def read_detection_dir(folder: str | Path) -> dict[str, list[Action]]:
    """``{video id: actions}`` from every ``<id>.xml`` in a folder (a MediaEval detection run or ground truth)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    return {path.stem: read_actions(path) for path in sorted(folder.glob("*.xml"))}


def _keyed(names: Iterable[str], match_stem: bool, side: str) -> tuple[dict[str, str], list[str]]:
    """``{key: name}`` with the key a name's exact text, or its text without extension; clashes are problems."""
    keyed: dict[str, str] = {}
    problems = []
    for name in sorted(names):
        key = Path(name).stem if match_stem else name
        if key in keyed:
            problems.append(f"videos {keyed[key]!r} and {name!r} of the {side} are one video without their extension")
        keyed.setdefault(key, name)
    return keyed, problems


def validate_classification(submission: Mapping[str, str], truth: Mapping[str, str], classes: Sequence[str],
                            *, match_stem: bool = False) -> list[str]:
    """Problems of a classification submission: missing or unknown videos, unknown classes (one message each).

    Videos are matched by exact file name, as the organisers match them (``test_1.mp4`` is not ``test_1`` nor
    ``test_1.avi``); ``match_stem`` compares names without their extension.
    """
    predicted, problems = _keyed(submission, match_stem, "submission")
    expected, more = _keyed(truth, match_stem, "ground truth")
    problems += more
    stems = {Path(n).stem: n for n in submission}
    for key in sorted(set(expected) - set(predicted)):
        near = stems.get(Path(key).stem)
        hint = (f" (the submission has {near!r}: names are compared exactly, as the organisers do; match_stem "
                "compares them without extension)" if near is not None and not match_stem else "")
        problems.append(f"video {expected[key]!r}: no prediction{hint}")
    problems += [f"video {predicted[k]!r}: predicted but not in the ground truth"
                 for k in sorted(set(predicted) - set(expected))]
    problems += [f"video {name!r}: unknown class {label!r}" for name, label in sorted(submission.items())
                 if label not in classes]
    problems += [f"video {name!r}: ground truth has unknown class {label!r}" for name, label in sorted(truth.items())
                 if label not in classes]
    return problems


def score_classification(submission: Mapping[str, str], truth: Mapping[str, str], taxonomy: Any,
                         *, match_stem: bool = False) -> dict[str, Any]:
    """Accuracy, per-class scores and confusion matrices (fine and grouped) of a classification submission.

    ``taxonomy`` is a :class:`~tstcnn.taxonomy.Taxonomy`; raises :class:`SubmissionError` on a mismatch. Videos
    are matched by exact file name unless ``match_stem``; the report's ``match_stem`` says which.
    """
    problems = validate_classification(submission, truth, taxonomy.classes, match_stem=match_stem)
    if problems:
        raise SubmissionError(problems)
    if not truth:
        raise ValueError("no ground-truth videos to score")
    predicted = {(Path(n).stem if match_stem else n): c for n, c in submission.items()}
    names = sorted(truth)
    y_true = [taxonomy.index(truth[n]) for n in names]
    y_pred = [taxonomy.index(predicted[Path(n).stem if match_stem else n]) for n in names]
    report = classification_report(y_true, y_pred, taxonomy)
    report["num_videos"] = len(names)
    report["match_stem"] = match_stem
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
