import pytest

from tstcnn.io.mediaeval import (
    MAX_ACTIONS_PER_VIDEO,
    Action,
    AnnotationError,
    read_actions,
    read_submission,
    write_actions,
    write_submission,
)


def test_actions_round_trip_with_and_without_move(tmp_path):
    path = tmp_path / "video.xml"
    actions = [Action(10, 130, "Serve Forehand Loop"), Action(200, 260)]
    write_actions(path, actions)
    assert read_actions(path) == actions
    assert 'move="Serve Forehand Loop"' in path.read_text()


def test_reads_the_2020_annotation_format(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text('<?xml version="1.0"?>\n<video>\n  <action begin="5" end="90" move="Offensive Backhand Flip"/>\n'
                    '  <action begin="120" end="240" move="Negative"/>\n</video>\n')
    assert read_actions(path) == [Action(5, 90, "Offensive Backhand Flip"), Action(120, 240, "Negative")]


def test_submission_round_trip_sorted(tmp_path):
    path = tmp_path / "run.xml"
    write_submission(path, {"b.mp4": "Negative", "a.mp4": "Serve Backhand Sidespin"})
    assert read_submission(path) == {"a.mp4": "Serve Backhand Sidespin", "b.mp4": "Negative"}
    assert path.read_text().index("a.mp4") < path.read_text().index("b.mp4")


@pytest.mark.parametrize("text, message", [
    ('<video><action begin="x" end="9"/></video>', "begin='x'"),
    ('<video><action end="9"/></video>', "begin=None"),
    ("<videos/>", "expected <video>"),
    ("<video><action", "not a valid, safe XML"),
    ('<?xml version="1.0"?><!DOCTYPE v [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
     '<video><action begin="1" end="2" move="&b;"/></video>', "not a valid, safe XML"),
    ('<?xml version="1.0"?><!DOCTYPE v [<!ENTITY x SYSTEM "file:///etc/passwd">]><video>&x;</video>',
     "not a valid, safe XML"),
])
def test_bad_or_unsafe_annotation_files_give_one_message(tmp_path, text, message):
    path = tmp_path / "bad.xml"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=message) as info:
        read_actions(path)
    assert "bad.xml" in str(info.value) and "\n" not in str(info.value)


def test_submission_duplicates_and_missing_attributes(tmp_path):
    path = tmp_path / "s.xml"
    path.write_text('<videos><video name="a.mp4" class="Negative"/><video name="a.mp4" class="Negative"/></videos>')
    with pytest.raises(AnnotationError, match="listed twice"):
        read_submission(path)
    path.write_text('<videos><video name="a.mp4"/></videos>')
    with pytest.raises(AnnotationError, match="lacks"):
        read_submission(path)
    with pytest.raises(AnnotationError, match="cannot read"):
        read_actions(tmp_path / "missing.xml")


def test_an_annotation_with_more_strokes_than_the_cap_is_refused_in_one_line(tmp_path):
    path = tmp_path / "huge.xml"
    actions = "".join(f'<action begin="{i}" end="{i + 1}"/>' for i in range(MAX_ACTIONS_PER_VIDEO + 1))
    path.write_text(f"<video>{actions}</video>")
    with pytest.raises(AnnotationError, match=f"more than {MAX_ACTIONS_PER_VIDEO} <action> elements") as info:
        read_actions(path)
    assert "huge.xml" in str(info.value) and "\n" not in str(info.value)
    assert len(read_actions(path, max_actions=MAX_ACTIONS_PER_VIDEO + 1)) == MAX_ACTIONS_PER_VIDEO + 1
    assert MAX_ACTIONS_PER_VIDEO == 100_000


def test_actions_nested_in_other_elements_are_read_in_file_order(tmp_path):
    path = tmp_path / "nested.xml"
    path.write_text('<video><action begin="1" end="2"/><set><action begin="3" end="4" move="M"/></set>'
                    '<action begin="5" end="6"/></video>')
    assert read_actions(path) == [Action(1, 2), Action(3, 4, "M"), Action(5, 6)]
