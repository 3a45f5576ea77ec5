"""The one data path: training, evaluation and prediction read the same clips through the same loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tstcnn.config import PRESETS, override
from tstcnn.data import EpochSampler, StrokeClips, WindowClips, centred_start
from tstcnn.engine.evaluate import evaluate
from tstcnn.engine.trainer import train
from tstcnn.infer.predict import PredictOptions, load_predictor, predict_store, run_reader
from tstcnn.infer.windows import clip_window_starts
from tstcnn.runtime.checkpoint import load_checkpoint

from store_helpers import make_store

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ("Serve Forehand Loop", "Serve Backhand Loop", "Negative")
CLIP = (8, 32, 32)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    # Trimmed clips shorter and longer than the 8-frame window, with odd and even differences, so that a
    # centring rule that rounds the other way reads other frames.
    lengths = [5, 6, 7, 9, 11, 14, 17, 21]
    videos = {}
    for i, frames in enumerate(lengths * 2):
        split = ("train", "train", "validation", "test")[i % 4]
        videos[f"clip{i:02d}"] = (frames, {"split": split, "label": CLASSES[i % 2]})
    return make_store(tmp_path_factory.mktemp("path") / "store", videos, CLASSES)


def _config(workers: int):
    cfg = override(PRESETS["cpu-small"], "model", input_size=CLIP, channels=(4, 4, 4), num_features=8,
                   num_classes=len(CLASSES), modality="twin", block="attention", num_blocks=1)
    cfg = override(cfg, "data", num_workers=workers)
    return override(cfg, "train", epochs=2, batch_size=4, lr=0.05, precision="fp32", channels_last=False,
                    scheduler="constant")


@pytest.mark.slow
def test_same_seed_gives_the_same_weights_with_zero_and_two_loader_workers(store, tmp_path):
    serial = train(_config(0), store, tmp_path / "serial", progress=False)
    parallel = train(_config(2), store, tmp_path / "parallel", progress=False)
    a = load_checkpoint(serial / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(parallel / "checkpoints" / "last.pt")["model"]
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)
    # Training moved the weights: equal results are not both the initial state.
    first_conv = next(k for k in a if k.endswith("conv.weight"))
    fresh = train(override(_config(0), "train", epochs=1, lr=1e-9), store, tmp_path / "fresh", progress=False)
    assert not torch.equal(load_checkpoint(fresh / "checkpoints" / "last.pt")["model"][first_conv], a[first_conv])


@pytest.mark.slow
def test_evaluate_and_predict_give_the_same_class_for_every_clip(store, tmp_path):
    run_dir = train(_config(0), store, tmp_path / "run", progress=False)
    results = evaluate(run_dir, ("test",), store=store, progress=False)
    predictor = load_predictor(run_dir, precision="fp32")
    predictions, problems = predict_store(predictor, store, PredictOptions(aggregation="centre", windows=1),
                                          split="test")
    assert problems == [] and len(predictions) == results["splits"]["test"]["num_samples"] == 4
    dataset = StrokeClips(store, "test", "twin", CLIP, False, _config(0).data, seed=0)
    reader = run_reader(store, predictor)
    for segment, prediction in zip(dataset.segments, sorted(predictions, key=lambda p: p.name)):
        # The same frames: the evaluation clip and the prediction window read identical inputs.
        start = int(clip_window_starts(segment.end - segment.begin, CLIP[0], 1)[0])
        window, _ = WindowClips.of_video(reader, segment.video_id, [start])[0]
        clip, _ = dataset[dataset.segments.index(segment)]
        for key in ("rgb", "flow"):
            torch.testing.assert_close(window[key], clip[key], rtol=0, atol=0)
        assert prediction.name.startswith(segment.video_id)
    confusion = np.asarray(results["splits"]["test"]["confusion_matrix"])
    labels = [CLASSES.index(s.label) for s in dataset.segments]
    predicted = [CLASSES.index(p.label) for p in sorted(predictions, key=lambda p: p.name)]
    expected = np.zeros_like(confusion)
    for truth, guess in zip(labels, predicted):
        expected[truth, guess] += 1
    assert (confusion == expected).all()


@pytest.mark.parametrize("frames", [3, 4, 5, 6, 7, 8, 9, 10, 13])
def test_one_centring_rule_for_short_and_long_clips(frames):
    length = 8
    start = centred_start(0, frames, length)
    assert int(clip_window_starts(frames, length, 1)[0]) == start
    if frames >= length:  # frames of the clip left out before and after it
        before, after = start, frames - length - start
    else:  # copies of the first frame before the clip, of the last one after it
        before, after = -start, length - frames + start
    assert before <= after <= before + 1  # centred, the odd frame after


def test_evaluation_shards_count_each_clip_once():
    shards = [list(EpochSampler(10, shuffle=False, rank=r, world_size=3, pad=False)) for r in range(3)]
    indices = sorted(i for shard in shards for i, _ in shard)
    assert indices == list(range(10))
    padded = [list(EpochSampler(10, shuffle=False, rank=r, world_size=3)) for r in range(3)]
    assert sum(len(s) for s in padded) == 12
