"""predict / detect / export / visualize / scoring commands on a tiny run built through the checkpoint contract."""

import base64
import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tstcnn.cli import main
from tstcnn.data import WindowClips
from tstcnn.infer import detect as detect_module
from tstcnn.infer.detect import DetectOptions, detect_videos
from tstcnn.infer.export import compare_outputs, export_run, input_names, load_export
from tstcnn.infer.predict import (
    PredictOptions,
    load_predictor,
    predict_videos,
    prepared_store,
    run_reader,
    source_items,
    window_probabilities,
)
from tstcnn.infer.scoring import score_detection
from tstcnn.infer.windows import window_starts
from tstcnn.io.mediaeval import Action, read_actions, read_submission, write_actions, write_submission
from tstcnn.io.video import VideoWriter
from tstcnn.runtime.performance import FrozenCompiled, _check_cpp_compiler, bf16_is_fast
from tstcnn.viz.report import build_report

from engine_helpers import write_untrained_run

CLASSES = ["Serve Forehand Loop", "Offensive Backhand Hit", "Negative"]
INPUT = (8, 16, 16)


def make_run(root, modality="twin", logit_scale=1e-3):
    """A run folder as training writes it; the classifier is shrunk so logits are O(1), like a trained model's."""
    return write_untrained_run(root, CLASSES, modality, logit_scale, INPUT)


def make_video(path, frames, width=64, height=48):
    with VideoWriter(path, 25, width, height) as out:
        for t in range(frames):
            image = np.full((height, width, 3), 40, np.uint8)
            x = 4 + (3 * t) % (width - 14)
            image[16:28, x:x + 10] = 220
            out.write(image)
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    run = make_run(root / "run")
    videos = root / "videos"
    videos.mkdir()
    make_video(videos / "clip.mp4", 20)
    make_video(videos / "short.mp4", 5)
    make_video(videos / "long.mp4", 40)
    write_actions(videos / "long.xml", [Action(10, 30, "Serve Forehand Loop")])
    (videos / "broken.mp4").write_bytes(b"not a video")
    return root, run, videos


