"""The ``tstcnn`` command line: one entry point, one subcommand per step of the workflow.

This module only parses arguments and maps them onto config fields and library calls; the work is
done in ``tstcnn.prep``, ``tstcnn.engine``, ``tstcnn.infer`` and friends. Errors a user can fix
(bad paths, bad values, unreadable files) end in a one-line message and exit status 2; set
``TSTCNN_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from tstcnn import __version__

__all__ = ["main", "build_parser"]

CommandAdder = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line."""


def _parse_size(text: str) -> tuple[int, ...]:
    """``100x120x120`` or ``640x360`` to a tuple of ints."""
    try:
        values = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 100x120x120, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return values


COMMANDS: list[CommandAdder] = []


def command(add: CommandAdder) -> CommandAdder:
    """Register a function that adds one subcommand (its parser and ``func``) to the command line."""
    COMMANDS.append(add)
    return add


@command
def _models(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models", help="list the model family with the paper's Table I parameter counts",
        description="Print the paper's Table I (parameters without fully connected layers) next to ours, with "
                    "and without the FC layers, for the given input size, and the registered variants.")
    parser.add_argument("--input-size", type=_parse_size, default=(100, 120, 120), metavar="TxHxW",
                        help="clip size that fixes the FC widths (default: 100x120x120, the paper's)")
    parser.add_argument("--num-classes", type=int, default=21, help="output classes (default: 21)")
    parser.set_defaults(func=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    import torch

    from tstcnn.models import PAPER_TABLE_I, build_model, count_parameters, list_models

    if len(args.input_size) != 3:
        raise UsageError(f"--input-size needs three values TxHxW, got {'x'.join(map(str, args.input_size))}")
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


@command
def _report(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="write one self-contained HTML page for a run",
        description="Gather a run folder's results, curves, confusion matrices, attention maps and detection "
                    "timelines into RUN_DIR/report.html (images embedded; opens without a network).")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a training run's folder, or the folder the demo wrote")
    parser.add_argument("--out", default=None, help="output HTML file (default: RUN_DIR/report.html)")
    parser.set_defaults(func=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from tstcnn.viz.report import build_report

    print(f"wrote {build_report(args.run_dir, args.out)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tstcnn",
        description="Fine-grained action recognition with the Twin Spatio-Temporal CNN and 3D attention.",
    )
    parser.add_argument("--version", action="version", version=f"tstcnn {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from tstcnn.io.mediaeval import AnnotationError
    from tstcnn.io.video import VideoError

    return (UsageError, ValueError, KeyError, OSError, VideoError, AnnotationError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into a command that stopped reading (e.g. `| head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"tstcnn {args.command}: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as exc:
        if os.environ.get("TSTCNN_DEBUG"):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"tstcnn {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
