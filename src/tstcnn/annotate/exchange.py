"""Annotations in and out of a project: MediaEval detection XMLs, trimmed-clip layouts, ``tstcnn analyze`` results.

* :func:`import_xml` reads ``<video><action begin end move/></video>`` files (frames from 0, ``end`` exclusive),
  matches each to a project video by name (``X.xml`` annotates ``X.<ext>``) and adds a video lying beside its XML
  that the project lacks. Every file is checked before anything is written: an unknown class, frames past a
  video's end, a video that cannot be found or an annotator who already has strokes on a video stops the whole
  import with a one-line message naming the file, and nothing is imported (strokes go in in one transaction).
* :func:`export` writes one annotator's strokes, or the consensus of several (:mod:`~tstcnn.annotate.agreement`),
  as detection XMLs (``OUT/<video stem>.xml``, or ``OUT/train/`` with the videos beside) or as the
  ``mediaeval-classification`` layout of trimmed clips (``OUT/train/<Class>/<video stem>_<begin>-<end>.mp4``:
  frames ``begin..end-1`` of the original, H.264); ``tstcnn prepare`` reads the last two as they are. The folder
  is built beside ``OUT`` and swapped in, so a reader never sees half an export; ``OUT`` may be new, empty, or an
  earlier export (marked by its ``export.json``).
* :func:`import_analysis` takes the ``strokes.json`` files of ``tstcnn analyze`` as model proposals for review.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tstcnn.annotate.agreement import ConsensusStroke, by_annotator, consensus
from tstcnn.annotate.database import MODEL_ANNOTATOR, Project, Video, check_annotator
from tstcnn.io.atomic import atomic_folder, atomic_write_text
from tstcnn.io.ids import check_id
from tstcnn.io.layouts import VIDEO_EXTENSIONS
from tstcnn.io.mediaeval import Action, AnnotationError, read_actions, write_actions
from tstcnn.io.video import VideoError, VideoWriter, count_frames, iter_decoded

__all__ = ["EXPORT_LAYOUTS", "EXPORT_MARKER", "ImportSummary", "ExportSummary", "ImportProblems", "import_xml",
           "import_analysis", "export", "human_annotators", "consensus_json"]

logger = logging.getLogger(__name__)

EXPORT_LAYOUTS = ("mediaeval-detection", "mediaeval-classification")
EXPORT_MARKER = "export.json"
_EXPORT_FORMAT = "tstcnn-annotations-export"
_MAX_XML_FILES = 100_000  # far beyond any dataset; keeps a mistaken XML_DIR (a home folder) from running for hours


class ImportProblems(ValueError):
    """An import refused as a whole; ``problems`` lists every problem found, the message names the first."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        super().__init__(f"{problems[0]}{more}; nothing was imported")


@dataclass
class ImportSummary:
    """What an import added: videos new to the project, strokes per video name."""

    annotator: str
    videos_added: list[str] = field(default_factory=list)
    strokes: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.strokes.values())


@dataclass
class ExportSummary:
    """What an export wrote: the folder, its layout, whose strokes, counts, and consensus strokes flagged."""

    out: Path
    layout: str
    source: str  # the annotator's name, or "consensus"
    videos: int
    strokes: int
    ties: int = 0


# -- import ------------------------------------------------------------------------------------------------------

def _xml_files(xml_dir: Path) -> list[Path]:
    """The XML files under ``xml_dir`` (its split folders too, as a detection layout has), skipping hidden ones."""
    if not xml_dir.is_dir():
        raise ValueError(f"{xml_dir}: no such folder of annotation XMLs")
    found = []
    for path in sorted(xml_dir.rglob("*.xml")):
        if any(part.startswith(".") for part in path.relative_to(xml_dir).parts) or not path.is_file():
            continue
        found.append(path)
        if len(found) > _MAX_XML_FILES:
            raise ValueError(f"{xml_dir}: more than {_MAX_XML_FILES} XML files; give the folder of one dataset")
    if not found:
        raise ValueError(f"{xml_dir}: no .xml annotation file found")
    return found


