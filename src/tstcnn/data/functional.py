"""Crop, rotate, zoom and shift clips straight from the prepared store's arrays, one warp per frame and plane.

The store (:mod:`tstcnn.prep.store`) keeps frames as I420 planes (Y at full resolution, U and V at half) and
the optical flow at half resolution as int8 codes. A clip is cut around the per-frame ROI window (the same
window :meth:`~tstcnn.prep.store.Store.read_clip` reads: centred on the smoothed ROI, kept inside the frame, at
even offsets) and transformed by one affine map per clip, ``dst = A · src + b_t`` in full-resolution pixel
coordinates (pixel centres at integers), with ``A = zoom · R(angle)`` and ``b_t`` per frame. Each plane is warped
once, directly from the stored resolution to the output size, so nothing is decoded, upsampled or converted at
full frame size:

* Y with ``(A, b_t)``; U and V with the same map expressed between half-resolution grids (a half-resolution
  sample ``j`` sits at full-resolution ``2j + 0.5``); then one OpenCV I420 → RGB conversion for the whole clip,
  the conversion the store's own reader uses;
* flow: the read part's int8 codes decoded (the store's square-root companding) through a 256-entry table,
  its *vectors* multiplied by ``A`` (a displacement ``d`` in the frame is ``A·d`` in the warped image) and by
  ``1 / flow_scale``, then each component warped from the half-resolution grid straight into its plane of the
  ``(2, T, H, W)`` output, clipped to [-1, 1] at the end.

Angles follow OpenCV (``cv2.getRotationMatrix2D``): positive is counter-clockwise on screen, with ``y``
pointing down, so ``R(90°)`` turns a rightward flow ``(1, 0)`` into an upward one ``(0, -1)``. Samples that fall
outside the frame repeat its edge pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np
import torch

__all__ = ["AffineParams", "window_centres", "clip_matrices", "half_grid_matrices", "warp_yuv420",
           "warp_flow", "rgb_to_tensor", "flow_to_tensor"]

_WARP = {"flags": cv2.INTER_LINEAR, "borderMode": cv2.BORDER_REPLICATE}


class AffineParams(NamedTuple):
    """One clip's spatial transform: ``angle`` in degrees (counter-clockwise on screen), ``zoom`` (> 1 enlarges),
    ``shift`` (x, y) of the content in output pixels. The default is the identity: the plain ROI crop."""

    angle: float = 0.0
    zoom: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)

    def linear(self) -> np.ndarray:
        """The 2×2 matrix ``A = zoom · R(angle)`` applied to image coordinates and to flow vectors."""
        theta = math.radians(self.angle)
        cos, sin = self.zoom * math.cos(theta), self.zoom * math.sin(theta)
        return np.array([[cos, sin], [-sin, cos]])


def window_centres(roi: np.ndarray, size: tuple[int, int], frame: tuple[int, int]) -> np.ndarray:
    """Centres ``(T, 2)`` (x, y) of the crop windows of ``size`` (h, w) for ROI centres ``roi`` ``(T, 2)``.

    The window is centred on the ROI, kept inside the ``frame`` (height, width) and starts at an even pixel, as
    the store's reader does; the centre is returned in pixel-centre coordinates (``origin + (w − 1) / 2``).
    """
    h, w = size
    centres = np.empty((len(roi), 2), np.float64)
    for axis, (extent, limit) in enumerate(((w, frame[1]), (h, frame[0]))):
        starts = np.clip(np.floor(np.asarray(roi[:, axis], np.float64) - extent / 2), 0, limit - extent)
        centres[:, axis] = starts - starts % 2 + (extent - 1) / 2
    return centres


def clip_matrices(centres: np.ndarray, size: tuple[int, int], params: AffineParams) -> np.ndarray:
    """Per-frame affine maps ``(T, 2, 3)`` from frame pixels to output pixels: ``centres`` go to the output
    centre (plus ``params.shift``), the content turned and zoomed by ``params`` around it."""
    h, w = size
    linear = params.linear()
    target = np.array([(w - 1) / 2 + params.shift[0], (h - 1) / 2 + params.shift[1]])
    matrices = np.empty((len(centres), 2, 3), np.float64)
    matrices[:, :, :2] = linear
    matrices[:, :, 2] = target - centres @ linear.T
    return matrices


def half_grid_matrices(matrices: np.ndarray, output_half: bool) -> np.ndarray:
    """The same maps with the source on the half-resolution grid (sample ``j`` at ``2j + 0.5``), and the output
    too when ``output_half`` (for chroma planes)."""
    linear, offset = matrices[:, :, :2], matrices[:, :, 2]
    out = np.empty_like(matrices)
    offset = offset + linear.sum(axis=2) * 0.5  # A · (0.5, 0.5)
    if output_half:
        out[:, :, :2] = linear
        out[:, :, 2] = (offset - 0.5) / 2
    else:
        out[:, :, :2] = 2 * linear
        out[:, :, 2] = offset
    return out


def _source_parts(matrices: np.ndarray, size: tuple[int, int], shape: tuple[int, int]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """For each frame, the part ``(x0, y0, x1, y1)`` of a ``shape`` (h, w) source that its matrix samples for an
    output of ``size`` (a pixel of margin for the interpolation, clamped to the source), and the matrix that
    warps that part. Computed for the whole clip at once, so the per-frame loop only slices and warps."""
    h, w = size
    inverse = np.linalg.inv(matrices[:, :, :2])  # (T, 2, 2)
    corners = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [-0.5, h - 0.5], [w - 0.5, h - 0.5]])
    points = np.einsum("tij,tkj->tki", inverse, corners[None] - matrices[:, None, :, 2])  # (T, 4, 2)
    low = np.floor(points.min(axis=1)).astype(np.int64) - 1
    high = np.ceil(points.max(axis=1)).astype(np.int64) + 2
    limits = np.array([shape[1], shape[0]])
    low = np.clip(low, 0, limits - 1)
    high = np.maximum(np.minimum(high, limits), low + 1)
    shifted = matrices.copy()
    shifted[:, :, 2] += np.einsum("tij,tj->ti", matrices[:, :, :2], low)
    return np.concatenate([low, high], axis=1), shifted


def warp_yuv420(y: np.ndarray, u: np.ndarray, v: np.ndarray, indices: Sequence[int], matrices: np.ndarray,
                size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 ``(T, h, w, 3)`` of frames ``indices`` of the I420 planes ``y (N, H, W)``, ``u, v (N, H/2, W/2)``
    warped by ``matrices`` (full-resolution maps, :func:`clip_matrices`) to ``size`` (h, w), both even."""
    h, w = size
    if h % 2 or w % 2:
        raise ValueError(f"I420 output size must be even, got {h}x{w}")
    t = len(indices)
    luma, chroma = t * h * w, t * h * w // 4
    buffer = np.empty(luma + 2 * chroma, np.uint8)  # one tall I420 image: all Y planes, then all U, then all V
    y_out = buffer[:luma].reshape(t, h, w)
    u_out = buffer[luma:luma + chroma].reshape(t, h // 2, w // 2)
    v_out = buffer[luma + chroma:].reshape(t, h // 2, w // 2)
    luma_boxes, luma_matrices = _source_parts(matrices, size, y.shape[1:3])
    chroma_boxes, chroma_matrices = _source_parts(half_grid_matrices(matrices, output_half=True),
                                                  (h // 2, w // 2), u.shape[1:3])
    for i, frame in enumerate(indices):
        x0, y0, x1, y1 = luma_boxes[i]
        cv2.warpAffine(y[frame, y0:y1, x0:x1], luma_matrices[i], (w, h), dst=y_out[i], **_WARP)
        x0, y0, x1, y1 = chroma_boxes[i]
        cv2.warpAffine(u[frame, y0:y1, x0:x1], chroma_matrices[i], (w // 2, h // 2), dst=u_out[i], **_WARP)
        cv2.warpAffine(v[frame, y0:y1, x0:x1], chroma_matrices[i], (w // 2, h // 2), dst=v_out[i], **_WARP)
    return cv2.cvtColor(buffer.reshape(t * h * 3 // 2, w), cv2.COLOR_YUV2RGB_I420).reshape(t, h, w, 3)


def warp_flow(flow: np.ndarray, indices: Sequence[int], matrices: np.ndarray, size: tuple[int, int], *,
              scale: float = 1.0, table: np.ndarray | None = None, out: np.ndarray | None = None,
              step: int = 1) -> np.ndarray:
    """Planar float32 ``(2, T, h, w)`` of frames ``indices`` of the half-resolution flow ``(N, H/2, W/2, 2)``,
    warped by ``matrices`` (full-resolution maps) to ``size`` (h, w), its vectors multiplied by the maps' linear
    part and by ``scale`` (not clipped).

    With ``step`` k > 1 (clips taking every k-th frame) each clip frame ``f`` gets the mean of the flows of frames
    ``f … f + k − 1`` (those inside the video): the motion over the clip's step, per source frame, so the store's
    one-frame ``flow_scale`` still fits. The flows are averaged in place, without following the motion (an
    approximation), on the small part that is read, before the one warp.

    The vectors are turned on the small part of the source that is read, before the warp (both are linear), and
    each component is warped straight into its plane of the output: no full-size temporary.

    Args:
        scale: e.g. 1 / flow_scale.
        table: 256 values indexed by the stored int8 codes viewed as uint8 (the store's
            :meth:`~tstcnn.prep.store.Store.flow_table`), applied to the read part only; None takes the values
            as they are.
        out: a float32 ``(2, T, h, w)`` array to write into (e.g. a slot of a batch).
    """
    h, w = size
    out = np.empty((2, len(indices), h, w), np.float32) if out is None else out
    boxes, source_matrices = _source_parts(half_grid_matrices(matrices, output_half=False), size, flow.shape[1:3])
    vector_matrices = (matrices[:, :, :2] * scale).astype(np.float32)
    lookup = None if table is None else np.asarray(table, np.float32)
    if step < 1:
        raise ValueError(f"flow step must be at least 1 frame, got {step}")
    for i, frame in enumerate(indices):
        x0, y0, x1, y1 = boxes[i]
        if step == 1:
            part = flow[frame, y0:y1, x0:x1]
            part = part.astype(np.float32) if lookup is None else lookup[part.view(np.uint8)]
        else:
            parts = flow[frame:min(frame + step, len(flow)), y0:y1, x0:x1]
            parts = parts.astype(np.float32) if lookup is None else lookup[parts.view(np.uint8)]
            part = parts.mean(axis=0, dtype=np.float32)
        dx, dy = cv2.split(cv2.transform(part, vector_matrices[i]))
        cv2.warpAffine(dx, source_matrices[i], (w, h), dst=out[0, i], **_WARP)
        cv2.warpAffine(dy, source_matrices[i], (w, h), dst=out[1, i], **_WARP)
    return out


def rgb_to_tensor(rgb: np.ndarray, out: np.ndarray | None = None) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` → contiguous float32 ``(3, T, H, W)`` in [0, 1], one pass per channel, written into
    ``out`` when given (e.g. a slot of a batch).

    Done in NumPy, single-threaded whatever torch's thread setting: in a loading process, torch's threads
    would only wait on each other.
    """
    t, h, w, _ = rgb.shape
    out = np.empty((3, t, h, w), np.float32) if out is None else out
    for channel in range(3):
        np.multiply(rgb[..., channel], np.float32(1 / 255), out=out[channel])
    return torch.from_numpy(out)


def flow_to_tensor(flow: np.ndarray) -> torch.Tensor:
    """Planar flow ``(2, T, H, W)`` (normalised, from :func:`warp_flow`) → contiguous float32 tensor clipped to
    [-1, 1], in place when the array is already contiguous."""
    flow = np.ascontiguousarray(flow, np.float32)
    np.clip(flow, -1.0, 1.0, out=flow)
    return torch.from_numpy(flow)
