import numpy as np
import pytest
import torch
from PIL import Image

from tstcnn.models import build_model
from tstcnn.viz.attention import (
    MaskStatistics,
    collect_masks,
    mask_to_clip,
    overlay_heatmap,
    save_attention_animation,
    save_attention_grid,
)

SIZE = (16, 32, 32)


@pytest.fixture(scope="module")
def model_and_clip():
    torch.manual_seed(0)
    model = build_model("twin", "attention", input_size=SIZE, channels=(6, 8, 8), num_features=8)
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.momentum = None  # cumulative average: running statistics equal the batches' after settling
    with torch.no_grad():  # settle batch-norm statistics so eval-mode masks are not saturated
        for _ in range(3):
            model(rgb=torch.rand(4, 3, *SIZE), flow=torch.rand(4, 2, *SIZE) * 2 - 1)
    rgb = torch.rand(1, 3, *SIZE)
    flow = torch.rand(1, 2, *SIZE) * 2 - 1
    return model, rgb, flow


def test_mask_to_clip_resizes_and_min_max_normalises():
    mask = torch.rand(5, 2, 4, 4) * 0.3 + 0.35
    heat = mask_to_clip(mask, (8, 16, 16))
    assert heat.shape == (8, 16, 16)
    assert heat.min() == pytest.approx(0.0) and heat.max() == pytest.approx(1.0)
    three = mask_to_clip(mask, (8, 16, 16), channels=(0, 2, 4))
    assert three.shape == (8, 16, 16, 3)
    assert all(three[..., c].max() == pytest.approx(1.0) for c in range(3))
    with pytest.raises(ValueError, match="three indices below 5"):
        mask_to_clip(mask, (8, 16, 16), channels=(0, 1, 7))


def test_mask_to_clip_keeps_where_the_mask_is_high():
    mask = torch.zeros(1, 2, 4, 4)
    mask[0, :, 0, 0] = 1.0
    heat = mask_to_clip(mask, (2, 8, 8))
    assert heat[:, 0, 0].min() == pytest.approx(1.0) and heat[:, -1, -1].max() == pytest.approx(0.0)


def test_overlay_is_a_blend_of_frame_and_colour():
    frames = np.full((2, 4, 4, 3), 100, np.uint8)
    zero = overlay_heatmap(frames, np.zeros((2, 4, 4)), alpha=0.0)
    assert np.array_equal(zero, frames)
    hot = overlay_heatmap(frames, np.ones((2, 4, 4)), alpha=1.0)
    assert hot[0, 0, 0, 0] > 100 and hot[0, 0, 0, 2] < 100, "jet maps 1.0 to red"


def test_collect_masks_and_grid_and_animation(model_and_clip, tmp_path):
    model, rgb, flow = model_and_clip
    masks = collect_masks(model, rgb=rgb, flow=flow)
    assert set(masks) == {f"{m}.block{i}" for m in ("rgb", "flow") for i in (1, 2, 3)}
    one_clip = {k: v[0] for k, v in masks.items() if k.startswith("rgb")}
    png = save_attention_grid(tmp_path / "grid.png", rgb[0], one_clip, time_steps=[0, 8, 15])
    image = np.asarray(Image.open(png))
    assert image.shape[0] > 200 and image.shape[1] > 300 and image.std() > 10
    gif = save_attention_animation(tmp_path / "masks.gif", rgb[0], one_clip)
    with Image.open(gif) as animation:
        assert animation.n_frames == SIZE[0]
        assert animation.size == (SIZE[2] * 4, SIZE[1])
    with pytest.raises(ValueError, match="outside the clip"):
        save_attention_grid(tmp_path / "bad.png", rgb[0], one_clip, time_steps=[16])


def test_mask_statistics_cover_every_block_within_unit_interval(model_and_clip):
    model, rgb, flow = model_and_clip
    stats = MaskStatistics()
    stats.update_all(model, [{"rgb": rgb, "flow": flow}, {"rgb": rgb.flip(2), "flow": flow.flip(2)}])
    summary = stats.summary()
    assert len(summary) == 6
    for values in summary.values():
        assert 0 < values["min"] <= values["mean"] <= values["max"] < 1
