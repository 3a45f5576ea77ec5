"""MediaEval Sport Task XML files, parsed safely.

Two formats:

* per-video annotations (2020–2021 and the detection task): ``<video><action begin="F" end="F" move="Class"/>…
  </video>``; frame numbers from 0, ``end`` exclusive; ``move`` is absent in detection submissions;
* classification submissions (2022): ``<videos><video name="<id>.mp4" class="<Class>"/>…</videos>``.

Parsing goes through defusedxml: entity expansion, external entities and DTDs are refused. A video's annotation
file is read incrementally and holds at most :data:`MAX_ACTIONS_PER_VIDEO` actions, so a hostile or broken file
cannot fill the memory of the scorer.

:func:`write_organisers_run` lays out a run folder as the organisers' ``verif_submission.py`` and
``evaluation.py`` read it: for classification the folder holds only ``<set>.xml``, for detection only one
``<id>.xml`` per video.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import NamedTuple
from xml.etree.ElementTree import Element, ParseError, SubElement, indent, tostring

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from tstcnn.io.atomic import atomic_folder, atomic_write_bytes

__all__ = ["Action", "AnnotationError", "MAX_ACTIONS_PER_VIDEO", "read_actions", "write_actions", "read_submission",
           "write_submission", "write_organisers_run"]

# A TTStroke-21 video holds a few hundred strokes; a hundred thousand is far beyond any real annotation.
MAX_ACTIONS_PER_VIDEO = 100_000


class AnnotationError(ValueError):
    """An annotation or submission file that cannot be used; the message names the file and the problem."""


class Action(NamedTuple):
    """One stroke: frames ``begin`` (inclusive) to ``end`` (exclusive); ``move`` is the class name or None."""

    begin: int
    end: int
    move: str | None = None


def _parse(path: Path, root_tag: str) -> Element:
    try:
        root = SafeET.parse(str(path), forbid_dtd=True).getroot()
    except (ParseError, DefusedXmlException) as exc:
        raise AnnotationError(f"{path}: not a valid, safe XML file ({exc})") from None
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot read ({exc.strerror})") from None
    if root.tag != root_tag:
        raise AnnotationError(f"{path}: root element is <{root.tag}>, expected <{root_tag}>")
    return root


def _frame(path: Path, element: Element, attribute: str) -> int:
    value = element.get(attribute)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise AnnotationError(f"{path}: <action> has {attribute}={value!r}, expected a frame number") from None


def read_actions(path: str | Path, max_actions: int = MAX_ACTIONS_PER_VIDEO) -> list[Action]:
    """The actions of one video's XML, in file order. Values are checked for type only, not meaning.

    The file is parsed incrementally and refused as soon as it holds more than ``max_actions`` actions.
    """
    path = Path(path)
    actions: list[Action] = []
    root: Element | None = None
    depth = 0
    try:
        for event, element in SafeET.iterparse(str(path), events=("start", "end"), forbid_dtd=True):
            if event == "start":
                if root is None:
                    root = element
                    if root.tag != "video":
                        raise AnnotationError(f"{path}: root element is <{root.tag}>, expected <video>")
                depth += 1
                continue
            depth -= 1
            if element.tag == "action":
                if len(actions) >= max_actions:
                    raise AnnotationError(f"{path}: more than {max_actions} <action> elements, the limit for one "
                                          "video")
                actions.append(Action(_frame(path, element, "begin"), _frame(path, element, "end"),
                                      element.get("move")))
            if depth == 1 and root is not None:
                root.clear()  # the children read so far are no longer needed: memory stays flat
    except (ParseError, DefusedXmlException) as exc:
        raise AnnotationError(f"{path}: not a valid, safe XML file ({exc})") from None
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot read ({exc.strerror})") from None
    return actions


def _to_bytes(root: Element) -> bytes:
    indent(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + tostring(root, encoding="utf-8") + b"\n"


def write_actions(path: str | Path, actions: Iterable[Action]) -> None:
    """Write one video's actions (atomically); ``move`` is omitted when None."""
    root = Element("video")
    for action in actions:
        attributes = {"begin": str(int(action.begin)), "end": str(int(action.end))}
        if action.move is not None:
            attributes["move"] = action.move
        SubElement(root, "action", attributes)
    atomic_write_bytes(path, _to_bytes(root))


def read_submission(path: str | Path) -> dict[str, str]:
    """A classification submission as ``{video name: class}``; a name given twice is an error."""
    path = Path(path)
    root = _parse(path, "videos")
    labels: dict[str, str] = {}
    for video in root.iter("video"):
        name, label = video.get("name"), video.get("class")
        if not name or label is None:
            raise AnnotationError(f"{path}: a <video> lacks its name or class attribute")
        if name in labels:
            raise AnnotationError(f"{path}: video {name!r} is listed twice")
        labels[name] = label
    return labels


def write_submission(path: str | Path, labels: Mapping[str, str]) -> None:
    """Write ``{video name: class}`` as a classification submission, sorted by name (atomically)."""
    root = Element("videos")
    for name in sorted(labels):
        SubElement(root, "video", {"name": name, "class": labels[name]})
    atomic_write_bytes(path, _to_bytes(root))


def _replace_folder(folder: Path, fill: Callable[[Path], None]) -> None:
    """Build a folder beside ``folder`` with ``fill(path)``, then swap it in, so a reader never sees half a run."""
    if folder.exists():
        stray = [p for p in folder.iterdir() if not p.is_file() or p.suffix != ".xml"] if folder.is_dir() else [folder]
        if stray:
            raise AnnotationError(f"{folder}: exists and holds more than a run's XML files ({stray[0].name}); give a "
                                  "new or empty folder")
    atomic_folder(folder, fill)


def write_organisers_run(folder: str | Path, *, labels: Mapping[str, str] | None = None,
                         actions: Mapping[str, Iterable[Action]] | None = None, set_name: str = "test") -> Path:
    """Write one run in the organisers' layout and return its folder; give exactly one of ``labels`` and ``actions``.

    The organisers' ``evaluation.py`` reads ``<run>/test.xml`` and ``verif_submission.py`` the first file it
    lists in the run folder, so the folder must hold the run's XML and nothing else:

    * ``labels`` (classification, ``{video file name: class}``): ``folder/<set_name>.xml`` only;
    * ``actions`` (detection, ``{video id: strokes}``): ``folder/<video id>.xml`` for each video, only.

    An existing folder is replaced when it holds only XML files (an earlier run); anything else is refused, so
    that no other file is deleted.
    """
    if (labels is None) == (actions is None):
        raise ValueError("give exactly one of labels (classification) and actions (detection)")
    if not (labels if labels is not None else actions):
        raise ValueError("no video to write: a run holds at least one")
    folder = Path(folder)
    names = [f"{set_name}.xml"] if labels is not None else [f"{video}.xml" for video in actions or {}]
    bad = [n for n in names if Path(n).name != n or n.startswith(".")]
    if bad:
        raise ValueError(f"{bad[0]!r} is not a plain file name, so it cannot be a file of the run folder")

    def fill(staging: Path) -> None:
        if labels is not None:
            write_submission(staging / names[0], labels)
        else:
            for video, strokes in (actions or {}).items():
                write_actions(staging / f"{video}.xml", strokes)

    _replace_folder(folder, fill)
    return folder
