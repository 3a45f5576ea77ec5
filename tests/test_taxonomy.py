import pytest

from tstcnn.taxonomy import NEGATIVE, TTSTROKE21_CLASSES, Taxonomy, load_taxonomy, ttstroke21


def test_twenty_strokes_and_negative_spelled_as_the_scorers():
    assert len(TTSTROKE21_CLASSES) == 21 and TTSTROKE21_CLASSES[-1] == NEGATIVE == "Negative"
    assert TTSTROKE21_CLASSES[0] == "Serve Forehand Backspin"
    assert "Defensive Backhand Backspin" in TTSTROKE21_CLASSES
    assert sum(c.startswith("Serve") for c in TTSTROKE21_CLASSES) == 8
    assert sum(c.startswith("Offensive") for c in TTSTROKE21_CLASSES) == 6
    assert sum(c.startswith("Defensive") for c in TTSTROKE21_CLASSES) == 6


@pytest.mark.parametrize("grouping, names", [
    ("type", ("Serve", "Offensive", "Defensive", "Negative")),
    ("hand", ("Forehand", "Backhand", "Negative")),
    ("type_hand", ("Serve Forehand", "Serve Backhand", "Offensive Forehand", "Offensive Backhand",
                   "Defensive Forehand", "Defensive Backhand", "Negative")),
])
def test_groupings(grouping, names):
    taxonomy = ttstroke21()
    assert taxonomy.group_names(grouping) == names
    mapping = taxonomy.group_map(grouping)
    assert len(mapping) == 21
    assert names[mapping[taxonomy.index("Offensive Backhand Flip")]] in ("Offensive", "Backhand", "Offensive Backhand")
    assert names[mapping[taxonomy.index("Negative")]] == "Negative"


def test_unknown_grouping_and_class():
    with pytest.raises(ValueError, match="allowed: type, hand, type_hand"):
        ttstroke21().group_map("spin")
    with pytest.raises(KeyError, match="Serve Sideways"):
        ttstroke21().index("Serve Sideways")


def test_custom_taxonomy_from_file(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("# my lab\nJump\n\nFall\nNegative\n", encoding="utf-8")
    taxonomy = load_taxonomy(path)
    assert taxonomy.classes == ("Jump", "Fall", "Negative") and taxonomy.negative_index == 2
    assert not taxonomy.supports_groupings()
    path.write_text("Jump\nJump\n", encoding="utf-8")
    with pytest.raises(ValueError, match="duplicate class names: Jump"):
        load_taxonomy(path)
    assert Taxonomy(("a",)).negative_index is None
