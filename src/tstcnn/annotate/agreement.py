"""Agreement between annotators, their consensus, and where they disagree (paper section IV-A: several people
annotate the same videos; their differences say how far the labels, and so the scores, can be trusted).

Definitions (docs/annotations.md gives them for users):

* two strokes of one video **match** when their temporal IoU (frames in common over frames in either, ``end``
  exclusive) is at least ``min_iou`` (0.5); matching is one-to-one, greedy by decreasing IoU (ties: earlier
  strokes first), which is the best matching whenever one annotator's strokes do not overlap each other;
* **boundary differences** are ``|begin_a - begin_b|`` and ``|end_a - end_b|`` of matched strokes, both pooled;
* **kappa** is Cohen's kappa of the classes of matched strokes (the same as
  ``sklearn.metrics.cohen_kappa_score``), also after mapping the classes to their stroke type and hand when the
  classes read as ``<Type> <Hand> <Technique>`` (TTStroke-21's do); ``None`` when it is undefined (no matched
  stroke, or both annotators always used one and the same class);
* **overall**: counts and boundary differences pooled over every pair, kappa the mean of the pairs' kappas
  (Light's kappa);
* the **consensus** groups the strokes of one video into clusters holding at most one stroke per annotator
  (each annotator in turn is matched against the clusters' median spans); a cluster marked by more than half of
  the annotators is a consensus stroke with the median begin (rounded down) and end (rounded up) and the class
  most of them gave; a cluster marked by exactly half, or whose top classes tie, is kept and flagged for review.

The functions take any objects with ``video_id``, ``begin``, ``end`` and ``label`` attributes (the
:class:`~tstcnn.annotate.database.Stroke` rows; ``id`` is used when present), so they are tested on plain data.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from tstcnn.taxonomy import Taxonomy

__all__ = ["MIN_IOU", "BOUNDARY_FRAMES", "StrokeLike", "Span", "Match", "ConsensusStroke", "Disagreement",
           "temporal_iou", "match_strokes", "cohen_kappa", "pair_agreement", "agreement", "consensus",
           "disagreements", "by_annotator"]

MIN_IOU = 0.5
BOUNDARY_FRAMES = 10  # a boundary off by more than this is shown as a disagreement: 83 ms at TTStroke-21's 120 fps


class StrokeLike(Protocol):
    """What the functions read of a stroke: its video, frames ``begin`` (inclusive) to ``end`` (exclusive), class."""

    @property
    def video_id(self) -> Hashable: ...

    @property
    def begin(self) -> int: ...

    @property
    def end(self) -> int: ...

    @property
    def label(self) -> str: ...


@dataclass(frozen=True)
class Span:
    """A plain stroke, for tests and for strokes read from files rather than from a project."""

    video_id: Hashable
    begin: int
    end: int
    label: str
    id: int | None = None


@dataclass(frozen=True)
class Match:
    """A one-to-one matching of two annotators' strokes: index pairs with their IoU, and the strokes left over."""

    pairs: tuple[tuple[int, int, float], ...]
    only_first: tuple[int, ...]
    only_second: tuple[int, ...]


@dataclass(frozen=True)
class ConsensusStroke:
    """One stroke of the consensus; ``tie`` marks one to review, ``review`` says why."""

    video_id: Hashable
    begin: int
    end: int
    label: str
    votes: int  # annotators who marked this stroke
    annotators: int  # annotators taking part
    label_votes: tuple[tuple[str, int], ...]  # classes given, most votes first
    tie: bool = False
    review: str | None = None  # "half marked it", "class tie", or both joined by "; "
    members: tuple[tuple[str, int | None], ...] = ()  # (annotator, stroke id) of the strokes grouped here

    def to_json(self) -> dict[str, Any]:
        return {"begin": self.begin, "end": self.end, "label": self.label, "votes": self.votes,
                "annotators": self.annotators, "label_votes": dict(self.label_votes), "tie": self.tie,
                "review": self.review, "members": [{"annotator": a, "stroke": s} for a, s in self.members]}


@dataclass(frozen=True)
class Disagreement:
    """A place where annotators differ: ``kind`` is ``missing`` (not everyone marked a stroke there), ``class`` (they
    gave different classes) or ``boundary`` (a begin or end is further than the limit from the others' median)."""

    video_id: Hashable
    kind: str
    begin: int  # the span to show: the cluster's median span
    end: int
    detail: str
    annotators: tuple[str, ...]  # who marked a stroke here
    strokes: tuple[int | None, ...] = field(default=())  # their stroke ids, in the order of ``annotators``

    def to_json(self) -> dict[str, Any]:
        return {"video_id": self.video_id, "kind": self.kind, "begin": self.begin, "end": self.end,
                "detail": self.detail, "annotators": list(self.annotators), "strokes": list(self.strokes)}


