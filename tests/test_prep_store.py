import json
import logging
import mmap
import os
import pickle
import shutil

import numpy as np
import pytest

from tstcnn.config import PrepConfig
from tstcnn.io.mediaeval import Action
from tstcnn.prep import store as store_module
from tstcnn.prep.store import (
    MAX_ACTIONS,
    Store,
    VideoEntryWriter,
    complete_video_ids,
    finalize_store,
    remove_incomplete,
    rgb_to_yuv420,
    write_video_entry,
    yuv420_to_rgb,
)


def _smooth_rgb(n: int, h: int, w: int) -> np.ndarray:
    """Frames whose colours vary slowly in space (4:2:0 keeps them) and with t."""
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([np.stack([(xs * 2 + 3 * t) % 200 + 20, (ys * 3) % 200 + 20, np.full_like(xs, 30 + 5 * t)], -1)
                     for t in range(n)]).astype(np.uint8)


def _frame_index_flow(n: int, h: int, w: int) -> np.ndarray:
    """Flow constant per frame: (t/4, -t/8) px, so a read can tell which frame it came from."""
    t = np.arange(n, dtype=np.float32)[:, None, None]
    return np.stack([np.broadcast_to(t / 4, (n, h, w)), np.broadcast_to(-t / 8, (n, h, w))], -1).astype(np.float32)


def _build(root, n=12, h=36, w=48, video_id="a", split="train", roi=None):
    rgb, flow = _smooth_rgb(n, h, w), _frame_index_flow(n, h, w)
    roi = np.tile([w / 2, h / 2], (n, 1)) if roi is None else roi
    write_video_entry(root, video_id, rgb, flow, roi,
                      {"split": split, "label": None, "actions": [[2, 9, "Serve Forehand Loop"]], "fps": 25.0})
    return rgb, flow


def test_yuv420_round_trip_is_close():
    rgb = _smooth_rgb(3, 16, 24)
    yuv = np.stack([rgb_to_yuv420(f) for f in rgb])
    assert yuv.shape == (3, 24, 24)
    back = yuv420_to_rgb(yuv[:, :16], yuv[:, 16:20].reshape(3, 8, 12), yuv[:, 20:].reshape(3, 8, 12))
    assert back.shape == rgb.shape and np.abs(back.astype(int) - rgb).max() <= 6


def test_round_trip_full_frame_and_manifest(tmp_path):
    rgb, flow = _build(tmp_path)
    _build(tmp_path, video_id="b", split="validation")
    finalize_store(tmp_path, PrepConfig(width=48), ["x", "y"], layout="folders")
    store = Store(tmp_path)
    assert [e.id for e in store.videos()] == ["a", "b"] and [e.id for e in store.videos("validation")] == ["b"]
    entry = store.entry("a")
    assert (entry.frames, entry.width, entry.height, entry.fps) == (12, 48, 36, 25.0)
    assert entry.actions == (Action(2, 9, "Serve Forehand Loop"),) and store.classes == ("x", "y")
    clip = store.read_clip("a", 0, 12, (36, 48))
    assert clip["rgb"].shape == (12, 36, 48, 3) and clip["rgb"].dtype == np.uint8
    assert np.abs(clip["rgb"].astype(int) - rgb).mean() < 2.5
    assert clip["flow"].shape == (12, 36, 48, 2) and clip["flow"].dtype == np.float32
    # companded int8: error below half a code spacing, 2·q·step at |flow| = q²·step
    spacing = 2 * np.sqrt(np.abs(flow) / store.flow_step("a")) * store.flow_step("a") + store.flow_step("a")
    assert np.all(np.abs(clip["flow"] - flow) <= spacing / 2 + 1e-6)
    assert np.abs(clip["flow"] - flow).max() < 0.05
    # flow_scale from the train split only: per-frame max norm of video a
    norms = np.hypot(flow[:, 0, 0, 0], flow[:, 0, 0, 1])
    assert store.flow_scale == pytest.approx(norms.mean() + 3 * norms.std(), rel=1e-3)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["format"] == "tstcnn-store" and manifest["videos"]["a"]["frames"] == 12
    assert {"numpy", "opencv", "av"} <= set(manifest["libraries"])


