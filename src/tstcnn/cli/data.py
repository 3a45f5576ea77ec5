"""Data commands, the first stage of the workflow: ``synth`` (a synthetic benchmark) and ``prepare`` (videos to a
prepared store of frames, optical flow and ROI)."""

from __future__ import annotations

import argparse
import logging
import os

from tstcnn.cli.command import Command, UsageError
from tstcnn.cli.options import add_config_flags, add_config_option, config_from_args, integer, number, show_progress
from tstcnn.config import parse_size
from tstcnn.io.layouts import LAYOUTS
from tstcnn.prep.prepare import merge_shards, parse_shard, prepare_dataset, summary_lines
from tstcnn.synth import LAYOUTS as SYNTH_LAYOUTS
from tstcnn.synth import generate_dataset, write_preview
from tstcnn.taxonomy import TTSTROKE21_CLASSES, load_taxonomy

__all__ = ["COMMANDS", "SYNTH", "PREPARE"]

logger = logging.getLogger(__name__)


def _synth_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (empty, or holding the same dataset to resume)")
    parser.add_argument("--layout", choices=SYNTH_LAYOUTS, default="classification",
                        help="which MediaEval layout(s) to write (default: classification)")
    parser.add_argument("--per-class", type=int, default=40, metavar="N",
                        help="train clips per class; validation and test get N/4, at least 1 (default: 40)")
    parser.add_argument("--classes", default=None, metavar="NAME,...",
                        help="comma-separated class names (default: the 21 TTStroke-21 classes)")
    parser.add_argument("--size", type=parse_size, default=(640, 360), metavar="WxH",
                        help="frame size, even numbers (default: 640x360)")
    parser.add_argument("--fps", type=number(gt=0), default=120.0, help="frame rate (default: 120, like TTStroke-21)")
    parser.add_argument("--seed", type=integer(ge=0), default=0, metavar="N", help="dataset seed (default: 0)")
    parser.add_argument("--workers", type=integer(ge=1), default=1, metavar="N",
                        help="parallel rendering processes (default: 1)")
    parser.add_argument("--left-handed", type=number(ge=0, le=1), default=0.15, metavar="P",
                        help="share of left-handed players (default: 0.15)")
    parser.add_argument("--preview", default=None, metavar="OUT.png",
                        help="also write a contact sheet: one clip per class, six frames across its stroke")


def _synth(args: argparse.Namespace) -> int:
    if args.out is None and args.preview is None:
        raise UsageError("give --out DIR to generate a dataset, or --preview OUT.png for a contact sheet")
    if len(args.size) != 2:
        raise UsageError(f"--size needs two values WxH, got {'x'.join(map(str, args.size))}")
    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip()) if args.classes else TTSTROKE21_CLASSES
    unknown = [c for c in classes if c not in TTSTROKE21_CLASSES]
    if unknown:
        raise UsageError(f"unknown class {unknown[0]!r} in --classes; allowed: {', '.join(TTSTROKE21_CLASSES)}")
    if args.per_class < 1:
        raise UsageError(f"--per-class must be at least 1, got {args.per_class}")
    if args.out is not None:
        summary = generate_dataset(args.out, args.layout, args.per_class, classes, args.size, args.fps, args.seed,
                                   args.workers, args.left_handed, progress=show_progress(args))
        print(f"wrote {summary.written} videos ({summary.frames} frames), kept {summary.skipped} already complete, "
              f"in {summary.out}")
    if args.preview is not None:
        print(f"wrote {write_preview(args.preview, classes, args.seed)}")
    return 0


SYNTH = Command(
    "synth", "generate synthetic table tennis videos (20 strokes + negatives) in the MediaEval layouts",
    "Render procedural table tennis clips whose 21 classes differ only by motion, into OUT/classificationTask "
    "(train/validation per class, test + test_ground_truth.xml) and/or OUT/detectionTask (long videos with "
    "per-video XML). Deterministic for a seed whatever the worker count; re-running with the same arguments "
    "completes an interrupted set. With --preview and no --out, only write a contact sheet (one clip per class).",
    _synth_arguments, _synth)


