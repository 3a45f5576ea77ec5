"""Dense optical flow back-ends: DeepFlow, Dual TV-L1, Farnebäck, DIS (OpenCV contrib) and ``liu``.

All take two consecutive grey ``uint8`` frames ``(H, W)`` and return the flow from the first to the second,
``(H, W, 2)`` float32 in pixels (x, y). DeepFlow is what the paper's authors released; DIS is the fast
choice for large datasets and CPU work; ``liu`` is our reconstruction of the method the paper cites for its
flow, C. Liu's coarse-to-fine variational flow (:class:`LiuFlow`, see docs/flow.md for how it differs). The
luma plane of the decoded YUV frame serves as the grey image.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

__all__ = ["FLOW_METHODS", "FlowEstimator", "LiuFlow", "create_flow"]


def _dis() -> cv2.DISOpticalFlow:
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


# OpenCV divides its data terms by |grad I|^2 + zeta^2 with zeta fixed at 0.1: on intensities in [0, zeta]
# the divisor is zeta^2 within 1 %, so its terms become Liu's unnormalised ones with weights 1 and his epsilon.
_OPENCV_ZETA = 0.1


class LiuFlow:
    """C. Liu's coarse-to-fine variational flow (the paper's [41]), solved with ``cv2.VariationalRefinement``.

    The energy has Liu's form: robust (Charbonnier, epsilon 0.001) brightness and gradient constancy, each
    weighted ``data_weight``, plus ``alpha`` times a robust smoothness term. A Gaussian pyramid goes down by
    ``ratio`` to about ``min_width``; from the coarsest level, starting from zero flow, the flow is upsampled
    and scaled by ``1/ratio`` at each level and refined by ``outer_iterations + k`` warps of
    ``inner_iterations`` weight updates and ``sor_iterations + 3k`` SOR sweeps, ``k`` being the level (0 the
    finest), as Liu's code does.
    docs/flow.md lists where this differs from his implementation.

    Args:
        alpha: smoothness weight (Liu: 0.012).
        ratio: pyramid downsampling ratio (Liu: 0.75).
        min_width: lower bound on the width of the coarsest level (Liu: 20).
        outer_iterations: warps at the finest level (Liu: 7).
        inner_iterations: robust-weight updates per warp (Liu: 1).
        sor_iterations: SOR sweeps per weight update at the finest level (Liu: 30).
        omega: SOR relaxation factor (Liu: 1.8).
        data_weight: weight of both constancy terms. Liu's is 1, but OpenCV's solver diverges with it (the
            flow turns to noise within a few warps); 0.1 is stable and the most accurate of 1, 0.3, 0.1, 0.03,
            0.01 (docs/flow.md). It has the minimiser of Liu's energy with ``alpha`` ten times larger.
    """

    def __init__(self, *, alpha: float = 0.012, ratio: float = 0.75, min_width: int = 20,
                 outer_iterations: int = 7, inner_iterations: int = 1, sor_iterations: int = 30,
                 omega: float = 1.8, data_weight: float = 0.1) -> None:
        if not 0.4 <= ratio <= 0.98 or min_width < 1 or min(outer_iterations, inner_iterations, sor_iterations) < 1:
            raise ValueError("liu flow needs 0.4 <= ratio <= 0.98, min_width >= 1 and one iteration of each kind")
        self.ratio = ratio
        self.min_width = min_width
        self.outer_iterations = outer_iterations
        self.sor_iterations = sor_iterations
        self._refine = cv2.VariationalRefinement_create()
        self._refine.setAlpha(alpha)
        self._refine.setDelta(data_weight)
        self._refine.setGamma(data_weight)
        self._refine.setEpsilon(0.001)
        self._refine.setOmega(omega)
        self._refine.setFixedPointIterations(inner_iterations)

    def pyramid(self, image: np.ndarray) -> list[np.ndarray]:
        """Levels from the image (finest) to the coarsest, as Liu builds them.

        Level ``k`` is the image smoothed by a Gaussian of ``k (1/ratio - 1)`` and resized by ``ratio**k``;
        past the level ``n`` where the size has shrunk to about a quarter, level ``k`` is made the same way
        from level ``k - n``, which keeps the blur kernels small.
        """
        height, width = image.shape
        count = max(1, int(np.log(self.min_width / width) / np.log(self.ratio)))
        step = int(np.log(0.25) / np.log(self.ratio))
        base_sigma = 1 / self.ratio - 1
        levels = [image]
        for k in range(1, count):
            source, sigma = (image, base_sigma * k) if k <= step else (levels[k - step], base_sigma * step)
            blurred = cv2.GaussianBlur(source, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
            size = (max(1, round(width * self.ratio**k)), max(1, round(height * self.ratio**k)))
            levels.append(cv2.resize(blurred, size, interpolation=cv2.INTER_LINEAR))
        return levels

    def calc(self, prev: np.ndarray, next_: np.ndarray, flow: np.ndarray | None = None) -> np.ndarray:
        """The flow from ``prev`` to ``next_`` (grey uint8), ``(H, W, 2)`` float32; ``flow`` is ignored."""
        first = self.pyramid(prev.astype(np.float32) * (_OPENCV_ZETA / 255))
        second = self.pyramid(next_.astype(np.float32) * (_OPENCV_ZETA / 255))
        estimate = np.zeros((*first[-1].shape, 2), np.float32)
        for k in reversed(range(len(first))):
            height, width = first[k].shape
            if estimate.shape[:2] != (height, width):
                scale = np.array([width / estimate.shape[1], height / estimate.shape[0]], np.float32)
                estimate = cv2.resize(estimate, (width, height), interpolation=cv2.INTER_LINEAR) * scale
            self._refine.setSorIterations(self.sor_iterations + 3 * k)
            for _ in range(self.outer_iterations + k):  # OpenCV warps once per call: one call per outer iteration
                estimate = self._refine.calc(first[k], second[k], estimate)
        return estimate

    def __call__(self, prev: np.ndarray, next_: np.ndarray) -> np.ndarray:
        return self.calc(prev, next_)


_FACTORIES: dict[str, Callable[[], object]] = {
    "deepflow": lambda: cv2.optflow.createOptFlow_DeepFlow(),
    "tvl1": lambda: cv2.optflow.DualTVL1OpticalFlow_create(),
    "farneback": lambda: cv2.optflow.createOptFlow_Farneback(),
    "dis": _dis,
    "liu": LiuFlow,
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
    """The flow back-end named ``method`` (deepflow | tvl1 | farneback | dis | liu)."""
    return FlowEstimator(method)
