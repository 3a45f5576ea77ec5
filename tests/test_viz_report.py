import base64
import json
import re

import numpy as np
import pytest
from PIL import Image

from tstcnn.viz.report import build_report


def _png(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), colour, np.uint8)).save(path)
    return path.read_bytes()


def test_report_embeds_every_figure_in_its_section_and_is_self_contained(tmp_path):
    run = tmp_path / "run"
    figures = {
        "curves.png": _png(run / "curves.png", 10),
        "confusion_type.png": _png(run / "confusion_type.png", 20),
        "attention/grid.png": _png(run / "attention" / "grid.png", 30),
        "detection/v1_timeline.png": _png(run / "detection" / "v1_timeline.png", 40),
    }
    (run / "results.json").write_text(json.dumps({
        "test_accuracy": 0.75, "train_accuracy": 0.9,
        "per_class": {"Negative": {"precision": 0.5, "recall": 1.0, "f1": 0.6667}}}))
    (run / "config.yaml").write_text("model:\n  modality: twin\n")
    page = build_report(run).read_text()
    for name, data in figures.items():
        assert base64.b64encode(data).decode() in page, f"{name} is not embedded"
    order = [page.index(h) for h in ("Results", "Per-class scores", "Training curves", "Confusion matrices",
                                     "Attention maps", "Detection timelines", "Configuration")]
    assert order == sorted(order)
    assert "0.7500" in page and "modality: twin" in page and "Negative" in page
    assert not re.search(r'(src|href)="(http|file|/)', page), "the page must not reference outside files"


def test_report_of_empty_or_missing_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        build_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="nothing to report"):
        build_report(tmp_path / "empty")