def test_predict_cli_writes_submission_and_csv_and_skips_unreadable_videos(workspace, tmp_path, capsys):
    _, run, videos = workspace
    rc = main(["predict", str(run), str(videos / "clip.mp4"), str(videos / "short.mp4"), str(videos / "broken.mp4"),
               "--out", str(tmp_path), "--aggregation", "gaussian"])
    err = capsys.readouterr().err
    assert rc == 1  # done, but an input was skipped
    skipped = [line for line in err.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and "broken.mp4" in skipped[0]
    labels = read_submission(tmp_path / "submission.xml")
    assert set(labels) == {"clip.mp4", "short.mp4"} and set(labels.values()) <= set(CLASSES)
    rows = (tmp_path / "predictions.csv").read_text().splitlines()
    assert rows[0].split(",") == ["video", "class", "score", "windows", *CLASSES]
    by_name = {r.split(",")[0]: r.split(",") for r in rows[1:]}
    assert by_name["clip.mp4"][3] == "5" and by_name["short.mp4"][3] == "1"   # a short clip has one padded window
    for row in by_name.values():
        scores = [float(v) for v in row[4:]]
        assert sum(scores) == pytest.approx(1.0, abs=1e-5) and row[1] == CLASSES[int(np.argmax(scores))]
    # The organisers' scripts read <run>/test.xml, alone in its folder: the same submission.
    assert [p.name for p in (tmp_path / "mediaeval-run").iterdir()] == ["test.xml"]
    assert read_submission(tmp_path / "mediaeval-run" / "test.xml") == labels


def test_raw_videos_are_prepared_with_the_runs_settings_and_normalisation(workspace):
    _, run_dir, videos = workspace
    run = load_predictor(run_dir)
    items, problems = source_items([videos])
    assert problems == [] and [i.id for i in items] == ["broken", "clip", "long", "short"]
    with prepared_store(items, run) as (store, problems):
        assert len(problems) == 1 and "broken.mp4" in problems[0]
        assert store.prep == run.prep and store.entry("clip").width == run.prep.width == 32
        own_scale = store.flow_scale
        reader = run_reader(store, run)
        assert reader.flow_scale == run.flow_scale == 2.0 and store.flow_scale == own_scale  # the store is not changed
        window = WindowClips.of_video(reader, "short", [-2])[0][0]   # 5 frames in an 8-frame window: edges repeat
        assert window["rgb"].shape == (3, *INPUT) and window["flow"].shape == (2, *INPUT)
        assert torch.equal(window["rgb"][:, 0], window["rgb"][:, 2]) and torch.equal(window["rgb"][:, 6],
                                                                                      window["rgb"][:, 7])
        assert float(window["flow"].abs().max()) <= 1.0


def test_aggregations_combine_the_clips_evenly_spaced_windows(workspace):
    _, run_dir, videos = workspace
    run = load_predictor(run_dir)
    results = {m: predict_videos(run, [videos / "clip.mp4"], PredictOptions(aggregation=m))[0][0]
               for m in ("centre", "mean", "vote")}
    assert results["centre"].windows == 1 and results["mean"].windows == results["vote"].windows == 5
    items, _ = source_items([videos / "clip.mp4"])
    with prepared_store(items, run) as (store, _):
        reader = run_reader(store, run)
        probs = window_probabilities(run, reader, "clip", [0, 3, 6, 9, 12], batch_size=2)   # 20 frames, T = 8
        centre = window_probabilities(run, reader, "clip", [6], batch_size=1)[0]
    np.testing.assert_allclose(results["mean"].scores, probs.mean(0), atol=1e-6)
    np.testing.assert_allclose(results["centre"].scores, centre, atol=1e-6)
    votes = np.bincount(probs.argmax(1), minlength=3)
    np.testing.assert_allclose(results["vote"].scores, (votes + probs.mean(0)) / 6, atol=1e-6)


def test_detect_writes_xml_timeline_and_scores_against_truth_beside_the_video(workspace, tmp_path):
    _, run_dir, videos = workspace
    run = load_predictor(run_dir)
    out = tmp_path / "detection"
    detections, summary = detect_videos(run, [videos / "long.mp4", videos / "broken.mp4"], out,
                                        DetectOptions(stride=2, min_length=1))
    assert [d.video_id for d in detections] == ["long"]
    assert len(summary["problems"]) == 1 and "broken.mp4" in summary["problems"][0]
    (detection,) = detections
    assert detection.frames == 40 and detection.frame_probs.shape == (40, 3)
    assert detection.starts.tolist() == window_starts(40, INPUT[0], 2).tolist()
    assert read_actions(out / "long.xml") == detection.actions
    assert all(0 <= a.begin < a.end <= 40 and a.move in CLASSES[:2] for a in detection.actions)
    assert (out / "long_timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "detection.json").read_text())
    expected = score_detection({"long": detection.actions}, {"long": read_actions(videos / "long.xml")}, {"long": 40})
    assert saved["scores"]["videos"] == ["long"] and saved["scores"]["frame_iou"] == pytest.approx(expected.frame_iou)
    assert saved["videos"]["long"]["windows"] == len(detection.starts)
    assert [p.name for p in (out / "mediaeval-run").iterdir()] == ["long.xml"]  # the organisers' layout
    assert read_actions(out / "mediaeval-run" / "long.xml") == detection.actions
    assert DetectOptions().resolve(100).stride == 25   # default stride: a quarter of the window


def test_report_holds_the_detection_timeline(workspace):
    _, run_dir, videos = workspace
    assert main(["detect", str(run_dir), str(videos / "long.mp4"), "--out", str(run_dir / "detection")]) == 0
    page = build_report(run_dir).read_text()
    png = (run_dir / "detection" / "long_timeline.png").read_bytes()
    assert "Detection timelines" in page and base64.b64encode(png).decode() in page


@pytest.mark.parametrize("modality, fmt", [("twin", "onnx"), ("twin", "torchscript"), ("rgb", "onnx")])
def test_export_matches_pytorch_within_1e4(tmp_path, modality, fmt):
    run_dir = make_run(tmp_path / "run", modality)
    model_path, spec_path, parity = export_run(run_dir, tmp_path / f"model.{fmt}", fmt)
    spec = json.loads(spec_path.read_text())
    assert spec["classes"] == CLASSES and [i["name"] for i in spec["inputs"]] == list(input_names(modality))
    assert spec["inputs"][0]["shape"][2:] == list(INPUT) and spec["flow_scale"] == 2.0
    exported = load_export(model_path)
    reference = load_predictor(run_dir).model
    fresh = compare_outputs(reference, exported.model, input_names(modality), INPUT, batch=4)
    assert fresh["logits_scale"] < 100   # logits of a realistic size, so the absolute bound means something
    assert fresh["logits_absolute"] <= 1e-4 and fresh["probabilities"] <= 1e-4
    assert parity["relative"] <= 1e-4


def test_auto_precision_is_the_fast_path_and_agrees_with_fp32(workspace, tmp_path):
    _, _, videos = workspace
    run_dir = make_run(tmp_path / "run", logit_scale=1.0)   # probabilities from 0.1 to 0.75: differences show
    fast, reference = load_predictor(run_dir), load_predictor(run_dir, precision="fp32")
    bf16 = bf16_is_fast("cpu")
    assert (fast.precision, fast.channels_last) == (("bf16", True) if bf16 else ("fp32", False))
    assert (reference.precision, reference.channels_last) == ("fp32", False)
    conv = fast.model.branches.rgb.stage1.conv.weight
    assert conv.is_contiguous(memory_format=torch.channels_last_3d) == bf16 and conv.shape[2] == 3
    items, _ = source_items([videos / "clip.mp4"])
    with prepared_store(items, reference) as (store, _):
        reader = run_reader(store, reference)
        fast_probs = window_probabilities(fast, reader, "clip", [0, 6, 12], batch_size=2)
        reference_probs = window_probabilities(reference, reader, "clip", [0, 6, 12], batch_size=2)
    assert reference_probs.max() - reference_probs.min() > 0.3
    np.testing.assert_allclose(fast_probs, reference_probs, atol=0.01)
    assert (fast_probs.argmax(1) == reference_probs.argmax(1)).all()


def _has_cpp_compiler() -> bool:
    try:
        _check_cpp_compiler()
    except ValueError:
        return False
    return True


@pytest.mark.skipif(not _has_cpp_compiler(), reason="torch.compile on a CPU needs a C++ compiler")
@pytest.mark.slow
def test_compiled_predictor_pads_the_last_batch_and_agrees_with_fp32(workspace, tmp_path):
    _, _, videos = workspace
    run_dir = make_run(tmp_path / "run", modality="rgb", logit_scale=4.0)  # one branch: half the compile time
    compiled, reference = load_predictor(run_dir, compile=True), load_predictor(run_dir, precision="fp32")
    assert compiled.compiled and isinstance(compiled.model, FrozenCompiled)
    assert not reference.compiled
    items, _ = source_items([videos / "clip.mp4"])
    with prepared_store(items, reference) as (store, _):
        reader = run_reader(store, reference)
        compiled_probs = window_probabilities(compiled, reader, "clip", [0, 6, 12], batch_size=2)
        reference_probs = window_probabilities(reference, reader, "clip", [0, 6, 12], batch_size=2)
    assert compiled_probs.shape == reference_probs.shape == (3, len(CLASSES))
    assert reference_probs.max() - reference_probs.min() > 0.3
    np.testing.assert_allclose(compiled_probs, reference_probs, atol=0.01)
    assert (compiled_probs.argmax(1) == reference_probs.argmax(1)).all()


def test_compile_without_a_cpp_compiler_is_a_one_line_error(workspace, tmp_path, capsys):
    import torch._inductor.config

    _, run_dir, videos = workspace
    with torch._inductor.config.patch({"cpp.cxx": (None, str(tmp_path / "no-such-g++"))}):
        with pytest.raises(ValueError, match="needs a C\\+\\+ compiler"):
            load_predictor(run_dir, compile=True)
        assert main(["predict", str(run_dir), str(videos / "clip.mp4"), "--out", str(tmp_path / "out"),
                     "--compile"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tstcnn predict: error: torch.compile on a CPU needs a C++ compiler")


def test_progress_is_log_lines_off_a_terminal_and_nothing_when_quiet(workspace, tmp_path, capsys):
    _, run_dir, videos = workspace
    assert main(["predict", str(run_dir), str(videos / "clip.mp4"), "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err  # captured output is not a terminal: log lines, never a redrawn bar
    assert "classify: 5/5 window (100%)" in err and "\r" not in err  # the clip's five windows
    assert main(["predict", str(run_dir), str(videos / "clip.mp4"), "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert main(["detect", str(run_dir), str(videos / "long.mp4"), "--out", str(tmp_path / "d"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert (tmp_path / "b" / "predictions.csv").is_file() and (tmp_path / "d" / "long.xml").is_file()


def test_predict_runs_from_an_export_like_from_the_checkpoint(workspace, tmp_path):
    _, run_dir, videos = workspace
    model_path, _, _ = export_run(run_dir, tmp_path / "model.onnx", "onnx")
    assert main(["predict", str(model_path), str(videos / "clip.mp4"), "--out", str(tmp_path / "a")]) == 0
    assert main(["predict", str(run_dir), str(videos / "clip.mp4"), "--out", str(tmp_path / "b"), "--precision",
                 "fp32"]) == 0
    a = (tmp_path / "a" / "predictions.csv").read_text().splitlines()[1].split(",")
    b = (tmp_path / "b" / "predictions.csv").read_text().splitlines()[1].split(",")
    assert a[1] == b[1]
    np.testing.assert_allclose([float(v) for v in a[4:]], [float(v) for v in b[4:]], atol=1e-4)


def test_visualize_writes_grid_gif_and_mask_statistics(workspace, tmp_path):
    _, run_dir, videos = workspace
    rc = main(["visualize", str(run_dir), str(videos / "clip.mp4"), str(videos / "long.mp4"), "--out", str(tmp_path),
               "--time-steps", "0,3,7"])
    assert rc == 0
    assert (tmp_path / "attention_grid.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "attention.gif").read_bytes()[:3] == b"GIF"
    stats = json.loads((tmp_path / "mask_statistics.json").read_text())
    assert stats["clips"] == ["clip", "long"] and stats["windows"] == 2
    assert {f"{m}.block{i}" for m in ("rgb", "flow") for i in (1, 2, 3)} == set(stats["blocks"])
    for block in stats["blocks"].values():
        assert 0.0 <= block["min"] <= block["mean"] <= block["max"] <= 1.0


def test_bad_runs_and_empty_video_lists_are_one_line_errors(workspace, tmp_path, capsys):
    _, run_dir, videos = workspace
    (tmp_path / "empty_run").mkdir()
    foreign = make_run(tmp_path / "foreign")
    checkpoint = torch.load(foreign / "checkpoints" / "best.pt", weights_only=True)
    checkpoint["version"] = 99
    torch.save(checkpoint, foreign / "checkpoints" / "best.pt")
    cases = [
        (["predict", str(tmp_path / "empty_run"), str(videos / "clip.mp4")], "best.pt"),
        (["detect", str(foreign), str(videos / "long.mp4"), "--out", str(tmp_path / "o")], "version 99"),
        (["detect", str(run_dir), "--out", str(tmp_path / "o")], "give VIDEOs"),
        (["predict", str(run_dir), str(videos / "broken.mp4"), "--out", str(tmp_path / "o")], "no clip could be"),
        (["predict", str(tmp_path / "missing.onnx"), str(videos / "clip.mp4")], "missing.onnx"),
    ]
    for argv, expected in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
        assert len(errors) == 1 and expected in errors[0], (argv, errors)
    with pytest.raises(ValueError, match="no videos given"):
        predict_videos(load_predictor(run_dir), [], PredictOptions())


def test_score_commands_report_metrics_and_name_mismatched_videos(workspace, tmp_path, capsys):
    gt = tmp_path / "gt"
    for name, label in (("1.mp4", "Negative"), ("2.mp4", "Negative"), ("3.mp4", "Serve Forehand Loop")):
        (gt / label).mkdir(parents=True, exist_ok=True)
        (gt / label / name).write_bytes(b"")
    write_submission(tmp_path / "run.xml", {"1.mp4": "Negative", "2.mp4": "Serve Forehand Loop",
                                            "3.mp4": "Serve Forehand Loop"})
    assert main(["score-classification", str(tmp_path / "run.xml"), str(gt), "--out", str(tmp_path / "s")]) == 0
    assert "accuracy 0.6667" in capsys.readouterr().out
    assert json.loads((tmp_path / "s" / "scores.json").read_text())["accuracy"] == pytest.approx(2 / 3)
    assert (tmp_path / "s" / "confusion.png").is_file()
    write_submission(tmp_path / "bad.xml", {"1.mp4": "Negative", "2.mp4": "Smash"})
    assert main(["score-classification", str(tmp_path / "bad.xml"), str(gt)]) == 2
    err = capsys.readouterr().err
    assert "video '3.mp4': no prediction" in err and "video '2.mp4': unknown class 'Smash'" in err

    truth_dir, pred_dir = tmp_path / "dgt", tmp_path / "dpred"
    truth_dir.mkdir()
    make_video(truth_dir / "v.mp4", 12)
    write_actions(truth_dir / "v.xml", [Action(2, 8, "Serve Forehand Loop")])
    write_actions(pred_dir / "v.xml", [Action(2, 8)])
    assert main(["score-detection", str(pred_dir), str(truth_dir), "--out", str(tmp_path / "d.json")]) == 0
    out = capsys.readouterr().out
    assert "frame IoU over the set: 1.0000" in out and "mAP 2021" in out and "mAP 2022" in out
    assert json.loads((tmp_path / "d.json").read_text())["map_2022"] == 1.0
    write_actions(pred_dir / "v.xml", [Action(2, 15)])
    assert main(["score-detection", str(pred_dir), str(truth_dir)]) == 2
    assert "video 'v': stroke [2, 15) ends after the video's 12 frames" in capsys.readouterr().err


def test_temporary_stores_of_killed_runs_are_removed_and_live_ones_kept(workspace, tmp_path):
    _, run_dir, videos = workspace
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    stale = tmp_path / f"tstcnn-prepared-{int(dead.stdout)}-abc123"
    live = tmp_path / f"tstcnn-prepared-{os.getpid()}-def456"
    foreign = tmp_path / "tstcnn-prepared-notapid"
    for folder in (stale, live, foreign):
        (folder / "videos").mkdir(parents=True)
    items, _ = source_items([videos / "clip.mp4"])
    with prepared_store(items, load_predictor(run_dir), work_dir=tmp_path) as (store, _):
        assert store.root.name.startswith(f"tstcnn-prepared-{os.getpid()}-")
        assert store.root.exists()
    assert not stale.exists() and live.exists() and foreign.exists()
    assert not store.root.exists()


def test_a_killed_detection_never_leaves_a_summary_that_looks_complete(workspace, tmp_path, monkeypatch):
    _, run_dir, videos = workspace
    run, out = load_predictor(run_dir), tmp_path / "det"
    detect_videos(run, [videos / "long.mp4"], out, DetectOptions(stride=4))
    assert json.loads((out / "detection.json").read_text())["status"] == "complete"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(detect_module, "write_detection", killed)
    with pytest.raises(KeyboardInterrupt):
        detect_videos(run, [videos / "long.mp4"], out, DetectOptions(stride=4))
    assert json.loads((out / "detection.json").read_text())["status"] == "in progress"


def test_a_full_disk_stops_detection_at_the_first_video_naming_it(workspace, tmp_path, monkeypatch):
    _, run_dir, videos = workspace
    calls = []

    def full(out_dir, detection, *args, **kwargs):
        calls.append(detection.video_id)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(detect_module, "write_detection", full)
    with pytest.raises(OSError, match="video 'clip': no space left on device"):
        detect_videos(load_predictor(run_dir), [videos / "clip.mp4", videos / "long.mp4"], tmp_path / "det",
                      DetectOptions(stride=4))
    assert calls == ["clip"]
