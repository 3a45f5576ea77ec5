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
from pathlib import Path

from tstcnn import __version__
from tstcnn.config import PRECISIONS, Config, parse_size

__all__ = ["main", "build_parser"]

CommandAdder = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line."""


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
    parser.add_argument("--input-size", type=parse_size, default=(100, 120, 120), metavar="TxHxW",
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


@command
def _prepare(subparsers: argparse._SubParsersAction) -> None:
    from tstcnn.io.layouts import LAYOUTS
    from tstcnn.prep.flow import FLOW_METHODS

    parser = subparsers.add_parser(
        "prepare", help="decode videos, compute optical flow and ROI into a prepared store",
        description="Decode every video once, resize it to the preset width, compute the optical flow between "
                    "consecutive frames and the ROI centre per frame, and write them into STORE (memory-mapped "
                    "YUV 4:2:0 frames and int8 flow, one folder per video) with a manifest. Resumable: complete "
                    "videos are skipped, interrupted ones redone. Bad inputs are reported and skipped; the exit "
                    "status is then 1. With --shard i/n several machines share the work; --merge then gathers it.")
    parser.add_argument("--source", help="dataset folder (or the CSV file for --layout csv)")
    parser.add_argument("--layout", choices=LAYOUTS, help="how the dataset is organised (see the README)")
    parser.add_argument("--out", required=True, metavar="STORE", help="the store folder to write or resume")
    parser.add_argument("--preset", default="paper", metavar="NAME|YAML",
                        help="preset (paper, cpu-small) or config file whose prep section is used (default: paper)")
    parser.add_argument("--width", type=int, help="frame width after resizing (prep.width; paper: 320)")
    parser.add_argument("--flow", choices=FLOW_METHODS, help="optical flow back-end (prep.flow; paper: deepflow)")
    parser.add_argument("--roi-smoothing", type=float, help="ROI smoothing, std in frames (prep.roi_smoothing)")
    parser.add_argument("--classes", metavar="FILE",
                        help="class names, one per line (default: TTStroke-21 for the MediaEval layouts, the "
                             "names found for folders and csv)")
    parser.add_argument("--test-labels", metavar="XML",
                        help="mediaeval-classification only: the test split's ground truth in the submission format "
                             "(tstcnn synth writes classificationTask/test_ground_truth.xml), so test clips are "
                             "labelled for evaluation")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="worker processes, one video each (default: all cores)")
    parser.add_argument("--decode-threads", type=int, default=1, help="decoder threads per video (default: 1)")
    parser.add_argument("--shard", metavar="i/n", help="prepare only shard i of n (0 <= i < n), e.g. a SLURM array "
                                                       "task; run --merge when all are done")
    parser.add_argument("--merge", action="store_true",
                        help="gather finished shards into STORE and write its manifest (no preparing)")
    parser.add_argument("--from", dest="merge_from", nargs="*", default=[], metavar="SHARD_STORE",
                        help="with --merge: other shard stores whose videos are moved into STORE")
    parser.add_argument("--max-videos", type=int, help="stop after this many videos (resume later)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run_prepare)


def _run_prepare(args: argparse.Namespace) -> int:
    from tstcnn.config import load_config, override
    from tstcnn.prep.prepare import merge_shards, parse_shard, prepare_dataset, summary_lines
    from tstcnn.taxonomy import load_taxonomy

    if args.merge:
        summary = merge_shards(args.out, args.merge_from)
    else:
        if not args.source or not args.layout:
            raise UsageError("--source and --layout are needed (or --merge)")
        if args.workers < 1 or args.decode_threads < 0:
            raise UsageError("--workers must be at least 1 and --decode-threads at least 0")
        prep = override(load_config(args.preset), "prep", width=args.width, flow=args.flow,
                        roi_smoothing=args.roi_smoothing).prep
        if args.classes or args.layout.startswith("mediaeval"):
            classes = load_taxonomy(args.classes).classes
        else:
            classes = None
        summary = prepare_dataset(args.source, args.layout, args.out, prep, classes=classes, workers=args.workers,
                                  decode_threads=args.decode_threads,
                                  shard=parse_shard(args.shard) if args.shard else None,
                                  max_videos=args.max_videos, preset=args.preset, test_labels=args.test_labels,
                                  progress=not args.quiet)
    for line in summary_lines(summary):
        print(line)
    for problem in summary.problems:
        print(f"tstcnn prepare: skipped: {problem}", file=sys.stderr)
    if summary.problems:
        print(f"tstcnn prepare: error: {len(summary.problems)} input(s) skipped (listed above and in the "
              "manifest); the other videos are prepared", file=sys.stderr)
        return 1
    return 0


@command
def _predict(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="classify trimmed clips (MediaEval classification submission + CSV)",
        description="Classify each trimmed clip with a trained run (or an export), from raw videos prepared on the "
                    "fly with the run's own preparation settings and flow normalisation, from a dataset layout, or "
                    "from a prepared store. A clip longer than the network's window is classified from several "
                    "windows aggregated at test time. Writes OUT/submission.xml (<videos><video name class/>) and "
                    "OUT/predictions.csv (the score of every class). Videos that fail are named and skipped.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder, checkpoint (.pt) or export (.onnx/.ts/.json)")
    parser.add_argument("videos", nargs="*", metavar="VIDEO", help="video files or folders of videos")
    parser.add_argument("--source", default=None, help="a dataset folder (or CSV) read with --layout instead of VIDEOs")
    parser.add_argument("--layout", default=None, help="layout of --source (mediaeval-classification, folders, csv…)")
    parser.add_argument("--store", default=None, help="a prepared store to read the clips from instead of VIDEOs")
    parser.add_argument("--split", default=None, help="only this split of --source or --store (e.g. test)")
    parser.add_argument("--out", default="predictions", help="output folder (default: ./predictions)")
    _add_inference_options(parser)
    parser.add_argument("--aggregation", default="mean", choices=("centre", "vote", "mean", "gaussian"),
                        help="test-time aggregation over the windows of a clip (default: mean)")
    parser.add_argument("--windows", type=int, default=5, help="windows per clip longer than the input (default: 5)")
    parser.add_argument("--sigma", type=float, default=None,
                        help="Gaussian aggregation: standard deviation in frames (default: a quarter of the span)")
    parser.set_defaults(func=_run_predict)


def _add_inference_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--which", default="best", choices=("best", "last"),
                        help="checkpoint of RUN_DIR (default: best)")
    parser.add_argument("--device", default="cpu", help="torch device for a checkpoint, e.g. cuda (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default: 8)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="auto (default): bf16 + channels-last where the device has bf16 units, else fp32; "
                             "fp32 is the reference path")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the network with frozen weights (at paper size on 2 CPU cores: 1-1.5 "
                             "min to compile, then ~12%% faster: for long videos)")
    parser.add_argument("--work-dir", default=None, help="where raw videos are prepared (default: the system temp)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _skipped(command_name: str, problems: Sequence[str]) -> None:
    for problem in problems:
        print(f"tstcnn {command_name}: skipped: {problem}", file=sys.stderr)


def _layout_items(args: argparse.Namespace, classes: Sequence[str]) -> tuple[list, list[str]]:
    from tstcnn.io.layouts import read_layout

    if not args.layout:
        raise UsageError("--source needs --layout")
    scan = read_layout(args.layout, args.source, classes)
    items = [i for i in scan.items if args.split is None or i.split == args.split]
    if not items:
        raise UsageError(f"{args.source}: no videos{f' in split {args.split!r}' if args.split else ''}")
    return items, list(scan.problems)


def _inputs_given(args: argparse.Namespace) -> None:
    given = [bool(args.videos), bool(getattr(args, "source", None)), bool(args.store)]
    if sum(given) != 1:
        raise UsageError("give VIDEOs, --source with --layout, or --store (exactly one)")


def _run_predict(args: argparse.Namespace) -> int:
    from tstcnn.infer.predict import (PredictOptions, load_predictor, predict_store, predict_videos, prepared_store,
                                      write_predictions)
    from tstcnn.prep.store import Store

    _inputs_given(args)
    run = load_predictor(args.run_dir, args.which, args.device, args.precision, args.compile)
    options = PredictOptions(args.aggregation, args.windows, args.sigma, args.batch_size)
    if args.store:
        predictions, problems = predict_store(run, Store(args.store), options, args.split, progress=not args.quiet)
    elif args.source:
        items, problems = _layout_items(args, run.classes.classes)
        with prepared_store(items, run, args.work_dir, progress=not args.quiet) as (store, more):
            problems += more
            predictions, more = predict_store(run, store, options, progress=not args.quiet) if store else ([], [])
            problems += more
    else:
        predictions, problems = predict_videos(run, args.videos, options, args.work_dir, progress=not args.quiet)
    _skipped("predict", problems)
    if not predictions:
        raise UsageError(f"no clip could be classified ({len(problems)} problems; the first: "
                         f"{problems[0] if problems else 'none'})")
    xml, table = write_predictions(args.out, predictions, run.classes.classes)
    print(f"classified {len(predictions)} clips ({args.aggregation} of up to {args.windows} windows); "
          f"wrote {xml} and {table}")
    return 0


@command
def _detect(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "detect", help="find and label strokes in long videos (MediaEval detection XML + timelines)",
        description="Slide the network over each untrimmed video (batched, every --stride frames), smooth the "
                    "per-frame class probabilities, cut stroke segments (1 - p(Negative) >= --threshold), give each "
                    "its class and drop short ones. Writes OUT/<id>.xml (<video><action begin end move/>), "
                    "OUT/<id>_timeline.png, OUT/<id>_frames.npz and OUT/detection.json (settings, speed, and the "
                    "MediaEval scores when <id>.xml ground truth lies beside the video or in the store).")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder, checkpoint (.pt) or export (.onnx/.ts/.json)")
    parser.add_argument("videos", nargs="*", metavar="VIDEO", help="video files or folders of videos")
    parser.add_argument("--store", default=None, help="a prepared store to read the videos from instead of VIDEOs")
    parser.add_argument("--split", default=None, help="only this split of --store")
    parser.add_argument("--out", required=True, help="output folder")
    _add_inference_options(parser)
    parser.add_argument("--stride", type=int, default=None,
                        help="frames between windows (default: a quarter of the window; 1 is slowest and finest)")
    parser.add_argument("--smoothing", default="gaussian", choices=("none", "vote", "mean", "gaussian"),
                        help="per-frame smoothing (default: gaussian)")
    parser.add_argument("--smooth-width", type=int, default=None,
                        help="smoothing window in frames (default: the network's window)")
    parser.add_argument("--threshold", type=float, default=0.5, help="stroke probability threshold (default: 0.5)")
    parser.add_argument("--min-length", type=int, default=None,
                        help="drop segments shorter than this many frames (default: half the window)")
    parser.add_argument("--max-gap", type=int, default=0, help="fill gaps shorter than this between segments")
    parser.set_defaults(func=_run_detect)


def _run_detect(args: argparse.Namespace) -> int:
    from tstcnn.infer.detect import DetectOptions, detect_store, detect_videos
    from tstcnn.infer.predict import load_predictor
    from tstcnn.prep.store import Store

    _inputs_given(args)
    run = load_predictor(args.run_dir, args.which, args.device, args.precision, args.compile)
    options = DetectOptions(args.stride, args.batch_size, args.smoothing, args.smooth_width, args.threshold,
                            args.min_length, args.max_gap)
    if args.store:
        detections, summary = detect_store(run, Store(args.store), args.out, options, args.split,
                                           progress=not args.quiet)
    else:
        detections, summary = detect_videos(run, args.videos, args.out, options, args.work_dir,
                                            progress=not args.quiet)
    _skipped("detect", summary["problems"])
    if not detections:
        raise UsageError(f"no video could be processed; see {Path(args.out) / 'detection.json'}")
    strokes = sum(len(d.actions) for d in detections)
    speed = summary.get("frames_per_second")
    print(f"{len(detections)} videos, {strokes} strokes found" + (f", {speed:.1f} frames/s" if speed else "") +
          f"; wrote {args.out}")
    if "scores" in summary:
        scores = summary["scores"]
        print(f"against the ground truth of {len(scores['videos'])} videos: frame IoU {scores['frame_iou']:.3f}, "
              f"mAP (2021, max-left) {scores['map_2021']:.3f}, mAP (2022, mean P×R) {scores['map_2022']:.3f}")
    return 0


def _frame_counts(folder: Path, ids: Sequence[str]) -> dict[str, int]:
    """Decoded frame counts of ``<id>.<video ext>`` files in ``folder`` (videos not found are left out)."""
    from tstcnn.io.layouts import VIDEO_EXTENSIONS
    from tstcnn.io.video import count_frames

    counts = {}
    for video_id in ids:
        found = [p for p in folder.glob(f"{video_id}.*") if p.suffix.lower() in VIDEO_EXTENSIONS]
        if found:
            counts[video_id] = count_frames(found[0])
    return counts


@command
def _score_detection(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score-detection", help="MediaEval detection metrics: frame IoU and both mAP definitions",
        description="Score a detection run (one <id>.xml per video) against ground truth (the same layout): "
                    "frame-level IoU over the whole set, and per IoU threshold 0.50:0.05:0.95 the precision and "
                    "recall of one-to-one stroke matches, summarised as mAP 2021 (the 2021 scorer: max-left "
                    "precision over recall) and mAP 2022 (the 2022 scorer: mean of precision x recall). A "
                    "submission that does not match (missing video, unknown class, stroke outside the video) is "
                    "refused with the video named.")
    parser.add_argument("pred_dir", metavar="PRED_DIR", help="folder of predicted <id>.xml")
    parser.add_argument("gt_dir", metavar="GT_DIR", help="folder of ground-truth <id>.xml")
    parser.add_argument("--videos", default=None,
                        help="folder of the <id>.mp4 videos, to check strokes end inside them (default: GT_DIR)")
    parser.add_argument("--classes", default=None, help="class names file (default: TTStroke-21)")
    parser.add_argument("--out", default=None, help="also write the scores as JSON here")
    parser.set_defaults(func=_run_score_detection)


def _run_score_detection(args: argparse.Namespace) -> int:
    import json

    from tstcnn.infer.scoring import read_detection_dir, score_detection
    from tstcnn.io.atomic import atomic_write_text
    from tstcnn.taxonomy import load_taxonomy

    truth = read_detection_dir(args.gt_dir)
    if not truth:
        raise UsageError(f"{args.gt_dir}: no ground-truth <id>.xml files")
    predictions = read_detection_dir(args.pred_dir)
    frames = _frame_counts(Path(args.videos or args.gt_dir), sorted(truth))
    scores = score_detection(predictions, truth, frames, load_taxonomy(args.classes).classes)
    print(f"{len(truth)} videos, {scores.num_predicted} predicted vs {scores.num_true} true strokes"
          + ("" if len(frames) == len(truth) else f" ({len(truth) - len(frames)} videos not found: "
             "stroke ends checked against nothing)"))
    print(f"frame IoU over the set: {scores.frame_iou:.4f}")
    print(f"{'IoU':>6}{'precision':>11}{'recall':>8}{'TP':>6}{'FP':>6}{'FN':>6}")
    for row in zip(scores.thresholds, scores.precision, scores.recall, scores.true_positives,
                   scores.false_positives, scores.false_negatives):
        print(f"{row[0]:>6.2f}{row[1]:>11.4f}{row[2]:>8.4f}{row[3]:>6}{row[4]:>6}{row[5]:>6}")
    print(f"mAP 2021 (max-left precision over recall, IoU .50:.05:.95): {scores.map_2021:.4f}")
    print(f"mAP 2022 (mean of precision x recall, IoU .50:.05:.95): {scores.map_2022:.4f}")
    if args.out:
        atomic_write_text(args.out, json.dumps(scores.to_dict(), indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


@command
def _score_classification(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score-classification", help="accuracy and confusion matrices of a classification submission",
        description="Score a MediaEval classification submission (<videos><video name class/>) against ground "
                    "truth: a submission-style XML, or a <Class>/<video> folder layout. Prints the accuracy (and by "
                    "stroke type, hand, type+hand) and writes the report and the confusion matrices (PNG, rows "
                    "normalised, and CSV counts). "
                    "Videos are matched by name without extension; mismatches are refused with the video named.")
    parser.add_argument("submission", metavar="SUBMISSION", help="the submission XML")
    parser.add_argument("gt", metavar="GT", help="ground-truth XML or <Class>/<video> folder")
    parser.add_argument("--classes", default=None, help="class names file (default: TTStroke-21)")
    parser.add_argument("--out", default=None, help="folder for scores.json and confusion_*.png (default: none)")
    parser.set_defaults(func=_run_score_classification)


def _run_score_classification(args: argparse.Namespace) -> int:
    import json

    from tstcnn.infer.scoring import read_classification_truth, score_classification
    from tstcnn.io.atomic import atomic_write_text
    from tstcnn.io.mediaeval import read_submission
    from tstcnn.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(args.classes)
    report = score_classification(read_submission(args.submission), read_classification_truth(args.gt), taxonomy)
    print(f"{report['num_videos']} videos, accuracy {report['accuracy']:.4f}")
    for grouping, values in report.get("groupings", {}).items():
        print(f"  by {grouping}: accuracy {values['accuracy']:.4f}")
    if args.out:
        from tstcnn.engine.evaluate import write_confusions

        out = Path(args.out)
        atomic_write_text(out / "scores.json", json.dumps(report, indent=1) + "\n")
        write_confusions(report, out)
        print(f"wrote {out / 'scores.json'} and the confusion matrices (PNG and CSV)")
    return 0


@command
def _visualize(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "visualize", help="attention maps of a run over a clip (paper Fig. 5) and mask statistics",
        description="Run the first CLIP through the model and overlay the soft mask of each attention block of "
                    "each branch (min-max normalised, resized to the input) on its frames: OUT/attention_grid.png "
                    "for the chosen time steps and OUT/attention.gif over the clip. The range and mean of the raw "
                    "mask values per block over all CLIPs go to OUT/mask_statistics.json.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder or checkpoint (.pt)")
    parser.add_argument("clips", nargs="+", metavar="CLIP",
                        help="video files (prepared with the run's settings), or video ids of --store")
    parser.add_argument("--store", default=None, help="read CLIPs as video ids from this prepared store")
    parser.add_argument("--stats-split", default=None,
                        help="with --store: also gather the mask statistics over every clip of this split")
    parser.add_argument("--out", default=None, help="output folder (default: RUN_DIR/attention)")
    parser.add_argument("--time-steps", default=None, metavar="T,T,…",
                        help="frames of the window shown in the grid (default: five evenly spaced)")
    parser.add_argument("--no-gif", action="store_true", help="skip the animated GIF")
    parser.add_argument("--which", default="best", choices=("best", "last"), help="checkpoint (default: best)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--work-dir", default=None, help="where raw videos are prepared (default: the system temp)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_run_visualize)


def _run_visualize(args: argparse.Namespace) -> int:
    from tstcnn.runtime.checkpoint import load_run
    from tstcnn.infer.attention import visualize_attention
    from tstcnn.infer.predict import prepared_store, source_items
    from tstcnn.prep.store import Store

    try:
        steps = [int(t) for t in args.time_steps.split(",")] if args.time_steps else None
    except ValueError:
        raise UsageError(f"--time-steps takes frame numbers like 0,25,50, got {args.time_steps!r}") from None
    run = load_run(args.run_dir, args.which, args.device)
    out = Path(args.out) if args.out else (Path(args.run_dir) if Path(args.run_dir).is_dir()
                                           else Path(args.run_dir).parent) / "attention"
    if args.store:
        store = Store(args.store)
        extra = [e.id for e in store.videos(args.stats_split) if e.id not in args.clips] if args.stats_split else []
        paths = visualize_attention(run, store, [*args.clips, *extra], out, steps, gif=not args.no_gif,
                                    progress=not args.quiet)
    elif args.stats_split:
        raise UsageError("--stats-split needs --store")
    else:
        items, problems = source_items(args.clips)
        with prepared_store(items, run, args.work_dir, progress=not args.quiet) as (store, more):
            _skipped("visualize", problems + more)
            if store is None:
                raise UsageError("no clip could be prepared")
            ids = [i.id for i in items if i.id in {e.id for e in store.videos()}]
            paths = visualize_attention(run, store, ids, out, steps, gif=not args.no_gif, progress=not args.quiet)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


@command
def _export(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a run's model to ONNX or TorchScript, with its input spec",
        description="Write the model (positional inputs rgb then flow, each (batch, C, T, H, W) float32; output "
                    "logits) and OUT.json beside it (input names, shapes, ranges, class names, flow scale, "
                    "preparation settings). The export is checked against PyTorch on random inputs (probabilities, "
                    "and logits relative to their scale, within --tolerance). `tstcnn predict OUT ...` runs it.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder or checkpoint (.pt)")
    parser.add_argument("--format", default="onnx", choices=("onnx", "torchscript"), help="default: onnx")
    parser.add_argument("--out", default=None, help="output file (default: RUN_DIR/export/model.onnx or model.ts)")
    parser.add_argument("--which", default="best", choices=("best", "last"), help="checkpoint (default: best)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest accepted difference (default: 1e-4)")
    parser.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from tstcnn.infer.export import export_run

    run_dir = Path(args.run_dir)
    suffix = ".onnx" if args.format == "onnx" else ".ts"
    out = args.out or (run_dir if run_dir.is_dir() else run_dir.parent) / "export" / f"model{suffix}"
    model, spec, parity = export_run(run_dir, out, args.format, args.which, args.tolerance)
    print(f"wrote {model} and {spec}; largest difference to PyTorch: probabilities {parity['probabilities']:.2g}, "
          f"logits {parity['logits_absolute']:.2g} at scale {parity['logits_scale']:.3g}")
    return 0


@command
def _synth(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth", help="generate synthetic table tennis videos (20 strokes + negatives) in the MediaEval layouts",
        description="Render procedural table tennis clips whose 21 classes differ only by motion, into "
                    "OUT/classificationTask (train/validation per class, test + test_ground_truth.xml) and/or "
                    "OUT/detectionTask (long videos with per-video XML). Deterministic for a seed whatever the "
                    "worker count; re-running with the same arguments completes an interrupted set. With "
                    "--preview and no --out, only write a contact sheet (one clip per class).")
    parser.add_argument("--out", default=None, help="output folder (empty, or holding the same dataset to resume)")
    parser.add_argument("--layout", choices=("classification", "detection", "both"), default="classification",
                        help="which MediaEval layout(s) to write (default: classification)")
    parser.add_argument("--per-class", type=int, default=40, metavar="N",
                        help="train clips per class; validation and test get N/4, at least 1 (default: 40)")
    parser.add_argument("--classes", default=None, metavar="NAME,...",
                        help="comma-separated class names (default: the 21 TTStroke-21 classes)")
    parser.add_argument("--size", type=parse_size, default=(640, 360), metavar="WxH",
                        help="frame size, even numbers (default: 640x360)")
    parser.add_argument("--fps", type=float, default=120.0, help="frame rate (default: 120, like TTStroke-21)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    parser.add_argument("--workers", type=int, default=1, help="parallel rendering processes (default: 1)")
    parser.add_argument("--left-handed", type=float, default=0.15, metavar="P",
                        help="share of left-handed players (default: 0.15)")
    parser.add_argument("--preview", default=None, metavar="OUT.png",
                        help="also write a contact sheet: one clip per class, six frames across its stroke")
    parser.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from tstcnn.synth import generate_dataset, write_preview
    from tstcnn.taxonomy import TTSTROKE21_CLASSES

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
                                   args.workers, args.left_handed)
        print(f"wrote {summary.written} videos ({summary.frames} frames), kept {summary.skipped} already complete, "
              f"in {summary.out}")
    if args.preview is not None:
        print(f"wrote {write_preview(args.preview, classes, args.seed)}")
    return 0


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    """Flags shared by ``train`` and ``study``; each sets the config field of the same name (unset: the preset's)."""
    parser.add_argument("--config", default="paper", metavar="NAME|YAML",
                        help="preset (paper, cpu-small) or YAML config file (default: paper)")
    parser.add_argument("--store", required=True, help="prepared store (tstcnn prepare --out)")
    model = parser.add_argument_group("model (config section model)")
    model.add_argument("--input-size", type=parse_size, metavar="TxHxW", help="clip size (paper: 100x120x120)")
    model.add_argument("--channels", type=parse_size, metavar="AxBxC", help="filters of the 3 stages (30x60x80)")
    model.add_argument("--num-features", type=int, help="width of each branch's FC layer (paper: 500)")
    model.add_argument("--drop-rate", type=float, help="dropout before the classifier")
    train = parser.add_argument_group("training (config section train)")
    train.add_argument("--epochs", type=int, help="epochs (paper: 500 for Table II, ~1000-1500 for Table III)")
    train.add_argument("--batch-size", type=int, help="clips per step and per process (paper: 10, Twin 5)")
    train.add_argument("--lr", type=float, help="initial learning rate (paper: 0.01)")
    train.add_argument("--momentum", type=float, help="SGD momentum (authors' code: 0.5)")
    train.add_argument("--weight-decay", type=float, help="SGD weight decay (authors' code: 0.005)")
    train.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None, help="Nesterov momentum")
    train.add_argument("--clip-grad-norm", type=float, help="clip the gradient norm to this (0: off, the paper)")
    train.add_argument("--label-smoothing", type=float,
                       help="label smoothing of the training loss (0: plain cross-entropy, the paper)")
    train.add_argument("--scheduler", choices=("paper", "cosine", "step", "constant"),
                       help="learning-rate schedule; paper = the loss-plateau re-scheduler of section IV-C")
    train.add_argument("--recent-window", type=int, help="re-scheduler: epochs of the recent loss mean (25)")
    train.add_argument("--previous-window", type=int, help="re-scheduler: epochs of the earlier loss mean (35)")
    train.add_argument("--patience", type=int, help="re-scheduler: epochs between two changes (50)")
    train.add_argument("--lr-factor", type=float, help="re-scheduler and step: factor of a change (0.1)")
    train.add_argument("--lr-min", type=float, help="re-scheduler: below this the rate goes back to --lr (1e-5)")
    train.add_argument("--accuracy-drop", type=float,
                       help="re-scheduler: validation accuracy below this x best changes the rate at once (0.7)")
    train.add_argument("--step-size", type=int, help="scheduler step: epochs between divisions")
    train.add_argument("--precision", choices=PRECISIONS,
                       help="autocast precision; auto: bf16 where the CPU or GPU has bf16 units, else fp32")
    train.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                       help="channels-last 3D memory format")
    train.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model")
    train.add_argument("--checkpoint-attention", action=argparse.BooleanOptionalAction, default=None,
                       help="recompute attention blocks in the backward pass (less memory)")
    train.add_argument("--step-in-backward", action=argparse.BooleanOptionalAction, default=None,
                       help="SGD step of the large FC weights during the backward pass, freeing their gradients at "
                            "once (less memory; not with --clip-grad-norm, fp16 or several processes)")
    train.add_argument("--seed", type=int, help="seed of initialisation, shuffling and augmentation")
    parser.add_argument("--num-workers", type=int, help="data-loader worker processes (data.num_workers)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _training_config(args: argparse.Namespace) -> Config:
    from tstcnn.config import load_config, override

    cfg = load_config(args.config)
    cfg = override(cfg, "model", input_size=args.input_size, channels=args.channels, num_features=args.num_features,
                   drop_rate=args.drop_rate, **{k: getattr(args, k, None) for k in ("modality", "block",
                                                                                      "num_blocks")})
    cfg = override(cfg, "data", num_workers=args.num_workers)
    fields = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "clip_grad_norm", "label_smoothing",
              "nesterov", "scheduler", "recent_window", "previous_window", "patience", "lr_factor", "lr_min",
              "accuracy_drop", "step_size", "precision", "channels_last", "compile", "checkpoint_attention",
              "step_in_backward", "seed")
    return override(cfg, "train", **{k: getattr(args, k) for k in fields})


