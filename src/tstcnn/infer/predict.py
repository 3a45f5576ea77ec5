"""Classify trimmed clips with a trained model, from raw videos or from a prepared store.

Clips are read exactly as the run's validation clips were (the same :class:`tstcnn.data.ClipReader` and
loader: the ROI-centred crop, the same centring of short clips, flow divided by the run's own ``flow_scale``). Raw
videos are prepared with the run's own preparation settings (width, flow method, ROI smoothing) in a stream
(:mod:`tstcnn.prep.stream`), so the temporary disk is bounded whatever the videos' number and length: clips that
fit in one chunk are gathered into a temporary store of about one chunk, classified together and deleted; a
longer video is counted, then classified chunk by chunk. A clip longer than the network's window is classified
from several windows and aggregated (:mod:`tstcnn.infer.aggregate`).

A run trained with a frame stride ``k`` (``data.frame_stride``, resolved and saved with the run) reads every
``k``-th frame: its window spans ``(T − 1)·k + 1`` source frames (:func:`window_span`), and window starts, centres
and every frame number written stay in source frames. :func:`load_predictor` can override the run's ``k``.

A "run" here is :class:`tstcnn.runtime.checkpoint.LoadedRun` or an export's
:class:`tstcnn.infer.export.ExportedRun`: both give ``model``, ``config``, ``classes``, ``flow_scale``, ``prep``.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tstcnn.config import override
from tstcnn.data import ClipReader, WindowClips, build_dataloader, clip_span, store_frame_stride
from tstcnn.infer.aggregate import CLIP_AGGREGATIONS, aggregate_windows
from tstcnn.infer.export import load_export
from tstcnn.infer.windows import clip_window_starts, window_centres
from tstcnn.io.atomic import atomic_write_text
from tstcnn.io.layouts import VIDEO_EXTENSIONS, SourceItem
from tstcnn.io.mediaeval import write_organisers_run, write_submission
from tstcnn.io.video import VideoError, count_frames
from tstcnn.prep.prepare import prepare_video
from tstcnn.prep.store import Store, VideoEntry, finalize_store, move_entry
from tstcnn.prep.stream import CHUNK_FRAMES, Chunk, stream_chunks
from tstcnn.progress import progress as progress_bar
from tstcnn.runtime.checkpoint import load_run
from tstcnn.runtime.inference import predict_batches
from tstcnn.runtime.performance import compile_for_inference, inference_options, resolve_precision

logger = logging.getLogger(__name__)

__all__ = ["EXPORT_SUFFIXES", "PredictOptions", "ClipPrediction", "StreamedWindows", "load_predictor",
           "with_frame_stride", "window_span", "run_reader",
           "clip_probabilities", "window_probabilities", "classify_entry", "source_items", "remove_stale_stores",
           "work_folder", "prepared_store", "stream_windows", "stream_problem", "predict_store", "predict_items",
           "predict_videos", "write_predictions"]

EXPORT_SUFFIXES = (".onnx", ".ts", ".json")
ORGANISERS_RUN = "mediaeval-run"  # the run folder the MediaEval organisers' scripts read


@dataclass(frozen=True)
class PredictOptions:
    """Test-time aggregation over the windows of a clip, and batching."""

    aggregation: str = "mean"  # centre | vote | mean | gaussian
    windows: int = 5  # windows per clip longer than the network's input (1 for "centre")
    sigma: float | None = None  # Gaussian weights' standard deviation in frames (default: a quarter of the span)
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.aggregation not in CLIP_AGGREGATIONS:
            raise ValueError(f"unknown aggregation {self.aggregation!r}; allowed: {', '.join(CLIP_AGGREGATIONS)}")
        if self.windows < 1 or self.batch_size < 1:
            raise ValueError(f"windows and batch size must be positive, got {self.windows} and {self.batch_size}")


@dataclass
class ClipPrediction:
    """The class of one clip, its score per class (aggregated over ``windows`` windows)."""

    name: str
    label: str
    scores: np.ndarray
    windows: int


def load_predictor(path: str | Path, which: str = "best", device: str = "cpu", precision: str = "auto",
                   compile: bool = False, frame_stride: int | None = None) -> Any:
    """A run folder or checkpoint (``LoadedRun``), or an exported model or its spec (``ExportedRun``).

    ``frame_stride`` overrides the run's own (:func:`with_frame_stride`); None keeps the run's.

    ``precision`` ``auto`` runs a checkpoint the fastest measured way for ``device``
    (:func:`~tstcnn.runtime.performance.inference_options`: bf16 autocast and channels-last where bf16 is fast);
    ``fp32`` is the reference path. ``compile`` runs the checkpoint through
    :func:`~tstcnn.runtime.performance.compile_for_inference` (pays off from a few hundred windows on).
    Exported models run as exported.
    """
    path = Path(path)
    if path.suffix in EXPORT_SUFFIXES:
        return with_frame_stride(load_export(path), frame_stride)
    run = with_frame_stride(load_run(path, which, device), frame_stride)
    if precision == "auto":
        settings = inference_options(device)
    else:
        settings = {"precision": resolve_precision(precision, device), "channels_last": False}
    if settings["channels_last"]:
        run.model.to(memory_format=torch.channels_last_3d)
    if compile:
        settings["model"], settings["compiled"] = compile_for_inference(run.model), True
    return replace(run, **settings)


def _device(run: Any) -> torch.device:
    parameters = getattr(run.model, "parameters", None)
    if parameters is None:
        return torch.device("cpu")
    return next(parameters()).device


def with_frame_stride(run: Any, frame_stride: int | None) -> Any:
    """``run`` reading every ``frame_stride``-th frame instead of its own stride (None: ``run`` unchanged)."""
    if frame_stride is None:
        return run
    if isinstance(frame_stride, bool) or not isinstance(frame_stride, int) or frame_stride < 1:
        raise ValueError(f"frame stride must be an integer >= 1, got {frame_stride!r}")
    if frame_stride != run.config.data.frame_stride:
        logger.info("frame stride %d instead of the run's %s", frame_stride, run.config.data.frame_stride)
    return replace(run, config=override(run.config, "data", frame_stride=frame_stride))


def _frame_stride(run: Any, store: Store | None = None) -> int:
    """The run's frame stride; ``auto`` (a config that training did not resolve) resolved on ``store``."""
    setting = run.config.data.frame_stride
    if setting != "auto":
        return int(setting)
    if store is None:
        raise ValueError("the run's data.frame_stride is auto, not resolved by training; give a frame stride")
    return store_frame_stride(setting, store, int(run.config.model.input_size[0]))


