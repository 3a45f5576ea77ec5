"""Tool commands, beside the workflow: ``models`` (the model family and the paper's Table I parameter counts)
and ``bench`` (training and inference speed and memory)."""

from __future__ import annotations

import argparse

import torch

from tstcnn.bench import build_parser as add_bench_arguments
from tstcnn.bench import run_from_args
from tstcnn.cli.command import Command
from tstcnn.cli.options import config_type, integer
from tstcnn.config import ModelConfig
from tstcnn.models import PAPER_TABLE_I, build_model, count_parameters, list_models

__all__ = ["COMMANDS", "MODELS", "BENCH"]


def _models_arguments(parser: argparse.ArgumentParser) -> None:
    size = ModelConfig().input_size
    parser.add_argument("--input-size", type=config_type("model", "input_size"), default=size, metavar="TxHxW",
                        help=f"clip size that fixes the FC widths (default: {'x'.join(map(str, size))}, the paper's)")
    parser.add_argument("--num-classes", type=integer(ge=1), default=21, metavar="N",
                        help="output classes (default: 21)")


def _models(args: argparse.Namespace) -> int:
    rows = []
    for (modality, attention), paper in PAPER_TABLE_I.items():
        with torch.device("meta"):
            model = build_model(modality, "attention" if attention else "none", num_classes=args.num_classes,
                                input_size=args.input_size)
        rows.append((modality, "3 attention" if attention else "none", f"{paper:,}", model))
    for stream in ("rgb", "flow"):
        with torch.device("meta"):
            model = build_model(f"i3d-{stream}", num_classes=args.num_classes, input_size=args.input_size)
        rows.append((f"i3d-{stream}", "inception", "", model))
    size = "x".join(map(str, args.input_size))
    print(f"Parameters at input {size}, {args.num_classes} classes (paper Table I excludes FC and bilinear layers)")
    print(f"{'model':<10}{'blocks':<12}{'paper':>12}{'ours':>12}{'ours with FC':>16}")
    for name, blocks, paper, model in rows:
        print(f"{name:<10}{blocks:<12}{paper:>12}{count_parameters(model):>12,}"
              f"{count_parameters(model, exclude_fc=False):>16,}")
    print("\nRegistered variants: " + ", ".join(list_models()))
    return 0


MODELS = Command(
    "models", "list the model family with the paper's Table I parameter counts",
    "Print the paper's Table I (parameters without fully connected layers) next to ours, with and without the FC "
    "layers, for the given input size, and the registered variants.",
    _models_arguments, _models)

BENCH = Command(
    "bench", "training-step and inference speed and memory against the plain fp32 reference",
    "Time training steps and inference passes of each speed configuration (fp32, bf16, channels-last, attention "
    "checkpointing, torch.compile) against the plain fp32 reference, each case in a fresh process on the CPU: "
    "samples/s, s/sample, peak memory, GFLOP/s and share of the measured matmul peak. Prints a table then one JSON "
    "line. The paper setting is --size 100x120x120 --batch-size 2 --threads 2 (minutes, ~7 GB); --size 16x64x64 is "
    "a quick check.",
    add_bench_arguments, run_from_args)

COMMANDS = (MODELS, BENCH)
