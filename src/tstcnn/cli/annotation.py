"""Annotation commands: ``annotate`` (the local web page over a project folder) and ``annotations`` (import,
export and agreement of a project's strokes from the command line)."""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import shutil
from pathlib import Path

from tstcnn.annotate.agreement import MIN_IOU, agreement, by_annotator, consensus
from tstcnn.annotate.assist import propose
from tstcnn.annotate.database import DATABASE, Project
from tstcnn.annotate.exchange import (
    EXPORT_LAYOUTS,
    ImportProblems,
    consensus_json,
    export,
    human_annotators,
    import_analysis,
    import_xml,
)
from tstcnn.annotate.proxy import playable
from tstcnn.annotate.server import is_loopback, serve
from tstcnn.cli.command import Command, UsageError
from tstcnn.cli.options import (
    add_checkpoint_option,
    add_device_option,
    add_log_options,
    integer,
    number,
    show_progress,
)
from tstcnn.infer.detect import DetectOptions
from tstcnn.infer.predict import load_predictor
from tstcnn.io.atomic import atomic_write_text
from tstcnn.io.layouts import VIDEO_EXTENSIONS
from tstcnn.io.video import VideoError
from tstcnn.taxonomy import load_taxonomy

__all__ = ["COMMANDS", "ANNOTATE", "ANNOTATIONS"]

logger = logging.getLogger(__name__)


def _names(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


def _annotations_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True,
                                    help="import, export or agreement (see tstcnn annotations ACTION --help)")
    imp = actions.add_parser("import", help="import MediaEval detection XMLs as one annotator's strokes",
                             description="Import MediaEval detection XMLs (<video><action begin end move/></video>, "
                                         "end exclusive) as one annotator's strokes. X.xml annotates the project's "
                                         "video X.*, or the video X.* beside it, which is added. All files or, on "
                                         "any problem, none go in.")
    imp.add_argument("project", metavar="PROJECT_DIR", help="annotation project folder (created if missing)")
    imp.add_argument("xml_dir", metavar="XML_DIR", help="folder of <video>.xml files (split folders are searched)")
    imp.add_argument("--annotator", required=True, metavar="NAME", help="whose annotations these are")
    imp.add_argument("--link", action="store_true", help="link the videos added instead of copying them")
    imp.add_argument("--classes", default=None, metavar="FILE",
                     help="class list (one per line) of a project created here (default: TTStroke-21)")
    exp = actions.add_parser("export", help="write one annotator's strokes or the consensus as a MediaEval layout",
                             description="Write one annotator's strokes, or the consensus of several, as detection "
                                         "XMLs (OUT/<video>.xml) or as a classification layout of trimmed clips "
                                         "(OUT/train/<Class>/<video>_<begin>-<end>.mp4) that tstcnn prepare reads.")
    exp.add_argument("project", metavar="PROJECT_DIR", help="annotation project folder")
    exp.add_argument("--out", required=True, metavar="DIR", help="new or empty folder, or an earlier export")
    who = exp.add_mutually_exclusive_group()
    who.add_argument("--annotator", default=None, metavar="NAME",
                     help="whose strokes (default: the project's only annotator)")
    who.add_argument("--consensus", action="store_true",
                     help="the consensus of the annotators (also written as OUT/consensus.json)")
    exp.add_argument("--layout", choices=EXPORT_LAYOUTS, default="mediaeval-detection",
                     help="what to write (default: mediaeval-detection)")
    exp.add_argument("--with-videos", action="store_true",
                     help="detection: write OUT/train/<video>.xml with each video beside it (hard-linked, else "
                          "copied), which tstcnn prepare --layout mediaeval-detection reads")
    agr = actions.add_parser("agreement", help="agreement between annotators, and their consensus",
                             description="Agreement per pair of annotators and overall: strokes matched at temporal "
                                         "IoU >= 0.5, boundary differences in frames, Cohen's kappa of the classes "
                                         "(also by type and hand). Writes the consensus to PROJECT/consensus.json, "
                                         "or beside --out.")
    agr.add_argument("project", metavar="PROJECT_DIR", help="annotation project folder")
    agr.add_argument("--out", default=None, metavar="FILE.json", help="also write the figures as JSON")
    for sub in (exp, agr):
        sub.add_argument("--annotators", default=None, metavar="NAME,...",
                         help="annotators to compare or to draw the consensus from (default: all but the model)")
        sub.add_argument("--min-iou", type=number(gt=0, le=1), default=MIN_IOU, metavar="X",
                         help=f"temporal IoU at which two strokes match (default: {MIN_IOU})")
    for sub in (imp, exp, agr):
        add_log_options(sub)