def _video_beside(xml: Path) -> Path | None:
    candidates = sorted(p for p in xml.parent.glob(f"{_glob_escape(xml.stem)}.*")
                        if p.suffix.lower() in VIDEO_EXTENSIONS and p.stem == xml.stem and p.is_file())
    return candidates[0] if candidates else None


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _videos_by_stem(project: Project) -> dict[str, list[Video]]:
    stems: dict[str, list[Video]] = defaultdict(list)
    for video in project.videos():
        stems[Path(video.name).stem].append(video)
    return stems


@dataclass
class _Planned:
    """One video of an import: the project's video, or the file to add (with its decoded frame count)."""

    name: str
    video: Video | None
    path: Path | None
    frames: int
    where: Path  # the annotation file, for messages
    strokes: list[dict[str, Any]] = field(default_factory=list)


def _plan_video(project: Project, stems: Mapping[str, list[Video]], stem: str, beside: Path | None, where: Path,
                problems: list[str]) -> _Planned | None:
    """The project video named ``stem``, or the one beside ``where`` to add; a problem when neither is there."""
    known = stems.get(stem, [])
    if len(known) > 1:
        problems.append(f"{where}: the project has several videos named {stem}.* "
                        f"({', '.join(v.name for v in known)}); rename one")
        return None
    if known:
        return _Planned(known[0].name, known[0], None, known[0].frames, where)
    if beside is None:
        problems.append(f"{where}: no video {stem}.* in the project or beside this file")
        return None
    try:
        check_id(beside.name, "video file name")
        frames = count_frames(beside)
    except (ValueError, VideoError) as exc:
        problems.append(f"{where}: {exc}")
        return None
    if frames < 1:
        problems.append(f"{where}: {beside} has no decodable frame")
        return None
    return _Planned(beside.name, None, beside, frames, where)


def _check_stroke(plan: _Planned, classes: Sequence[str], what: str, begin: int, end: int, label: str | None,
                  problems: list[str]) -> bool:
    """Problems of one stroke against the project's classes and its video's decoded frames (end exclusive)."""
    where = f"{plan.where}: {what}"
    if label is None:
        problems.append(f"{where} has no class (move attribute)")
    elif label not in classes:
        problems.append(f"{where} names the unknown class {label!r}, not one of the project's {len(classes)}")
    elif not 0 <= begin < end:
        problems.append(f"{where} has begin={begin}, end={end}: need 0 <= begin < end (end exclusive)")
    elif end > plan.frames:
        problems.append(f"{where} ends at frame {end}, past the end of {plan.name} ({plan.frames} decoded frames)")
    else:
        return True
    return False


def _apply(project: Project, plans: Sequence[_Planned], annotator: str, problems: list[str], *,
           link: bool) -> ImportSummary:
    """Refuse if anything was wrong; else add the new videos, then every stroke in one transaction."""
    for plan in plans:
        if plan.video is not None and plan.strokes and project.strokes(plan.video.id, annotator):
            problems.append(f"{plan.where}: {annotator} already has strokes on {plan.name}; import under another "
                            "name, or delete them first")
    if problems:
        raise ImportProblems(problems)
    summary = ImportSummary(annotator)
    rows = []
    for plan in plans:
        video = plan.video
        if video is None:
            assert plan.path is not None
            video = project.add_video(plan.path, link=link)
            summary.videos_added.append(video.name)
        rows += [{**row, "video_id": video.id} for row in plan.strokes]
        summary.strokes[video.name] = len(plan.strokes)
    project.add_strokes(rows)
    return summary


