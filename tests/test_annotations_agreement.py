"""Agreement, consensus and disagreements on hand-made annotations whose answers are known."""

import random
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from tstcnn.annotate.agreement import (
    Span,
    agreement,
    by_annotator,
    cohen_kappa,
    consensus,
    disagreements,
    match_strokes,
    pair_agreement,
    temporal_iou,
)
from tstcnn.taxonomy import TTSTROKE21_CLASSES

CLASSES = TTSTROKE21_CLASSES
SFT, SBB, OFH, OBL, DFP = ("Serve Forehand Topspin", "Serve Backhand Backspin", "Offensive Forehand Hit",
                           "Offensive Backhand Loop", "Defensive Forehand Push")


def _reference() -> list[Span]:
    """Ten strokes on two videos, five classes, 40 to 58 frames long, 30 frames apart."""
    labels = [SFT, OFH, OBL, DFP, SBB, OFH, OBL, SFT, DFP, OFH]
    spans, begin = [], 10
    for i, label in enumerate(labels):
        video = 1 if i < 6 else 2
        if i == 6:
            begin = 5
        length = 40 + 2 * i
        spans.append(Span(video, begin, begin + length, label, id=100 + i))
        begin += length + 30
    return spans


def _shifted(spans: list[Span], k: int) -> list[Span]:
    return [Span(s.video_id, s.begin + k, s.end + k, s.label) for s in spans]


def test_temporal_iou_counts_frames_end_exclusive():
    assert temporal_iou(Span(1, 0, 10, SFT), Span(1, 5, 15, SFT)) == pytest.approx(5 / 15)
    assert temporal_iou(Span(1, 0, 10, SFT), Span(1, 10, 20, SFT)) == 0  # touching strokes share no frame
    assert temporal_iou(Span(1, 0, 10, SFT), Span(2, 0, 10, SFT)) == 0  # another video


def test_identical_annotations_agree_fully():
    ref = _reference()
    figures = pair_agreement(ref, list(ref), CLASSES)
    assert (figures["matched"], figures["only_first"], figures["only_second"]) == (10, 0, 0)
    assert figures["boundary_median_frames"] == 0 and figures["boundary_p90_frames"] == 0
    assert figures["kappa"] == pytest.approx(1.0) and figures["stroke_f1"] == 1.0
    assert figures["kappa_type"] == pytest.approx(1.0) and figures["kappa_hand"] == pytest.approx(1.0)


@pytest.mark.parametrize("k", [3, -7])
def test_shift_by_k_frames_is_a_boundary_difference_of_k(k):
    figures = pair_agreement(_reference(), _shifted(_reference(), k), CLASSES)
    assert figures["matched"] == 10 and figures["boundary_median_frames"] == abs(k)
    assert figures["boundary_p90_frames"] == abs(k) and figures["kappa"] == pytest.approx(1.0)


def test_shift_past_the_iou_threshold_unmatches():
    """A 40-frame stroke shifted by 14 frames keeps IoU 26/54 < 0.5; the longer ones still match."""
    ref = _reference()
    ious = [temporal_iou(s, t) for s, t in zip(ref, _shifted(ref, 14))]
    figures = pair_agreement(ref, _shifted(ref, 14), CLASSES)
    assert figures["matched"] == sum(iou >= 0.5 for iou in ious) == 9 and figures["only_first"] == 1


def test_one_class_swapped_lowers_kappa_as_sklearn_does():
    ref = _reference()
    other = list(ref)
    other[3] = Span(ref[3].video_id, ref[3].begin, ref[3].end, OBL)  # Defensive Forehand Push -> Offensive Backhand
    figures = pair_agreement(ref, other, CLASSES)
    first, second = [s.label for s in ref], [s.label for s in other]
    assert figures["matched"] == 10 and figures["class_agreement"] == pytest.approx(0.9)
    assert figures["kappa"] == pytest.approx(cohen_kappa_score(first, second))
    assert figures["kappa"] < 1
    type_first, type_second = [x.split()[0] for x in first], [x.split()[0] for x in second]
    assert figures["kappa_type"] == pytest.approx(cohen_kappa_score(type_first, type_second))
    hand_first, hand_second = [x.split()[1] for x in first], [x.split()[1] for x in second]
    assert figures["kappa_hand"] == pytest.approx(cohen_kappa_score(hand_first, hand_second))
    assert figures["kappa_type"] < 1 and figures["kappa_hand"] < 1


