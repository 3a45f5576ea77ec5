"""Reusable 3D layers of the TSTCNN (Martin et al., ICPR 2020, section III).

* :class:`ConvStage3d` — ``Conv3d(3×3×3) → ReLU → MaxPool3d(2)``, one stage of a branch.
* :class:`ResidualBlock3d` — the pre-activation bottleneck of eq. 7, N channels in and out.
* :class:`AttentionBlock3d` — the 3D attention block of eqs. 1–6: a trunk of residual blocks
  modulated by a soft mask computed at three coarser resolutions.

All tensors are ``(N, C, T, H, W)``. The builders that assemble these into models are in
:mod:`tstcnn.models.tstcnn`. Convolutions, batch norms and the stage pooling are the drop-in layers of
:mod:`tstcnn.models.cpu_kernels` (the same weights and results as PyTorch's, without its faulty or slow CPU paths).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from tstcnn.models.cpu_kernels import FewFrameConv3d, IndexSavingMaxPool3d, WideViewBatchNorm3d, autocast_disabled

__all__ = ["BLOCK_KINDS", "LayerFactory", "ConvStage3d", "ResidualBlock3d", "AttentionBlock3d", "create_block",
           "init_conv_weights"]

LayerFactory = Callable[..., nn.Module]

BLOCK_KINDS = ("none", "residual", "attention")


class ConvStage3d(nn.Module):
    """One branch stage: ``Conv3d(in → out, 3×3×3, padding 1, bias) → ReLU → MaxPool3d(2)``.

    Halves T, H and W (floor). Built by :func:`tstcnn.models.tstcnn.create_branch`.
    """

    def __init__(self, in_channels: int, out_channels: int, act_layer: LayerFactory | None = None) -> None:
        super().__init__()
        act_layer = act_layer or partial(nn.ReLU, inplace=True)
        self.conv = FewFrameConv3d(in_channels, out_channels, kernel_size=3, padding=1, bias=True)
        self.act = act_layer()
        self.pool = IndexSavingMaxPool3d(kernel_size=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ReLU after the pooling: they commute, and on the pooled map it costs 8× less time and memory.
        return self.act(self.pool(self.conv(x)))


class ResidualBlock3d(nn.Module):
    """Pre-activation bottleneck residual block (eq. 7), without projection shortcut::

        x ─┬─ BN → ReLU → Conv1³(C→C/4) → BN → ReLU → Conv3³(C/4→C/4) → BN → ReLU → Conv1³(C/4→C) ─┬─ + → out
           └──────────────────────────────────────── identity ────────────────────────────────────┘

    ``C/4`` rounds up; convolutions have no bias (each is followed by batch norm in the next unit).
    """

    def __init__(self, channels: int, norm_layer: LayerFactory | None = None,
                 act_layer: LayerFactory | None = None) -> None:
        super().__init__()
        norm_layer = norm_layer or WideViewBatchNorm3d
        act_layer = act_layer or partial(nn.ReLU, inplace=True)
        width = math.ceil(channels / 4)
        self.bn1 = norm_layer(channels)
        self.act1 = act_layer()
        self.conv1 = FewFrameConv3d(channels, width, kernel_size=1, bias=False)
        self.bn2 = norm_layer(width)
        self.act2 = act_layer()
        self.conv2 = FewFrameConv3d(width, width, kernel_size=3, padding=1, bias=False)
        self.bn3 = norm_layer(width)
        self.act3 = act_layer()
        self.conv3 = FewFrameConv3d(width, channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.act1(self.bn1(x)))
        out = self.conv2(self.act2(self.bn2(out)))
        out = self.conv3(self.act3(self.bn3(out)))
        return _add_(out, x)


def _add_(out: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``out + other`` written into ``out`` when its dtype holds the result (convolution and upsampling
    backward passes do not read their outputs, so theirs may be overwritten): one allocation less."""
    if torch.promote_types(out.dtype, other.dtype) == out.dtype:
        return out.add_(other)
    return out + other


