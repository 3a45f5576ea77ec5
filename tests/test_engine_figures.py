"""Training and evaluation figures: files are real PNGs, empty classes and missing values do not break them."""

import matplotlib.image as mpimg
import numpy as np
import pytest

from tstcnn.viz.figures import (
    literal_text,
    mean_curve,
    plot_confusion,
    plot_curves,
    plot_validation_bands,
    plot_validation_overlay,
)


def test_curves_with_rate_changes_and_missing_validation(tmp_path):
    rows = [{"epoch": e, "train_loss": 2.0 / e, "train_accuracy": 0.1 * e, "val_loss": None,
             "val_accuracy": 0.08 * e, "lr_change": "loss_plateau" if e == 3 else None} for e in range(1, 6)]
    image = mpimg.imread(plot_curves(rows, tmp_path / "curves.png"))
    assert image.shape[1] > image.shape[0] > 200  # two panels side by side


def test_confusion_keeps_empty_rows_and_overlay_draws_every_run(tmp_path):
    cm = np.array([[3, 1, 0], [0, 0, 0], [1, 0, 2]])
    image = mpimg.imread(plot_confusion(cm, ["a", "b", "c"], tmp_path / "confusion.png", "test"))
    assert image.ndim == 3 and not np.isnan(image).any()
    runs = {"RGB with attention": [{"epoch": 1, "val_accuracy": 0.2}, {"epoch": 2, "val_accuracy": 0.4}],
            "RGB without attention": [{"epoch": 1, "val_accuracy": 0.1}]}
    assert mpimg.imread(plot_validation_overlay(runs, tmp_path / "fig6.png")).shape[0] > 200
    assert not list(tmp_path.glob(".*tmp"))


def test_class_names_are_drawn_literally_not_as_math(tmp_path):
    names = ["$\\notacommand$", "cost $5", "plain"]
    path = plot_confusion(np.eye(3, dtype=int), names, tmp_path / "confusion.png", title="a $title")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert literal_text("a $b$") == "a \\$b\\$"


def test_fig6_over_seeds_averages_each_epoch_over_the_runs_that_have_it(tmp_path):
    seeds = [[{"epoch": 1, "val_accuracy": 0.2}, {"epoch": 2, "val_accuracy": 0.6}],
             [{"epoch": 1, "val_accuracy": 0.4}, {"epoch": 2, "val_accuracy": None}, {"epoch": 3, "val_accuracy": 0.9}]]
    epochs, means, sds = mean_curve(seeds)
    assert epochs.tolist() == [1, 2, 3]
    assert means.tolist() == pytest.approx([0.3, 0.6, 0.9]) and sds[0] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert sds[1:].tolist() == [0.0, 0.0]  # one run: no spread to draw
    path = plot_validation_bands({"Twin with attention": seeds, "Twin without attention": seeds[:1]},
                                 tmp_path / "fig6.png")
    assert mpimg.imread(path).shape[0] > 200
