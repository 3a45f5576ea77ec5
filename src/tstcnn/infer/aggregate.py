"""Test-time aggregation of window probabilities, and per-frame smoothing for detection.

A trimmed clip longer than the network's window is classified from several windows, as in the
authors' baseline: the single centred window (``centre``), a majority vote (``vote``), the mean of the
probabilities (``mean``), or a mean weighted by a Gaussian centred on the clip (``gaussian``).

Long videos give one probability vector per frame (:func:`tstcnn.infer.windows.spread_to_frames`);
:func:`smooth_frames` smooths them over time with a sliding vote, a box mean or a Gaussian window.

Votes break ties by the mean probability: the score of a class is ``(votes + mean probability) /
(windows + 1)``, which ranks classes by votes first and still sums to 1.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d, uniform_filter1d

__all__ = ["CLIP_AGGREGATIONS", "FRAME_SMOOTHINGS", "aggregate_windows", "smooth_frames"]

CLIP_AGGREGATIONS = ("centre", "vote", "mean", "gaussian")
FRAME_SMOOTHINGS = ("none", "vote", "mean", "gaussian")


def _probabilities(probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or not len(probs):
        raise ValueError(f"expected probabilities of shape (windows or frames, classes), got {probs.shape}")
    return probs


def _one_hot_argmax(probs: np.ndarray) -> np.ndarray:
    votes = np.zeros_like(probs)
    votes[np.arange(len(probs)), probs.argmax(1)] = 1.0
    return votes


def aggregate_windows(probs: np.ndarray, method: str = "mean", positions: np.ndarray | None = None,
                      centre: float | None = None, sigma: float | None = None) -> np.ndarray:
    """Class scores ``(C,)`` (summing to 1) of one clip from its windows' probabilities ``(W, C)``.

    Args:
        probs: softmax output of each window.
        method: one of :data:`CLIP_AGGREGATIONS`.
        positions: centre frame of each window (default: ``0 … W-1``).
        centre: the clip's centre frame (default: the middle of ``positions``' range).
        sigma: standard deviation of the Gaussian weights, in frames (default: a quarter of the span
            of ``positions``; all windows weigh the same when they share one position).
    """
    probs = _probabilities(probs)
    if method not in CLIP_AGGREGATIONS:
        raise ValueError(f"unknown aggregation {method!r}; allowed: {', '.join(CLIP_AGGREGATIONS)}")
    positions = np.arange(len(probs), dtype=np.float64) if positions is None else np.asarray(positions, float)
    if len(positions) != len(probs):
        raise ValueError(f"{len(positions)} positions for {len(probs)} windows")
    if centre is None:
        centre = (positions.min() + positions.max()) / 2
    if method == "centre":
        return probs[int(np.argmin(np.abs(positions - centre)))].copy()
    if method == "mean":
        return probs.mean(0)
    if method == "vote":
        return (_one_hot_argmax(probs).sum(0) + probs.mean(0)) / (len(probs) + 1)
    span = positions.max() - positions.min()
    sigma = sigma if sigma is not None else span / 4
    if sigma <= 0:
        return probs.mean(0)
    weights = np.exp(-0.5 * ((positions - centre) / sigma) ** 2)
    return (weights[:, None] * probs).sum(0) / weights.sum()


def smooth_frames(probs: np.ndarray, method: str = "gaussian", width: int = 1) -> np.ndarray:
    """Smooth per-frame probabilities ``(N, C)`` over time; returns ``(N, C)`` rows summing to 1.

    Args:
        probs: per-frame class probabilities.
        method: one of :data:`FRAME_SMOOTHINGS`: ``vote`` (majority of the per-frame decisions in a
            window of ``width`` frames), ``mean`` (box filter), ``gaussian`` (σ = ``width`` / 6, so the
            window holds ±3σ).
        width: the smoothing window in frames; 1 or less leaves the probabilities unchanged.
    Edges repeat the first and last frames.
    """
    probs = _probabilities(probs)
    if method not in FRAME_SMOOTHINGS:
        raise ValueError(f"unknown smoothing {method!r}; allowed: {', '.join(FRAME_SMOOTHINGS)}")
    if method == "none" or width <= 1:
        return probs.copy()
    if method == "mean":
        return uniform_filter1d(probs, size=width, axis=0, mode="nearest")
    if method == "vote":
        votes = uniform_filter1d(_one_hot_argmax(probs), size=width, axis=0, mode="nearest")
        return (votes * width + uniform_filter1d(probs, size=width, axis=0, mode="nearest")) / (width + 1)
    return gaussian_filter1d(probs, sigma=width / 6, axis=0, mode="nearest", truncate=3.0)
