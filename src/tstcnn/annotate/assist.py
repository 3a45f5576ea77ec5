"""Model-assisted annotation: a trained run's detections as proposals of the annotator ``model``, and their review.

:func:`propose` runs :func:`tstcnn.infer.detect.detect_videos` over the project's videos and records each
detected stroke as a proposal with detect's :class:`~tstcnn.infer.detect.StrokeScore`: its confidence (the mean
probability of its class over its frames) and its top-3 stroke classes by that mean. Annotators then accept,
correct or reject each proposal on the page (:meth:`~tstcnn.annotate.database.Project.review`);
:func:`review_summary` counts the decisions and the share of proposals accepted unchanged.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tstcnn.annotate.database import MODEL_ANNOTATOR, Project, Stroke, Video, check_annotator

if TYPE_CHECKING:  # the server imports this module for review_summary, without torch
    from tstcnn.infer.detect import DetectOptions, VideoDetection

__all__ = ["proposals_from_detection", "propose", "review_summary"]

logger = logging.getLogger(__name__)


def proposals_from_detection(video: Video, detection: VideoDetection, annotator: str = MODEL_ANNOTATOR
                             ) -> list[dict[str, Any]]:
    """Rows for :meth:`Project.add_strokes` from one video's detection: its actions with their scores."""
    if detection.frames != video.frames:
        raise ValueError(f"{video.name}: detection saw {detection.frames} frames, the project has {video.frames}")
    if len(detection.scores) != len(detection.actions):
        raise ValueError(f"{video.name}: the detection has no score for each stroke")
    return [{"video_id": video.id, "annotator": annotator, "begin": int(action.begin), "end": int(action.end),
             "label": action.move, "confidence": min(1.0, max(0.0, float(score.confidence))),
             "top3": score.top3, "status": "proposed"}
            for action, score in zip(detection.actions, detection.scores)]


def propose(project: Project, run: Any, options: DetectOptions, videos: Sequence[Video] | None = None, *,
            work_dir: str | Path | None = None, annotator: str = MODEL_ANNOTATOR, progress: bool = False
            ) -> tuple[int, list[str]]:
    """Detect strokes with ``run`` (a loaded predictor) in ``videos`` (default: those without proposals yet) and
    record them as proposals of ``annotator``; returns (proposals added, problems).

    A video whose detection fails is named in the problems; the others are recorded, each video in one transaction.
    """
    from tstcnn.infer.detect import detect_videos  # torch and the models: only for pre-annotation

    check_annotator(annotator)
    done = {s.video_id for s in project.strokes(annotator=annotator)}
    todo = [v for v in (videos if videos is not None else project.videos()) if v.id not in done]
    if not todo:
        return 0, []
    unknown = set(run.classes.classes) - set(project.classes)
    if unknown - {"Negative"}:
        raise ValueError(f"the model's classes are not the project's (e.g. {sorted(unknown)[0]!r})")
    by_stem = {Path(v.name).stem: v for v in todo}
    added = 0
    with tempfile.TemporaryDirectory(prefix="tstcnn-propose-", dir=work_dir) as out:
        detections, summary = detect_videos(run, [project.video_path(v) for v in todo], out, options, work_dir,
                                            progress=progress)
        problems = list(summary["problems"])
        for detection in detections:
            video = by_stem.get(detection.video_id)
            if video is None:
                problems.append(f"{detection.video_id}: not a video of the project")
                continue
            try:
                rows = proposals_from_detection(video, detection, annotator)
                added += len(project.add_strokes(rows))
            except ValueError as exc:
                problems.append(str(exc))
    return added, problems


def review_summary(project: Project, annotator: str | None = None, model: str = MODEL_ANNOTATOR) -> dict[str, Any]:
    """How the model's proposals were reviewed, per reviewer (or only ``annotator``) and over all reviews.

    ``accepted_unchanged`` is the share of reviewed proposals accepted as they were (``accepted`` over
    ``accepted + corrected + rejected``); None before any review.
    """
    proposals = {s.id: s for s in project.strokes(annotator=model) if s.status == "proposed"}
    reviews: dict[str, list[Stroke]] = {}
    for stroke in project.strokes(include_rejected=True):
        if stroke.origin in proposals and (annotator is None or stroke.annotator == annotator):
            reviews.setdefault(stroke.annotator, []).append(stroke)

    def counts(strokes: list[Stroke]) -> dict[str, Any]:
        found = {k: sum(s.status == k for s in strokes) for k in ("accepted", "corrected", "rejected")}
        reviewed = sum(found.values())
        return {"proposals": len(proposals), "reviewed": reviewed, **found,
                "accepted_unchanged": found["accepted"] / reviewed if reviewed else None}

    return {"model": model, "proposals": len(proposals),
            "reviewers": {name: {**counts(items), "pending": len(proposals) - len({s.origin for s in items})}
                          for name, items in sorted(reviews.items())},
            "overall": counts([s for items in reviews.values() for s in items])}
