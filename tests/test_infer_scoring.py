import tracemalloc

import numpy as np
import pytest

from tstcnn.infer.scoring import (
    IOU_THRESHOLDS,
    SubmissionError,
    interval_iou,
    map_2021,
    map_2022,
    match_strokes,
    read_classification_truth,
    score_detection,
    validate_classification,
)
from tstcnn.io.mediaeval import Action as A
from tstcnn.io.mediaeval import write_submission
from tstcnn.viz import timeline
from tstcnn.viz.figures import save_figure

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
    pred = {"a": [A(0, 12)], "c": [A(5, 8, "Not A Stroke"), A(9, 7)], "z": []}
    with pytest.raises(SubmissionError) as info:
        score_detection(pred, truth, num_frames={"a": 11, "c": 20})
    problems = info.value.problems
    assert "video 'b': no prediction" in problems
    assert "video 'z': predicted but not in the ground truth" in problems
    assert "video 'a': stroke [0, 12) ends after the video's 11 frames" in problems
    assert "video 'c': stroke [9, 7) ends before it begins" in problems
    assert not any("Not A Stroke" in p for p in problems)      # detection ignores move
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
    assert validate_classification({"1": "Negative"}, {"1.mp4": "Negative"}, ["Negative"], match_stem=True) == []


# The dense-matrix matcher and per-frame masks that the interval sweep replaced, kept as the reference it must
# agree with: same counts on every input, same figures wherever the strokes lie inside the video.
def _reference_match_strokes(predicted, truth, thresholds=IOU_THRESHOLDS):
    counts = np.zeros((len(thresholds), 3), dtype=np.int64)
    ious = np.array([[interval_iou(p[:2], t[:2]) for t in truth] for p in sorted(predicted)]).reshape(
        len(predicted), len(truth))
    for k, threshold in enumerate(thresholds):
        free = np.ones(len(truth), dtype=bool)
        for row in ious:
            candidates = np.where(free & (row >= threshold), row, -1.0)
            if len(candidates) and candidates.max() >= 0:
                free[int(candidates.argmax())] = False
                counts[k, 0] += 1
            else:
                counts[k, 1] += 1
        counts[k, 2] = int(free.sum())
    return counts


def _reference_mask(actions, num_frames):
    mask = np.zeros(num_frames, dtype=bool)
    for action in actions:
        mask[max(0, action[0]):max(0, action[1])] = True
    return mask


def _reference_frame_iou(predictions, truth, num_frames):
    intersection = union = 0
    for video in truth:
        length = max([num_frames.get(video, 0), *(a[1] for a in [*predictions[video], *truth[video]])])
        pred, true = _reference_mask(predictions[video], length), _reference_mask(truth[video], length)
        intersection, union = intersection + int((pred & true).sum()), union + int((pred | true).sum())
    return intersection / union if union else 0.0


def _random_strokes(rng, count, span, shortest=-3, longest=15):
    begins = rng.integers(-3, span, count)
    return [(int(b), int(b + length)) for b, length in zip(begins, rng.integers(shortest, longest, count))]