def _video_key(video_id: Hashable) -> tuple[int, Any]:
    """Sorts video ids: numbers in numeric order, before anything else by its text."""
    return (0, video_id) if isinstance(video_id, int) else (1, str(video_id))


def temporal_iou(a: StrokeLike, b: StrokeLike) -> float:
    """Frames in common over frames in either (``end`` exclusive); 0 for strokes of different videos."""
    if a.video_id != b.video_id:
        return 0.0
    inter = min(a.end, b.end) - max(a.begin, b.begin)
    if inter <= 0:
        return 0.0
    return inter / (max(a.end, b.end) - min(a.begin, b.begin))


def match_strokes(a: Sequence[StrokeLike], b: Sequence[StrokeLike], min_iou: float = MIN_IOU) -> Match:
    """Match ``a``'s strokes to ``b``'s one to one, by decreasing temporal IoU, keeping pairs with IoU >= ``min_iou``.

    Indices refer to ``a`` and ``b``; strokes of different videos never match.
    """
    if not 0 < min_iou <= 1:
        raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
    by_video: dict[Hashable, list[int]] = defaultdict(list)
    for j, stroke in enumerate(b):
        by_video[stroke.video_id].append(j)
    index = {}
    for video_id, js in by_video.items():
        js.sort(key=lambda j: b[j].begin)
        index[video_id] = ([b[j].begin for j in js], max(b[j].end - b[j].begin for j in js))
    candidates = []
    for i, stroke in enumerate(a):
        if stroke.video_id not in index:
            continue
        js, (begins, longest) = by_video[stroke.video_id], index[stroke.video_id]
        # only strokes beginning within (begin - longest, end) can overlap this one
        for k in range(bisect.bisect_right(begins, stroke.begin - longest), bisect.bisect_left(begins, stroke.end)):
            iou = temporal_iou(stroke, b[js[k]])
            if iou >= min_iou:
                candidates.append((-iou, i, js[k]))
    candidates.sort()
    used_a: set[int] = set()
    used_b: set[int] = set()
    pairs = []
    for negative_iou, i, j in candidates:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j, -negative_iou))
    pairs.sort()
    return Match(tuple(pairs), tuple(i for i in range(len(a)) if i not in used_a),
                 tuple(j for j in range(len(b)) if j not in used_b))


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
    """Cohen's kappa of two label sequences; ``None`` when undefined (empty, or chance agreement is 1)."""
    if len(first) != len(second):
        raise ValueError(f"kappa needs two sequences of one length, got {len(first)} and {len(second)}")
    n = len(first)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(first, second)) / n
    count_first, count_second = Counter(first), Counter(second)
    expected = sum(count_first[c] * count_second[c] for c in count_first) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def _percentile(values: Sequence[int], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, np.float64), q)) if len(values) else None


def _grouped(labels: Sequence[str], taxonomy: Taxonomy, grouping: str) -> list[str]:
    names, mapping = taxonomy.group_names(grouping), taxonomy.group_map(grouping)
    return [names[mapping[taxonomy.index(label)]] for label in labels]


def _groupings(classes: Sequence[str] | None, labels: Iterable[str]) -> Taxonomy | None:
    """The taxonomy to group labels by, or None when the classes do not read as ``<Type> <Hand> <Technique>``."""
    if classes is None:
        return None
    taxonomy = Taxonomy(tuple(classes))
    if not taxonomy.supports_groupings() or any(label not in taxonomy for label in labels):
        return None
    return taxonomy


def _pair_figures(a: Sequence[StrokeLike], b: Sequence[StrokeLike], classes: Sequence[str] | None,
                  min_iou: float) -> tuple[dict[str, Any], list[int], list[tuple[str, str]]]:
    match = match_strokes(a, b, min_iou)
    differences = [d for i, j, _ in match.pairs for d in (abs(a[i].begin - b[j].begin), abs(a[i].end - b[j].end))]
    labels = [(a[i].label, b[j].label) for i, j, _ in match.pairs]
    matched = len(match.pairs)
    marked = 2 * matched + len(match.only_first) + len(match.only_second)
    figures: dict[str, Any] = {
        "matched": matched, "only_first": len(match.only_first), "only_second": len(match.only_second),
        "stroke_f1": 2 * matched / marked if marked else None,
        "mean_iou": float(np.mean([iou for *_, iou in match.pairs])) if matched else None,
        "boundary_median_frames": _percentile(differences, 50), "boundary_p90_frames": _percentile(differences, 90),
        "class_agreement": sum(x == y for x, y in labels) / matched if matched else None,
    }
    figures.update(_kappas(labels, classes))
    return figures, differences, labels


