"""Training and evaluation figures: loss / accuracy curves, row-normalised confusion matrices, and the
paper's Figure 6 (validation accuracy per epoch, one line per model, or the mean over seeds with a band).
Matplotlib's Agg back-end only; every file is written atomically so a viewer never sees half a PNG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from tstcnn.io.atomic import atomic_path
from tstcnn.runtime.metrics import normalize_rows

__all__ = ["plot_curves", "plot_confusion", "plot_validation_overlay", "mean_curve", "plot_validation_bands",
           "save_figure", "literal_text"]


def save_figure(figure: plt.Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``figure`` as a PNG atomically and close it (figures of a long run are drawn many times)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return path


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(int(r["epoch"]), float(r[key])) for r in rows if r.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_curves(metrics_rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Loss (left) and accuracy (right) per epoch, train and validation, with learning-rate changes marked."""
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric in ((loss_axis, "loss"), (acc_axis, "accuracy")):
        for split, style in (("train", "-"), ("val", "--")):
            epochs, values = _series(metrics_rows, f"{split}_{metric}")
            if epochs:
                axis.plot(epochs, values, style, label="train" if split == "train" else "validation")
        for row in metrics_rows:
            if row.get("lr_change"):
                axis.axvline(int(row["epoch"]), color="grey", alpha=0.4, linewidth=0.8)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    acc_axis.set_ylim(0, 1)
    loss_axis.set_title("loss (grey lines: learning-rate changes)")
    acc_axis.set_title("accuracy")
    return save_figure(figure, path)


def literal_text(text: str) -> str:
    """``text`` as matplotlib should draw it, character for character: a user's ``$…$`` is not math markup."""
    return text.replace("$", r"\$")


def plot_confusion(cm: np.ndarray | Sequence[Sequence[int]], names: Sequence[str], path: str | Path,
                   title: str = "") -> Path:
    """Confusion matrix normalised per true class (rows), with the raw counts written in the cells."""
    counts = np.asarray(cm, dtype=np.int64)
    normalized = normalize_rows(counts)
    size = max(4.0, 0.42 * len(names) + 2.5)
    figure, axis = plt.subplots(figsize=(size + 1.5, size))
    image = axis.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    labels = [literal_text(name) for name in names]
    axis.set_xticks(range(len(names)), labels, rotation=90, fontsize=8)
    axis.set_yticks(range(len(names)), labels, fontsize=8)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    for i, j in zip(*np.nonzero(counts)):
        axis.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                  color="white" if normalized[i, j] > 0.5 else "black")
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="fraction of the true class")
    accuracy = np.trace(counts) / counts.sum() if counts.sum() else 0.0
    axis.set_title(literal_text(f"{title} (accuracy {accuracy:.1%}, rows normalised)".strip()))
    return save_figure(figure, path)


def plot_validation_overlay(runs: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path,
                            title: str = "Validation accuracy per epoch") -> Path:
    """Figure 6 of the paper: one validation-accuracy line per model (``runs``: name → metrics rows)."""
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for name, rows in runs.items():
        epochs, values = _series(rows, "val_accuracy")
        if epochs:
            axis.plot(epochs, values, label=literal_text(name), linestyle="-" if "with attention" in name else "--")
    return _save_accuracy_figure(figure, axis, title, path)


def _save_accuracy_figure(figure: Any, axis: Any, title: str, path: str | Path) -> Path:
    """Label a validation-accuracy-per-epoch axis the one way Figure 6 is drawn, and save its figure."""
    axis.set_xlabel("epoch")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_ylabel("validation accuracy")
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.set_title(title)
    axis.legend(fontsize=8)
    return save_figure(figure, path)


def mean_curve(runs: Sequence[Sequence[Mapping[str, Any]]], key: str = "val_accuracy"
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, mean and sample standard deviation of ``key`` over ``runs`` (each epoch over the runs that have it;
    the deviation is 0 where only one run has the epoch)."""
    by_epoch: dict[int, list[float]] = {}
    for rows in runs:
        for epoch, value in zip(*_series(rows, key)):
            by_epoch.setdefault(epoch, []).append(value)
    epochs = np.array(sorted(by_epoch), dtype=np.int64)
    means = np.array([np.mean(by_epoch[e]) for e in epochs])
    sds = np.array([np.std(by_epoch[e], ddof=1) if len(by_epoch[e]) > 1 else 0.0 for e in epochs])
    return epochs, means, sds


def plot_validation_bands(runs: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]], path: str | Path,
                          title: str = "Validation accuracy per epoch, mean over seeds ± 1 sd") -> Path:
    """Figure 6 over seeds: per model (``runs``: name → one metrics-row list per seed) the mean validation
    accuracy per epoch and a ± 1 standard-deviation band."""
    figure, axis = plt.subplots(figsize=(8, 4.5))
    colours: dict[str, str] = {}  # one colour per input (RGB, Flow, Twin…): with and without attention side by side
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for name, seeds in runs.items():
        epochs, means, sds = mean_curve(seeds)
        if not epochs.size:
            continue
        colour = colours.setdefault(name.split(" with")[0], palette[len(colours) % len(palette)])
        label = literal_text(f"{name} ({len(seeds)} seed{'s' * (len(seeds) > 1)})")
        axis.plot(epochs, means, color=colour, label=label, linestyle="-" if "with attention" in name else "--")
        if len(seeds) > 1:
            axis.fill_between(epochs, np.clip(means - sds, 0, 1), np.clip(means + sds, 0, 1), color=colour,
                              alpha=0.12, linewidth=0)
    return _save_accuracy_figure(figure, axis, title, path)