def window_span(run: Any, store: Store | None = None) -> int:
    """The network's window in source frames: ``(T − 1)·k + 1`` for clips of ``T`` frames at frame stride ``k``."""
    return clip_span(int(run.config.model.input_size[0]), _frame_stride(run, store))


def run_reader(store: Store, run: Any, modality: str | None = None) -> ClipReader:
    """The reader of a run's model inputs from ``store``: the run's clip size, frame stride and its own flow scale
    (the normalisation the model was trained with, whatever the store's). ``modality`` overrides which inputs."""
    model_cfg = run.config.model
    return ClipReader(store, modality or model_cfg.modality, tuple(model_cfg.input_size), flow_scale=run.flow_scale,
                      frame_stride=_frame_stride(run, store))


def clip_probabilities(run: Any, clips: WindowClips, batch_size: int, progress: Any = None) -> np.ndarray:
    """Softmax output ``(len(clips), classes)`` of inference windows, batched by the package's loader, with the
    run's inference precision and memory format. A compiled model gets full batches only (the last one padded
    with copies of its last window), so that it compiles one graph."""
    loader = build_dataloader(clips, batch_size, shuffle=False)
    _, probabilities = predict_batches(run.model, loader, device=_device(run),
                                       precision=getattr(run, "precision", "fp32"),
                                       channels_last=getattr(run, "channels_last", False),
                                       pad_to=batch_size if getattr(run, "compiled", False) else None,
                                       progress=progress)
    return probabilities.astype(np.float64)


def window_probabilities(run: Any, reader: ClipReader, video_id: str, starts: Sequence[int],
                         batch_size: int, progress: Any = None) -> np.ndarray:
    """:func:`clip_probabilities` of the windows of one video starting at ``starts``."""
    return clip_probabilities(run, WindowClips.of_video(reader, video_id, starts), batch_size, progress)


