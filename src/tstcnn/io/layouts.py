"""Dataset layouts users have, read into one list of source videos, with every problem named.

Four layouts (``--layout`` of ``tstcnn prepare``):

* ``mediaeval-classification``: ``[classificationTask/]{train,validation}/<Class>/<id>.<ext>`` (one trimmed
  stroke per file) and ``test/<id>.<ext>`` (unlabelled);
* ``mediaeval-detection``: ``[detectionTask/]{train,validation,test}/<id>.<ext>`` with ``<id>.xml`` beside
  each (``<video><action begin end move/></video>``; test XMLs may be empty or absent);
* ``folders``: ``<Class>/<file>`` trimmed clips, optionally under ``{train,validation,test}/`` folders
  (without them every clip is in ``train`` and splits are drawn later, by video);
* ``csv``: a file with a header ``video,begin,end,label[,split]``, one stroke per row, video paths relative
  to the CSV's folder; rows of one video become its actions; empty begin/end mark a trimmed clip.

Problems (unknown class, ``begin >= end``, missing video, duplicate id, a name escaping the dataset folder, a
name that cannot be a store id such as ``...mp4``, unreadable annotation) are collected as one message each; the
items they concern are left out and the rest is returned, so ``prepare`` can go on with the good videos and
report the bad ones. Frames past a video's end are checked after decoding (:func:`check_actions`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tstcnn.io.ids import check_id
from tstcnn.io.mediaeval import Action, AnnotationError, read_actions, read_submission

__all__ = ["LAYOUTS", "SPLITS", "VIDEO_EXTENSIONS", "SourceItem", "LayoutScan", "read_layout", "check_actions"]

LAYOUTS = ("mediaeval-classification", "mediaeval-detection", "folders", "csv")
SPLITS = ("train", "validation", "test")
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                              ".ts", ".mts", ".m2ts", ".3gp", ".ogv"})


@dataclass(frozen=True)
class SourceItem:
    """One source video: where it is, its id in the store, its split, and its label (trimmed) or actions."""

    id: str
    path: Path
    split: str
    label: str | None = None
    actions: tuple[Action, ...] = ()
    annotation: Path | None = None  # the file the actions or label came from, for messages


@dataclass
class LayoutScan:
    """What a layout reader found: usable items (sorted by id), one message per problem, the class names."""

    items: list[SourceItem]
    problems: list[str] = field(default_factory=list)
    classes: tuple[str, ...] = ()


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path`` (links resolved) stays inside ``root``."""
    return path.resolve().is_relative_to(root.resolve())


def _task_root(source: Path, task_folder: str) -> Path:
    nested = source / task_folder
    return nested if nested.is_dir() and not any((source / s).is_dir() for s in SPLITS) else source


def _sorted_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


class _Collector:
    """Accumulates items and problems; enforces valid unique ids and paths inside the dataset folder."""

    def __init__(self, root: Path, classes: Sequence[str] | None) -> None:
        self.root, self.classes = root, tuple(classes) if classes is not None else None
        self.items: dict[str, SourceItem] = {}
        self.problems: list[str] = []
        self._bad_ids: set[str] = set()

    def known_class(self, name: str | None, where: object) -> bool:
        if self.classes is not None and name is not None and name not in self.classes:
            self.problems.append(f"{where}: unknown class {name!r}")
            return False
        return True

    def add(self, item: SourceItem) -> None:
        try:
            check_id(item.id)
        except ValueError as exc:
            self.problems.append(f"{item.annotation or item.path}: video {item.path.name!r}: {exc}")
            return
        if not _inside(item.path, self.root):
            self.problems.append(f"{item.annotation or item.path}: video {item.path.name!r} escapes the dataset "
                                 f"folder {self.root}")
            return
        if not item.path.is_file():
            self.problems.append(f"{item.annotation or item.path}: missing video {item.path}")
            return
        if item.id in self.items or item.id in self._bad_ids:
            first = self.items.pop(item.id, None)
            self._bad_ids.add(item.id)
            others = f" and {first.path}" if first else ""
            self.problems.append(f"duplicate video id {item.id!r}: {item.path}{others}")
            return
        self.items[item.id] = item

    def scan(self, classes: Iterable[str] | None = None) -> LayoutScan:
        names = self.classes if self.classes is not None else tuple(sorted(set(classes or ())))
        return LayoutScan([self.items[k] for k in sorted(self.items)], self.problems, names)


