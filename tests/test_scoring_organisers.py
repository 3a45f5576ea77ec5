"""Hand-made submissions on which the organisers' verif_submission.py and evaluation.py (MediaEval 2021/2022 Sport
task) decide otherwise than a lenient scorer would; each test states their outcome and checks ours against it."""

import logging
from itertools import pairwise

import numpy as np
import pytest

from tstcnn.cli import main
from tstcnn.infer.scoring import (
    SubmissionError,
    same_stroke_pairs,
    score_classification,
    score_detection,
    validate_classification,
)
from tstcnn.infer.segments import frames_to_segments
from tstcnn.io.mediaeval import Action as A
from tstcnn.io.mediaeval import (
    AnnotationError,
    read_actions,
    read_submission,
    write_actions,
    write_organisers_run,
    write_submission,
)
from tstcnn.taxonomy import ttstroke21

LOOP, PUSH = "Serve Forehand Loop", "Defensive Backhand Push"
TRUTH = {"test_1.mp4": LOOP, "test_2.mp4": PUSH}


# Classification: the organisers look each ground-truth file name up in the submission as it is written.

def test_a_name_without_or_with_another_extension_is_not_found_as_by_the_organisers():
    submission = {"test_1": LOOP, "test_2.avi": PUSH}      # both scripts: "... not found in submission"
    with pytest.raises(SubmissionError) as info:
        score_classification(submission, TRUTH, ttstroke21())
    problems = info.value.problems
    assert problems[0].startswith("video 'test_1.mp4': no prediction (the submission has 'test_1'")
    assert problems[1].startswith("video 'test_2.mp4': no prediction (the submission has 'test_2.avi'")
    assert "video 'test_1': predicted but not in the ground truth" in problems
    report = score_classification(submission, TRUTH, ttstroke21(), match_stem=True)
    assert report["accuracy"] == 1.0 and report["match_stem"] is True
    assert score_classification(dict(TRUTH), TRUTH, ttstroke21())["match_stem"] is False


def test_match_stem_refuses_two_files_of_one_video():
    problems = validate_classification({"test_1.mp4": LOOP, "test_1.avi": LOOP, "test_2.mp4": PUSH}, TRUTH,
                                       ttstroke21().classes, match_stem=True)
    assert problems == ["videos 'test_1.avi' and 'test_1.mp4' of the submission are one video without their "
                        "extension"]


def test_score_classification_command_compares_exact_names_unless_match_stem(tmp_path, capsys):
    write_submission(tmp_path / "gt.xml", TRUTH)
    write_submission(tmp_path / "run.xml", {"test_1": LOOP, "test_2": LOOP})
    assert main(["score-classification", str(tmp_path / "run.xml"), str(tmp_path / "gt.xml")]) == 2
    assert "video 'test_1.mp4': no prediction" in capsys.readouterr().err
    assert main(["score-classification", str(tmp_path / "run.xml"), str(tmp_path / "gt.xml"), "--match-stem"]) == 0
    out = capsys.readouterr().out
    assert "matched by name without extension (--match-stem)" in out and "accuracy 0.5000" in out


# Detection: move is ignored, a zero-length stroke is a false positive, two strokes with IoU > 0.5 are one stroke.

def test_detection_ignores_move_as_the_organisers_do(tmp_path, capsys):
    truth_dir, pred_dir = tmp_path / "gt", tmp_path / "run"
    write_actions(truth_dir / "v.xml", [A(10, 20, LOOP)])
    write_actions(pred_dir / "v.xml", [A(10, 20, "My Own Smash")])
    assert main(["score-detection", str(pred_dir), str(truth_dir)]) == 0
    assert "frame IoU over the set: 1.0000" in capsys.readouterr().out


def test_a_zero_length_stroke_is_accepted_and_is_a_false_positive():
    scores = score_detection({"v": [A(0, 10), A(30, 30), A(50, 50)]}, {"v": [A(0, 10)]}, {"v": 50})
    assert scores.true_positives == (1,) * 10 and scores.false_positives == (2,) * 10
    assert scores.precision == (1 / 3,) * 10 and scores.recall == (1.0,) * 10
    assert scores.frame_iou == 1.0 and scores.num_predicted == 3