def _clip_name(entry: VideoEntry) -> str:
    source = entry.extra.get("source")
    return Path(source).name if source else f"{entry.id}.mp4"


def _clip_starts(entry: VideoEntry, length: int, options: PredictOptions) -> np.ndarray:
    return clip_window_starts(entry.frames, length, 1 if options.aggregation == "centre" else options.windows)


def _aggregate(run: Any, entry: VideoEntry, starts: np.ndarray, probs: np.ndarray, length: int,
               options: PredictOptions) -> ClipPrediction:
    scores = aggregate_windows(probs, options.aggregation, positions=window_centres(starts, length),
                               centre=(entry.frames - 1) / 2, sigma=options.sigma)
    return ClipPrediction(_clip_name(entry), run.classes.classes[int(scores.argmax())], scores, len(starts))


def classify_entry(run: Any, reader: ClipReader, entry: VideoEntry, options: PredictOptions) -> ClipPrediction:
    """Classify one stored clip with test-time aggregation over its windows."""
    reader.check(entry)
    length = reader.span
    starts = _clip_starts(entry, length, options)
    probs = window_probabilities(run, reader, entry.id, starts, options.batch_size)
    return _aggregate(run, entry, starts, probs, length, options)


def source_items(paths: Sequence[str | Path]) -> tuple[list[SourceItem], list[str]]:
    """Source items for raw video files and folders of videos (ids from file names); problems named."""
    items, problems, seen = [], [], set()
    for given in paths:
        path = Path(given)
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS) if path.is_dir() else [path]
        if path.is_dir() and not files:
            problems.append(f"{path}: no video files in this folder")
        for file in files:
            if not file.is_file():
                problems.append(f"{file}: no such video file")
            elif file.stem in seen:
                problems.append(f"{file}: another video is already named {file.stem!r}")
            else:
                seen.add(file.stem)
                items.append(SourceItem(file.stem, file, "test"))
    return items, problems


_TEMPORARY_PREFIX = "tstcnn-prepared-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_stores(parent: str | Path | None = None) -> list[Path]:
    """Delete the temporary stores that killed runs left in ``parent`` (the system's temporary folder by
    default): those whose name carries the pid of a process that no longer exists. Returns what was removed."""
    parent = Path(parent or tempfile.gettempdir())
    removed = []
    for path in parent.glob(f"{_TEMPORARY_PREFIX}*"):
        pid = path.name[len(_TEMPORARY_PREFIX):].split("-", 1)[0]
        if path.is_dir() and not path.is_symlink() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def work_folder(work_dir: str | Path | None = None) -> Iterator[Path]:
    """A temporary folder for prepared videos, removed on leaving; its name carries this process's pid, so that
    a later run removes it if this one is killed (those of killed runs are removed first)."""
    for stale in remove_stale_stores(work_dir):
        logger.info("removed %s, left by a run that was killed", stale)
    with tempfile.TemporaryDirectory(prefix=f"{_TEMPORARY_PREFIX}{os.getpid()}-", dir=work_dir) as root:
        yield Path(root)


@contextlib.contextmanager
def prepared_store(items: Sequence[SourceItem], run: Any, work_dir: str | Path | None = None,
                   progress: bool = False) -> Iterator[tuple[Store | None, list[str]]]:
    """Prepare raw videos with the run's preparation settings into one temporary store of all of them.

    Yields ``(store, problems)``: the store of the videos that could be prepared (None when none could) and
    one message per video that could not (unreadable, no frames…), so the others still go on. The store holds
    every video whole: :func:`predict_items` and ``detect_videos`` stream instead, in bounded disk.
    """
    with work_folder(work_dir) as root:
        problems, done = [], []
        for item in progress_bar(items, desc="prepare", unit="video", enabled=progress and len(items) > 1):
            result = prepare_video(item, root, run.prep)
            if result.ok:
                done.append(item.id)
            else:
                problems += result.problems
        store = None
        if done:
            finalize_store(root, run.prep, run.classes.classes, layout="inference", videos=done)
            store = Store(root)
        yield store, problems


