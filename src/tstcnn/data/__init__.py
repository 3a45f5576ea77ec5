"""Stroke clips for training and evaluation: temporal sampling, the paper's augmentation, negatives, splits."""

from tstcnn.data.dataset import (
    MODALITY_INPUTS, EpochSampler, StrokeClips, build_dataloader, collect_segments, seed_worker,
)
from tstcnn.data.functional import AffineParams
from tstcnn.data.negatives import cap_negatives, mine_negatives, negative_cap, stroke_gaps
from tstcnn.data.sampling import ClipInfo, Segment, TemporalSampler
from tstcnn.data.splits import SPLITS, assign_splits, split_by_video
from tstcnn.data.transforms import RandomAffine

__all__ = [
    "StrokeClips", "build_dataloader", "EpochSampler", "seed_worker", "collect_segments", "MODALITY_INPUTS",
    "AffineParams", "RandomAffine", "Segment", "ClipInfo", "TemporalSampler",
    "stroke_gaps", "mine_negatives", "negative_cap", "cap_negatives", "SPLITS", "split_by_video", "assign_splits",
]
