"""Temporal sampling, negatives mined between strokes, and splits by video."""

import numpy as np
import pytest

from tstcnn.config import DataConfig
from tstcnn.data import (
    TemporalSampler,
    assign_splits,
    cap_negatives,
    mine_negatives,
    negative_cap,
    split_by_video,
    stroke_gaps,
)
from tstcnn.io.mediaeval import Action
from tstcnn.prep.store import VideoEntry


def test_random_start_stays_inside_the_stroke_and_follows_the_normal_law():
    sampler = TemporalSampler(10, random=True, sigma_divisor=6.0)
    rng = np.random.default_rng(0)
    starts = np.array([sampler(100, 160, rng).start for _ in range(4000)])
    assert starts.min() >= 100 and starts.max() <= 150  # the whole clip lies in [100, 160)
    assert abs(starts.mean() - 125) < 0.5
    assert abs(starts.std() - 50 / 6) < 0.6
    clip = sampler(100, 160, rng)
    assert np.array_equal(clip.indices, np.arange(clip.start, clip.start + 10))


def test_centred_clip_without_augmentation():
    sampler = TemporalSampler(10, random=False)
    assert sampler(100, 160).start == 125
    assert sampler(100, 161).start == 125
    assert np.array_equal(sampler(7, 17).indices, np.arange(7, 17))


def test_short_stroke_is_padded_with_its_edge_frames_centred():
    indices = TemporalSampler(10, random=True)(20, 25, np.random.default_rng(0)).indices
    assert indices.tolist() == [20, 20, 20, 21, 22, 23, 24, 24, 24, 24]
    assert TemporalSampler(4, random=False)(5, 6).indices.tolist() == [5, 5, 5, 5]


def test_sampler_rejects_empty_segments():
    with pytest.raises(ValueError, match="empty segment"):
        TemporalSampler(4, random=False)(5, 5)


def test_gaps_between_strokes_and_at_the_ends():
    actions = [Action(30, 50, "a"), Action(10, 20, "b"), Action(45, 60, "c")]  # unsorted, overlapping
    assert stroke_gaps(actions, 100, min_length=5) == [(0, 10), (20, 30), (60, 100)]
    assert stroke_gaps(actions, 100, min_length=11) == [(60, 100)]
    assert stroke_gaps([], 100, min_length=5) == [(0, 100)]


def test_negatives_are_mined_only_in_gaps_of_annotated_videos():
    videos = [("a", [Action(10, 40, "x"), Action(70, 90, "y")], 120), ("trimmed", [], 50)]
    negatives = mine_negatives(videos, "Negative", min_length=8)
    assert [(n.video_id, n.begin, n.end) for n in negatives] == [("a", 0, 10), ("a", 40, 70), ("a", 90, 120)]
    strokes = videos[0][1]
    for n in negatives:
        assert n.label == "Negative"
        assert all(n.end <= s.begin or n.begin >= s.end for s in strokes)


def test_negatives_are_capped_to_the_mean_class_count():
    counts = {f"class{i}": c for i, c in enumerate([50, 60, 0, 40])}  # mean over classes present: 50
    assert negative_cap(counts, 1.0) == 50
    assert negative_cap(counts, 2.12) == 106  # the paper's 106 negatives for a mean of 50
    assert negative_cap({}, 1.0) == 0
    negatives = mine_negatives([(f"v{i}", [Action(100, 200, "x")], 300) for i in range(400)], "Negative", 10)
    assert len(negatives) == 800
    kept = cap_negatives(negatives, 106, seed=3)
    assert len(kept) == 106 and len(set(kept)) == 106 and set(kept) <= set(negatives)
    assert kept == cap_negatives(negatives, 106, seed=3)
    assert kept != cap_negatives(negatives, 106, seed=4)
    assert cap_negatives(negatives[:5], 106, seed=3) == negatives[:5]


def test_split_by_video_is_disjoint_seeded_and_stratified():
    strata = {f"{c}_{i}": c for c in ("A", "B", "C") for i in range(20)}
    first = split_by_video(strata, (0.7, 0.15, 0.15), seed=1)
    assert set(first) == set(strata)  # each video in exactly one split
    assert first == split_by_video(strata, (0.7, 0.15, 0.15), seed=1)
    assert first != split_by_video(strata, (0.7, 0.15, 0.15), seed=2)
    for c in ("A", "B", "C"):
        per_split = [sum(1 for v, s in first.items() if v.startswith(c) and s == name)
                     for name in ("train", "validation", "test")]
        assert per_split == [14, 3, 3]
    with pytest.raises(ValueError, match="summing to 1"):
        split_by_video(strata, (0.7, 0.2, 0.2), seed=1)


def _entry(video_id, split, label=None, actions=()):
    return VideoEntry(id=video_id, split=split, label=label, actions=tuple(actions), frames=100, fps=25.0,
                      width=64, height=48)


def test_assign_splits_by_layout_or_by_video():
    entries = [_entry(f"t{i}", "train", label="A") for i in range(10)]
    entries += [_entry(f"l{i}", "validation", actions=[Action(1, 9, "A")]) for i in range(10)]
    entries.append(_entry("unlabelled", "test"))
    layout = assign_splits(entries, DataConfig())
    assert layout == {e.id: e.split for e in entries}
    by_video = assign_splits(entries, DataConfig(split_by="video", split_fractions=(0.6, 0.2, 0.2), split_seed=5))
    assert by_video["unlabelled"] == "test"
    assert sorted(by_video[f"t{i}"] for i in range(10)).count("train") == 6
    assert sorted(by_video[f"l{i}"] for i in range(10)).count("validation") == 2
    with pytest.raises(ValueError, match="split_by"):
        assign_splits(entries, DataConfig(split_by="random"))
