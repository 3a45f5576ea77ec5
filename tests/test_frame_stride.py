"""Frame stride: clips of T frames taking every k-th source frame, in training, evaluation and inference."""

import importlib
import logging

import numpy as np
import pytest
import torch
import yaml

from tstcnn.cli import build_parser, main
from tstcnn.cli.options import config_from_args
from tstcnn.config import PRESETS, DataConfig, PrepConfig, config_from_dict, config_to_dict, override
from tstcnn.data import StrokeClips, TemporalSampler, centred_start, clip_span, resolve_frame_stride, window_indices
from tstcnn.data import functional as F
from tstcnn.data.dataset import store_frame_stride
from tstcnn.engine.trainer import train
from tstcnn.prep.store import Store, finalize_store, write_video_entry
from tstcnn.runtime.checkpoint import load_run

from engine_helpers import tiny_config
from store_helpers import W, synthetic_video

evaluate_module = importlib.import_module("tstcnn.engine.evaluate")  # the package exports a function of that name
CLASSES = ("Serve Forehand Loop", "Serve Backhand Loop", "Negative")
CLIP = (8, 32, 32)


def _write_store(root, fps=(25.0,)) -> Store:
    """One annotated long video per frame rate in ``fps`` (train), and a trimmed clip (validation)."""
    for seed, rate in enumerate(fps):
        write_video_entry(root, f"long{seed}", *synthetic_video(90, seed),
                          {"split": "train", "label": None, "fps": rate,
                           "actions": [[10, 40, CLASSES[0]], [50, 62, CLASSES[1]]]})
    write_video_entry(root, "held", *synthetic_video(30, 7),
                      {"split": "validation", "label": CLASSES[1], "actions": [], "fps": fps[0]})
    finalize_store(root, PrepConfig(width=W), CLASSES)
    return Store(root)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    return _write_store(tmp_path_factory.mktemp("store"))


# Sampling bookkeeping.

@pytest.mark.parametrize("begin, end", [(10, 40), (0, 8), (3, 6), (50, 62)])
def test_stride_one_gives_the_plain_clip(begin, end):
    length = 8
    start = centred_start(begin, end, length)
    plain = np.clip(np.arange(start, start + length), begin, end - 1)
    assert np.array_equal(TemporalSampler(length, random=False, stride=1)(begin, end).indices, plain)
    for seed in range(20):
        drawn = TemporalSampler(length, random=True)(begin, end, np.random.default_rng(seed))
        again = TemporalSampler(length, random=True, stride=1)(begin, end, np.random.default_rng(seed))
        assert np.array_equal(drawn.indices, again.indices)
        assert np.array_equal(drawn.indices, np.clip(np.arange(drawn.start, drawn.start + length), begin, end - 1))
    assert np.array_equal(window_indices(-3, length, 20), np.clip(np.arange(-3, 5), 0, 19))


def test_stride_three_takes_every_third_frame_centred_in_the_segment():
    begin, end, length, stride = 10, 60, 8, 3
    clip = TemporalSampler(length, random=False, stride=stride)(begin, end)
    span = clip_span(length, stride)
    assert span == 22
    assert np.array_equal(np.diff(clip.indices), np.full(length - 1, stride))
    assert clip.indices[-1] - clip.indices[0] + 1 == span
    assert clip.indices[0] == begin + (end - begin - span) // 2  # the one centring rule, over the span
    assert abs((clip.indices[0] + clip.indices[-1]) / 2 - (begin + end - 1) / 2) <= 0.5


def test_training_draws_stay_inside_the_segment_with_spacing_k():
    begin, end, length, stride = 5, 45, 6, 4  # span 21, slack 19
    sampler = TemporalSampler(length, random=True, stride=stride)
    starts = set()
    for seed in range(200):
        clip = sampler(begin, end, np.random.default_rng(seed))
        assert begin <= clip.indices[0] and clip.indices[-1] < end
        assert np.array_equal(np.diff(clip.indices), np.full(length - 1, stride))
        starts.add(clip.start)
    assert len(starts) > 5  # drawn, not centred
    assert min(starts) >= begin and max(starts) <= end - clip_span(length, stride)


def test_a_segment_shorter_than_the_span_repeats_its_edge_frames():
    clip = TemporalSampler(8, random=True, stride=3)(50, 62, np.random.default_rng(0))  # 12 frames, span 22
    assert clip.indices.min() == 50 and clip.indices.max() == 61
    assert np.all(np.diff(clip.indices) >= 0) and np.all(np.diff(clip.indices) <= 3)
    assert clip.start == centred_start(50, 62, 22)
    assert np.array_equal(window_indices(-4, 4, 10, stride=3), [0, 0, 2, 5])


# `auto` and the config field.

@pytest.mark.parametrize("fps, length, expected", [(120, 16, 6), (20, 16, 1), (120, 100, 1), (0, 16, 1),
                                                    (float("nan"), 16, 1), (60, 8, 6), (240, 16, 12)])
def test_auto_resolution(fps, length, expected):
    assert resolve_frame_stride("auto", fps, length) == expected
    assert resolve_frame_stride(3, fps, length) == 3


