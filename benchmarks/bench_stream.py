"""Peak temporary disk and peak memory of ``detect`` on long raw videos: streamed chunks against a whole-video store.

Writes synthetic videos of ``--frames`` frames (a textured square moving over a gradient, 128×96, H.264) and a
small run (random weights: disk and memory do not depend on them; prep width 64, DIS flow, window 16), then runs,
each case in a fresh process so that its peak RSS is its own:

* ``stream``: ``detect_videos`` as ``tstcnn detect RUN VIDEO`` runs it (chunks of ``--chunk-frames``);
* ``whole``: the former path, the whole video prepared into one temporary store, then ``detect_store``.

Temporary disk is the bytes of the files under the work folder, sampled every 5 ms and at every window read;
RSS is the process's peak (``ru_maxrss``) and its resident size before the video (model loaded).

    python benchmarks/bench_stream.py [--frames 10000 40000] [--cases stream whole] [--chunk-frames 1024]

Prints a table, then one JSON line with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

WIDTH, HEIGHT, FPS = 128, 96, 25


def _write_video(path: Path, frames: int) -> None:
    """A textured square moving over a gradient: motion in every frame, as a player's."""
    from tstcnn.io.video import VideoWriter

    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    background = np.stack([xs * 2 % 256, ys * 2 % 256, np.full_like(xs, 90)], -1).astype(np.uint8)
    patch = rng.integers(60, 250, (24, 24, 3)).astype(np.uint8)
    with VideoWriter(path, FPS, WIDTH, HEIGHT, crf=20) as writer:
        for t in range(frames):
            frame = background.copy()
            x0, y0 = (4 + 3 * t) % (WIDTH - 24), 36 + int(20 * np.sin(t / 15))
            frame[y0:y0 + 24, x0:x0 + 24] = patch
            writer.write(frame)


def _write_run(root: Path) -> Path:
    """A run folder as training writes it, with a small model."""
    import torch
    import yaml

    from tstcnn.config import Config, ModelConfig, PrepConfig, config_to_dict
    from tstcnn.models import build_model_from_config
    from tstcnn.runtime.checkpoint import save_checkpoint

    classes = ["Stroke A", "Stroke B", "Negative"]
    cfg = Config(model=ModelConfig(modality="twin", input_size=(16, 32, 32), channels=(4, 8, 8), num_features=16,
                                   num_classes=len(classes)),
                 prep=PrepConfig(width=64, flow="dis", roi_smoothing=2.0))
    torch.manual_seed(0)
    model = build_model_from_config(cfg.model)
    data = config_to_dict(cfg)
    save_checkpoint(root / "checkpoints" / "best.pt", config=data, classes=classes, flow_scale=2.0,
                    prep=data["prep"], epoch=1, model=model.state_dict())
    (root / "config.yaml").write_text(yaml.safe_dump(data))
    (root / "classes.json").write_text(json.dumps(classes))
    return root


def _resident_kb() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _run_case(case: str, run_dir: Path, video: Path, chunk_frames: int) -> dict:
    """One case in this process: the figures of one detection."""
    import torch

    from tstcnn.data import ClipReader
    from tstcnn.infer.detect import DetectOptions, detect_store, detect_videos
    from tstcnn.infer.predict import load_predictor, prepared_store, source_items

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    run = load_predictor(run_dir, precision="fp32")
    before_kb = _resident_kb()
    peak = [0]
    stop = threading.Event()

    with tempfile.TemporaryDirectory(prefix="bench-stream-work-") as work_dir, \
            tempfile.TemporaryDirectory(prefix="bench-stream-out-") as out:
        work = Path(work_dir)

        def measure() -> None:
            total = 0
            for folder, _, files in os.walk(work):  # a folder deleted meanwhile is skipped
                for name in files:
                    with contextlib.suppress(FileNotFoundError):
                        total += os.stat(os.path.join(folder, name)).st_size
            peak[0] = max(peak[0], total)

        def sample() -> None:
            while not stop.wait(0.005):
                measure()

        read = ClipReader.read

        def measured_read(self, *args, **kwargs):
            measure()
            return read(self, *args, **kwargs)

        ClipReader.read = measured_read
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        began = time.perf_counter()
        try:
            if case == "stream":
                detections, _ = detect_videos(run, [video], out, DetectOptions(), work_dir=work,
                                              chunk_frames=chunk_frames)
            else:
                with prepared_store(source_items([video])[0], run, work) as (store, _):
                    detections, _ = detect_store(run, store, out, DetectOptions())
        finally:
            stop.set()
            sampler.join()
        seconds = time.perf_counter() - began
    return {"case": case, "frames": detections[0].frames, "windows": len(detections[0].starts),
            "seconds": round(seconds, 1), "peak_disk_mb": round(peak[0] / 1e6, 2),
            "disk_bytes_per_frame": round(peak[0] / detections[0].frames, 1),
            "rss_before_mb": round(before_kb / 1024, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[10_000, 40_000])
    parser.add_argument("--cases", nargs="+", choices=("stream", "whole"), default=["stream", "whole"])
    parser.add_argument("--chunk-frames", type=int, default=None, help="default: tstcnn.prep.stream.CHUNK_FRAMES")
    parser.add_argument("--cache", default=None, help="folder for the videos and the run (kept; default: temporary)")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # one case, in a child process
    parser.add_argument("--run", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--video", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(_run_case(args.case, Path(args.run), Path(args.video), args.chunk_frames)))
        return

    from tstcnn.prep.stream import CHUNK_FRAMES

    chunk_frames = args.chunk_frames or CHUNK_FRAMES
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as temporary:
        cache = Path(args.cache or temporary)
        cache.mkdir(parents=True, exist_ok=True)
        run_dir = cache / "run"
        if not (run_dir / "checkpoints" / "best.pt").is_file():
            _write_run(run_dir)
        rows = []
        for frames in args.frames:
            video = cache / f"synthetic-{frames}.mp4"
            if not video.is_file():
                _write_video(video, frames)
            for case in args.cases:
                child = subprocess.run([sys.executable, __file__, "--case", case, "--run", str(run_dir), "--video",
                                        str(video), "--chunk-frames", str(chunk_frames)],
                                       capture_output=True, text=True, check=True)
                rows.append({**json.loads(child.stdout.strip().splitlines()[-1]), "chunk_frames": chunk_frames})
                row = rows[-1]
                print(f"{row['frames']:>7} frames  {row['case']:<6}  peak disk {row['peak_disk_mb']:>8.2f} MB "
                      f"({row['disk_bytes_per_frame']:>8.1f} B/frame)  RSS {row['rss_before_mb']:.0f} MB before, "
                      f"{row['peak_rss_mb']:.0f} MB peak  {row['seconds']:.0f} s", flush=True)
    print(json.dumps({"cpu": _cpu_name(), "cores": os.cpu_count(), "prep": "width 64 (128x96 source), dis",
                      "window": 16, "results": rows}))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