def test_crop_follows_centre_and_edges_repeat(tmp_path):
    h, w, n = 40, 64, 10
    roi = np.stack([np.linspace(8, 56, n), np.full(n, 20.0)], 1)
    rgb, _ = _build(tmp_path, n=n, h=h, w=w, roi=roi)
    finalize_store(tmp_path, PrepConfig(), ["x"])
    store = Store(tmp_path)
    clip = store.read_clip("a", -2, 14, (16, 20), modalities=("flow",))
    assert set(clip) == {"flow"} and clip["flow"].shape == (14, 16, 20, 2)
    frame_of_each = clip["flow"][:, 5, 5, 0] * 4
    np.testing.assert_allclose(frame_of_each, [0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9], atol=0.2)
    # window kept inside the frame and centred on the ROI, at even offsets
    rgb_clip = store.read_clip("a", 0, n, (16, 20), modalities=("rgb",))["rgb"]
    for t in range(n):
        x0 = int(np.clip(np.floor(roi[t, 0] - 10), 0, w - 20)) // 2 * 2
        y0 = int(np.clip(np.floor(20 - 8), 0, h - 16)) // 2 * 2
        assert np.abs(rgb_clip[t].astype(int) - rgb[t, y0:y0 + 16, x0:x0 + 20]).mean() < 2.5
    # an explicit centre overrides the ROI; odd sizes are allowed
    fixed = store.read_clip("a", 0, 2, (15, 21), modalities=("rgb",), centre=np.array([0.0, 0.0]))["rgb"]
    assert fixed.shape == (2, 15, 21, 3) and np.abs(fixed[0].astype(int) - rgb[0, :15, :21]).mean() < 2.5
    with pytest.raises(ValueError, match="does not fit"):
        store.read_clip("a", 0, 2, (42, 20))


def test_rgb_memmap_views_do_not_copy(tmp_path):
    _build(tmp_path)
    finalize_store(tmp_path, PrepConfig(), ["x"])
    store = Store(tmp_path)
    arrays = store.arrays("a")
    for plane in (arrays.y, arrays.u, arrays.v, arrays.flow):
        bases = [plane]
        while bases[-1].base is not None and not isinstance(bases[-1].base, mmap.mmap):
            bases.append(bases[-1].base)
        assert isinstance(bases[-1].base, mmap.mmap)  # a view of the file's mapping, not a copy in memory