def _valid_actions(actions: Sequence[Action], where: Path, collector: _Collector, need_move: bool) -> bool:
    ok = True
    for i, action in enumerate(actions, 1):
        if action.begin < 0 or action.begin >= action.end:
            collector.problems.append(f"{where}: action {i} has begin={action.begin} >= end={action.end}"
                                      if action.begin >= action.end else
                                      f"{where}: action {i} has a negative begin={action.begin}")
            ok = False
        if need_move and action.move is None:
            collector.problems.append(f"{where}: action {i} has no move attribute")
            ok = False
        ok = collector.known_class(action.move, f"{where}: action {i}") and ok
    return ok


def _read_classification(source: Path, classes: Sequence[str] | None, test_labels: Path | None = None) -> LayoutScan:
    root = _task_root(source, "classificationTask")
    collector = _Collector(root, classes)
    found: set[str] = set()
    if not any((root / s).is_dir() for s in SPLITS):
        raise ValueError(f"{source}: no train/, validation/ or test/ folder (mediaeval-classification layout)")
    for split in ("train", "validation"):
        if not (root / split).is_dir():
            continue
        for class_dir in _sorted_dirs(root / split):
            if not collector.known_class(class_dir.name, class_dir):
                continue
            found.add(class_dir.name)
            for video in sorted(filter(_is_video, class_dir.iterdir())):
                collector.add(SourceItem(video.stem, video, split, label=class_dir.name))
    truth = _test_truth(test_labels, collector) if test_labels is not None else {}
    if (root / "test").is_dir():
        for video in sorted(filter(_is_video, (root / "test").iterdir())):
            label = truth.pop(video.name, None)
            collector.add(SourceItem(video.stem, video, "test", label=label, annotation=test_labels if label else None))
    collector.problems.extend(f"{test_labels}: no test video {name!r}" for name in sorted(truth))
    return collector.scan(found)


def _test_truth(path: Path, collector: _Collector) -> dict[str, str]:
    """The test split's ground truth (a submission-format XML), without the entries naming unknown classes."""
    labels = read_submission(path)
    return {name: label for name, label in labels.items() if collector.known_class(label, f"{path}: video {name!r}")}


def _read_detection(source: Path, classes: Sequence[str] | None) -> LayoutScan:
    root = _task_root(source, "detectionTask")
    collector = _Collector(root, classes)
    found: set[str] = set()
    splits = [s for s in SPLITS if (root / s).is_dir()]
    if not splits:
        raise ValueError(f"{source}: no train/, validation/ or test/ folder (mediaeval-detection layout)")
    for split in splits:
        folder = root / split
        videos = {p.stem: p for p in sorted(filter(_is_video, folder.iterdir()))}
        xmls = {p.stem: p for p in sorted(folder.glob("*.xml")) if not p.name.startswith(".")}
        for stem in sorted(set(videos) | set(xmls)):
            xml = xmls.get(stem)
            if stem not in videos:
                collector.problems.append(f"{xml}: missing video {folder / stem}.* for this annotation")
                continue
            if xml is None:
                if split != "test":
                    collector.problems.append(f"{videos[stem]}: no annotation file {stem}.xml beside it")
                    continue
                actions: list[Action] = []
            else:
                try:
                    actions = read_actions(xml)
                except AnnotationError as exc:
                    collector.problems.append(str(exc))
                    continue
                if not _valid_actions(actions, xml, collector, need_move=split != "test"):
                    continue
            found.update(a.move for a in actions if a.move is not None)
            collector.add(SourceItem(stem, videos[stem], split, actions=tuple(actions), annotation=xml))
    return collector.scan(found)


def _read_folders(source: Path, classes: Sequence[str] | None) -> LayoutScan:
    collector = _Collector(source, classes)
    found: set[str] = set()
    split_dirs = [s for s in SPLITS if (source / s).is_dir()]
    groups = [(s, source / s) for s in split_dirs] if split_dirs else [("train", source)]
    for split, folder in groups:
        for class_dir in _sorted_dirs(folder):
            if not collector.known_class(class_dir.name, class_dir):
                continue
            found.add(class_dir.name)
            for video in sorted(filter(_is_video, class_dir.iterdir())):
                collector.add(SourceItem(video.stem, video, split, label=class_dir.name))
    if not collector.items and not collector.problems:
        raise ValueError(f"{source}: no <Class>/<video> files found (folders layout)")
    return collector.scan(found)


