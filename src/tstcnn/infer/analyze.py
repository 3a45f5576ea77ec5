"""Session analysis for a coach: the strokes of raw videos as tables, clips, statistics and one page to open.

:func:`analyze_videos` detects the strokes of each video (:func:`tstcnn.infer.detect.detect_videos`, streamed in
chunks, so a long session needs little disk) and writes into ``OUT``::

    index.html                     the page to open (no server needed): statistics, timelines, a table per video
    session.json, session.png      strokes per class, type and hand, per minute, mean confidence; their figure
    detection/                     what ``tstcnn detect`` writes (XMLs, timelines, probabilities, detection.json)
    videos/<id>/strokes.csv        one row per stroke, columns :data:`COLUMNS` (frames end-exclusive)
    videos/<id>/strokes.json       {"video", "source", "fps", "frames", "columns", "strokes": [rows], "clips"}
    videos/<id>/<id>.xml           the MediaEval detection XML of the video
    videos/<id>/clips/NNN_<class>.mp4   one H.264 clip per stroke, ``pad`` seconds before and after, labelled

``tstcnn annotate PROJECT --import-analysis OUT`` reads the ``strokes.json`` files for review. A video that cannot
be decoded is named in one line and skipped; the others are analysed.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tstcnn.infer.detect import DetectOptions, VideoDetection, detect_videos, score_strokes
from tstcnn.infer.predict import source_items
from tstcnn.io.atomic import atomic_write_text
from tstcnn.io.mediaeval import write_actions
from tstcnn.io.video import VideoError, VideoWriter, iter_frames, resize_to_width
from tstcnn.taxonomy import Taxonomy
from tstcnn.viz.session import plot_session, write_session_page

__all__ = ["COLUMNS", "AnalyzeOptions", "VideoAnalysis", "AnalysisResult", "stroke_rows", "write_stroke_tables",
           "write_clips", "session_statistics", "analyze_videos"]

logger = logging.getLogger(__name__)

# The columns of strokes.csv and the keys of each strokes.json row; tstcnn annotate --import-analysis reads them.
COLUMNS = ("index", "begin_frame", "end_frame", "begin_s", "end_s", "duration_s", "class", "type", "hand",
           "confidence", "top3")


@dataclass(frozen=True)
class AnalyzeOptions:
    """What besides detection the analysis writes."""

    pad: float = 1.0  # seconds of video kept before and after each stroke in its clip
    clips: bool = True  # write one clip per stroke
    clip_width: int = 640  # wider videos are scaled down to this width in the clips
    low_confidence: float = 0.5  # the page marks strokes below this confidence

    def check(self) -> AnalyzeOptions:
        if not (np.isfinite(self.pad) and self.pad >= 0):
            raise ValueError(f"pad must be a number of seconds >= 0, got {self.pad}")
        if self.clip_width < 16:
            raise ValueError(f"clip width must be at least 16 pixels, got {self.clip_width}")
        return self


@dataclass
class VideoAnalysis:
    """One analysed video: its detection, its stroke rows and the files written for it (relative to ``OUT``)."""

    detection: VideoDetection
    source: Path
    rows: list[dict[str, Any]]
    files: dict[str, str] = field(default_factory=dict)
    clips: list[str | None] = field(default_factory=list)


@dataclass
class AnalysisResult:
    """What :func:`analyze_videos` did: the videos analysed, the problems, the statistics and the time of each part."""

    out_dir: Path
    videos: list[VideoAnalysis]
    problems: list[str]
    statistics: dict[str, Any]
    seconds: dict[str, float]

    @property
    def strokes(self) -> int:
        return sum(len(v.rows) for v in self.videos)


def _groups(classes: Taxonomy, grouping: str) -> dict[str, str]:
    """Class name → its type or hand (empty when the class names do not read as ``<Type> <Hand> <Technique>``)."""
    if not classes.supports_groupings():
        return {c: "" for c in classes.classes}
    names, index = classes.group_names(grouping), classes.group_map(grouping)
    return {c: names[index[i]] for i, c in enumerate(classes.classes)}


def stroke_rows(detection: VideoDetection, classes: Taxonomy) -> list[dict[str, Any]]:
    """One row per stroke found, keyed by :data:`COLUMNS`; times in seconds from the video's frame rate (frames when
    it is unknown), ``top3`` as ``[[class, mean probability], …]``."""
    negative = classes.negative_index
    scores = detection.scores
    if len(scores) != len(detection.actions):  # a detection made before strokes were scored
        scores = score_strokes(detection.frame_probs, detection.actions, classes.classes,
                               negative if negative is not None else -1)
    types, hands = _groups(classes, "type"), _groups(classes, "hand")
    fps = detection.fps if detection.fps and detection.fps > 0 else 1.0
    rows = []
    for number, (action, score) in enumerate(zip(detection.actions, scores), 1):
        name = action.move or score.top3[0][0]
        rows.append({"index": number, "begin_frame": int(action.begin), "end_frame": int(action.end),
                     "begin_s": round(action.begin / fps, 3), "end_s": round(action.end / fps, 3),
                     "duration_s": round((action.end - action.begin) / fps, 3), "class": name,
                     "type": types.get(name, ""), "hand": hands.get(name, ""),
                     "confidence": round(float(score.confidence), 4),
                     "top3": [[label, float(p)] for label, p in score.top3]})
    return rows


def _csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        top3 = ";".join(f"{label}:{p:.4f}" for label, p in row["top3"])
        writer.writerow([*(row[c] for c in COLUMNS[:-1]), top3])
    return buffer.getvalue()


def write_stroke_tables(folder: str | Path, analysis: VideoAnalysis) -> dict[str, Path]:
    """``strokes.csv``, ``strokes.json`` and ``<id>.xml`` (MediaEval) of one video into ``folder``."""
    folder = Path(folder)
    detection = analysis.detection
    paths = {"csv": folder / "strokes.csv", "json": folder / "strokes.json",
             "xml": folder / f"{detection.video_id}.xml"}
    atomic_write_text(paths["csv"], _csv_text(analysis.rows))
    document = {"video": analysis.source.name, "source": str(analysis.source.resolve()), "fps": detection.fps,
                "frames": detection.frames, "columns": list(COLUMNS), "strokes": analysis.rows,
                "clips": analysis.clips}
    atomic_write_text(paths["json"], json.dumps(document, indent=1) + "\n")
    write_actions(paths["xml"], detection.actions)
    return paths


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "stroke"


def _even(frame: np.ndarray) -> np.ndarray:
    """H.264 (yuv420p) needs even sides: drop an odd last row or column."""
    h, w = frame.shape[:2]
    return frame[:h - h % 2, :w - w % 2]


def _draw_label(frame: np.ndarray, text: str, inside: bool) -> np.ndarray:
    """The stroke's label on a dark band at the top; a green frame around the picture while the stroke lasts."""
    out = frame.copy()
    h, w = out.shape[:2]
    scale = max(0.35, w / 900)
    thickness = max(1, int(round(scale * 1.5)))
    (_, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    band = text_h + baseline + 8
    out[:band] = (out[:band] * 0.35).astype(np.uint8)
    cv2.putText(out, text, (6, band - baseline - 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness,
                cv2.LINE_AA)
    if inside:
        border = max(2, w // 160)
        cv2.rectangle(out, (0, band), (w - 1, h - 1), (40, 220, 60), border)
    return out


@dataclass
class _Clip:
    row: Mapping[str, Any]
    start: int
    end: int
    final: Path
    partial: Path
    label: str
    writer: VideoWriter | None = None


def write_clips(source: str | Path, rows: Sequence[Mapping[str, Any]], folder: str | Path, fps: float, pad: float,
                width: int = 640) -> list[Path]:
    """One H.264 clip per stroke row, ``pad`` seconds before and after it, its label drawn on every frame.

    The video is decoded once, in order; clips that overlap (strokes closer than twice ``pad``) are written side
    by side. Each clip is written under a temporary name and renamed when complete. Raises
    :class:`~tstcnn.io.video.VideoError` when the video cannot be decoded (the clips of that video are removed).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pad_frames = int(round(pad * fps))
    clips = []
    for row in rows:
        name = f"{row['index']:03d}_{_slug(row['class'])}.mp4"
        label = f"#{row['index']} {row['class']} ({row['confidence']:.2f})"
        clips.append(_Clip(row, max(0, row["begin_frame"] - pad_frames), row["end_frame"] + pad_frames,
                           folder / name, folder / f".{os.getpid()}_{name}", label))
    pending = sorted(clips, key=lambda c: c.start)
    active: list[_Clip] = []
    rate = fps if fps > 0 else 25.0
    try:
        for index, frame in enumerate(iter_frames(source)):
            if not pending and not active:
                break  # the rest of the video holds no clip
            while pending and pending[0].start <= index:
                active.append(pending.pop(0))
            if not active:
                continue
            image = _even(resize_to_width(frame, width) if frame.shape[1] > width else frame)
            for clip in active:
                if clip.writer is None:
                    clip.writer = VideoWriter(clip.partial, rate, image.shape[1], image.shape[0], crf=23,
                                              preset="ultrafast", threads=1)
                inside = clip.row["begin_frame"] <= index < clip.row["end_frame"]
                clip.writer.write(_draw_label(image, clip.label, inside))
            for clip in [c for c in active if c.end <= index + 1]:
                _finish(clip)
                active.remove(clip)
        for clip in active:  # the video ended before the pad did
            _finish(clip)
    except BaseException:
        for clip in clips:
            if clip.writer is not None and not clip.final.exists():
                _close_quietly(clip)
            clip.partial.unlink(missing_ok=True)
        raise
    missing = [c for c in clips if not c.final.is_file()]
    if missing:
        raise VideoError(f"{source}: the video ended at frame {missing[0].start} or before, where clip "
                         f"{missing[0].final.name} starts")
    return [c.final for c in clips]


def _finish(clip: _Clip) -> None:
    if clip.writer is not None:
        clip.writer.close()
        clip.writer = None
        os.replace(clip.partial, clip.final)


def _close_quietly(clip: _Clip) -> None:
    with contextlib.suppress(Exception):  # already failing: the first error is the one to report
        clip.writer.close()  # type: ignore[union-attr]
    clip.writer = None


def _counts(rows: Sequence[Mapping[str, Any]], key: str, order: Sequence[str]) -> dict[str, int]:
    found = Counter(row[key] for row in rows)
    return {name: found[name] for name in [*order, *sorted(set(found) - set(order))] if found[name] or name in order}


def _stats(rows: Sequence[Mapping[str, Any]], seconds: float, classes: Taxonomy) -> dict[str, Any]:
    strokes = [c for c in classes.classes if c != "Negative"]
    types = [t for t in dict.fromkeys(_groups(classes, "type")[c] for c in strokes) if t]
    hands = [h for h in dict.fromkeys(_groups(classes, "hand")[c] for c in strokes) if h]
    minutes = seconds / 60
    return {"minutes": round(minutes, 3), "strokes": len(rows),
            "per_minute": round(len(rows) / minutes, 2) if minutes > 0 else 0.0,
            "mean_confidence": round(float(np.mean([r["confidence"] for r in rows])), 4) if rows else 0.0,
            "by_class": _counts(rows, "class", strokes), "by_type": _counts(rows, "type", types),
            "by_hand": _counts(rows, "hand", hands)}


def session_statistics(videos: Sequence[VideoAnalysis], classes: Taxonomy) -> dict[str, Any]:
    """Strokes per class, type and hand, per minute and the mean confidence, per video and over all of them."""
    def duration(video: VideoAnalysis) -> float:
        detection = video.detection
        return detection.frames / detection.fps if detection.fps and detection.fps > 0 else 0.0

    return {"videos": {v.detection.video_id: _stats(v.rows, duration(v), classes) for v in videos},
            "total": _stats([r for v in videos for r in v.rows], sum(duration(v) for v in videos), classes)}


def analyze_videos(run: Any, paths: Sequence[str | Path], out_dir: str | Path,
                   detect_options: DetectOptions | None = None, options: AnalyzeOptions | None = None,
                   work_dir: str | Path | None = None, progress: bool = False) -> AnalysisResult:
    """Analyse raw session videos (files or folders) into ``out_dir`` (layout in the module docstring).

    Returns what was written, the problems (one line per video that could not be analysed; the others go on) and
    the seconds spent detecting, writing clips and writing the tables, statistics, figure and page.
    """
    options = (options or AnalyzeOptions()).check()
    detect_options = detect_options or DetectOptions()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    detections, summary = detect_videos(run, paths, out_dir / "detection", detect_options, work_dir, progress)
    seconds["detection"] = time.perf_counter() - began
    problems = list(summary["problems"])
    sources = {item.id: item.path for item in source_items(paths)[0]}
    videos = [VideoAnalysis(d, Path(sources[d.video_id]), stroke_rows(d, run.classes)) for d in detections]

    began = time.perf_counter()
    for video in list(videos):
        folder = out_dir / "videos" / video.detection.video_id
        video.clips = [None] * len(video.rows)
        if not options.clips or not video.rows:
            continue
        try:
            written = write_clips(video.source, video.rows, folder / "clips", video.detection.fps, options.pad,
                                  options.clip_width)
        except (VideoError, OSError) as exc:
            problems.append(f"video {video.detection.video_id!r}: no clips ({exc})")
            continue
        video.clips = [p.relative_to(out_dir).as_posix() for p in written]
    seconds["clips"] = time.perf_counter() - began

    began = time.perf_counter()
    for video in videos:
        folder = out_dir / "videos" / video.detection.video_id
        folder.mkdir(parents=True, exist_ok=True)
        json_clips = [None if c is None else Path(c).relative_to(Path("videos") / video.detection.video_id).as_posix()
                      for c in video.clips]
        video.files = {k: p.relative_to(out_dir).as_posix() for k, p in
                       write_stroke_tables(folder, dataclasses.replace(video, clips=json_clips)).items()}
        timeline = out_dir / "detection" / f"{video.detection.video_id}_timeline.png"
        if timeline.is_file():
            video.files["timeline"] = timeline.relative_to(out_dir).as_posix()
    statistics = session_statistics(videos, run.classes)
    figure = plot_session(statistics, out_dir / "session.png") if videos else None
    pages = [{"id": v.detection.video_id, "rows": v.rows, "clips": v.clips, **v.files} for v in videos]
    write_session_page(out_dir / "index.html", statistics, pages, "session.png" if figure else None, problems,
                       options.low_confidence)
    seconds["report"] = time.perf_counter() - began
    record = {"videos": len(videos), "strokes": sum(len(v.rows) for v in videos), "problems": problems,
              "options": {**dataclasses.asdict(options), "detect": summary.get("options")},
              "seconds": {k: round(v, 3) for k, v in seconds.items()}, **statistics}
    atomic_write_text(out_dir / "session.json", json.dumps(record, indent=1) + "\n")
    return AnalysisResult(out_dir, videos, problems, statistics, seconds)