def import_xml(project: Project, xml_dir: str | Path, annotator: str, *, link: bool = False) -> ImportSummary:
    """Import the detection XMLs under ``xml_dir`` as ``annotator``'s strokes; all of them or, on any problem, none.

    ``X.xml`` annotates the project video ``X.<ext>``, or the video ``X.<ext>`` beside it, which is then added
    (copied; symlinked with ``link``). Raises :class:`ImportProblems` (a ValueError) naming the first problem.
    """
    annotator = check_annotator(annotator)
    xml_dir = Path(xml_dir)
    stems = _videos_by_stem(project)
    problems: list[str] = []
    plans: dict[str, _Planned] = {}
    for xml in _xml_files(xml_dir):
        if xml.stem in plans:
            problems.append(f"{xml}: a second annotation of {xml.stem} (the first: {plans[xml.stem].where})")
            continue
        try:
            actions = read_actions(xml)
        except AnnotationError as exc:
            problems.append(str(exc))
            continue
        plan = _plan_video(project, stems, xml.stem, _video_beside(xml), xml, problems)
        if plan is None:
            continue
        plans[xml.stem] = plan
        for number, action in enumerate(actions, 1):
            if _check_stroke(plan, project.classes, f"action {number}", action.begin, action.end, action.move,
                             problems):
                plan.strokes.append({"annotator": annotator, "begin": action.begin, "end": action.end,
                                     "label": action.move})
    summary = _apply(project, list(plans.values()), annotator, problems, link=link)
    logger.info("imported %d strokes of %s on %d videos (%d added to the project)", summary.total, annotator,
                len(summary.strokes), len(summary.videos_added))
    return summary


def _analysis_files(analysis_dir: Path) -> list[Path]:
    if not analysis_dir.is_dir():
        raise ValueError(f"{analysis_dir}: no such analysis folder (the --out of tstcnn analyze)")
    files = sorted(p for p in analysis_dir.rglob("strokes.json")
                   if not any(part.startswith(".") for part in p.relative_to(analysis_dir).parts))
    if not files:
        raise ValueError(f"{analysis_dir}: no strokes.json found (written by tstcnn analyze)")
    return files


@dataclass(frozen=True)
class _Analysis:
    """One ``strokes.json``: its rows, and what it says of its video (name, original file, decoded frames)."""

    rows: list[Any]
    video: str | None = None
    source: str | None = None
    frames: int | None = None


