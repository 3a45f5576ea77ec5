"""A contact sheet: one clip per class, a few frames across its stroke, so a person can see the classes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from tstcnn.io.atomic import atomic_write_bytes
from tstcnn.synth.render import clip_rng, render_clip
from tstcnn.taxonomy import TTSTROKE21_CLASSES

__all__ = ["contact_sheet", "write_preview"]


def contact_sheet(classes: Sequence[str] = TTSTROKE21_CLASSES, seed: int = 0, size: tuple[int, int] = (320, 180),
                  fps: float = 30.0, frames_per_class: int = 6, left_handed: float = 0.15) -> np.ndarray:
    """RGB image: a row per class (its name on the left), frames from the start to the end of the stroke."""
    _, height = size
    label_width = 190
    rows = []
    for name in classes:
        clip = render_clip(name, size=size, fps=fps, left_handed=left_handed, rng=clip_rng(seed, "preview", name))
        picks = np.linspace(clip.action.begin, clip.action.end - 1, frames_per_class).round().astype(int)
        label = np.full((height, label_width, 3), 255, dtype=np.uint8)
        for line, text in enumerate(name.split(" ")):
            cv2.putText(label, text, (8, 30 + 24 * line), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        cells = [label]
        for index in picks:
            frame = clip.frames[index].copy()
            cv2.putText(frame, str(int(index)), (4, height - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1,
                        cv2.LINE_AA)
            cells.append(frame)
        row = np.concatenate(cells, axis=1)
        row[-1] = 255
        rows.append(row)
    return np.concatenate(rows, axis=0)


def write_preview(path: str | Path, classes: Sequence[str] = TTSTROKE21_CLASSES, seed: int = 0,
                  size: tuple[int, int] = (320, 180), fps: float = 30.0) -> Path:
    """Write :func:`contact_sheet` as a PNG (atomically) and return its path."""
    path = Path(path)
    image = contact_sheet(classes, seed, size, fps)
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: cannot encode the contact sheet")
    atomic_write_bytes(path, data.tobytes())
    return path