@command
def _train(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model on a prepared store, the paper's way",
        description="Train RGB, Flow, Twin (with or without attention) or an I3D stream with SGD + Nesterov and "
                    "the paper's learning-rate re-scheduler. RUN_DIR gets config.yaml, checkpoints/{best,last}.pt, "
                    "metrics.jsonl, curves.png and tensorboard/. A killed run continues with --resume. For several "
                    "GPUs or machines launch it with torchrun (see the README); --batch-size is per process.")
    _add_training_options(parser)
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder to create (or resume)")
    parser.add_argument("--resume", action="store_true", help="continue RUN_DIR from checkpoints/last.pt")
    parser.add_argument("--modality", choices=("rgb", "flow", "twin", "i3d-rgb", "i3d-flow"),
                        help="input streams (model.modality)")
    parser.add_argument("--block", choices=("none", "residual", "attention"), help="block after each stage")
    parser.add_argument("--num-blocks", type=int, help="stages with a block, from the first (0-3)")
    parser.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from tstcnn.engine.trainer import read_metrics, train

    run_dir = train(_training_config(args), args.store, args.out, resume=args.resume, device=args.device,
                    progress=not args.quiet)
    if os.environ.get("RANK", "0") == "0":
        rows = read_metrics(run_dir / "metrics.jsonl")
        best = max(rows, key=lambda r: r["val_accuracy"], default=None)
        if best is not None:
            print(f"best validation accuracy {best['val_accuracy']:.1%} at epoch {best['epoch']}; "
                  f"checkpoints in {run_dir / 'checkpoints'}; next: tstcnn evaluate {run_dir}")
    return 0