def _read_analysis(path: Path) -> _Analysis:
    """A ``strokes.json`` as ``tstcnn analyze`` writes it (``{"video", "source", "frames", "strokes": [...]}``) or
    a bare list of rows."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable strokes.json ({exc})") from None
    if isinstance(data, list):
        return _Analysis(data)
    if isinstance(data, Mapping) and isinstance(data.get("strokes"), list):
        text = {key: data.get(key) if isinstance(data.get(key), str) else None for key in ("video", "source")}
        return _Analysis(data["strokes"], text["video"], text["source"], _frame_number(data, "frames"))
    raise ValueError(f"{path}: expected a list of stroke rows (or an object with 'strokes')")


def _analysis_video(path: Path, analysis: _Analysis, analysis_dir: Path) -> tuple[str, Path | None]:
    """The video stem a ``strokes.json`` is about and a file of it to add if the project lacks it: the original
    it names, else a video of that name beside the file or in the analysis folder."""
    named = analysis.video or (Path(analysis.source).name if analysis.source else None)
    stem = Path(named).stem if named else (path.parent.name if path.parent != analysis_dir else "")
    if analysis.source and Path(analysis.source).is_file() and Path(analysis.source).stem == stem:
        return stem, Path(analysis.source)
    beside = None
    for folder in (path.parent, analysis_dir):
        beside = _video_beside(folder / f"{stem}.xml") if stem else None
        if beside is not None:
            break
    return stem, beside


def _frame_number(row: Mapping[str, Any], key: str) -> int | None:
    value = row.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def import_analysis(project: Project, analysis_dir: str | Path, annotator: str = MODEL_ANNOTATOR, *,
                    link: bool = False) -> ImportSummary:
    """Import the strokes found by ``tstcnn analyze`` (``strokes.json`` per video under ``analysis_dir``) as
    ``annotator``'s proposals (status ``proposed``, with confidence and top-3 classes), for review on the page.

    A file's video is the one its ``"video"`` names, else the one its folder is named after; one the project lacks
    is added from the original named by ``"source"`` or from a video of that name beside the file. A file whose
    ``"frames"`` differ from the video's decoded frames is refused. All or nothing, as :func:`import_xml`.
    """
    annotator = check_annotator(annotator)
    analysis_dir = Path(analysis_dir)
    stems = _videos_by_stem(project)
    problems: list[str] = []
    plans: dict[str, _Planned] = {}
    for path in _analysis_files(analysis_dir):
        try:
            analysis = _read_analysis(path)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        stem, beside = _analysis_video(path, analysis, analysis_dir)
        if not stem:
            problems.append(f"{path}: names no video; put it in a folder named after its video")
            continue
        if stem in plans:
            problems.append(f"{path}: a second analysis of {stem} (the first: {plans[stem].where})")
            continue
        plan = _plan_video(project, stems, stem, beside, path, problems)
        if plan is None:
            continue
        plans[stem] = plan
        if analysis.frames is not None and analysis.frames != plan.frames:
            problems.append(f"{path}: analysed a video of {analysis.frames} frames, but {plan.name} has "
                            f"{plan.frames}: another video of the same name?")
            continue
        for number, row in enumerate(analysis.rows, 1):
            if not isinstance(row, Mapping):
                problems.append(f"{path}: stroke {number} is not an object")
                continue
            begin, end = _frame_number(row, "begin_frame"), _frame_number(row, "end_frame")
            if begin is None or end is None:
                problems.append(f"{path}: stroke {number} lacks integer begin_frame and end_frame")
                continue
            label = row.get("class") if isinstance(row.get("class"), str) else None
            if _check_stroke(plan, project.classes, f"stroke {number}", begin, end, label, problems):
                plan.strokes.append({"annotator": annotator, "begin": begin, "end": end, "label": label,
                                     "confidence": row.get("confidence"), "top3": row.get("top3"),
                                     "status": "proposed"})
    summary = _apply(project, list(plans.values()), annotator, problems, link=link)
    logger.info("imported %d proposals of %s on %d videos", summary.total, annotator, len(summary.strokes))
    return summary


# -- export ------------------------------------------------------------------------------------------------------

def human_annotators(project: Project) -> list[str]:
    """The project's annotators other than the model (whose proposals are not a person's annotation)."""
    return [name for name in project.annotators() if name != MODEL_ANNOTATOR]


def consensus_json(project: Project, strokes: Sequence[ConsensusStroke], annotators: Sequence[str],
                   min_iou: float) -> dict[str, Any]:
    """The consensus as JSON: per video name its strokes (frames, class, votes, ties flagged for review)."""
    names = {video.id: video.name for video in project.videos()}
    videos: dict[str, list[dict[str, Any]]] = {}
    for stroke in strokes:
        videos.setdefault(names[stroke.video_id], []).append(stroke.to_json())
    return {"format": "tstcnn-consensus", "annotators": list(annotators), "min_iou": min_iou,
            "strokes": len(strokes), "ties": sum(s.tie for s in strokes), "videos": videos}


def _check_out(out: Path) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ValueError(f"{out} exists and is not a folder; give a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        marker = out / EXPORT_MARKER
        try:
            earlier = json.loads(marker.read_text(encoding="utf-8")).get("format")
        except (OSError, ValueError, AttributeError):
            earlier = None
        if earlier != _EXPORT_FORMAT:
            raise ValueError(f"{out} holds files that are not an earlier export (no {EXPORT_MARKER}); give a new or "
                             "empty folder")


def _source_strokes(project: Project, annotator: str | None, use_consensus: bool,
                    annotators: Sequence[str] | None, min_iou: float) -> tuple[str, list[Any], list[str]]:
    """The strokes to export, whose they are, and the annotators a consensus was drawn from."""
    if use_consensus:
        if annotator is not None:
            raise ValueError("give an annotator or the consensus, not both")
        names = list(annotators) if annotators else human_annotators(project)
        if len(names) < 2:
            raise ValueError(f"a consensus needs two annotators or more; the project has {', '.join(names) or 'none'}")
        unknown = sorted(set(names) - set(project.annotators()))
        if unknown:
            raise ValueError(f"no strokes by {unknown[0]!r} in the project; its annotators: "
                             f"{', '.join(project.annotators()) or 'none'}")
        grouped = by_annotator(project.strokes(), annotators=names)
        return "consensus", consensus(grouped, project.classes, min_iou=min_iou), names
    if annotator is None:
        names = human_annotators(project)
        if len(names) != 1:
            raise ValueError(f"the project has {len(names)} annotators ({', '.join(names) or 'none'} besides the "
                             "model's proposals); choose one with --annotator NAME or export --consensus")
        annotator = names[0]
    if annotator not in project.annotators():
        raise ValueError(f"no strokes by {annotator!r} in the project; its annotators: "
                         f"{', '.join(project.annotators()) or 'none'}")
    return annotator, project.strokes(annotator=annotator), [annotator]


def _by_video(strokes: Iterable[Any]) -> dict[int, list[Any]]:
    grouped: dict[int, list[Any]] = defaultdict(list)
    for stroke in strokes:
        grouped[stroke.video_id].append(stroke)
    for strokes_of in grouped.values():
        strokes_of.sort(key=lambda s: (s.begin, s.end, s.label))
    return grouped


def _check_stems(project: Project, grouped: Mapping[int, Sequence[Any]]) -> None:
    """Exported files are named after the video's stem, so two videos with strokes may not share one."""
    seen: dict[str, str] = {}
    for video_id in grouped:
        name = project.video(video_id).name
        stem = Path(name).stem
        if stem in seen:
            raise ValueError(f"videos {seen[stem]} and {name} would both export as {stem}: rename one in the project")
        seen[stem] = name