def test_not_a_store_and_unknown_video(tmp_path):
    with pytest.raises(ValueError, match="not a prepared store"):
        Store(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a tstcnn-store manifest"):
        Store(tmp_path)
    _build(tmp_path)
    finalize_store(tmp_path, PrepConfig(), ["x"])
    with pytest.raises(KeyError, match="no video 'zz'"):
        Store(tmp_path).entry("zz")


def test_interrupted_writer_leaves_no_complete_entry(tmp_path):
    with pytest.raises(RuntimeError), VideoEntryWriter(tmp_path, "a", 8, 6) as writer:
        writer.add(np.zeros((9, 8), np.uint8), np.zeros((3, 4, 2), np.float32))
        raise RuntimeError("killed")
    assert complete_video_ids(tmp_path) == [] and list((tmp_path / "videos").iterdir()) == []
    (tmp_path / "videos" / "b").mkdir()  # a folder without meta.json is not one of ours: it stays
    (tmp_path / "videos" / ".c.0123abcd.tmp").mkdir()
    (tmp_path / "videos" / ".d.0123abcd.tmp").mkdir()
    (tmp_path / "videos" / ".notes").mkdir()
    assert remove_incomplete(tmp_path, ["c", "b"]) == [".c.0123abcd.tmp"]
    assert remove_incomplete(tmp_path) == [".d.0123abcd.tmp"]
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == [".notes", "b"]


def _assert_reads_whole(store: Store) -> None:
    """Every listed video's arrays hold exactly the frames its entry says, and a full clip reads."""
    for entry in store.videos():
        arrays = store.arrays(entry.id)
        assert len(arrays.y) == len(arrays.flow) == len(arrays.roi) == entry.frames, entry.id
        clip = store.read_clip(entry.id, 0, entry.frames, (entry.height, entry.width))
        assert clip["rgb"].shape[0] == clip["flow"].shape[0] == entry.frames


@pytest.mark.parametrize("video_id", ["..", ".", "../x", "/abs/path", "a/../../x"])
def test_an_id_naming_another_folder_cannot_remove_it(tmp_path, video_id):
    root = tmp_path / "store"
    _build(root)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mine.txt").write_text("user data")
    with pytest.raises(ValueError, match="video id"):
        _build(root, n=4, video_id=video_id)
    assert complete_video_ids(root) == ["a"] and (tmp_path / "x" / "mine.txt").read_text() == "user data"
    assert [p.name for p in (root / "videos").iterdir()] == ["a"]


@pytest.mark.parametrize("bad", ["../../x", "/abs/path", ".hidden"])
def test_a_manifest_naming_paths_outside_the_store_is_refused(tmp_path, bad):
    root = tmp_path / "deep" / "store"
    _build(root)
    outside = (root / "videos" / bad) if not bad.startswith("/") else tmp_path / "abs"
    shutil.copytree(root / "videos" / "a", outside)  # a complete entry there, so only the id check can refuse
    with pytest.raises(ValueError, match="video id"):
        finalize_store(root, PrepConfig(), ["x"], videos=["a", bad])
    finalize_store(root, PrepConfig(), ["x"])
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["videos"][bad if not bad.startswith("/") else str(outside)] = manifest["videos"]["a"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="video id") as error:
        Store(root)
    assert str(error.value).startswith(str(root / "manifest.json")) and "\n" not in str(error.value)


def test_a_manifest_listing_missing_entries_is_refused_naming_them(tmp_path):
    for video_id in "abcde":
        _build(tmp_path, n=3, video_id=video_id)
    finalize_store(tmp_path, PrepConfig(), ["x"])
    for video_id in "bcde":
        shutil.rmtree(tmp_path / "videos" / video_id)
    (tmp_path / "videos" / "c").mkdir()  # a folder without meta.json is not an entry
    with pytest.raises(ValueError, match="missing or incomplete: b, c, d …") as error:
        Store(tmp_path)
    assert "4 video(s)" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("exchange", ["atomic", "fallback"])
def test_a_rebuilt_entry_replaces_the_old_one_whole(tmp_path, monkeypatch, caplog, exchange):
    if exchange == "fallback":
        monkeypatch.setattr(store_module, "_renameat2", None)
    _build(tmp_path, n=12)
    _build(tmp_path, n=6, video_id="b")
    finalize_store(tmp_path, PrepConfig(), ["x"])
    _build(tmp_path, n=5)  # rebuilt after the manifest was written, as an interrupted re-run leaves it
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == ["a", "b"]
    with caplog.at_level(logging.WARNING, logger="tstcnn.prep.store"):
        store = Store(tmp_path)
    assert store.entry("a").frames == 5 and store.entry("b").frames == 6
    _assert_reads_whole(store)
    assert "changed since" in caplog.text and "'a'" in caplog.text


def test_abort_never_raises_and_leaves_no_temporary_folder(tmp_path):
    writer = VideoEntryWriter(tmp_path, "a", 8, 6)
    writer.add(np.zeros((9, 8), np.uint8), np.zeros((3, 4, 2), np.float32))
    os.close(writer._rgb._file.fileno())  # its buffered frame cannot be flushed any more: closing it fails
    writer.abort()
    assert list((tmp_path / "videos").iterdir()) == []
    with pytest.raises(RuntimeError, match="the original error"), VideoEntryWriter(tmp_path, "b", 8, 6) as writer:
        writer.add(np.zeros((9, 8), np.uint8), np.zeros((3, 4, 2), np.float32))
        os.close(writer._flow._file.fileno())
        raise RuntimeError("the original error")
    assert list((tmp_path / "videos").iterdir()) == []


def test_flow_outliers_are_clipped_not_coarsening_the_step(tmp_path):
    n, h, w = 20, 32, 32
    flow = np.full((n, h, w, 2), 0.5, np.float32)
    flow[7, 0:2, 0:2] = 500.0  # one spurious 2x2 block (1 of 256 half-resolution vectors)
    rgb = np.zeros((n, h, w, 3), np.uint8)
    write_video_entry(tmp_path, "a", rgb, flow, np.zeros((n, 2)), {"split": "train", "fps": 1.0})
    finalize_store(tmp_path, PrepConfig(), ["x"])
    store = Store(tmp_path)
    out = store.read_clip("a", 0, n, (h, w), modalities=("flow",), centre=[16, 16])["flow"]
    assert np.abs(out[0] - 0.5).max() < 0.01  # the outlier did not make the quantisation coarse
    assert store.entry("a").extra["flow_clipped_fraction"] > 0


def test_reads_come_from_memory_maps_not_copies(tmp_path):
    # A clip read must touch only its crop's rows: every plane is a view of the file's mapping, never a copy.
    n, h, w = 12, 36, 64
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (n, h, w, 3), np.uint8)
    flow = rng.normal(0, 2, (n, h, w, 2)).astype(np.float32)
    roi = np.stack([np.linspace(20, 44, n), np.full(n, 18.0)], 1)
    write_video_entry(tmp_path, "a", rgb, flow, roi, {"split": "train", "fps": 25.0})
    finalize_store(tmp_path, PrepConfig(), ["x"])
    arrays = Store(tmp_path).arrays("a")

    def mapped(array: object) -> bool:
        while array is not None:  # down the chain of views (as_strided wraps one in a helper object)
            if isinstance(array, (np.memmap, mmap.mmap)):
                return True
            array = getattr(array, "base", None)
        return False

    assert all(mapped(plane) for plane in (arrays.y, arrays.u, arrays.v, arrays.flow))


