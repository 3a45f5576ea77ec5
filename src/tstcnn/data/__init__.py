"""Clips for training, evaluation, prediction and detection: one reader, two datasets, one loader.

:class:`ClipReader` turns stored frames and flow into model inputs; :class:`StrokeClips` (training and
evaluation samples, with the paper's temporal sampling and augmentation) and :class:`WindowClips` (inference
windows) read through it; :func:`build_dataloader` batches either.
"""

from tstcnn.data.dataset import StrokeClips, WindowClips, collect_segments, store_frame_stride
from tstcnn.data.functional import AffineParams
from tstcnn.data.loader import EpochSampler, build_dataloader, rank_and_world, seed_worker
from tstcnn.data.negatives import cap_negatives, mine_negatives, negative_cap, stroke_gaps
from tstcnn.data.reader import INPUT_CHANNELS, MODALITY_INPUTS, ClipReader
from tstcnn.data.sampling import (
    ClipInfo,
    Segment,
    TemporalSampler,
    centred_start,
    clip_span,
    resolve_frame_stride,
    window_indices,
)
from tstcnn.data.splits import SPLITS, assign_splits, split_by_video
from tstcnn.data.transforms import RandomAffine

__all__ = [
    "ClipReader", "StrokeClips", "WindowClips", "build_dataloader", "EpochSampler", "seed_worker", "rank_and_world",
    "collect_segments", "MODALITY_INPUTS", "INPUT_CHANNELS", "AffineParams", "RandomAffine", "Segment", "ClipInfo",
    "TemporalSampler", "centred_start", "window_indices", "stroke_gaps", "mine_negatives", "negative_cap",
    "cap_negatives", "SPLITS", "split_by_video", "assign_splits", "clip_span", "resolve_frame_stride",
    "store_frame_stride",
]