def _upsample(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Trilinear interpolation of ``x`` to the T, H, W of ``like`` (align_corners=True, as the authors' code), in
    ``x``'s dtype: CPU autocast lists it as fp32, which made the full-resolution mask maps fp32 and cost a cast
    of them back to bf16 before the next convolution, forward and backward."""
    with autocast_disabled(x):
        return F.interpolate(x, size=like.shape[-3:], mode="trilinear", align_corners=True)


class AttentionBlock3d(nn.Module):
    """3D attention block (eqs. 1–6): 12 residual blocks of N channels and a soft mask in (0, 1).

    ::

        x = pre(input)
        trunk:  trunk(x) = res(res(x))
        mask:   b1 = down1(P(x))   s1 = skip1(b1)
                b2 = down2(P(b1))  s2 = skip2(b2)
                b3 = bottom(P(b2))                       (two residual blocks)
                b4 = up2(U(b3 → b2) + s2)
                b5 = up1(U(b4 → b1) + s1)
                mask = σ(Conv1³(ReLU(BN(Conv1³(ReLU(BN(U(b5 → x))))))))
        output = post(trunk(x) · (1 + mask))

    ``P`` is ``MaxPool3d(3, stride 2, padding 1)``, ``U`` trilinear interpolation. The mask of the
    last forward pass is kept (detached) in :attr:`mask` for visualisation (paper Fig. 5). With
    :attr:`checkpoint` set, a training forward pass keeps only the block's input and recomputes the
    rest in the backward pass (activation checkpointing: much less memory, about a third more time).
    """

    def __init__(self, channels: int, norm_layer: LayerFactory | None = None,
                 act_layer: LayerFactory | None = None) -> None:
        super().__init__()
        norm_layer = norm_layer or WideViewBatchNorm3d
        act_layer = act_layer or partial(nn.ReLU, inplace=True)
        res = partial(ResidualBlock3d, channels, norm_layer=norm_layer, act_layer=act_layer)
        self.pre = res()
        self.trunk = nn.Sequential(res(), res())
        self.pool = IndexSavingMaxPool3d(kernel_size=3, stride=2, padding=1)
        self.down1 = res()
        self.skip1 = res()
        self.down2 = res()
        self.skip2 = res()
        self.bottom = nn.Sequential(res(), res())
        self.up2 = res()
        self.up1 = res()
        self.mask_head = nn.Sequential(
            norm_layer(channels),
            act_layer(),
            FewFrameConv3d(channels, channels, kernel_size=1, bias=False),
            norm_layer(channels),
            act_layer(),
            FewFrameConv3d(channels, channels, kernel_size=1, bias=False),
            nn.Sigmoid(),
        )
        self.post = res()
        self.mask: torch.Tensor | None = None
        self.checkpoint = False

    def soft_mask(self, x: torch.Tensor) -> torch.Tensor:
        """The mask branch (eqs. 2–5) on the output of :attr:`pre`; values in (0, 1), same shape as ``x``."""
        b1 = self.down1(self.pool(x))
        s1 = self.skip1(b1)
        b2 = self.down2(self.pool(b1))
        s2 = self.skip2(b2)
        b3 = self.bottom(self.pool(b2))
        b4 = self.up2(_add_(_upsample(b3, b2), s2))
        b5 = self.up1(_add_(_upsample(b4, b1), s1))
        return self.mask_head(_upsample(b5, x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpoint and torch.is_grad_enabled() and self.training:
            return checkpoint(self._forward, x, use_reentrant=False,
                              context_fn=lambda: (nullcontext(), _frozen_batch_norm_stats(self)))
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        mask = self.soft_mask(x)
        if not torch.compiler.is_compiling():
            self.mask = mask.detach()
        trunk = self.trunk(x)
        return self.post(torch.addcmul(trunk, trunk, mask))  # trunk · (1 + mask) in one pass


@contextmanager
def _frozen_batch_norm_stats(module: nn.Module) -> Iterator[None]:
    """Restore the batch-norm running statistics of ``module`` on exit, so that the recomputation of a
    checkpointed block does not count its batch twice."""
    saved = [(buf, buf.clone()) for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             for buf in m.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


def create_block(kind: str, channels: int, norm_layer: LayerFactory | None = None,
                 act_layer: LayerFactory | None = None) -> nn.Module:
    """The block placed after a stage's pooling: ``attention``, ``residual`` or ``none`` (identity)."""
    if kind == "attention":
        return AttentionBlock3d(channels, norm_layer=norm_layer, act_layer=act_layer)
    if kind == "residual":
        return ResidualBlock3d(channels, norm_layer=norm_layer, act_layer=act_layer)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown block {kind!r}; allowed: {', '.join(BLOCK_KINDS)}")


def init_conv_weights(model: nn.Module) -> None:
    """Kaiming-normal convolutions (ReLU gain, fan-out) with zero biases, unit batch norms with zero shift."""
    for module in model.modules():
        if isinstance(module, nn.Conv3d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm3d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
