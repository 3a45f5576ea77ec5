import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, shift

from tstcnn.cli import main
from tstcnn.config import PrepConfig
from tstcnn.io.video import VideoWriter
from tstcnn.prep.flow import FLOW_METHODS, LiuFlow, create_flow
from tstcnn.prep.prepare import prepare_video_arrays
from tstcnn.prep.roi import frame_centre, smooth_centres
from tstcnn.prep.store import Store


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(size=(h, w))
    image = gaussian_filter(noise, 2.0)
    return (image - image.min()) / np.ptp(image)


@pytest.mark.parametrize("method", FLOW_METHODS)
def test_backend_recovers_a_known_translation(method):
    dx, dy = 2.0, -1.0
    base = _texture(64, 80)
    first = (base * 255).astype(np.uint8)
    second = (shift(base, (dy, dx), order=3, mode="reflect") * 255).astype(np.uint8)  # content moves by (dx, dy)
    flow = create_flow(method)(first, second)
    assert flow.shape == (64, 80, 2) and flow.dtype == np.float32
    interior = flow[12:-12, 12:-12].reshape(-1, 2)
    np.testing.assert_allclose(np.median(interior, axis=0), [dx, dy], atol=0.35)


def test_unknown_backend_and_bad_frames():
    with pytest.raises(ValueError, match="unknown flow method 'raft'.*dis"):
        create_flow("raft")
    with pytest.raises(ValueError, match="two grey uint8 frames"):
        create_flow("dis")(np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8))


def test_frame_centre_combines_peak_and_centre_of_gravity():
    norm = np.zeros((20, 30))
    norm[4:8, 10:14] = 2.0  # strongly moving patch, centre (11.5, 5.5)
    norm[5, 11] = 3.0  # its peak
    x, y, found = frame_centre(norm, scale=2.0, blur=1)
    weights = np.where(norm >= 1.5, norm, 0)
    cog = (np.arange(30) * weights.sum(0)).sum() / weights.sum(), (np.arange(20) * weights.sum(1)).sum() / weights.sum()
    assert found
    assert x == pytest.approx(((11 + cog[0]) / 2 + 0.5) * 2) and y == pytest.approx(((5 + cog[1]) / 2 + 0.5) * 2)
    assert frame_centre(np.full((20, 30), 0.1))[2] is False  # no real motion


def test_an_isolated_spurious_vector_does_not_move_the_roi():
    norm = np.zeros((40, 60))
    norm[20:30, 40:52] = 3.0  # the player, centre (45.5, 24.5)
    norm[2, 3] = 40.0  # one wild vector
    x, y, found = frame_centre(norm)
    assert found and abs(x - 46) < 5 and abs(y - 25) < 3  # pulled a little, not taken away
    assert frame_centre(norm, blur=1)[0] < 30  # without the averaging, the wild vector wins


def test_smoothing_fills_gaps_and_smooths():
    centres = np.array([[10, 5], [0, 0], [30, 5], [30, 5], [30, 5]], float)
    found = np.array([True, False, True, True, True])
    out = smooth_centres(centres, found, sigma=0.0, frame_size=(64, 48))
    np.testing.assert_allclose(out[1], [20, 5])
    smooth = smooth_centres(centres, found, sigma=1.0, frame_size=(64, 48))
    assert np.all(np.diff(smooth[:, 0]) >= -1e-6) and smooth[0, 0] > 10 and smooth[-1, 0] < 30
    np.testing.assert_allclose(smooth_centres(centres, np.zeros(5, bool), 1.0, (64, 48)), np.tile([32, 24], (5, 1)))


