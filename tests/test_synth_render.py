"""The synthetic renderer: determinism, geometry of the programs, and the difficulty floor."""

import numpy as np
import pytest

from tstcnn.synth import clip_rng, render_clip, trivial_features
from tstcnn.synth.player import R_WRIST, RACKET_CENTRE
from tstcnn.synth.render import check_size, iter_video, plan_video
from tstcnn.synth.strokes import READY_HAND, program_for
from tstcnn.taxonomy import NEGATIVE, TTSTROKE21_CLASSES

SMALL = (96, 54)


def test_same_seed_same_frames_other_seed_other_frames():
    a = render_clip("Offensive Forehand Loop", seed=3, size=SMALL, fps=25)
    b = render_clip("Offensive Forehand Loop", seed=3, size=SMALL, fps=25)
    c = render_clip("Offensive Forehand Loop", seed=4, size=SMALL, fps=25)
    assert a.frames.shape == b.frames.shape and a.frames.shape[1:] == (54, 96, 3)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.frames.shape != c.frames.shape or not np.array_equal(a.frames, c.frames)


@pytest.mark.parametrize("name", TTSTROKE21_CLASSES)
def test_every_class_renders_with_its_stroke_inside_the_clip(name):
    clip = render_clip(name, seed=1, size=SMALL, fps=25)
    n = len(clip.frames)
    assert 0 < clip.action.begin < clip.action.end < n
    assert clip.action.move == name
    # The stroke lasts 0.5-1.3 s (tempo ±30%) and the clip adds at most 0.8 s of idle time.
    assert 0.35 * 25 <= clip.action.end - clip.action.begin <= 1.3 * 25
    assert n <= clip.action.end - clip.action.begin + 0.8 * 25 + 2
    # Something moves during the stroke.
    stroke = clip.frames[clip.action.begin:clip.action.end].astype(np.int16)
    assert np.abs(np.diff(stroke, axis=0)).mean() > 0.5


def _racket_path(name: str, joint: int = RACKET_CENTRE) -> np.ndarray:
    """Racket centre (or another joint's) trajectory relative to the ready pose, for a fixed body and scene."""
    plan = plan_video([name], clip_rng(0, "path"), SMALL, 25, left_handed=0.0)
    seg = plan.segments[0]
    path = plan.joints.points[seg.stroke_begin:seg.stroke_end, joint]
    index = np.linspace(0, len(path) - 1, 12).round().astype(int)
    return path[index] - path[0]


def test_techniques_move_the_racket_as_described():
    def rise(name: str) -> float:  # racket height at the end of the follow-through minus lowest before contact
        z = _racket_path(name)[:, 2]
        return float(z[6:10].max() - z[:7].min())

    def drop(name: str) -> float:
        z = _racket_path(name)[:, 2]
        return float(z[:7].max() - z[6:].min())

    for hand in ("Forehand", "Backhand"):
        assert rise(f"Offensive {hand} Loop") > 0.8  # a large low-to-high brush
        assert rise(f"Serve {hand} Topspin") > 0.3
        assert drop(f"Serve {hand} Backspin") > 0.2  # high to low
        assert drop(f"Defensive {hand} Backspin") > 0.6  # the chop: long high to low
        # A block is a short stop of the hand, far smaller than a loop.
        span = np.ptp(_racket_path(f"Defensive {hand} Block", R_WRIST), axis=0).max()
        assert span < 0.5 * np.ptp(_racket_path(f"Offensive {hand} Loop", R_WRIST), axis=0).max()


def test_forehand_and_backhand_swing_on_opposite_sides():
    rng = np.random.default_rng(0)
    for technique in ("Serve {} Topspin", "Offensive {} Hit", "Defensive {} Push"):
        forehand = program_for(technique.format("Forehand"), rng)
        backhand = program_for(technique.format("Backhand"), rng)
        # In the player's frame y points to the left: the forehand swings on the right of the body (y < 0),
        # the backhand in front of it, starting on the left.
        def side(program):
            return np.mean([k.hand[1] for k in program.keys if k.hand != READY_HAND])

        assert side(forehand) < -0.25 and side(backhand) > -0.12
        assert max(k.hand[1] for k in backhand.keys) > 0.0
        assert backhand.backhand and not forehand.backhand


def test_serves_toss_the_ball_and_rallies_receive_it():
    for name in TTSTROKE21_CLASSES[:-1]:
        kind = program_for(name, np.random.default_rng(0)).ball.kind
        assert kind == ("toss" if name.startswith("Serve") else "incoming")
    plan = plan_video(["Serve Forehand Backspin"], clip_rng(0, "toss"), SMALL, 50)
    seg = plan.segments[0]
    heights = plan.ball[seg.stroke_begin:seg.stroke_end, 2]
    assert np.nanmax(heights) > 1.5  # the toss goes above the head


def test_negative_kinds_all_render():
    kinds = {program_for(NEGATIVE, np.random.default_rng(s)).ball.kind for s in range(40)}
    assert kinds == {"none", "pickup", "pass"}
    frames = list(iter_video(plan_video([NEGATIVE, "Offensive Backhand Hit", NEGATIVE], clip_rng(0, "seq"), SMALL,
                                        20)))
    assert len(frames) > 30 and frames[0].shape == (54, 96, 3)


@pytest.mark.parametrize("size", [(32, 18), (63, 36), (96, 55)])
def test_bad_sizes_are_refused(size):
    with pytest.raises(ValueError, match="size"):
        check_size(size)


def test_unknown_class_is_refused():
    with pytest.raises(ValueError, match="unknown class 'Serve Sideways'"):
        render_clip("Serve Sideways", size=SMALL, fps=10)


def test_trivial_features_shape_and_content():
    frames = np.zeros((9, 30, 12, 3), dtype=np.uint8)
    frames[:, :10, :, 0] = 255  # red top third
    frames[4:, 20:] = 100  # a change at frame 4 in the bottom third
    features = trivial_features(frames)
    assert features.shape == (17,)
    np.testing.assert_allclose(features[:3], [1, 0, 0])
    assert features[9 + 3] > 0 and features[9] == 0


@pytest.mark.slow
def test_difficulty_floor_trivial_statistics_stay_below_35_percent():
    """Logistic regression on per-clip colour and motion-energy statistics (issue 4: at most 35%)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    per_class = 20
    x, y = [], []
    for label, name in enumerate(TTSTROKE21_CLASSES):
        for index in range(per_class):
            plan = plan_video([name], clip_rng(0, "floor", name, index), (64, 36), 20)
            x.append(trivial_features(iter_video(plan)))
            y.append(label)
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=10.0, max_iter=2000))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    accuracy = cross_val_score(classifier, np.array(x), np.array(y), cv=folds).mean()
    assert 1 / 21 / 2 < accuracy <= 0.35
