"""``tstcnn prepare``: source videos → a prepared store, in parallel, resumable, shardable.

Each video is decoded once (PyAV, resized by swscale straight to YUV 4:2:0 at the prep width, decoding in a
background thread), the flow between consecutive frames is computed on the luma plane, the ROI centre is
taken from the flow norm and smoothed, and the entry is written under a temporary name then renamed
(:class:`~tstcnn.prep.store.VideoEntryWriter`). Videos run in worker processes (one OpenCV thread each).

Resume: a video whose folder holds ``meta.json`` is skipped; temporary or incomplete folders of the videos
to do are removed and redone. ``shard=(i, n)`` prepares every n-th video from the i-th (ids sorted) and
records ``shards/<i>-of-<n>.json``; :func:`merge_shards` gathers shards (from this store or others) and
writes the manifest once all are there. :func:`prepare_video_arrays` runs the same steps on one video in
memory, for inference on raw videos.
"""

from __future__ import annotations

import concurrent.futures as futures
import hashlib
import json
import multiprocessing
import queue
import shutil
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
from tstcnn.io.atomic import atomic_write_text
from tstcnn.io.layouts import SourceItem, check_actions, read_layout
from tstcnn.io.video import VideoError, iter_decoded, probe
from tstcnn.prep.flow import create_flow
from tstcnn.prep.roi import frame_centre, smooth_centres
from tstcnn.prep.store import (META, VIDEOS, VideoEntryWriter, complete_video_ids, downsample_flow, finalize_store,
                               remove_incomplete, yuv420_to_rgb)

__all__ = ["PreparedVideo", "VideoResult", "PrepareSummary", "frame_size", "iter_yuv420", "prepare_video_arrays",
           "prepare_video", "prepare_items", "prepare_dataset", "merge_shards", "parse_shard", "summary_lines"]

SETTINGS = "prepare.json"
SHARDS = "shards"


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
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
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
    """Prepare one source video into ``store_root/videos/<id>`` atomically; never raises for a bad video."""
    start = time.perf_counter()
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
    except Exception as exc:  # noqa: BLE001 - one bad video must not stop the others; its name is in the message
        return VideoResult(item.id, problems=[f"{item.path}: {type(exc).__name__}: {exc}"])
    return VideoResult(item.id, frames, time.perf_counter() - start)


_frames_done: Any = None  # in a worker process: the shared frame counter the progress bar reads


def _init_worker(counter: Any, single_thread: bool = True) -> None:
    global _frames_done
    _frames_done = counter
    if single_thread:
        cv2.setNumThreads(1)  # parallelism comes from the worker processes


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
    from tqdm.auto import tqdm

    order = sorted(items, key=lambda it: (-it.path.stat().st_size, it.id))
    if max_videos is not None:
        order = order[:max_videos]
    results: list[VideoResult] = []
    started = time.perf_counter()
    bar = tqdm(total=len(order), unit="video", desc="prepare", disable=not progress)
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
                                             initargs=(frames_done,)) as pool:
                pending = {pool.submit(prepare_video, item, str(store_root), prep, decode_threads, flow_threads)
                           for item in order}
                while pending:
                    done, pending = futures.wait(pending, timeout=0.5, return_when=futures.FIRST_COMPLETED)
                    for job in done:
                        refresh(job.result())
                    if not done:
                        refresh()
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


def _check_settings(root: Path, prep: PrepConfig, layout: str, source: Path, preset: str | None) -> None:
    """Record the prep settings at the first run; refuse to resume a store made with other settings."""
    settings = {"prep": asdict(prep), "layout": layout, "source": str(source.resolve()), "preset": preset}
    path = root / SETTINGS
    if path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        if previous["prep"] != settings["prep"] or previous["layout"] != layout:
            raise ValueError(f"{root} was prepared with {previous['layout']} {previous['prep']}; this run asks for "
                             f"{layout} {settings['prep']}: use another --out or the same settings")
        return
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(settings, indent=1, sort_keys=True) + "\n")