def _read_csv(source: Path, classes: Sequence[str] | None) -> LayoutScan:
    if source.is_dir():
        candidates = sorted(source.glob("*.csv"))
        if len(candidates) != 1:
            raise ValueError(f"{source}: expected one .csv file (csv layout), found {len(candidates)}")
        source = candidates[0]
    root = source.parent
    collector = _Collector(root, classes)
    try:
        with source.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
            header = set(rows[0]) if rows else set()
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{source}: cannot read the CSV ({exc})") from None
    missing = {"video", "begin", "end", "label"} - header
    if missing:
        raise ValueError(f"{source}: the header must name video,begin,end,label[,split]; missing {sorted(missing)}")
    per_video: dict[str, dict] = {}
    found: set[str] = set()
    bad: set[str] = set()
    for line, row in enumerate(rows, 2):
        where = f"{source}:{line}"
        name = (row["video"] or "").strip()
        label = (row["label"] or "").strip() or None
        split = (row.get("split") or "train").strip()
        if split not in SPLITS:
            collector.problems.append(f"{where}: unknown split {split!r}; allowed: {', '.join(SPLITS)}")
            bad.add(name)
            continue
        if not collector.known_class(label, where):
            bad.add(name)
            continue
        found.update([label] if label else [])
        record = per_video.setdefault(name, {"split": split, "label": None, "actions": [], "line": where})
        if record["split"] != split:
            collector.problems.append(f"{where}: video {name!r} is in split {split!r} here and "
                                      f"{record['split']!r} on {record['line']}")
            bad.add(name)
        begin, end = (row["begin"] or "").strip(), (row["end"] or "").strip()
        if not begin and not end:
            record["label"] = label
            continue
        try:
            action = Action(int(begin), int(end), label)
        except ValueError:
            collector.problems.append(f"{where}: begin={begin!r} end={end!r} are not frame numbers")
            bad.add(name)
            continue
        if not _valid_actions([action], Path(where), collector, need_move=False):
            bad.add(name)
            continue
        record["actions"].append(action)
    for name, record in per_video.items():
        if name in bad:
            continue
        path = root / name
        collector.add(SourceItem(Path(name).stem, path, record["split"], label=record["label"],
                                 actions=tuple(sorted(record["actions"])), annotation=source))
    return collector.scan(found)


_READERS = {"mediaeval-classification": _read_classification, "mediaeval-detection": _read_detection,
            "folders": _read_folders, "csv": _read_csv}


def read_layout(layout: str, source: str | Path, classes: Sequence[str] | None = None,
                test_labels: str | Path | None = None) -> LayoutScan:
    """Read a dataset in ``layout`` from ``source`` (a folder, or the CSV file for ``csv``).

    Args:
        classes: the taxonomy's class names; labels outside it are problems. ``None`` accepts the names found
            (returned sorted in ``LayoutScan.classes``).
        test_labels: for ``mediaeval-classification``, the test split's ground truth in the submission format
            (``<videos><video name class/>…``), as the organisers release it after a campaign; the test clips
            are unlabelled without it.

    Raises:
        ValueError: unknown layout, or ``source`` is not that layout at all (nothing can be read).
    """
    if layout not in _READERS:
        raise ValueError(f"unknown layout {layout!r}; allowed: {', '.join(LAYOUTS)}")
    source = Path(source)
    if not source.exists():
        raise ValueError(f"{source}: no such dataset folder or file")
    if layout != "csv" and not source.is_dir():
        raise ValueError(f"{source}: the {layout} layout needs a folder")
    if test_labels is None:
        return _READERS[layout](source, classes)
    if layout != "mediaeval-classification":
        raise ValueError(f"test labels apply to the mediaeval-classification layout, not {layout}")
    return _read_classification(source, classes, Path(test_labels))


def check_actions(item: SourceItem, frames: int) -> list[str]:
    """Problems of ``item``'s actions against its decoded frame count (``end`` is exclusive)."""
    where = item.annotation or item.path
    return [f"{where}: action {i} ends at frame {a.end}, past the end of {item.path.name} ({frames} decoded frames)"
            for i, a in enumerate(item.actions, 1) if a.end > frames]
