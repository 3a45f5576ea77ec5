import numpy as np
import pytest

from tstcnn.infer.aggregate import aggregate_windows, smooth_frames
from tstcnn.infer.segments import frames_to_segments, mask_to_runs
from tstcnn.infer.windows import clip_window_starts, spread_to_frames, window_centres, window_indices, window_starts
from tstcnn.io.mediaeval import Action


@pytest.mark.parametrize("num_frames, size, stride, expected", [
    (20, 8, 4, [0, 4, 8, 12]),       # the stride lands on the last window
    (21, 8, 4, [0, 4, 8, 12, 13]),   # one more window so the last frame is covered
    (8, 8, 3, [0]),                   # exactly one window
    (5, 8, 2, [-1]),                  # shorter than a window: one centred window, the odd padded frame after
    (1, 4, 1, [-1]),
])
def test_window_starts_cover_first_and_last_frames(num_frames, size, stride, expected):
    starts = window_starts(num_frames, size, stride)
    assert starts.tolist() == expected
    covered = np.unique(np.concatenate([window_indices(s, size, num_frames) for s in starts]))
    assert covered.tolist() == list(range(num_frames))


def test_window_indices_pad_short_videos_by_repeating_edge_frames():
    assert window_indices(-2, 8, 5).tolist() == [0, 0, 0, 1, 2, 3, 4, 4]
    assert window_indices(13, 8, 21).tolist() == list(range(13, 21))


def test_window_centres_and_spread_to_frames():
    centres = window_centres(np.array([0, 4]), 5)
    assert centres.tolist() == [2.0, 6.0]
    values = np.array([[1.0, 0.0], [0.0, 1.0]])
    frames = spread_to_frames(values, centres, 9)
    assert frames.shape == (9, 2)
    assert frames[:3, 0].tolist() == [1.0, 1.0, 1.0]      # before the first centre: held
    assert frames[4].tolist() == [0.5, 0.5]                # half way: interpolated
    assert frames[6:, 1].tolist() == [1.0, 1.0, 1.0]       # after the last centre: held


def test_clip_window_starts_are_even_and_inside_the_clip():
    assert clip_window_starts(30, 10, 3).tolist() == [0, 10, 20]
    assert clip_window_starts(30, 10, 1).tolist() == [10]
    assert clip_window_starts(6, 10, 5).tolist() == [-2]
    with pytest.raises(ValueError, match="positive"):
        clip_window_starts(30, 10, 0)


PROBS = np.array([[0.6, 0.4], [0.3, 0.7], [0.8, 0.2]])


def test_aggregation_centre_picks_the_window_nearest_the_clip_centre():
    assert aggregate_windows(PROBS, "centre").tolist() == [0.3, 0.7]
    assert aggregate_windows(PROBS, "centre", positions=[10, 20, 30], centre=28).tolist() == [0.8, 0.2]


def test_aggregation_mean_and_vote():
    np.testing.assert_allclose(aggregate_windows(PROBS, "mean"), [1.7 / 3, 1.3 / 3])
    vote = aggregate_windows(PROBS, "vote")   # class 0 wins two votes of three
    np.testing.assert_allclose(vote, [(2 + 1.7 / 3) / 4, (1 + 1.3 / 3) / 4])
    tie = aggregate_windows(np.array([[0.9, 0.1], [0.4, 0.6]]), "vote")   # 1–1: the mean probability decides
    assert tie.argmax() == 0 and tie.sum() == pytest.approx(1.0)


def test_aggregation_gaussian_weights_the_centre_most():
    positions = np.array([0.0, 10.0, 20.0])
    sigma = 10.0
    weights = np.exp(-0.5 * (np.array([-10.0, 0.0, 10.0]) / sigma) ** 2)
    expected = (weights[:, None] * PROBS).sum(0) / weights.sum()
    np.testing.assert_allclose(aggregate_windows(PROBS, "gaussian", positions=positions, sigma=sigma), expected)
    # a tiny sigma is the centre window, a huge one the mean
    np.testing.assert_allclose(aggregate_windows(PROBS, "gaussian", positions=positions, sigma=0.1), PROBS[1],
                               atol=1e-9)
    np.testing.assert_allclose(aggregate_windows(PROBS, "gaussian", positions=positions, sigma=1e6),
                               PROBS.mean(0), atol=1e-9)
    with pytest.raises(ValueError, match="allowed"):
        aggregate_windows(PROBS, "median")