def _place_video(source: Path, target: Path) -> None:
    """A hard link to the project's video (no copy of a large file) where the file system allows one, else a copy."""
    try:
        os.link(source.resolve(), target)
    except OSError:
        shutil.copyfile(source, target)


def _write_xmls(folder: Path, project: Project, grouped: Mapping[int, Sequence[Any]], with_videos: bool) -> None:
    if with_videos:
        folder = folder / "train"
        folder.mkdir()
    for video_id, strokes in grouped.items():
        video = project.video(video_id)
        write_actions(folder / f"{Path(video.name).stem}.xml", [Action(s.begin, s.end, s.label) for s in strokes])
        if with_videos:
            _place_video(project.video_path(video), folder / video.name)


def _clip_names(stem: str, strokes: Sequence[Any]) -> list[str]:
    """``<stem>_<begin>-<end>`` per stroke (a suffix where one span was marked twice); each a valid store id."""
    seen: Counter[str] = Counter()
    names = []
    for stroke in strokes:
        name = f"{stem}_{stroke.begin}-{stroke.end}"
        seen[name] += 1
        names.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    for name in names:
        check_id(name, "clip name")
    return names


def _cut_clips(video_path: Path, video: Video, strokes: Sequence[Any], targets: Sequence[Path]) -> None:
    """Write frames ``begin..end-1`` of the video for each stroke, decoding the video once (strokes may overlap)."""
    width, height = video.width - video.width % 2, video.height - video.height % 2  # H.264 needs even sizes
    pending = sorted(range(len(strokes)), key=lambda i: strokes[i].begin)
    open_writers: dict[int, VideoWriter] = {}
    try:
        for index, decoded in enumerate(iter_decoded(video_path)):
            while pending and strokes[pending[0]].begin == index:
                i = pending.pop(0)
                targets[i].parent.mkdir(parents=True, exist_ok=True)
                open_writers[i] = VideoWriter(targets[i], video.fps, width, height, crf=18)
            if not open_writers:
                if not pending:
                    break
                continue  # frames between strokes are decoded (frame numbers count them) but not converted
            frame = decoded.to_ndarray(format="rgb24")[:height, :width]
            for i, writer in list(open_writers.items()):
                writer.write(frame)
                if index + 1 == strokes[i].end:
                    open_writers.pop(i).close()
    finally:
        for writer in open_writers.values():
            writer.close()
    short = [targets[i].name for i in (*pending, *open_writers)]
    if short:
        raise VideoError(f"{video_path}: ended before the strokes of {', '.join(short[:3])} (fewer frames than the "
                         f"{video.frames} recorded)")