def test_sweep_matcher_gives_the_reference_counts_on_random_inputs():
    rng = np.random.default_rng(0)
    # the usual thresholds, odd ones in (0, 1] and beyond, and some <= 0 (where any free stroke matches)
    threshold_sets = (IOU_THRESHOLDS, (0.3, 0.5, 1.0, 1.5, float("nan")), (*IOU_THRESHOLDS, 0.0, -0.2))
    for case in range(3000):
        thresholds = threshold_sets[case % 3]
        span = int(rng.integers(1, 40))
        longest = 15 if rng.random() < 0.7 else int(2 ** rng.uniform(4, 10))   # strokes of many length scales
        predicted = _random_strokes(rng, int(rng.integers(0, 9)), span, longest=longest)
        truth = _random_strokes(rng, int(rng.integers(0, 9)), span, longest=longest)
        if rng.random() < 0.3:  # heavy overlap and exact duplicates, where ties decide
            truth += truth[: len(truth) // 2]
            predicted += [truth[0]] * 2 if truth else []
        expected = _reference_match_strokes(predicted, truth, thresholds)
        np.testing.assert_array_equal(match_strokes(predicted, truth, thresholds), expected,
                                      err_msg=f"{predicted} {truth}")


def test_sweep_scores_give_the_reference_figures_inside_the_video():
    rng = np.random.default_rng(1)
    for _ in range(400):
        frames = {v: int(rng.integers(20, 60)) for v in "abc"}
        truth, predictions = {}, {}
        for video, n in frames.items():
            truth[video] = [A(b, min(e, n)) for b, e in _random_strokes(rng, int(rng.integers(0, 6)), n, 0) if b >= 0]
            predictions[video] = [A(b, min(e, n)) for b, e in _random_strokes(rng, int(rng.integers(0, 6)), n, 0)
                                  if b >= 0]
        known = frames if rng.random() < 0.5 else {}
        scores = score_detection(predictions, truth, known)
        counts = sum(_reference_match_strokes(predictions[v], truth[v]) for v in truth)
        assert scores.true_positives == tuple(counts[:, 0]) and scores.false_positives == tuple(counts[:, 1])
        assert scores.false_negatives == tuple(counts[:, 2])
        assert scores.frame_iou == _reference_frame_iou(predictions, truth, known)


def test_a_stroke_ending_at_frame_10_to_the_12_costs_no_memory():
    truth = {"v": [A(0, 10**12)]}
    scores = score_detection({"v": [A(0, 10**12)]}, truth)
    assert scores.frame_iou == 1.0 and scores.map_2022 == 1.0
    # with the video's frame count known the true stroke is clipped to it, as the organisers' frame vectors are
    clipped = score_detection({"v": [A(0, 100)]}, truth, {"v": 100})
    assert clipped.frame_iou == 1.0 and clipped.true_positives == (1,) * 10


def _strokes_and_shifted_predictions(count):
    truth = [A(10 * i, 10 * i + 8) for i in range(count)]
    return [A(10 * i + 1, 10 * i + 9) for i in range(count)], truth    # IoU 7/9 with its true stroke


def test_hundreds_of_thousands_of_strokes_are_matched():
    count = 200_000   # a dense IoU matrix would hold 4·10¹⁰ floats (320 GB)
    counts = match_strokes(*_strokes_and_shifted_predictions(count))
    assert counts[:6].tolist() == [[count, 0, 0]] * 6 and counts[6:].tolist() == [[0, count, count]] * 4


def test_matcher_memory_grows_linearly_with_the_strokes():
    peaks = []
    for count in (4_000, 16_000):
        predicted, truth = _strokes_and_shifted_predictions(count)
        tracemalloc.start()
        try:
            match_strokes(predicted, truth)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[1] < 6 * peaks[0]    # 4 times the strokes: about 4 times the memory, where a matrix takes 16


def test_timeline_draws_a_hundred_thousand_segments_as_one_collection_per_row(tmp_path, monkeypatch):
    drawn = {}

    def keep(fig, path, **kwargs):
        drawn["bottom"] = fig.axes[1]
        return save_figure(fig, path, **kwargs)

    monkeypatch.setattr(timeline, "save_figure", keep)
    segments = [A(2 * i, 2 * i + 1, "Serve Forehand Loop" if i % 2 else None) for i in range(100_000)]
    probs = np.full((200_000, 3), 1 / 3, dtype=np.float32)
    path = timeline.plot_timeline(tmp_path / "t.png", probs, ["Serve Forehand Loop", "Negative", "Other"], 1,
                                  segments, truth=segments[:50_000])
    assert path.read_bytes()[:4] == b"\x89PNG"
    bottom = drawn["bottom"]
    assert len(bottom.collections) + len(bottom.patches) <= 2    # one artist per row, whatever the strokes
    assert sum(len(c.get_paths()) for c in bottom.collections) == 150_000
