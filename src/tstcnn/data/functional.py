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
* flow, its int8 codes decoded (the store's square-root companding) through a 256-entry table on the read
  part only, with the map from its half-resolution grid to the output grid; the flow *vectors* are then
  multiplied by ``A`` (a displacement ``d`` in the frame is ``A·d`` in the warped image) and by
  ``1 / flow_scale``, and clipped to [-1, 1], in one matrix product that also lays the result out as
  ``(2, T, H, W)``.

Angles follow OpenCV (``cv2.getRotationMatrix2D``): positive is counter-clockwise on screen, with ``y``
pointing down, so ``R(90°)`` turns a rightward flow ``(1, 0)`` into an upward one ``(0, -1)``. Samples that fall
outside the frame repeat its edge pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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


def _source_box(matrix: np.ndarray, size: tuple[int, int], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The part ``(x0, y0, x1, y1)`` of a ``shape`` (h, w) source that ``matrix`` samples for an output of
    ``size``, with a pixel of margin for the interpolation, clamped to the source."""
    h, w = size
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[-0.5, -0.5, 1], [w - 0.5, -0.5, 1], [-0.5, h - 0.5, 1], [w - 0.5, h - 0.5, 1]])
    points = corners @ inverse.T
    x0, y0 = np.floor(points.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(points.max(axis=0)).astype(int) + 2
    x0, y0 = min(max(x0, 0), shape[1] - 1), min(max(y0, 0), shape[0] - 1)
    x1, y1 = max(min(x1, shape[1]), x0 + 1), max(min(y1, shape[0]), y0 + 1)
    return x0, y0, x1, y1


def _warp(source: np.ndarray, matrix: np.ndarray, size: tuple[int, int], out: np.ndarray,
          decode: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
    """Warp only the needed part of ``source`` into ``out`` (``decode``: turns that part into warpable values)."""
    x0, y0, x1, y1 = _source_box(matrix, size, source.shape[:2])
    part = source[y0:y1, x0:x1]
    if decode is not None:
        part = decode(part)
    shifted = matrix.copy()
    shifted[:, 2] += matrix[:, :2] @ (x0, y0)
    cv2.warpAffine(part, shifted, (size[1], size[0]), dst=out, **_WARP)


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
    chroma_matrices = half_grid_matrices(matrices, output_half=True)
    for i, frame in enumerate(indices):
        _warp(y[frame], matrices[i], size, y_out[i])
        _warp(u[frame], chroma_matrices[i], (h // 2, w // 2), u_out[i])
        _warp(v[frame], chroma_matrices[i], (h // 2, w // 2), v_out[i])
    return cv2.cvtColor(buffer.reshape(t * h * 3 // 2, w), cv2.COLOR_YUV2RGB_I420).reshape(t, h, w, 3)


def warp_flow(flow: np.ndarray, indices: Sequence[int], matrices: np.ndarray, size: tuple[int, int],
              table: np.ndarray | None = None) -> np.ndarray:
    """Float32 ``(T, h, w, 2)`` of frames ``indices`` of the half-resolution flow ``(N, H/2, W/2, 2)``, warped by
    ``matrices`` (full-resolution maps) to ``size`` (h, w). Vectors are not turned here (:func:`flow_to_tensor`).

    Args:
        table: 256 values indexed by the stored int8 codes viewed as uint8 (the store's
            :meth:`~tstcnn.prep.store.Store.flow_table`), applied to the read part only; None takes the values
            as they are.
    """
    h, w = size
    out = np.empty((len(indices), h, w, 2), np.float32)
    source_matrices = half_grid_matrices(matrices, output_half=False)
    if table is None:
        def decode(part: np.ndarray) -> np.ndarray:
            return part.astype(np.float32)
    else:
        lookup = np.asarray(table, np.float32)

        def decode(part: np.ndarray) -> np.ndarray:
            return lookup[part.view(np.uint8)]
    for i, frame in enumerate(indices):
        _warp(flow[frame], source_matrices[i], size, out[i], decode)
    return out


def rgb_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` → contiguous float32 ``(3, T, H, W)`` in [0, 1], in one pass."""
    tensor = torch.from_numpy(rgb).permute(3, 0, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
    return tensor.mul_(1 / 255)


def flow_to_tensor(flow: np.ndarray, linear: np.ndarray, scale: float) -> torch.Tensor:
    """Flow ``(T, H, W, 2)`` → contiguous float32 ``(2, T, H, W)``: vectors ``scale · linear · d``, clipped to
    [-1, 1]. ``linear`` is the clip's 2×2 image transform, ``scale`` is 1 / flow_scale."""
    t, h, w, _ = flow.shape
    matrix = torch.as_tensor(np.asarray(linear) * scale, dtype=torch.float32)
    vectors = torch.from_numpy(np.ascontiguousarray(flow)).view(-1, 2)
    return torch.mm(matrix, vectors.t()).view(2, t, h, w).clamp_(-1.0, 1.0)
