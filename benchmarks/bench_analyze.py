"""Time of ``tstcnn analyze`` on one long synthetic session, by part: detection, clip writing, figures and page.

Renders (once, kept in ``--work``) a session of ``--minutes`` minutes at ``--fps`` and ``--size`` with the synthetic
benchmark's renderer: the 20 stroke classes in random orders with negatives between them and 0.3–1.2 s of idle time
before each, as the detection layout's videos, its ground truth in ``session.xml`` beside it. Then runs
``analyze_videos`` with a trained run (``--precision auto``, default detection settings, clips padded by
``--pad`` seconds) and prints the seconds of each part, the strokes found, the clips written (each decoded and
counted) and the frame IoU / stroke F1 at IoU 0.5 against the ground truth.

    python benchmarks/bench_analyze.py RUN_DIR [--minutes 10] [--fps 20] [--size 256x144] [--stride 4]
                                       [--work /tmp/bench-analyze]

On a machine shared with other jobs run it with ``OMP_WAIT_POLICY=PASSIVE`` (docs/analyze.md, Speed).

Prints one line per part, then one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from tstcnn.config import parse_size
from tstcnn.infer.analyze import AnalyzeOptions, analyze_videos
from tstcnn.infer.detect import DetectOptions
from tstcnn.infer.predict import load_predictor
from tstcnn.infer.scoring import score_detection
from tstcnn.io.mediaeval import read_actions, write_actions
from tstcnn.io.video import VideoWriter, count_frames
from tstcnn.synth.render import clip_rng, iter_video, plan_video
from tstcnn.taxonomy import NEGATIVE, TTSTROKE21_CLASSES


def write_session(path: Path, minutes: float, fps: float, size: tuple[int, int], seed: int) -> int:
    """Render the session video and its ``.xml`` ground truth; returns its frame count."""
    rng = np.random.default_rng(seed)
    strokes = [c for c in TTSTROKE21_CLASSES if c != NEGATIVE]
    names: list[str] = []
    while len(names) * 1.2 < minutes * 60:  # more than enough: a stroke with its idle time lasts 1.5-2.5 s
        order = list(rng.permutation(strokes))
        for _ in range(4):
            order.insert(int(rng.integers(0, len(order) + 1)), NEGATIVE)
        names += order
    plan = plan_video(names, clip_rng(seed, "bench-analyze"), size, fps, idle=(0.3, 1.2))
    limit = int(round(minutes * 60 * fps))
    with VideoWriter(path, fps, *size, preset="ultrafast") as writer:
        for index, frame in enumerate(iter_video(plan)):
            if index == limit:
                break
            writer.write(frame)
    truth = [a._replace(end=min(a.end, limit)) for a in plan.actions if a.begin < limit]
    write_actions(path.with_suffix(".xml"), truth)
    return min(limit, plan.total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=20.0)
    parser.add_argument("--size", type=parse_size, default=(256, 144), help="WxH")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pad", type=float, default=1.0)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--stride", type=int, default=None, help="frames between windows (default: T/4)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-analyze"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    video = args.work / f"session_{args.minutes:g}min_{args.fps:g}fps.mp4"
    if not video.is_file() or not video.with_suffix(".xml").is_file():
        began = time.perf_counter()
        frames = write_session(video, args.minutes, args.fps, args.size, args.seed)
        print(f"rendered {video} ({frames} frames) in {time.perf_counter() - began:.1f} s (not part of the timing)")
    run = load_predictor(args.run_dir, precision="auto")
    out = args.work / "analysis"
    began = time.perf_counter()
    detect = DetectOptions(stride=args.stride, threshold=args.threshold)
    result = analyze_videos(run, [video], out, detect, AnalyzeOptions(pad=args.pad))
    total = time.perf_counter() - began
    (analysed,) = result.videos
    clips = sorted((out / "videos" / analysed.detection.video_id / "clips").glob("*.mp4"))
    decoded = [count_frames(c) for c in clips]
    truth = read_actions(video.with_suffix(".xml"))
    scores = score_detection({video.stem: analysed.detection.actions}, {video.stem: truth},
                             {video.stem: analysed.detection.frames})
    precision, recall = scores.precision[0], scores.recall[0]
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    for part, seconds in result.seconds.items():
        print(f"{part:>10}: {seconds:7.1f} s")
    print(f"{'total':>10}: {total:7.1f} s for {analysed.detection.frames} frames "
          f"({analysed.detection.frames / args.fps / 60:.1f} min of video)")
    print(f"strokes {result.strokes} (true {len(truth)}), clips {len(clips)}, all decoded: {all(decoded)}; "
          f"frame IoU {scores.frame_iou:.3f}, stroke F1 at IoU 0.5 {f1:.3f}")
    print(json.dumps({"seconds": {**{k: round(v, 1) for k, v in result.seconds.items()}, "total": round(total, 1)},
                      "frames": analysed.detection.frames, "strokes": result.strokes, "true_strokes": len(truth),
                      "clips": len(clips), "clip_frames": sum(decoded), "frame_iou": round(scores.frame_iou, 4),
                      "f1_at_0.5": round(f1, 4)}))


if __name__ == "__main__":
    main()
