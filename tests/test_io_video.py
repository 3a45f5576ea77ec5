import numpy as np
import pytest

from tstcnn.io.video import VideoError, VideoWriter, count_frames, iter_frames, probe, read_frames, resize_to_width


def _gradient_frames(n: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    ys, xs = np.mgrid[0:height, 0:width]
    return [np.stack([(xs * 4 + 10 * i) % 256, ys * 5 % 256, np.full_like(xs, 40 * (i % 6))], -1).astype(np.uint8)
            for i in range(n)]


@pytest.mark.parametrize("threads", [0, 1])
def test_write_then_decode_round_trip(tmp_path, threads):
    path = tmp_path / "clip.mp4"
    frames = _gradient_frames(12)
    with VideoWriter(path, fps=25, width=64, height=48, crf=10, threads=threads) as writer:
        for frame in frames:
            writer.write(frame)
    info = probe(path)
    assert (info.width, info.height, info.fps) == (64, 48, 25.0)
    assert count_frames(path) == 12
    decoded = read_frames(path)
    assert decoded.shape == (12, 48, 64, 3) and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - np.stack(frames)).mean() < 6


def test_single_threaded_encoding_is_byte_for_byte_repeatable(tmp_path):
    frames = _gradient_frames(12)
    for name in ("a.mp4", "b.mp4"):
        with VideoWriter(tmp_path / name, fps=25, width=64, height=48, threads=1) as writer:
            for frame in frames:
                writer.write(frame)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_resize_keeps_aspect_with_even_height():
    assert resize_to_width(np.zeros((1080, 1920, 3), np.uint8), 320).shape == (180, 320, 3)
    assert resize_to_width(np.zeros((272, 640, 3), np.uint8), 320).shape == (136, 320, 3)


def test_iter_frames_resizes(tmp_path):
    path = tmp_path / "clip.mp4"
    with VideoWriter(path, fps=30, width=64, height=48) as writer:
        for frame in _gradient_frames(3):
            writer.write(frame)
    assert [f.shape for f in iter_frames(path, width=32)] == [(24, 32, 3)] * 3


def test_unreadable_and_odd_sized_videos(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(VideoError, match="bad.mp4"):
        read_frames(bad)
    with pytest.raises(VideoError, match="missing.mp4"):
        probe(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="even"):
        VideoWriter(tmp_path / "odd.mp4", fps=30, width=63, height=48)
