"""tstcnn train / evaluate / study end to end on a tiny prepared store built with write_video_entry."""

import json
import shutil

import numpy as np
import pytest
import yaml

from tstcnn.cli import main
from tstcnn.config import PrepConfig
from tstcnn.engine.study import epochs_to_fraction, study_entries
from tstcnn.prep.store import finalize_store, write_video_entry

pytestmark = pytest.mark.usefixtures("one_thread")
CLASSES = ("Serve Forehand Loop", "Offensive Backhand Hit", "Negative")
H, W = 32, 48
TINY = ["--config", "cpu-small", "--input-size", "8x16x16", "--channels", "4x4x4", "--num-features", "8",
        "--batch-size", "2", "--num-workers", "0", "--quiet"]


def _video(frames, label_index, seed):
    """Noise frames with a bright square whose height encodes the class, moving right (and that motion as flow)."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 80, (frames, H, W, 3), dtype=np.uint8)
    flow = np.zeros((frames, H, W, 2), np.float32)
    top = 4 + 10 * label_index
    for t in range(frames):
        x = 8 + t % 24
        rgb[t, top:top + 8, x:x + 8] = 250
        flow[t, top:top + 8, x:x + 8, 0] = 1.0
    roi = np.tile([[W / 2, H / 2]], (frames, 1)).astype(np.float32)
    return rgb, flow, roi


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    seed = 0
    for split, per_class in (("train", 3), ("validation", 1), ("test", 1)):
        for label_index, label in enumerate(CLASSES):
            for k in range(per_class):
                seed += 1
                write_video_entry(root, f"{split}-{label_index}-{k}", *_video(10, label_index, seed),
                                  {"split": split, "label": label, "actions": [], "fps": 25.0})
    finalize_store(root, PrepConfig(width=W), CLASSES)
    return root


def test_train_evaluate_resume_through_the_command_line(store, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--store", str(store), "--out", str(run), "--modality", "twin", "--block", "none",
            "--epochs", "2", "--scheduler", "constant", *TINY]
    assert main([*args, "--lr", "0.05", "--no-nesterov", "--split-seed", "3", "--device", "cpu"]) == 0
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"]["num_classes"] == 3 and cfg["model"]["modality"] == "twin"
    assert cfg["train"]["epochs"] == 2 and cfg["train"]["scheduler"] == "constant"
    assert cfg["train"]["lr"] == 0.05 and cfg["train"]["nesterov"] is False and cfg["data"]["split_seed"] == 3
    assert cfg["model"]["input_size"] == [8, 16, 16] and cfg["train"]["batch_size"] == 2
    assert json.loads((run / "store.json").read_text())["path"] == str(store.resolve())
    assert "best validation accuracy" in capsys.readouterr().out

    assert main(args) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert main([*args[:-len(TINY) - 4], "--epochs", "3", "--scheduler", "constant", *TINY, "--resume"]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3

    assert main(["evaluate", str(run), "--quiet"]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["splits"]["train"]["num_samples"] == 9 and results["splits"]["test"]["num_samples"] == 3
    assert all(0 <= results[f"{s}_accuracy"] <= 1 for s in ("train", "validation", "test"))
    assert (run / "confusion_test_hand.png").is_file() and (run / "summary.md").is_file()


def test_bad_inputs_give_one_line_errors(store, tmp_path, capsys):
    assert main(["train", "--store", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tstcnn train: error:") and "\n" not in err
    assert main(["evaluate", str(tmp_path / "missing-run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tstcnn evaluate: error:") and "missing-run" in err and "\n" not in err


def test_study_writes_table_figure_and_fusion(store, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["study", "--store", str(store), "--out", str(out), "--epochs", "1", "--models", "rgb-none",
                 "flow-attention", *TINY]) == 0
    table = (out / "study.md").read_text()
    assert "| RGB without attention |" in table and "| Flow with attention |" in table
    rows = (out / "study.csv").read_text().splitlines()
    assert rows[0].startswith("model,label,seeds,train_accuracy_mean,train_accuracy_sd,train_accuracy_ci_low")
    assert len(rows) == 3 and rows[1].startswith("rgb-none,RGB without attention,0,")
    assert (out / "fig6_validation_accuracy.png").stat().st_size > 1000
    # A second call finds the runs finished: nothing is trained again.
    mtime = (out / "rgb-none" / "seed-0" / "checkpoints" / "last.pt").stat().st_mtime
    again = ["study", "--store", str(store), "--out", str(out), "--epochs", "1", "--models", "rgb-none", *TINY]
    assert main(again) == 0
    assert (out / "rgb-none" / "seed-0" / "checkpoints" / "last.pt").stat().st_mtime == mtime
    # Late fusion averages two finished single-stream runs; tiny RGB and Flow runs stand in for the I3D streams.
    shutil.copytree(out / "rgb-none", out / "i3d-rgb")
    shutil.copytree(out / "flow-attention", out / "i3d-flow")
    assert main(["study", "--store", str(store), "--out", str(out), "--epochs", "1", "--models", "i3d-fusion",
                 *TINY]) == 0
    assert "| I3D RGB + Flow (late fusion) |" in (out / "study.md").read_text()
    fused = json.loads((out / "i3d-fusion" / "seed-0" / "results.json").read_text())
    assert fused["splits"]["test"]["num_samples"] == 3 and 0 <= fused["test_accuracy"] <= 1
    assert (out / "i3d-fusion" / "seed-0" / "confusion_test.png").is_file()
    predictions = (out / "i3d-fusion" / "seed-0" / "predictions_test.csv").read_text().splitlines()
    assert predictions[0] == "index,video_id,begin,end,true_class,predicted_class,probability"
    assert len(predictions) == 4 and predictions[1].split(",")[1].startswith("test-")


def test_epochs_to_ninety_percent_of_best_validation():
    rows = [{"epoch": e, "val_accuracy": a} for e, a in enumerate([0.1, 0.5, 0.85, 0.7, 0.9], start=1)]
    assert epochs_to_fraction(rows) == 4 - 1  # 0.85 ≥ 0.9 × 0.9 = 0.81 first at epoch 3
    assert epochs_to_fraction(rows, 1.0) == 5 and epochs_to_fraction([]) is None
    assert [e.name for e in study_entries(["i3d-fusion"])] == ["i3d-rgb", "i3d-flow", "i3d-fusion"]
    with pytest.raises(ValueError, match="unknown study model"):
        study_entries(["resnet"])
