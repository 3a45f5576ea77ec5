"""Raw videos streamed through bounded temporary stores: chunks against a whole-video store, disk, problems."""

import errno
import json
from pathlib import Path

import numpy as np
import pytest
from test_infer_models import CLASSES, INPUT, make_run, make_video

from tstcnn.data import ClipReader
from tstcnn.infer import predict as predict_module
from tstcnn.infer.detect import DetectOptions, detect_store, detect_videos
from tstcnn.infer.predict import (
    PredictOptions,
    load_predictor,
    predict_store,
    predict_videos,
    prepared_store,
    source_items,
)
from tstcnn.io.layouts import SourceItem
from tstcnn.prep.prepare import prepare_video
from tstcnn.prep.store import Store, VideoEntryWriter, finalize_store
from tstcnn.prep.stream import stream_chunks

LONG = 120  # frames of the long video: 15 chunks of 8


@pytest.fixture(scope="module")
def streaming(tmp_path_factory):
    root = tmp_path_factory.mktemp("streaming")
    run = load_predictor(make_run(root / "run", logit_scale=1.0), precision="fp32")  # probabilities 0.1 to 0.75
    make_video(root / "long.mp4", LONG)
    make_video(root / "clip.mp4", 20)
    make_video(root / "short.mp4", 5)
    return root, run


def _whole_store(root: Path, video: Path, run) -> Store:
    assert prepare_video(SourceItem(video.stem, video, "test"), root, run.prep).ok
    finalize_store(root, run.prep, CLASSES, layout="inference")
    return Store(root)


def _id(detection) -> str:
    return detection.video_id


def _flow(store: Store, video_id: str, codes: np.ndarray) -> np.ndarray:
    return store.flow_table(video_id)[codes.view(np.uint8)]


def test_chunks_hold_what_a_whole_video_store_holds(streaming, tmp_path):
    root, run = streaming
    whole = _whole_store(tmp_path / "whole", root / "long.mp4", run)
    full = whole.arrays("long")
    work, size, overlap = tmp_path / "work", 8, INPUT[0] - 1
    seen = []
    for chunk in stream_chunks(root / "long.mp4", "long", run.prep, work, CLASSES, overlap=overlap, chunk_frames=size):
        assert len(list(work.iterdir())) <= 3  # this chunk and those filling while it waited for its lookahead
        part, first = chunk.store.arrays("long"), chunk.first
        n = len(part.y)
        seen.append((first, n, chunk.end, chunk.frames))
        for plane in ("y", "u", "v"):
            np.testing.assert_array_equal(getattr(part, plane), getattr(full, plane)[first:first + n])
        np.testing.assert_allclose(part.roi, full.roi[first:first + n], atol=1e-4)  # motion in every frame
        # per-chunk quantisation: within one code spacing of the coarser step (2·q·step at |flow| = q²·step)
        step = max(chunk.store.flow_step("long"), whole.flow_step("long"))
        expected = _flow(whole, "long", full.flow[first:first + n])
        spacing = 2 * np.sqrt(np.abs(expected) / step) * step + step
        assert np.all(np.abs(_flow(chunk.store, "long", part.flow) - expected) <= spacing + 1e-6)
    assert seen == [(f, min(size + overlap, LONG - f), None if f == 112 else f + size, LONG if f == 112 else None)
                    for f in range(0, LONG, size)]
    assert list(work.iterdir()) == []  # every chunk deleted once used

    (single,) = stream_chunks(root / "long.mp4", "long", run.prep, work, CLASSES, overlap=overlap, chunk_frames=1000)
    assert single.last and single.frames == LONG and single.first == 0  # read after its store went: the record stays


def test_a_video_in_one_chunk_is_the_whole_video_store_bit_for_bit(streaming, tmp_path):
    root, run = streaming
    whole = _whole_store(tmp_path / "whole", root / "clip.mp4", run)
    chunks = stream_chunks(root / "clip.mp4", "clip", run.prep, tmp_path / "work", CLASSES, overlap=7, chunk_frames=20)
    chunk = next(chunks)
    assert chunk.last and chunk.frames == 20
    for name in ("y", "u", "v", "flow", "roi"):
        np.testing.assert_array_equal(getattr(chunk.store.arrays("clip"), name), getattr(whole.arrays("clip"), name))
    assert chunk.store.flow_step("clip") == whole.flow_step("clip")
    chunks.close()
    assert list((tmp_path / "work").iterdir()) == []


