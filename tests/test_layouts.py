import os

import pytest

from tstcnn.io.layouts import SourceItem, check_actions, read_layout
from tstcnn.io.mediaeval import Action, write_actions, write_submission
from tstcnn.taxonomy import TTSTROKE21_CLASSES

LOOP, PUSH = "Serve Forehand Loop", "Defensive Backhand Push"


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not decoded by the layout readers")
    return path


def test_classification_layout(tmp_path):
    root = tmp_path / "classificationTask"
    _touch(root / "train" / LOOP / "a.mp4")
    _touch(root / "train" / PUSH / "b.mkv")
    _touch(root / "validation" / LOOP / "c.mp4")
    _touch(root / "test" / "d.mp4")
    _touch(root / "train" / LOOP / "notes.txt")
    scan = read_layout("mediaeval-classification", tmp_path, TTSTROKE21_CLASSES)
    assert scan.problems == []
    assert [(i.id, i.split, i.label) for i in scan.items] == [
        ("a", "train", LOOP), ("b", "train", PUSH), ("c", "validation", LOOP), ("d", "test", None)]
    assert scan.classes == TTSTROKE21_CLASSES


def test_classification_test_labels_from_a_ground_truth_submission(tmp_path):
    root = tmp_path / "classificationTask"
    _touch(root / "train" / LOOP / "a.mp4")
    for name in ("d", "e", "f"):
        _touch(root / "test" / f"{name}.mp4")
    truth = tmp_path / "truth.xml"
    write_submission(truth, {"d.mp4": PUSH, "e.mp4": "Serve Forehand Lop", "g.mp4": LOOP})
    scan = read_layout("mediaeval-classification", tmp_path, TTSTROKE21_CLASSES, test_labels=truth)
    assert [(i.id, i.label) for i in scan.items if i.split == "test"] == [("d", PUSH), ("e", None), ("f", None)]
    assert len(scan.problems) == 2
    assert "unknown class 'Serve Forehand Lop'" in scan.problems[0]
    assert "no test video 'g.mp4'" in scan.problems[1]
    with pytest.raises(ValueError, match="mediaeval-classification"):
        read_layout("folders", tmp_path / "classificationTask" / "train", None, test_labels=truth)


def test_classification_problems_each_named(tmp_path):
    _touch(tmp_path / "train" / "Serve Forehand Lop" / "a.mp4")
    _touch(tmp_path / "train" / LOOP / "b.mp4")
    _touch(tmp_path / "validation" / LOOP / "b.mp4")
    _touch(tmp_path / "train" / LOOP / "c.mp4")
    scan = read_layout("mediaeval-classification", tmp_path, TTSTROKE21_CLASSES)
    assert [i.id for i in scan.items] == ["c"]
    assert len(scan.problems) == 2
    assert "unknown class 'Serve Forehand Lop'" in scan.problems[0]
    assert "duplicate video id 'b'" in scan.problems[1]


def test_detection_layout_and_its_problems(tmp_path):
    root = tmp_path / "detectionTask"
    _touch(root / "train" / "good.mp4")
    write_actions(root / "train" / "good.xml", [Action(10, 50, LOOP), Action(60, 90, PUSH)])
    _touch(root / "train" / "backwards.mp4")
    write_actions(root / "train" / "backwards.xml", [Action(50, 50, LOOP)])
    _touch(root / "train" / "unknown.mp4")
    write_actions(root / "train" / "unknown.xml", [Action(1, 5, "Smash")])
    write_actions(root / "validation" / "novideo.xml", [Action(1, 5, LOOP)])
    _touch(root / "validation" / "noxml.mp4")
    _touch(root / "test" / "t.mp4")
    write_actions(root / "test" / "t.xml", [])
    _touch(root / "test" / "t2.mp4")  # test XMLs may be absent
    scan = read_layout("mediaeval-detection", tmp_path, TTSTROKE21_CLASSES)
    assert [(i.id, i.split, i.actions) for i in scan.items] == [
        ("good", "train", (Action(10, 50, LOOP), Action(60, 90, PUSH))), ("t", "test", ()), ("t2", "test", ())]
    joined = "\n".join(scan.problems)
    assert len(scan.problems) == 4
    assert "backwards.xml: action 1 has begin=50 >= end=50" in joined
    assert "unknown.xml: action 1: unknown class 'Smash'" in joined
    assert "novideo.xml: missing video" in joined
    assert "noxml.mp4: no annotation file noxml.xml" in joined


@pytest.mark.parametrize("payload", [
    '<?xml version="1.0"?><!DOCTYPE video [<!ENTITY a "aaaa">]><video><action begin="1" end="2" move="&a;"/></video>',
    '<?xml version="1.0"?><!DOCTYPE video [<!ENTITY x SYSTEM "file:///etc/passwd">]><video>&x;</video>',
])
def test_unsafe_xml_is_refused_with_its_name(tmp_path, payload):
    _touch(tmp_path / "train" / "evil.mp4")
    (tmp_path / "train" / "evil.xml").write_text(payload)
    _touch(tmp_path / "train" / "fine.mp4")
    write_actions(tmp_path / "train" / "fine.xml", [Action(0, 4, LOOP)])
    scan = read_layout("mediaeval-detection", tmp_path, TTSTROKE21_CLASSES)
    assert [i.id for i in scan.items] == ["fine"]
    assert len(scan.problems) == 1 and "evil.xml: not a valid, safe XML file" in scan.problems[0]


