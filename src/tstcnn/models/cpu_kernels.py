"""Drop-in layers that keep PyTorch's CPU kernels (PyTorch 2.13, oneDNN) off their faulty or slow paths.

Each is a subclass of the torch layer it stands for, with the same parameters and buffers (so the same state-dict
keys) and the same results; only how the kernels are called differs. :mod:`tstcnn.models.blocks` builds the
paper's layers from them.

* :class:`FewFrameConv3d` — a 3D convolution that handles inputs with fewer frames than its kernel without
  oneDNN's bf16 kernels, which get one- and two-frame inputs wrong.
* :class:`WideViewBatchNorm3d` — batch norm whose channels-last training passes run on a wider view of the map,
  where PyTorch's kernels are fast.
* :class:`IndexSavingMaxPool3d` — max pooling that stays in its input's dtype under autocast and keeps only the
  indices for its backward pass.
* :func:`autocast_disabled` — a context without autocast, for ops that CPU autocast would run in fp32.
"""

from __future__ import annotations

import contextlib
import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FewFrameConv3d", "WideViewBatchNorm3d", "IndexSavingMaxPool3d", "autocast_disabled"]


class FewFrameConv3d(nn.Conv3d):
    """:class:`torch.nn.Conv3d` that convolves inputs with fewer frames than its kernel by other calls with the same
    results, which oneDNN's bf16 kernels get right.

    Applies to zero time padding of ``kernel_size // 2`` with stride and dilation 1 in time, as in every TSTCNN
    convolution:

    * One frame: a 2D convolution with the centre slice of the kernel (the other slices only meet padding). On CPUs
      with AMX, bf16 3D convolutions of one-frame inputs with 1, 3, 5, 7, 9 or 11–15 channels return wrong values
      and NaN; the mask branch of an attention block reaches one frame at its coarsest level.
    * Two frames (3×3×3 kernel): the time padding applied with ``F.pad``, so that the convolution sees four frames
      and pads only in space. On CPUs with AVX-512-BF16 and no AMX (AMD Zen 4) oneDNN's bf16 weight gradient of a
      3×3×3 convolution of a two-frame input reads memory it never wrote: from one run to the next it is slightly
      wrong, values up to 1e35 or NaN. The cpu-small model meets two-frame maps after its third stage, the
      paper-size one in its third attention block.
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


class WideViewBatchNorm3d(nn.BatchNorm3d):
    """:class:`torch.nn.BatchNorm3d` whose training passes on large channels-last CPU maps run PyTorch's kernels on
    a wider view of the same memory.

    PyTorch's channels-last CPU kernels are slow when the channel count ``C`` is not a multiple of 16, the
    backward pass most. The ``(N·T·H·W, C)`` memory of a channels-last map is also a ``(N·T·H·W / k, k·C)``
    matrix whose columns are ``k`` copies of the channels; with ``k·C`` a multiple of 16 the kernels are fast
    there. Statistics are computed per column and combined per channel, then the evaluation-mode kernels apply
    them: the same results within rounding and the same running statistics.
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


# Below a million values the extra kernel calls of the wide view cost more than they save.
_WIDE_MIN_NUMEL = 1 << 20


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """``channels_last_3d`` for a channels-last 5D tensor that is not also contiguous, else ``contiguous_format``."""
    channels_last = x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()
    return torch.channels_last_3d if channels_last else torch.contiguous_format


def _channel_copies(x: torch.Tensor, channels: int) -> int:
    """The smallest ``k`` with ``k·channels`` a multiple of 16 that divides the rows of ``x``'s channel matrix;
    1 (PyTorch's own kernels) when the channels are a multiple of 16, when no such view exists, or for maps
    under :data:`_WIDE_MIN_NUMEL` values."""
    copies = 16 // math.gcd(channels, 16)
    return copies if (x.numel() // channels) % copies == 0 and x.numel() >= _WIDE_MIN_NUMEL else 1


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
    """Training-mode batch norm of a channels-last map through its ``copies``-wide view (statistics in fp32)."""

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


class IndexSavingMaxPool3d(nn.MaxPool3d):
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
    """Non-overlapping max pooling whose backward pass needs only the indices, not the input."""

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
        # gradients channels-last.
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
