"""tstcnn study over seeds and tstcnn compare end to end: two tiny models × two seeds on a tiny store, interrupted
and resumed, the tables checked against the runs' own files."""

import csv
import json
import shutil

import numpy as np
import pytest
import yaml
from scipy import stats

from tstcnn.cli import main
from tstcnn.config import PRESETS, override
from tstcnn.engine import study
from tstcnn.engine.compare import paired_correct
from tstcnn.runtime.statistics import mcnemar_exact

from store_helpers import make_store

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]
CLASSES = ("Serve Forehand Loop", "Offensive Backhand Hit", "Negative")
TINY = ["--config", "cpu-small", "--input-size", "8x16x16", "--channels", "4x4x4", "--num-features", "8",
        "--batch-size", "4", "--num-workers", "0", "--epochs", "2", "--precision", "fp32", "--no-channels-last",
        "--quiet"]
MODELS = ["--models", "rgb-none", "rgb-attention"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    videos = {f"{split}-{c}-{k}": (10, {"split": split, "label": label})
              for split, per_class in (("train", 2), ("validation", 1), ("test", 2))
              for c, label in enumerate(CLASSES) for k in range(per_class)}
    return make_store(tmp_path_factory.mktemp("store"), videos, CLASSES).root


def _tiny_cfg():
    cfg = override(PRESETS["cpu-small"], "model", input_size=(8, 16, 16), channels=(4, 4, 4), num_features=8)
    cfg = override(cfg, "data", num_workers=0)
    return override(cfg, "train", batch_size=4, epochs=2, precision="fp32", channels_last=False)


def _csv(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_study_over_seeds_interrupted_resumed_and_compared(store, tmp_path, monkeypatch, capsys):
    out = tmp_path / "study"
    real_train, calls = study.train, []

    def killed_in_third_run(cfg, store_, run_dir, **options):
        calls.append(run_dir)
        if len(calls) == 3:  # the first run of seed 1 stops after its first epoch's checkpoint
            real_train(override(cfg, "train", epochs=1), store_, run_dir, **options)
            raise KeyboardInterrupt
        return real_train(cfg, store_, run_dir, **options)

    monkeypatch.setattr(study, "train", killed_in_third_run)
    with pytest.raises(KeyboardInterrupt):
        study.run_study(_tiny_cfg(), store, out, models=["rgb-none", "rgb-attention"], seeds=[0, 1], progress=False)
    # Seed-major: seed 0's grid finished first, so the tables already give a complete single-seed study.
    assert calls == [out / "rgb-none" / "seed-0", out / "rgb-attention" / "seed-0", out / "rgb-none" / "seed-1"]
    partial = _csv(out / "study_runs.csv")
    assert [(r["model"], r["seed"]) for r in partial] == [("rgb-none", "0"), ("rgb-attention", "0")]
    assert "| RGB with attention | 1 |" in (out / "study.md").read_text()
    assert "seeds 0, 1 (2 of 4 runs finished)" in (out / "study.md").read_text()
    interrupted = (out / "rgb-none" / "seed-1" / "metrics.jsonl").read_text().splitlines()
    assert len(interrupted) == 1
    finished = {p: p.stat().st_mtime for p in out.glob("*/seed-0/checkpoints/last.pt")}
    monkeypatch.setattr(study, "train", real_train)

    # The same command again: seed 0 is kept, the killed run resumes at epoch 2, the rest is trained.
    assert main(["study", "--store", str(store), "--out", str(out), *MODELS, "--seeds", "0", "1", *TINY]) == 0
    printed = capsys.readouterr().out
    assert "| RGB without attention | 2 |" in printed and "study_runs.csv" in printed
    assert {p: p.stat().st_mtime for p in finished} == finished
    resumed = (out / "rgb-none" / "seed-1" / "metrics.jsonl").read_text().splitlines()
    assert len(resumed) == 2 and resumed[0] == interrupted[0]
    for model in ("rgb-none", "rgb-attention"):
        for seed in (0, 1):
            config = yaml.safe_load((out / model / f"seed-{seed}" / "config.yaml").read_text())
            assert config["train"]["seed"] == seed and config["model"]["block"] == model.split("-")[1]

    # study.csv: mean, sd and t-interval over the seeds of each run's own results.json.
    runs = _csv(out / "study_runs.csv")
    assert [(r["model"], r["seed"]) for r in runs] == [("rgb-none", "0"), ("rgb-attention", "0"),
                                                        ("rgb-none", "1"), ("rgb-attention", "1")]
    summary = {r["model"]: r for r in _csv(out / "study.csv")}
    for model in ("rgb-none", "rgb-attention"):
        tests = [json.loads((out / model / f"seed-{s}" / "results.json").read_text())["test_accuracy"] for s in (0, 1)]
        low, high = stats.t.interval(0.95, 1, loc=np.mean(tests), scale=stats.sem(tests)) if tests[0] != tests[1] \
            else (np.mean(tests), np.mean(tests))
        row = summary[model]
        assert row["seeds"] == "0 1"
        assert float(row["test_accuracy_mean"]) == pytest.approx(np.mean(tests))
        assert float(row["test_accuracy_sd"]) == pytest.approx(np.std(tests, ddof=1))
        assert float(row["test_accuracy_ci_low"]) == pytest.approx(low)
        assert float(row["test_accuracy_ci_high"]) == pytest.approx(high)
        assert row["test_type_accuracy_mean"] != "" and row["epochs_to_95pct_mean"] != ""

    # study.md: attention against none with McNemar per seed from the same clips, and the claims answered.
    markdown = (out / "study.md").read_text()
    for seed in (0, 1):
        test = mcnemar_exact(*paired_correct(out / "rgb-attention" / f"seed-{seed}", out / "rgb-none" / f"seed-{seed}"))
        assert f"seed {seed}: {test.a_only}/{test.b_only}, p = {test.p_value:.3g}" in markdown
        saved = json.loads((out / "study_stats.json").read_text())["attention_against_none"][0]["mcnemar"]
        assert saved[str(seed)]["p_value"] == test.p_value
    assert "## Attention against none" in markdown and "| Attention converges in fewer epochs | **" in markdown
    assert "## Convergence" in markdown and (out / "fig6_validation_accuracy.png").stat().st_size > 1000

    # compare: two runs of one store, named numbers on stdout and as JSON.
    a, b = out / "rgb-attention" / "seed-0", out / "rgb-none" / "seed-0"
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp.json"), "--resamples", "500"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "cmp.json").read_text())
    assert f"McNemar exact p-value: {result['mcnemar']['p_value']:.4g}" in printed
    assert "bootstrap 95% interval of the difference" in printed and result["clips"] == 6
    assert result["difference"] == pytest.approx(result["accuracy_a"] - result["accuracy_b"])
    assert result["bootstrap"]["low"] <= result["difference"] <= result["bootstrap"]["high"]


def test_repeated_seeds_and_mismatched_runs_give_one_line_errors(store, tmp_path, capsys):
    assert main(["study", "--store", str(store), "--out", str(tmp_path / "s"), "--seeds", "1", "2", "1", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tstcnn study: error:") and "seed 1 is given more than once" in err and "\n" not in err
    assert not (tmp_path / "s").exists()

    run = tmp_path / "run"
    run.mkdir()
    (run / "store.json").write_text(json.dumps({"path": str(store)}))
    (run / "results.json").write_text(json.dumps({"splits": {"test": {"classes": list(CLASSES)}}}))
    (run / "predictions_test.csv").write_text("index,video_id,begin,end,true_class,predicted_class,probability\n"
                                              "0,test-0-0,0,10,Negative,Negative,0.9\n")
    cases = {"other store": ("store.json", json.dumps({"path": str(tmp_path / "elsewhere")}), "different stores"),
             "other classes": ("results.json", json.dumps({"splits": {"test": {"classes": ["A", "B"]}}}),
                               "different classes"),
             "other clips": ("predictions_test.csv", "index,video_id,begin,end,true_class,predicted_class,"
                             "probability\n0,test-0-1,0,10,Negative,Negative,0.9\n", "different test clips")}
    for name, (file, text, message) in cases.items():
        other = tmp_path / name.replace(" ", "-")
        shutil.copytree(run, other)
        (other / file).write_text(text)
        assert main(["compare", str(run), str(other)]) == 2, name
        err = capsys.readouterr().err.strip()
        assert err.startswith("tstcnn compare: error:") and message in err and "\n" not in err, err
    assert main(["compare", str(run), str(tmp_path / "missing")]) == 2
    assert "no such run folder" in capsys.readouterr().err
