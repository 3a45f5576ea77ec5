"""tstcnn analyze: stroke tables, one decodable clip per stroke, session statistics, the page, bad videos."""

import csv
import json

import numpy as np
import pytest
from test_infer_models import CLASSES, make_run, make_video

from tstcnn.cli import main
from tstcnn.infer.analyze import COLUMNS, VideoAnalysis, session_statistics, stroke_rows, write_clips
from tstcnn.infer.detect import VideoDetection, score_strokes
from tstcnn.io.mediaeval import Action, read_actions
from tstcnn.io.video import count_frames, iter_frames
from tstcnn.taxonomy import Taxonomy

TAXONOMY = Taxonomy(tuple(CLASSES))  # Serve Forehand Loop, Offensive Backhand Hit, Negative


def _detection(frames=60, fps=25.0):
    """Per-frame probabilities holding three strokes, and the strokes, as detect gives them."""
    probs = np.tile([0.05, 0.05, 0.9], (frames, 1))
    strokes = [Action(5, 10, CLASSES[0]), Action(12, 20, CLASSES[1]), Action(50, 58, CLASSES[0])]
    probs[5:10] = [0.7, 0.2, 0.1]
    probs[12:20] = [0.3, 0.6, 0.1]
    probs[50:58] = [0.8, 0.1, 0.1]
    scores = score_strokes(probs, strokes, CLASSES, 2)
    return VideoDetection("session", frames, fps, np.zeros(0), np.zeros((0, 3)), probs, strokes, 0.0, scores)


def test_stroke_rows_hold_the_columns_scores_and_groupings():
    rows = stroke_rows(_detection(), TAXONOMY)
    assert [tuple(r) for r in rows] == [COLUMNS] * 3
    first, second = rows[0], rows[1]
    assert (first["index"], first["begin_frame"], first["end_frame"]) == (1, 5, 10)
    assert (first["begin_s"], first["end_s"], first["duration_s"]) == (0.2, 0.4, 0.2)
    assert (first["type"], first["hand"], first["confidence"]) == ("Serve", "Forehand", 0.7)
    assert first["top3"] == [[CLASSES[0], 0.7], [CLASSES[1], 0.2]]  # two stroke classes; Negative is not ranked
    assert (second["class"], second["type"], second["hand"]) == (CLASSES[1], "Offensive", "Backhand")
    stats = session_statistics([VideoAnalysis(_detection(), None, rows)], TAXONOMY)["total"]
    assert stats["strokes"] == 3 and stats["by_class"] == {CLASSES[0]: 2, CLASSES[1]: 1}
    assert stats["by_type"] == {"Serve": 2, "Offensive": 1} and stats["by_hand"] == {"Forehand": 2, "Backhand": 1}
    assert stats["per_minute"] == pytest.approx(3 / (60 / 25 / 60), abs=0.01)
    assert stats["mean_confidence"] == pytest.approx((0.7 + 0.6 + 0.8) / 3, abs=1e-4)


def test_clips_are_padded_labelled_and_overlapping_ones_written_side_by_side(tmp_path):
    video = make_video(tmp_path / "session.mp4", 60)
    rows = stroke_rows(_detection(), TAXONOMY)
    clips = write_clips(video, rows, tmp_path / "clips", fps=25.0, pad=0.2)  # 5 frames each side
    assert [p.name for p in clips] == ["001_serve-forehand-loop.mp4", "002_offensive-backhand-hit.mp4",
                                       "003_serve-forehand-loop.mp4"]
    assert [count_frames(p) for p in clips] == [15, 18, 15]  # [0,15), [7,25), [45,60): the video ends first
    assert sorted(p.name for p in (tmp_path / "clips").iterdir()) == [p.name for p in clips]  # no partial files
    source = list(iter_frames(video))
    clip = list(iter_frames(clips[1]))
    # below the label band the picture is the source's (x264 aside), the band is darkened, a border marks the stroke
    assert np.abs(clip[0][30:40, 20:40].astype(int) - source[7][30:40, 20:40]).mean() < 6
    assert clip[0][:4].mean() < source[7][:4].mean() - 10
    assert clip[6][-2:, 20:40, 1].mean() > clip[0][-2:, 20:40, 1].mean() + 60  # frame 13: inside, green border


def test_analyze_cli_writes_a_clip_per_stroke_and_skips_a_broken_video(tmp_path, capsys, one_thread):
    run = make_run(tmp_path / "run", logit_scale=1.0)
    videos = tmp_path / "videos"
    videos.mkdir()
    make_video(videos / "a<b>&c.mp4", 40)
    (videos / "broken.mp4").write_bytes(b"not a video")
    out = tmp_path / "analysis"
    # threshold 0.01: every frame is a stroke frame, so the video holds at least one stroke, whatever the weights
    status = main(["analyze", str(run), str(videos), "--out", str(out), "--threshold", "0.01", "--pad", "0.2",
                   "--precision", "fp32", "-q"])
    captured = capsys.readouterr()
    assert status == 1  # analysed, but one input skipped
    problems = [line for line in captured.err.splitlines() if "broken" in line]
    assert len(problems) == 1 and "skipped" in problems[0]
    folder = out / "videos" / "a<b>&c"
    with open(folder / "strokes.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    document = json.loads((folder / "strokes.json").read_text())
    assert rows and tuple(rows[0]) == COLUMNS and document["columns"] == list(COLUMNS)
    assert len(document["strokes"]) == len(rows) == len(read_actions(folder / "a<b>&c.xml"))
    clips = sorted((folder / "clips").iterdir())
    assert len(clips) == len(rows) == len(document["clips"])
    for row, clip in zip(document["strokes"], clips):
        assert count_frames(clip) == min(40, row["end_frame"] + 5) - max(0, row["begin_frame"] - 5)
    session = json.loads((out / "session.json").read_text())
    assert session["total"]["strokes"] == len(rows) and len(session["problems"]) == 1
    assert set(session["seconds"]) == {"detection", "clips", "report"}
    page = (out / "index.html").read_text()
    assert "a<b>&c" not in page and "a&lt;b&gt;&amp;c" in page  # every label escaped
    assert "a%3Cb%3E%26c/clips/001_" in page and "session.png" in page and "http" not in page
