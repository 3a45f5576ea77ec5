"""The TTStroke-21 taxonomy: 20 table tennis stroke classes and a rejection class.

Names are spelled exactly as in the MediaEval Sport Task evaluation scripts, which compare strings.
The index order below is the model's output order. Three coarser groupings (by stroke type, by hand,
and by type and hand) are used for extra confusion matrices. Users with their own classes load a
:class:`Taxonomy` from a text file with one class name per line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["TTSTROKE21_CLASSES", "NEGATIVE", "GROUPINGS", "Taxonomy", "ttstroke21", "load_taxonomy"]

NEGATIVE = "Negative"

TTSTROKE21_CLASSES: tuple[str, ...] = (
    "Serve Forehand Backspin",
    "Serve Forehand Loop",
    "Serve Forehand Sidespin",
    "Serve Forehand Topspin",
    "Serve Backhand Backspin",
    "Serve Backhand Loop",
    "Serve Backhand Sidespin",
    "Serve Backhand Topspin",
    "Offensive Forehand Hit",
    "Offensive Forehand Loop",
    "Offensive Forehand Flip",
    "Offensive Backhand Hit",
    "Offensive Backhand Loop",
    "Offensive Backhand Flip",
    "Defensive Forehand Push",
    "Defensive Forehand Block",
    "Defensive Forehand Backspin",
    "Defensive Backhand Push",
    "Defensive Backhand Block",
    "Defensive Backhand Backspin",
    NEGATIVE,
)

GROUPINGS: tuple[str, ...] = ("type", "hand", "type_hand")


def _group_of(name: str, grouping: str) -> str:
    if name == NEGATIVE:
        return NEGATIVE
    words = name.split()
    if grouping == "type":
        return words[0]
    if grouping == "hand":
        return words[1]
    if grouping == "type_hand":
        return f"{words[0]} {words[1]}"
    raise ValueError(f"unknown grouping {grouping!r}; allowed: {', '.join(GROUPINGS)}")


@dataclass(frozen=True)
class Taxonomy:
    """An ordered list of class names; index ``i`` is the model's output ``i``."""

    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.classes:
            raise ValueError("a taxonomy needs at least one class")
        duplicates = sorted({c for c in self.classes if self.classes.count(c) > 1})
        if duplicates:
            raise ValueError(f"duplicate class names: {', '.join(duplicates)}")

    def __len__(self) -> int:
        return len(self.classes)

    def index(self, name: str) -> int:
        """The output index of ``name``; raises ``KeyError`` naming the class when it is unknown."""
        try:
            return self.classes.index(name)
        except ValueError:
            raise KeyError(f"unknown class {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.classes

    @property
    def negative_index(self) -> int | None:
        """Index of the rejection class, or None when the taxonomy has none."""
        return self.classes.index(NEGATIVE) if NEGATIVE in self.classes else None

    def supports_groupings(self) -> bool:
        """Whether every class reads as ``<Type> <Hand> <Technique>`` (or Negative), as TTStroke-21's do."""
        return all(c == NEGATIVE or len(c.split()) >= 3 for c in self.classes)

    def group_names(self, grouping: str) -> tuple[str, ...]:
        """The coarse classes of ``grouping`` in order of first appearance."""
        names: list[str] = []
        for c in self.classes:
            g = _group_of(c, grouping)
            if g not in names:
                names.append(g)
        return tuple(names)

    def group_map(self, grouping: str) -> list[int]:
        """For each fine class index, the index of its coarse class in :meth:`group_names`."""
        names = self.group_names(grouping)
        return [names.index(_group_of(c, grouping)) for c in self.classes]


def ttstroke21() -> Taxonomy:
    """The 21 classes of TTStroke-21 / MediaEval Sport Task."""
    return Taxonomy(TTSTROKE21_CLASSES)


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Load a taxonomy from a text file (one class per line, ``#`` comments), or TTStroke-21 when ``path`` is None."""
    if path is None:
        return ttstroke21()
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    classes = tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    return Taxonomy(classes)
