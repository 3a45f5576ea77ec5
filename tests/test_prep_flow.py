import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, shift

from tstcnn.config import PrepConfig
from tstcnn.io.video import VideoWriter
from tstcnn.prep.flow import FLOW_METHODS, create_flow
from tstcnn.prep.prepare import prepare_video_arrays
from tstcnn.prep.roi import frame_centre, smooth_centres


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