def _prepare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", metavar="DIR", help="dataset folder (or the CSV file for --layout csv)")
    parser.add_argument("--layout", choices=LAYOUTS, help="how the dataset is organised (see the README)")
    parser.add_argument("--out", required=True, metavar="STORE", help="the store folder to write or resume")
    add_config_option(parser)
    parser.add_argument("--classes", metavar="FILE",
                        help="class names, one per line (default: TTStroke-21 for the MediaEval layouts, the names "
                             "found for folders and csv)")
    parser.add_argument("--test-labels", metavar="XML",
                        help="mediaeval-classification only: the test split's ground truth in the submission format "
                             "(tstcnn synth writes classificationTask/test_ground_truth.xml), so test clips are "
                             "labelled for evaluation")
    parser.add_argument("--workers", type=integer(ge=1), default=os.cpu_count() or 1, metavar="N",
                        help="worker processes, one video each (default: all cores)")
    parser.add_argument("--decode-threads", type=integer(ge=0), default=1, metavar="N",
                        help="decoder threads per video (0: FFmpeg's choice; default: 1)")
    parser.add_argument("--shard", metavar="i/n", help="prepare only shard i of n (0 <= i < n), e.g. a SLURM array "
                                                       "task; run --merge when all are done")
    parser.add_argument("--merge", action="store_true",
                        help="gather finished shards into STORE and write its manifest (no preparing)")
    parser.add_argument("--from", dest="merge_from", nargs="*", default=[], metavar="SHARD_STORE",
                        help="with --merge: other shard stores whose videos are moved into STORE")
    parser.add_argument("--max-videos", type=integer(ge=1), metavar="N",
                        help="stop after this many videos (resume later)")
    add_config_flags(parser, "prep")


def _prepare(args: argparse.Namespace) -> int:
    if args.merge:
        summary = merge_shards(args.out, args.merge_from)
    else:
        if not args.source or not args.layout:
            raise UsageError("--source and --layout are needed (or --merge)")
        prep = config_from_args(args, ["prep"]).prep
        mediaeval = args.layout.startswith("mediaeval")
        classes = load_taxonomy(args.classes).classes if args.classes or mediaeval else None
        summary = prepare_dataset(args.source, args.layout, args.out, prep, classes=classes, workers=args.workers,
                                  decode_threads=args.decode_threads,
                                  shard=parse_shard(args.shard) if args.shard else None,
                                  max_videos=args.max_videos, preset=args.config, test_labels=args.test_labels,
                                  progress=show_progress(args))
    for line in summary_lines(summary):
        print(line)
    for problem in summary.problems:
        logger.warning("tstcnn prepare: skipped: %s", problem)
    if summary.problems:
        logger.error("tstcnn prepare: error: %d input(s) skipped (listed above and in the manifest); the other videos "
                     "are prepared", len(summary.problems))
        return 1
    return 0


PREPARE = Command(
    "prepare", "decode videos, compute optical flow and ROI into a prepared store",
    "Decode every video once, resize it to the preset width, compute the optical flow between consecutive frames "
    "and the ROI centre per frame, and write them into STORE (memory-mapped YUV 4:2:0 frames and int8 flow, one "
    "folder per video) with a manifest. Resumable: complete videos are skipped, interrupted ones redone. Bad inputs "
    "are reported and skipped; the exit status is then 1. With --shard i/n several machines share the work; "
    "--merge then gathers it.",
    _prepare_arguments, _prepare,
    usage="%(prog)s --source DIR --layout LAYOUT --out STORE [--config NAME|FILE] [options]\n"
          "       %(prog)s --merge --out STORE [--from SHARD_STORE ...]")

COMMANDS = (SYNTH, PREPARE)
