import math

import pytest
import torch

from tstcnn.models import AttentionBlock3d, ConvStage3d, ResidualBlock3d
from tstcnn.models.blocks import create_block


def test_conv_stage_halves_each_dimension_by_floor():
    stage = ConvStage3d(3, 30)
    out = stage(torch.rand(1, 3, 9, 17, 16))
    assert out.shape == (1, 30, 4, 8, 8)


@pytest.mark.parametrize("channels, width", [(30, 8), (60, 15), (80, 20), (5, 2)])
def test_residual_block_bottleneck_width_rounds_up_and_keeps_shape(channels, width):
    block = ResidualBlock3d(channels)
    assert block.conv1.out_channels == width == math.ceil(channels / 4)
    assert block.conv2.kernel_size == (3, 3, 3)
    assert all(conv.bias is None for conv in (block.conv1, block.conv2, block.conv3))
    x = torch.randn(2, channels, 3, 5, 4)
    assert block(x).shape == x.shape


def test_residual_block_is_identity_when_last_conv_is_zero():
    block = ResidualBlock3d(8).eval()
    torch.nn.init.zeros_(block.conv3.weight)
    x = torch.randn(1, 8, 2, 4, 4)
    torch.testing.assert_close(block(x), x)


def test_residual_block_does_not_modify_its_input():
    block = ResidualBlock3d(8).train()
    x = torch.randn(1, 8, 2, 4, 4)
    before = x.clone()
    block(x)
    torch.testing.assert_close(x, before)


def test_attention_block_has_twelve_residual_blocks():
    block = AttentionBlock3d(16)
    residuals = [m for m in block.modules() if isinstance(m, ResidualBlock3d)]
    assert len(residuals) == 12


@pytest.mark.parametrize("size", [(6, 15, 15), (1, 3, 3), (12, 15, 15)])
def test_attention_mask_in_open_unit_interval_with_input_size(size):
    block = AttentionBlock3d(8).eval()
    x = torch.randn(2, 8, *size)
    out = block(x)
    assert out.shape == x.shape
    assert block.mask is not None and block.mask.shape == x.shape
    assert torch.all(block.mask > 0) and torch.all(block.mask < 1)


def test_attention_output_combines_trunk_and_mask_as_eq6():
    block = AttentionBlock3d(8).eval()
    x = torch.randn(1, 8, 4, 8, 8)
    with torch.no_grad():
        h = block.pre(x)
        expected = block.post(block.trunk(h) * (1 + block.soft_mask(h)))
        torch.testing.assert_close(block(x), expected)


def test_attention_with_zero_mask_path_is_trunk_through_last_residual():
    block = AttentionBlock3d(8).eval()
    block.soft_mask = lambda h: torch.zeros_like(h)
    x = torch.randn(1, 8, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), block.post(block.trunk(block.pre(x))))


def test_create_block_rejects_unknown_kind_naming_allowed():
    with pytest.raises(ValueError, match="allowed: none, residual, attention"):
        create_block("transformer", 8)
