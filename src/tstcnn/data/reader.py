"""The clip reader: model inputs for any frames of a prepared video, cropped around the ROI and warped.

One reader serves training (with a random spatial transform per clip), evaluation, prediction and detection
(the identity transform): it is the only place where stored frames and flow become model inputs, so every
stage sees clips made the same way. The flow is divided by ``flow_scale``, which the caller passes: the
store's own scale for training, the trained run's scale at inference (a model is fed what it was trained on,
whatever store it reads).

With a frame stride ``k`` the reader is given frames ``k`` apart and reads, for each, the mean flow over the
``k`` source frames that follow it (:func:`~tstcnn.data.functional.warp_flow`): the motion between two clip
frames, per source frame (docs/data.md, "Frame stride").
"""

from __future__ import annotations

import numpy as np
import torch

from tstcnn.data import functional as F
from tstcnn.data.sampling import clip_span
from tstcnn.prep.store import Store, VideoEntry

__all__ = ["MODALITY_INPUTS", "INPUT_CHANNELS", "ClipReader"]

MODALITY_INPUTS: dict[str, tuple[str, ...]] = {
    "rgb": ("rgb",), "i3d-rgb": ("rgb",), "flow": ("flow",), "i3d-flow": ("flow",), "twin": ("rgb", "flow"),
}
INPUT_CHANNELS = {"rgb": 3, "flow": 2}


class ClipReader:
    """Model inputs of ``clip_size`` (T, H, W) from the videos of ``store``.

    Args:
        store: the prepared store to read.
        modality: a model modality (rgb, flow, twin, i3d-rgb, i3d-flow); decides which inputs are read.
        clip_size: (T, H, W) of the model input.
        flow_scale: flow values are divided by it, then clipped to [-1, 1]; the store's when None.
        frame_stride: clips take every ``frame_stride``-th source frame (the flow is averaged over that step);
            a clip then spans :attr:`span` source frames.
    """

    def __init__(self, store: Store, modality: str, clip_size: tuple[int, int, int],
                 flow_scale: float | None = None, frame_stride: int = 1) -> None:
        if modality not in MODALITY_INPUTS:
            raise ValueError(f"unknown modality {modality!r}; allowed: {', '.join(MODALITY_INPUTS)}")
        length, height, width = (int(v) for v in clip_size)
        if min(length, height, width) < 1:
            raise ValueError(f"clip size must be positive, got {length}x{height}x{width}")
        scale = float(store.flow_scale if flow_scale is None else flow_scale)
        if not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"flow scale must be a positive number, got {scale}")
        self.store, self.modality, self.inputs = store, modality, MODALITY_INPUTS[modality]
        self.clip_size, self.flow_scale = (length, height, width), scale
        self.frame_stride, self.span = int(frame_stride), clip_span(length, int(frame_stride))
        self._crop = (height + height % 2, width + width % 2)  # I420 crops are even; odd sizes are trimmed

    def __repr__(self) -> str:
        return (f"ClipReader({self.store!r}, modality={self.modality!r}, clip_size={self.clip_size}, "
                f"frame_stride={self.frame_stride})")

    def check(self, entry: VideoEntry) -> None:
        """Refuse a video whose frames are smaller than the crop, naming it."""
        _, height, width = self.clip_size
        if self._crop[0] > entry.height or self._crop[1] > entry.width:
            raise ValueError(f"video {entry.id!r}: {entry.width}x{entry.height} frames are smaller than the "
                             f"model's {width}x{height} crop; prepare at a larger width or use a smaller clip")

    def read(self, video_id: str, indices: np.ndarray, params: F.AffineParams = F.AffineParams(),
             out: dict[str, np.ndarray] | None = None) -> dict[str, torch.Tensor]:
        """The inputs for frames ``indices`` of a video under the spatial transform ``params``: ``rgb`` float32
        ``(3, T, H, W)`` in [0, 1] and/or ``flow`` ``(2, T, H, W)`` in [-1, 1], written into ``out`` arrays when
        given (so a batch can be filled in place)."""
        arrays = self.store.arrays(video_id)
        entry = self.store.entry(video_id)
        _, h, w = self.clip_size
        out = out or {}
        centres = F.window_centres(arrays.roi[indices], self._crop, (entry.height, entry.width))
        matrices = F.clip_matrices(centres, self._crop, params)
        inputs = {}
        if "rgb" in self.inputs:
            rgb = F.warp_yuv420(arrays.y, arrays.u, arrays.v, indices, matrices, self._crop)
            inputs["rgb"] = F.rgb_to_tensor(rgb[:, :h, :w], out.get("rgb"))
        if "flow" in self.inputs:
            even = self._crop == (h, w)  # odd sizes are warped one pixel larger, then trimmed
            flow = F.warp_flow(arrays.flow, indices, matrices, self._crop, scale=1.0 / self.flow_scale,
                               table=self.store.flow_table(video_id), out=out.get("flow") if even else None,
                               step=self.frame_stride)
            if not even and "flow" in out:
                out["flow"][...] = flow[:, :, :h, :w]
                flow = out["flow"]
            inputs["flow"] = F.flow_to_tensor(flow[:, :, :h, :w])
        return inputs
