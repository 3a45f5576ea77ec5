"""Reusable 3D layers of the TSTCNN (Martin et al., ICPR 2020, section III).

* :class:`ConvStage3d` — ``Conv3d(3×3×3) → ReLU → MaxPool3d(2)``, one stage of a branch.
* :class:`ResidualBlock3d` — the pre-activation bottleneck of eq. 7, N channels in and out.
* :class:`AttentionBlock3d` — the 3D attention block of eqs. 1–6: a trunk of residual blocks
  modulated by a soft mask computed at three coarser resolutions.

All tensors are ``(N, C, T, H, W)``. The builders that assemble these into models are in
:mod:`tstcnn.models.tstcnn`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
import contextlib
from contextlib import contextmanager, nullcontext
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["Conv3d", "BatchNorm3d", "ConvStage3d", "ResidualBlock3d", "AttentionBlock3d", "create_block",
           "init_conv_weights"]

LayerFactory = Callable[..., nn.Module]

BLOCK_KINDS = ("none", "residual", "attention")


class Conv3d(nn.Conv3d):
    """:class:`torch.nn.Conv3d` that works around two oneDNN faults (PyTorch 2.13, CPU, bf16) on inputs with
    fewer frames than the kernel, with the same results.

    * One frame: convolved in 2D with the centre slice of the kernel (with zero padding of ``kernel_size // 2``
      in time, the other slices only meet padding). On CPUs with AMX, bf16 3D convolutions of one-frame inputs
      with 1, 3, 5, 7, 9 or 11–15 channels return wrong values and NaN, which the bottleneck of a 48-channel block
      (12 channels) meets at the coarsest level of an attention block's mask branch.
    * Two frames (3×3×3 kernel): the time padding is applied with ``F.pad`` and the convolution pads only in
      space. On CPUs with AVX-512-BF16 and no AMX (AMD Zen 4), the bf16 weight gradient of a 3×3×3 convolution
      of a two-frame input is garbage (values up to 1e35, NaN), for any channel count and spatial size; the
      cpu-small model meets two-frame maps after its third stage, the paper-size one in its third attention
      block. The explicitly padded input has four frames, which the kernels get right.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        depth, frames = self.kernel_size[0], x.shape[2]
        if (frames < depth and self.padding_mode == "zeros" and self.stride[0] == 1 and self.dilation[0] == 1
                and not isinstance(self.padding, str) and self.padding[0] == depth // 2):
            if frames == 1:
                out = F.conv2d(x.squeeze(2), self.weight[:, :, depth // 2], self.bias, self.stride[1:],
                               self.padding[1:], self.dilation[1:], self.groups)
                return out.unsqueeze(2)
            time_padding = self.padding[0]
            return F.conv3d(F.pad(x, (0, 0, 0, 0, time_padding, time_padding)), self.weight, self.bias, self.stride,
                            (0, *self.padding[1:]), self.dilation, self.groups)
        return super().forward(x)


class BatchNorm3d(nn.BatchNorm3d):
    """:class:`torch.nn.BatchNorm3d` whose training passes on channels-last CPU inputs run PyTorch's kernels on
    a wider view of the same memory.

    PyTorch's channels-last CPU kernels are slow when the channel count ``C`` is not a multiple of 16, the
    backward pass most. The ``(N·T·H·W, C)`` memory of a channels-last map is also a ``(N·T·H·W / k, k·C)``
    matrix whose columns are ``k`` copies of the channels; with ``k·C`` a multiple of 16 the kernels are fast
    there. Statistics are computed per column and combined per channel, then the evaluation-mode kernels
    apply them. Measured (bf16, 2 threads, forward + backward): 2×30×50×60×60, the first attention block at paper
    size, 50 → 28 ms; its 8-channel bottleneck 27 → 8 ms. Same results within rounding, same running statistics.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.training and self.track_running_stats and self.affine and torch.is_grad_enabled()
                and x.device.type == "cpu" and x.dim() == 5 and not torch.compiler.is_compiling()
                and _memory_format(x) == torch.channels_last_3d):
            copies = _channel_copies(x, self.num_features)
            if copies > 1:
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                return _WideBatchNorm.apply(x, self.weight, self.bias, self.running_mean, self.running_var,
                                            momentum, self.eps, copies)
        return super().forward(x)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """``channels_last_3d`` for a channels-last 5D tensor that is not also contiguous, else ``contiguous_format``."""
    channels_last = x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()
    return torch.channels_last_3d if channels_last else torch.contiguous_format


def _channel_copies(x: torch.Tensor, channels: int) -> int:
    """The smallest ``k`` with ``k·channels`` a multiple of 16 that divides the rows of ``x``'s channel matrix;
    1 (PyTorch's own kernels) when the channels are a multiple of 16, when no such view exists, or for maps
    under a million values, where the extra kernel calls cost more than they save."""
    copies = 16 // math.gcd(channels, 16)
    return copies if (x.numel() // channels) % copies == 0 and x.numel() >= _WIDE_MIN_NUMEL else 1


_WIDE_MIN_NUMEL = 1 << 20


def _wide(x: torch.Tensor, copies: int) -> torch.Tensor:
    """The channels-last ``(N, C, T, H, W)`` map ``x`` as its ``(N·T·H·W / copies, copies·C)`` matrix (a view)."""
    channels = x.shape[1]
    return x.permute(0, 2, 3, 4, 1).view(x.numel() // (copies * channels), copies * channels)


def _normalize_into(out: torch.Tensor, x: torch.Tensor, copies: int, weight: torch.Tensor, bias: torch.Tensor,
                    mean: torch.Tensor, var: torch.Tensor, eps: float) -> torch.Tensor:
    """``out`` (channels-last, like ``x``) ← ``(x − mean) / √(var + eps) · weight + bias`` per channel, by the
    evaluation-mode kernel on the wide views; returns ``out``."""
    empty = x.new_empty(0, dtype=mean.dtype)
    torch.ops.aten.native_batch_norm.out(_wide(x, copies), weight.repeat(copies), bias.repeat(copies),
                                         mean.repeat(copies), var.repeat(copies), False, 0.0, eps,
                                         out=_wide(out, copies), save_mean=empty, save_invstd=empty.clone())
    return out


class _WideBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,  # type: ignore[override]
                running_mean: torch.Tensor, running_var: torch.Tensor, momentum: float, eps: float,
                copies: int) -> torch.Tensor:
        channels, count = x.shape[1], x.numel() // x.shape[1]
        wide = _wide(x, copies)
        scratch = [torch.full((copies * channels,), value, dtype=running_mean.dtype, device=x.device)
                   for value in (0.0, 1.0)]
        column_mean, column_var = torch.batch_norm_update_stats(wide, *scratch, 0.0)  # in the buffers' dtype
        column_mean, column_var = column_mean.view(copies, channels), column_var.view(copies, channels)
        mean = column_mean.mean(0)
        var = column_var.mean(0) + (column_mean - mean).square().mean(0)
        with torch.no_grad():
            running_mean.lerp_(mean, momentum)
            running_var.lerp_(var * (count / max(count - 1, 1)), momentum)
        ctx.save_for_backward(x, weight, mean, var)
        ctx.eps, ctx.copies = eps, copies
        return _normalize_into(torch.empty_like(x), x, copies, weight, bias, mean, var, eps)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, weight, mean, var = ctx.saved_tensors
        copies, eps = ctx.copies, ctx.eps
        channels, count = x.shape[1], x.numel() // x.shape[1]
        wide, grad_wide = _wide(x, copies), _wide(grad.contiguous(memory_format=torch.channels_last_3d), copies)
        # Evaluation-mode backward with the batch statistics: a·grad (a = weight / σ) and, per column,
        # sum(grad · x̂) and sum(grad).
        scaled_grad, column_grad_weight, column_grad_bias = torch.ops.aten.native_batch_norm_backward(
            grad_wide, wide, weight.repeat(copies), mean.repeat(copies), var.repeat(copies), None, None, False, eps,
            [True, True, True])
        grad_weight = column_grad_weight.view(copies, channels).sum(0)
        grad_bias = column_grad_bias.view(copies, channels).sum(0)
        # The training-mode gradient adds b·x + c, computed as an evaluation-mode batch norm (mean 0, variance
        # 1 − eps, weight b, bias c): all arithmetic in fp32 inside the kernels.
        invstd = (var + eps).rsqrt()
        a = weight * invstd
        b = -a * grad_weight * invstd / count
        c = -a * grad_bias / count - b * mean
        grad_x = _normalize_into(torch.empty_like(x), x, copies, b, c, torch.zeros_like(mean),
                                 torch.full_like(var, 1.0 - eps), eps)
        _wide(grad_x, copies).add_(scaled_grad)
        return grad_x, grad_weight, grad_bias, None, None, None, None, None


class MaxPool3d(nn.MaxPool3d):
    """:class:`torch.nn.MaxPool3d` that keeps its input's dtype under autocast and, when its windows do not
    overlap, keeps only the indices for the backward pass.

    CPU autocast lists ``max_pool3d`` as fp32, which would cast the largest activations of the network
    (the first stage's) from bf16 to fp32 and everything after it with them; a maximum is exact in any dtype.
    PyTorch's own backward keeps the whole input (8× the output) alive; with non-overlapping windows the
    gradient is the output gradient put back at the indices, so the input can be freed.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_disabled(x):
            if (torch.is_grad_enabled() and x.requires_grad and self.stride == self.kernel_size
                    and self.padding == 0 and self.dilation == 1 and not self.ceil_mode):
                return _MaxPoolSavingIndices.apply(x, self.kernel_size)
            return super().forward(x)


class _MaxPoolSavingIndices(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel_size: int) -> torch.Tensor:  # type: ignore[override]
        out, indices = F.max_pool3d(x, kernel_size, return_indices=True)
        ctx.save_for_backward(indices)
        ctx.kernel_size, ctx.input_shape, ctx.memory_format = kernel_size, x.shape, _memory_format(x)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        # PyTorch's max-pooling backward reads only the shape and memory format of the input: a never-touched
        # allocation (no resident memory) stands in for it. Unlike max_unpool3d, it keeps channels-last
        # gradients channels-last (at paper size 60 instead of 180 ms for the first stage, with the conversion).
        (indices,) = ctx.saved_tensors
        shape_only = torch.empty(ctx.input_shape, dtype=grad.dtype, device=grad.device, memory_format=ctx.memory_format)
        size = [ctx.kernel_size] * 3 if isinstance(ctx.kernel_size, int) else list(ctx.kernel_size)
        return torch.ops.aten.max_pool3d_with_indices_backward(grad, shape_only, size, size, [0, 0, 0], [1, 1, 1],
                                                               False, indices), None


def autocast_disabled(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """A context that turns autocast off on ``x``'s device (nothing on devices without autocast, e.g. meta)."""
    if torch.amp.is_autocast_available(x.device.type):
        return torch.autocast(x.device.type, enabled=False)
    return nullcontext()


class ConvStage3d(nn.Module):
    """One branch stage: ``Conv3d(in → out, 3×3×3, padding 1, bias) → ReLU → MaxPool3d(2)``.

    Halves T, H and W (floor). Built by :func:`tstcnn.models.tstcnn.create_branch`.
    """

    def __init__(self, in_channels: int, out_channels: int, act_layer: LayerFactory | None = None) -> None:
        super().__init__()
        act_layer = act_layer or partial(nn.ReLU, inplace=True)
        self.conv = Conv3d(in_channels, out_channels, kernel_size=3, padding=1, bias=True)
        self.act = act_layer()
        self.pool = MaxPool3d(kernel_size=2)

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
        norm_layer = norm_layer or BatchNorm3d
        act_layer = act_layer or partial(nn.ReLU, inplace=True)
        width = math.ceil(channels / 4)
        self.bn1 = norm_layer(channels)
        self.act1 = act_layer()
        self.conv1 = Conv3d(channels, width, kernel_size=1, bias=False)
        self.bn2 = norm_layer(width)
        self.act2 = act_layer()
        self.conv2 = Conv3d(width, width, kernel_size=3, padding=1, bias=False)
        self.bn3 = norm_layer(width)
        self.act3 = act_layer()
        self.conv3 = Conv3d(width, channels, kernel_size=1, bias=False)

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
        norm_layer = norm_layer or BatchNorm3d
        act_layer = act_layer or partial(nn.ReLU, inplace=True)
        res = partial(ResidualBlock3d, channels, norm_layer=norm_layer, act_layer=act_layer)
        self.pre = res()
        self.trunk = nn.Sequential(res(), res())
        self.pool = MaxPool3d(kernel_size=3, stride=2, padding=1)
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
            Conv3d(channels, channels, kernel_size=1, bias=False),
            norm_layer(channels),
            act_layer(),
            Conv3d(channels, channels, kernel_size=1, bias=False),
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
