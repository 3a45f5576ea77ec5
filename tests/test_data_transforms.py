"""The paper's augmentation: one affine per clip, RGB and flow aligned, flow vectors turned with the image."""

import cv2
import numpy as np
import pytest
import torch

from tstcnn.config import DataConfig
from tstcnn.data import AffineParams, RandomAffine
from tstcnn.data import functional as F
from tstcnn.prep.store import rgb_to_yuv420

H, W = 64, 96  # frame size
CROP = (32, 40)  # output (h, w)


def _planes(rgb: np.ndarray):
    """I420 planes (N, H, W), (N, H/2, W/2) ×2 of RGB frames (N, H, W, 3), as the store keeps them."""
    yuv = np.stack([rgb_to_yuv420(f) for f in rgb])
    n = len(rgb)
    chroma = yuv[:, H:].reshape(n, 2, H // 2, W // 2)
    return yuv[:, :H], chroma[:, 0], chroma[:, 1]


def _square_clip():
    """Two frames with a bright square at x 60–67, y 20–27; flow (4, 0) px on the square only (half resolution)."""
    rgb = np.full((2, H, W, 3), 40, np.uint8)
    rgb[:, 20:28, 60:68] = 230
    flow = np.zeros((2, H // 2, W // 2, 2), np.int8)
    flow[:, 10:14, 30:34, 0] = 4  # 4 px to the right
    return rgb, flow


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def test_linear_part_is_opencv_rotation_and_zoom():
    params = AffineParams(angle=30.0, zoom=1.2)
    expected = cv2.getRotationMatrix2D((0.0, 0.0), 30.0, 1.2)[:, :2]
    assert np.allclose(params.linear(), expected)
    assert np.allclose(AffineParams().linear(), np.eye(2))


def test_uniform_flow_rotated_by_90_degrees_points_up():
    flow = np.zeros((3, H // 2, W // 2, 2), np.int8)
    flow[..., 0] = 10  # (10, 0) px
    centres = np.tile([[48.0, 32.0]], (3, 1))
    matrices = F.clip_matrices(centres, CROP, AffineParams(angle=90.0))
    tensor = F.flow_to_tensor(F.warp_flow(flow, [0, 1, 2], matrices, CROP, scale=0.1))  # flow_scale 10 px
    assert tensor.shape == (2, 3, *CROP) and tensor.dtype == torch.float32 and tensor.is_contiguous()
    assert np.allclose(tensor[0].numpy(), 0.0, atol=1e-6)
    assert np.allclose(tensor[1].numpy(), -1.0, atol=1e-6)  # y points down: counter-clockwise turns right to up
    matrices = F.clip_matrices(centres, CROP, AffineParams(angle=-90.0, zoom=0.5))
    half = F.flow_to_tensor(F.warp_flow(flow, [0, 1, 2], matrices, CROP, scale=0.1))
    assert np.allclose(half[0].numpy(), 0.0, atol=1e-6)
    assert np.allclose(half[1].numpy(), 0.5, atol=1e-6)  # clockwise and zoomed out: (0, +0.5)


def test_flow_codes_are_decoded_by_the_table_and_clipped_after_normalisation():
    codes = np.zeros((1, 8, 8, 2), np.int8)
    codes[..., 0], codes[..., 1] = 3, -100
    table = np.arange(256, dtype=np.uint8).view(np.int8).astype(np.float32) * 0.5  # code q → q / 2 px
    matrices = F.clip_matrices(np.array([[7.5, 7.5]]), (8, 8), AffineParams())
    tensor = F.flow_to_tensor(F.warp_flow(codes, [0], matrices, (8, 8), scale=0.25, table=table))
    assert np.allclose(tensor[0].numpy(), 0.375) and np.allclose(tensor[1].numpy(), -1.0)


@pytest.mark.parametrize("params", [AffineParams(), AffineParams(90.0, 1.0), AffineParams(-8.0, 1.1, (3.0, -2.5)),
                                    AffineParams(30.0, 0.9, (-4.0, 3.0))])
def test_bright_square_lands_at_the_same_place_in_rgb_and_flow(params):
    rgb, flow = _square_clip()
    y, u, v = _planes(rgb)
    centres = np.tile([[58.5, 26.5]], (2, 1))  # the crop centre (whole-pixel offsets), near the square
    matrices = F.clip_matrices(centres, CROP, params)
    rgb_out = F.warp_yuv420(y, u, v, [0, 1], matrices, CROP)
    scale = 1 / 8.0  # flow_scale 8 px: the square moves by 0.5
    flow_out = F.flow_to_tensor(F.warp_flow(flow, [0, 1], matrices, CROP, scale=scale)).numpy()
    bright = rgb_out[1, ..., 1] > 135
    moving = np.hypot(flow_out[0, 1], flow_out[1, 1]) > 0.25 * params.zoom
    expected = matrices[1] @ np.array([63.5, 23.5, 1.0])  # the square's centre, mapped
    assert np.abs(_centroid(bright) - expected).max() < 0.6
    assert np.abs(_centroid(moving) - expected).max() < 0.6
    overlap = (bright & moving).sum() / (bright | moving).sum()
    assert overlap > 0.7
    assert abs(bright.sum() - 64 * params.zoom**2) <= 12  # the square is zoomed with the image
    direction = flow_out[:, 1][:, moving].mean(axis=1)  # the square's motion, turned with the image
    assert np.allclose(direction / np.linalg.norm(direction), params.linear()[:, 0] / params.zoom, atol=0.02)


def test_identity_is_the_plain_crop():
    rgb = np.random.default_rng(0).integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    y, u, v = _planes(rgb)
    centres = F.window_centres(np.array([[30.3, 20.0], [90.0, 60.0]]), CROP, (H, W))
    assert centres.tolist() == [[10.0 + 19.5, 4.0 + 15.5], [56.0 + 19.5, 32.0 + 15.5]]  # even origins, inside
    out = F.warp_yuv420(y, u, v, [0, 1], F.clip_matrices(centres, CROP, AffineParams()), CROP)
    whole = cv2.cvtColor(rgb_to_yuv420(rgb[1]), cv2.COLOR_YUV2RGB_I420)
    assert np.array_equal(out[1], whole[32:64, 56:96])


def test_random_affine_draws_within_the_configured_ranges():
    draw = RandomAffine.from_config(DataConfig(rotation=10.0, zoom=0.1, translation=0.1))
    rng = np.random.default_rng(0)
    params = [draw(rng, (100, 120)) for _ in range(500)]
    angles = np.array([p.angle for p in params])
    zooms = np.array([p.zoom for p in params])
    shifts = np.array([p.shift for p in params])
    assert np.abs(angles).max() <= 10 and np.abs(angles).max() > 9
    assert zooms.min() >= 0.9 and zooms.max() <= 1.1
    assert np.abs(shifts[:, 0]).max() <= 12 and np.abs(shifts[:, 1]).max() <= 10
    assert draw(np.random.default_rng(7), (8, 8)) == draw(np.random.default_rng(7), (8, 8))
    with pytest.raises(ValueError, match="zoom"):
        RandomAffine(zoom=1.5)