def test_frame_smoothing_vote_mean_gaussian():
    probs = np.array([[0.9, 0.1]] * 4 + [[0.2, 0.8]] + [[0.9, 0.1]] * 4)   # one outlier frame
    vote = smooth_frames(probs, "vote", 3)
    assert vote.argmax(1).tolist() == [0] * 9                                # outvoted by its neighbours
    np.testing.assert_allclose(vote[4], [(2 + (0.9 + 0.2 + 0.9) / 3) / 4, (1 + 1.0 / 3) / 4])
    mean = smooth_frames(probs, "mean", 3)
    np.testing.assert_allclose(mean[4], [2.0 / 3, 1.0 / 3])
    np.testing.assert_allclose(mean[0], [0.9, 0.1])                          # edges repeat the first frame
    gauss = smooth_frames(probs, "gaussian", 6)
    kernel = np.exp(-0.5 * np.arange(-3, 4) ** 2)                            # sigma = 6 / 6 = 1, ±3 sigma
    assert gauss[4, 1] == pytest.approx(0.1 + 0.7 * kernel[3] / kernel.sum())
    np.testing.assert_allclose(gauss.sum(1), 1.0)
    assert np.array_equal(smooth_frames(probs, "none", 9), probs)


def test_mask_to_runs_and_segments_with_gaps_and_short_segments_dropped():
    assert mask_to_runs(np.array([0, 1, 1, 0, 1, 0, 0, 1], bool)) == [(1, 3), (4, 5), (7, 8)]
    neg, a, b = [1.0, 0.0, 0.0], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7]
    probs = np.array([neg] * 2 + [a] * 5 + [neg] + [a] * 2 + [neg] * 3 + [b] * 2 + [neg] * 4 + [b] * 6)
    classes = ["A", "B", "Negative"]
    probs = probs[:, [1, 2, 0]]   # columns in the order of `classes`
    assert frames_to_segments(probs, classes, 2) == [Action(2, 7, "A"), Action(8, 10, "A"), Action(13, 15, "B"),
                                                     Action(19, 25, "B")]
    assert frames_to_segments(probs, classes, 2, min_length=3) == [Action(2, 7, "A"), Action(19, 25, "B")]
    assert frames_to_segments(probs, classes, 2, min_length=3, max_gap=2) == [Action(2, 10, "A"),
                                                                              Action(19, 25, "B")]
    with pytest.raises(ValueError, match="frames, 3"):
        frames_to_segments(probs[:, :2], classes, 2)


def test_strided_windows_recover_stroke_boundaries_within_half_a_stride():
    """Windows every 4 frames of an ideal classifier (stroke probability = fraction of the window inside a
    stroke) give back the strokes, boundaries within the stride, through interpolation and smoothing."""
    num_frames, size, stride = 200, 16, 4
    inside = np.zeros(num_frames)
    inside[40:72] = inside[120:150] = 1.0
    starts = window_starts(num_frames, size, stride)
    stroke = np.array([inside[window_indices(s, size, num_frames)].mean() for s in starts])
    window_probs = np.stack([stroke, 1 - stroke], axis=1)
    frames = smooth_frames(spread_to_frames(window_probs, window_centres(starts, size), num_frames), "gaussian", 16)
    found = frames_to_segments(frames, ["Stroke", "Negative"], 1, min_length=8)
    assert [a.move for a in found] == ["Stroke", "Stroke"]
    for action, (begin, end) in zip(found, [(40, 72), (120, 150)]):
        assert abs(action.begin - begin) <= stride and abs(action.end - end) <= stride, action
