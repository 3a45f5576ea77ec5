"""Did a change help? Two evaluated runs compared clip by clip on one split.

:func:`compare_runs` reads each run's ``predictions_<split>.csv`` (written by ``tstcnn evaluate``), checks that
both runs scored the same clips of the same store with the same classes, and gives the accuracy difference with
its percentile bootstrap interval over clips and McNemar's exact p-value
(:mod:`tstcnn.runtime.statistics`). The study uses :func:`paired_correct` for attention against none.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tstcnn.engine.evaluate import SPLITS, read_predictions
from tstcnn.runtime.statistics import bootstrap_difference, mcnemar_exact

logger = logging.getLogger(__name__)

__all__ = ["CLIP_KEY", "paired_correct", "compare_runs", "comparison_text"]

CLIP_KEY = ("index", "video_id", "begin", "end", "true_class")  # what makes two rows the same clip


def _predictions(run_dir: Path, split: str) -> list[dict[str, str]]:
    path = run_dir / f"predictions_{split}.csv"
    if not path.is_file():
        raise ValueError(f"{run_dir}: no {path.name}; score the run with tstcnn evaluate {run_dir} first")
    return read_predictions(path)


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _check_same_source(run_a: Path, run_b: Path, split: str) -> None:
    """A ValueError when the runs read different stores or were trained on different classes."""
    store_a, store_b = (_json(r / "store.json").get("path") for r in (run_a, run_b))
    if store_a and store_b and Path(store_a).resolve() != Path(store_b).resolve():
        raise ValueError(f"{run_a} and {run_b} were scored on different stores ({store_a} and {store_b})")
    classes_a, classes_b = (_json(r / "results.json").get("splits", {}).get(split, {}).get("classes")
                            for r in (run_a, run_b))
    if classes_a and classes_b and classes_a != classes_b:
        raise ValueError(f"{run_a} and {run_b} have different classes ({len(classes_a)} and {len(classes_b)}: "
                         "not the same taxonomy)")


def paired_correct(run_a: str | Path, run_b: str | Path, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """One right/wrong flag per clip of ``split`` for each run, clips in the same order.

    Raises a ValueError when a run was not evaluated on ``split``, the runs read different stores or classes,
    or their clip lists differ (another split, seed-dependent negatives, another clip length).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    run_a, run_b = Path(run_a), Path(run_b)
    for run in (run_a, run_b):
        if not run.is_dir():
            raise ValueError(f"{run}: no such run folder")
    _check_same_source(run_a, run_b, split)
    rows_a, rows_b = _predictions(run_a, split), _predictions(run_b, split)
    clips_a = [tuple(r[k] for k in CLIP_KEY) for r in rows_a]
    clips_b = [tuple(r[k] for k in CLIP_KEY) for r in rows_b]
    if clips_a != clips_b:
        differing = sum(a != b for a, b in zip(clips_a, clips_b)) + abs(len(clips_a) - len(clips_b))
        raise ValueError(f"{run_a} and {run_b} scored different {split} clips ({len(clips_a)} and {len(clips_b)} "
                         f"clips, {differing} differ): not the same store, split or sampling")
    correct = [np.array([r["true_class"] == r["predicted_class"] for r in rows], dtype=bool)
               for rows in (rows_a, rows_b)]
    return correct[0], correct[1]


def compare_runs(run_a: str | Path, run_b: str | Path, split: str = "test", *, resamples: int = 10000,
                 confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Accuracy of ``run_a`` minus ``run_b`` on the same clips: bootstrap interval and McNemar's exact test."""
    correct_a, correct_b = paired_correct(run_a, run_b, split)
    if correct_a.size == 0:
        raise ValueError(f"{run_a}: no {split} clips to compare")
    bootstrap = bootstrap_difference(correct_a, correct_b, resamples=resamples, confidence=confidence, seed=seed)
    mcnemar = mcnemar_exact(correct_a, correct_b)
    return {"run_a": str(run_a), "run_b": str(run_b), "split": split, "clips": int(correct_a.size),
            "accuracy_a": float(correct_a.mean()), "accuracy_b": float(correct_b.mean()),
            "difference": bootstrap.difference, "bootstrap": bootstrap.as_dict(), "mcnemar": mcnemar.as_dict()}


def comparison_text(result: Mapping[str, Any]) -> str:
    """The comparison as lines a person reads, each number named."""
    boot, test = result["bootstrap"], result["mcnemar"]
    level = f"{100 * boot['confidence']:g}%"
    return "\n".join([
        f"split: {result['split']} ({result['clips']} clips, the same in both runs)",
        f"accuracy A: {result['accuracy_a']:.2%}  ({result['run_a']})",
        f"accuracy B: {result['accuracy_b']:.2%}  ({result['run_b']})",
        f"difference A - B: {100 * result['difference']:+.2f} points",
        f"bootstrap {level} interval of the difference: [{100 * boot['low']:+.2f}, {100 * boot['high']:+.2f}] points "
        f"({boot['resamples']} resamples of the clips, seed {boot['seed']})",
        f"McNemar exact p-value: {test['p_value']:.4g}  (A right and B wrong: {test['a_only']} clips, "
        f"B right and A wrong: {test['b_only']}, both right: {test['both_right']}, both wrong: {test['both_wrong']})",
    ]) + "\n"
