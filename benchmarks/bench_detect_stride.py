"""The sliding-window stride of ``tstcnn detect``: what it saves in time and what it costs in quality.

Speed: every window is one forward pass, so a video of N frames costs ``ceil((N - T) / S) + 1`` passes at
stride S. The per-window time is measured on the model of a preset (random weights: speed does not depend
on them), batched as ``detect`` does, and turned into frames of video processed per second at each stride.

Quality: to see what the stride alone costs, independent of how good a model is, the detector is fed by an
ideal window classifier (each window's stroke probability is the fraction of its frames inside a true
stroke, given to the true class) on random stroke layouts (strokes of T to 2T frames, gaps of T/2 to 3T),
then runs the same interpolation, smoothing and segmentation as ``detect`` (default settings). Reported:
frame IoU, mAP 2021 (max-left) and mAP 2022 (mean P×R) against the layout, per stride.

    python benchmarks/bench_detect_stride.py [--preset cpu-small] [--videos 20] [--frames 3000] [--repeats 3]

``--repeats 0`` skips the speed measurement (quality only, e.g. for the paper preset on a small CPU).

Prints a table, then one JSON line with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from tstcnn.config import load_config
from tstcnn.infer.aggregate import smooth_frames
from tstcnn.infer.detect import DetectOptions
from tstcnn.infer.scoring import score_detection
from tstcnn.infer.segments import frames_to_segments
from tstcnn.infer.windows import spread_to_frames, window_centres, window_starts
from tstcnn.io.mediaeval import Action
from tstcnn.models import build_model_from_config

CLASSES = ("Stroke", "Negative")


def random_layout(frames: int, window: int, rng: np.random.Generator) -> list[Action]:
    actions, t = [], int(rng.integers(window // 2, 3 * window))
    while True:
        length = int(rng.integers(window, 2 * window + 1))
        if t + length > frames:
            return actions
        actions.append(Action(t, t + length, "Stroke"))
        t += length + int(rng.integers(window // 2, 3 * window + 1))


def ideal_window_probs(actions: list[Action], frames: int, window: int, starts: np.ndarray) -> np.ndarray:
    inside = np.zeros(frames + 1)
    for a in actions:
        inside[a.begin:a.end] = 1.0
    cumulative = np.concatenate(([0.0], np.cumsum(inside[:frames])))
    lo, hi = np.clip(starts, 0, frames), np.clip(starts + window, 0, frames)
    stroke = (cumulative[hi] - cumulative[lo]) / window
    return np.stack([stroke, 1.0 - stroke], axis=1)


def detect_ideal(actions: list[Action], frames: int, window: int, options: DetectOptions) -> list[Action]:
    starts = window_starts(frames, window, options.stride)
    probs = ideal_window_probs(actions, frames, window, starts)
    smoothed = smooth_frames(spread_to_frames(probs, window_centres(starts, window), frames), options.smoothing,
                             options.smooth_width)
    return frames_to_segments(smoothed, CLASSES, 1, threshold=options.threshold, min_length=options.min_length,
                              max_gap=options.max_gap)


def seconds_per_window(preset: str, batch: int, repeats: int, device: str) -> float:
    cfg = load_config(preset)
    model = build_model_from_config(cfg.model).eval().to(device)
    t, h, w = cfg.model.input_size
    inputs = {"rgb": torch.rand(batch, 3, t, h, w), "flow": torch.rand(batch, 2, t, h, w) * 2 - 1}
    inputs = {k: v.to(device) for k, v in inputs.items() if cfg.model.modality == "twin" or
              cfg.model.modality.endswith(k)}
    with torch.inference_mode():
        model(**inputs)
        torch.accelerator.synchronize() if device != "cpu" else None
        began = time.perf_counter()
        for _ in range(repeats):
            model(**inputs)
        torch.accelerator.synchronize() if device != "cpu" else None
    return (time.perf_counter() - began) / (repeats * batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="where the per-window time is measured (e.g. cuda)")
    args = parser.parse_args()
    window = load_config(args.preset).model.input_size[0]
    per_window = seconds_per_window(args.preset, args.batch_size, args.repeats, args.device) if args.repeats else None
    rng = np.random.default_rng(0)
    layouts = {f"v{i}": random_layout(args.frames, window, rng) for i in range(args.videos)}
    strides = sorted({1, 2, 4, max(1, window // 8), max(1, window // 4), max(1, window // 2), window})
    rows = []
    for stride in strides:
        options = DetectOptions(stride=stride).resolve(window)
        found = {v: detect_ideal(a, args.frames, window, options) for v, a in layouts.items()}
        scores = score_detection(found, layouts, {v: args.frames for v in layouts})
        passes = len(window_starts(args.frames, window, stride))
        rows.append({"stride": stride, "windows_per_video": passes,
                     "video_frames_per_second": args.frames / (passes * per_window) if per_window else None,
                     "frame_iou": scores.frame_iou, "map_2021": scores.map_2021, "map_2022": scores.map_2022})
    speed = (f"{per_window * 1000:.1f} ms per window on {args.device} (batch {args.batch_size}, "
             f"{torch.get_num_threads()} CPU threads, "
             f"load average {os.getloadavg()[0]:.1f})" if per_window else "speed not measured")
    print(f"preset {args.preset}: window T={window}, {speed}; {args.videos} layouts of {args.frames} frames, "
          "ideal window classifier")
    print(f"{'stride':>7}{'windows':>9}{'frames/s':>10}{'frame IoU':>11}{'mAP 2021':>10}{'mAP 2022':>10}")
    for r in rows:
        fps = r["video_frames_per_second"]
        print(f"{r['stride']:>7}{r['windows_per_video']:>9}{fps if fps is None else round(fps, 1)!s:>10}"
              f"{r['frame_iou']:>11.3f}{r['map_2021']:>10.3f}{r['map_2022']:>10.3f}")
    print(json.dumps({"benchmark": "detect_stride", "preset": args.preset, "window": window, "device": args.device,
                      "seconds_per_window": per_window, "rows": rows}))


if __name__ == "__main__":
    main()