@dataclass
class StreamedWindows:
    """The windows of one raw video classified chunk by chunk: its entry (decoded frame count, fps, source), the
    window starts in the video's frames, their probabilities, and the seconds spent in the network."""

    entry: VideoEntry
    starts: np.ndarray  # (W,) int64, increasing
    probs: np.ndarray  # (W, C)
    seconds: float


def stream_windows(run: Any, item: SourceItem, starts_for: Callable[[Chunk], np.ndarray], work_dir: str | Path, *,
                   batch_size: int, chunk_frames: int = CHUNK_FRAMES, progress: Any = None) -> StreamedWindows:
    """Prepare one raw video chunk by chunk (:func:`~tstcnn.prep.stream.stream_chunks`) and classify the windows
    ``starts_for(chunk)`` gives for each chunk (starts in the video's frames, from ``chunk.select``).

    Each chunk's store is deleted before the next is prepared, so the temporary disk stays about one chunk.
    """
    starts, probs, seconds, entry = [], [], 0.0, None
    chunks = stream_chunks(item.path, item.id, run.prep, work_dir, run.classes.classes, overlap=window_span(run) - 1,
                           chunk_frames=chunk_frames)
    with contextlib.closing(chunks):  # an error leaves no chunk behind
        for chunk in chunks:
            chosen = np.asarray(starts_for(chunk), np.int64)
            if len(chosen):
                began = time.perf_counter()
                reader = run_reader(chunk.store, run)
                probs.append(window_probabilities(run, reader, item.id, chosen - chunk.first, batch_size, progress))
                starts.append(chosen)
                seconds += time.perf_counter() - began
            if chunk.last:
                entry = replace(chunk.store.entry(item.id), frames=chunk.frames)
    if entry is None or not starts:
        raise ValueError(f"video {item.id!r}: no window to classify")
    return StreamedWindows(entry, np.concatenate(starts), np.concatenate(probs), seconds)


