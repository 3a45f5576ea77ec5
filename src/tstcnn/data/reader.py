"""The clip reader: model inputs for any frames of a prepared video, cropped around the ROI and warped.

One reader serves training (with a random spatial transform per clip), evaluation, prediction and detection
(the identity transform): it is the only place where stored frames and flow become model inputs, so every
stage sees clips made the same way. The flow is divided by ``flow_scale``, which the caller passes: the
store's own scale for training, the trained run's scale at inference (a model is fed what it was trained on,
whatever store it reads).
"""

from __future__ import annotations

import numpy as np
import torch

from tstcnn.data import functional as F
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
    """

    def __init__(self, store: Store, modality: str, clip_size: tuple[int, int, int],
                 flow_scale: float | None = None) -> None:
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
        self._crop = (height + height % 2, width + width % 2)  # I420 crops are even; odd sizes are trimmed

    def __repr__(self) -> str:
        return f"ClipReader({self.store!r}, modality={self.modality!r}, clip_size={self.clip_size})"

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
                               table=self.store.flow_table(video_id), out=out.get("flow") if even else None)
            if not even and "flow" in out:
                out["flow"][...] = flow[:, :, :h, :w]
                flow = out["flow"]
            inputs["flow"] = F.flow_to_tensor(flow[:, :, :h, :w])
        return inputs
