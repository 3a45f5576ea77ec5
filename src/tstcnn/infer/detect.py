"""Strokes in untrimmed videos: a batched sliding window, per-frame smoothing, segments, MediaEval XML.

Each window of the network's ``T`` frames, every ``stride`` frames, gives class probabilities that speak
for its centre frame; frames in between are interpolated (:mod:`tstcnn.infer.windows`), smoothed over
time (vote, mean or Gaussian, :mod:`tstcnn.infer.aggregate`), then cut into stroke-vs-negative segments,
each given the stroke class it scores highest, short segments dropped (:mod:`tstcnn.infer.segments`). Each stroke
also gets a confidence and its three likeliest classes (:func:`score_strokes`), for review.

With a run's frame stride ``k`` a window reads every ``k``-th frame and spans ``(T − 1)·k + 1`` source frames
(:func:`~tstcnn.infer.predict.window_span`); ``T`` above and below means that span, and the stride, smoothing
width, minimum length, window starts and the XML's ``begin``/``end`` are all in source frames.

The stride trades speed for temporal precision: the cost is one network pass per window, so stride ``S``
costs about ``1/S`` of stride 1, while segment boundaries are only resolved to about ``S / 2`` frames
before smoothing. The default, ``T // 4``, keeps boundaries within an eighth of a window (measured
figures: README, "Using a trained model", and ``benchmarks/detect_stride.py``).

Raw videos are streamed (:func:`detect_videos`): each is prepared chunk by chunk into temporary stores of about
:data:`~tstcnn.prep.stream.CHUNK_FRAMES` frames, deleted as the windows move on, so the temporary disk does not
grow with the video; only the per-window and per-frame probabilities of the whole video are kept, in memory.

Per video, :func:`write_detection` writes ``<id>.xml`` (``<video><action begin end move/>…</video>``, end
exclusive), ``<id>_timeline.png`` and ``<id>_frames.npz`` (window starts and probabilities, smoothed
per-frame probabilities).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tstcnn.data import ClipReader
from tstcnn.infer.aggregate import FRAME_SMOOTHINGS, smooth_frames
from tstcnn.infer.predict import (
    ORGANISERS_RUN,
    run_reader,
    source_items,
    stream_problem,
    stream_windows,
    window_probabilities,
    window_span,
    work_folder,
)
from tstcnn.infer.scoring import score_detection
from tstcnn.infer.segments import frames_to_segments
from tstcnn.infer.windows import spread_to_frames, window_centres, window_starts
from tstcnn.io.atomic import atomic_path, atomic_write_text
from tstcnn.io.layouts import SourceItem
from tstcnn.io.mediaeval import Action, AnnotationError, read_actions, write_actions, write_organisers_run
from tstcnn.io.video import VideoError, probe
from tstcnn.prep.store import Store, VideoEntry
from tstcnn.prep.stream import CHUNK_FRAMES, Chunk
from tstcnn.progress import progress as progress_bar
from tstcnn.viz.timeline import plot_timeline

SUMMARY = "detection.json"

__all__ = ["SUMMARY", "mark_in_progress", "finish", "DetectOptions", "StrokeScore", "VideoDetection", "score_strokes",
           "detect_entry", "write_detection", "detect_store", "detect_streamed", "detect_videos"]


@dataclass(frozen=True)
class DetectOptions:
    """Sliding window, smoothing and segmentation settings; ``None`` fields follow the window length ``T``."""

    stride: int | None = None  # frames between windows; default T // 4
    batch_size: int = 8
    smoothing: str = "gaussian"  # none | vote | mean | gaussian
    smooth_width: int | None = None  # frames; default T
    threshold: float = 0.5  # a frame is a stroke when 1 − p(Negative) reaches it
    min_length: int | None = None  # shorter segments are dropped; default T // 2
    max_gap: int = 0  # gaps shorter than this between segments are filled

    def resolve(self, window: int) -> DetectOptions:
        """Concrete values for a network window of ``window`` frames, checked."""
        resolved = dataclasses.replace(
            self, stride=self.stride or max(1, window // 4), smooth_width=self.smooth_width or window,
            min_length=self.min_length if self.min_length is not None else max(1, window // 2))
        if resolved.smoothing not in FRAME_SMOOTHINGS:
            raise ValueError(f"unknown smoothing {resolved.smoothing!r}; allowed: {', '.join(FRAME_SMOOTHINGS)}")
        if resolved.stride < 1 or resolved.batch_size < 1:
            raise ValueError(f"stride and batch size must be positive, got {resolved.stride}, {resolved.batch_size}")
        if not 0.0 < resolved.threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {resolved.threshold}")
        return resolved


@dataclass(frozen=True)
class StrokeScore:
    """How sure the detector is of one stroke: the mean probability of its class over its frames, and the three
    stroke classes of highest mean probability (the first is the stroke's class)."""

    confidence: float
    top3: tuple[tuple[str, float], ...]


@dataclass
class VideoDetection:
    """What the detector saw and found in one video; ``scores[i]`` goes with ``actions[i]``."""

    video_id: str
    frames: int
    fps: float
    starts: np.ndarray  # (W,) window starts
    window_probs: np.ndarray  # (W, C)
    frame_probs: np.ndarray  # (N, C), smoothed
    actions: list[Action]
    seconds: float
    scores: list[StrokeScore] = dataclasses.field(default_factory=list)


def score_strokes(frame_probs: np.ndarray, actions: Sequence[Action], classes: Sequence[str], negative_index: int,
                  k: int = 3) -> list[StrokeScore]:
    """A :class:`StrokeScore` per action from per-frame probabilities ``(N, C)``: means over ``[begin, end)``
    (Negative left out of the ranking, as :func:`~tstcnn.infer.segments.frames_to_segments` leaves it out)."""
    strokes = [c for c in range(len(classes)) if c != negative_index]
    scores = []
    for action in actions:
        frames = frame_probs[max(action.begin, 0):max(action.end, action.begin + 1)]
        mean = frames[:, strokes].mean(0) if len(frames) else np.zeros(len(strokes))
        order = np.argsort(-mean, kind="stable")[:k]
        top = tuple((classes[strokes[i]], round(float(mean[i]), 4)) for i in order)
        scores.append(StrokeScore(confidence=top[0][1] if top else 0.0, top3=top))
    return scores


def _negative_index(run: Any) -> int:
    index = run.classes.negative_index
    if index is None:
        raise ValueError("detection needs a Negative class in the model's classes, and this model has none")
    return index


def detect_entry(run: Any, reader: ClipReader, entry: VideoEntry, options: DetectOptions,
                 progress: Any = None) -> VideoDetection:
    """Slide the network over one stored video and return its strokes (``options`` resolved)."""
    reader.check(entry)
    length = reader.span
    began = time.perf_counter()
    starts = window_starts(entry.frames, length, options.stride)
    probs = window_probabilities(run, reader, entry.id, starts, options.batch_size, progress)
    frame_probs = smooth_frames(spread_to_frames(probs, window_centres(starts, length), entry.frames),
                                options.smoothing, options.smooth_width)
    actions = frames_to_segments(frame_probs, run.classes.classes, _negative_index(run), threshold=options.threshold,
                                 min_length=options.min_length, max_gap=options.max_gap)
    scores = score_strokes(frame_probs, actions, run.classes.classes, _negative_index(run))
    return VideoDetection(entry.id, entry.frames, entry.fps, starts, probs, frame_probs, actions,
                          time.perf_counter() - began, scores)


def write_detection(out_dir: str | Path, detection: VideoDetection, run: Any, truth: Sequence[Action] | None,
                    threshold: float) -> dict[str, Path]:
    """Write ``<id>.xml``, ``<id>_timeline.png`` and ``<id>_frames.npz`` into ``out_dir``."""
    out_dir = Path(out_dir)
    video = detection.video_id
    paths = {"xml": out_dir / f"{video}.xml", "timeline": out_dir / f"{video}_timeline.png",
             "frames": out_dir / f"{video}_frames.npz"}
    plot_timeline(paths["timeline"], detection.frame_probs, run.classes.classes, _negative_index(run),
                  detection.actions, truth, fps=detection.fps or None, threshold=threshold,
                  title=f"{video}: {len(detection.actions)} strokes found" +
                        (f", {len(truth)} true" if truth is not None else ""))
    with atomic_path(paths["frames"]) as tmp, tmp.open("wb") as handle:
        np.savez_compressed(handle, starts=detection.starts, window_probs=detection.window_probs.astype(np.float32),
                            frame_probs=detection.frame_probs.astype(np.float32),
                            classes=np.array(run.classes.classes))
    write_actions(paths["xml"], detection.actions)  # last: a video's XML means all its files are there
    return paths


def _summary(detections: Sequence[VideoDetection], truth: Mapping[str, Sequence[Action]], options: DetectOptions,
             problems: Sequence[str], window: int, frame_stride: int) -> dict[str, Any]:
    """The run's settings and speed; ``window`` is the network's window in source frames."""
    windows = sum(len(d.starts) for d in detections)
    seconds = sum(d.seconds for d in detections)
    summary: dict[str, Any] = {
        "status": "complete", "options": dataclasses.asdict(options), "window": window,
        "frame_stride": frame_stride, "problems": list(problems),
        "videos": {d.video_id: {"frames": d.frames, "windows": len(d.starts), "strokes": len(d.actions),
                                "seconds": round(d.seconds, 3)} for d in detections},
        "windows_per_second": windows / seconds if seconds else None,
        "frames_per_second": sum(d.frames for d in detections) / seconds if seconds else None,
    }
    known = {d.video_id for d in detections if d.video_id in truth}
    if known:
        predictions = {d.video_id: d.actions for d in detections if d.video_id in known}
        scores = score_detection(predictions, {v: truth[v] for v in known},
                                 {d.video_id: d.frames for d in detections})
        summary["scores"] = {"videos": sorted(known), **scores.to_dict()}
    return summary


def detect_store(run: Any, store: Store, out_dir: str | Path, options: DetectOptions, split: str | None = None,
                 truth: Mapping[str, Sequence[Action]] | None = None, progress: bool = False
                 ) -> tuple[list[VideoDetection], dict[str, Any]]:
    """Detect strokes in every video of a store (or a split); truth defaults to the store's own actions.

    Writes one XML, timeline and npz per video and ``detection.json`` (settings, speed, problems, and the
    MediaEval scores over the videos whose truth is known). A video that fails is reported; the others go on.
    """
    entries = store.videos(split)
    if not entries:
        raise ValueError(f"{store.root}: no videos{f' in split {split!r}' if split else ''}")
    _negative_index(run)
    reader = run_reader(store, run)
    length = reader.span
    options = options.resolve(length)
    truth = dict(truth) if truth is not None else {e.id: list(e.actions) for e in entries if e.actions}
    total = sum(len(window_starts(e.frames, length, options.stride)) for e in entries)
    detections, problems = [], []
    mark_in_progress(out_dir)
    with progress_bar(total=total, desc="detect", unit="window", enabled=progress) as bar:
        for entry in entries:
            try:
                detection = detect_entry(run, reader, entry, options, bar)
                write_detection(out_dir, detection, run, truth.get(entry.id), options.threshold)
                detections.append(detection)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:  # every later video would fail the same way
                    raise OSError(exc.errno, f"video {entry.id!r}: no space left on device in {out_dir}") from None
                problems.append(f"video {entry.id!r}: {exc}")
            except ValueError as exc:
                problems.append(str(exc) if repr(entry.id) in str(exc) else f"video {entry.id!r}: {exc}")
    summary = _summary(detections, truth, options, problems, length, reader.frame_stride)
    finish(out_dir, detections, summary)
    return detections, summary


def finish(out_dir: str | Path, detections: Sequence[VideoDetection], summary: Mapping[str, Any]) -> None:
    """The run folder in the MediaEval organisers' layout (``mediaeval-run/<id>.xml``, nothing else), then the
    summary, last: its ``status`` says the run is complete."""
    if detections:
        write_organisers_run(Path(out_dir) / ORGANISERS_RUN, actions={d.video_id: d.actions for d in detections})
    atomic_write_text(Path(out_dir) / SUMMARY, json.dumps(summary, indent=1, default=float) + "\n")


def mark_in_progress(out_dir: str | Path) -> None:
    """Replace a previous run's ``detection.json`` by a marker, so that a killed run never looks complete."""
    marker = {"status": "in progress", "pid": os.getpid(), "note": "a detection run is writing here, or was "
              "killed; this file is replaced by the summary when a run finishes"}
    atomic_write_text(Path(out_dir) / SUMMARY, json.dumps(marker, indent=1) + "\n")


def _truth_beside(items: Sequence[Any]) -> tuple[dict[str, list[Action]], list[str]]:
    """Annotations ``<id>.xml`` beside raw videos (MediaEval detection layout), when present."""
    truth, problems = {}, []
    for item in items:
        xml = item.path.with_suffix(".xml")
        if xml.is_file():
            try:
                truth[item.id] = read_actions(xml)
            except AnnotationError as exc:
                problems.append(str(exc))
    return truth, problems


def _sliding_starts(length: int, stride: int) -> Callable[[Chunk], np.ndarray]:
    """The window starts of a chunk, as :func:`window_starts` gives them for the whole video.

    Before the last chunk the frame count is unknown, but only the last window depends on it: the others are
    every ``stride`` frames.
    """
    def starts_for(chunk: Chunk) -> np.ndarray:
        if chunk.frames is not None:
            return chunk.select(window_starts(chunk.frames, length, stride))
        return np.arange(-(-chunk.first // stride) * stride, chunk.end, stride, dtype=np.int64)

    return starts_for


def detect_streamed(run: Any, item: SourceItem, options: DetectOptions, work_dir: str | Path,
                    chunk_frames: int = CHUNK_FRAMES, progress: Any = None) -> VideoDetection:
    """Detect strokes in one raw video prepared chunk by chunk (``options`` resolved): the windows, smoothing and
    segments of :func:`detect_entry` on a whole-video store, in bounded temporary disk."""
    length = window_span(run)
    streamed = stream_windows(run, item, _sliding_starts(length, options.stride), work_dir,
                              batch_size=options.batch_size, chunk_frames=chunk_frames, progress=progress)
    began, frames = time.perf_counter(), streamed.entry.frames
    frame_probs = smooth_frames(spread_to_frames(streamed.probs, window_centres(streamed.starts, length), frames),
                                options.smoothing, options.smooth_width)
    actions = frames_to_segments(frame_probs, run.classes.classes, _negative_index(run), threshold=options.threshold,
                                 min_length=options.min_length, max_gap=options.max_gap)
    scores = score_strokes(frame_probs, actions, run.classes.classes, _negative_index(run))
    return VideoDetection(item.id, frames, streamed.entry.fps, streamed.starts, streamed.probs, frame_probs, actions,
                          streamed.seconds + time.perf_counter() - began, scores)


def _expected_windows(items: Sequence[SourceItem], length: int, stride: int) -> int | None:
    """Windows of all videos by their headers' frame counts, for the progress bar (None when one is unknown)."""
    total = 0
    for item in items:
        try:
            frames = probe(item.path).header_frames
        except VideoError:
            continue
        if frames <= 0:
            return None
        total += len(window_starts(frames, length, stride))
    return total


def detect_videos(run: Any, paths: Sequence[str | Path], out_dir: str | Path, options: DetectOptions,
                  work_dir: str | Path | None = None, progress: bool = False, chunk_frames: int = CHUNK_FRAMES
                  ) -> tuple[list[VideoDetection], dict[str, Any]]:
    """Detect strokes in raw videos (files or folders), prepared on the fly with the run's settings, one video at a
    time and each in chunks of ``chunk_frames`` frames (:func:`detect_streamed`), so that the temporary disk in
    ``work_dir`` stays about one chunk whatever the videos' length.

    Ground truth is read from ``<id>.xml`` beside a video when there is one (empty test XMLs give no truth).
    Writes what :func:`detect_store` writes; a video that fails is named in the summary's problems.
    """
    if not paths:
        raise ValueError("no videos given")
    _negative_index(run)
    length = window_span(run)
    options = options.resolve(length)
    items, problems = source_items(paths)
    truth, xml_problems = _truth_beside(items)
    truth = {k: v for k, v in truth.items() if v}
    problems += xml_problems
    detections = []
    mark_in_progress(out_dir)
    with work_folder(work_dir) as root, progress_bar(total=_expected_windows(items, length, options.stride),
                                                     desc="detect", unit="window", enabled=progress) as bar:
        for item in items:
            try:
                detection = detect_streamed(run, item, options, root, chunk_frames, bar)
            except (VideoError, ValueError, OSError) as exc:
                problems.append(stream_problem(item, exc, work_dir))
                continue
            try:
                write_detection(out_dir, detection, run, truth.get(item.id), options.threshold)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:  # every later video would fail the same way
                    raise OSError(exc.errno, f"video {item.id!r}: no space left on device in {out_dir}") from None
                problems.append(f"video {item.id!r}: {exc}")
                continue
            detections.append(detection)
    summary = _summary(detections, truth, options, problems, length, int(run.config.data.frame_stride))
    finish(out_dir, detections, summary)
    return detections, summary
