"""Helpers of the annotation tests: tiny videos whose frame ``i`` is grey level ``8 i`` (a frame's number can be
read back from its pixels)."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tstcnn.io.video import VideoWriter


def write_video(path: Path, frames: int = 30, fps: float = 120.0, size: tuple[int, int] = (32, 32)) -> Path:
    """An H.264 MP4 of ``frames`` flat grey frames, frame ``i`` at level ``8 i mod 256``."""
    with VideoWriter(path, fps, size[0], size[1], preset="ultrafast", threads=1) as writer:
        for i in range(frames):
            writer.write(np.full((size[1], size[0], 3), i * 8 % 256, np.uint8))
    return path


def write_avi(path: Path, frames: int, fps: int = 25, size: tuple[int, int] = (32, 24)) -> Path:
    """MPEG-4 part 2 in AVI (browsers play neither: the page needs a proxy), frame ``i`` at grey level ``8 i``."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), i * 8 % 256, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