def test_one_stroke_missing_is_counted_on_its_side():
    ref = _reference()
    figures = pair_agreement(ref, ref[:4] + ref[5:], CLASSES)
    assert (figures["matched"], figures["only_first"], figures["only_second"]) == (9, 1, 0)
    assert figures["stroke_f1"] == pytest.approx(18 / 19) and figures["kappa"] == pytest.approx(1.0)
    swapped = pair_agreement(ref[:4] + ref[5:], ref, CLASSES)
    assert (swapped["only_first"], swapped["only_second"]) == (0, 1)


def test_kappa_equals_sklearn_on_random_labels():
    rng = random.Random(3)
    for n in (1, 2, 5, 40):
        for _ in range(20):
            first = [rng.choice(CLASSES[:4]) for _ in range(n)]
            second = [rng.choice(CLASSES[:4]) if rng.random() < 0.5 else x for x in first]
            ours = cohen_kappa(first, second)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs = cohen_kappa_score(first, second)
            if np.isnan(theirs):
                assert ours is None  # one class used by both: kappa is undefined
            else:
                assert ours == pytest.approx(theirs)
    assert cohen_kappa([], []) is None


def test_matching_is_one_to_one_and_per_video():
    a = [Span(1, 0, 20, SFT), Span(1, 20, 40, SFT)]
    b = [Span(1, 2, 22, SFT), Span(2, 20, 40, SFT)]
    match = match_strokes(a, b)
    assert [(i, j) for i, j, _ in match.pairs] == [(0, 0)]
    assert match.only_first == (1,) and match.only_second == (1,)
    # one long stroke against two halves: only one of them can match it, the better one
    match = match_strokes([Span(1, 0, 100, SFT)], [Span(1, 0, 45, SFT), Span(1, 40, 100, SFT)])
    assert [(i, j) for i, j, _ in match.pairs] == [(0, 1)]
    with pytest.raises(ValueError, match="min_iou"):
        match_strokes(a, b, min_iou=0)


def test_agreement_json_has_every_pair_and_the_overall_figures():
    ref = _reference()
    result = agreement({"bob": _shifted(ref, 2), "ann": ref, "cem": ref[:9]}, CLASSES)
    assert [p["annotators"] for p in result["pairs"]] == [["ann", "bob"], ["ann", "cem"], ["bob", "cem"]]
    for pair in result["pairs"]:
        assert {"matched", "only_first", "only_second", "boundary_median_frames", "boundary_p90_frames",
                "kappa"} <= set(pair)
    overall = result["overall"]
    assert overall["matched"] == 10 + 9 + 9 and overall["only_first"] == 2 and overall["only_second"] == 0
    assert overall["boundary_median_frames"] == 2  # ann-bob and bob-cem differ by 2, ann-cem by 0: 38 of 56 are 2
    assert overall["kappa"] == pytest.approx(1.0) and overall["strokes"] == {"ann": 10, "bob": 10, "cem": 9}
    two = agreement({"ann": ref, "bob": ref[:9]}, CLASSES)
    shared = (set(two["overall"]) & set(two["pairs"][0])) - {"annotators"}
    assert len(shared) >= 9 and all(two["overall"][k] == two["pairs"][0][k] for k in shared)  # one pair: the same


def test_groupings_are_left_out_for_classes_without_type_and_hand():
    a = [Span(1, 0, 10, "jump"), Span(1, 20, 30, "run")]
    figures = pair_agreement(a, a, ("jump", "run"))
    assert "kappa_type" not in figures and figures["kappa"] == pytest.approx(1.0)


