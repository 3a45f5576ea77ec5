"""End-point error and time per frame pair of every optical-flow back-end on pairs with known motion.

Each pair is made by warping a textured canvas with a known map, so the ground-truth flow is exact:
a sub-pixel translation, a rotation about the centre, a zoom about the centre, and a textured disc
moving on a still textured background (its error is also given inside and outside the disc). Frames are
grey ``uint8`` at the prepared store's working width (320 for the ``paper`` preset, 128 for ``cpu-small``),
16:9. The mean end-point error (EPE, pixels) leaves out a margin of 8 % of the width, where content enters
or leaves the frame and no method can know the flow.

    python benchmarks/bench_flow.py [--widths 320,128] [--flows liu,deepflow,dis,farneback,tvl1]
                                    [--repeats 1] [--seed 1] [--liu-data-weights 1,0.3,0.1,0.03,0.01]

OpenCV runs on one thread. Prints a table per width, then one JSON line with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

from tstcnn.prep.flow import FLOW_METHODS, LiuFlow, create_flow


@dataclass(frozen=True)
class FlowPair:
    """Two grey frames, the true flow from the first to the second, and an optional mask of the mover."""

    name: str
    first: np.ndarray
    second: np.ndarray
    flow: np.ndarray
    mask: np.ndarray | None = None


def _texture(height: int, width: int, seed: int) -> np.ndarray:
    """A multi-scale noise texture in [0, 1]: fine detail over coarse shading, like a filmed scene."""
    noise = np.random.default_rng(seed).normal(size=(height, width))
    image = sum(weight * gaussian_filter(noise, sigma) for sigma, weight in ((1, 0.5), (2, 1), (4, 2), (8, 3)))
    return (image - image.min()) / np.ptp(image)


def _sample(canvas: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    return cv2.remap(canvas.astype(np.float32), map_x.astype(np.float32), map_y.astype(np.float32),
                     cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 200 + 28), 0, 255).astype(np.uint8)


def _affine_pair(name: str, canvas: np.ndarray, size: tuple[int, int], matrix: np.ndarray,
                 shift: np.ndarray) -> FlowPair:
    """Frame 2 shows point ``p`` of frame 1 at ``matrix (p - c) + c + shift``; frame 2 is made by the inverse warp."""
    height, width = size
    pad = (canvas.shape[0] - height) // 2, (canvas.shape[1] - width) // 2
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    points = np.stack([xs - centre[0], ys - centre[1]], axis=-1)
    moved = points @ matrix.T + centre + shift
    inverse = (points - shift) @ np.linalg.inv(matrix).T + centre
    first = _sample(canvas, xs + pad[1], ys + pad[0])
    second = _sample(canvas, inverse[..., 0] + pad[1], inverse[..., 1] + pad[0])
    flow = (moved - np.stack([xs, ys], axis=-1)).astype(np.float32)
    return FlowPair(name, _to_uint8(first), _to_uint8(second), flow)


def _shape_pair(size: tuple[int, int], shift: tuple[float, float], seed: int) -> FlowPair:
    """A textured disc of a third of the height moving by ``shift`` over a still textured background."""
    height, width = size
    background = _texture(height, width, seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    foreground = _texture(height + 16, width + 16, seed + 1) * 0.8 + 0.2
    radius = height / 6
    centre = np.array([width * 0.45, height * 0.5])

    def frame(offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inside = np.hypot(xs - centre[0] - offset[0], ys - centre[1] - offset[1])
        alpha = np.clip(radius - inside + 0.5, 0, 1)  # anti-aliased edge
        disc = _sample(foreground, xs - offset[0] + 8, ys - offset[1] + 8)
        return alpha * disc + (1 - alpha) * background, alpha

    first, alpha = frame(np.zeros(2))
    second, _ = frame(np.asarray(shift))
    mask = alpha >= 0.5
    flow = np.zeros((height, width, 2), np.float32)
    flow[mask] = shift
    return FlowPair("shape", _to_uint8(first), _to_uint8(second), flow, mask)


def make_pairs(width: int, seed: int = 0) -> list[FlowPair]:
    """The benchmark's pairs at ``width`` (16:9); motions are scaled with the width, as in a resized video."""
    height = round(width * 9 / 16 / 2) * 2
    size = (height, width)
    canvas = _texture(height + 2 * (width // 4), width + 2 * (width // 4), seed)
    unit = width / 320  # motions are given for 320 px and shrink with the frame
    angle = np.deg2rad(3.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return [
        _affine_pair("translation", canvas, size, np.eye(2), np.array([2.6, -1.3]) * unit),
        _affine_pair("rotation", canvas, size, rotation, np.zeros(2)),
        _affine_pair("zoom", canvas, size, np.eye(2) * 1.04, np.zeros(2)),
        _shape_pair(size, (5.5 * unit, 2.25 * unit), seed + 2),
    ]


def end_point_error(estimate: np.ndarray, truth: np.ndarray, region: np.ndarray) -> float:
    """Mean Euclidean distance between two flows over the pixels of ``region``."""
    return float(np.hypot(*(estimate - truth)[region].T).mean())


def evaluate(estimator: Callable[[np.ndarray, np.ndarray], np.ndarray], pairs: list[FlowPair],
             repeats: int = 1) -> dict[str, float]:
    """EPE per pair (and inside/outside the mover) and the best time per pair in milliseconds."""
    results: dict[str, float] = {}
    times = []
    for pair in pairs:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            estimate = estimator(pair.first, pair.second)
            best = min(best, time.perf_counter() - start)
        times.append(best)
        height, width = pair.first.shape
        margin = round(0.08 * width)
        valid = np.zeros((height, width), bool)
        valid[margin:-margin, margin:-margin] = True
        results[pair.name] = end_point_error(estimate, pair.flow, valid)
        if pair.mask is not None:
            results[f"{pair.name}_inside"] = end_point_error(estimate, pair.flow, valid & pair.mask)
            results[f"{pair.name}_outside"] = end_point_error(estimate, pair.flow, valid & ~pair.mask)
    results["mean"] = float(np.mean([results[pair.name] for pair in pairs]))
    results["ms_per_pair"] = 1000 * float(np.mean(times))
    return results


def _names(text: str) -> list[str]:
    names = [n for n in text.split(",") if n]
    unknown = [n for n in names if n not in FLOW_METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; allowed: {', '.join(FLOW_METHODS)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=lambda t: [int(n) for n in t.split(",") if n], default=[320, 128],
                        help="comma-separated frame widths (default: 320,128, the paper and cpu-small stores)")
    parser.add_argument("--flows", type=_names, default=["liu", "deepflow", "dis", "farneback", "tvl1"],
                        help="comma-separated back-ends (default: all)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per pair, the best is kept (default: 1)")
    parser.add_argument("--seed", type=int, default=1,
                        help="texture seed (default: 1; liu's data weight was chosen on seed 0)")
    parser.add_argument("--liu-data-weights", type=lambda t: [float(n) for n in t.split(",") if n], default=[],
                        help="also run liu with these data weights (rows liu@W), as when the default was chosen")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    load_before = os.getloadavg()[0]
    report: dict[str, dict[str, float]] = {}
    columns = ["translation", "rotation", "zoom", "shape", "shape_inside", "shape_outside", "mean", "ms_per_pair"]
    for width in args.widths:
        pairs = make_pairs(width, args.seed)
        print(f"width {width}x{pairs[0].first.shape[0]}, mean EPE in pixels (true motion up to "
              f"{max(float(np.hypot(*p.flow.reshape(-1, 2).T).max()) for p in pairs):.1f} px), one thread")
        print(f"{'flow':<10}" + "".join(f"{c:>14}" for c in columns))
        estimators = [(method, create_flow(method)) for method in args.flows]
        estimators += [(f"liu@{w:g}", LiuFlow(data_weight=w)) for w in args.liu_data_weights]
        for name, estimator in estimators:
            results = evaluate(estimator, pairs, args.repeats)
            report[f"{name}_{width}"] = {k: round(v, 4) for k, v in results.items()}
            print(f"{name:<10}" + "".join(f"{results[c]:>14.3f}" for c in columns))
    print(f"load average (1 min) before {load_before:.2f}, after {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