def test_companded_flow_keeps_small_and_large_motions(tmp_path):
    n, h, w = 4, 16, 16
    magnitudes = np.array([0.05, 0.3, 1.0, 40.0], np.float32)  # one magnitude per frame, x positive, y negative
    flow = np.stack([np.broadcast_to(magnitudes[:, None, None], (n, h, w)),
                     np.broadcast_to(-magnitudes[:, None, None] / 2, (n, h, w))], -1).astype(np.float32)
    write_video_entry(tmp_path, "a", np.zeros((n, h, w, 3), np.uint8), flow, np.zeros((n, 2)), {"split": "train"})
    finalize_store(tmp_path, PrepConfig(), ["x"])
    out = Store(tmp_path).read_clip("a", 0, n, (h, w), modalities=("flow",))["flow"][:, 8, 8]
    np.testing.assert_allclose(out, flow[:, 8, 8], rtol=0.03, atol=0.012)  # 0.01 px near 0 at a 40 px range


def test_store_pickles_without_its_memory_maps(tmp_path):
    _build(tmp_path, n=40, h=64, w=96)
    finalize_store(tmp_path, PrepConfig(), ["x"])
    store = Store(tmp_path)
    before = store.read_clip("a", 0, 4, (16, 16))
    data = pickle.dumps(store)
    assert len(data) < 20_000  # the arrays (40 frames of 96x64) are not in it
    again = pickle.loads(data).read_clip("a", 0, 4, (16, 16))
    np.testing.assert_array_equal(before["rgb"], again["rgb"])


