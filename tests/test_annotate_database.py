"""The annotation project's database: validation in one place, ownership, undo, review, and durability under kill."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tstcnn.annotate.database import DATABASE, Project, Stroke
from tstcnn.io.video import VideoError
from tstcnn.taxonomy import TTSTROKE21_CLASSES

from annotate_helpers import write_video

A, B = TTSTROKE21_CLASSES[0], TTSTROKE21_CLASSES[8]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = Project.create(tmp_path / "project")
    project.add_video(write_video(tmp_path / "clip.mp4"))
    yield project
    project.close()


def test_create_open_and_video(project: Project, tmp_path: Path) -> None:
    video = project.video("clip.mp4")
    assert (video.frames, video.fps, video.width, video.height) == (30, 120.0, 32, 32)
    assert (project.root / "videos" / "clip.mp4").is_file()
    assert project.add_video(tmp_path / "clip.mp4") == video  # adding it again is a no-op
    assert project.classes == TTSTROKE21_CLASSES
    mode = sqlite3.connect(project.root / DATABASE).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    own = Project.create(tmp_path / "own", classes=["left", "right"])
    assert Project.open(tmp_path / "own").classes == ("left", "right")
    with pytest.raises(ValueError, match="other classes"):
        Project.create(tmp_path / "own", classes=["up"])
    own.close()


def test_validation_writes_nothing(project: Project) -> None:
    video = project.video("clip.mp4")
    bad = [dict(begin=5, end=5), dict(begin=-1, end=4), dict(begin=0, end=31), dict(label="Smash"),
           dict(annotator=""), dict(annotator="../x"), dict(annotator="a" * 41), dict(status="done"),
           dict(confidence=1.5), dict(top3=[["x", 0.5]] * 4), dict(begin=True)]
    for change in bad:
        row = dict(video_id=video.id, annotator="ann", begin=0, end=10, label=A) | change
        with pytest.raises(ValueError):
            project.add_stroke(**row)
    with pytest.raises(ValueError, match="stroke 2 of 2"):
        project.add_strokes([dict(video_id=video.id, annotator="ann", begin=0, end=10, label=A),
                             dict(video_id=video.id, annotator="ann", begin=0, end=40, label=A)])
    assert project.strokes() == [] and project.revision() == 1  # only the video was ever written


def test_edit_ownership_and_undo(project: Project) -> None:
    vid = project.video("clip.mp4").id
    first = project.add_stroke(vid, "ann", 2, 10, A)
    moved = project.update_stroke(first.id, "ann", begin=3, label=B)
    assert (moved.begin, moved.end, moved.label) == (3, 10, B)
    with pytest.raises(ValueError, match="ann's"):
        project.update_stroke(first.id, "bob", begin=4)
    with pytest.raises(ValueError):
        project.update_stroke(first.id, "ann", end=99)
    other = project.add_stroke(vid, "bob", 0, 5, A)
    project.delete_stroke(first.id, "ann")
    assert project.strokes(vid, "ann") == []
    assert project.undo("ann", vid) == moved  # the delete
    assert project.undo("ann", vid) == first  # the move and relabel
    assert project.undo("ann", vid) == first  # the add: removed
    assert project.strokes(vid, "ann") == [] and project.undo("ann", vid) is None
    assert project.strokes(vid) == [other] and project.annotators() == ["bob"]


def test_review_of_proposals(project: Project) -> None:
    vid = project.video("clip.mp4").id
    p1, p2, p3 = project.add_strokes([
        dict(video_id=vid, annotator="model", begin=b, end=b + 5, label=A, confidence=c, top3=[[A, c], [B, 0.1]],
             status="proposed") for b, c in ((0, 0.9), (10, 0.4), (20, 0.6))])
    assert p2.top3 == ((A, 0.4), (B, 0.1))
    accepted = project.review(p1.id, "ann", "accepted")
    corrected = project.review(p2.id, "ann", "corrected", begin=11, label=B)
    rejected = project.review(p3.id, "ann", "rejected")
    assert (accepted.status, accepted.origin, accepted.begin) == ("accepted", p1.id, 0)
    assert (corrected.status, corrected.begin, corrected.label) == ("corrected", 11, B)
    assert rejected.status == "rejected"
    assert [s.id for s in project.strokes(vid, "ann")] == [accepted.id, corrected.id]  # rejections are records
    assert len(project.strokes(vid, "ann", include_rejected=True)) == 3
    assert project.update_stroke(accepted.id, "ann", end=6).status == "corrected"
    assert project.review(p3.id, "ann", "accepted").id == rejected.id  # a second decision replaces the first
    with pytest.raises(ValueError, match="not a model proposal"):
        project.review(accepted.id, "bob", "accepted")


def test_bad_video_and_corrupt_database(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 2000)
    with pytest.raises(VideoError, match="broken.mp4"):
        project.add_video(broken)
    assert project.videos() == [] and not (tmp_path / "p" / "videos" / "broken.mp4").exists()
    project.close()
    with pytest.raises(ValueError, match="not an annotation project"):
        Project.open(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / DATABASE).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ValueError, match="not a readable annotation database") as info:
        Project.open(bad)
    assert "\n" not in str(info.value)


WRITER = """
import sys
from tstcnn.annotate.database import Project
project = Project.open(sys.argv[1])
vid = project.videos()[0].id
for i in range(100000):
    stroke = project.add_stroke(vid, "ann", i % 20, i % 20 + 5, project.classes[i % 3])
    print(stroke.id, flush=True)
"""


def test_sigkill_during_writes_loses_nothing_saved(project: Project) -> None:
    root = project.root
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    saved = []
    deadline = time.monotonic() + 60
    while len(saved) < 40 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        saved.append(int(line))
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert len(saved) >= 40
    reopened = Project.open(root)
    ids = {s.id for s in reopened.strokes()}
    assert set(saved) <= ids  # every save reported before the kill is there, the one in flight whole or absent
    assert all(isinstance(s, Stroke) and s.end - s.begin == 5 for s in reopened.strokes())
    assert sqlite3.connect(root / DATABASE).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    json.dumps([s.to_json() for s in reopened.strokes()])
    reopened.close()