def test_folders_layout_classes_found_or_given(tmp_path):
    _touch(tmp_path / "jump" / "j1.mp4")
    _touch(tmp_path / "run" / "r1.avi")
    scan = read_layout("folders", tmp_path)
    assert scan.classes == ("jump", "run") and [(i.id, i.split, i.label) for i in scan.items] == [
        ("j1", "train", "jump"), ("r1", "train", "run")]
    scan = read_layout("folders", tmp_path, ["run"])
    assert [i.id for i in scan.items] == ["r1"] and "unknown class 'jump'" in scan.problems[0]


def test_folders_with_split_folders(tmp_path):
    _touch(tmp_path / "train" / "jump" / "a.mp4")
    _touch(tmp_path / "validation" / "jump" / "b.mp4")
    assert [(i.id, i.split) for i in read_layout("folders", tmp_path).items] == [("a", "train"), ("b", "validation")]


def test_a_link_escaping_the_dataset_folder(tmp_path):
    outside = _touch(tmp_path / "elsewhere" / "secret.mp4")
    data = tmp_path / "data"
    _touch(data / "jump" / "ok.mp4")
    os.symlink(outside, data / "jump" / "escape.mp4")
    scan = read_layout("folders", data)
    assert [i.id for i in scan.items] == ["ok"]
    assert "video 'escape.mp4' escapes the dataset folder" in scan.problems[0]


def test_csv_layout_and_its_problems(tmp_path):
    data = tmp_path / "data"
    for name in ("long", "clip", "bad", "odd"):
        _touch(data / "videos" / f"{name}.mp4")
    _touch(tmp_path / "secret.mp4")
    (data / "labels.csv").write_text(
        "video,begin,end,label,split\n"
        "videos/long.mp4,10,40,run,train\n"
        "videos/long.mp4,50,70,jump,train\n"
        "videos/clip.mp4,,,jump,validation\n"
        "videos/bad.mp4,30,20,jump,train\n"
        "videos/missing.mp4,1,2,jump,train\n"
        "../secret.mp4,1,2,jump,train\n"
        "videos/odd.mp4,1,2,swim,train\n")
    scan = read_layout("csv", data, ["jump", "run"])  # the folder holding one CSV works too
    assert [(i.id, i.split, i.label, i.actions) for i in scan.items] == [
        ("clip", "validation", "jump", ()), ("long", "train", None, (Action(10, 40, "run"), Action(50, 70, "jump")))]
    problems = scan.problems
    assert len(problems) == 4
    assert "labels.csv:5: action 1 has begin=30 >= end=20" in problems[0]
    assert "labels.csv:8: unknown class 'swim'" in problems[1]
    assert "missing video" in problems[2] and "missing.mp4" in problems[2]
    assert "video 'secret.mp4' escapes the dataset folder" in problems[3]


def test_names_that_cannot_be_store_ids_are_named_and_the_rest_kept(tmp_path):
    data = tmp_path / "data"
    names = ["good.mp4", "...mp4", "..mp4", ".hidden.mp4", "tab\tname.mp4"]
    for name in names:
        _touch(data / name)
    (data / "clips.csv").write_text("video,begin,end,label\n" + "".join(f"{name},,,jump\n" for name in names))
    scan = read_layout("csv", data / "clips.csv")
    assert [i.id for i in scan.items] == ["good"]
    assert len(scan.problems) == 4
    for name, problem in zip(["...mp4", "..mp4", ".hidden.mp4", "tab\tname.mp4"], sorted(scan.problems)):
        assert f"clips.csv: video {name!r}: video id" in problem and "\n" not in problem
    _touch(tmp_path / "folders" / "jump" / "ok.mp4")
    _touch(tmp_path / "folders" / "jump" / "bell\x07.mp4")
    scan = read_layout("folders", tmp_path / "folders")
    assert [i.id for i in scan.items] == ["ok"] and "holds a control character" in scan.problems[0]


def test_not_a_layout_at_all(tmp_path):
    with pytest.raises(ValueError, match="unknown layout 'xml'"):
        read_layout("xml", tmp_path)
    with pytest.raises(ValueError, match="no train/, validation/ or test/"):
        read_layout("mediaeval-detection", tmp_path)
    with pytest.raises(ValueError, match="no such dataset"):
        read_layout("folders", tmp_path / "nope")
    (tmp_path / "a.csv").write_text("file,start\nx,1\n")
    with pytest.raises(ValueError, match="missing"):
        read_layout("csv", tmp_path / "a.csv")


def test_frames_past_the_end_are_checked_after_decoding(tmp_path):
    item = SourceItem("v", tmp_path / "v.mp4", "train", actions=(Action(0, 10, LOOP), Action(20, 31, LOOP)),
                      annotation=tmp_path / "v.xml")
    assert check_actions(item, 31) == []
    (message,) = check_actions(item, 30)
    assert "v.xml: action 2 ends at frame 31, past the end of v.mp4 (30 decoded frames)" in message
