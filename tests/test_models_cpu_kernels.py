"""The drop-in layers of :mod:`tstcnn.models.cpu_kernels` give PyTorch's results, keys and memory formats.

Their bf16 behaviour on few-frame maps, where oneDNN goes wrong, is tested in ``tests/test_precision.py``.
"""

import pytest
import torch
from torch import nn

from tstcnn.models import cpu_kernels
from tstcnn.models.cpu_kernels import FewFrameConv3d, IndexSavingMaxPool3d, WideViewBatchNorm3d

CHANNELS_LAST = torch.channels_last_3d


@pytest.mark.parametrize(("ours", "theirs"), [
    (FewFrameConv3d(4, 8, kernel_size=3, padding=1), nn.Conv3d(4, 8, kernel_size=3, padding=1)),
    (WideViewBatchNorm3d(8), nn.BatchNorm3d(8)),
])
def test_drop_in_layers_keep_the_state_dict_of_torchs(ours, theirs):
    assert isinstance(ours, type(theirs))
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}


@pytest.mark.parametrize("frames", [1, 2, 3])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, CHANNELS_LAST])
def test_few_frame_convolution_equals_pytorchs_in_fp32(frames, memory_format):
    conv = FewFrameConv3d(12, 12, kernel_size=3, padding=1)
    plain = nn.Conv3d(12, 12, kernel_size=3, padding=1)
    plain.load_state_dict(conv.state_dict())
    conv.to(memory_format=memory_format)
    x = torch.randn(2, 12, frames, 6, 5).relu().contiguous(memory_format=memory_format)
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, expected = conv(ours), plain(theirs)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(expected)
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.weight.grad, plain.weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.bias.grad, plain.bias.grad, rtol=1e-5, atol=1e-5)


def test_few_frame_convolution_leaves_other_padding_to_pytorch():
    # Stride or padding other than kernel_size // 2 in time: the centre-slice and padding rewrites do not hold.
    for conv in (FewFrameConv3d(4, 4, 3, padding=(0, 1, 1)), FewFrameConv3d(4, 4, 3, padding=1, stride=2)):
        plain = nn.Conv3d(4, 4, 3, padding=conv.padding, stride=conv.stride)
        plain.load_state_dict(conv.state_dict())
        x = torch.randn(1, 4, 3, 5, 5)
        torch.testing.assert_close(conv(x), plain(x))


@pytest.mark.parametrize("channels_last", [False, True])
def test_stage_pooling_keeps_only_indices_and_gives_pytorchs_gradient(channels_last):
    x = torch.randn(2, 3, 7, 9, 6)  # odd sizes: the last plane is dropped
    if channels_last:
        x = x.contiguous(memory_format=CHANNELS_LAST)
    x.requires_grad_(True)
    expected = nn.MaxPool3d(2)(x)
    weights = torch.arange(expected.shape[-1])
    (expected_grad,) = torch.autograd.grad(expected, x, torch.ones_like(expected) * weights)
    out = IndexSavingMaxPool3d(2)(x)
    assert {t.shape for t in out.grad_fn.saved_tensors} == {out.shape}  # the indices, not the input
    (grad,) = torch.autograd.grad(out, x, torch.ones_like(out) * weights)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(grad, expected_grad)
    assert grad.is_contiguous(memory_format=CHANNELS_LAST if channels_last else torch.contiguous_format)


def test_pooling_stays_in_its_input_dtype_under_autocast():
    x = torch.randn(1, 4, 4, 6, 6, dtype=torch.bfloat16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = [IndexSavingMaxPool3d(2)(x), IndexSavingMaxPool3d(3, stride=2, padding=1)(x)]
    assert [o.dtype for o in outputs] == [torch.bfloat16, torch.bfloat16]


@pytest.mark.parametrize(("channels", "dtype"), [(8, torch.float32), (30, torch.bfloat16), (60, torch.float64)])
def test_batch_norm_on_wide_views_equals_pytorchs(channels, dtype, monkeypatch):
    monkeypatch.setattr(cpu_kernels, "_WIDE_MIN_NUMEL", 0)  # the paper-size maps' path, on small ones
    x = (torch.randn(4, channels, 4, 5, 6) * 2 + 5).to(dtype).contiguous(memory_format=CHANNELS_LAST)
    grad = torch.randn(x.shape, dtype=dtype).contiguous(memory_format=CHANNELS_LAST)
    parameter_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    ours, reference = WideViewBatchNorm3d(channels).to(parameter_dtype), nn.BatchNorm3d(channels).to(parameter_dtype)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ours.bias.normal_()
    reference.load_state_dict(ours.state_dict())
    results = []
    for module in (ours, reference):
        x_in = x.clone().requires_grad_(True)
        for _ in range(2):  # running statistics over two batches
            out = module(x_in)
        results.append((out, *torch.autograd.grad(out, (x_in, module.weight, module.bias), grad), module.running_mean,
                        module.running_var, module.num_batches_tracked))
    assert isinstance(results[0][0].grad_fn, cpu_kernels._WideBatchNorm._backward_cls)
    assert results[0][0].is_contiguous(memory_format=CHANNELS_LAST)
    assert results[0][1].is_contiguous(memory_format=CHANNELS_LAST)
    tolerance = {torch.bfloat16: 2e-2, torch.float32: 1e-5, torch.float64: 1e-10}[dtype]
    for actual, expected in zip(*results):
        torch.testing.assert_close(actual, expected, rtol=tolerance, atol=tolerance)


def test_batch_norm_keeps_pytorchs_path_where_it_is_fast(monkeypatch):
    def wide(channels: int, size=(2, 3, 4), channels_last: bool = True, training: bool = True) -> bool:
        x = torch.randn(2, channels, *size)
        if channels_last:
            x = x.contiguous(memory_format=CHANNELS_LAST)
        out = WideViewBatchNorm3d(channels).train(training)(x.requires_grad_())
        return isinstance(out.grad_fn, cpu_kernels._WideBatchNorm._backward_cls)

    assert not wide(8)  # small maps: the extra kernel calls cost more than they save
    monkeypatch.setattr(cpu_kernels, "_WIDE_MIN_NUMEL", 0)
    assert wide(8) and wide(30) and wide(15, size=(2, 2, 2))  # 16 rows: one view of 16 copies
    assert not wide(16) and not wide(48)  # multiples of 16: PyTorch's kernels are fast
    assert not wide(15, size=(3, 3, 3))  # 54 rows cannot be split into 16 copies
    assert not wide(8, channels_last=False) and not wide(8, training=False)
