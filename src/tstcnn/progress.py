"""Progress of long work: a bar on a terminal, a few log lines elsewhere.

A bar redrawn at every update is right on a terminal and wrong in a log file (``make demo > log`` would hold
thousands of bars). :func:`progress` gives a tqdm bar when standard error is a terminal, and otherwise a
reporter that logs one line per ``log_every`` (default 10 %) of the work, plus the last.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

__all__ = ["progress", "LogProgress", "on_terminal"]

T = TypeVar("T")
logger = logging.getLogger("tstcnn.progress")


def on_terminal() -> bool:
    """Whether standard error is an interactive terminal (where a redrawn bar belongs)."""
    stream = sys.stderr
    return bool(getattr(stream, "isatty", None) and stream.isatty())


class LogProgress:
    """The part of tqdm's interface the package uses, reported as log lines at every ``log_every`` of ``total``."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", log_every: float = 0.1, disable: bool = False) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.disable, self.n, self.postfix = disable, 0, ""
        self._step = max(1, math.ceil(total * log_every)) if total else None
        self._next, self._started, self._reported = self._step, time.perf_counter(), 0

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("this progress reporter wraps no iterable")
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, count: int = 1) -> None:
        self.n += count
        if self._step is not None and self._next is not None and self.n >= self._next:
            self._report()
            while self._next <= self.n:
                self._next += self._step

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def write(self, message: str) -> None:
        logger.info("%s", message)

    def close(self) -> None:
        if self._next is not None and self.n > self._reported:
            self._report()
        self._next = None

    def _report(self) -> None:
        self._reported = self.n
        if self.disable:
            return
        seconds = time.perf_counter() - self._started
        share = f" ({self.n / self.total:.0%})" if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        logger.info("%s: %d/%s %s%s in %.0f s%s", self.desc or "progress", self.n, self.total or "?", self.unit,
                    share, seconds, extra)


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             enabled: bool = True, leave: bool = False, log_every: float = 0.1) -> Any:
    """A tqdm bar on a terminal, a :class:`LogProgress` otherwise; nothing at all when not ``enabled``.

    Both iterate over ``iterable`` and take ``update``, ``set_postfix``, ``write`` and ``close``.
    """
    if enabled and on_terminal():
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True)
    return LogProgress(iterable, total=total, desc=desc, unit=unit, log_every=log_every, disable=not enabled)
