"""Generation time of the synthetic benchmark and its difficulty floor.

Generates the classification layout (default: the 21-class benchmark, 40/10/10 clips per class at 640x360,
120 fps, 2 workers), times it, then reads the videos back and fits a logistic regression on trivial per-clip
statistics (mean colour of the frame's thirds, frame-difference energy in 8 time bins) on train+validation,
scored on test. Prints a table, then one JSON line.

    python benchmarks/bench_synth.py --workers 2
    python benchmarks/bench_synth.py --per-class 8 --size 320x180 --fps 30   # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from tstcnn.io.mediaeval import read_submission
from tstcnn.io.video import iter_frames
from tstcnn.synth import generate_dataset, trivial_features
from tstcnn.taxonomy import TTSTROKE21_CLASSES


def _features(root: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int]:
    """Per split: features and labels of every classification clip (frames read at width 160)."""
    truth = read_submission(root / "test_ground_truth.xml")
    names = list(TTSTROKE21_CLASSES)
    out, frames = {}, 0
    for split in ("train", "validation", "test"):
        x, y = [], []
        for video in sorted((root / split).rglob("*.mp4")):
            label = truth[video.name] if split == "test" else video.parent.name
            clip = list(iter_frames(video, width=160))
            frames += len(clip)
            x.append(trivial_features(clip))
            y.append(names.index(label))
        out[split] = (np.array(x), np.array(y))
    return out, frames


def _floor(data: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([data["train"][0], data["validation"][0]])
    y = np.concatenate([data["train"][1], data["validation"][1]])
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=10.0, max_iter=5000)).fit(x, y)
    return float((classifier.predict(data["test"][0]) == data["test"][1]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="dataset folder (default: a temporary one, removed after)")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--fps", type=float, default=120.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-floor", action="store_true", help="only time the generation")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_synth_")) / "data"
    try:
        start = time.perf_counter()
        summary = generate_dataset(out, "classification", args.per_class, None, size, args.fps, args.seed,
                                   args.workers, progress=False)
        generation = time.perf_counter() - start
        size_mb = sum(p.stat().st_size for p in out.rglob("*.mp4")) / 1e6
        floor = None
        if not args.no_floor:
            data, _ = _features(out / "classificationTask")
            floor = _floor(data)
    finally:
        if not args.out:
            shutil.rmtree(out.parent, ignore_errors=True)
    cores = len(os.sched_getaffinity(0))
    rows = [("videos written", f"{summary.written}"), ("frames", f"{summary.frames:,}"),
            ("generation time", f"{generation:.1f} s"), ("frames per second", f"{summary.frames / generation:.0f}"),
            ("dataset size", f"{size_mb:.1f} MB"), ("cores visible", f"{cores}")]
    if floor is not None:
        rows.append(("difficulty floor (test accuracy)", f"{floor:.1%} (chance {1 / 21:.1%})"))
    for name, value in rows:
        print(f"{name:<34}{value:>22}")
    print(json.dumps({"bench": "synth", "per_class": args.per_class, "size": list(size), "fps": args.fps,
                      "workers": args.workers, "videos": summary.written, "frames": summary.frames,
                      "generation_s": round(generation, 1), "dataset_mb": round(size_mb, 1),
                      "floor_accuracy": None if floor is None else round(floor, 4)}))


if __name__ == "__main__":
    main()
