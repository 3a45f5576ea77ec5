import os

import pytest

from tstcnn.io.ids import MAX_ID_BYTES, check_id, inside


@pytest.mark.parametrize("text", ["a", "Serve Forehand Loop 01", "v.1.2", "été", "a..b", "x" * MAX_ID_BYTES])
def test_good_ids_pass_unchanged(text):
    assert check_id(text) == text


@pytest.mark.parametrize(("text", "reason"), [
    ("", "is empty"), (".", "starts with '.'"), ("..", "starts with '.'"), (".hidden", "starts with '.'"),
    ("../../x", "starts with '.'"), ("/abs/path", "path separator"), ("a/b", "path separator"),
    ("a\\b", "path separator"), ("a\0b", "control character"), ("a\nb", "control character"),
    ("a\x7fb", "control character"), ("x" * (MAX_ID_BYTES + 1), "at most"), ("é" * (MAX_ID_BYTES // 2 + 1), "at most"),
    (None, "not a string"), (3, "not a string"),
])
def test_bad_ids_are_refused_in_one_line(text, reason):
    with pytest.raises(ValueError, match=reason) as error:
        check_id(text, "shard video")
    assert "\n" not in str(error.value).replace("\\n", "")
    assert str(error.value).startswith("shard video")


def test_inside_keeps_paths_strictly_below_the_root(tmp_path):
    root = tmp_path / "store" / "videos"
    root.mkdir(parents=True)
    assert inside(root, root / "a") == (root / "a").resolve()
    assert inside(root, root / "a" / ".." / "b") == (root / "b").resolve()
    for escaping in (root / "..", root / ".", root, root / ".." / "videos2", tmp_path / "elsewhere", "/etc"):
        with pytest.raises(ValueError, match="not inside"):
            inside(root, escaping)


def test_inside_follows_links(tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", root / "a")
    with pytest.raises(ValueError, match="not inside"):
        inside(root, root / "a")
    linked_root = tmp_path / "linked"
    os.symlink(root, linked_root)  # a store reached through a link is still itself
    assert inside(linked_root, linked_root / "b") == (root / "b").resolve()
