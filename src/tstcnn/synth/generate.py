"""Writing a synthetic dataset in the MediaEval layouts, in parallel, resumable, deterministic.

Layouts (DESIGN.md):

* ``classificationTask/{train,validation}/<Class>/<id>.mp4``, ``classificationTask/test/<id>.mp4`` and the
  test ground truth ``classificationTask/test_ground_truth.xml`` in the submission format;
* ``detectionTask/{train,validation,test}/<id>.mp4`` with ``<id>.xml`` beside each: long videos holding every
  chosen stroke class once in a random order plus negatives, the strokes annotated (test XMLs included:
  they are the ground truth; negatives are not annotated, as in TTStroke-21).

Every clip is a pure function of (seed, split, class, index), so the output does not depend on the number
of workers, and a re-run skips clips already written: a clip is written under ``.partial/`` and renamed
into place when complete (detection: the XML is written after the video). ``synth.json`` records the
arguments; a re-run with other arguments into the same folder is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from tstcnn.io.atomic import atomic_write_text
from tstcnn.io.mediaeval import write_actions, write_submission
from tstcnn.io.video import VideoWriter
from tstcnn.progress import progress as progress_bar
from tstcnn.synth.render import check_size, clip_rng, iter_video, plan_video
from tstcnn.taxonomy import NEGATIVE, TTSTROKE21_CLASSES

__all__ = ["LAYOUTS", "MARKER", "SynthSpec", "Job", "plan_jobs", "generate_dataset", "split_counts"]

LAYOUTS = ("classification", "detection", "both")
MARKER = "synth.json"
FORMAT = "tstcnn-synth"
VERSION = 1
SPLITS = ("train", "validation", "test")
PRESET = "ultrafast"  # x264 speed preset: the benchmark must be generated in minutes on two cores
CRF = 20


@dataclass(frozen=True)
class SynthSpec:
    """The arguments that determine a dataset's content (recorded in ``synth.json``)."""

    layout: str = "classification"
    per_class: int = 40
    classes: tuple[str, ...] = TTSTROKE21_CLASSES
    size: tuple[int, int] = (640, 360)
    fps: float = 120.0
    seed: int = 0
    left_handed: float = 0.15

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; allowed: {', '.join(LAYOUTS)}")
        if self.per_class < 1:
            raise ValueError(f"per-class must be at least 1, got {self.per_class}")
        unknown = [c for c in self.classes if c not in TTSTROKE21_CLASSES]
        if unknown:
            raise ValueError(f"unknown class {unknown[0]!r}; allowed: {', '.join(TTSTROKE21_CLASSES)}")
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must be a non-empty list without repeats")
        check_size(self.size)
        if not 1 <= self.fps <= 1000:
            raise ValueError(f"fps must be between 1 and 1000, got {self.fps}")
        if not 0.0 <= self.left_handed <= 1.0:
            raise ValueError(f"left-handed share must be in [0, 1], got {self.left_handed}")

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, **asdict(self), "classes": list(self.classes),
                "size": list(self.size)}


