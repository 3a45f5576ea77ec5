"""Report commands, the last stage of the workflow: ``report`` (one HTML page for a run) and ``demo`` (every stage
on a small synthetic benchmark, ending with that page)."""

from __future__ import annotations

import argparse

from tstcnn.cli.command import Command, UsageError
from tstcnn.cli.options import add_device_option, integer, number, show_progress
from tstcnn.config import parse_size
from tstcnn.demo import DemoSettings, run_demo, summary_lines
from tstcnn.viz.report import build_report

__all__ = ["COMMANDS", "REPORT", "DEMO"]

def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a training run's folder, or the folder the demo wrote")
    parser.add_argument("--out", default=None, metavar="FILE.html",
                        help="output HTML file (default: RUN_DIR/report.html)")


def _report(args: argparse.Namespace) -> int:
    print(f"wrote {build_report(args.run_dir, args.out)}")
    return 0


REPORT = Command(
    "report", "write one self-contained HTML page for a run",
    "Gather a run folder's results, curves, confusion matrices, attention maps and detection timelines into "
    "RUN_DIR/report.html (images embedded; opens without a network).",
    _report_arguments, _report)

DEMO_DEFAULTS = DemoSettings()


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = DEMO_DEFAULTS
    parser.add_argument("--out", default="runs/demo", metavar="DIR", help="output folder (default: runs/demo)")
    parser.add_argument("--per-class", type=int, default=defaults.per_class, metavar="N",
                        help=f"train clips per class; validation and test get N/4 (default: {defaults.per_class})")
    parser.add_argument("--size", type=parse_size, default=defaults.size, metavar="WxH",
                        help=f"frame size of the generated videos (default: {defaults.size[0]}x{defaults.size[1]})")
    parser.add_argument("--fps", type=number(gt=0), default=defaults.fps, help="frame rate (default: %(default)s)")
    parser.add_argument("--epochs", type=integer(ge=1), default=defaults.epochs, metavar="N",
                        help="training epochs (train.epochs; default: %(default)s)")
    parser.add_argument("--seed", type=integer(ge=0), default=defaults.seed, metavar="N",
                        help="data and training seed (default: %(default)s)")
    parser.add_argument("--workers", type=integer(ge=1), default=defaults.workers, metavar="N",
                        help="processes generating and preparing videos (default: %(default)s)")
    add_device_option(parser)


def _demo(args: argparse.Namespace) -> int:
    if len(args.size) != 2:
        raise UsageError(f"--size needs two values WxH, got {'x'.join(map(str, args.size))}")
    if args.per_class < 4:
        raise UsageError(f"--per-class must be at least 4 (so every split has clips), got {args.per_class}")
    settings = DemoSettings(per_class=args.per_class, size=tuple(args.size), fps=args.fps, seed=args.seed,
                            workers=args.workers, epochs=args.epochs)
    results = run_demo(args.out, settings, progress=show_progress(args), device=args.device)
    for line in summary_lines(results, args.out):
        print(line)
    return 0


DEMO = Command(
    "demo", "the whole pipeline on a small synthetic benchmark (minutes on a CPU)",
    f"Generate a synthetic table tennis benchmark (21 classes, the benchmark's default nuisance), prepare it, train "
    f"the Twin with attention ({DEMO_DEFAULTS.preset} preset), evaluate every split, write the MediaEval submission "
    "for the test clips, the attention maps and the HTML report, and print where everything is. DIR is a run folder: "
    "the other commands take it. Re-running the same command resumes an interrupted demo.",
    _demo_arguments, _demo)

COMMANDS = (REPORT, DEMO)
