"""The study's convergence numbers, plateau flag and the paper's claims on hand-made run records with known verdicts."""

import json

import pytest

from tstcnn.engine.study import check_seeds, convergence
from tstcnn.engine.study_report import claims, model_summaries, report_markdown, stats_json, summary_csv

SEEDS = (0, 1, 2)
# Test accuracy per model and seed: attention gains RGB ~10 points, Flow and Twin ~2–3; Twin with attention leads.
TEST = {"rgb-none": (0.50, 0.52, 0.51), "rgb-attention": (0.60, 0.63, 0.61),
        "flow-none": (0.60, 0.60, 0.62), "flow-attention": (0.62, 0.63, 0.64),
        "twin-none": (0.70, 0.71, 0.70), "twin-attention": (0.74, 0.75, 0.76),
        "i3d-rgb": (0.55, 0.56, 0.54), "i3d-flow": (0.58, 0.57, 0.59)}


def _records(test=TEST, seeds=SEEDS, plateaued=True):
    records = []
    for seed_index, seed in enumerate(seeds):
        for model, accuracies in test.items():
            i3d = model.startswith("i3d")
            validation = accuracies[seed_index] + (0.05 if i3d else 0.02)
            records.append({"model": model, "label": model, "seed": seed, "path": f"/nowhere/{model}/seed-{seed}",
                            "test_accuracy": accuracies[seed_index], "validation_accuracy": validation,
                            "train_accuracy": validation + (0.25 + 0.01 * seed_index if i3d else 0.05),
                            "epochs_to_90pct": (6 + seed_index) if "attention" in model else (10 + seed_index),
                            "plateaued": plateaued})
    return records


def _verdicts(records):
    return {c.claim: c.verdict for c in claims(records)}


def test_every_claim_reproduced_when_the_intervals_say_so():
    assert _verdicts(_records()) == {
        "Attention improves RGB most": "reproduced",
        "Attention improves Flow and Twin, less than RGB": "reproduced",
        "Attention converges in fewer epochs": "reproduced",
        "Twin with attention is the best model after convergence": "reproduced",
        "I3D over-fits: a large train/validation gap": "reproduced",
    }
    twin = next(c for c in claims(_records()) if c.claim.startswith("Twin"))
    assert "minus rgb-none +24.0 pp [" in twin.numbers  # (0.74 + 0.75 + 0.76 - 0.50 - 0.52 - 0.51) / 3


def test_claims_contradicted_unsettled_or_unanswerable():
    flow_gains_most = {**TEST, "flow-attention": (0.78, 0.79, 0.81)}
    verdicts = _verdicts(_records(flow_gains_most))
    assert verdicts["Attention improves RGB most"] == "not reproduced"
    assert verdicts["Twin with attention is the best model after convergence"] == "not reproduced"
    # A Twin run that broke down after its best checkpoint undersells the model: behind, but not settled.
    broken = _records(flow_gains_most)
    next(r for r in broken if r["model"] == "twin-attention")["diverged"] = True
    twin = next(c for c in claims(broken) if c.claim.startswith("Twin"))
    assert twin.verdict == "inconclusive" and twin.numbers.endswith("; 1 Twin-with-attention run(s) diverged")
    # Runs still improving at the end cannot say which model is best after convergence, nor how fast it got there.
    unsettled = _verdicts(_records(plateaued=False))
    assert unsettled["Twin with attention is the best model after convergence"] == "inconclusive"
    assert unsettled["Attention converges in fewer epochs"] == "inconclusive"
    assert unsettled["Attention improves RGB most"] == "reproduced"
    # A difference whose interval holds 0 settles nothing.
    noisy = {**TEST, "rgb-attention": (0.40, 0.70, 0.52)}
    assert _verdicts(_records(noisy))["Attention improves RGB most"] == "inconclusive"
    # One seed gives no interval: every claim is inconclusive, whatever the single numbers.
    single = {m: a[:1] for m, a in TEST.items()}
    assert set(_verdicts(_records(single, seeds=(0,))).values()) == {"inconclusive"}
    # Claims about models the study did not train are left out.
    assert list(_verdicts([r for r in _records() if r["model"].startswith("rgb")])) == [
        "Attention converges in fewer epochs"]


def test_convergence_epochs_and_plateau_flag():
    rows = [{"epoch": e, "val_accuracy": a} for e, a in enumerate([0.1, 0.5, 0.85, 0.7, 0.9], start=1)]
    result = convergence(rows)
    assert (result["best_epoch"], result["epochs_to_90pct"], result["epochs_to_95pct"]) == (5, 3, 5)
    assert result["plateaued"] is False  # best at the last epoch: still improving
    ten = [{"epoch": e, "val_accuracy": a} for e, a in enumerate([0.1] * 8 + [0.9, 0.8], start=1)]
    assert convergence(ten)["plateaued"] is True  # epoch 9 of 10 is not in the last 10 %
    assert convergence([*ten[:9], {"epoch": 10, "val_accuracy": 0.95}])["plateaued"] is False
    assert convergence([])["best_epoch"] is None and convergence([])["diverged"] is None


def test_a_run_whose_training_loss_ends_over_twice_its_lowest_is_flagged_diverged():
    def run(losses):
        return convergence([{"epoch": e, "val_accuracy": 0.5, "train_loss": loss}
                            for e, loss in enumerate(losses, start=1)])

    assert run([3.0, 1.0, 0.5, 0.55])["diverged"] is False  # a little above its lowest: noise
    assert run([3.0, 1.0, 0.5, 1.0])["diverged"] is False  # twice: the bound itself
    assert run([3.0, 1.0, 0.97, 2.25, 3.2])["diverged"] is True  # the broken-down Twin run of docs/study.md
    assert run([3.0, 1.0, float("nan")])["diverged"] is True
    assert convergence([{"epoch": 1, "val_accuracy": 0.5}])["diverged"] is None  # no training loss recorded


def test_tables_flag_unsettled_runs_and_keep_full_precision():
    records = _records()
    records[0]["plateaued"] = False
    records[4]["diverged"] = True
    for r in records:
        r.update({"best_epoch": 5, "epochs": 10, "epochs_to_95pct": 7})
    summaries = model_summaries(records, [(m, m) for m in TEST])
    markdown = report_markdown(summaries, [], claims(records))
    assert "| rgb-none | 5.0 ± 0.0 [5.0, 5.0] |" in markdown
    flags = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[5:7] for line in markdown.splitlines()
             if "| 5.0 ± 0.0 [5.0, 5.0] |" in line}
    assert flags[records[0]["model"]] == ["⚠ 1 of 3", "–"] and flags[records[4]["model"]] == ["–", "⚠ 1 of 3"]
    assert "| Attention improves RGB most | **reproduced** |" in markdown
    row = summary_csv(summaries).splitlines()[1].split(",")
    assert row[:3] == ["rgb-none", "rgb-none", "0 1 2"] and float(row[3]) == pytest.approx(0.51 + 0.07)
    saved = json.loads(stats_json(summaries, [], claims(records)))
    assert saved["models"][1]["test_accuracy"]["mean"] == pytest.approx(sum(TEST["rgb-attention"]) / 3)
    assert len(saved["claims"]) == 5


def test_seeds_are_checked():
    assert check_seeds((2, 0)) == [2, 0]
    with pytest.raises(ValueError, match="seed 3 is given more than once"):
        check_seeds([3, 1, 3])
    with pytest.raises(ValueError, match="no seeds"):
        check_seeds([])
