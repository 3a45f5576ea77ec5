"""tstcnn evaluate on a tiny trained run: results.json keys and values, confusion files, summary."""

import csv
import json

import numpy as np
import pytest
import torch

from tstcnn.engine.evaluate import evaluate, predict, read_predictions, write_results
from tstcnn.engine.trainer import fit
from tstcnn.runtime.checkpoint import load_run
from tstcnn.runtime.metrics import classification_report

from engine_helpers import CLASSES, SignalClips, tiny_config, tiny_data

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return fit(tiny_config(epochs=2, lr=0.01, momentum=0.9), tiny_data(n_train=16, n_val=8),
               tmp_path_factory.mktemp("eval") / "run", progress=False)


def test_results_json_has_accuracies_per_split_and_confusions(run):
    datasets = {"train": SignalClips(16, seed=1), "validation": SignalClips(8, seed=2), "test": SignalClips(12, seed=3)}
    results = evaluate(run, datasets=datasets, progress=False)
    on_disk = json.loads((run / "results.json").read_text())
    assert on_disk == results
    for split in ("train", "validation", "test"):  # each accuracy is its confusion matrix's diagonal share
        confusion = np.asarray(results["splits"][split]["confusion_matrix"])
        assert results[f"{split}_accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    assert results["splits"]["test"]["num_samples"] == 12
    assert results["primary_split"] == "test" and results["confusion_matrix"] == results["splits"]["test"][
        "confusion_matrix"]
    assert sum(map(sum, results["confusion_matrix"])) == 12
    assert set(results["per_class"]) == set(CLASSES.classes)
    assert results["epoch"] >= 1 and results["checkpoint"] == "best"
    # The validation accuracy of the best checkpoint is the best one training saw.
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert results["validation_accuracy"] == pytest.approx(max(r["val_accuracy"] for r in rows))
    for stem in ("confusion_test", "confusion_test_type", "confusion_test_hand", "confusion_test_type_hand",
                 "confusion_validation"):
        assert (run / f"{stem}.png").stat().st_size > 1000
        assert (run / f"{stem}.csv").is_file()
    with open(run / "confusion_test.csv") as stream:
        table = list(csv.reader(stream))
    assert table[0][1:] == list(CLASSES.classes)
    assert np.array(table[1:], dtype=object)[:, 1:].astype(int).tolist() == results["confusion_matrix"]
    summary = (run / "summary.md").read_text()
    assert "| test | 12 |" in summary and "Per class (test)" in summary
    # One prediction per clip, in order, agreeing with the confusion matrix (no video ids: not a store's clips).
    predictions = read_predictions(run / "predictions_test.csv")
    assert [int(r["index"]) for r in predictions] == list(range(12)) and predictions[0]["video_id"] == ""
    assert [r["true_class"] for r in predictions] == [CLASSES.classes[k] for k in datasets["test"].labels.tolist()]
    hits = sum(r["true_class"] == r["predicted_class"] for r in predictions)
    assert hits == np.trace(results["confusion_matrix"])
    assert all(1 / len(CLASSES.classes) <= float(r["probability"]) <= 1 for r in predictions)


def test_evaluating_one_split_keeps_the_others(tmp_path):
    report = classification_report([0, 1, 2, 3], [0, 1, 2, 0], CLASSES)
    write_results(tmp_path, {"train": report, "test": report})
    results = write_results(tmp_path, {"test": classification_report([0, 1], [1, 1], CLASSES)})
    assert results["train_accuracy"] == 0.75 and results["test_accuracy"] == 0.5
    assert results["validation_accuracy"] is None


def test_unknown_split_is_an_error(run):
    with pytest.raises(ValueError, match="unknown split"):
        evaluate(run, ["dev"], datasets={}, progress=False)


def test_channels_last_evaluation_gives_the_same_probabilities(run):
    clips = SignalClips(12, seed=3)
    labels, predicted, probabilities = predict(load_run(run).model, clips, batch_size=4, progress=False)
    model = load_run(run).model
    cl_labels, cl_predicted, cl_probabilities = predict(model, clips, batch_size=4, channels_last=True, progress=False)
    assert model.branches.rgb.stage1.conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert labels.tolist() == cl_labels.tolist() and predicted.tolist() == cl_predicted.tolist()
    np.testing.assert_allclose(cl_probabilities, probabilities, atol=1e-5)
