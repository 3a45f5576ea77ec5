"""Statistics a reviewer asks of a comparison: intervals over seeds, paired differences, McNemar, bootstrap.

* :func:`summarize`: mean, sample standard deviation and Student-t confidence interval of values over seeds.
* :func:`paired_difference`: the same for ``a - b`` paired by seed (attention against none at one seed).
* :func:`mcnemar_exact`: McNemar's exact test on two classifiers' right/wrong answers for the same clips
  (two-sided binomial test on the discordant pairs, success probability 1/2).
* :func:`bootstrap_difference`: percentile bootstrap interval of the accuracy difference over clips.

Accuracies are fractions; nothing here knows about runs or files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["Summary", "summarize", "paired_difference", "McNemar", "mcnemar_exact", "mcnemar_p_value",
           "Bootstrap", "bootstrap_difference"]


@dataclass(frozen=True)
class Summary:
    """Values over seeds: ``n``, ``mean``, sample ``sd`` and the ``low``/``high`` ends of the t-interval.

    ``sd`` and the interval are None for fewer than two values; everything is None for none.
    """

    n: int
    mean: float | None
    sd: float | None
    low: float | None
    high: float | None
    confidence: float = 0.95

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def above(self, value: float = 0.0) -> bool:
        """True when the whole interval lies above ``value`` (False without an interval)."""
        return self.low is not None and self.low > value

    def below(self, value: float = 0.0) -> bool:
        """True when the whole interval lies below ``value`` (False without an interval)."""
        return self.high is not None and self.high < value


def summarize(values: Sequence[float | None], confidence: float = 0.95) -> Summary:
    """Mean, sample standard deviation (n - 1) and two-sided Student-t interval of ``values`` (None skipped)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    data = np.asarray([float(v) for v in values if v is not None], dtype=np.float64)
    n = int(data.size)
    if n == 0:
        return Summary(0, None, None, None, None, confidence)
    mean = float(data.mean())
    if n == 1:
        return Summary(1, mean, None, None, None, confidence)
    sd = float(data.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return Summary(n, mean, sd, mean - half, mean + half, confidence)


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Summary:
    """:func:`summarize` of ``a[i] - b[i]``: pairs sharing a seed, so seed-to-seed spread cancels."""
    if len(a) != len(b):
        raise ValueError(f"paired values differ in length: {len(a)} vs {len(b)}")
    return summarize([x - y for x, y in zip(a, b)], confidence)


def mcnemar_p_value(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts (``a`` right and ``b`` wrong, and the reverse).

    Under the null each discordant clip is a fair coin: p = min(1, 2 P(X <= min(a_only, b_only))) with
    X ~ Binomial(a_only + b_only, 1/2), summed exactly in integers; p = 1 without discordant clips.
    """
    if a_only < 0 or b_only < 0:
        raise ValueError(f"discordant counts must be non-negative, got {a_only} and {b_only}")
    n = a_only + b_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(a_only, b_only) + 1))
    return min(1.0, 2 * tail / 2 ** n)


@dataclass(frozen=True)
class McNemar:
    """Right/wrong agreement of two classifiers on the same clips, and McNemar's exact p-value."""

    both_right: int
    a_only: int
    b_only: int
    both_wrong: int
    p_value: float

    @property
    def n(self) -> int:
        return self.both_right + self.a_only + self.b_only + self.both_wrong

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _correct(name: str, values: Sequence[bool] | np.ndarray) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one right/wrong flag per clip")
    return array.astype(bool)


def mcnemar_exact(correct_a: Sequence[bool] | np.ndarray, correct_b: Sequence[bool] | np.ndarray) -> McNemar:
    """McNemar's exact test of ``a`` against ``b`` from one right/wrong flag per clip, clips in the same order."""
    a, b = _correct("correct_a", correct_a), _correct("correct_b", correct_b)
    if a.shape != b.shape:
        raise ValueError(f"the two classifiers were scored on different numbers of clips: {a.size} vs {b.size}")
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    return McNemar(int(np.sum(a & b)), a_only, b_only, int(np.sum(~a & ~b)), mcnemar_p_value(a_only, b_only))


@dataclass(frozen=True)
class Bootstrap:
    """Accuracy of ``a`` minus accuracy of ``b`` on the clips, and its percentile bootstrap interval."""

    difference: float
    low: float
    high: float
    confidence: float
    resamples: int
    seed: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_difference(correct_a: Sequence[bool] | np.ndarray, correct_b: Sequence[bool] | np.ndarray, *,
                         resamples: int = 10000, confidence: float = 0.95, seed: int = 0) -> Bootstrap:
    """Percentile bootstrap of ``accuracy(a) - accuracy(b)``, resampling clips with replacement.

    Each clip contributes +1, 0 or -1 to the difference, so a resample of ``n`` clips is a multinomial draw of
    how many of each it holds: the same distribution as drawing clip indices, without an ``n × resamples`` array.
    """
    a, b = _correct("correct_a", correct_a), _correct("correct_b", correct_b)
    if a.shape != b.shape:
        raise ValueError(f"the two classifiers were scored on different numbers of clips: {a.size} vs {b.size}")
    if a.size == 0:
        raise ValueError("no clips to compare")
    if resamples < 1 or not 0 < confidence < 1:
        raise ValueError("resamples must be ≥ 1 and confidence in (0, 1)")
    n = a.size
    counts = np.array([np.sum(a & ~b), np.sum(a == b), np.sum(~a & b)], dtype=np.float64)
    draws = np.random.default_rng(seed).multinomial(n, counts / n, size=resamples)
    differences = (draws[:, 0] - draws[:, 2]) / n
    low, high = np.quantile(differences, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return Bootstrap(float((counts[0] - counts[2]) / n), float(low), float(high), confidence, resamples, seed)
