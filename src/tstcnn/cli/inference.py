"""Inference commands, the third stage of the workflow: ``predict`` (trimmed clips), ``detect`` (strokes in long
videos), ``score-classification`` and ``score-detection`` (the MediaEval metrics), ``visualize`` (attention maps,
paper Fig. 5) and ``export`` (ONNX or TorchScript).

Every command that loads a run takes ``--checkpoint best|last``; those that run it take ``--device``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tstcnn.cli.command import Command, UsageError
from tstcnn.cli.options import add_checkpoint_option, add_device_option, integer, number, show_progress
from tstcnn.config import PRECISIONS
from tstcnn.engine.evaluate import write_confusions
from tstcnn.infer.aggregate import CLIP_AGGREGATIONS, FRAME_SMOOTHINGS
from tstcnn.infer.attention import visualize_attention
from tstcnn.infer.detect import DetectOptions, detect_store, detect_videos
from tstcnn.infer.export import EXPORT_FORMATS, export_run
from tstcnn.infer.predict import (
    PredictOptions,
    load_predictor,
    predict_store,
    predict_videos,
    prepared_store,
    source_items,
    write_predictions,
)
from tstcnn.infer.scoring import read_classification_truth, read_detection_dir, score_classification, score_detection
from tstcnn.io.atomic import atomic_write_text
from tstcnn.io.layouts import LAYOUTS, VIDEO_EXTENSIONS, SourceItem, read_layout
from tstcnn.io.locks import folder_lock
from tstcnn.io.mediaeval import read_submission
from tstcnn.io.video import count_frames
from tstcnn.prep.store import Store
from tstcnn.runtime.checkpoint import load_run
from tstcnn.taxonomy import load_taxonomy

__all__ = ["COMMANDS", "PREDICT", "DETECT", "SCORE_CLASSIFICATION", "SCORE_DETECTION", "VISUALIZE", "EXPORT",
           "add_detect_options", "detect_options"]

logger = logging.getLogger(__name__)

RUN_HELP = "run folder, checkpoint (.pt) or export (.onnx/.ts/.json)"


def _inference_options(parser: argparse.ArgumentParser) -> None:
    """The options of commands that run a network over videos: ``predict`` and ``detect``."""
    add_checkpoint_option(parser)
    add_device_option(parser)
    parser.add_argument("--batch-size", type=integer(ge=1), default=8, metavar="N",
                        help="windows per forward pass (default: 8)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="auto (default): bf16 + channels-last where the device has bf16 units, else fp32; fp32 is "
                             "the reference path")
    parser.add_argument("--frame-stride", type=integer(ge=1), default=None, metavar="K",
                        help="read every K-th frame instead of the run's own data.frame_stride (default: the run's); "
                             "window starts, strides and the frames written stay in source frames")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the network with frozen weights (at paper size on 2 CPU cores: 1-1.5 min "
                             "to compile, then ~12%% faster: for long videos)")
    parser.add_argument("--work-dir", default=None, metavar="DIR",
                        help="where raw videos are prepared (default: the system temp)")


def _skipped(command_name: str, problems: Sequence[str]) -> None:
    for problem in problems:
        logger.warning("tstcnn %s: skipped: %s", command_name, problem)


def _inputs_given(args: argparse.Namespace) -> None:
    given = [bool(args.videos), bool(getattr(args, "source", None)), bool(args.store)]
    if sum(given) != 1:
        raise UsageError("give VIDEOs, --source with --layout, or --store (exactly one)")


def _layout_items(args: argparse.Namespace, classes: Sequence[str]) -> tuple[list[SourceItem], list[str]]:
    if not args.layout:
        raise UsageError("--source needs --layout")
    scan = read_layout(args.layout, args.source, classes)
    items = [i for i in scan.items if args.split is None or i.split == args.split]
    if not items:
        raise UsageError(f"{args.source}: no videos{f' in split {args.split!r}' if args.split else ''}")
    return items, list(scan.problems)


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help=RUN_HELP)
    parser.add_argument("videos", nargs="*", metavar="VIDEO", help="video files or folders of videos")
    parser.add_argument("--source", default=None, metavar="DIR",
                        help="a dataset folder (or CSV) read with --layout instead of VIDEOs")
    parser.add_argument("--layout", default=None, choices=LAYOUTS, help="layout of --source")
    parser.add_argument("--store", default=None, help="a prepared store to read the clips from instead of VIDEOs")
    parser.add_argument("--split", default=None, help="only this split of --source or --store (e.g. test)")
    parser.add_argument("--out", default="predictions", metavar="DIR", help="output folder (default: ./predictions)")
    _inference_options(parser)
    parser.add_argument("--aggregation", default="mean", choices=CLIP_AGGREGATIONS,
                        help="test-time aggregation over the windows of a clip (default: mean)")
    parser.add_argument("--windows", type=integer(ge=1), default=5, metavar="N",
                        help="windows per clip longer than the input (default: 5)")
    parser.add_argument("--sigma", type=number(gt=0), default=None, metavar="FRAMES",
                        help="Gaussian aggregation: standard deviation in frames (default: a quarter of the span)")


def _writing_to_out(command: str, run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``run`` with its inputs checked and the lock of ``--out`` held: one writer per output folder."""
    def locked(args: argparse.Namespace) -> int:
        _inputs_given(args)
        with folder_lock(args.out, f"tstcnn {command}"):
            return run(args)

    return locked


