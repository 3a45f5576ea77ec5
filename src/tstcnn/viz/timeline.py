"""Detection timeline of one video: per-frame probabilities and the strokes found, with the ground truth.

Top panel: the stroke probability (1 − p(Negative)) after smoothing, the threshold, and the probability
of each stroke class that wins somewhere. Bottom panel: one row of predicted segments, one of true
strokes when known, each segment coloured by class; each row is one collection, however many strokes it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from tstcnn.io.mediaeval import Action
from tstcnn.viz.figures import save_figure

__all__ = ["plot_timeline"]


def _segment_row(ax, actions: Sequence[Action], row: float, colours: dict[str, tuple], scale: float) -> None:
    """One row of segments as a single collection: a long video's thousands of strokes stay one artist."""
    if not actions:
        return
    unknown = (0.4, 0.4, 0.4, 1.0)
    ax.broken_barh([(a.begin * scale, (a.end - a.begin) * scale) for a in actions], (row - 0.35, 0.7),
                   facecolors=[colours.get(a.move or "", unknown) for a in actions])


def plot_timeline(path: str | Path, frame_probs: np.ndarray, classes: Sequence[str], negative_index: int,
                  predicted: Sequence[Action], truth: Sequence[Action] | None = None, fps: float | None = None,
                  threshold: float = 0.5, title: str = "") -> Path:
    """Write the timeline PNG of one video.

    Args:
        path: output PNG.
        frame_probs: per-frame class probabilities ``(N, C)`` (smoothed, as used for the segments).
        classes: class names of the columns.
        negative_index: column of the rejection class.
        predicted: strokes found (``end`` exclusive).
        truth: true strokes, when known.
        fps: frames per second; the time axis is in seconds when given, in frames otherwise.
        threshold: the stroke-probability threshold used, drawn as a line.
    """
    frame_probs = np.asarray(frame_probs)
    scale = 1.0 / fps if fps else 1.0
    time = np.arange(len(frame_probs)) * scale
    strokes = [c for c in range(len(classes)) if c != negative_index]
    shown = sorted({strokes[i] for i in np.unique(frame_probs[:, strokes].argmax(1))})
    palette = plt.get_cmap("tab20")
    # tab20 pairs a dark and a light shade: all dark shades first, so neighbouring classes differ in hue
    colours = {classes[c]: palette((2 * i) % 20 + (2 * i // 20) % 2) for i, c in enumerate(strokes)}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 4.2), sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    top.plot(time, 1.0 - frame_probs[:, negative_index], color="black", lw=1.4, label="stroke (1 − p(Negative))")
    for c in shown:
        top.plot(time, frame_probs[:, c], lw=0.8, color=colours[classes[c]], label=classes[c])
    top.axhline(threshold, color="grey", ls="--", lw=0.8)
    top.set_ylim(0, 1.02)
    top.set_ylabel("probability")
    top.legend(fontsize=6, loc="upper right", ncol=2)
    rows = [("predicted", predicted)] + ([("truth", truth)] if truth is not None else [])
    for i, (_, actions) in enumerate(rows):
        _segment_row(bottom, actions, len(rows) - 1 - i, colours, scale)
    bottom.set_yticks(range(len(rows)), [name for name, _ in reversed(rows)])
    bottom.set_ylim(-0.6, len(rows) - 0.4)
    bottom.set_xlabel("time (s)" if fps else "frame")
    bottom.set_xlim(0, max(len(frame_probs), 1) * scale)
    if title:
        top.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