@command
def _evaluate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score a trained run on train / validation / test",
        description="Classify the centred clips of each split with the run's best checkpoint and write "
                    "RUN_DIR/results.json (accuracy per split as fractions, per-class precision/recall/F1, "
                    "confusion matrices), confusion_<split>[_<grouping>].png/.csv (21 classes; by type, hand, "
                    "type+hand) and summary.md.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a tstcnn train run folder")
    parser.add_argument("--split", action="append", choices=("train", "validation", "test"), dest="splits",
                        help="split to score; repeat for several (default: all three)")
    parser.add_argument("--store", default=None, help="prepared store (default: the one in RUN_DIR/store.json)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which state (default: best)")
    parser.add_argument("--batch-size", type=int, help="clips per batch (default: the run's train.batch_size)")
    parser.add_argument("--num-workers", type=int, help="data-loader workers (default: the run's data.num_workers)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from tstcnn.engine.evaluate import SPLITS, evaluate

    results = evaluate(args.run_dir, args.splits or SPLITS, store=args.store, which=args.checkpoint,
                       device=args.device, batch_size=args.batch_size, num_workers=args.num_workers,
                       progress=not args.quiet)
    for split, report in results["splits"].items():
        print(f"{split:<11} {report['accuracy']:7.1%}  ({report['num_samples']} clips)")
    print(f"wrote {os.path.join(args.run_dir, 'results.json')} and summary.md, confusion_*.png/csv")
    return 0


@command
def _study(subparsers: argparse._SubParsersAction) -> None:
    from tstcnn.engine.study import FUSION, STUDY_MODELS

    names = [e.name for e in (*STUDY_MODELS, FUSION)]
    parser = subparsers.add_parser(
        "study", help="train and score the paper's model grid (Tables II/III, Figure 6)",
        description="Train RGB, Flow and Twin, each without and with attention, and the I3D RGB and Flow streams "
                    "(scored alone and by late fusion) with the same settings; write OUT/study.md and study.csv "
                    "(train/validation/test accuracy, epochs to 90% of the best validation accuracy) and "
                    "OUT/fig6_validation_accuracy.png. Re-running continues an interrupted study.")
    _add_training_options(parser)
    parser.add_argument("--out", required=True, metavar="OUT", help="study folder, one run folder per model")
    parser.add_argument("--models", nargs="+", choices=names, metavar="NAME",
                        help=f"subset of the grid (default: all): {', '.join(names)}")
    parser.set_defaults(func=_run_study)


def _run_study(args: argparse.Namespace) -> int:
    from tstcnn.engine.study import run_study, study_table

    rows = run_study(_training_config(args), args.store, args.out, models=args.models, device=args.device,
                     progress=not args.quiet)
    print(study_table(rows)[0], end="")
    print(f"wrote {os.path.join(args.out, 'study.md')}, study.csv and fig6_validation_accuracy.png")
    return 0


@command
def _bench(subparsers: argparse._SubParsersAction) -> None:
    from tstcnn.bench import build_parser as add_bench_arguments

    parser = subparsers.add_parser(
        "bench", help="training-step and inference speed and memory against the plain fp32 reference",
        description="Time training steps and inference passes of each speed configuration (fp32, bf16, "
                    "channels-last, attention checkpointing, torch.compile) against the plain fp32 reference, each "
                    "case in a fresh process: samples/s, s/sample, peak memory, GFLOP/s and share of the measured "
                    "matmul peak. Prints a table then one JSON line. The paper setting is --size 100x120x120 "
                    "--batch-size 2 --threads 2 (minutes, ~7 GB); --size 16x64x64 is a quick check.")
    add_bench_arguments(parser)
    parser.set_defaults(func=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from tstcnn.bench import run_from_args

    return run_from_args(args)


@command
def _demo(subparsers: argparse._SubParsersAction) -> None:
    from tstcnn.demo import DemoSettings

    defaults = DemoSettings()
    parser = subparsers.add_parser(
        "demo", help="the whole pipeline on a small synthetic benchmark (minutes on a CPU)",
        description="Generate a synthetic table tennis benchmark (21 classes, the benchmark's default nuisance), "
                    "prepare it, train the Twin with attention (cpu-small preset), evaluate every split, write "
                    "the MediaEval submission for the test clips, the attention maps and the HTML report, and "
                    "print where everything is. DIR is a run folder: the other commands take it. Re-running "
                    "the same command resumes an interrupted demo.")
    parser.add_argument("--out", default="runs/demo", metavar="DIR", help="output folder (default: runs/demo)")
    parser.add_argument("--per-class", type=int, default=defaults.per_class, metavar="N",
                        help=f"train clips per class; validation and test get N/4 (default: {defaults.per_class})")
    parser.add_argument("--size", type=parse_size, default=defaults.size, metavar="WxH",
                        help=f"frame size of the generated videos (default: {defaults.size[0]}x{defaults.size[1]})")
    parser.add_argument("--fps", type=float, default=defaults.fps, help="frame rate (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs,
                        help="training epochs (train.epochs; default: %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="data and training seed (default: 0)")
    parser.add_argument("--workers", type=int, default=defaults.workers,
                        help="processes generating and preparing videos (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from tstcnn.demo import DemoSettings, run_demo, summary_lines

    if len(args.size) != 2:
        raise UsageError(f"--size needs two values WxH, got {'x'.join(map(str, args.size))}")
    if args.per_class < 4 or args.workers < 1 or args.epochs < 1:
        raise UsageError("--per-class must be at least 4 (so every split has clips), --workers and --epochs "
                         "at least 1")
    settings = DemoSettings(per_class=args.per_class, size=tuple(args.size), fps=args.fps, seed=args.seed,
                            workers=args.workers, epochs=args.epochs)
    results = run_demo(args.out, settings, progress=not args.quiet)
    for line in summary_lines(results, args.out):
        print(line)
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
