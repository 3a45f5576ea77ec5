"""Temporal clip sampling inside a stroke (paper section IV, the authors' code).

A sample is a :class:`Segment` of a prepared video: frames ``begin`` (inclusive) to ``end`` (exclusive) and a
class name. A clip of ``T`` frames is cut from it by a :class:`TemporalSampler`:

* training: the clip start is drawn from a normal law centred so that the clip sits in the middle of the
  segment, with ``σ = (length − T) / sigma_divisor``, rounded and kept inside the segment (the whole clip lies
  within ``[begin, end)``);
* validation and test: the centred clip, ``start = begin + (length − T) // 2``;
* a segment shorter than ``T`` is padded by repeating its first and last frames, centred (``(T − length) // 2``
  copies of the first frame before it, the rest of the last frame after it), so that a clip never shows frames
  from outside its segment — the same rule for trimmed clips and for strokes of long videos.

With a frame stride ``k`` (``data.frame_stride``) a clip takes every ``k``-th source frame: its ``T`` frames
span ``S = (T − 1)·k + 1`` source frames (:func:`clip_span`), and every rule above holds with ``S`` in place of
``T`` (the start drawn or centred over the segment's slack ``length − S``), the frames being ``start + k·i``
clipped into the segment. ``k = 1`` is the plain clip. ``auto`` picks ``k`` from the videos' frame rate
(:func:`resolve_frame_stride`) so that a clip lasts about the paper's 100 frames at 120 fps.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

__all__ = ["Segment", "ClipInfo", "TemporalSampler", "AUTO_CLIP_SECONDS", "centred_start", "clip_span",
           "window_indices", "median_frame_rate", "resolve_frame_stride"]

logger = logging.getLogger(__name__)

AUTO_CLIP_SECONDS = 100 / 120  # the paper's clip: 100 frames of its 120 fps videos


def clip_span(length: int, stride: int = 1) -> int:
    """Source frames spanned by a clip of ``length`` frames taking every ``stride``-th one: ``(T − 1)·k + 1``."""
    if length < 1 or stride < 1:
        raise ValueError(f"clip length and frame stride must be positive, got {length} and {stride}")
    return (length - 1) * stride + 1


def median_frame_rate(rates: Iterable[float]) -> float:
    """The videos' frame rate for ``frame_stride: auto``: their median when they differ (logged), 0 when none is
    known (0, NaN)."""
    known = [float(r) for r in rates if math.isfinite(r) and r > 0]
    if not known:
        return 0.0
    median = float(np.median(known))
    if min(known) != max(known):
        logger.info("videos have frame rates from %g to %g fps; frame_stride auto uses their median, %g fps",
                    min(known), max(known), median)
    return median


def resolve_frame_stride(setting: int | str, fps: float, clip_length: int) -> int:
    """The frame stride ``k`` of ``data.frame_stride`` (an integer, or ``auto``) for videos at ``fps``.

    ``auto`` is ``max(1, round(fps × 0.83 / T))``, so a clip of ``T`` frames lasts about the paper's 0.83 s
    (100 frames at 120 fps); an unknown frame rate (0) gives 1.
    """
    if setting != "auto":
        if isinstance(setting, bool) or not isinstance(setting, (int, np.integer)) or setting < 1:
            raise ValueError(f"frame stride must be an integer >= 1 or auto, got {setting!r}")
        return int(setting)
    if clip_length < 1:
        raise ValueError(f"clip length must be at least 1 frame, got {clip_length}")
    if not math.isfinite(fps) or fps <= 0:
        return 1
    return max(1, round(fps * AUTO_CLIP_SECONDS / clip_length))


def centred_start(begin: int, end: int, length: int) -> int:
    """First frame of the ``length``-frame clip centred on frames ``begin … end - 1``: the one centring rule of
    training, evaluation, prediction and detection. A longer segment leaves ``(n − T) // 2`` frames before the
    clip; a shorter one gets ``(T − n) // 2`` copies of its first frame before it (the start is then before
    ``begin``)."""
    slack = (end - begin) - length
    return begin + slack // 2 if slack >= 0 else begin - (-slack) // 2


def window_indices(start: int, length: int, num_frames: int, stride: int = 1) -> np.ndarray:
    """The ``length`` frames a window reads: ``start + stride·i`` clipped into ``[0, num_frames)`` (int64)."""
    if num_frames < 1 or length < 1 or stride < 1:
        raise ValueError(f"a window needs a video of at least one frame, a positive length and stride, got "
                         f"{num_frames}, {length} and {stride}")
    return np.clip(start + stride * np.arange(length, dtype=np.int64), 0, num_frames - 1)


class Segment(NamedTuple):
    """Frames ``begin`` … ``end - 1`` of video ``video_id``, of class ``label`` (a class name)."""

    video_id: str
    begin: int
    end: int
    label: str

    @property
    def length(self) -> int:
        return self.end - self.begin


class ClipInfo(NamedTuple):
    """Where a clip was cut: its first frame ``start`` (before padding) and the video frame of each clip frame."""

    start: int
    indices: np.ndarray  # (T,) int64, non-decreasing, inside [begin, end)


class TemporalSampler:
    """Cut ``length``-frame clips from segments, at random (``random=True``) or centred.

    Args:
        length: frames per clip (T).
        random: draw the start from N(centre, (segment length − S) / sigma_divisor); otherwise centre the clip.
        sigma_divisor: the paper's 6.
        stride: take every ``stride``-th source frame; the clip spans ``S = (T − 1)·stride + 1`` frames.
    """

    def __init__(self, length: int, *, random: bool, sigma_divisor: float = 6.0, stride: int = 1) -> None:
        if length < 1:
            raise ValueError(f"clip length must be at least 1 frame, got {length}")
        if sigma_divisor <= 0:
            raise ValueError(f"temporal_sigma_divisor must be positive, got {sigma_divisor}")
        self.length, self.random, self.sigma_divisor, self.stride = length, random, sigma_divisor, stride
        self.span = clip_span(length, stride)

    def start(self, begin: int, end: int, rng: np.random.Generator | None = None) -> int:
        """First frame of the clip; for a segment shorter than the clip's span, the (virtual) start of the centred
        pad."""
        if end <= begin:
            raise ValueError(f"empty segment [{begin}, {end})")
        slack = (end - begin) - self.span
        if slack <= 0 or not self.random:
            return centred_start(begin, end, self.span)
        if rng is None:
            raise ValueError("a random temporal sampler needs a random generator")
        drawn = rng.normal(begin + slack / 2, slack / self.sigma_divisor)
        return int(np.clip(np.rint(drawn), begin, begin + slack))

    def __call__(self, begin: int, end: int, rng: np.random.Generator | None = None) -> ClipInfo:
        start = self.start(begin, end, rng)
        indices = np.clip(start + self.stride * np.arange(self.length, dtype=np.int64), begin, end - 1)
        return ClipInfo(start, indices)
