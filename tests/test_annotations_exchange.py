"""Annotations in and out of a project: MediaEval XML round trip, all-or-nothing imports, the clip layout that
``tstcnn prepare`` reads, consensus export, ``tstcnn annotations agreement`` and analysis imports."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tstcnn.annotate.database import Project
from tstcnn.annotate.exchange import ImportProblems, export, import_analysis, import_xml
from tstcnn.cli import main
from tstcnn.io.mediaeval import Action, read_actions, write_actions
from tstcnn.io.video import count_frames, read_frames
from tstcnn.prep.store import Store
from tstcnn.synth import generate_dataset

CLASSES = ("Serve Forehand Topspin", "Defensive Backhand Block", "Negative")


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """``tstcnn synth --layout detection`` output, tiny: three videos of about 50 frames with two strokes each."""
    out = tmp_path_factory.mktemp("synth") / "data"
    generate_dataset(out, layout="detection", per_class=1, classes=CLASSES, size=(64, 36), fps=10, seed=5,
                     workers=1, progress=False)
    return out / "detectionTask"


def _xmls(root: Path) -> dict[str, list[Action]]:
    return {p.stem: read_actions(p) for p in sorted(root.rglob("*.xml"))}


def _flat_copy(synth: Path, target: Path) -> Path:
    """The synthetic videos and XMLs in one folder, to edit."""
    target.mkdir(parents=True)
    for path in synth.rglob("*"):
        if path.is_file():
            shutil.copy(path, target / path.name)
    return target


def _state(project: Project) -> tuple:
    return [v.name for v in project.videos()], project.strokes(), sorted(p.name for p in (project.root /
                                                                                          "videos").iterdir())


def test_export_equals_the_imported_xmls_frame_for_frame(synth, tmp_path, capsys):
    project_dir, out = tmp_path / "project", tmp_path / "export"
    assert main(["annotations", "import", str(project_dir), str(synth), "--annotator", "ann"]) == 0
    assert "imported 6 strokes of ann on 3 videos (3 added to the project)" in capsys.readouterr().out
    assert main(["annotations", "export", str(project_dir), "--out", str(out)]) == 0
    assert "exported 6 strokes of ann on 3 videos" in capsys.readouterr().out
    assert main(["annotations", "agreement", str(project_dir)]) == 2
    assert "agreement needs two annotators or more; the project has ann" in capsys.readouterr().err
    original = _xmls(synth)
    assert _xmls(out) == original and sum(map(len, original.values())) == 6
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{v}.xml" for v in original] + ["export.json"])
    with Project.open(project_dir) as project:
        assert [v.frames for v in project.videos()] == [count_frames(p) for p in sorted(synth.rglob("*.mp4"))]
        # importing the same files again would double the strokes: refused, nothing added
        before = _state(project)
        with pytest.raises(ImportProblems, match="ann already has strokes on .*nothing was imported"):
            import_xml(project, synth, "ann")
        assert _state(project) == before
    # a second export replaces the first; a folder holding other files is refused
    assert main(["annotations", "export", str(project_dir), "--out", str(out), "--annotator", "ann"]) == 0
    assert _xmls(out) == original
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert main(["annotations", "export", str(project_dir), "--out", str(tmp_path / "other")]) == 2
    assert "not an earlier export" in capsys.readouterr().err
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("bad, message", [
    (Action(3, 9, "Smash"), "action 2 names the unknown class 'Smash'"),
    (Action(40, 999, "Negative"), "action 2 ends at frame 999, past the end of train_0000.mp4"),
])
def test_a_bad_xml_stops_the_whole_import_with_one_line(synth, tmp_path, capsys, bad, message):
    """The other two files are good, but nothing of the import goes in: no video, no stroke."""
    folder = _flat_copy(synth, tmp_path / "xmls")
    actions = read_actions(folder / "train_0000.xml")
    write_actions(folder / "train_0000.xml", [actions[0], bad])
    project_dir = tmp_path / "project"
    Project.create(project_dir).close()
    capsys.readouterr()
    code = main(["annotations", "import", str(project_dir), str(folder), "--annotator", "ann"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("tstcnn annotations: error: ") and message in err and "nothing was imported" in err
    with Project.open(project_dir) as project:
        assert _state(project) == ([], [], [])
    # into a folder that did not exist: no project is left behind
    assert main(["annotations", "import", str(tmp_path / "new"), str(folder), "--annotator", "ann", "-q"]) == 2
    assert not (tmp_path / "new").exists()


def test_import_names_every_problem_and_matches_project_videos(synth, tmp_path):
    project = Project.create(tmp_path / "project", CLASSES)
    with project:
        video = project.add_video(synth / "train" / "train_0000.mp4")
        folder = tmp_path / "xmls"
        folder.mkdir()
        shutil.copy(synth / "train" / "train_0000.xml", folder)  # its video is in the project
        write_actions(folder / "nowhere.xml", [Action(0, 5, CLASSES[0])])  # no such video
        write_actions(folder / "train_0000b.xml", [Action(0, 5, None)])  # no class
        with pytest.raises(ImportProblems) as caught:
            import_xml(project, folder, "bob")
        assert len(caught.value.problems) == 2 and "(and 1 more problem)" in str(caught.value)
        assert "nowhere.xml: no video nowhere.* in the project or beside this file" in caught.value.problems[0]
        (folder / "nowhere.xml").unlink()
        (folder / "train_0000b.xml").unlink()
        summary = import_xml(project, folder, "bob")
        assert summary.videos_added == [] and summary.strokes == {video.name: 2}
        assert [(s.begin, s.end, s.label) for s in project.strokes(video.id, "bob")] == \
            [tuple(a) for a in read_actions(folder / "train_0000.xml")]


def test_classification_export_is_read_by_prepare_as_it_is(synth, tmp_path, capsys):
    project = Project.create(tmp_path / "project", CLASSES)
    with project:
        import_xml(project, synth / "train", "ann")
        video = project.videos()[0]
        strokes = project.strokes(annotator="ann")
        # an overlapping stroke too: both clips come from one decoding pass
        project.add_stroke(video.id, "ann", strokes[0].begin + 2, strokes[0].end + 3, CLASSES[2])
        strokes = project.strokes(annotator="ann")
        summary = export(project, tmp_path / "clips", layout="mediaeval-classification")
        original = read_frames(project.video_path(video)).astype(int)
    assert summary.strokes == len(strokes) == 3
    clips = sorted((tmp_path / "clips").rglob("*.mp4"))
    stem = Path(video.name).stem
    assert clips == sorted(tmp_path / "clips" / "train" / s.label / f"{stem}_{s.begin}-{s.end}.mp4" for s in strokes)
    for stroke in strokes:
        clip = read_frames(tmp_path / "clips" / "train" / stroke.label / f"{stem}_{stroke.begin}-{stroke.end}.mp4")
        assert len(clip) == stroke.end - stroke.begin
        # the clip is frames begin..end-1 (re-encoded, so close rather than equal): no other offset fits as well
        errors = {shift: np.abs(clip.astype(int) - original[stroke.begin + shift:stroke.end + shift]).mean()
                  for shift in (-2, -1, 0, 1, 2)}
        assert min(errors, key=errors.get) == 0, errors
    store = tmp_path / "store"
    code = main(["prepare", "--source", str(tmp_path / "clips"), "--layout", "mediaeval-classification", "--out",
                 str(store), "--preset", "cpu-small", "--width", "32", "--workers", "1", "--quiet",
                 "--classes", str(_classes_file(tmp_path))])
    assert code == 0, capsys.readouterr().err
    entries = {e.id: e for e in Store(store).videos()}
    assert sorted(entries) == sorted(p.stem for p in clips)
    assert {(e.label, e.split, e.frames) for e in entries.values()} == \
        {(p.parent.name, "train", count_frames(p)) for p in clips}


def _classes_file(tmp_path: Path) -> Path:
    path = tmp_path / "classes.txt"
    path.write_text("\n".join(CLASSES) + "\n")
    return path


def test_consensus_export_and_agreement_command(synth, tmp_path, capsys):
    project_dir = tmp_path / "project"
    assert main(["annotations", "import", str(project_dir), str(synth), "--annotator", "ann",
                 "--classes", str(_classes_file(tmp_path))]) == 0
    shifted = _flat_copy(synth, tmp_path / "bob")
    for xml in shifted.glob("*.xml"):
        write_actions(xml, [Action(a.begin + 1, a.end, a.move) for a in read_actions(xml)][:-1] if
                      xml.stem == "train_0000" else [Action(a.begin + 1, a.end, a.move) for a in read_actions(xml)])
    assert main(["annotations", "import", str(project_dir), str(shifted), "--annotator", "bob"]) == 0
    capsys.readouterr()
    out = tmp_path / "figures" / "agreement.json"
    assert main(["annotations", "agreement", str(project_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ann vs bob: 5 matched, 1 + 0 unmatched, boundaries median 0.5 / p90 1.0 frames, kappa 1.00" in printed
    result = json.loads(out.read_text())
    assert result["pairs"][0]["annotators"] == ["ann", "bob"] and result["overall"]["matched"] == 5
    agreed = json.loads((out.parent / "consensus.json").read_text())
    assert agreed["strokes"] == 6 and agreed["ties"] == 1  # the stroke only ann marked: half of the annotators
    assert main(["annotations", "export", str(project_dir), "--out", str(tmp_path / "c"), "--consensus"]) == 0
    assert "exported 6 strokes of consensus on 3 videos, 1 flagged for review" in capsys.readouterr().out
    exported = _xmls(tmp_path / "c")
    for stem, actions in _xmls(synth).items():
        # median of begins b and b + 1 rounds down to b; ends agree
        assert exported[stem] == actions
    assert json.loads((tmp_path / "c" / "consensus.json").read_text()) == agreed
    assert main(["annotations", "export", str(project_dir), "--out", str(tmp_path / "d")]) == 2
    assert "choose one with --annotator NAME or export --consensus" in capsys.readouterr().err


def test_analysis_strokes_become_model_proposals(synth, tmp_path):
    """``strokes.json`` as ``tstcnn analyze`` writes it; the video is added from the original it names."""
    source = synth / "test" / "test_0000.mp4"
    frames = count_frames(source)
    project = Project.create(tmp_path / "project", CLASSES)
    with project:
        folder = tmp_path / "analysis" / "videos" / "test_0000"
        folder.mkdir(parents=True)
        rows = [{"index": 1, "begin_frame": 4, "end_frame": 12, "begin_s": 0.4, "end_s": 1.2, "duration_s": 0.8,
                 "class": CLASSES[1], "type": "Defensive", "hand": "Backhand", "confidence": 0.8,
                 "top3": [[CLASSES[1], 0.8], [CLASSES[0], 0.15], [CLASSES[2], 0.05]]}]
        document = {"video": source.name, "source": str(source), "fps": 10.0, "frames": frames,
                    "columns": list(rows[0]), "strokes": rows, "clips": []}
        (folder / "strokes.json").write_text(json.dumps(document))
        summary = import_analysis(project, tmp_path / "analysis")
        assert summary.videos_added == [source.name] and summary.strokes == {source.name: 1}
        video = project.video(source.name)
        (stroke,) = project.strokes(video.id, "model")
        assert (stroke.begin, stroke.end, stroke.label, stroke.status) == (4, 12, CLASSES[1], "proposed")
        assert stroke.confidence == pytest.approx(0.8) and stroke.top3[1] == (CLASSES[0], pytest.approx(0.15))
        before = _state(project)
        rows[0]["end_frame"] = frames + 1
        (folder / "strokes.json").write_text(json.dumps(document))
        with pytest.raises(ImportProblems, match="stroke 1 ends at frame"):
            import_analysis(project, tmp_path / "analysis", annotator="model2")
        document["frames"] = frames + 5  # analysed another video of the same name
        (folder / "strokes.json").write_text(json.dumps(document))
        with pytest.raises(ImportProblems, match=f"analysed a video of {frames + 5} frames"):
            import_analysis(project, tmp_path / "analysis", annotator="model2")
        assert _state(project) == before


def test_videos_sharing_a_stem_are_refused_rather_than_overwritten(synth, tmp_path):
    copy = tmp_path / "train_0000.mkv"
    shutil.copy(synth / "train" / "train_0000.mp4", copy)
    with Project.create(tmp_path / "project", CLASSES) as project:
        first = project.add_video(synth / "train" / "train_0000.mp4")
        second = project.add_video(copy)
        with pytest.raises(ImportProblems, match="several videos named train_0000"):
            import_xml(project, synth / "train", "ann")
        for video in (first, second):
            project.add_stroke(video.id, "ann", 0, 5, CLASSES[0])
        with pytest.raises(ValueError, match="would both export as train_0000"):
            export(project, tmp_path / "out")
        assert not (tmp_path / "out").exists()


def test_detection_export_with_videos_is_read_by_prepare_as_it_is(synth, tmp_path, capsys):
    project_dir, out = tmp_path / "project", tmp_path / "export"
    assert main(["annotations", "import", str(project_dir), str(synth), "--annotator", "ann", "-q"]) == 0
    assert main(["annotations", "export", str(project_dir), "--out", str(out), "--with-videos", "-q"]) == 0
    videos = sorted((out / "train").glob("*.mp4"))
    assert [p.name for p in videos] == sorted(p.name for p in synth.rglob("*.mp4"))
    assert all(p.stat().st_ino == (project_dir / "videos" / p.name).stat().st_ino for p in videos)  # hard links
    store = tmp_path / "store"
    code = main(["prepare", "--source", str(out), "--layout", "mediaeval-detection", "--out", str(store),
                 "--preset", "cpu-small", "--width", "32", "--workers", "1", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert {e.id: list(e.actions) for e in Store(store).videos()} == _xmls(synth)
