"""Raw videos prepared for inference in chunks, each a small temporary store deleted once used.

``predict`` and ``detect`` on raw videos never build a store of a whole video: frames and flow are decoded and
computed once, in order, exactly as ``prepare`` does (:func:`~tstcnn.prep.prepare.prepare_video`), and written
into chunk stores of ``chunk_frames`` frames plus an ``overlap`` (the ``S - 1`` frames that a network window
starting in the chunk reaches past it, ``S`` its span: ``T`` frames, or ``(T - 1)·k + 1`` at frame stride
``k``). A chunk is handed over once the stream is ``lookahead`` frames past its end, then deleted, so the
temporary disk holds about ``chunk_frames + overlap + lookahead`` frames (two chunks at most at a time, while
one waits for its lookahead and the next fills), whatever the video's length.

Window starts from ``first`` (the chunk's first frame) up to ``end`` belong to a chunk; in the last chunk, every
start from ``first`` on, and in the first one, the negative starts of a video shorter than a window. A window is
then read from one chunk with the frames, clipping and crops of a whole-video store.

What differs from a whole-video store, and by how much:

* The flow codes are quantised per chunk: each chunk's step follows its own motion (:class:`VideoEntryWriter`),
  so a flow value read back differs by up to about one code of the coarser of the two steps (the store's
  relative precision, ~1/q of the value), frame by frame. RGB frames are identical.
* The ROI centres are smoothed from the raw centres of the whole stream so far plus the lookahead, with the same
  Gaussian, so they are identical to a whole-video store's, except in a stretch without motion (no ROI estimate)
  that reaches more than ``lookahead`` frames past a chunk: there the centre is held at the last estimate where
  the whole video would interpolate towards the next one.
* A video that fits in one chunk is prepared exactly as a whole-video store (the same arrays, bit for bit).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from array import array
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d

from tstcnn.config import PrepConfig
from tstcnn.io.video import VideoError, probe
from tstcnn.prep.prepare import _frames_and_flow, frame_size
from tstcnn.prep.roi import frame_centre
from tstcnn.prep.store import Store, VideoEntryWriter, downsample_flow, finalize_store

__all__ = ["CHUNK_FRAMES", "Chunk", "roi_radius", "stream_chunks"]

CHUNK_FRAMES = 1024  # frames per chunk: at width 320, about 0.25 GB of temporary store
_TRUNCATE = 4.0  # the Gaussian's reach in standard deviations (scipy's default, as smooth_centres uses)

logger = logging.getLogger(__name__)


def roi_radius(sigma: float) -> int:
    """Frames on each side that the ROI smoothing of ``sigma`` frames reads (as scipy's Gaussian filter)."""
    return int(_TRUNCATE * sigma + 0.5) if sigma > 0 else 0


class _CentreTrack:
    """Raw ROI centres of every frame so far (16 bytes a frame), and smoothed centres of any range of them."""

    def __init__(self) -> None:
        self.x, self.y, self.found = array("d"), array("d"), bytearray()

    def __len__(self) -> int:
        return len(self.found)

    def add(self, flow_half: np.ndarray) -> None:
        x, y, found = frame_centre(np.sqrt((flow_half ** 2).sum(-1)), scale=2.0)
        self.x.append(x)
        self.y.append(y)
        self.found.append(found)

    def smoothed(self, first: int, stop: int, sigma: float, frame_size: tuple[int, int]) -> np.ndarray:
        """Centres ``(stop - first, 2)`` float32 of frames ``first … stop - 1``, as ``smooth_centres`` gives them
        for the whole video when the frames up to ``stop`` + the smoothing radius and the next estimate after
        a gap are known (see the module docstring)."""
        seen = len(self)
        radius = roi_radius(sigma)
        lo, hi = max(0, first - radius), min(seen, stop + radius)
        found = np.frombuffer(self.found, np.uint8).astype(bool)
        before = np.flatnonzero(found[:lo])[-1:]
        after = np.flatnonzero(found[hi:])[:1] + hi
        known = np.concatenate([before, np.flatnonzero(found[lo:hi]) + lo, after])
        if not len(known):
            return np.tile(np.asarray(frame_size, np.float32) / 2, (stop - first, 1))
        frames = np.arange(lo, hi)
        xs, ys = np.frombuffer(self.x), np.frombuffer(self.y)
        filled = np.stack([np.interp(frames, known, xs[known]), np.interp(frames, known, ys[known])], axis=1)
        if sigma > 0 and hi - lo > 1:
            filled = gaussian_filter1d(filled, sigma, axis=0, mode="nearest", truncate=_TRUNCATE)
        return filled[first - lo:stop - lo].astype(np.float32)


@dataclass
class Chunk:
    """Frames ``first … first + store frames - 1`` of a video, as the entry ``video_id`` of a temporary store.

    Window starts in ``[first, end)`` are read from this chunk (``end`` is None in the last chunk: every start
    from ``first`` on; the first chunk also takes negative starts). ``frames`` is the video's decoded frame count,
    known in the last chunk only. The store is deleted when the next chunk is asked for.
    """

    store: Store
    video_id: str
    first: int
    end: int | None
    frames: int | None
    fps: float

    @property
    def last(self) -> bool:
        return self.end is None

    def select(self, starts: np.ndarray) -> np.ndarray:
        """The window starts of ``starts`` (of the whole video) that belong to this chunk."""
        starts = np.asarray(starts, np.int64)
        keep = np.ones(len(starts), bool)
        if self.first > 0:
            keep &= starts >= self.first
        if self.end is not None:
            keep &= starts < self.end
        return starts[keep]


@dataclass
class _Open:
    """A chunk being written: frames ``first … stop - 1`` go to ``writer``, in the store at ``root``."""

    index: int
    first: int
    stop: int
    root: Path
    writer: VideoEntryWriter


def stream_chunks(path: str | Path, video_id: str, prep: PrepConfig, work_dir: str | Path, classes: Sequence[str], *,
                  overlap: int, chunk_frames: int = CHUNK_FRAMES, lookahead: int | None = None, threads: int = 0,
                  flow_threads: int = 1) -> Iterator[Chunk]:
    """Prepare ``path`` with ``prep`` into consecutive chunk stores under ``work_dir``, yielding each in turn.

    Args:
        overlap: frames each chunk holds past its ``chunk_frames`` (``S - 1`` for windows spanning ``S`` frames).
        lookahead: frames the stream runs past a chunk before it is handed over, for the ROI smoothing and the
            gaps without motion; default the smoothing radius plus a quarter of a chunk, never below the radius.

    Raises:
        VideoError: the video cannot be read, or its frame size changes (the message names the file).
    """
    if chunk_frames < 1 or overlap < 0:
        raise ValueError(f"chunk_frames must be positive and overlap not negative, got {chunk_frames}, {overlap}")
    path, work_dir = Path(path), Path(work_dir)
    info = probe(path)
    if info.width <= 0 or info.height <= 0:
        raise VideoError(f"{path}: no frame size in the header")
    width, height = frame_size(info.width, info.height, prep.width)
    radius = roi_radius(prep.roi_smoothing)
    # At least one frame: only a frame past a chunk's end tells that the video goes on (the chunk is not the last).
    lookahead = max(1, radius, radius + chunk_frames // 4 if lookahead is None else lookahead)
    track, pending, seen = _CentreTrack(), deque[_Open](), 0
    meta = {"split": "test", "label": None, "actions": [], "fps": info.fps, "header_frames": info.header_frames,
            "source": str(path)}

    def hand_over(chunk: _Open, frames: int | None) -> Iterator[Chunk]:
        """Complete ``chunk``'s store, yield it, then delete it."""
        stop = chunk.first + chunk.writer.frames
        roi = track.smoothed(chunk.first, stop, prep.roi_smoothing, (width, height))
        chunk.writer.finish(roi, {**meta, "first_frame": chunk.first})
        finalize_store(chunk.root, prep, classes, layout="inference", videos=[video_id])
        store = Store(chunk.root)
        try:
            yield Chunk(store, video_id, chunk.first, None if frames is not None else chunk.first + chunk_frames,
                        frames, info.fps)
        finally:
            store.close()  # the maps would keep the deleted files' space
            shutil.rmtree(chunk.root, ignore_errors=True)

    try:
        for yuv, flow in _checked_frames(path, prep, threads, flow_threads):
            if yuv.shape != (height * 3 // 2, width):
                raise VideoError(f"{path}: frame size changes mid-stream")
            half = downsample_flow(flow)
            track.add(half)
            if seen % chunk_frames == 0:
                index = seen // chunk_frames
                root = work_dir / f"chunk-{index}"
                pending.append(_Open(index, seen, seen + chunk_frames + overlap, root,
                                     VideoEntryWriter(root, video_id, width, height)))
            for chunk in pending:
                if seen < chunk.stop:
                    chunk.writer.add(yuv, half)
            seen += 1
            while pending and seen >= pending[0].stop + lookahead:
                yield from hand_over(pending.popleft(), None)
        while pending:  # the end of the video: the chunk it ends in is the last with windows
            chunk = pending.popleft()
            last = seen <= chunk.stop
            yield from hand_over(chunk, seen if last else None)
            if last:
                break
    finally:
        for chunk in pending:
            chunk.writer.abort()
            shutil.rmtree(chunk.root, ignore_errors=True)


def _checked_frames(path: Path, prep: PrepConfig, threads: int, flow_threads: int
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(yuv, flow)`` of each frame; an unexpected decoder or flow failure becomes a VideoError naming the file."""
    frames = _frames_and_flow(path, prep, threads, flow_threads)
    with contextlib.closing(frames):
        while True:
            try:
                item = next(frames)
            except StopIteration:
                return
            except (VideoError, OSError):
                raise
            except Exception as exc:  # one bad video must not stop the others
                raise VideoError(f"{path}: {type(exc).__name__}: {exc}") from exc
            yield item
