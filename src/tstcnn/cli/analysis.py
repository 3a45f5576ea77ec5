"""``tstcnn analyze``: a session's strokes for a coach (tables, clips, statistics, one page), after ``detect``.

A thin command over :func:`tstcnn.infer.analyze.analyze_videos`; the detection flags are ``detect``'s.
"""

from __future__ import annotations

import argparse
import logging

from tstcnn.cli.command import Command, UsageError
from tstcnn.cli.inference import RUN_HELP, add_detect_options, detect_options
from tstcnn.cli.options import integer, number, show_progress
from tstcnn.infer.analyze import AnalyzeOptions, analyze_videos
from tstcnn.infer.predict import load_predictor
from tstcnn.io.locks import folder_lock

__all__ = ["COMMANDS", "ANALYZE"]

logger = logging.getLogger(__name__)


def _analyze_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help=RUN_HELP)
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="session video files or folders of videos")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (open DIR/index.html)")
    parser.add_argument("--pad", type=number(ge=0), default=1.0, metavar="SECONDS",
                        help="video kept before and after each stroke in its clip (default: 1)")
    parser.add_argument("--no-clips", dest="clips", action="store_false", help="write no clips (faster)")
    parser.add_argument("--clip-width", type=integer(ge=16), default=640, metavar="PIXELS",
                        help="wider videos are scaled down to this width in the clips (default: 640)")
    parser.add_argument("--low-confidence", type=number(ge=0, le=1), default=0.5, metavar="P",
                        help="the page marks strokes below this confidence, to check first (default: 0.5)")
    add_detect_options(parser)


def _analyze(args: argparse.Namespace) -> int:
    progress = show_progress(args)
    with folder_lock(args.out, "tstcnn analyze"):
        run = load_predictor(args.run_dir, args.checkpoint, args.device, args.precision, args.compile,
                             args.frame_stride)
        options = AnalyzeOptions(args.pad, args.clips, args.clip_width, args.low_confidence)
        result = analyze_videos(run, args.videos, args.out, detect_options(args), options, args.work_dir,
                                progress=progress)
    for problem in result.problems:
        logger.warning("tstcnn analyze: skipped: %s", problem)
    if not result.videos:
        raise UsageError(f"no video could be analysed ({len(result.problems)} problems; the first: "
                         f"{result.problems[0] if result.problems else 'none'})")
    total = result.statistics["total"]
    parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.seconds.items())
    print(f"{len(result.videos)} videos, {result.strokes} strokes ({total['per_minute']:.1f} per minute, mean "
          f"confidence {total['mean_confidence']:.2f}); {parts}")
    print(f"open {result.out_dir / 'index.html'}")
    return 1 if result.problems else 0  # done, but some inputs were skipped


ANALYZE = Command(
    "analyze", "a session for a coach: strokes as CSV/JSON, a clip each, statistics, index.html",
    "Detect the strokes of each session video (as tstcnn detect does, streamed) and write, per video, "
    "OUT/videos/<id>/strokes.csv and strokes.json (index, begin_frame, end_frame, begin_s, end_s, duration_s, class, "
    "type, hand, confidence, top3; frames end-exclusive), the MediaEval XML and one labelled H.264 clip per stroke "
    "with --pad seconds around it; then the session's statistics (OUT/session.json, OUT/session.png) and "
    "OUT/index.html, which opens without a server. tstcnn annotate --import-analysis OUT takes the strokes for "
    "review. A video that cannot be decoded is named and skipped.",
    _analyze_arguments, _analyze)

COMMANDS = (ANALYZE,)