def _predict(args: argparse.Namespace) -> int:
    progress = show_progress(args)
    run = load_predictor(args.run_dir, args.checkpoint, args.device, args.precision, args.compile,
                         args.frame_stride)
    options = PredictOptions(args.aggregation, args.windows, args.sigma, args.batch_size)
    if args.store:
        predictions, problems = predict_store(run, Store(args.store), options, args.split, progress=progress)
    elif args.source:
        items, problems = _layout_items(args, run.classes.classes)
        with prepared_store(items, run, args.work_dir, progress=progress) as (store, more):
            problems += more
            predictions, more = predict_store(run, store, options, progress=progress) if store else ([], [])
            problems += more
    else:
        predictions, problems = predict_videos(run, args.videos, options, args.work_dir, progress=progress)
    _skipped("predict", problems)
    if not predictions:
        raise UsageError(f"no clip could be classified ({len(problems)} problems; the first: "
                         f"{problems[0] if problems else 'none'})")
    xml, table = write_predictions(args.out, predictions, run.classes.classes)
    print(f"classified {len(predictions)} clips ({args.aggregation} of up to {args.windows} windows); "
          f"wrote {xml} and {table}")
    return 1 if problems else 0  # done, but some inputs were skipped


PREDICT = Command(
    "predict", "classify trimmed clips (MediaEval classification submission + CSV)",
    "Classify each trimmed clip with a trained run (or an export), from raw videos prepared on the fly with the "
    "run's own preparation settings and flow normalisation, from a dataset layout, or from a prepared store. A clip "
    "longer than the network's window is classified from several windows aggregated at test time. Writes "
    "OUT/submission.xml (<videos><video name class/>) and OUT/predictions.csv (the score of every class). Videos "
    "that fail are named and skipped.",
    _predict_arguments, _writing_to_out("predict", _predict))


def _detect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help=RUN_HELP)
    parser.add_argument("videos", nargs="*", metavar="VIDEO", help="video files or folders of videos")
    parser.add_argument("--store", default=None, help="a prepared store to read the videos from instead of VIDEOs")
    parser.add_argument("--split", default=None, help="only this split of --store")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_detect_options(parser)