def _edit_json(path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _set(*keys):
    """An edit setting the field at ``keys`` (a path into the JSON object) to a value, or deleting it (``...``)."""
    def edit_with(value):
        def edit(data):
            for key in keys[:-1]:
                data = data[key]
            if value is ...:
                del data[keys[-1]]
            else:
                data[keys[-1]] = value
        return edit
    return edit_with


MANIFEST_CASES = [
    (_set("flow_scale")(0), "'flow_scale' must be a finite number > 0, got 0"),
    (_set("flow_scale")(-2.5), "'flow_scale' must be a finite number > 0, got -2.5"),
    (_set("flow_scale")(float("nan")), "'flow_scale' must be a finite number > 0, got nan"),
    (_set("flow_scale")("2.0"), "'flow_scale' must be a finite number > 0, got '2.0'"),
    (_set("flow_scale")(True), "'flow_scale' must be a finite number > 0, got True"),
    (_set("flow_scale")(...), "'flow_scale' is missing"),
    (_set("colour")("blue"), "'colour' is unknown to a tstcnn-store v1 manifest"),
    (_set("classes")("x"), "'classes' must be a list of strings, got 'x'"),
    (_set("classes")([1, 2]), "'classes' must be a list of strings"),
    (_set("problems")({"a": 1}), "'problems' must be a list of strings"),
    (_set("layout")(7), "'layout' must be a string or null, got 7"),
    (_set("flow_scale_from")("test"), "'flow_scale_from' must be 'train' or 'all'"),
    (_set("libraries")(["numpy"]), "'libraries' must map library names to versions"),
    (_set("prep")([]), "'prep' must hold the preparation settings"),
    (_set("prep", "flavour")(1), "'prep' holds the unknown setting 'flavour'"),
    (_set("prep", "width")("wide"), "'prep' is wrong: prep.width must be an integer, got 'wide'"),
    (_set("prep", "roi_smoothing")(-1.0), "'prep' is wrong: prep.roi_smoothing must be >= 0"),
    (_set("videos", "a", "frames")("12"), "video 'a': field 'frames' must be an integer >= 1, got '12'"),
    (_set("videos", "a", "frames")(0), "video 'a': field 'frames' must be an integer >= 1, got 0"),
    (_set("videos", "a", "width")(47), "video 'a': field 'width' must be even, got 47x36"),
    (_set("videos", "a", "flow_step")(0.0), "video 'a': field 'flow_step' must be a finite number > 0"),
    (_set("videos", "a", "fps")(float("inf")), "video 'a': field 'fps' must be a finite number >= 0, got inf"),
    (_set("videos", "a", "label")(3), "video 'a': field 'label' must be a string or null, got 3"),
    (_set("videos", "a", "actions")([[5, 2, "x"]]), "video 'a': field 'actions' stroke 1 [5, 2) must lie inside"),
    (_set("videos", "a", "actions")([[2, 10**12, "x"]]), "stroke 1 [2, 1000000000000) must lie inside the video's 12"),
    (_set("videos", "a", "actions")([["2", 9]]), "video 'a': field 'actions' stroke 1 must be [begin, end, class"),
    (_set("videos", "a")([]), "video 'a': expected a JSON object, got list"),
]


@pytest.mark.parametrize("edit, message", MANIFEST_CASES, ids=[m for _, m in MANIFEST_CASES])
def test_a_manifest_field_out_of_its_type_or_range_is_one_line_naming_it(tmp_path, edit, message):
    _build(tmp_path)
    finalize_store(tmp_path, PrepConfig(width=48), ["x"])
    _edit_json(tmp_path / "manifest.json", edit)
    with pytest.raises(ValueError) as error:
        Store(tmp_path)
    text = str(error.value)
    assert text.startswith(f"{tmp_path / 'manifest.json'}: ") and message in text and "\n" not in text


META_CASES = [
    (_set("frames")(10**12), "field 'frames' is 1000000000000, but rgb.npy holds 12 frames"),
    (_set("frames")(11), "field 'frames' is 11, but rgb.npy holds 12 frames"),
    (_set("height")(40), "fields 'width' and 'height' do not match rgb.npy"),
    (_set("actions")([[2, 10**12, "Serve Forehand Loop"]]), "stroke 1 [2, 1000000000000) must lie inside the video"),
    (_set("actions")([[0, 1]] * (MAX_ACTIONS + 1)), f"must be a list of at most {MAX_ACTIONS} strokes, got 100001"),
    (_set("flow_step")(float("nan")), "field 'flow_step' must be a finite number > 0, got nan"),
    (_set("id")("b"), "field 'id' is 'b', but the entry is 'a'"),
    (_set("width")(...), "field 'width' is missing"),
]


@pytest.mark.parametrize("edit, message", META_CASES, ids=[m for _, m in META_CASES])
def test_an_entry_whose_meta_does_not_fit_its_arrays_is_one_line_naming_it(tmp_path, edit, message):
    _build(tmp_path)
    finalize_store(tmp_path, PrepConfig(width=48), ["x"])
    meta = tmp_path / "videos" / "a" / "meta.json"
    _edit_json(meta, edit)
    with pytest.raises(ValueError) as error:
        Store(tmp_path)
    text = str(error.value)
    assert text.startswith(f"{meta}: ") and message in text and "\n" not in text


@pytest.mark.parametrize("array, frames", [("flow.npy", 11), ("roi.npy", 13)])
def test_an_array_shorter_or_longer_than_its_entry_is_refused_when_opened(tmp_path, array, frames):
    _build(tmp_path)
    finalize_store(tmp_path, PrepConfig(width=48), ["x"])
    path = tmp_path / "videos" / "a" / array
    data = np.load(path)
    np.save(path, np.resize(data, (frames, *data.shape[1:])))
    store = Store(tmp_path)  # opening the arrays is left to the first read
    with pytest.raises(ValueError, match=rf"meta.json: field 'frames' is 12, but {array} holds {frames} frames"):
        store.read_clip("a", 0, 4, (16, 16))


def test_strokes_are_cut_to_the_stored_frames_and_capped(tmp_path, caplog):
    n = 12
    rgb, flow = _smooth_rgb(n, 36, 48), _frame_index_flow(n, 36, 48)
    actions = [[2, 10**12, "Serve Forehand Loop"], [-3, 4, None], [12, 20, "Serve Forehand Loop"]]
    with caplog.at_level(logging.WARNING, logger="tstcnn.prep.store"):
        write_video_entry(tmp_path, "a", rgb, flow, np.zeros((n, 2)), {"split": "train", "actions": actions})
    assert "video 'a': 3 stroke(s) cut to its 12 frames" in caplog.text
    meta = json.loads((tmp_path / "videos" / "a" / "meta.json").read_text())
    assert meta["actions"] == [[2, 12, "Serve Forehand Loop"], [0, 4, None]]  # the one past the end is dropped
    finalize_store(tmp_path, PrepConfig(width=48), ["x"])
    entry = Store(tmp_path).entry("a")
    assert entry.actions == (Action(2, 12, "Serve Forehand Loop"), Action(0, 4, None))
    with pytest.raises(ValueError, match=f"video 'b': {MAX_ACTIONS + 1} strokes, more than the {MAX_ACTIONS}"):
        write_video_entry(tmp_path, "b", rgb, flow, np.zeros((n, 2)), {"actions": [[0, 1]] * (MAX_ACTIONS + 1)})
    assert complete_video_ids(tmp_path) == ["a"]
