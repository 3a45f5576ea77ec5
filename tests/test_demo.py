"""The demo end to end at a tiny size: every file it promises, consistent figures, and a resume that redoes nothing."""

import json

import numpy as np
import pytest
import yaml

from tstcnn.cli import main
from tstcnn.config import PRESETS, config_to_dict, override
from tstcnn.demo import DemoSettings, run_demo
from tstcnn.io.mediaeval import read_submission
from tstcnn.taxonomy import TTSTROKE21_CLASSES


@pytest.fixture
def tiny_preset(tmp_path):
    cfg = override(PRESETS["cpu-small"], "model", input_size=(8, 16, 16), channels=(4, 4, 8), num_features=8)
    cfg = override(cfg, "prep", width=64)
    cfg = override(cfg, "train", epochs=2, batch_size=16)
    cfg = override(cfg, "data", num_workers=0)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    return str(path)


@pytest.mark.slow
def test_demo_writes_a_scored_run_and_resumes(tmp_path, tiny_preset):
    out = tmp_path / "demo"
    settings = DemoSettings(per_class=4, size=(128, 72), fps=12.0, workers=1, preset=tiny_preset, epochs=None)
    results = run_demo(out, settings, progress=False)

    stored = json.loads((out / "results.json").read_text())
    assert stored["test_accuracy"] == pytest.approx(results["test_accuracy"])
    for split in ("train", "validation", "test"):  # each accuracy is its confusion matrix's diagonal share
        confusion = np.asarray(stored["splits"][split]["confusion_matrix"])
        assert stored[f"{split}_accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    # The MediaEval scorer on the submission agrees with evaluate on the same best checkpoint and windows.
    assert stored["submission_accuracy"] == pytest.approx(stored["test_accuracy"])
    submission = read_submission(out / "submission.xml")
    truth = read_submission(out / "data" / "classificationTask" / "test_ground_truth.xml")
    assert set(submission) == set(truth) and len(truth) == len(TTSTROKE21_CLASSES)
    assert set(submission.values()) <= set(TTSTROKE21_CLASSES)
    assert (out / "checkpoints" / "best.pt").is_file() and (out / "summary.md").is_file()
    assert (out / "attention" / "attention_grid.png").is_file()
    html = (out / "report.html").read_text()
    assert "attention_grid" in html and "curves" in html

    again = run_demo(out, settings, progress=False)
    assert again["test_accuracy"] == pytest.approx(results["test_accuracy"])
    assert again["timings_s"]["synthetic benchmark"] < results["timings_s"]["synthetic benchmark"]


def test_demo_refuses_too_few_clips(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--per-class", "2"]) == 2
    assert "--per-class must be at least 4" in capsys.readouterr().err
