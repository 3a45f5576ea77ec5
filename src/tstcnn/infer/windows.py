"""Sliding-window bookkeeping: where the windows of a video start and which frames each one covers.

A window of ``size`` frames starting at ``start`` covers frames ``start … start + size - 1``. Windows
advance by ``stride`` frames; one more window is added at the end when the stride does not land on it,
so the first and the last frame of every video are always covered. A video shorter than a window gets
one window centred on it, padded by repeating its first and last frames (as
``Store.read_clip`` does for frames outside ``[0, N)``).
"""

from __future__ import annotations

import numpy as np

from tstcnn.data.sampling import centred_start, window_indices

__all__ = ["window_starts", "clip_window_starts", "window_indices", "window_centres", "spread_to_frames"]


def _check(num_frames: int, size: int, stride: int = 1) -> None:
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_frames}")
    if size < 1 or stride < 1:
        raise ValueError(f"window size and stride must be positive, got size={size} stride={stride}")


def window_starts(num_frames: int, size: int, stride: int) -> np.ndarray:
    """Start frames of the sliding windows over a video of ``num_frames`` frames (int64, increasing).

    The last window ends exactly on the last frame; a video shorter than ``size`` gets one centred window
    with a negative start.
    """
    _check(num_frames, size, stride)
    if num_frames <= size:
        return np.array([centred_start(0, num_frames, size)], dtype=np.int64)
    last = num_frames - size
    starts = np.arange(0, last + 1, stride, dtype=np.int64)
    return starts if starts[-1] == last else np.append(starts, last)


def clip_window_starts(num_frames: int, size: int, count: int) -> np.ndarray:
    """Starts of ``count`` evenly spaced windows over a trimmed clip, for test-time aggregation.

    ``count == 1`` or a clip no longer than a window gives the single centred window, the one evaluation reads
    (:func:`~tstcnn.data.sampling.centred_start`).
    """
    _check(num_frames, size)
    if count < 1:
        raise ValueError(f"the number of windows must be positive, got {count}")
    if count == 1 or num_frames <= size:
        return np.array([centred_start(0, num_frames, size)], dtype=np.int64)
    return np.unique(np.linspace(0, num_frames - size, count).round().astype(np.int64))


def window_centres(starts: np.ndarray, size: int) -> np.ndarray:
    """The centre frame (a half-integer for even sizes) of each window."""
    return np.asarray(starts, dtype=np.float64) + (size - 1) / 2


def spread_to_frames(values: np.ndarray, centres: np.ndarray, num_frames: int) -> np.ndarray:
    """Per-window values ``(W, C)`` → per-frame values ``(num_frames, C)``.

    Each window speaks for its centre frame; frames between two centres are linearly interpolated and
    frames before the first (after the last) centre take its value.
    """
    values = np.asarray(values, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64)
    if values.ndim != 2 or len(values) != len(centres) or not len(values):
        raise ValueError(f"expected (windows, classes) values matching {len(centres)} centres, got {values.shape}")
    frames = np.arange(num_frames, dtype=np.float64)
    return np.stack([np.interp(frames, centres, values[:, c]) for c in range(values.shape[1])], axis=1)