def _kappas(labels: Sequence[tuple[str, str]], classes: Sequence[str] | None) -> dict[str, Any]:
    first, second = [x for x, _ in labels], [y for _, y in labels]
    kappas: dict[str, Any] = {"kappa": cohen_kappa(first, second)}
    taxonomy = _groupings(classes, first + second)
    if taxonomy is not None:
        for grouping in ("type", "hand"):
            kappas[f"kappa_{grouping}"] = cohen_kappa(_grouped(first, taxonomy, grouping),
                                                      _grouped(second, taxonomy, grouping))
    return kappas


def pair_agreement(a: Sequence[StrokeLike], b: Sequence[StrokeLike], classes: Sequence[str] | None = None, *,
                   min_iou: float = MIN_IOU) -> dict[str, Any]:
    """Agreement of two annotators' strokes (all videos together); see the module docstring for the figures.

    Keys: ``matched``, ``only_first``, ``only_second``, ``stroke_f1``, ``mean_iou``, ``boundary_median_frames``,
    ``boundary_p90_frames``, ``class_agreement``, ``kappa``, and ``kappa_type`` / ``kappa_hand`` when ``classes``
    read as ``<Type> <Hand> <Technique>``. Figures over no matched stroke are ``None``.
    """
    return _pair_figures(a, b, classes, min_iou)[0]


def agreement(strokes_by_annotator: Mapping[str, Sequence[StrokeLike]], classes: Sequence[str] | None = None, *,
              min_iou: float = MIN_IOU) -> dict[str, Any]:
    """Per pair of annotators (sorted by name) and overall: ``{"pairs": [...], "overall": {...}}``.

    Each pair is :func:`pair_agreement` with ``"annotators": [first, second]``; ``overall`` pools the counts and
    boundary differences of every pair and averages their kappas (Light's kappa; ``None`` where no pair has one).
    """
    names = sorted(strokes_by_annotator)
    pairs: list[dict[str, Any]] = []
    all_differences: list[int] = []
    for first, second in itertools.combinations(names, 2):
        figures, differences, _ = _pair_figures(strokes_by_annotator[first], strokes_by_annotator[second], classes,
                                                min_iou)
        pairs.append({"annotators": [first, second], **figures})
        all_differences += differences
    matched = sum(p["matched"] for p in pairs)
    only = sum(p["only_first"] + p["only_second"] for p in pairs)
    overall: dict[str, Any] = {
        "annotators": names, "pairs": len(pairs),
        "strokes": {name: len(strokes_by_annotator[name]) for name in names},
        "matched": matched, "only_first": sum(p["only_first"] for p in pairs),
        "only_second": sum(p["only_second"] for p in pairs),
        "stroke_f1": 2 * matched / (2 * matched + only) if matched + only else None,
        "boundary_median_frames": _percentile(all_differences, 50),
        "boundary_p90_frames": _percentile(all_differences, 90),
    }
    for key in ("kappa", "kappa_type", "kappa_hand"):
        values = [p[key] for p in pairs if p.get(key) is not None]
        if key == "kappa" or any(key in p for p in pairs):
            overall[key] = float(np.mean(values)) if values else None
    return {"min_iou": min_iou, "pairs": pairs, "overall": overall}


@dataclass
class _Cluster:
    """Strokes of one video grouped as one stroke, at most one per annotator."""

    video_id: Hashable
    members: dict[str, StrokeLike] = field(default_factory=dict)

    @property
    def begin(self) -> int:
        return math.floor(statistics.median(s.begin for s in self.members.values()))

    @property
    def end(self) -> int:
        return math.ceil(statistics.median(s.end for s in self.members.values()))

    def span(self) -> Span:
        return Span(self.video_id, self.begin, self.end, "")


def _clusters(strokes_by_annotator: Mapping[str, Sequence[StrokeLike]], min_iou: float) -> list[_Cluster]:
    """Each annotator in turn (sorted by name) joins its strokes to the clusters they match, one to one."""
    clusters: list[_Cluster] = []
    for name in sorted(strokes_by_annotator):
        strokes = sorted(strokes_by_annotator[name], key=lambda s: (_video_key(s.video_id), s.begin, s.end))
        match = match_strokes(strokes, [c.span() for c in clusters], min_iou)
        for i, j, _ in match.pairs:
            clusters[j].members[name] = strokes[i]
        for i in match.only_first:
            clusters.append(_Cluster(strokes[i].video_id, {name: strokes[i]}))
    clusters.sort(key=lambda c: (_video_key(c.video_id), c.begin, c.end))
    return clusters


