"""Helpers of the annotation tests: tiny videos whose frame ``i`` is grey level ``8 i`` (a frame's number can be
read back from its pixels)."""

from pathlib import Path

import numpy as np

from tstcnn.io.video import VideoWriter


def write_video(path: Path, frames: int = 30, fps: float = 120.0, size: tuple[int, int] = (32, 32)) -> Path:
    """An H.264 MP4 of ``frames`` flat grey frames, frame ``i`` at level ``8 i mod 256``."""
    with VideoWriter(path, fps, size[0], size[1], preset="ultrafast", threads=1) as writer:
        for i in range(frames):
            writer.write(np.full((size[1], size[0], 3), i * 8 % 256, np.uint8))
    return path