def _write_clips(folder: Path, project: Project, grouped: Mapping[int, Sequence[Any]]) -> None:
    for video_id, strokes in grouped.items():
        video = project.video(video_id)
        names = _clip_names(Path(video.name).stem, strokes)
        targets = [folder / "train" / s.label / f"{name}.mp4" for s, name in zip(strokes, names)]
        for stroke in strokes:
            check_id(stroke.label, "class name")  # a class becomes a folder name
        _cut_clips(project.video_path(video), video, strokes, targets)


def export(project: Project, out: str | Path, annotator: str | None = None, consensus: bool = False,
           layout: str = "mediaeval-detection", *, annotators: Sequence[str] | None = None,
           min_iou: float = 0.5, with_videos: bool = False) -> ExportSummary:
    """Write ``annotator``'s strokes (or, with ``consensus``, the consensus of ``annotators``, default: every
    annotator but the model) to ``out`` in ``layout``; see the module docstring for the two layouts.

    Without ``annotator`` and ``consensus`` the project's only (human) annotator is taken. Videos without strokes
    get no file. ``with_videos`` (detection only) writes ``OUT/train/<stem>.xml`` with the video beside each (a
    hard link, else a copy), which ``tstcnn prepare --layout mediaeval-detection`` reads as it is. ``out`` also
    receives ``export.json`` (what was exported) and, for a consensus, ``consensus.json``.
    """
    if layout not in EXPORT_LAYOUTS:
        raise ValueError(f"unknown export layout {layout!r}; allowed: {', '.join(EXPORT_LAYOUTS)}")
    if with_videos and layout != "mediaeval-detection":
        raise ValueError("with_videos applies to the mediaeval-detection layout; clips are videos already")
    out = Path(out)
    _check_out(out)
    source, strokes, names = _source_strokes(project, annotator, consensus, annotators, min_iou)
    if not strokes:
        raise ValueError(f"no strokes to export for {source}")
    grouped = _by_video(strokes)
    _check_stems(project, grouped)
    ties = sum(getattr(s, "tie", False) for s in strokes)
    manifest = {"format": _EXPORT_FORMAT, "project": str(project.root.resolve()), "layout": layout,
                "source": source, "annotators": names, "videos": len(grouped), "strokes": len(strokes), "ties": ties}

    def fill(folder: Path) -> None:
        if layout == "mediaeval-detection":
            _write_xmls(folder, project, grouped, with_videos)
        else:
            _write_clips(folder, project, grouped)
        if consensus:
            atomic_write_text(folder / "consensus.json",
                              json.dumps(consensus_json(project, strokes, names, min_iou), indent=1) + "\n")
        atomic_write_text(folder / EXPORT_MARKER, json.dumps(manifest, indent=1) + "\n")

    atomic_folder(out, fill)
    logger.info("exported %d strokes of %s on %d videos to %s (%s)", len(strokes), source, len(grouped), out, layout)
    return ExportSummary(out, layout, source, len(grouped), len(strokes), ties)
