"""Video decoding and encoding with PyAV.

Frames are RGB ``uint8`` arrays of shape ``(H, W, 3)``, numbered from 0 in decoding order.
Frame counts come from decoding, never from the container header, which can be wrong
(see :func:`probe` and :func:`count_frames`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

__all__ = ["VideoError", "VideoInfo", "probe", "iter_decoded", "iter_frames", "read_frames", "count_frames",
           "resize_to_width", "VideoWriter"]


class VideoError(Exception):
    """A video that cannot be opened or decoded; the message names the file."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container header says. ``header_frames`` may be 0 or wrong: count by decoding."""

    width: int
    height: int
    fps: float
    header_frames: int


def probe(path: str | Path) -> VideoInfo:
    """Header information of the first video stream."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or 0
            return VideoInfo(stream.width, stream.height, float(rate), int(stream.frames or 0))
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"{path}: cannot open video ({exc})") from None


def resize_to_width(frame: np.ndarray, width: int) -> np.ndarray:
    """Resize to ``width`` keeping the aspect ratio (height rounded to an even number of pixels)."""
    h, w = frame.shape[:2]
    if w == width:
        return frame
    height = max(2, int(round(h * width / w / 2)) * 2)
    interpolation = cv2.INTER_AREA if width < w else cv2.INTER_LINEAR
    return cv2.resize(frame, (width, height), interpolation=interpolation)


def iter_decoded(path: str | Path, threads: int = 0) -> Iterator[av.VideoFrame]:
    """Decode every frame of the first video stream in order, as PyAV frames (convert them as the caller needs).

    Raises :class:`VideoError` when the file cannot be opened or decoding fails part-way.
    """
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"{path}: cannot open video ({exc})") from None
    with container:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        stream = container.streams.video[0]
        if threads:
            stream.thread_type = "AUTO"
            stream.thread_count = threads
        try:
            yield from container.decode(stream)
        except (av.error.FFmpegError, ValueError) as exc:
            raise VideoError(f"{path}: decoding failed ({exc})") from None


def iter_frames(path: str | Path, width: int | None = None, threads: int = 0) -> Iterator[np.ndarray]:
    """Decode every frame in order as RGB ``uint8``, resized to ``width`` when given (see :func:`iter_decoded`)."""
    for frame in iter_decoded(path, threads):
        image = frame.to_ndarray(format="rgb24")
        yield resize_to_width(image, width) if width else image


def read_frames(path: str | Path, width: int | None = None) -> np.ndarray:
    """All frames as one ``(N, H, W, 3)`` array; raises :class:`VideoError` for an empty video."""
    frames = list(iter_frames(path, width))
    if not frames:
        raise VideoError(f"{path}: no frames decoded")
    return np.stack(frames)


def count_frames(path: str | Path) -> int:
    """Number of frames, counted by demuxing and decoding every packet."""
    count = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for _ in container.decode(stream):
                count += 1
    except (av.error.FFmpegError, OSError, IndexError, ValueError) as exc:
        raise VideoError(f"{path}: cannot decode ({exc})") from None
    return count


class VideoWriter:
    """Encode RGB frames to H.264 (yuv420p) mp4. Use as a context manager.

    Args:
        path: output file.
        fps: frame rate (an integer or a fraction).
        width, height: frame size in pixels, both even.
        crf: x264 constant rate factor (lower is better quality).
        threads: x264 threads; 0 lets x264 choose (about 1.5 per core). Writers that already run one per core
            (``tstcnn synth --workers``) use 1, so their encoders do not compete for the cores.
    """

    def __init__(self, path: str | Path, fps: float, width: int, height: int, crf: int = 20,
                 preset: str = "veryfast", threads: int = 0) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"H.264 needs even frame sizes, got {width}x{height}")
        self.path = Path(path)
        self._container = av.open(str(self.path), mode="w")
        rate = Fraction(fps).limit_denominator(1001)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(crf), "preset": preset, "threads": str(threads)}
        self.frames_written = 0

    def write(self, frame: np.ndarray) -> None:
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
