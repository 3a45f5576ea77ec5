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
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Segment", "ClipInfo", "TemporalSampler", "centred_start", "window_indices"]


def centred_start(begin: int, end: int, length: int) -> int:
    """First frame of the ``length``-frame clip centred on frames ``begin … end - 1``: the one centring rule of
    training, evaluation, prediction and detection. A longer segment leaves ``(n − T) // 2`` frames before the
    clip; a shorter one gets ``(T − n) // 2`` copies of its first frame before it (the start is then before
    ``begin``)."""
    slack = (end - begin) - length
    return begin + slack // 2 if slack >= 0 else begin - (-slack) // 2


def window_indices(start: int, length: int, num_frames: int) -> np.ndarray:
    """The frames a window reads: ``start … start + length - 1`` clipped into ``[0, num_frames)`` (int64)."""
    if num_frames < 1 or length < 1:
        raise ValueError(f"a window needs a video of at least one frame and a positive length, got {num_frames} "
                         f"and {length}")
    return np.clip(np.arange(start, start + length, dtype=np.int64), 0, num_frames - 1)


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
        random: draw the start from N(centre, (segment length − T) / sigma_divisor); otherwise centre the clip.
        sigma_divisor: the paper's 6.
    """

    def __init__(self, length: int, *, random: bool, sigma_divisor: float = 6.0) -> None:
        if length < 1:
            raise ValueError(f"clip length must be at least 1 frame, got {length}")
        if sigma_divisor <= 0:
            raise ValueError(f"temporal_sigma_divisor must be positive, got {sigma_divisor}")
        self.length, self.random, self.sigma_divisor = length, random, sigma_divisor

    def start(self, begin: int, end: int, rng: np.random.Generator | None = None) -> int:
        """First frame of the clip; for a segment shorter than the clip, the (virtual) start of the centred pad."""
        if end <= begin:
            raise ValueError(f"empty segment [{begin}, {end})")
        slack = (end - begin) - self.length
        if slack <= 0 or not self.random:
            return centred_start(begin, end, self.length)
        if rng is None:
            raise ValueError("a random temporal sampler needs a random generator")
        drawn = rng.normal(begin + slack / 2, slack / self.sigma_divisor)
        return int(np.clip(np.rint(drawn), begin, begin + slack))

    def __call__(self, begin: int, end: int, rng: np.random.Generator | None = None) -> ClipInfo:
        start = self.start(begin, end, rng)
        indices = np.clip(np.arange(start, start + self.length, dtype=np.int64), begin, end - 1)
        return ClipInfo(start, indices)
