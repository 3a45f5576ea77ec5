"""Training a detection model for analyze: context windows labelled by their centre frame (data.context_windows)."""

from tstcnn.data.negatives import context_windows
from tstcnn.io.mediaeval import Action

ACTIONS = [Action(20, 30, "Serve Forehand Loop"), Action(45, 70, "Offensive Backhand Hit")]


def test_context_windows_are_one_span_long_labelled_by_their_centre_and_seeded():
    videos = [("a", ACTIONS, 100), ("trimmed", [], 100), ("short", ACTIONS, 10)]
    windows = context_windows(videos, "Negative", 200, 16, seed=3)
    assert len(windows) == 200 and {w.video_id for w in windows} == {"a"}  # unannotated and too short: none
    for window in windows:
        assert window.end - window.begin == 16 and window.begin >= 0 and window.end <= 100
        centre = window.begin + 8
        expected = next((a.move for a in ACTIONS if a.begin <= centre < a.end), "Negative")
        assert window.label == expected
    labels = {w.label for w in windows}
    assert labels == {"Negative", "Serve Forehand Loop", "Offensive Backhand Hit"}
    assert windows == context_windows(videos, "Negative", 200, 16, seed=3)
    assert windows != context_windows(videos, "Negative", 200, 16, seed=4)
    assert context_windows(videos, "Negative", 0, 16, seed=3) == []