def _open(path: str) -> Project:
    return Project.open(path)


def _import(args: argparse.Namespace) -> int:
    root = Path(args.project)
    created = not root.exists()
    if (root / DATABASE).exists():
        if args.classes:
            raise UsageError(f"{root} is a project already; --classes only applies to a new one")
        project = Project.open(root)
    else:
        project = Project.create(root, load_taxonomy(args.classes).classes if args.classes else None)
    try:
        with project:
            summary = import_xml(project, args.xml_dir, args.annotator, link=args.link)
    except BaseException as exc:
        for problem in exc.problems[1:] if isinstance(exc, ImportProblems) else ():
            logger.warning("also: %s", problem)
        if created:  # the folder is this command's own: a refused import leaves no empty project behind
            shutil.rmtree(root, ignore_errors=True)
        raise
    print(f"imported {summary.total} strokes of {summary.annotator} on {len(summary.strokes)} videos "
          f"({len(summary.videos_added)} added to the project)")
    return 0


def _export(args: argparse.Namespace) -> int:
    if args.annotators and not args.consensus:
        raise UsageError("--annotators chooses whom a --consensus is drawn from; give --consensus too")
    with _open(args.project) as project:
        summary = export(project, args.out, args.annotator, args.consensus, args.layout,
                         annotators=_names(args.annotators), min_iou=args.min_iou, with_videos=args.with_videos)
    ties = f", {summary.ties} flagged for review (consensus.json)" if args.consensus else ""
    print(f"exported {summary.strokes} strokes of {summary.source} on {summary.videos} videos{ties} "
          f"({summary.layout}) to {summary.out}")
    return 0