def test_consensus_takes_the_majority_with_median_boundaries_and_class():
    ref = _reference()
    ann = ref
    bob = _shifted(ref, 4)[:9]  # misses the last stroke
    cem = list(_shifted(ref, 1))
    cem[0] = Span(cem[0].video_id, cem[0].begin, cem[0].end, SBB)  # another class on the first stroke
    cem.append(Span(2, 600, 640, OFH))  # a stroke nobody else marked
    strokes = consensus({"ann": ann, "bob": bob, "cem": cem}, CLASSES)
    assert len(strokes) == 10 and not any(s.tie for s in strokes)  # the lone stroke has 1 of 3 votes
    assert [(s.begin, s.end) for s in strokes[:9]] == [(s.begin + 1, s.end + 1) for s in ref[:9]]
    assert strokes[0].label == SFT and strokes[0].label_votes == ((SFT, 2), (SBB, 1))
    assert strokes[9].votes == 2 and (strokes[9].begin, strokes[9].end) == (ref[9].begin, ref[9].end + 1)
    assert strokes[0].members == (("ann", 100), ("bob", None), ("cem", None))


def test_consensus_flags_ties_for_review():
    a = [Span(1, 0, 40, SFT), Span(1, 100, 140, OFH)]
    b = [Span(1, 1, 41, SBB)]
    strokes = consensus({"a": a, "b": b}, CLASSES)
    assert [(s.begin, s.end, s.tie) for s in strokes] == [(0, 41, True), (100, 140, True)]
    assert strokes[0].review == "class tie" and strokes[0].label == SFT  # earlier in the class list
    assert strokes[1].review == "half marked it"


def test_disagreements_name_missing_class_and_boundary():
    a = [Span(1, 0, 40, SFT, id=1), Span(1, 100, 140, OFH, id=2), Span(1, 200, 240, OBL, id=3)]
    b = [Span(1, 0, 40, SBB, id=4), Span(1, 100, 160, OFH, id=5)]
    found = disagreements({"a": a, "b": b}, max_boundary_frames=5)
    kinds = [(d.kind, d.begin, d.annotators, d.strokes) for d in found]
    assert kinds == [("class", 0, ("a", "b"), (1, 4)), ("boundary", 100, ("a", "b"), (2, 5)),
                     ("missing", 200, ("a",), (3,))]
    assert "not by b" in found[2].detail and "b: Serve Backhand Backspin" in found[0].detail
    assert disagreements({"a": a, "b": list(a)}) == []


@dataclass(frozen=True)
class _Row:
    """A project row as the database gives it: who marked it and its review status."""

    video_id: int
    begin: int
    end: int
    label: str
    annotator: str
    status: str


def test_by_annotator_leaves_out_rejected_proposals():
    rows = [_Row(1, 0, 40, SFT, "ann", "manual"), _Row(1, 50, 90, SFT, "model", "rejected"),
            _Row(1, 0, 42, SFT, "model", "proposed")]
    grouped = by_annotator(rows)
    assert {name: len(v) for name, v in grouped.items()} == {"ann": 1, "model": 1}
    assert by_annotator(rows, annotators=["ann", "zoe"]) == {"ann": [rows[0]], "zoe": []}


def test_matching_equals_greedy_over_every_pair():
    """The search among nearby strokes only finds what trying every pair finds, on overlapping random strokes."""
    rng = random.Random(7)
    for _ in range(30):
        a, b = ([Span(rng.randint(1, 2), x := rng.randint(0, 300), x + rng.randint(1, 60), SFT)
                 for _ in range(rng.randint(0, 25))] for _ in range(2))
        pairs = sorted((-temporal_iou(s, t), i, j) for i, s in enumerate(a) for j, t in enumerate(b)
                       if temporal_iou(s, t) >= 0.5)
        used_a, used_b, expected = set(), set(), []
        for negative_iou, i, j in pairs:
            if i not in used_a and j not in used_b:
                used_a.add(i)
                used_b.add(j)
                expected.append((i, j, -negative_iou))
        assert match_strokes(a, b).pairs == tuple(sorted(expected))