def test_auto_uses_the_median_frame_rate_of_the_store_and_says_so(tmp_path, caplog):
    store = _write_store(tmp_path, fps=(100.0, 120.0, 25.0))  # and the clip at 100
    with caplog.at_level(logging.INFO, logger="tstcnn.data"):
        assert store_frame_stride("auto", store, 16) == 5  # median 100 fps: 100 × 0.83 / 16 = 5.2
    assert "median, 100 fps" in caplog.text
    assert store_frame_stride(4, store, 16) == 4


def test_frame_stride_flag_parses_validates_and_round_trips(capsys):
    for text, value in (("auto", "auto"), ("AUTO", "auto"), ("6", 6)):
        args = build_parser().parse_args(["train", "--store", "s", "--out", "o", "--config", "cpu-small",
                                          "--frame-stride", text])
        cfg = config_from_args(args, ["model", "data", "train"])
        assert cfg.data.frame_stride == value
        plain = yaml.safe_load(yaml.safe_dump(config_to_dict(cfg)))
        assert config_from_dict(plain) == cfg
    assert PRESETS["cpu-small"].data.frame_stride == 1 and PRESETS["paper"].data.frame_stride == 1
    for text, message in (("0", "data.frame_stride must be >= 1, got 0"),
                          ("fast", "data.frame_stride needs an integer or auto, got 'fast'")):
        assert main(["train", "--store", "s", "--out", "o", "--frame-stride", text]) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and message in error[0]
    with pytest.raises(ValueError, match="frame_stride must be an integer or auto"):
        config_from_dict({"data": {"frame_stride": "sometimes"}})
    with pytest.raises(ValueError, match="frame_stride must be >= 1"):
        config_from_dict({"data": {"frame_stride": 0}})


# Datasets and the reader.

def test_stroke_clips_read_every_kth_frame_and_mine_negatives_a_span_long(store):
    plain = StrokeClips(store, "train", "rgb", CLIP, False, DataConfig(negatives_per_class=9), seed=0)
    strided = StrokeClips(store, "train", "rgb", CLIP, False, DataConfig(negatives_per_class=9, frame_stride=3), seed=0)
    assert plain.frame_stride == 1 and strided.frame_stride == 3
    negatives = [(s.begin, s.end) for s in strided.segments if s.label == "Negative"]
    assert all(end - begin >= clip_span(8, 3) for begin, end in negatives)  # gaps of 22+ frames: [62, 90)
    assert (62, 90) in negatives and (0, 10) in [(s.begin, s.end) for s in plain.segments if s.label == "Negative"]
    index = next(i for i, s in enumerate(strided.segments) if (s.begin, s.end) == (10, 40))
    clip = strided.temporal(10, 40)
    assert np.array_equal(clip.indices, np.arange(14, 36, 3))
    read = strided[index][0]["rgb"]
    reader = plain.reader
    for t, frame in enumerate(clip.indices):  # each clip frame is the plain reader's frame at that index
        assert np.array_equal(read[:, t], reader.read("long0", np.array([frame]))["rgb"][:, 0])
    auto = StrokeClips(store, "train", "rgb", CLIP, False, DataConfig(frame_stride="auto"), seed=0)
    assert auto.frame_stride == 3  # 25 fps, T = 8: round(2.6)


def test_strided_flow_is_the_mean_flow_over_the_step(store):
    arrays = store.arrays("long0")
    table = store.flow_table("long0")
    indices = np.array([0, 3, 6, 88])
    matrices = F.clip_matrices(F.window_centres(arrays.roi[indices], (32, 32), (48, 64)), (32, 32),
                               F.AffineParams(angle=10, zoom=1.1))
    strided = F.warp_flow(arrays.flow, indices, matrices, (32, 32), scale=0.5, table=table, step=3)
    decoded = table[np.asarray(arrays.flow).view(np.uint8)]
    means = np.stack([decoded[f:min(f + 3, len(decoded))].mean(0) for f in indices])
    expected = F.warp_flow(means, np.arange(len(indices)), matrices, (32, 32), scale=0.5)
    np.testing.assert_allclose(strided, expected, atol=1e-5)
    one = F.warp_flow(arrays.flow, indices, matrices, (32, 32), scale=0.5, table=table)
    assert np.array_equal(one, F.warp_flow(arrays.flow, indices, matrices, (32, 32), scale=0.5, table=table, step=1))
    assert not np.allclose(one, strided)  # the square moves at another speed each frame: the mean differs


# A run trained with a stride: recorded in the run, used by evaluation and inference.

@pytest.fixture(scope="module")
def strided_run(tmp_path_factory):
    """A tiny twin run trained with ``frame_stride: auto`` on a 20 fps store: k = round(20 × 0.83 / 8) = 2."""
    root = tmp_path_factory.mktemp("strided")
    store = _write_store(root / "store", fps=(20.0,))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = override(tiny_config("twin", epochs=1), "data", frame_stride="auto")
        run_dir = train(cfg, store, root / "run", progress=False)
    finally:
        torch.set_num_threads(threads)
    return store, run_dir


def test_a_run_records_its_resolved_stride_and_evaluation_uses_it(strided_run, monkeypatch, one_thread):
    store, run_dir = strided_run
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["data"]["frame_stride"] == 2
    run = load_run(run_dir)
    assert run.config.data.frame_stride == 2
    strides = []

    class Spy(StrokeClips):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            strides.append(self.frame_stride)

    monkeypatch.setattr(evaluate_module, "StrokeClips", Spy)
    evaluate_module.evaluate(run_dir, ["validation"], store=store, progress=False)
    assert strides == [2]
