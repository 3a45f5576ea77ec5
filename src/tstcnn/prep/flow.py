"""Dense optical flow back-ends from OpenCV (contrib): DeepFlow, Dual TV-L1, Farnebäck, DIS.

All take two consecutive grey ``uint8`` frames ``(H, W)`` and return the flow from the first to the second,
``(H, W, 2)`` float32 in pixels (x, y). DeepFlow is what the paper's authors released; DIS is the fast
choice for large datasets and CPU work. The luma plane of the decoded YUV frame serves as the grey image.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

__all__ = ["FLOW_METHODS", "FlowEstimator", "create_flow"]


def _dis() -> cv2.DISOpticalFlow:
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


_FACTORIES: dict[str, Callable[[], object]] = {
    "deepflow": lambda: cv2.optflow.createOptFlow_DeepFlow(),
    "tvl1": lambda: cv2.optflow.DualTVL1OpticalFlow_create(),
    "farneback": lambda: cv2.optflow.createOptFlow_Farneback(),
    "dis": _dis,
}
FLOW_METHODS: tuple[str, ...] = tuple(_FACTORIES)


class FlowEstimator:
    """A reusable flow back-end: ``estimator(prev, next) -> (H, W, 2)`` float32 pixels.

    Args:
        method: one of :data:`FLOW_METHODS`.
    """

    def __init__(self, method: str) -> None:
        if method not in _FACTORIES:
            raise ValueError(f"unknown flow method {method!r}; allowed: {', '.join(FLOW_METHODS)}")
        self.method = method
        self._algorithm = _FACTORIES[method]()

    def __call__(self, prev: np.ndarray, next_: np.ndarray) -> np.ndarray:
        if prev.shape != next_.shape or prev.ndim != 2 or prev.dtype != np.uint8:
            raise ValueError(f"flow needs two grey uint8 frames of one size, got {prev.shape} and {next_.shape}")
        return self._algorithm.calc(prev, next_, None)


def create_flow(method: str) -> FlowEstimator:
    """The flow back-end named ``method`` (deepflow | tvl1 | farneback | dis)."""
    return FlowEstimator(method)