def stream_problem(item: SourceItem, exc: Exception, work_dir: str | Path | None) -> str:
    """The one-line problem of a video that could not be streamed; a full work folder stops the run instead,
    since every later video would fail the same way."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = work_dir or tempfile.gettempdir()
        raise OSError(exc.errno, f"video {item.id!r}: no space left on device in {where} (--work-dir)") from None
    if isinstance(exc, VideoError) or str(item.path) in str(exc):
        return str(exc)
    return str(exc) if repr(item.id) in str(exc) else f"{item.path}: {exc}"


def predict_store(run: Any, store: Store, options: PredictOptions, split: str | None = None,
                  progress: bool = False) -> tuple[list[ClipPrediction], list[str]]:
    """Classify every clip of a store (or of one split); a clip that fails is reported, the others go on."""
    entries = store.videos(split)
    if not entries:
        raise ValueError(f"{store.root}: no videos{f' in split {split!r}' if split else ''}")
    reader = run_reader(store, run)
    length = reader.span
    problems, accepted, windows = [], [], []
    for entry in entries:
        try:
            reader.check(entry)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        starts = _clip_starts(entry, length, options)
        accepted.append((entry, starts))
        windows += [(entry.id, int(s)) for s in starts]
    if not accepted:
        return [], problems
    # The windows of all clips in one loader: full batches, as evaluation reads the same clips.
    with progress_bar(total=len(windows), desc="classify", unit="window", enabled=progress) as bar:
        probs = clip_probabilities(run, WindowClips(reader, windows), options.batch_size, bar)
    predictions, first = [], 0
    for entry, starts in accepted:
        predictions.append(_aggregate(run, entry, starts, probs[first:first + len(starts)], length, options))
        first += len(starts)
    return predictions, problems


class _NeedsFrameCount(Exception):
    """A clip longer than a chunk: its windows depend on its frame count, which the stream gives only at the end."""


def _predict_long(run: Any, item: SourceItem, options: PredictOptions, work_dir: Path, chunk_frames: int,
                  progress: bool) -> ClipPrediction:
    """Classify a clip longer than a chunk: count its frames (one decoding pass), then stream it chunk by chunk."""
    length = window_span(run)
    try:
        frames = count_frames(item.path)
    except VideoError as exc:
        raise VideoError(f"{item.path}: cannot count its frames ({exc})") from None
    starts = clip_window_starts(frames, length, 1 if options.aggregation == "centre" else options.windows)
    with progress_bar(total=len(starts), desc="classify", unit="window", enabled=progress) as bar:
        streamed = stream_windows(run, item, lambda chunk: chunk.select(starts), work_dir,
                                  batch_size=options.batch_size, chunk_frames=chunk_frames, progress=bar)
    if streamed.entry.frames != frames:
        raise VideoError(f"{item.path}: {streamed.entry.frames} frames decoded, {frames} counted before")
    return _aggregate(run, streamed.entry, streamed.starts, streamed.probs, length, options)


def predict_items(run: Any, items: Sequence[SourceItem], options: PredictOptions, work_dir: str | Path | None = None,
                  progress: bool = False, chunk_frames: int = CHUNK_FRAMES) -> tuple[list[ClipPrediction], list[str]]:
    """Classify raw videos in bounded temporary disk; a video that fails is named, the others go on.

    Clips of one chunk or less are prepared whole (exactly as ``prepare`` would) into a shared temporary store,
    which is classified (full batches across clips) and deleted whenever it holds ``chunk_frames`` frames;
    a longer clip is streamed on its own (:func:`_predict_long`).
    """
    predictions, problems = [], []
    with work_folder(work_dir) as root:
        clips, held = root / "clips", 0

        def classify_held() -> None:
            nonlocal held
            if held:
                finalize_store(clips, run.prep, run.classes.classes, layout="inference")
                done, more = predict_store(run, Store(clips), options, progress=progress)
                predictions.extend(done)
                problems.extend(more)
            shutil.rmtree(clips, ignore_errors=True)
            held = 0

        for item in progress_bar(items, desc="prepare", unit="video", enabled=progress and len(items) > 1):
            try:
                try:
                    # closed on leaving, so that its chunks are gone before the clip is streamed again
                    with contextlib.closing(stream_chunks(item.path, item.id, run.prep, root / "stream",
                                                          run.classes.classes, overlap=window_span(run) - 1,
                                                          chunk_frames=chunk_frames)) as chunks:
                        for chunk in chunks:
                            if not chunk.last:
                                raise _NeedsFrameCount
                            move_entry(chunk.store.root, clips, item.id)  # kept past its chunk, for shared batches
                            held += chunk.frames
                except _NeedsFrameCount:
                    predictions.append(_predict_long(run, item, options, root / "stream", chunk_frames, progress))
            except (VideoError, ValueError, OSError) as exc:
                problems.append(stream_problem(item, exc, work_dir))
            if held >= chunk_frames:
                classify_held()
        classify_held()
    return predictions, problems


def predict_videos(run: Any, paths: Sequence[str | Path], options: PredictOptions, work_dir: str | Path | None = None,
                   progress: bool = False, chunk_frames: int = CHUNK_FRAMES) -> tuple[list[ClipPrediction], list[str]]:
    """Classify raw video files (or folders of them), prepared on the fly in bounded temporary disk
    (:func:`predict_items`); problems are named per video."""
    if not paths:
        raise ValueError("no videos given")
    items, problems = source_items(paths)
    predictions, more = predict_items(run, items, options, work_dir, progress, chunk_frames)
    return predictions, problems + more


def write_predictions(out_dir: str | Path, predictions: Sequence[ClipPrediction], classes: Sequence[str]
                      ) -> tuple[Path, Path]:
    """Write the MediaEval submission ``submission.xml``, the same as a run folder in the organisers' layout
    (``mediaeval-run/test.xml``, alone in its folder, as their scripts read it) and ``predictions.csv`` (one
    column per class)."""
    out_dir = Path(out_dir)
    xml = out_dir / "submission.xml"
    labels = {p.name: p.label for p in predictions}
    write_submission(xml, labels)
    write_organisers_run(out_dir / ORGANISERS_RUN, labels=labels)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["video", "class", "score", "windows", *classes])
    for p in sorted(predictions, key=lambda p: p.name):
        writer.writerow([p.name, p.label, f"{p.scores.max():.6f}", p.windows, *(f"{s:.6f}" for s in p.scores)])
    table = out_dir / "predictions.csv"
    atomic_write_text(table, buffer.getvalue())
    return xml, table