def _stroke_id(stroke: StrokeLike) -> int | None:
    return getattr(stroke, "id", None)


def _vote(labels: Iterable[str], classes: Sequence[str] | None) -> tuple[tuple[tuple[str, int], ...], bool]:
    """Classes with their votes, most first (ties in class-list order, else by name), and whether the top ties."""
    counts = Counter(labels)
    order = {c: i for i, c in enumerate(classes or ())}
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], order.get(kv[0], len(order)), kv[0]))
    return tuple(ranked), len(ranked) > 1 and ranked[0][1] == ranked[1][1]


def consensus(strokes_by_annotator: Mapping[str, Sequence[StrokeLike]], classes: Sequence[str] | None = None, *,
              min_iou: float = MIN_IOU) -> list[ConsensusStroke]:
    """The strokes a majority of the annotators marked, with median boundaries and the majority class.

    Strokes marked by exactly half of the annotators, and strokes whose top classes tie (the class earlier in
    ``classes`` is given), are kept with ``tie=True`` and the reason in ``review``. Sorted by video and begin.
    """
    total = len(strokes_by_annotator)
    result = []
    for cluster in _clusters(strokes_by_annotator, min_iou):
        votes = len(cluster.members)
        if 2 * votes < total:
            continue
        label_votes, class_tie = _vote((s.label for s in cluster.members.values()), classes)
        reasons = (["half marked it"] if 2 * votes == total else []) + (["class tie"] if class_tie else [])
        result.append(ConsensusStroke(
            cluster.video_id, cluster.begin, cluster.end, label_votes[0][0], votes, total, label_votes,
            tie=bool(reasons), review="; ".join(reasons) or None,
            members=tuple((name, _stroke_id(s)) for name, s in sorted(cluster.members.items()))))
    return result


def _disagreement(cluster: _Cluster, kind: str, detail: str) -> Disagreement:
    marked = tuple(sorted(cluster.members))
    return Disagreement(cluster.video_id, kind, cluster.begin, cluster.end, detail, marked,
                        tuple(_stroke_id(cluster.members[name]) for name in marked))


def disagreements(strokes_by_annotator: Mapping[str, Sequence[StrokeLike]], *, min_iou: float = MIN_IOU,
                  max_boundary_frames: int = BOUNDARY_FRAMES) -> list[Disagreement]:
    """Where the annotators differ, for the page: per group of matched strokes (as in :func:`consensus`), one entry
    per kind of difference: ``missing``, ``class``, ``boundary`` (> ``max_boundary_frames`` from the median)."""
    names = sorted(strokes_by_annotator)
    found = []
    for cluster in _clusters(strokes_by_annotator, min_iou):
        marked = tuple(sorted(cluster.members))
        entry = functools.partial(_disagreement, cluster)
        if len(marked) < len(names):
            missing = [name for name in names if name not in cluster.members]
            found.append(entry("missing", f"marked by {', '.join(marked)}; not by {', '.join(missing)}"))
        labels = {name: cluster.members[name].label for name in marked}
        if len(set(labels.values())) > 1:
            found.append(entry("class", "; ".join(f"{name}: {label}" for name, label in labels.items())))
        begin, end = cluster.begin, cluster.end
        off = {name: max(abs(s.begin - begin), abs(s.end - end)) for name, s in cluster.members.items()}
        far = {name: frames for name, frames in sorted(off.items()) if frames > max_boundary_frames}
        if far and len(marked) > 1:
            found.append(entry("boundary", "; ".join(f"{name}: {frames} frames from the median" for name, frames
                                                     in far.items())))
    return found


def by_annotator(strokes: Iterable[Any], *, skip_status: Sequence[str] = ("rejected",),
                 annotators: Sequence[str] | None = None) -> dict[str, list[Any]]:
    """Project strokes grouped by their ``annotator`` (sorted by video and begin), leaving out rejected proposals;
    only ``annotators`` when given (every one of them is present, with no strokes if it has none)."""
    grouped: dict[str, list[Any]] = {name: [] for name in annotators or ()}
    for stroke in strokes:
        if getattr(stroke, "status", None) in skip_status:
            continue
        if annotators is not None and stroke.annotator not in grouped:
            continue
        grouped.setdefault(stroke.annotator, []).append(stroke)
    for strokes_of in grouped.values():
        strokes_of.sort(key=lambda s: (_video_key(s.video_id), s.begin, s.end))
    return grouped