def add_detect_options(parser: argparse.ArgumentParser) -> None:
    """The options of commands that detect strokes (``detect``, ``analyze``): running the network, the sliding
    window, smoothing and segmentation; :func:`detect_options` reads them."""
    _inference_options(parser)
    parser.add_argument("--stride", type=integer(ge=1), default=None, metavar="FRAMES",
                        help="source frames between windows (default: a quarter of the window's span; 1 is slowest "
                             "and finest)")
    parser.add_argument("--smoothing", default="gaussian", choices=FRAME_SMOOTHINGS,
                        help="per-frame smoothing (default: gaussian)")
    parser.add_argument("--smooth-width", type=integer(ge=1), default=None, metavar="FRAMES",
                        help="smoothing window in frames (default: the network's window)")
    parser.add_argument("--threshold", type=number(gt=0, lt=1), default=0.5, metavar="P",
                        help="stroke probability threshold (default: 0.5)")
    parser.add_argument("--min-length", type=integer(ge=0), default=None, metavar="FRAMES",
                        help="drop segments shorter than this many frames (default: half the window)")
    parser.add_argument("--max-gap", type=integer(ge=0), default=0, metavar="FRAMES",
                        help="fill gaps shorter than this between segments (default: 0)")


def detect_options(args: argparse.Namespace) -> DetectOptions:
    """The :class:`DetectOptions` of :func:`add_detect_options`' flags."""
    return DetectOptions(args.stride, args.batch_size, args.smoothing, args.smooth_width, args.threshold,
                         args.min_length, args.max_gap)


def _detect(args: argparse.Namespace) -> int:
    progress = show_progress(args)
    run = load_predictor(args.run_dir, args.checkpoint, args.device, args.precision, args.compile,
                         args.frame_stride)
    options = detect_options(args)
    if args.store:
        detections, summary = detect_store(run, Store(args.store), args.out, options, args.split, progress=progress)
    else:
        detections, summary = detect_videos(run, args.videos, args.out, options, args.work_dir, progress=progress)
    _skipped("detect", summary["problems"])
    if not detections:
        raise UsageError(f"no video could be processed; see {Path(args.out) / 'detection.json'}")
    strokes = sum(len(d.actions) for d in detections)
    speed = summary.get("frames_per_second")
    print(f"{len(detections)} videos, {strokes} strokes found" + (f", {speed:.1f} frames/s" if speed else "")
          + f"; wrote {args.out}")
    if "scores" in summary:
        scores = summary["scores"]
        print(f"against the ground truth of {len(scores['videos'])} videos: frame IoU {scores['frame_iou']:.3f}, "
              f"mAP (2021, max-left) {scores['map_2021']:.3f}, mAP (2022, mean P×R) {scores['map_2022']:.3f}")
    return 1 if summary["problems"] else 0  # done, but some inputs were skipped


DETECT = Command(
    "detect", "find and label strokes in long videos (MediaEval detection XML + timelines)",
    "Slide the network over each untrimmed video (batched, every --stride frames), smooth the per-frame class "
    "probabilities, cut stroke segments (1 - p(Negative) >= --threshold), give each its class and drop short ones. "
    "Writes OUT/<id>.xml (<video><action begin end move/>), OUT/<id>_timeline.png, OUT/<id>_frames.npz and "
    "OUT/detection.json (settings, speed, and the MediaEval scores when <id>.xml ground truth lies beside the video "
    "or in the store).",
    _detect_arguments, _writing_to_out("detect", _detect))