def test_two_strokes_with_iou_above_half_are_named_and_refused_when_strict(caplog):
    predictions = {"v": [A(0, 10), A(40, 50), A(1, 10)]}        # [0, 10) and [1, 10): IoU 0.9
    truth = {"v": [A(0, 10)]}
    with caplog.at_level(logging.WARNING, logger="tstcnn.infer.scoring"):
        scores = score_detection(predictions, truth)
    expected = ("video 'v': strokes [0, 10) and [1, 10) overlap with IoU 0.900 > 0.5: the organisers' format takes "
                "them for one stroke")
    assert [r.getMessage() for r in caplog.records] == [expected] and scores.warnings == (expected,)
    with pytest.raises(SubmissionError) as info:
        score_detection(predictions, truth, strict=True)
    assert info.value.problems == [expected]
    # the organisers' check flags IoU > 0.5: exactly one half passes
    assert score_detection({"v": [A(0, 10), A(0, 5)]}, truth, strict=True).warnings == ()


def test_score_detection_command_warns_or_refuses_with_strict(tmp_path, capsys):
    truth_dir, pred_dir = tmp_path / "gt", tmp_path / "run"
    write_actions(truth_dir / "v.xml", [A(10, 20)])
    write_actions(pred_dir / "v.xml", [A(10, 20), A(11, 20)])
    assert main(["score-detection", str(pred_dir), str(truth_dir)]) == 0
    assert "strokes [10, 20) and [11, 20) overlap" in capsys.readouterr().err
    assert main(["score-detection", str(pred_dir), str(truth_dir), "--strict"]) == 2
    assert "video 'v': strokes [10, 20) and [11, 20) overlap" in capsys.readouterr().err


def test_same_stroke_pairs_agree_with_a_pairwise_check():
    rng = np.random.default_rng(3)
    for _ in range(500):
        begins = rng.integers(0, 60, int(rng.integers(0, 12)))
        strokes = [(int(b), int(b + n)) for b, n in zip(begins, rng.integers(0, 20, len(begins)))]
        expected = sorted((min(a, b), max(a, b)) for i, a in enumerate(strokes) for b in strokes[i + 1:]
                          if 2 * max(0, min(a[1], b[1]) - max(a[0], b[0]))
                          > (a[1] - a[0]) + (b[1] - b[0]) - max(0, min(a[1], b[1]) - max(a[0], b[0])))
        assert sorted(same_stroke_pairs(strokes)) == expected


def test_the_detector_never_writes_two_strokes_that_are_one():
    rng = np.random.default_rng(4)
    classes = ["A", "B", "Negative"]
    for _ in range(200):
        frames = int(rng.integers(1, 400))
        probs = rng.dirichlet([0.3, 0.3, 0.3], frames)
        probs = np.cumsum(probs, 0) / np.arange(1, frames + 1)[:, None] if rng.random() < 0.5 else probs
        actions = frames_to_segments(probs, classes, 2, threshold=float(rng.uniform(0.05, 0.95)),
                                     min_length=int(rng.integers(0, 5)), max_gap=int(rng.integers(0, 8)))
        assert same_stroke_pairs(actions) == []
        assert all(a.end <= b.begin for a, b in pairwise(actions))   # stronger: no shared frame at all


# Submission layout: evaluation.py reads <run>/test.xml, verif_submission.py the first file of the run folder.

def test_organisers_run_folder_holds_only_the_run(tmp_path):
    run = write_organisers_run(tmp_path / "classificationTask" / "1", labels=TRUTH)
    assert [p.name for p in run.iterdir()] == ["test.xml"] and read_submission(run / "test.xml") == TRUTH
    assert [p.name for p in write_organisers_run(run, labels=TRUTH, set_name="validation").iterdir()] == [
        "validation.xml"]   # an earlier run is replaced, not mixed in
    strokes = {"test_a": [A(1, 5, LOOP)], "test_b": []}
    detection = write_organisers_run(tmp_path / "detectionTask" / "1", actions=strokes)
    assert sorted(p.name for p in detection.iterdir()) == ["test_a.xml", "test_b.xml"]
    assert read_actions(detection / "test_a.xml") == [A(1, 5, LOOP)]
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(AnnotationError, match="notes.txt"):
        write_organisers_run(tmp_path / "busy", labels=TRUTH)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="exactly one"):
        write_organisers_run(tmp_path / "x", labels=TRUTH, actions=strokes)
    with pytest.raises(ValueError, match="plain file name"):
        write_organisers_run(tmp_path / "x", actions={"../escape": []})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "classificationTask", "detectionTask"]


# Size: strokes past the video's end are clipped as the organisers' frame vectors clip them.

def test_a_true_stroke_past_the_video_end_is_clipped_to_it():
    scores = score_detection({"v": [A(90, 100)]}, {"v": [A(90, 10**12)]}, {"v": 100})
    assert scores.frame_iou == 1.0 and scores.true_positives == (1,) * 10
