"""Train / validation / test splits, always by video so that no video gives samples to two splits.

``data.split_by = "layout"`` keeps the split each video got from its dataset layout (MediaEval folders, CSV).
``data.split_by = "video"`` re-splits the labelled videos at random with ``data.split_seed`` in the proportions
``data.split_fractions``, per stratum (the class of a trimmed clip, or "annotated" for long videos with
strokes), so that small classes appear in every split when they can. Videos without any label keep their layout
split (they give no samples).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import get_args

import numpy as np

from tstcnn.config import DataConfig, SplitMode

__all__ = ["SPLITS", "SPLIT_MODES", "split_by_video", "assign_splits"]

SPLITS: tuple[str, ...] = ("train", "validation", "test")
SPLIT_MODES: tuple[str, ...] = get_args(SplitMode)


def split_by_video(strata: Mapping[str, str], fractions: Sequence[float], seed: int) -> dict[str, str]:
    """Map each video id to a split of :data:`SPLITS`.

    Args:
        strata: video id → stratum; each stratum is shuffled and cut in the given proportions.
        fractions: (train, validation, test), non-negative, summing to 1.
        seed: the same seed and ids always give the same split.
    """
    fractions = np.asarray(fractions, np.float64)
    if fractions.shape != (3,) or (fractions < 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
    groups: dict[str, list[str]] = defaultdict(list)
    for video_id in sorted(strata):
        groups[strata[video_id]].append(video_id)
    rng = np.random.default_rng(seed)
    bounds = np.cumsum(fractions)
    assignment: dict[str, str] = {}
    for stratum in sorted(groups):
        ids = groups[stratum]
        order = rng.permutation(len(ids))
        cuts = np.rint(bounds * len(ids)).astype(int)
        for position, index in enumerate(order):
            assignment[ids[index]] = SPLITS[int(np.searchsorted(cuts, position, side="right"))]
    return assignment


def assign_splits(entries: Iterable, data: DataConfig) -> dict[str, str]:
    """Video id → split for the store ``entries`` (:class:`~tstcnn.prep.store.VideoEntry`) under ``data``."""
    entries = list(entries)
    if data.split_by == "layout":
        return {e.id: e.split for e in entries}
    if data.split_by != "video":
        raise ValueError(f"unknown data.split_by {data.split_by!r}; allowed: {', '.join(SPLIT_MODES)}")
    labelled = {e.id: (e.label if e.label is not None else "annotated") for e in entries if e.label or e.actions}
    assignment = split_by_video(labelled, data.split_fractions, data.split_seed)
    return {e.id: assignment.get(e.id, e.split) for e in entries}
