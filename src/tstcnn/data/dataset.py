"""The datasets of the one data path: stroke clips for training and evaluation, windows for inference.

Samples of a split are (:class:`~tstcnn.data.sampling.Segment`):

* trimmed clips (a video with a ``label``): the whole video;
* strokes of annotated long videos (``actions`` with a class);
* negatives mined between the strokes of those videos (:mod:`tstcnn.data.negatives`), capped, when the
  taxonomy has a rejection class.

An item is ``(inputs, label)``: ``inputs["rgb"]`` float32 ``(3, T, H, W)`` in [0, 1] and/or ``inputs["flow"]``
float32 ``(2, T, H, W)`` in [-1, 1] (flow divided by the flow scale, clipped); only the modalities the model
reads are loaded. Call the model as ``model(**inputs)``. Both datasets read through one
:class:`~tstcnn.data.reader.ClipReader` and fill batches in place through ``load(key, out)``, which
:func:`~tstcnn.data.loader.build_dataloader` uses.

With a frame stride ``k`` (``data.frame_stride``, or the ``frame_stride`` argument) clips take every ``k``-th
source frame and span ``(T − 1)·k + 1`` source frames (:mod:`tstcnn.data.sampling`); window starts stay in
source frames.

Randomness is per item, from ``(seed, epoch, index)``: the same seed gives the same clips whatever the number
of workers, and each epoch differs. The loader's sampler passes the epoch along with each index; an integer
index uses the epoch set by :meth:`StrokeClips.set_epoch` (default 0).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from tstcnn.config import DataConfig
from tstcnn.data import functional as F
from tstcnn.data.negatives import cap_negatives, context_windows, mine_negatives, negative_cap
from tstcnn.data.reader import ClipReader
from tstcnn.data.sampling import (
    Segment,
    TemporalSampler,
    clip_span,
    median_frame_rate,
    resolve_frame_stride,
    window_indices,
)
from tstcnn.data.splits import assign_splits
from tstcnn.data.transforms import RandomAffine
from tstcnn.prep.store import Store, VideoEntry
from tstcnn.taxonomy import NEGATIVE, Taxonomy

__all__ = ["StrokeClips", "WindowClips", "collect_segments", "store_frame_stride"]

logger = logging.getLogger(__name__)


def store_frame_stride(setting: int | str, store: Store, clip_length: int) -> int:
    """``data.frame_stride`` resolved for ``store``: an integer as it is, ``auto`` from the median frame rate of
    its videos (:func:`~tstcnn.data.sampling.resolve_frame_stride`)."""
    if setting != "auto":
        return resolve_frame_stride(setting, 0.0, clip_length)
    fps = median_frame_rate(e.fps for e in store.videos())
    stride = resolve_frame_stride(setting, fps, clip_length)
    logger.info("frame_stride auto: %d for %g fps videos and %d-frame clips (each spans %d source frames)", stride,
                fps, clip_length, clip_span(clip_length, stride))
    return stride


def collect_segments(entries: list[VideoEntry], classes: Taxonomy, data: DataConfig, clip_length: int,
                     seed: int = 0) -> list[Segment]:
    """The samples of ``entries``: trimmed clips, strokes, and capped negatives mined between strokes at least
    ``clip_length`` source frames long (a clip's span)."""
    segments: list[Segment] = []
    for entry in entries:
        if entry.actions:
            segments += [Segment(entry.id, a.begin, min(a.end, entry.frames), a.move)
                         for a in entry.actions if a.move is not None and a.begin < min(a.end, entry.frames)]
        elif entry.label is not None:
            segments.append(Segment(entry.id, 0, entry.frames, entry.label))
    for segment in segments:
        if segment.label not in classes:
            raise ValueError(f"video {segment.video_id!r}: class {segment.label!r} is not in the taxonomy "
                             f"({len(classes)} classes)")
    if classes.negative_index is not None and data.negatives_per_class > 0:
        counts = Counter(s.label for s in segments if s.label != NEGATIVE)
        cap = negative_cap(counts, data.negatives_per_class)
        mined = mine_negatives(((e.id, e.actions, e.frames) for e in entries), NEGATIVE, clip_length)
        segments += cap_negatives(mined, cap, seed)
    if classes.negative_index is not None and data.context_windows > 0:
        segments += context_windows(((e.id, e.actions, e.frames) for e in entries), NEGATIVE, data.context_windows,
                                    clip_length, seed)
    return segments


class StrokeClips(Dataset):
    """Clips of ``clip_size`` (T, H, W) from the ``split`` of a prepared store, for ``modality``.

    Args:
        store: the prepared store.
        split: "train", "validation", "test" (as :func:`~tstcnn.data.splits.assign_splits` gives them).
        modality: a model modality (rgb, flow, twin, i3d-rgb, i3d-flow); decides which inputs are read.
        clip_size: (T, H, W) of the model input.
        augment: random temporal start and random affine per clip (training); otherwise the centred ROI crop.
        data: sampling, augmentation, negatives and split settings.
        classes: the label order; the store's classes when None.
        seed: base of all randomness (augmentation, choice of negatives).
        flow_scale: the flow normalisation (a trained run's); the store's when None.
        frame_stride: take every k-th source frame; ``data.frame_stride`` resolved for ``store`` when None.
    """

    def __init__(self, store: Store, split: str, modality: str, clip_size: tuple[int, int, int], augment: bool,
                 data: DataConfig, classes: Taxonomy | None = None, seed: int = 0,
                 flow_scale: float | None = None, frame_stride: int | None = None) -> None:
        if frame_stride is None:
            frame_stride = store_frame_stride(data.frame_stride, store, int(clip_size[0]))
        self.reader = ClipReader(store, modality, clip_size, flow_scale, frame_stride)
        self.frame_stride = self.reader.frame_stride
        self.store, self.split, self.modality, self.augment, self.data = store, split, modality, augment, data
        self.inputs, self.clip_size = self.reader.inputs, self.reader.clip_size
        self.classes = classes if classes is not None else Taxonomy(tuple(store.classes))
        self.seed, self.epoch = seed, 0
        splits = assign_splits(store.videos(), data)
        entries = [e for e in store.videos() if splits[e.id] == split]
        for entry in entries:
            self.reader.check(entry)
        length = self.clip_size[0]
        self.segments = collect_segments(entries, self.classes, data, clip_span(length, self.frame_stride), seed)
        self.labels = [self.classes.index(s.label) for s in self.segments]
        self.temporal = TemporalSampler(length, random=augment, sigma_divisor=data.temporal_sigma_divisor,
                                        stride=self.frame_stride)
        self.spatial = RandomAffine.from_config(data) if augment else None

    def __len__(self) -> int:
        return len(self.segments)

    def __repr__(self) -> str:
        return (f"StrokeClips(split={self.split!r}, modality={self.modality!r}, clip_size={self.clip_size}, "
                f"frame_stride={self.frame_stride}, augment={self.augment}, samples={len(self)})")

    def set_epoch(self, epoch: int) -> None:
        """The epoch used for integer indices (the loader's sampler passes its own)."""
        self.epoch = epoch

    def class_counts(self) -> dict[str, int]:
        """Samples per class name, in taxonomy order (classes without samples omitted)."""
        counts = Counter(s.label for s in self.segments)
        return {name: counts[name] for name in self.classes.classes if counts[name]}

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[dict[str, torch.Tensor], int]:
        return self.load(key)

    def load(self, key: int | tuple[int, int], out: dict[str, np.ndarray] | None = None
             ) -> tuple[dict[str, torch.Tensor], int]:
        """Item ``key`` (an index, or ``(index, epoch)``), its inputs written into ``out`` arrays when given."""
        index, epoch = key if isinstance(key, tuple) else (key, self.epoch)
        segment = self.segments[index]
        rng = np.random.default_rng((self.seed, epoch, index))
        clip = self.temporal(segment.begin, segment.end, rng)
        params = self.spatial(rng, self.clip_size[1:]) if self.spatial is not None else F.AffineParams()
        return self.reader.read(segment.video_id, clip.indices, params, out), self.labels[index]


class WindowClips(Dataset):
    """Windows of ``T`` frames, one per ``(video_id, start)`` of ``windows``, the plain ROI crop (inference).

    A window reads frames ``start + k·i`` (``i < T``, ``k`` the reader's frame stride) clipped into its video, so
    windows that hang over an end repeat the edge frame, as a short clip is padded in training. Starts are source
    frames; a window spans the reader's ``span`` of them. Items are ``(inputs, window index)``.
    """

    def __init__(self, reader: ClipReader, windows: Sequence[tuple[str, int]]) -> None:
        self.reader = reader
        self.windows = [(str(video_id), int(start)) for video_id, start in windows]
        self.frames = {}
        for video_id, _ in self.windows:
            if video_id not in self.frames:
                entry = reader.store.entry(video_id)
                reader.check(entry)
                self.frames[video_id] = entry.frames
        self.inputs, self.clip_size = reader.inputs, reader.clip_size
        self.frame_stride, self.span = reader.frame_stride, reader.span

    @classmethod
    def of_video(cls, reader: ClipReader, video_id: str, starts: Sequence[int]) -> WindowClips:
        """The windows of one video starting at ``starts``."""
        return cls(reader, [(video_id, int(s)) for s in starts])

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[dict[str, torch.Tensor], int]:
        return self.load(key)

    def load(self, key: int | tuple[int, int], out: dict[str, np.ndarray] | None = None
             ) -> tuple[dict[str, torch.Tensor], int]:
        index = key[0] if isinstance(key, tuple) else key
        video_id, start = self.windows[index]
        indices = window_indices(start, self.clip_size[0], self.frames[video_id], self.frame_stride)
        return self.reader.read(video_id, indices, F.AffineParams(), out), index