def _figure(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _agreement_lines(result: dict) -> list[str]:
    lines = []
    rows = [(" vs ".join(p["annotators"]), p) for p in result["pairs"]]
    rows.append(("overall", result["overall"]))
    for name, p in rows:
        kappa = f"kappa {_figure(p['kappa'])}"
        if "kappa_type" in p:
            kappa += f" (type {_figure(p['kappa_type'])}, hand {_figure(p['kappa_hand'])})"
        lines.append(f"{name}: {p['matched']} matched, {p['only_first']} + {p['only_second']} unmatched, boundaries "
                     f"median {_figure(p['boundary_median_frames'], 1)} / p90 {_figure(p['boundary_p90_frames'], 1)}"
                     f" frames, {kappa}")
    return lines


def _agreement(args: argparse.Namespace) -> int:
    with _open(args.project) as project:
        names = _names(args.annotators) or human_annotators(project)
        unknown = sorted(set(names) - set(project.annotators()))
        if unknown:
            raise UsageError(f"no strokes by {unknown[0]!r} in the project; its annotators: "
                             f"{', '.join(project.annotators()) or 'none'}")
        if len(names) < 2:
            raise UsageError(f"agreement needs two annotators or more; the project has {', '.join(names) or 'none'}")
        grouped = by_annotator(project.strokes(), annotators=names)
        result = agreement(grouped, project.classes, min_iou=args.min_iou)
        strokes = consensus(grouped, project.classes, min_iou=args.min_iou)
        agreed = consensus_json(project, strokes, names, args.min_iou)
    for line in _agreement_lines(result):
        print(line)
    target = Path(args.out).parent / "consensus.json" if args.out else Path(args.project) / "consensus.json"
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
    atomic_write_text(target, json.dumps(agreed, indent=1) + "\n")
    print(f"consensus: {agreed['strokes']} strokes, {agreed['ties']} flagged for review; wrote {target}")
    return 0


_ACTIONS = {"import": _import, "export": _export, "agreement": _agreement}


def _annotations(args: argparse.Namespace) -> int:
    return _ACTIONS[args.action](args)


ANNOTATIONS = Command(
    "annotations", "import, export and compare a project's annotations (MediaEval XMLs, clips, agreement)",
    "Annotations of a project from the command line: import MediaEval detection XMLs, export one annotator's "
    "strokes or the consensus as a MediaEval layout, and measure the agreement between annotators.",
    _annotations_arguments, _annotations,
    usage="tstcnn annotations {import,export,agreement} PROJECT_DIR [...]")


def _annotate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", metavar="PROJECT_DIR", help="annotation project folder (created if missing)")
    parser.add_argument("videos", nargs="*", metavar="VIDEO", help="videos (or folders of videos) to add to it")
    parser.add_argument("--port", type=integer(ge=0, le=65535), default=8000, metavar="N",
                        help="TCP port of the page (default: 8000; 0: a free one)")
    parser.add_argument("--host", default="127.0.0.1", metavar="ADDRESS",
                        help="address to listen on (default: 127.0.0.1, this machine only; any other needs a token)")
    parser.add_argument("--token", default=None, metavar="TEXT",
                        help="access token every request must carry (default with a non-loopback --host: a random "
                             "one, printed in the page's URL)")
    parser.add_argument("--classes", default=None, metavar="FILE",
                        help="class list (one per line) of a project created here (default: TTStroke-21)")
    parser.add_argument("--link", action="store_true", help="link the videos added instead of copying them")
    parser.add_argument("--model", default=None, metavar="RUN_DIR",
                        help="pre-annotate the videos without proposals yet with this run (tstcnn detect), as the "
                             "annotator 'model'")
    add_checkpoint_option(parser)
    add_device_option(parser)
    parser.add_argument("--import-analysis", default=None, metavar="ANALYSIS_DIR",
                        help="import a tstcnn analyze output as the model's proposals, for review")
    parser.add_argument("--no-serve", action="store_true",
                        help="add videos, proposals and proxies, then exit without serving the page")


def _video_files(paths: list[str]) -> list[Path]:
    files = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
                           and not p.name.startswith("."))
            if not found:
                raise UsageError(f"{path}: no videos in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"{path}: no such video file or folder")
    return files


def _annotate(args: argparse.Namespace) -> int:
    root = Path(args.project)
    loopback = is_loopback(args.host)
    token = args.token or (None if loopback else secrets.token_urlsafe(24))
    if args.token is not None and len(args.token) < 12:
        raise UsageError("--token must be at least 12 characters long")
    if (root / DATABASE).exists():
        project = Project.open(root)
        if args.classes and project.classes != load_taxonomy(args.classes).classes:
            project.close()
            raise UsageError(f"{root} is a project with other classes; --classes only applies to a new one")
    else:
        project = Project.create(root, load_taxonomy(args.classes).classes if args.classes else None)
        print(f"created project {root}")
    problems = []
    with project:
        for path in _video_files(args.videos):
            try:
                video = project.add_video(path, link=args.link)
                print(f"video {video.name}: {video.frames} frames at {video.fps:g} fps")
            except (VideoError, ValueError, OSError) as exc:
                problems.append(str(exc))
                logger.warning("tstcnn annotate: skipped: %s", exc)
        if args.import_analysis:
            summary = import_analysis(project, args.import_analysis)
            print(f"imported {summary.total} proposals of {summary.annotator} from {args.import_analysis}")
        if args.model:
            run = load_predictor(args.model, args.checkpoint, args.device)
            added, more = propose(project, run, DetectOptions(), progress=show_progress(args))
            for problem in more:
                logger.warning("tstcnn annotate: no proposals: %s", problem)
            problems += more
            print(f"{added} proposals of the model {args.model}")
        for video in project.videos():
            try:
                media = playable(project, video)
                if media.proxy:
                    print(f"video {video.name}: plays as the proxy {media.path} ({media.fps:g} fps)")
            except (VideoError, OSError) as exc:
                problems.append(str(exc))
                logger.warning("tstcnn annotate: %s: no browser-playable version: %s", video.name, exc)
    if args.no_serve:
        return 1 if problems else 0
    serve(root, args.host, args.port, token,
          ready=lambda url: print(f"annotation page: {url}  (Ctrl+C stops it)", flush=True))
    return 0


ANNOTATE = Command(
    "annotate", "the local web page to mark strokes in videos, several annotators, model proposals",
    "Open (or create) an annotation project folder, add the VIDEOs given, and serve the annotation page on "
    "http://localhost:PORT/: watch a video frame by frame, mark each stroke's first and last frames and its class "
    "with the keyboard, see other annotators' strokes and where they disagree, review a model's proposals. Strokes "
    "are saved at once in PROJECT_DIR/project.sqlite. With --model, a trained run pre-annotates the videos first.",
    _annotate_arguments, _annotate)

COMMANDS: tuple[Command, ...] = (ANNOTATE, ANNOTATIONS)