def _score_classification_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("submission", metavar="SUBMISSION", help="the submission XML")
    parser.add_argument("gt", metavar="GT", help="ground-truth XML or <Class>/<video> folder")
    parser.add_argument("--classes", default=None, metavar="FILE", help="class names file (default: TTStroke-21)")
    parser.add_argument("--match-stem", action="store_true",
                        help="match videos by name without extension (default: exact file names, as the organisers)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="folder for scores.json and confusion_*.png (default: none)")


def _score_classification(args: argparse.Namespace) -> int:
    taxonomy = load_taxonomy(args.classes)
    report = score_classification(read_submission(args.submission), read_classification_truth(args.gt), taxonomy,
                                  match_stem=args.match_stem)
    if args.match_stem:
        print("videos matched by name without extension (--match-stem); the organisers' scripts compare exact "
              "file names")
    print(f"{report['num_videos']} videos, accuracy {report['accuracy']:.4f}")
    for grouping, values in report.get("groupings", {}).items():
        print(f"  by {grouping}: accuracy {values['accuracy']:.4f}")
    if args.out:
        out = Path(args.out)
        atomic_write_text(out / "scores.json", json.dumps(report, indent=1) + "\n")
        write_confusions(report, out)
        print(f"wrote {out / 'scores.json'} and the confusion matrices (PNG and CSV)")
    return 0


SCORE_CLASSIFICATION = Command(
    "score-classification", "accuracy and confusion matrices of a classification submission",
    "Score a MediaEval classification submission (<videos><video name class/>) against ground truth: a "
    "submission-style XML, or a <Class>/<video> folder layout. Prints the accuracy (and by stroke type, hand, "
    "type+hand) and writes the report and the confusion matrices (PNG, rows normalised, and CSV counts). Videos are "
    "matched by exact file name, as the organisers' scripts match them (--match-stem: without extension); "
    "mismatches are refused with the video named.",
    _score_classification_arguments, _score_classification)


def _frame_counts(folder: Path, ids: Sequence[str]) -> dict[str, int]:
    """Decoded frame counts of ``<id>.<video ext>`` files in ``folder`` (videos not found are left out)."""
    counts = {}
    for video_id in ids:
        found = [p for p in folder.glob(f"{video_id}.*") if p.suffix.lower() in VIDEO_EXTENSIONS]
        if found:
            counts[video_id] = count_frames(found[0])
    return counts


def _score_detection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pred_dir", metavar="PRED_DIR", help="folder of predicted <id>.xml")
    parser.add_argument("gt_dir", metavar="GT_DIR", help="folder of ground-truth <id>.xml")
    parser.add_argument("--videos", default=None, metavar="DIR",
                        help="folder of the <id>.mp4 videos, to check strokes end inside them (default: GT_DIR)")
    parser.add_argument("--strict", action="store_true",
                        help="refuse two strokes of a video with IoU above 0.5, as the organisers' verification does "
                             "(default: a warning naming them)")
    parser.add_argument("--out", default=None, metavar="FILE.json", help="also write the scores as JSON here")


def _score_detection(args: argparse.Namespace) -> int:
    truth = read_detection_dir(args.gt_dir)
    if not truth:
        raise UsageError(f"{args.gt_dir}: no ground-truth <id>.xml files")
    predictions = read_detection_dir(args.pred_dir)
    frames = _frame_counts(Path(args.videos or args.gt_dir), sorted(truth))
    scores = score_detection(predictions, truth, frames, strict=args.strict)
    print(f"{len(truth)} videos, {scores.num_predicted} predicted vs {scores.num_true} true strokes"
          + ("" if len(frames) == len(truth) else f" ({len(truth) - len(frames)} videos not found: stroke ends "
             "checked against nothing)"))
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


SCORE_DETECTION = Command(
    "score-detection", "MediaEval detection metrics: frame IoU and both mAP definitions",
    "Score a detection run (one <id>.xml per video) against ground truth (the same layout): frame-level IoU over "
    "the whole set, and per IoU threshold 0.50:0.05:0.95 the precision and recall of one-to-one stroke matches, "
    "summarised as mAP 2021 (the 2021 scorer: max-left precision over recall) and mAP 2022 (the 2022 scorer: mean "
    "of precision x recall). A submission that does not match (missing video, stroke outside the video) is refused "
    "with the video named; the strokes' move is ignored, as the organisers ignore it. Two strokes of a video with IoU "
    "above 0.5 are named in a warning, or refused with --strict.",
    _score_detection_arguments, _score_detection)


def _time_steps(text: str) -> list[int]:
    """An argparse type: frame numbers ``0,25,50`` of the network's window."""
    try:
        steps = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected frame numbers like 0,25,50, got {text!r}") from None
    if min(steps) < 0:
        raise argparse.ArgumentTypeError(f"frame numbers must be at least 0, got {text!r}")
    return steps


def _visualize_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder or checkpoint (.pt)")
    parser.add_argument("clips", nargs="+", metavar="CLIP",
                        help="video files (prepared with the run's settings), or video ids of --store")
    parser.add_argument("--store", default=None, help="read CLIPs as video ids from this prepared store")
    parser.add_argument("--stats-split", default=None, metavar="SPLIT",
                        help="with --store: also gather the mask statistics over every clip of this split")
    parser.add_argument("--out", default=None, metavar="DIR", help="output folder (default: RUN_DIR/attention)")
    parser.add_argument("--time-steps", type=_time_steps, default=None, metavar="T,T,...",
                        help="frames of the window shown in the grid (default: five evenly spaced)")
    parser.add_argument("--no-gif", action="store_true", help="skip the animated GIF")
    add_checkpoint_option(parser)
    add_device_option(parser)
    parser.add_argument("--work-dir", default=None, metavar="DIR",
                        help="where raw videos are prepared (default: the system temp)")


def _run_folder(path: str) -> Path:
    """The run folder of a run folder or of a checkpoint file in it."""
    return Path(path) if Path(path).is_dir() else Path(path).parent


def _visualize(args: argparse.Namespace) -> int:
    progress = show_progress(args)
    run = load_run(args.run_dir, args.checkpoint, args.device)
    out = Path(args.out) if args.out else _run_folder(args.run_dir) / "attention"
    draw: dict[str, Any] = {"time_steps": args.time_steps, "gif": not args.no_gif, "progress": progress}
    if args.store:
        store = Store(args.store)
        extra = [e.id for e in store.videos(args.stats_split) if e.id not in args.clips] if args.stats_split else []
        paths = visualize_attention(run, store, [*args.clips, *extra], out, **draw)
    elif args.stats_split:
        raise UsageError("--stats-split needs --store")
    else:
        items, problems = source_items(args.clips)
        with prepared_store(items, run, args.work_dir, progress=progress) as (store, more):
            _skipped("visualize", problems + more)
            if store is None:
                raise UsageError("no clip could be prepared")
            ids = [i.id for i in items if i.id in {e.id for e in store.videos()}]
            paths = visualize_attention(run, store, ids, out, **draw)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


VISUALIZE = Command(
    "visualize", "attention maps of a run over a clip (paper Fig. 5) and mask statistics",
    "Run the first CLIP through the model and overlay the soft mask of each attention block of each branch "
    "(min-max normalised, resized to the input) on its frames: OUT/attention_grid.png for the chosen time steps and "
    "OUT/attention.gif over the clip. The range and mean of the raw mask values per block over all CLIPs go to "
    "OUT/mask_statistics.json.",
    _visualize_arguments, _visualize)


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder or checkpoint (.pt)")
    parser.add_argument("--format", default="onnx", choices=EXPORT_FORMATS, help="model file format (default: onnx)")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="output file (default: RUN_DIR/export/model.onnx or model.ts)")
    add_checkpoint_option(parser)
    parser.add_argument("--tolerance", type=number(gt=0), default=1e-4, metavar="X",
                        help="largest accepted difference to PyTorch (default: 1e-4)")


def _export(args: argparse.Namespace) -> int:
    suffix = ".onnx" if args.format == "onnx" else ".ts"
    out = args.out or _run_folder(args.run_dir) / "export" / f"model{suffix}"
    model, spec, parity = export_run(args.run_dir, out, args.format, args.checkpoint, args.tolerance)
    print(f"wrote {model} and {spec}; largest difference to PyTorch: probabilities {parity['probabilities']:.2g}, "
          f"logits {parity['logits_absolute']:.2g} at scale {parity['logits_scale']:.3g}")
    return 0


EXPORT = Command(
    "export", "export a run's model to ONNX or TorchScript, with its input spec",
    "Write the model (positional inputs rgb then flow, each (batch, C, T, H, W) float32; output logits) and "
    "OUT.json beside it (input names, shapes, ranges, class names, flow scale, preparation settings). The export is "
    "checked against PyTorch on random inputs on the CPU (probabilities, and logits relative to their scale, within "
    "--tolerance). `tstcnn predict OUT ...` runs it.",
    _export_arguments, _export)

COMMANDS = (PREDICT, DETECT, SCORE_CLASSIFICATION, SCORE_DETECTION, VISUALIZE, EXPORT)