def split_counts(per_class: int) -> dict[str, int]:
    """Clips per class: ``per_class`` for train, a quarter (at least 1) for validation and test."""
    return {"train": per_class, "validation": max(1, per_class // 4), "test": max(1, per_class // 4)}


@dataclass(frozen=True)
class Job:
    """One video to write: its class names in order, where it goes, and the identity its seed comes from."""

    split: str
    names: tuple[str, ...]
    key: str  # identity the seed is derived from
    video: str  # path relative to the output folder
    annotation: str | None  # detection XML, relative


def _slug(name: str) -> str:
    return name.lower().replace(" ", "_")


def _classification_jobs(spec: SynthSpec) -> list[Job]:
    jobs = []
    for split, count in split_counts(spec.per_class).items():
        for name in spec.classes:
            for index in range(count):
                key = f"classification/{split}/{name}/{index}"
                if split == "test":  # test ids must not give the class away
                    digest = hashlib.sha256(f"{spec.seed}/{key}".encode()).hexdigest()[:12]
                    video = f"classificationTask/test/test_{digest}.mp4"
                else:
                    video = f"classificationTask/{split}/{name}/{split}_{_slug(name)}_{index:04d}.mp4"
                jobs.append(Job(split, (name,), key, video, None))
    return jobs


def _detection_jobs(spec: SynthSpec) -> list[Job]:
    strokes = [c for c in spec.classes if c != NEGATIVE] or [NEGATIVE]
    jobs = []
    for split, count in split_counts(spec.per_class).items():
        for index in range(max(1, count // 10)):
            key = f"detection/{split}/{index}"
            rng = clip_rng(spec.seed, key, "order")
            names = list(rng.permutation(strokes))
            for _ in range(max(1, len(strokes) // 5)):  # negatives between the strokes
                names.insert(int(rng.integers(0, len(names) + 1)), NEGATIVE)
            video_id = f"{split}_{index:04d}"
            jobs.append(Job(split, tuple(str(n) for n in names), key, f"detectionTask/{split}/{video_id}.mp4",
                            f"detectionTask/{split}/{video_id}.xml"))
    return jobs


def plan_jobs(spec: SynthSpec) -> list[Job]:
    """Every video of the dataset, in a fixed order."""
    jobs = []
    if spec.layout in ("classification", "both"):
        jobs += _classification_jobs(spec)
    if spec.layout in ("detection", "both"):
        jobs += _detection_jobs(spec)
    return jobs


def _complete(out: Path, job: Job) -> bool:
    return (out / job.video).is_file() and (job.annotation is None or (out / job.annotation).is_file())


def _write_job(out: Path, spec: SynthSpec, job: Job) -> int:
    """Render and encode one video (and its XML); returns its frame count."""
    rng = clip_rng(spec.seed, job.key)
    idle = (0.3, 1.2) if job.annotation else None
    plan = plan_video(job.names, rng, spec.size, spec.fps, spec.left_handed, idle=idle)
    final = out / job.video
    partial = out / ".partial" / f"{os.getpid()}_{final.name}"  # the muxer picks its format from the suffix
    partial.parent.mkdir(parents=True, exist_ok=True)
    try:
        with VideoWriter(partial, spec.fps, *spec.size, crf=CRF, preset=PRESET, threads=1) as writer:
            for frame in iter_video(plan):
                writer.write(frame)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    if job.annotation:
        write_actions(out / job.annotation, plan.actions)
    return plan.total


def _write_job_star(args: tuple[Path, SynthSpec, Job]) -> int:
    return _write_job(*args)


def _claim(out: Path, spec: SynthSpec) -> None:
    """Create or check the marker: a folder holding another dataset (or anything else) is refused."""
    marker = out / MARKER
    wanted = spec.to_json()
    if marker.is_file():
        try:
            found = json.loads(marker.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{marker}: unreadable marker ({exc}); use another --out") from None
        if found != wanted:
            diff = ", ".join(f"{k} {found.get(k)!r} vs {v!r}" for k, v in wanted.items() if found.get(k) != v)
            raise ValueError(f"{out} holds another synthetic dataset ({diff}); use another --out or the same "
                             "arguments to resume")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not an empty folder nor a synthetic dataset; use another --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps(wanted, indent=2) + "\n")


@dataclass(frozen=True)
class SynthSummary:
    out: Path
    written: int
    skipped: int
    frames: int


def generate_dataset(out: str | Path, layout: str = "classification", per_class: int = 40,
                     classes: Sequence[str] | None = None, size: tuple[int, int] = (640, 360), fps: float = 120.0,
                     seed: int = 0, workers: int = 1, left_handed: float = 0.15, progress: bool = True
                     ) -> SynthSummary:
    """Generate (or complete) a synthetic dataset in ``out``; see the module docstring for the layouts.

    Args:
        out: output folder (created; must be empty, or hold this same dataset to resume).
        layout: ``classification``, ``detection`` or ``both``.
        per_class: train clips per class; validation and test get a quarter (at least 1).
        classes: class names (default: the 21 TTStroke-21 classes).
        size: frame (width, height), even numbers.
        fps: frame rate.
        seed: the dataset seed; each clip's content follows from it and the clip's identity.
        workers: processes rendering in parallel (does not change the output).
        left_handed: share of left-handed players.
        progress: show a progress bar.
    """
    spec = SynthSpec(layout, int(per_class), tuple(classes) if classes else TTSTROKE21_CLASSES,
                     (int(size[0]), int(size[1])), float(fps), int(seed), float(left_handed))
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    out = Path(out)
    _claim(out, spec)
    shutil.rmtree(out / ".partial", ignore_errors=True)  # leftovers of an interrupted run
    jobs = plan_jobs(spec)
    todo = [job for job in jobs if not _complete(out, job)]
    frames = 0
    bar = progress_bar(total=len(todo), desc="synth", unit="video", enabled=progress)
    try:
        if workers == 1:
            for job in todo:
                frames += _write_job(out, spec, job)
                bar.update()
        else:
            with ProcessPoolExecutor(workers) as pool:
                for count in pool.map(_write_job_star, [(out, spec, job) for job in todo], chunksize=1):
                    frames += count
                    bar.update()
    finally:
        bar.close()
    if spec.layout in ("classification", "both"):
        truth = {Path(job.video).name: job.names[0] for job in jobs if job.split == "test" and job.annotation is None}
        write_submission(out / "classificationTask" / "test_ground_truth.xml", truth)
    shutil.rmtree(out / ".partial", ignore_errors=True)
    return SynthSummary(out, len(todo), len(jobs) - len(todo), frames)
