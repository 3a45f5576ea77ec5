"""Model-assisted annotation: ``tstcnn annotate --model RUN_DIR`` records a run's detections as proposals with
their confidence and top-3 classes, once per video; reviews count towards the share accepted unchanged."""

import json
from pathlib import Path

import pytest

from tstcnn.annotate.assist import review_summary
from tstcnn.annotate.database import Project
from tstcnn.cli import main
from tstcnn.infer.detect import DetectOptions, detect_videos
from tstcnn.infer.predict import load_predictor

from annotate_helpers import write_video
from engine_helpers import write_untrained_run

CLASSES = ["Serve Forehand Loop", "Offensive Backhand Hit", "Defensive Forehand Push", "Negative"]


def make_run(root: Path) -> Path:
    """An untrained run folder as training writes it (tiny RGB network)."""
    return write_untrained_run(root, CLASSES, "rgb", logit_scale=1.0)


@pytest.mark.slow
def test_model_proposals_carry_confidence_and_top3(tmp_path: Path, one_thread, capsys) -> None:
    run = make_run(tmp_path / "run")
    video = write_video(tmp_path / "long.mp4", frames=40, fps=25.0, size=(64, 48))
    root = tmp_path / "project"
    options = ["--model", str(run), "--device", "cpu", "--no-serve", "-q"]
    assert main(["annotate", str(root), str(video), *options]) == 0
    out = capsys.readouterr().out
    with Project.open(root) as project:
        proposals = project.strokes(annotator="model")
        assert f"{len(proposals)} proposals of the model" in out and proposals
        (expected,), _ = detect_videos(load_predictor(run, device="cpu"), [video], tmp_path / "det", DetectOptions())
        assert [(p.begin, p.end, p.label) for p in proposals] == [tuple(a) for a in expected.actions]
        for proposal, score in zip(proposals, expected.scores):
            assert proposal.status == "proposed" and proposal.confidence == pytest.approx(score.confidence)
            assert proposal.top3 == score.top3 and proposal.top3[0][0] == proposal.label
            assert len(proposal.top3) == 3 and {c for c, _ in proposal.top3} <= set(CLASSES[:3])
        assert main(["annotate", str(root), *options]) == 0  # proposals are made once per video
        assert len(project.strokes(annotator="model")) == len(proposals)
        project.review(proposals[0].id, "ann", "accepted")
        summary = review_summary(project)
        assert summary["overall"]["accepted_unchanged"] == 1.0 and summary["reviewers"]["ann"]["reviewed"] == 1


def test_import_analysis_gives_proposals_to_review(tmp_path: Path, capsys) -> None:
    video = write_video(tmp_path / "session.mp4", frames=30, fps=25.0)
    folder = tmp_path / "analysis" / "videos" / "session"
    folder.mkdir(parents=True)
    rows = [{"index": i + 1, "begin_frame": b, "end_frame": e, "begin_s": b / 25, "end_s": e / 25,
             "duration_s": (e - b) / 25, "class": CLASSES[i], "type": "", "hand": "", "confidence": c,
             "top3": [[CLASSES[i], c], [CLASSES[2], 1 - c]]}
            for i, (b, e, c) in enumerate(((2, 9, 0.7), (15, 24, 0.4)))]
    (folder / "strokes.json").write_text(json.dumps({"video": video.name, "source": str(video), "fps": 25.0,
                                                     "frames": 30, "columns": list(rows[0]), "strokes": rows}))
    root = tmp_path / "project"
    assert main(["annotate", str(root), str(video), "--import-analysis", str(tmp_path / "analysis"), "--no-serve"]) == 0
    assert "imported 2 proposals of model" in capsys.readouterr().out
    with Project.open(root) as project:
        proposals = project.strokes(annotator="model")
        assert [(p.begin, p.end, p.label, p.status, p.confidence) for p in proposals] == \
            [(2, 9, CLASSES[0], "proposed", 0.7), (15, 24, CLASSES[1], "proposed", 0.4)]
        assert review_summary(project)["proposals"] == 2
