"""Region of interest: where the player moves, from the optical flow norm, smoothed over time.

As in the authors' MediaEval 2019 and MTAP 2020 papers, the centre of a frame's region of interest combines
the position of the maximum of the flow norm with the centre of gravity of the strongly moving pixels
(norm ≥ ``strong`` × maximum, weighted by the norm), on the norm averaged over a few pixels. Frames with almost
no motion give no estimate and are filled from their neighbours; the track is then smoothed with a Gaussian of
``prep.roi_smoothing`` frames.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

__all__ = ["frame_centre", "smooth_centres"]


def frame_centre(norm: np.ndarray, scale: float = 1.0, strong: float = 0.5, min_motion: float = 0.5,
                 blur: int = 5) -> tuple[float, float, bool]:
    """ROI centre ``(x, y, found)`` of one frame's flow norm ``(h, w)``.

    Args:
        norm: flow magnitude, in pixels of the full-resolution frame.
        scale: size of one ``norm`` pixel in full-resolution pixels (2 for half-resolution flow); the returned
            centre is in full-resolution pixel coordinates.
        strong: pixels at or above this fraction of the maximum count as strongly moving.
        min_motion: below this maximum (pixels), the frame has no usable motion and ``found`` is False.
        blur: the norm is first averaged over ``blur``×``blur`` pixels, so that an isolated spurious vector
            (frequent with fast flow methods) cannot outweigh a moving body; 1 keeps it as it is.
    """
    if blur > 1:
        norm = cv2.blur(np.asarray(norm, np.float32), (blur, blur), borderType=cv2.BORDER_CONSTANT)
    peak = float(norm.max())
    h, w = norm.shape
    if not np.isfinite(peak) or peak < min_motion:
        return (w * scale / 2, h * scale / 2, False)
    py, px = np.unravel_index(int(np.argmax(norm)), norm.shape)
    weights = np.where(norm >= strong * peak, norm, 0.0)
    total = weights.sum()
    gy = float((weights.sum(axis=1) * np.arange(h)).sum() / total)
    gx = float((weights.sum(axis=0) * np.arange(w)).sum() / total)
    to_full = lambda v: (v + 0.5) * scale  # noqa: E731 - pixel centre → full-resolution coordinate
    return (to_full((px + gx) / 2), to_full((py + gy) / 2), True)


def smooth_centres(centres: np.ndarray, found: np.ndarray, sigma: float, frame_size: tuple[int, int]
                   ) -> np.ndarray:
    """Fill frames without an estimate by linear interpolation, then smooth with a Gaussian of ``sigma`` frames.

    Returns ``(N, 2)`` float32; the frame centre when no frame has motion. ``frame_size`` is (width, height).
    """
    centres = np.asarray(centres, np.float64).reshape(-1, 2)
    found = np.asarray(found, bool)
    n = len(centres)
    if not found.any():
        return np.tile(np.asarray(frame_size, np.float32) / 2, (n, 1))
    known = np.flatnonzero(found)
    frames = np.arange(n)
    filled = np.stack([np.interp(frames, known, centres[known, k]) for k in range(2)], axis=1)
    if sigma > 0 and n > 1:
        filled = gaussian_filter1d(filled, sigma, axis=0, mode="nearest")
    return filled.astype(np.float32)
