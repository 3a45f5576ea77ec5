"""Per-frame class probabilities → strokes: stroke-vs-negative segments first, then a class for each.

A frame is a stroke frame when its probability of not being ``Negative`` reaches ``threshold``. Runs
of stroke frames become segments ``[begin, end)`` (end exclusive, as MediaEval XML); gaps shorter than
``max_gap`` frames are bridged, then segments shorter than ``min_length`` frames are dropped. Each
segment takes the stroke class with the highest mean probability over its frames.

Segments are runs of one mask, so they never share a frame: no two strokes of a video overlap, which keeps
the organisers' format rule that two predicted strokes have an IoU below 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tstcnn.io.mediaeval import Action

__all__ = ["mask_to_runs", "frames_to_segments"]


def mask_to_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[begin, end)`` of every run of True in a 1-D boolean array, in order."""
    mask = np.asarray(mask, dtype=bool)
    edges = np.diff(np.concatenate(([0], mask.view(np.int8), [0])))
    begins, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(b), int(e)) for b, e in zip(begins, ends)]


def _bridge(runs: list[tuple[int, int]], max_gap: int) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for begin, end in runs:
        if merged and begin - merged[-1][1] < max_gap:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((begin, end))
    return merged


def frames_to_segments(probs: np.ndarray, classes: Sequence[str], negative_index: int, *, threshold: float = 0.5,
                       min_length: int = 1, max_gap: int = 0) -> list[Action]:
    """Strokes found in per-frame probabilities ``(N, C)``.

    Args:
        probs: per-frame class probabilities (smoothed or not).
        classes: class names, index ``i`` for column ``i``.
        negative_index: the column of the rejection class.
        threshold: a frame is a stroke when ``1 - p(Negative) >= threshold``.
        min_length: segments shorter than this (in frames) are dropped.
        max_gap: gaps between segments shorter than this are filled first.

    Returns:
        ``Action(begin, end, move)`` per stroke, in time order, ``end`` exclusive, no two sharing a frame.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        raise ValueError(f"expected probabilities (frames, {len(classes)}), got {probs.shape}")
    if not 0 <= negative_index < len(classes):
        raise ValueError(f"negative_index {negative_index} outside the {len(classes)} classes")
    if len(classes) < 2:
        raise ValueError("detection needs at least one stroke class beside Negative")
    runs = _bridge(mask_to_runs(1.0 - probs[:, negative_index] >= threshold), max_gap)
    strokes = [c for c in range(len(classes)) if c != negative_index]
    actions = []
    for begin, end in runs:
        if end - begin < min_length:
            continue
        mean = probs[begin:end, strokes].mean(0)
        actions.append(Action(begin, end, classes[strokes[int(mean.argmax())]]))
    return actions
