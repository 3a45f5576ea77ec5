"""Negative (rejection class) samples mined between the strokes of annotated long videos.

The paper mined 681 negative samples from the gaps between the 1048 strokes of its 129 videos and kept 106 so
that the rejection class is not much larger than a stroke class. Here every stretch of an annotated video that
no stroke covers — between two strokes, and before the first and after the last — and that is at least one clip
long gives one negative :class:`~tstcnn.data.sampling.Segment` (the whole gap; the temporal sampler then picks
a clip inside it). :func:`cap_negatives` keeps at most ``negatives_per_class`` × the mean number of samples of
the stroke classes present, chosen at random with a seed so the choice is stable between runs.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from tstcnn.data.sampling import Segment
from tstcnn.io.mediaeval import Action

__all__ = ["stroke_gaps", "mine_negatives", "negative_cap", "cap_negatives", "context_windows"]


def stroke_gaps(actions: Iterable[Action], frames: int, min_length: int) -> list[tuple[int, int]]:
    """Intervals ``[begin, end)`` of ``[0, frames)`` that no action overlaps, at least ``min_length`` long."""
    gaps, cursor = [], 0
    for action in sorted(actions, key=lambda a: (a.begin, a.end)):
        if action.begin - cursor >= min_length:
            gaps.append((cursor, action.begin))
        cursor = max(cursor, action.end)
    if frames - cursor >= min_length:
        gaps.append((cursor, frames))
    return gaps


def mine_negatives(videos: Iterable[tuple[str, Sequence[Action], int]], label: str, min_length: int
                   ) -> list[Segment]:
    """One negative segment per gap of each annotated video ``(video_id, actions, frames)``; videos without
    actions are skipped (a trimmed clip has no "between strokes")."""
    return [Segment(video_id, begin, end, label)
            for video_id, actions, frames in videos if actions
            for begin, end in stroke_gaps(actions, frames, min_length)]


def negative_cap(class_counts: Mapping[str, int], per_class: float) -> int:
    """``per_class`` × the mean count of the classes that have samples (0 when there are none)."""
    counts = [c for c in class_counts.values() if c > 0]
    return int(round(per_class * sum(counts) / len(counts))) if counts else 0


def cap_negatives(negatives: Sequence[Segment], cap: int, seed: int) -> list[Segment]:
    """At most ``cap`` negatives, drawn without replacement with ``seed``, in their original order."""
    if len(negatives) <= cap:
        return list(negatives)
    keep = np.sort(np.random.default_rng(seed).choice(len(negatives), size=max(cap, 0), replace=False))
    return [negatives[i] for i in keep]


def context_windows(videos: Iterable[tuple[str, Sequence[Action], int]], label: str, count: int, span: int,
                    seed: int) -> list[Segment]:
    """``count`` segments of exactly ``span`` frames per annotated video ``(video_id, actions, frames)``, centred on
    frames drawn uniformly (seeded per video), each labelled by its centre frame: the class of the stroke holding
    it, else ``label`` (Negative).

    Detection slides a window over the video and lets it speak for its centre frame, whatever its edges show;
    strokes and mined negatives alone never show the network a window half on a stroke, so it learns no boundary.
    A segment of one span is read as exactly that window, with its real context.
    """
    windows = []
    for video_id, actions, frames in videos:
        if not actions or frames < span or count <= 0:
            continue
        rng = np.random.default_rng([seed, zlib.crc32(video_id.encode())])
        centres = np.sort(rng.integers(span // 2, frames - span + span // 2 + 1, size=count))
        for centre in centres.tolist():
            move = next((a.move for a in actions if a.begin <= centre < a.end and a.move), label)
            begin = centre - span // 2
            windows.append(Segment(video_id, begin, begin + span, move))
    return windows
