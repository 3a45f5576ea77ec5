"""A plain implementation of the TSTCNN, the way the authors' code runs it.

Eager fp32, default (contiguous ``NCDHW``) memory layout, no fusion, no in-place operation: every
``BN``, ``ReLU``, addition and product allocates its own output. It is the baseline of
``benchmarks/bench_model.py`` and the correctness reference of every fast option: its modules carry
the same names as :class:`~tstcnn.models.TSTCNN`, so one state dict loads into both
(:func:`reference_from_model`) and outputs and gradients can be compared tensor by tensor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tstcnn.models.tstcnn import MODALITY_CHANNELS, TSTCNN, branch_output_size

__all__ = ["ReferenceTSTCNN", "reference_from_model"]


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        width = math.ceil(channels / 4)
        self.bn1 = nn.BatchNorm3d(channels)
        self.conv1 = nn.Conv3d(channels, width, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(width)
        self.conv2 = nn.Conv3d(width, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm3d(width)
        self.conv3 = nn.Conv3d(width, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + x


class _Attention(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pre = _Residual(channels)
        self.trunk = nn.Sequential(_Residual(channels), _Residual(channels))
        self.down1, self.skip1 = _Residual(channels), _Residual(channels)
        self.down2, self.skip2 = _Residual(channels), _Residual(channels)
        self.bottom = nn.Sequential(_Residual(channels), _Residual(channels))
        self.up2, self.up1 = _Residual(channels), _Residual(channels)
        self.mask_head = nn.Sequential(
            nn.BatchNorm3d(channels), nn.ReLU(), nn.Conv3d(channels, channels, 1, bias=False),
            nn.BatchNorm3d(channels), nn.ReLU(), nn.Conv3d(channels, channels, 1, bias=False), nn.Sigmoid())
        self.post = _Residual(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def pool(t: torch.Tensor) -> torch.Tensor:
            return F.max_pool3d(t, 3, stride=2, padding=1)

        def up(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, size=like.shape[-3:], mode="trilinear", align_corners=True)

        x = self.pre(x)
        b1 = self.down1(pool(x))
        s1 = self.skip1(b1)
        b2 = self.down2(pool(b1))
        s2 = self.skip2(b2)
        b3 = self.bottom(pool(b2))
        b4 = self.up2(up(b3, b2) + s2)
        b5 = self.up1(up(b4, b1) + s1)
        mask = self.mask_head(up(b5, x))
        return self.post(self.trunk(x) * (1 + mask))


class _Stage(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(F.relu(self.conv(x)), 2)


class _Branch(nn.Module):
    def __init__(self, in_channels: int, input_size: Sequence[int], channels: Sequence[int],
                 blocks: Sequence[str], num_features: int) -> None:
        super().__init__()
        widths = (in_channels, *channels)
        kinds = {"attention": _Attention, "residual": _Residual}
        for i, kind in enumerate(blocks, start=1):
            self.add_module(f"stage{i}", _Stage(widths[i - 1], widths[i]))
            self.add_module(f"block{i}", kinds[kind](widths[i]) if kind in kinds else nn.Identity())
        self.num_stages = len(blocks)
        self.fc = nn.Linear(channels[-1] * math.prod(branch_output_size(input_size, len(blocks))), num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"block{i}")(getattr(self, f"stage{i}")(x))
        return F.relu(self.fc(torch.flatten(x, 1)))


class _Bilinear(nn.Module):
    def __init__(self, features: int, num_classes: int) -> None:
        super().__init__()
        self.bilinear = nn.Bilinear(features, features, num_classes)

    def forward(self, rgb: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        return self.bilinear(rgb, flow)


class ReferenceTSTCNN(nn.Module):
    """The TSTCNN of :class:`~tstcnn.models.TSTCNN` (same arguments, same state-dict keys), written plainly.

    Dropout is left out: the reference is compared in ``eval`` mode or with ``drop_rate=0``.
    """

    def __init__(self, modalities: Sequence[str], num_classes: int = 21, input_size: Sequence[int] = (100, 120, 120),
                 channels: Sequence[int] = (30, 60, 80), blocks: Sequence[str] = ("attention",) * 3,
                 num_features: int = 500) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.branches = nn.ModuleDict({
            m: _Branch(MODALITY_CHANNELS[m], input_size, channels, blocks, num_features) for m in self.modalities})
        self.classifier: nn.Module = (_Bilinear(num_features, num_classes) if len(self.modalities) == 2
                                      else nn.Linear(num_features, num_classes))

    def forward(self, rgb: torch.Tensor | None = None, flow: torch.Tensor | None = None) -> torch.Tensor:
        given = {"rgb": rgb, "flow": flow}
        return self.classifier(*(self.branches[m](given[m]) for m in self.modalities))


def _block_kinds(model: TSTCNN) -> tuple[str, ...]:
    kinds = []
    for branch in list(model.branches.values())[:1]:
        for i in range(1, branch.num_stages + 1):
            name = type(getattr(branch, f"block{i}")).__name__
            kinds.append({"AttentionBlock3d": "attention", "ResidualBlock3d": "residual"}.get(name, "none"))
    return tuple(kinds)


def reference_from_model(model: TSTCNN) -> ReferenceTSTCNN:
    """A :class:`ReferenceTSTCNN` of the same architecture holding a copy of ``model``'s weights and buffers."""
    branch = next(iter(model.branches.values()))
    channels = tuple(getattr(branch, f"stage{i}").conv.out_channels for i in range(1, branch.num_stages + 1))
    reference = ReferenceTSTCNN(model.modalities, model.num_classes, model.input_size, channels,
                                _block_kinds(model), model.num_features)
    reference.load_state_dict(model.state_dict())
    return reference.train(model.training)
