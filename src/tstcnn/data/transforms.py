"""The paper's spatial augmentation: one random rotation, zoom and translation per clip.

The authors' code draws, once per clip, a rotation in ±10°, a homothety in 1 ± 10 % and a translation in
±10 % of the crop; the same transform is applied to every RGB and flow frame of the clip (flow vectors turned
and scaled with the image, see :mod:`tstcnn.data.functional`). Without augmentation the clip is the plain ROI
crop (:class:`~tstcnn.data.functional.AffineParams` defaults).
"""

from __future__ import annotations

import numpy as np

from tstcnn.config import DataConfig
from tstcnn.data.functional import AffineParams

__all__ = ["RandomAffine"]


class RandomAffine:
    """Draw :class:`AffineParams` uniformly: angle in ±``rotation`` degrees, zoom in 1 ± ``zoom``, shift in
    ±``translation`` × the crop size along each axis."""

    def __init__(self, rotation: float = 10.0, zoom: float = 0.1, translation: float = 0.1) -> None:
        if rotation < 0 or translation < 0 or not 0 <= zoom < 1:
            raise ValueError(f"augmentation ranges must be non-negative and zoom < 1, got rotation={rotation}, "
                             f"zoom={zoom}, translation={translation}")
        self.rotation, self.zoom, self.translation = rotation, zoom, translation

    @classmethod
    def from_config(cls, data: DataConfig) -> RandomAffine:
        return cls(data.rotation, data.zoom, data.translation)

    def __call__(self, rng: np.random.Generator, size: tuple[int, int]) -> AffineParams:
        angle, zoom, tx, ty = rng.uniform(-1.0, 1.0, size=4)
        return AffineParams(angle=float(angle * self.rotation), zoom=float(1.0 + zoom * self.zoom),
                            shift=(float(tx * self.translation * size[1]), float(ty * self.translation * size[0])))

    def __repr__(self) -> str:
        return f"RandomAffine(rotation={self.rotation}, zoom={self.zoom}, translation={self.translation})"