def test_detections_in_small_chunks_match_the_whole_video_store_in_bounded_disk(streaming, tmp_path, monkeypatch):
    root, run = streaming
    videos = [root / "long.mp4", root / "clip.mp4", root / "short.mp4"]  # 15 chunks, 2 chunks, shorter than a window
    options = DetectOptions(stride=2, min_length=1)
    with prepared_store(source_items(videos)[0], run) as (store, _):
        whole, _ = detect_store(run, store, tmp_path / "whole", options)
        whole_bytes = sum(p.stat().st_size for p in (store.root / "videos" / "long").iterdir())
    one, _ = detect_videos(run, videos, tmp_path / "one", options, chunk_frames=1000)
    work, held = tmp_path / "work", []
    work.mkdir()
    read = ClipReader.read

    def measured(self, *args, **kwargs):
        held.append(sum(p.stat().st_size for p in work.rglob("*") if p.is_file()))
        return read(self, *args, **kwargs)

    monkeypatch.setattr(ClipReader, "read", measured)
    chunked, summary = detect_videos(run, videos, tmp_path / "chunked", options, work_dir=work, chunk_frames=8)
    assert summary["problems"] == [] and [d.video_id for d in chunked] == ["long", "clip", "short"]  # as given
    assert [d.video_id for d in whole] == ["clip", "long", "short"]  # a store's order
    assert whole[1].window_probs.max() - whole[1].window_probs.min() > 0.3  # the tolerance is small against this
    for reference, single, streamed in zip(whole, sorted(one, key=_id), sorted(chunked, key=_id)):
        assert streamed.frames == reference.frames and streamed.starts.tolist() == reference.starts.tolist()
        np.testing.assert_array_equal(single.window_probs, reference.window_probs)  # one chunk: the same store
        # Stated tolerance: per-chunk flow quantisation moves a probability by less than 0.01.
        np.testing.assert_allclose(streamed.window_probs, reference.window_probs, atol=0.01)
        np.testing.assert_allclose(streamed.frame_probs, reference.frame_probs, atol=0.01)
        assert [a.move for a in streamed.actions] == [a.move for a in reference.actions]
        for a, b in zip(streamed.actions, reference.actions):
            assert abs(a.begin - b.begin) <= 2 and abs(a.end - b.end) <= 2
    # The long video's whole store is never on disk: at most a chunk of 15 frames and the next ones filling.
    assert held and max(held) < whole_bytes / 2
    assert list(work.iterdir()) == []
    assert json.loads((tmp_path / "chunked" / "detection.json").read_text())["videos"]["long"]["frames"] == LONG


def test_predict_streams_clips_longer_than_a_chunk_and_batches_the_others(streaming, tmp_path, monkeypatch):
    root, run = streaming
    videos = [root / "clip.mp4", root / "short.mp4", root / "long.mp4"]
    with prepared_store(source_items(videos)[0], run) as (store, _):
        reference, _ = predict_store(run, store, PredictOptions(aggregation="gaussian"))
    together, problems = predict_videos(run, videos, PredictOptions(aggregation="gaussian"), chunk_frames=1000)
    assert problems == []
    counted = []
    count = predict_module.count_frames
    monkeypatch.setattr(predict_module, "count_frames", lambda path: counted.append(Path(path).name) or count(path))
    streamed, problems = predict_videos(run, videos, PredictOptions(aggregation="gaussian"), chunk_frames=8)
    assert problems == [] and counted == ["clip.mp4", "long.mp4"]  # over a chunk of 8 (+7 overlap); 5 frames are not
    for expected, single, chunked in zip(*(sorted(p, key=lambda p: p.name) for p in (reference, together, streamed))):
        assert expected.name == single.name == chunked.name and expected.windows == chunked.windows
        np.testing.assert_allclose(single.scores, expected.scores, atol=1e-6)
        np.testing.assert_allclose(chunked.scores, expected.scores, atol=0.01)


@pytest.mark.parametrize("command", ["predict", "detect"])
def test_a_full_work_folder_stops_the_run_naming_the_video_and_the_folder(streaming, tmp_path, monkeypatch, command):
    root, run = streaming

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(VideoEntryWriter, "add", full)
    work = tmp_path / "work"
    work.mkdir()
    videos = [root / "clip.mp4", root / "short.mp4"]
    with pytest.raises(OSError, match=f"video 'clip': no space left on device in {work}"):
        if command == "predict":
            predict_videos(run, videos, PredictOptions(), work_dir=work)
        else:
            detect_videos(run, videos, tmp_path / "out", DetectOptions(), work_dir=work)
    assert list(work.iterdir()) == []
