"""``tstcnn prepare``: source videos → a prepared store, in parallel, resumable, shardable.

Each video is decoded once (PyAV, resized by swscale straight to YUV 4:2:0 at the prep width, decoding in a
background thread), the flow between consecutive frames is computed on the luma plane, the ROI centre is
taken from the flow norm and smoothed, and the entry is written under a temporary name then renamed
(:class:`~tstcnn.prep.store.VideoEntryWriter`). Videos run in worker processes (one OpenCV thread each), which end
with the run: killed (even by SIGKILL), it takes them along; interrupted (Ctrl-C, SIGTERM), it ends them at once.
A video with more than :data:`~tstcnn.prep.store.MAX_ACTIONS` strokes is refused before it is decoded.

Resume: a video whose folder holds ``meta.json`` is skipped; the temporary folders of the videos to do are
removed and redone. A video whose source changed is rebuilt beside its old entry, which it replaces in one
step when complete; the manifest is written at the end, so a store is always readable whole.
``shard=(i, n)`` prepares every n-th video from the i-th (ids sorted) and records ``shards/<i>-of-<n>.json``;
:func:`merge_shards` gathers shards (from this store or others) and writes the manifest once all are there.
:func:`prepare_video_arrays` runs the same steps on one video in memory; :mod:`tstcnn.prep.stream` runs them into
chunk stores of bounded size, for inference on raw videos.

``prepare`` writes only into an empty (or missing) folder or a store it made (its ``prepare.json`` or a
tstcnn-store manifest), and holds the store's lock while it writes: shards of one store share it, and any other
run into the store is refused until it finishes.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import ctypes
import hashlib
import json
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tstcnn.config import PrepConfig
from tstcnn.io.atomic import atomic_write_bytes, atomic_write_text
from tstcnn.io.ids import check_id
from tstcnn.io.layouts import LayoutScan, SourceItem, check_actions, read_layout
from tstcnn.io.locks import LOCK_FILE, folder_lock
from tstcnn.io.video import VideoError, iter_decoded, probe
from tstcnn.prep.flow import create_flow
from tstcnn.prep.roi import frame_centre, smooth_centres
from tstcnn.prep.store import (
    FORMAT,
    MANIFEST,
    MAX_ACTIONS,
    META,
    VIDEOS,
    VideoEntryWriter,
    complete_video_ids,
    downsample_flow,
    entry_in_the_way,
    finalize_store,
    move_entry,
    remove_incomplete,
    yuv420_to_rgb,
)
from tstcnn.progress import progress as progress_bar

__all__ = ["PreparedVideo", "VideoResult", "PrepareSummary", "frame_size", "iter_yuv420", "prepare_video_arrays",
           "prepare_video", "prepare_items", "prepare_dataset", "merge_shards", "parse_shard", "summary_lines"]

SETTINGS = "prepare.json"
SHARDS = "shards"

logger = logging.getLogger(__name__)


def frame_size(width: int, height: int, target_width: int) -> tuple[int, int]:
    """Size ``(w, h)`` after resizing to ``target_width`` with the aspect kept, height even (as ``resize_to_width``)."""
    return target_width, max(2, int(round(height * target_width / width / 2)) * 2)


def iter_yuv420(path: str | Path, width: int, threads: int = 0) -> Iterator[np.ndarray]:
    """Decode every frame as I420 ``(H*3//2, W)`` uint8 at ``width`` (aspect kept), in decoding order."""
    for frame in iter_decoded(path, threads):
        w, h = frame_size(frame.width, frame.height, width)
        yield frame.reformat(w, h, format="yuv420p", interpolation="AREA").to_ndarray()


def _prefetch(frames: Iterator[np.ndarray], depth: int = 16) -> Iterator[np.ndarray]:
    """Run ``frames`` in a background thread (decoding overlaps the flow); exceptions come through."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for frame in frames:
                if stop.is_set():
                    return
                items.put(frame)
            items.put(done)
        except BaseException as exc:  # handed to the consumer
            items.put(exc)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while (item := items.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                items.get_nowait()
            except queue.Empty:
                thread.join(0.01)


def _frames_and_flow(path: str | Path, prep: PrepConfig, threads: int, flow_threads: int = 1
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(yuv_t, flow_t)`` with the flow from frame t to t+1 at full resolution; the last frame repeats it.

    The flow of consecutive pairs runs in ``flow_threads`` threads (one estimator each; OpenCV releases the
    GIL), so one long video can use several cores; results come out in frame order.
    """
    local = threading.local()

    def flow_of(first: np.ndarray, second: np.ndarray) -> np.ndarray:
        if not hasattr(local, "estimator"):
            local.estimator = create_flow(prep.flow)
        return local.estimator(first, second)

    frames = _prefetch(iter_yuv420(path, prep.width, threads))
    previous = next(frames, None)
    if previous is None:
        raise VideoError(f"{path}: no frames decoded")
    height = previous.shape[0] * 2 // 3
    flow = np.zeros((height, previous.shape[1], 2), np.float32)
    pending: deque[tuple[np.ndarray, futures.Future]] = deque()
    with futures.ThreadPoolExecutor(max(1, flow_threads)) as pool:
        for current in frames:
            pending.append((previous, pool.submit(flow_of, previous[:height], current[:height])))
            previous = current
            if len(pending) > 2 * flow_threads:
                frame, job = pending.popleft()
                flow = job.result()
                yield frame, flow
        while pending:
            frame, job = pending.popleft()
            flow = job.result()
            yield frame, flow
    yield previous, flow


class _RoiTrack:
    """Per-frame raw ROI centres from the half-resolution flow, smoothed at the end."""

    def __init__(self) -> None:
        self.centres: list[tuple[float, float]] = []
        self.found: list[bool] = []

    def add(self, flow_half: np.ndarray) -> None:
        x, y, found = frame_centre(np.sqrt((flow_half ** 2).sum(-1)), scale=2.0)
        self.centres.append((x, y))
        self.found.append(found)

    def smoothed(self, prep: PrepConfig, width: int, height: int) -> np.ndarray:
        return smooth_centres(np.asarray(self.centres).reshape(-1, 2), np.asarray(self.found), prep.roi_smoothing,
                              (width, height))


@dataclass
class PreparedVideo:
    """One video prepared in memory: what the store holds, decoded (RGB, full-resolution flow)."""

    rgb: np.ndarray  # (N, H, W, 3) uint8
    flow: np.ndarray  # (N, H, W, 2) float32 pixels, t → t+1, the last frame repeats
    roi: np.ndarray  # (N, 2) float32 smoothed ROI centres (x, y)
    flow_max: np.ndarray  # (N,) float32 per-frame maximum flow norm (half resolution, as in the store)
    fps: float
    header_frames: int

    @property
    def frames(self) -> int:
        return len(self.rgb)


def prepare_video_arrays(path: str | Path, prep: PrepConfig, threads: int = 0, flow_threads: int = 1
                         ) -> PreparedVideo:
    """Decode, resize, flow and ROI for one video, in memory (for ``predict``/``detect`` on raw videos).

    The ROI and flow maxima come from the half-resolution flow, exactly as ``prepare`` stores them.
    """
    info = probe(path)
    rgb, flows, maxima, track = [], [], [], _RoiTrack()
    for yuv, flow in _frames_and_flow(path, prep, threads, flow_threads):
        height, width = yuv.shape[0] * 2 // 3, yuv.shape[1]
        u, v = yuv[height:].reshape(2, height // 2, width // 2)
        rgb.append(yuv420_to_rgb(yuv[None, :height], u[None], v[None])[0])
        half = downsample_flow(flow)
        track.add(half)
        maxima.append(float(np.sqrt((half ** 2).sum(-1)).max()))
        flows.append(flow)
    height, width = rgb[0].shape[:2]
    return PreparedVideo(np.stack(rgb), np.stack(flows), track.smoothed(prep, width, height),
                         np.asarray(maxima, np.float32), info.fps, info.header_frames)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _source_stamp(item: SourceItem) -> dict[str, Any]:
    """What identifies the source file cheaply (a resumed run redoes a video whose file changed)."""
    stat = item.path.stat()
    return {"source": str(item.path), "source_size": stat.st_size, "source_mtime_ns": stat.st_mtime_ns}


def _stored_stamp(root: Path, video_id: str) -> dict[str, Any]:
    meta = json.loads((root / VIDEOS / video_id / META).read_text(encoding="utf-8"))
    return {k: meta.get(k) for k in ("source", "source_size", "source_mtime_ns")}


@dataclass
class VideoResult:
    """Outcome of one video: frames written, seconds spent, or the problems that made it skipped."""

    id: str
    frames: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def prepare_video(item: SourceItem, store_root: str | Path, prep: PrepConfig, threads: int = 0,
                  flow_threads: int = 1) -> VideoResult:
    """Prepare one source video into ``store_root/videos/<id>`` atomically; never raises for a bad video.

    A video with more than :data:`~tstcnn.prep.store.MAX_ACTIONS` strokes is refused before it is decoded.
    """
    start = time.perf_counter()
    if len(item.actions) > MAX_ACTIONS:
        return VideoResult(item.id, problems=[f"{item.annotation or item.path}: {len(item.actions)} strokes for video "
                                              f"{item.id!r}, more than the {MAX_ACTIONS} a video may have"])
    try:
        info = probe(item.path)
        if info.width <= 0 or info.height <= 0:
            raise VideoError(f"{item.path}: no frame size in the header")
        width, height = frame_size(info.width, info.height, prep.width)
        with VideoEntryWriter(store_root, item.id, width, height) as writer:
            track = _RoiTrack()
            for yuv, flow in _frames_and_flow(item.path, prep, threads, flow_threads):
                if yuv.shape != (height * 3 // 2, width):
                    raise VideoError(f"{item.path}: frame size changes mid-stream")
                half = downsample_flow(flow)
                track.add(half)
                writer.add(yuv, half)
                if _frames_done is not None and writer.frames % 16 == 0:
                    _count_frames(16)
            problems = check_actions(item, writer.frames)
            if problems:
                writer.abort()
                return VideoResult(item.id, problems=problems)
            meta = {"split": item.split, "label": item.label, "actions": [list(a) for a in item.actions],
                    "fps": info.fps, "header_frames": info.header_frames, "source": str(item.path),
                    "sha256": _sha256(item.path), **_source_stamp(item)}
            if info.header_frames and info.header_frames != writer.frames:
                meta["note"] = (f"the header says {info.header_frames} frames, {writer.frames} were decoded; "
                                "the decoded count is used")
            frames = writer.frames
            writer.finish(track.smoothed(prep, width, height), meta)
            if _frames_done is not None:
                _count_frames(frames % 16)
    except (VideoError, OSError) as exc:
        return VideoResult(item.id, problems=[str(exc)])
    except Exception as exc:  # one bad video must not stop the others; its name is in the message
        return VideoResult(item.id, problems=[f"{item.path}: {type(exc).__name__}: {exc}"])
    return VideoResult(item.id, frames, time.perf_counter() - start)


_frames_done: Any = None  # in a worker process: the shared frame counter the progress bar reads
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent(parent: int) -> None:
    """Have Linux send this process SIGTERM when ``parent`` dies (killed, even by SIGKILL), and exit now if it has.

    Without it a worker of a killed ``prepare`` is re-parented and waits for work forever. The request follows
    the thread that started the worker: pools are started from the thread that runs ``prepare``.
    """
    if sys.platform.startswith("linux"):
        try:
            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            prctl = None
        if prctl is None or prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            logger.debug("prctl(PR_SET_PDEATHSIG) unavailable: this worker may outlive a killed parent")
    if os.getppid() != parent:  # the parent died before the request was in place
        os._exit(1)


def _init_worker(counter: Any, single_thread: bool = True, parent: int | None = None) -> None:
    """Set up a process that prepares videos; ``parent`` (a worker's parent pid) ties its life to the parent's."""
    global _frames_done
    _frames_done = counter
    if single_thread:
        cv2.setNumThreads(1)  # parallelism comes from the worker processes
    if parent is not None:
        # The default action ends a worker at once: a handler would only run between bytecodes, and the pool
        # would catch what it raised as the result of the current video. Its temporary folder is removed by the
        # next run, as after a kill.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _die_with_parent(parent)


def _stop_workers(pool: futures.ProcessPoolExecutor) -> None:
    """End a pool's workers now (SIGTERM), its queued videos cancelled, and wait until they are gone."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets them
    for process in processes:
        with contextlib.suppress(OSError, ValueError):
            process.terminate()
    # The pool sees its workers end and closes its queues, so the shutdown returns at once.
    pool.shutdown(wait=True, cancel_futures=True)


def _count_frames(count: int) -> None:
    with _frames_done.get_lock():
        _frames_done.value += count


def prepare_items(items: Sequence[SourceItem], store_root: str | Path, prep: PrepConfig, *, workers: int = 1,
                  decode_threads: int = 1, max_videos: int | None = None, progress: bool = True
                  ) -> list[VideoResult]:
    """Prepare ``items`` (longest files first, to balance workers), in ``workers`` processes (1: in this one).

    ``max_videos`` stops after that many videos have been prepared (the rest stays to do, as after a kill).
    With fewer videos than workers, each video's flow runs in several threads instead, so the cores stay busy.
    The progress bar counts videos and shows the frames per second of the frames done so far (live, also
    inside long videos).
    """
    order = sorted(items, key=lambda it: (-it.path.stat().st_size, it.id))
    if max_videos is not None:
        order = order[:max_videos]
    results: list[VideoResult] = []
    started = time.perf_counter()
    bar = progress_bar(total=len(order), unit="video", desc="prepare", enabled=progress)
    context = multiprocessing.get_context("spawn")
    frames_done = context.Value("q", 0)

    def refresh(result: VideoResult | None = None) -> None:
        if result is not None:
            results.append(result)
            bar.update(1)
        bar.set_postfix(frames_per_s=f"{frames_done.value / max(1e-9, time.perf_counter() - started):.0f}",
                        failed=sum(not r.ok for r in results))

    processes = min(workers, len(order))
    flow_threads = max(1, workers // max(1, processes))
    try:
        if processes <= 1:
            _init_worker(frames_done, single_thread=False)
            for item in order:
                refresh(prepare_video(item, store_root, prep, decode_threads, flow_threads))
        else:
            with futures.ProcessPoolExecutor(processes, mp_context=context, initializer=_init_worker,
                                             initargs=(frames_done, True, os.getpid())) as pool:
                try:
                    pending = {pool.submit(prepare_video, item, str(store_root), prep, decode_threads,
                                           flow_threads) for item in order}
                    while pending:
                        done, pending = futures.wait(pending, timeout=0.5, return_when=futures.FIRST_COMPLETED)
                        for job in done:
                            refresh(job.result())
                        if not done:
                            refresh()
                except BaseException:
                    # Interrupted (Ctrl-C, SIGTERM): leaving the block would wait for every queued video.
                    _stop_workers(pool)
                    raise
    finally:
        bar.close()
    return sorted(results, key=lambda r: r.id)


@dataclass
class PrepareSummary:
    """What a ``prepare`` run did: counts, throughput, and one message per skipped input."""

    prepared: int
    already_done: int
    frames: int
    seconds: float
    problems: list[str]
    manifest: Path | None

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` with ``0 <= i < n`` → ``(i, n)``."""
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard expects i/n such as 0/4, got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return index, count


def _read_own(path: Path, is_own: Callable[[Any], bool], why: str) -> dict[str, Any] | None:
    """A JSON file ``prepare`` writes (None if there is none); ValueError saying ``why`` if it is another's."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if not is_own(data):
        raise ValueError(f"{path.parent}: {why}; prepare writes only into an empty folder or its own store: choose "
                         "another --out")
    return data


def _read_settings(root: Path) -> dict[str, Any] | None:
    """The settings ``prepare`` recorded in ``root`` (None if there are none)."""
    return _read_own(root / SETTINGS, lambda s: isinstance(s, dict) and isinstance(s.get("prep"), dict)
                     and "layout" in s, f"its {SETTINGS} was not written by tstcnn prepare")


def _store_manifest(root: Path) -> dict[str, Any] | None:
    """The tstcnn-store manifest in ``root`` (None if there is none)."""
    return _read_own(root / MANIFEST, lambda m: isinstance(m, dict) and m.get("format") == FORMAT,
                     f"its {MANIFEST} is not a {FORMAT} manifest (another tool's?) and would be replaced")


def _check_out(root: Path) -> None:
    """Refuse a folder ``prepare`` did not make, since writing there could replace or remove what it holds.

    Allowed: a missing or empty folder (a lock file of a killed run aside), or a store ``prepare`` made.
    """
    if not root.exists():
        return
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    if _read_settings(root) is not None or _store_manifest(root) is not None:
        return
    others = sorted(p.name for p in root.iterdir() if p.name != LOCK_FILE)
    if others:
        held = ", ".join(others[:3]) + (", …" if len(others) > 3 else "")
        raise ValueError(f"{root} is not empty and not a store made by prepare (it holds {held}); prepare writes "
                         "only into an empty folder or its own store: choose another --out")


def _check_settings(root: Path, prep: PrepConfig, layout: str, source: Path, preset: str | None) -> None:
    """Record the prep settings at the first run; refuse to resume a store made with other settings."""
    settings = {"prep": asdict(prep), "layout": layout, "source": str(source.resolve()), "preset": preset}
    previous = _read_settings(root)
    if previous is None:
        manifest = _store_manifest(root)
        if manifest is not None and manifest.get("prep") != settings["prep"]:
            raise ValueError(f"{root} was prepared with {manifest.get('prep')}; this run asks for {settings['prep']}: "
                             "use another --out or the same settings")
        atomic_write_text(root / SETTINGS, json.dumps(settings, indent=1, sort_keys=True) + "\n")
        return
    if previous["prep"] != settings["prep"] or previous["layout"] != layout:
        raise ValueError(f"{root} was prepared with {previous['layout']} {previous['prep']}; this run asks for "
                         f"{layout} {settings['prep']}: use another --out or the same settings")


def prepare_dataset(source: str | Path, layout: str, out: str | Path, prep: PrepConfig, *,
                    classes: Sequence[str] | None = None, workers: int = 1, decode_threads: int = 1,
                    shard: tuple[int, int] | None = None, max_videos: int | None = None, preset: str | None = None,
                    test_labels: str | Path | None = None, progress: bool = True,
                    log: Callable[[str], None] | None = None) -> PrepareSummary:
    """Read ``source`` in ``layout`` and prepare it into the store ``out`` (resuming what is there).

    Without ``shard`` the manifest is written at the end (also when some inputs were skipped: the good videos
    are kept and the problems recorded). With ``shard`` only ``shards/<i>-of-<n>.json`` is written; run
    :func:`merge_shards` once every shard has finished. ``test_labels`` labels the test clips of a
    mediaeval-classification layout from a ground-truth submission XML (see :func:`read_layout`). Messages
    about the work go to ``log`` (this module's logger at INFO when None).

    Raises:
        ValueError: ``out`` is neither empty nor a store ``prepare`` made, another command is writing into it,
            or it was prepared with other settings.
    """
    source, root = Path(source), Path(out)
    if prep.width < 16 or prep.width % 2:
        raise ValueError(f"prep width {prep.width}: needs an even number of pixels, at least 16")
    create_flow(prep.flow)  # an unknown method fails here, not once per video
    scan = read_layout(layout, source, classes, test_labels)
    _check_out(root)  # before the lock, which would leave its file in a folder that is not ours
    command = "tstcnn prepare" + (f" --shard {shard[0]}/{shard[1]}" if shard is not None else "")
    with contextlib.ExitStack() as locks:
        locks.enter_context(folder_lock(root, command, shared=shard is not None))
        _check_out(root)  # again: another run may have written it meanwhile
        _check_settings(root, prep, layout, source, preset)
        if shard is not None:  # shards of one store run together; the same shard twice would not
            locks.enter_context(folder_lock(root / SHARDS, command, name=f".{shard[0]}-of-{shard[1]}.lock"))
        return _prepare_locked(scan, source, layout, root, prep, workers=workers, decode_threads=decode_threads,
                               shard=shard, max_videos=max_videos, preset=preset, progress=progress,
                               log=log or logger.info)


def _prepare_locked(scan: LayoutScan, source: Path, layout: str, root: Path, prep: PrepConfig, *, workers: int,
                    decode_threads: int, shard: tuple[int, int] | None, max_videos: int | None, preset: str | None,
                    progress: bool, log: Callable[[str], None]) -> PrepareSummary:
    """The work of :func:`prepare_dataset` once it holds the store."""
    items = scan.items if shard is None else scan.items[shard[0]::shard[1]]
    ids = [it.id for it in items]
    for name in remove_incomplete(root, ids):
        log(f"removed the temporary folder {name} left by an interrupted run")
    problems = list(scan.problems)
    complete = set(complete_video_ids(root))
    blocked = set()
    for item in items:
        in_the_way = None if item.id in complete else entry_in_the_way(root, item.id)
        if in_the_way:
            problems.append(in_the_way)
            blocked.add(item.id)
    kept = set()
    for item in items:
        if item.id in complete:
            if _stored_stamp(root, item.id) == _source_stamp(item):
                kept.add(item.id)
            else:
                log(f"{item.path} changed since it was prepared: preparing it again (the prepared version stays "
                    "until the new one is complete)")
    todo = [it for it in items if it.id not in kept and it.id not in blocked]
    if kept:
        log(f"{len(kept)} of {len(items)} videos already prepared; {len(todo)} to do")
    started = time.perf_counter()
    results = prepare_items(todo, root, prep, workers=workers, decode_threads=decode_threads,
                            max_videos=max_videos, progress=progress)
    seconds = time.perf_counter() - started
    problems += [p for r in results for p in r.problems]
    prepared = [r for r in results if r.ok]
    # Listed: what was complete and unchanged, and what this run prepared; never an old version of a changed video.
    done = kept | {r.id for r in prepared}
    finished = [i for i in ids if i in done]
    unfinished = len(results) < len(todo)
    manifest = None
    if shard is not None:
        record = {"shard": list(shard), "videos": finished, "problems": problems, "classes": list(scan.classes),
                  "layout": layout, "source": str(source.resolve()), "complete": not unfinished}
        atomic_write_text(root / SHARDS / f"{shard[0]}-of-{shard[1]}.json", json.dumps(record, indent=1) + "\n")
    elif not unfinished:
        manifest = finalize_store(root, prep, scan.classes, layout=layout, source=str(source.resolve()),
                                  videos=finished, problems=problems, preset=preset)
    return PrepareSummary(len(prepared), len(kept), sum(r.frames for r in prepared), seconds, problems, manifest)


def _read_shard_record(path: Path) -> dict[str, Any]:
    """A shard record, its video ids checked (they become paths)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        shard = [int(record["shard"][0]), int(record["shard"][1])]
        lists = {key: list(record[key]) for key in ("videos", "problems", "classes")}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"{path}: unreadable shard record ({type(exc).__name__}: {exc})") from None
    try:
        for video_id in lists["videos"]:
            check_id(video_id)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return {**record, "shard": shard, **lists}


def merge_shards(out: str | Path, others: Sequence[str | Path] = ()) -> PrepareSummary:
    """Gather shard stores into ``out`` (moving their video folders in) and write the manifest.

    Every shard ``0 … n-1`` must have finished and the settings of all stores must be equal; both are checked
    before anything moves. ``out`` and the other stores are locked while it runs.
    """
    root = Path(out)
    sources = []
    for other in map(Path, others):
        if other.resolve() != root.resolve() and other.resolve() not in {s.resolve() for s in sources}:
            sources.append(other)
    for other in sources:
        if _read_settings(other) is None:
            raise ValueError(f"{other}: not a shard store (no {SETTINGS})")
    _check_out(root)
    with contextlib.ExitStack() as locks:
        for folder in (root, *sources):
            locks.enter_context(folder_lock(folder, "tstcnn prepare --merge"))
        _check_out(root)
        return _merge_locked(root, sources)


def _merge_locked(root: Path, sources: Sequence[Path]) -> PrepareSummary:
    """The work of :func:`merge_shards` once it holds every store."""
    settings = _read_settings(root)
    for other in sources:
        theirs = _read_settings(other)
        if settings is not None and settings["prep"] != theirs["prep"]:
            raise ValueError(f"{other} was prepared with {theirs['prep']}, {root} with {settings['prep']}: they "
                             "cannot be merged")
        settings = settings or theirs
    record_files = {p.name: p for p in sorted((root / SHARDS).glob("*-of-*.json"))}
    for other in sources:
        record_files.update({p.name: p for p in sorted((other / SHARDS).glob("*-of-*.json"))})
    records = [_read_shard_record(path) for _, path in sorted(record_files.items())]
    if not records or settings is None:
        raise ValueError(f"{root}: no shard records in {root / SHARDS} (run prepare with --shard first)")
    count = records[0]["shard"][1]
    have = {r["shard"][0] for r in records if r["shard"][1] == count and r.get("complete", True)}
    missing = sorted(set(range(count)) - have)
    if missing or any(r["shard"][1] != count for r in records):
        raise ValueError(f"{root}: shard(s) {', '.join(f'{i}/{count}' for i in missing) or '?'} not finished; "
                         "run them, then merge again")
    remove_incomplete(root)  # what an interrupted merge left; nobody else writes here while we hold the lock
    if not (root / SETTINGS).exists():
        atomic_write_text(root / SETTINGS, json.dumps(settings, indent=1, sort_keys=True) + "\n")
    for other in sources:
        for video_id in complete_video_ids(other):
            move_entry(other, root, video_id)
    for name, path in record_files.items():
        if path.parent != root / SHARDS:
            atomic_write_bytes(root / SHARDS / name, path.read_bytes())
    videos = sorted(v for r in records for v in r["videos"])
    problems = list(dict.fromkeys(p for r in records for p in r["problems"]))
    classes = records[0]["classes"]
    manifest = finalize_store(root, PrepConfig(**settings["prep"]), classes, layout=settings["layout"],
                              source=settings["source"], videos=videos, problems=problems,
                              preset=settings.get("preset"))
    frames = sum(json.loads((root / VIDEOS / v / META).read_text(encoding="utf-8"))["frames"] for v in videos)
    return PrepareSummary(0, len(videos), frames, 0.0, problems, manifest)


def summary_lines(summary: PrepareSummary) -> list[str]:
    """Human-readable closing lines of a run."""
    lines = [f"prepared {summary.prepared} videos ({summary.frames} frames, {summary.frames_per_second:.0f} frames/s)"
             + (f", {summary.already_done} already done" if summary.already_done else "")]
    if summary.manifest:
        lines.append(f"wrote {summary.manifest}")
    return lines