def prepare_dataset(source: str | Path, layout: str, out: str | Path, prep: PrepConfig, *,
                    classes: Sequence[str] | None = None, workers: int = 1, decode_threads: int = 1,
                    shard: tuple[int, int] | None = None, max_videos: int | None = None, preset: str | None = None,
                    test_labels: str | Path | None = None, progress: bool = True,
                    log: Callable[[str], None] = print) -> PrepareSummary:
    """Read ``source`` in ``layout`` and prepare it into the store ``out`` (resuming what is there).

    Without ``shard`` the manifest is written at the end (also when some inputs were skipped: the good videos
    are kept and the problems recorded). With ``shard`` only ``shards/<i>-of-<n>.json`` is written; run
    :func:`merge_shards` once every shard has finished. ``test_labels`` labels the test clips of a
    mediaeval-classification layout from a ground-truth submission XML (see :func:`read_layout`).
    """
    source, root = Path(source), Path(out)
    if prep.width < 16 or prep.width % 2:
        raise ValueError(f"prep width {prep.width}: needs an even number of pixels, at least 16")
    create_flow(prep.flow)  # an unknown method fails here, not once per video
    scan = read_layout(layout, source, classes, test_labels)
    _check_settings(root, prep, layout, source, preset)
    items = scan.items
    if shard is not None:
        items = items[shard[0]::shard[1]]
    ids = [it.id for it in items]
    for name in remove_incomplete(root, ids):
        log(f"removed the incomplete entry {name} left by an interrupted run")
    done = set(complete_video_ids(root))
    for item in items:
        if item.id in done and _stored_stamp(root, item.id) != _source_stamp(item):
            log(f"{item.path} changed since it was prepared: preparing it again")
            shutil.rmtree(root / VIDEOS / item.id)
            done.discard(item.id)
    todo = [it for it in items if it.id not in done]
    if len(todo) < len(items):
        log(f"{len(items) - len(todo)} of {len(items)} videos already prepared; {len(todo)} to do")
    started = time.perf_counter()
    results = prepare_items(todo, root, prep, workers=workers, decode_threads=decode_threads,
                            max_videos=max_videos, progress=progress)
    seconds = time.perf_counter() - started
    problems = scan.problems + [p for r in results for p in r.problems]
    complete = set(complete_video_ids(root))
    finished = [i for i in ids if i in complete]
    manifest = None
    unfinished = max_videos is not None and len(finished) + sum(not r.ok for r in results) < len(items)
    if shard is not None:
        record = {"shard": list(shard), "videos": finished, "problems": problems, "classes": list(scan.classes),
                  "layout": layout, "source": str(source.resolve()), "complete": not unfinished}
        atomic_write_text(root / SHARDS / f"{shard[0]}-of-{shard[1]}.json", json.dumps(record, indent=1) + "\n")
    elif not unfinished:
        manifest = finalize_store(root, prep, scan.classes, layout=layout, source=str(source.resolve()),
                                  videos=finished, problems=problems, preset=preset)
    prepared = [r for r in results if r.ok]
    return PrepareSummary(len(prepared), len(items) - len(todo), sum(r.frames for r in prepared), seconds,
                          problems, manifest)


def merge_shards(out: str | Path, others: Sequence[str | Path] = ()) -> PrepareSummary:
    """Gather shard stores into ``out`` (moving their video folders in) and write the manifest.

    Every shard ``0 … n-1`` must have finished; the settings of all stores must be equal.
    """
    root = Path(out)
    for other in map(Path, others):
        if not (other / SETTINGS).is_file():
            raise ValueError(f"{other}: not a shard store (no {SETTINGS})")
        if (root / SETTINGS).is_file():
            mine, theirs = (json.loads((p / SETTINGS).read_text(encoding="utf-8"))["prep"] for p in (root, other))
            if mine != theirs:
                raise ValueError(f"{other} was prepared with {theirs}, {root} with {mine}: they cannot be merged")
        else:
            root.mkdir(parents=True, exist_ok=True)
            shutil.copy2(other / SETTINGS, root / SETTINGS)
        for video_id in complete_video_ids(other):
            if not (root / VIDEOS / video_id / META).is_file():
                (root / VIDEOS).mkdir(parents=True, exist_ok=True)
                shutil.move(str(other / VIDEOS / video_id), str(root / VIDEOS / video_id))
        for shard_file in sorted((other / SHARDS).glob("*.json")):
            (root / SHARDS).mkdir(parents=True, exist_ok=True)
            shutil.copy2(shard_file, root / SHARDS / shard_file.name)
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((root / SHARDS).glob("*-of-*.json"))]
    if not records:
        raise ValueError(f"{root}: no shard records in {root / SHARDS} (run prepare with --shard first)")
    count = records[0]["shard"][1]
    have = {r["shard"][0] for r in records if r["shard"][1] == count and r.get("complete", True)}
    missing = sorted(set(range(count)) - have)
    if missing or any(r["shard"][1] != count for r in records):
        raise ValueError(f"{root}: shard(s) {', '.join(f'{i}/{count}' for i in missing) or '?'} not finished; "
                         "run them, then merge again")
    settings = json.loads((root / SETTINGS).read_text(encoding="utf-8"))
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

