"""MediaEval Sport Task XML files, parsed safely.

Two formats:

* per-video annotations (2020–2021 and the detection task): ``<video><action begin="F" end="F" move="Class"/>…
  </video>``; frame numbers from 0, ``end`` exclusive; ``move`` is absent in detection submissions;
* classification submissions (2022): ``<videos><video name="<id>.mp4" class="<Class>"/>…</videos>``.

Parsing goes through defusedxml: entity expansion, external entities and DTDs are refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple
from xml.etree.ElementTree import Element, ParseError, SubElement, indent, tostring

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from tstcnn.io.atomic import atomic_write_bytes

__all__ = ["Action", "AnnotationError", "read_actions", "write_actions", "read_submission", "write_submission"]


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


def read_actions(path: str | Path) -> list[Action]:
    """The actions of one video's XML, in file order. Values are checked for type only, not meaning."""
    path = Path(path)
    root = _parse(path, "video")
    return [Action(_frame(path, a, "begin"), _frame(path, a, "end"), a.get("move")) for a in root.iter("action")]


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
