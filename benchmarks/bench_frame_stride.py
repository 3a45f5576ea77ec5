"""Cost of the frame stride in clip loading: CPU time per augmented clip for strides 1, 3 and 6.

A clip with stride ``k`` reads the same ``T`` RGB frames as with stride 1 (only farther apart) but averages
``k`` flow fields per clip frame (docs/data.md, "Frame stride"), so the flow part is where a stride can cost.
Builds a temporary store of synthetic videos (textured frames, random smooth flow) at the cpu-small width
(128 × 72, 600 frames each, one stroke of 400 frames) with ``write_video_entry``, then reads augmented clips
in this process (one thread, no workers) and reports the CPU time per clip (``time.process_time``, so a
shared machine changes it little) per modality and stride.

    python benchmarks/bench_frame_stride.py [--clips 200] [--size 16x48x48] [--strides 1,3,6]

Prints a table, then one JSON line with the figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from tstcnn.config import DataConfig, PrepConfig, parse_size
from tstcnn.data import StrokeClips
from tstcnn.prep.store import Store, finalize_store, write_video_entry

CLASSES = ("Serve Forehand Loop", "Negative")


def make_store(root: Path, videos: int = 2, frames: int = 600, width: int = 128, height: int = 72) -> Store:
    """Synthetic videos: noise textures and a smooth random flow field (its cost is what is measured)."""
    rng = np.random.default_rng(0)
    for index in range(videos):
        rgb = rng.integers(0, 255, (frames, height, width, 3), dtype=np.uint8)
        coarse = rng.normal(0, 2, (frames, height // 8, width // 8, 2)).astype(np.float32)
        flow = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) for f in coarse])
        roi = np.tile([width / 2, height / 2], (frames, 1)).astype(np.float32)
        meta = {"split": "train", "label": None, "fps": 120.0, "actions": [[100, 500, CLASSES[0]]]}
        write_video_entry(root, f"video{index}", rgb, flow, roi, meta)
    finalize_store(root, PrepConfig(width=width), CLASSES)
    return Store(root)


def cpu_ms_per_clip(dataset: StrokeClips, clips: int) -> float:
    """CPU milliseconds per clip, reading clips ``0, 1, …`` (cycling over the samples) into reused arrays."""
    t, h, w = dataset.clip_size
    out = {m: np.empty((3 if m == "rgb" else 2, t, h, w), np.float32) for m in dataset.inputs}
    dataset.load((0, 0), out)  # warm the page cache and the lookup tables
    began = time.process_time()
    for i in range(clips):
        dataset.load((i % len(dataset), i), out)
    return (time.process_time() - began) / clips * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200, help="clips read per configuration")
    parser.add_argument("--size", type=parse_size, default=(16, 48, 48), help="clip size TxHxW (cpu-small)")
    parser.add_argument("--strides", default="1,3,6", help="frame strides to measure")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    strides = [int(s) for s in args.strides.split(",")]
    figures: dict[str, dict[int, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-frame-stride-") as root:
        store = make_store(Path(root))
        for modality in ("rgb", "flow", "twin"):
            figures[modality] = {}
            for stride in strides:
                dataset = StrokeClips(store, "train", modality, tuple(args.size), True,
                                      DataConfig(frame_stride=stride, negatives_per_class=0), seed=0)
                figures[modality][stride] = round(cpu_ms_per_clip(dataset, args.clips), 3)
    print(f"CPU ms per augmented {'x'.join(map(str, args.size))} clip, one process")
    print("modality  " + "  ".join(f"k={s:<5d}" for s in strides))
    for modality, row in figures.items():
        print(f"{modality:8s}  " + "  ".join(f"{row[s]:7.3f}" for s in strides))
    print(json.dumps({"size": list(args.size), "clips": args.clips, "cpu_ms_per_clip": figures}))


if __name__ == "__main__":
    main()