def test_roi_follows_a_moving_blob(tmp_path):
    h, w, n = 64, 128, 24
    background = (_texture(h, w, seed=1) * 80 + 40).astype(np.uint8)
    ys, xs = np.mgrid[0:h, 0:w]
    path = tmp_path / "blob.mp4"
    truth = []
    with VideoWriter(path, fps=25, width=w, height=h, crf=12) as writer:
        for t in range(n):
            cx, cy = 20 + 3.5 * t, 24 + 0.5 * t
            truth.append((cx, cy))
            blob = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 5.0**2))
            texture = (np.sin(xs * 0.9) * np.cos(ys * 0.7) + 1) * 60
            frame = np.where(blob > 0.2, 120 + texture, background).astype(np.uint8)
            writer.write(np.repeat(frame[..., None], 3, axis=2))
    prepared = prepare_video_arrays(path, PrepConfig(width=w, flow="dis", roi_smoothing=1.0))
    assert prepared.rgb.shape == (n, h, w, 3) and prepared.flow.shape == (n, h, w, 2) and prepared.roi.shape == (n, 2)
    error = np.abs(prepared.roi[2:-2] - np.asarray(truth)[2:-2])
    assert np.median(error[:, 0]) < 6 and np.median(error[:, 1]) < 6
    assert np.corrcoef(prepared.roi[:, 0], np.asarray(truth)[:, 0])[0, 1] > 0.95
    assert np.median(prepared.flow[prepared.flow.shape[0] // 2, 20:40, :, 0].max(axis=1)) > 1.5  # moves right


def _translated_pair(h: int, w: int, dx: float, dy: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    base = _texture(h, w, seed)
    moved = shift(base, (dy, dx), order=3, mode="reflect")  # content moves by (dx, dy)
    return (base * 255).astype(np.uint8), (moved * 255).astype(np.uint8)


def _epe(flow: np.ndarray, dx: float, dy: float, margin: int = 8) -> float:
    return float(np.hypot(flow[..., 0] - dx, flow[..., 1] - dy)[margin:-margin, margin:-margin].mean())


def test_liu_pyramid_follows_liu_ratio_and_minimum_width():
    levels = LiuFlow().pyramid(np.zeros((180, 320), np.float32))
    widths = [level.shape[1] for level in levels]
    assert widths[:3] == [320, 240, 180] and len(widths) == 9  # int(log(20/320) / log(0.75)) levels
    assert widths[-1] == 32 and levels[-1].shape[0] == 18
    assert len(LiuFlow().pyramid(np.zeros((10, 16), np.float32))) == 1  # narrower than min_width: one level


def test_liu_recovers_a_large_translation_that_one_level_cannot():
    dx, dy = 4.5, -2.5
    first, second = _translated_pair(48, 96, dx, dy)
    liu = create_flow("liu")(first, second)
    one_level = LiuFlow(min_width=96)(first, second)
    zero = _epe(np.zeros_like(liu), dx, dy)
    assert _epe(liu, dx, dy) < 0.15 and _epe(liu, dx, dy) < 0.03 * zero
    assert _epe(one_level, dx, dy) > 5 * _epe(liu, dx, dy)  # without the pyramid the linearisation fails


def test_liu_and_dis_agree_on_direction():
    first, second = _translated_pair(48, 64, -1.5, 2.0, seed=3)
    liu, dis = create_flow("liu")(first, second), create_flow("dis")(first, second)
    inner = (slice(8, -8), slice(8, -8))
    assert np.all(np.sign(np.median(liu[inner].reshape(-1, 2), axis=0)) == [-1, 1])
    np.testing.assert_allclose(np.median(liu[inner].reshape(-1, 2), axis=0),
                               np.median(dis[inner].reshape(-1, 2), axis=0), atol=0.2)
    with pytest.raises(ValueError, match="ratio"):
        LiuFlow(ratio=1.5)


def test_prepare_with_liu_flow(tmp_path):
    h, w, n = 48, 64, 6
    background = (_texture(h, w, seed=2) * 120 + 40).astype(np.uint8)
    patch = (_texture(12, 12, seed=4) * 150 + 100).astype(np.uint8)
    path = tmp_path / "data" / "run" / "clip.mp4"
    path.parent.mkdir(parents=True)
    with VideoWriter(path, fps=25, width=w, height=h, crf=12) as writer:
        for t in range(n):
            frame = background.copy()
            frame[18:30, 8 + 3 * t:20 + 3 * t] = patch
            writer.write(np.repeat(frame[..., None], 3, axis=2))
    assert main(["prepare", "--source", str(tmp_path / "data"), "--layout", "folders", "--out",
                 str(tmp_path / "store"), "--width", str(w), "--flow", "liu", "--workers", "1"]) == 0
    store = Store(tmp_path / "store")
    assert store.prep.flow == "liu"
    (entry,) = store.videos()
    flow = store.read_clip(entry.id, 0, entry.frames, (h, w))["flow"]
    # the patch moves 3 px right per frame: the flow under it, at its positions in frames 1..3, says so
    moving = [flow[t, 20:28, 10 + 3 * t:18 + 3 * t, 0].mean() for t in range(1, 4)]
    np.testing.assert_allclose(moving, 3.0, atol=0.5)
    assert np.abs(flow[:-1, 36:, 40:]).mean() < 0.2  # the still background stays still
