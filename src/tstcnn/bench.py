"""Training-step and inference throughput of a TSTCNN against the plain fp32 reference (``tstcnn bench``).

Each case (a model implementation and a set of speed options) runs its training steps and its
inference passes in two fresh subprocesses, so that each peak resident memory (``ru_maxrss``) is its
own. Every case starts from the same seed: same weights, same inputs. FLOPs are counted once with
:class:`torch.utils.flop_counter.FlopCounterMode` on the meta device (shapes only, no compute), and
the machine's matrix-product peak is measured in the same run (fp32 and bf16), so that each case's
achieved GFLOP/s is also given as a share of the peak of its precision.

Output: a table, then one JSON line (``train_samples_per_s``, ``infer_samples_per_s``,
``peak_rss_gb`` of the fast cases, the same with ``baseline_`` for the reference, the ratios, and
every case's figures).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import get_args

import torch
from torch.utils.flop_counter import FlopCounterMode

from tstcnn.config import BlockKind, Modality, parse_size
from tstcnn.models import build_model
from tstcnn.models.reference import reference_from_model
from tstcnn.progress import progress as progress_bar
from tstcnn.runtime.performance import (
    apply_performance_options,
    autocast,
    prepare_inputs,
    step_large_parameters_in_backward,
)

__all__ = ["Case", "CASES", "run_benchmark", "main", "count_flops", "matmul_peak"]


@dataclass(frozen=True)
class Case:
    """One implementation and its speed options; ``reference`` is the plain fp32 eager baseline."""

    name: str
    reference: bool = False
    precision: str = "fp32"
    channels_last: bool = False
    checkpoint_attention: bool = False
    compile: bool = False
    fused_sgd: bool = True  # one in-place kernel: no temporary copies of the 0.43 GB FC gradients
    step_in_backward: bool = False
    help: str = ""


CASES = {case.name: case for case in (
    Case("baseline", reference=True, fused_sgd=False,
         help="plain fp32 eager: default layout, no in-place op, no fusion, for-loop SGD"),
    Case("fp32", help="our blocks (in-place ReLU and additions, one addcmul for trunk·(1+mask)), fused SGD"),
    Case("fp32-cl", channels_last=True, help="+ channels-last 3D"),
    Case("bf16", precision="bf16", help="+ bf16 autocast (FC and pooling kept out of the casts)"),
    Case("bf16-cl", precision="bf16", channels_last=True, help="+ bf16 autocast + channels-last 3D"),
    Case("bf16-ckpt", precision="bf16", checkpoint_attention=True, help="+ bf16 + attention checkpointing"),
    Case("bf16-cl-ckpt", precision="bf16", channels_last=True, checkpoint_attention=True,
         help="+ bf16 + channels-last + attention checkpointing"),
    Case("bf16-cl-ckpt-sib", precision="bf16", channels_last=True, checkpoint_attention=True, step_in_backward=True,
         help="+ FC weights stepped in the backward pass (the paper preset)"),
    Case("fp32-compile", compile=True, help="fp32 + torch.compile"),
    Case("bf16-compile", precision="bf16", compile=True, help="bf16 + torch.compile"),
    Case("bf16-cl-compile", precision="bf16", channels_last=True, compile=True,
         help="+ bf16 + channels-last + torch.compile (inference: weights frozen, batch norms folded)"),
)}

DEFAULT_TRAIN_CASES = ("baseline", "bf16", "bf16-cl", "bf16-cl-ckpt", "bf16-cl-ckpt-sib")
DEFAULT_INFER_CASES = ("baseline", "bf16", "bf16-cl", "bf16-cl-compile")
# The JSON line's headline: the paper preset's training step, and inference as `tstcnn predict/detect --compile`
# runs it (or, when that case was not run, as they run by default).
FAST_TRAIN_CASES = ("bf16-cl-ckpt-sib",)
FAST_INFER_CASES = ("bf16-cl-compile", "bf16-cl")


def _build(modality: str, block: str, size: Sequence[int], case: Case):
    torch.manual_seed(0)
    model = build_model(modality, block, input_size=size)
    return reference_from_model(model) if case.reference else model


def _inputs(modality: str, size: Sequence[int], batch_size: int, device: str = "cpu"):
    g = torch.Generator().manual_seed(1)
    inputs = {}
    if modality in ("rgb", "twin"):
        inputs["rgb"] = torch.rand(batch_size, 3, *size, generator=g)
    if modality in ("flow", "twin"):
        inputs["flow"] = torch.rand(batch_size, 2, *size, generator=g) * 2 - 1
    return {k: v.to(device) for k, v in inputs.items()}


def _worker(spec: dict) -> dict:
    """Run one case in this process: ``warmup`` then ``steps`` timed training steps or inference passes."""
    torch.set_num_threads(spec["threads"])
    case = Case(**spec["case"])
    size, batch_size, train = tuple(spec["size"]), spec["batch_size"], spec["mode"] == "train"
    model = _build(spec["modality"], spec["block"], size, case)
    model.train(train)
    call = model if case.reference else apply_performance_options(model, case, "cpu", inference=not train)
    inputs = prepare_inputs(_inputs(spec["modality"], size, batch_size), "cpu", case.channels_last)
    labels = torch.arange(batch_size) % model.classifier.out_features if hasattr(model.classifier, "out_features") \
        else torch.arange(batch_size) % model.classifier.bilinear.out_features
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5, weight_decay=0.005, nesterov=True,
                                fused=case.fused_sgd or None)
    if case.step_in_backward:
        step_large_parameters_in_backward(optimizer)

    def step() -> None:
        if train:
            with autocast(case.precision, "cpu"):
                loss = torch.nn.functional.cross_entropy(call(**inputs).float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        else:
            with torch.inference_mode(), autocast(case.precision, "cpu"):
                call(**inputs)

    first = time.perf_counter()
    for _ in range(spec["warmup"]):
        step()
    warmup_s = time.perf_counter() - first
    times = []
    for _ in range(spec["steps"]):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    best = min(times)
    return {"case": case.name, "mode": spec["mode"], "step_s": times, "best_step_s": best, "warmup_s": warmup_s,
            "samples_per_s": batch_size / best, "s_per_sample": best / batch_size,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9}


def count_flops(modality: str, block: str, size: Sequence[int], batch_size: int) -> dict[str, float]:
    """FLOPs of one training step (forward + backward) and one inference pass, counted on the meta device."""
    with torch.device("meta"):
        model = build_model(modality, block, input_size=size)
        inputs = _inputs(modality, size, batch_size, "meta")
    counts = {}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(**inputs)
    counts["infer_flops"] = float(counter.get_total_flops())
    with FlopCounterMode(display=False) as counter:
        model.train()(**inputs).sum().backward()
    counts["train_flops"] = float(counter.get_total_flops())
    return counts


def matmul_peak(threads: int, n: int = 4096, repeats: int = 5) -> dict[str, float]:
    """Best GFLOP/s of an ``n×n`` matrix product in fp32 and bf16 with ``threads`` threads."""
    torch.set_num_threads(threads)
    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        a @ b
        best = min(_timed(partial(torch.matmul, a, b)) for _ in range(repeats))
        peaks[name] = 2 * n**3 / best / 1e9
    return peaks


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _run_subprocess(spec: dict) -> dict:
    command = [sys.executable, "-m", "tstcnn.bench", "--worker", json.dumps(spec)]
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"])}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"case": spec["case"]["name"], "mode": spec["mode"], "error": tail}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_benchmark(modality: str = "twin", block: str = "attention", size: Sequence[int] = (100, 120, 120),
                  batch_size: int = 2, threads: int = 2, steps: int = 2, warmup: int = 1,
                  train_cases: Sequence[str] = DEFAULT_TRAIN_CASES, infer_cases: Sequence[str] = DEFAULT_INFER_CASES,
                  progress: bool = True) -> dict:
    """Run every case (each in fresh subprocesses) and return the figures of the JSON line."""
    for name in (*train_cases, *infer_cases):
        if name not in CASES:
            raise ValueError(f"unknown benchmark case {name!r}; allowed: {', '.join(CASES)}")
    load_before = os.getloadavg()
    flops = count_flops(modality, block, size, batch_size)
    peaks = matmul_peak(threads)
    jobs = [(name, "train") for name in train_cases] + [(name, "infer") for name in infer_cases]
    results = []
    for name, mode in progress_bar(jobs, desc="bench", unit="case", enabled=progress):
        spec = {"case": asdict(CASES[name]), "mode": mode, "modality": modality, "block": block, "size": list(size),
                "batch_size": batch_size, "threads": threads, "steps": steps, "warmup": warmup}
        result = _run_subprocess(spec)
        if "error" not in result:
            work = flops["train_flops" if mode == "train" else "infer_flops"]
            result["gflop_per_s"] = work / result["best_step_s"] / 1e9
            result["peak_share"] = result["gflop_per_s"] / peaks[CASES[name].precision if CASES[name].precision
                                                                   != "fp16" else "bf16"]
        results.append(result)
    return _summary(results, flops, peaks, load_before, modality=modality, block=block, size=list(size),
                    batch_size=batch_size, threads=threads)


def _summary(results: list[dict], flops: dict, peaks: dict, load_before: tuple, **setting) -> dict:
    by = {(r["case"], r["mode"]): r for r in results if "error" not in r}
    summary: dict = {**setting, "device": platform.processor() or platform.machine(),
                     "load_average_before": round(load_before[0], 2),
                     "load_average_after": round(os.getloadavg()[0], 2),
                     "train_gflop_per_step": flops["train_flops"] / 1e9,
                     "infer_gflop_per_pass": flops["infer_flops"] / 1e9,
                     "matmul_peak_gflop_per_s": {k: round(v, 1) for k, v in peaks.items()},
                     "fast_train_case": _first_run(by, FAST_TRAIN_CASES, "train"),
                     "fast_infer_case": _first_run(by, FAST_INFER_CASES, "infer")}
    for prefix, train_case, infer_case in (("", summary["fast_train_case"], summary["fast_infer_case"]),
                                           ("baseline_", "baseline", "baseline")):
        train, infer = by.get((train_case, "train")), by.get((infer_case, "infer"))
        summary[f"{prefix}train_samples_per_s"] = train and train["samples_per_s"]
        summary[f"{prefix}infer_samples_per_s"] = infer and infer["samples_per_s"]
        summary[f"{prefix}peak_rss_gb"] = train and train["peak_rss_gb"]
        summary[f"{prefix}infer_peak_rss_gb"] = infer and infer["peak_rss_gb"]
    for mode in ("train", "infer"):
        fast, base = summary[f"{mode}_samples_per_s"], summary[f"baseline_{mode}_samples_per_s"]
        summary[f"{mode}_speedup"] = fast / base if fast and base else None
    summary["cases"] = results
    return summary


def _first_run(by: dict, names: Sequence[str], mode: str) -> str | None:
    return next((name for name in names if (name, mode) in by), None)


def format_table(summary: dict) -> str:
    """The human-readable table of a :func:`run_benchmark` summary."""
    lines = [f"{summary['modality']} {summary['block']}, input {'x'.join(map(str, summary['size']))}, batch "
             f"{summary['batch_size']}, {summary['threads']} threads, load average {summary['load_average_before']} → "
             f"{summary['load_average_after']}",
             f"FLOPs per sample: training step {summary['train_gflop_per_step'] / summary['batch_size']:.1f} GFLOP, "
             f"inference {summary['infer_gflop_per_pass'] / summary['batch_size']:.1f} GFLOP; matmul peak "
             f"fp32 {summary['matmul_peak_gflop_per_s']['fp32']:.0f}, "
             f"bf16 {summary['matmul_peak_gflop_per_s']['bf16']:.0f} GFLOP/s", "",
             f"{'mode':<6}{'case':<16}{'samples/s':>10}{'s/sample':>10}{'× base':>8}{'peak GB':>9}{'GFLOP/s':>9}"
             f"{'% peak':>8}{'warm-up s':>11}  options"]
    base = {r["mode"]: r for r in summary["cases"] if r["case"] == "baseline" and "error" not in r}
    for r in summary["cases"]:
        if "error" in r:
            lines.append(f"{r['mode']:<6}{r['case']:<16}failed: {r['error']}")
            continue
        ratio = r["samples_per_s"] / base[r["mode"]]["samples_per_s"] if r["mode"] in base else float("nan")
        lines.append(f"{r['mode']:<6}{r['case']:<16}{r['samples_per_s']:>10.3f}{r['s_per_sample']:>10.2f}"
                     f"{ratio:>8.2f}{r['peak_rss_gb']:>9.2f}{r['gflop_per_s']:>9.1f}{100 * r['peak_share']:>7.1f}%"
                     f"{r['warmup_s']:>11.1f}  {CASES[r['case']].help}")
    return "\n".join(lines)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Arguments of ``tstcnn bench`` and ``benchmarks/bench_model.py`` (one definition for both)."""

    parser = parser or argparse.ArgumentParser(prog="bench_model.py", description=__doc__.split("\n\n")[0])
    modalities = [m for m in get_args(Modality) if not m.startswith("i3d")]  # the TSTCNN family has a reference
    parser.add_argument("--modality", default="twin", choices=modalities, help="model (default: twin)")
    parser.add_argument("--block", default="attention", choices=get_args(BlockKind),
                        help="block after each stage (default: attention)")
    parser.add_argument("--input-size", "--size", dest="size", type=parse_size, default=(100, 120, 120),
                        metavar="TxHxW",
                        help="clip size; 100x120x120 is the paper's, 16x64x64 a quick check (default: 100x120x120)")
    parser.add_argument("--batch-size", type=int, default=2, help="samples per step (default: 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per case (default: 2)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per case, the best is kept (default: 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default: 1)")
    parser.add_argument("--train-cases", default=",".join(DEFAULT_TRAIN_CASES), metavar="A,B",
                        help=f"training cases (default: {','.join(DEFAULT_TRAIN_CASES)}; all: {','.join(CASES)})")
    parser.add_argument("--infer-cases", default=",".join(DEFAULT_INFER_CASES), metavar="A,B",
                        help=f"inference cases (default: {','.join(DEFAULT_INFER_CASES)})")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run the benchmark described by parsed arguments; print the table and the JSON line."""
    if len(args.size) != 3:
        raise ValueError(f"--input-size needs three values TxHxW, got {'x'.join(map(str, args.size))}")
    if min(args.batch_size, args.threads, args.steps) < 1 or args.warmup < 0:
        raise ValueError("--batch-size, --threads and --steps must be at least 1, --warmup at least 0")

    def names(text: str) -> tuple[str, ...]:
        return tuple(n for n in text.split(",") if n)

    quiet = getattr(args, "log_level", logging.INFO) > logging.INFO  # tstcnn bench -q
    summary = run_benchmark(args.modality, args.block, args.size, args.batch_size, args.threads, args.steps,
                            args.warmup, names(args.train_cases), names(args.infer_cases), progress=not quiet)
    print(format_table(summary))
    print(json.dumps(summary))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return 0
    return run_from_args(args)


if __name__ == "__main__":
    sys.exit(main())
