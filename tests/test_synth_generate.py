"""Writing synthetic datasets: layouts, determinism across worker counts, resume, refusals, the CLI."""

import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tstcnn.cli import main
from tstcnn.io.mediaeval import read_actions, read_submission
from tstcnn.io.video import count_frames, probe
from tstcnn.synth import generate_dataset, plan_jobs, split_counts, write_preview
from tstcnn.synth.generate import SynthSpec

CLASSES = ("Serve Forehand Topspin", "Defensive Backhand Block", "Negative")
TINY = dict(classes=CLASSES, size=(64, 36), fps=10, seed=5, progress=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    generate_dataset(out, layout="both", per_class=4, workers=1, **TINY)
    return out


def test_split_counts():
    assert split_counts(40) == {"train": 40, "validation": 10, "test": 10}
    assert split_counts(2) == {"train": 2, "validation": 1, "test": 1}


def test_classification_layout_is_balanced_with_test_ground_truth(dataset):
    root = dataset / "classificationTask"
    for split, count in (("train", 4), ("validation", 1)):
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(CLASSES)
        assert all(len(list((root / split / c).glob("*.mp4"))) == count for c in CLASSES)
    tests = sorted(p.name for p in (root / "test").glob("*.mp4"))
    truth = read_submission(root / "test_ground_truth.xml")
    assert sorted(truth) == tests and Counter(truth.values()) == Counter({c: 1 for c in CLASSES})
    assert not any(c.split()[0].lower() in name for name in tests for c in CLASSES)  # ids hide the class
    marker = json.loads((dataset / "synth.json").read_text())
    assert marker["per_class"] == 4 and marker["classes"] == list(CLASSES)


def test_videos_have_the_requested_size_rate_and_frames(dataset):
    video = next((dataset / "classificationTask" / "train" / CLASSES[0]).glob("*.mp4"))
    info = probe(video)
    assert (info.width, info.height) == (64, 36) and info.fps == pytest.approx(10)
    # 0.16-0.8 s idle plus a 0.85 s serve at tempo 0.7-1.3: 7 to 20 frames at 10 fps.
    assert 7 <= count_frames(video) <= 20


def test_detection_layout_annotates_every_stroke_inside_its_video(dataset):
    root = dataset / "detectionTask"
    for split in ("train", "validation", "test"):
        videos = sorted(root.glob(f"{split}/*.mp4"))
        assert len(videos) == 1
        actions = read_actions(videos[0].with_suffix(".xml"))
        assert sorted(a.move for a in actions) == sorted(CLASSES[:2])  # negatives are not annotated
        frames = count_frames(videos[0])
        assert all(0 <= a.begin < a.end <= frames for a in actions)
        assert all(a.end <= b.begin for a, b in itertools.pairwise(actions))


def test_layouts_read_back_with_the_prepare_reader(dataset):
    from tstcnn.io.layouts import read_layout

    scan = read_layout("mediaeval-classification", dataset, classes=CLASSES)
    assert not scan.problems
    assert Counter(item.split for item in scan.items) == Counter(train=12, validation=3, test=3)
    scan = read_layout("mediaeval-detection", dataset, classes=CLASSES)
    assert not scan.problems and len(scan.items) == 3


def test_output_does_not_depend_on_worker_count(dataset, tmp_path):
    other = tmp_path / "again"
    generate_dataset(other, layout="both", per_class=4, workers=2, **TINY)
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file())
    for name in files:  # the same bytes, videos included
        assert (dataset / name).read_bytes() == (other / name).read_bytes(), name


def test_interrupted_generation_resumes_without_redoing_clips(tmp_path):
    out = tmp_path / "data"
    first = generate_dataset(out, per_class=1, **TINY)
    assert (first.written, first.skipped) == (9, 0)
    clips = sorted(out.rglob("*.mp4"))
    removed = clips[3]
    removed.unlink()
    kept = {p: p.stat().st_mtime_ns for p in clips if p != removed}
    (out / ".partial").mkdir()
    (out / ".partial" / "123_half.mp4").write_bytes(b"truncated")  # a crash's leftover
    second = generate_dataset(out, per_class=1, **TINY)
    assert (second.written, second.skipped) == (1, 8)
    assert removed.is_file() and not (out / ".partial").exists()
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    assert sorted(out.rglob("*.mp4")) == clips


def test_another_dataset_in_the_folder_is_refused(tmp_path):
    out = tmp_path / "data"
    generate_dataset(out, per_class=1, **TINY)
    with pytest.raises(ValueError, match="holds another synthetic dataset.*per_class 1 vs 2"):
        generate_dataset(out, per_class=2, **TINY)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an empty folder"):
        generate_dataset(foreign, per_class=1, **TINY)


def test_jobs_are_fixed_by_the_arguments():
    spec = SynthSpec("both", 8, CLASSES, (64, 36), 10.0, 1)
    jobs = plan_jobs(spec)
    assert jobs == plan_jobs(SynthSpec("both", 8, CLASSES, (64, 36), 10.0, 1))
    assert len({j.video for j in jobs}) == len(jobs) == (8 + 2 + 2) * 3 + 3
    assert len({Path(j.video).stem for j in jobs}) == len(jobs)  # ids unique across splits


@pytest.mark.parametrize("argv, message", [
    (["--classes", "Serve Forehand Topspin,Serve Sideways"], "unknown class 'Serve Sideways'"),
    (["--per-class", "0"], "--per-class must be at least 1"),
    (["--size", "40x20"], "too small"),
    (["--size", "640x360x3"], "two values"),
    ([], "give --out"),
])
def test_cli_bad_arguments_get_one_line(argv, message, tmp_path, capsys):
    out = [] if argv == [] else ["--out", str(tmp_path / "d")]
    assert main(["synth", *out, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("tstcnn synth: error:")


def test_cli_generates_and_previews(tmp_path, capsys):
    out = tmp_path / "d"
    argv = ["synth", "--out", str(out), "--per-class", "1", "--classes", "Offensive Forehand Flip,Negative",
            "--size", "64x36", "--fps", "10", "--preview", str(tmp_path / "sheet.png")]
    assert main(argv) == 0
    assert "wrote 6 videos" in capsys.readouterr().out
    assert len(list(out.rglob("*.mp4"))) == 6
    import cv2

    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    assert sheet.shape[0] == 2 * 180  # one row per class
    assert main(argv) == 0 and "kept 6 already complete" in capsys.readouterr().out


def test_preview_rows_differ_between_classes(tmp_path):
    import cv2

    path = write_preview(tmp_path / "p.png", ("Serve Backhand Loop", "Defensive Forehand Push"), size=(96, 54),
                         fps=10)
    sheet = cv2.imread(str(path))
    assert sheet.shape[:2] == (2 * 54, 190 + 6 * 96)
    assert not np.array_equal(sheet[:54, 190:], sheet[54:, 190:])
