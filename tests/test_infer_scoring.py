import pytest

from tstcnn.infer.scoring import (IOU_THRESHOLDS, SubmissionError, interval_iou, map_2021, map_2022, match_strokes,
                                  read_classification_truth, score_detection, validate_classification)
from tstcnn.io.mediaeval import Action as A
from tstcnn.io.mediaeval import write_submission

TRUTH = {"v1": [A(0, 10, "Serve Forehand Loop"), A(20, 30, "Serve Forehand Loop")]}
PRED = {"v1": [A(0, 10), A(20, 26), A(40, 50)]}   # exact, IoU 0.6, false alarm


def test_thresholds_are_0_50_to_0_95():
    assert IOU_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_interval_iou():
    assert interval_iou((20, 26), (20, 30)) == pytest.approx(0.6)
    assert interval_iou((0, 5), (5, 10)) == 0.0
    assert interval_iou((0, 10), (5, 15)) == pytest.approx(5 / 15)


def test_matching_counts_per_threshold():
    counts = match_strokes(PRED["v1"], TRUTH["v1"])
    assert counts[:3].tolist() == [[2, 1, 0]] * 3          # 0.50, 0.55, 0.60: both matched, one false alarm
    assert counts[3:].tolist() == [[1, 2, 1]] * 7          # above 0.60 the 0.6-IoU stroke no longer counts
    # one prediction never matches two true strokes
    assert match_strokes([A(0, 10)], [A(0, 10), A(0, 10)], [0.5]).tolist() == [[1, 0, 1]]


def test_detection_scores_on_a_hand_made_case():
    scores = score_detection(PRED, TRUTH)
    assert scores.frame_iou == pytest.approx(16 / 30)
    # thresholds ≤ 0.60: P = 2/3, R = 1; above: P = 1/3, R = 1/2
    assert scores.map_2022 == pytest.approx((3 * 2 / 3 + 7 * 1 / 6) / 10)
    # 2021: max-left precision is 2/3 everywhere; recall steps 0.5 then 0.5
    assert scores.map_2021 == pytest.approx(2 / 3)
    assert scores.num_predicted == 3 and scores.num_true == 2


def test_map_definitions_differ_and_are_one_for_a_perfect_run():
    assert map_2021([1.0] * 10, [1.0] * 10) == 1.0 and map_2022([1.0] * 10, [1.0] * 10) == 1.0
    precision, recall = [1.0] * 5 + [0.5] * 5, [1.0] * 5 + [0.5] * 5
    assert map_2022(precision, recall) == pytest.approx((5 + 5 * 0.25) / 10)
    assert map_2021(precision, recall) == pytest.approx(1.0)     # max-left lifts the low-recall points


def test_frame_iou_is_summed_over_the_set_not_averaged():
    truth = {"a": [A(0, 10)], "b": [A(0, 90)]}
    pred = {"a": [A(0, 5)], "b": [A(0, 90)]}
    scores = score_detection(pred, truth)
    assert scores.frame_iou == pytest.approx(95 / 100)
    assert scores.per_video["a"]["frame_iou"] == pytest.approx(0.5)


def test_bad_submission_names_each_video():
    truth = {"a": [A(0, 10)], "b": [A(0, 10)], "c": [A(5, 8)]}
    pred = {"a": [A(0, 12)], "c": [A(5, 8, "Not A Stroke")], "z": []}
    with pytest.raises(SubmissionError) as info:
        score_detection(pred, truth, num_frames={"a": 11, "c": 20}, classes=["Serve Forehand Loop", "Negative"])
    problems = info.value.problems
    assert "video 'b': no prediction" in problems
    assert "video 'z': predicted but not in the ground truth" in problems
    assert "video 'a': stroke [0, 12) ends after the video's 11 frames" in problems
    assert "video 'c': stroke [5, 8) has unknown class 'Not A Stroke'" in problems
    assert "\n" not in str(info.value) and "and 1 more" in str(info.value)
    with pytest.raises(SubmissionError, match="starts before frame 0"):
        score_detection({"a": [A(-1, 3)]}, {"a": [A(0, 3)]})


def test_classification_truth_from_xml_or_folders_and_validation(tmp_path):
    write_submission(tmp_path / "gt.xml", {"1.mp4": "Negative", "2.mp4": "Serve Forehand Loop"})
    assert read_classification_truth(tmp_path / "gt.xml") == {"1.mp4": "Negative", "2.mp4": "Serve Forehand Loop"}
    (tmp_path / "layout" / "Negative").mkdir(parents=True)
    (tmp_path / "layout" / "Negative" / "7.mp4").write_bytes(b"")
    assert read_classification_truth(tmp_path / "layout") == {"7.mp4": "Negative"}
    problems = validate_classification({"1.mp4": "Negative", "3.mp4": "Nope"},
                                       {"1.mp4": "Negative", "2.mp4": "Negative"}, ["Negative"])
    assert problems == ["video '2.mp4': no prediction", "video '3.mp4': predicted but not in the ground truth",
                        "video '3.mp4': unknown class 'Nope'"]
    assert validate_classification({"1": "Negative"}, {"1.mp4": "Negative"}, ["Negative"]) == []
