"""Frame stride: clips of T frames taking every k-th source frame, in training, evaluation and inference."""

import importlib
import json
import logging

import numpy as np
import pytest
import torch
import yaml
from test_infer_models import make_run, make_video

from tstcnn.cli import build_parser, main
from tstcnn.cli.options import config_from_args
from tstcnn.config import PRESETS, DataConfig, PrepConfig, config_from_dict, config_to_dict, override
from tstcnn.data import (
    StrokeClips,
    TemporalSampler,
    WindowClips,
    centred_start,
    clip_span,
    resolve_frame_stride,
    window_indices,
)
from tstcnn.data import functional as F
from tstcnn.data.dataset import store_frame_stride
from tstcnn.engine.trainer import train
from tstcnn.infer.detect import DetectOptions, detect_store, detect_videos
from tstcnn.infer.predict import load_predictor, prepared_store, run_reader, source_items, window_span
from tstcnn.infer.windows import window_centres, window_starts
from tstcnn.io.mediaeval import read_actions
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
    results = evaluate_module.evaluate(run_dir, ["validation"], store=store, progress=False)
    assert strides == [2] and results["frame_stride"] == 2


# Inference: windows, centres and every frame written in source frames.

def test_inference_reads_with_the_runs_stride_unless_overridden(strided_run):
    store, run_dir = strided_run
    run = load_predictor(run_dir, precision="fp32")
    reader = run_reader(store, run)
    assert (reader.frame_stride, reader.span, window_span(run)) == (2, 15, 15)
    plain = run_reader(store, load_predictor(run_dir, precision="fp32", frame_stride=1))
    assert (plain.frame_stride, plain.span) == (1, 8)
    windows = WindowClips.of_video(reader, "long0", [-3, 80])  # hanging over both ends of the 90 frames
    for index, start in enumerate((-3, 80)):
        frames = window_indices(start, 8, 90, stride=2)
        assert frames.tolist() == np.clip(np.arange(start, start + 15, 2), 0, 89).tolist()
        assert np.array_equal(windows[index][0]["rgb"], plain.read("long0", frames)["rgb"])
    with pytest.raises(ValueError, match="frame stride must be an integer >= 1"):
        load_predictor(run_dir, frame_stride=0)


def test_detection_windows_centres_and_xml_are_in_source_frames(strided_run, tmp_path, one_thread):
    store, run_dir = strided_run
    run = load_predictor(run_dir, precision="fp32")
    entry = store.entry("long0")
    probe = detect_store(run, store, tmp_path / "probe", DetectOptions(stride=3, smoothing="none"), split="train")[0]
    stroke = 1 - probe[0].frame_probs[:, run.classes.negative_index]
    threshold = float(np.clip(np.median(stroke), 0.01, 0.99))  # an untrained model: cut where its output varies
    options = DetectOptions(stride=3, smoothing="none", threshold=threshold, min_length=1)
    detections, summary = detect_store(run, store, tmp_path / "out", options, split="train")
    detection = detections[0]
    assert summary["window"] == 15 and summary["frame_stride"] == 2 and summary["options"]["stride"] == 3
    assert detection.starts.tolist() == window_starts(entry.frames, 15, 3).tolist() == [*range(0, 76, 3)]
    centres = window_centres(detection.starts, 15)  # start + 7: each window speaks for its middle source frame
    np.testing.assert_allclose(detection.frame_probs[centres.astype(int)], detection.window_probs, atol=1e-6)
    saved = np.load(tmp_path / "out" / "long0_frames.npz")
    assert saved["starts"].tolist() == detection.starts.tolist() and saved["frame_probs"].shape[0] == entry.frames
    actions = read_actions(tmp_path / "out" / "long0.xml")
    assert actions and [(a.begin, a.end) for a in actions] == [(a.begin, a.end) for a in detection.actions]
    stroke = 1 - detection.frame_probs[:, run.classes.negative_index]
    for action in actions:  # segments cut from the per-source-frame probabilities
        assert 0 <= action.begin < action.end <= entry.frames
        assert np.all(stroke[action.begin:action.end] >= threshold)
    covered = np.zeros(entry.frames, bool)
    for action in actions:
        covered[action.begin:action.end] = True
    assert np.array_equal(covered, stroke >= threshold)


def test_streamed_detection_with_a_stride_matches_the_whole_video_store(tmp_path, one_thread):
    run = load_predictor(make_run(tmp_path / "run", logit_scale=1.0), precision="fp32", frame_stride=3)  # span 22
    make_video(tmp_path / "long.mp4", 50)
    videos = [tmp_path / "long.mp4"]
    options = DetectOptions(stride=4, min_length=1)
    with prepared_store(source_items(videos)[0], run) as (store, _):
        whole, _ = detect_store(run, store, tmp_path / "whole", options)
    chunked, summary = detect_videos(run, videos, tmp_path / "chunked", options, chunk_frames=8)
    assert summary["window"] == 22 and summary["frame_stride"] == 3
    assert chunked[0].starts.tolist() == whole[0].starts.tolist() == [*range(0, 29, 4)]
    # Stated tolerance (as tests/test_streaming.py): per-chunk flow quantisation moves a probability by < 0.01.
    np.testing.assert_allclose(chunked[0].window_probs, whole[0].window_probs, atol=0.01)


def test_detect_command_overrides_the_runs_stride(strided_run, tmp_path, one_thread, capsys):
    store, run_dir = strided_run
    out = tmp_path / "out"
    argv = ["detect", str(run_dir), "--store", str(store.root), "--split", "validation", "--out", str(out),
            "--precision", "fp32", "--device", "cpu", "-q"]
    assert main([*argv, "--frame-stride", "1"]) in (0, 1)
    summary = json.loads((out / "detection.json").read_text())
    assert (summary["frame_stride"], summary["window"], summary["options"]["stride"]) == (1, 8, 2)
    assert main([*argv, "--frame-stride", "0"]) == 2
    assert "--frame-stride: must be >= 1" in capsys.readouterr().err
