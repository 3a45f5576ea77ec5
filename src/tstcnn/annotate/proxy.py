"""Browser-playable proxies: what the page plays when a browser cannot play the original video frame for frame.

The page numbers frames as ``floor(t * fps + eps)`` and seeks to ``(frame + 0.5) / fps``, so the file it plays
must show decoded frame ``i`` of the original from ``i / fps`` to ``(i + 1) / fps``. An original is played as it
is when it is H.264, VP8, VP9 or AV1 in 4:2:0 in an MP4 or WebM container whose frames are evenly spaced from
time 0; anything else (another codec or container, a variable frame rate, a start offset) gets a proxy made once
with PyAV: every decoded frame in order, re-encoded to H.264 MP4 at a constant rate equal to the original's
decoded frame count over its duration, so frame ``i`` of the proxy is frame ``i`` of the original.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tstcnn.annotate.database import PROXIES, Project, Video
from tstcnn.io.atomic import atomic_path, atomic_write_text
from tstcnn.io.ids import inside
from tstcnn.io.video import VideoError, VideoWriter, iter_frames, resize_to_width

__all__ = ["Playable", "playable", "browser_problem", "make_proxy", "PROXY_MAX_WIDTH"]

logger = logging.getLogger(__name__)

BROWSER_CODECS = ("h264", "vp8", "vp9", "av1")
BROWSER_CONTAINERS = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm"}
PROXY_MAX_WIDTH = 1280  # the page shows one video at a time; larger proxies only cost encoding time and disk
_LOCK = threading.Lock()  # one proxy made at a time per process: each uses every core already


@dataclass(frozen=True)
class Playable:
    """The file the page plays for a video, its MIME type and the frame rate that maps its times to frames."""

    path: Path
    media_type: str
    fps: float
    proxy: bool


def browser_problem(path: str | Path, fps: float) -> str | None:
    """Why a browser could not play ``path`` frame for frame at ``fps``, or None when it can."""
    path = Path(path)
    if path.suffix.lower() not in BROWSER_CONTAINERS:
        return f"container {path.suffix or '(none)'} is not MP4 or WebM"
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            codec, pix_fmt = stream.codec_context.name, stream.codec_context.pix_fmt
            if codec not in BROWSER_CODECS:
                return f"codec {codec} is not one browsers play"
            if pix_fmt not in ("yuv420p", "yuvj420p"):
                return f"pixel format {pix_fmt} is not 4:2:0"
            base = stream.time_base
            times = sorted(float(p.pts * base) for p in container.demux(stream) if p.pts is not None and p.size)
    except (av.error.FFmpegError, OSError, IndexError) as exc:
        raise VideoError(f"{path}: cannot open video ({exc})") from None
    if not times:
        return "no timestamps"
    expected = np.arange(len(times)) / fps
    offset = np.abs(np.asarray(times) - expected).max() * fps
    if offset > 0.25:  # a quarter frame: the page's half-frame seek still lands on the right frame
        return f"frames are not evenly spaced from 0 at {fps:g} fps (off by up to {offset:.2f} frames)"
    return None


def _proxy_rate(project: Project, video: Video) -> Fraction:
    """Decoded frames over duration: the constant rate that gives the proxy the original's frames one for one."""
    try:
        with av.open(str(project.video_path(video))) as container:
            stream = container.streams.video[0]
            duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
            if duration <= 0 and container.duration:
                duration = container.duration / av.time_base
    except (av.error.FFmpegError, OSError, IndexError) as exc:
        raise VideoError(f"{video.name}: cannot open video ({exc})") from None
    rate = video.frames / duration if duration > 0 else video.fps
    if abs(rate - video.fps) / video.fps < 0.002:  # the header's rate, when it agrees, is the exact one
        rate = video.fps
    return Fraction(rate).limit_denominator(1001)


def make_proxy(project: Project, video: Video, target: Path) -> float:
    """Encode every decoded frame of ``video`` to an H.264 MP4 at a constant rate; returns that rate.

    Raises :class:`VideoError` when decoding fails or yields another frame count than the project recorded.
    """
    rate = _proxy_rate(project, video)
    width = min(video.width - video.width % 2, PROXY_MAX_WIDTH)
    count = 0
    with atomic_path(target) as tmp:
        # The muxer picks the format from the suffix: give the temporary file the proxy's own.
        tmp_mp4 = tmp.with_suffix(".mp4")
        try:
            writer = None
            for frame in iter_frames(project.video_path(video)):
                image = resize_to_width(frame, width)
                image = image[: image.shape[0] - image.shape[0] % 2]
                if writer is None:
                    writer = VideoWriter(tmp_mp4, rate, image.shape[1], image.shape[0], crf=23, preset="veryfast")
                writer.write(image)
                count += 1
            if writer is None:
                raise VideoError(f"{video.name}: no frames decoded")
            writer.close()
            if count != video.frames:
                raise VideoError(f"{video.name}: decoded {count} frames, the project recorded {video.frames}")
            tmp_mp4.replace(tmp)
        finally:
            tmp_mp4.unlink(missing_ok=True)
    return float(rate)


def playable(project: Project, video: Video) -> Playable:
    """What the page plays for ``video``: the original when browsers play it frame for frame, else its proxy
    (made on the first call, with its rate kept in ``proxies/NAME.json``)."""
    original = project.video_path(video)  # its name was checked when it was added: no separators, no dot names
    proxies = project.root / PROXIES
    note, target = proxies / f"{video.name}.json", proxies / f"{video.name}.mp4"
    inside(project.root, target)
    with _LOCK:
        if note.is_file():
            data = json.loads(note.read_text())
            if not data["proxy"]:
                return Playable(original, BROWSER_CONTAINERS[original.suffix.lower()], float(data["fps"]), False)
            if target.is_file():
                return Playable(target, "video/mp4", float(data["fps"]), True)
        problem = browser_problem(original, video.fps)
        if problem is None:
            atomic_write_text(note, json.dumps({"proxy": False, "fps": video.fps}) + "\n")
            return Playable(original, BROWSER_CONTAINERS[original.suffix.lower()], video.fps, False)
        logger.info("%s: making a browser-playable proxy (%s)", video.name, problem)
        fps = make_proxy(project, video, target)
        atomic_write_text(note, json.dumps({"proxy": True, "fps": fps, "why": problem}) + "\n")
        logger.info("%s: proxy %s at %.4f fps", video.name, target, fps)
        return Playable(target, "video/mp4", fps, True)
