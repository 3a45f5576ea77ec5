"""bf16 with channels-last, the presets' precision pair, on this CPU.

oneDNN's bf16 weight gradient of a 3×3×3 convolution (padding 1) of a two-frame map reads memory it never wrote
(PyTorch 2.13, AVX-512-BF16 CPUs without AMX; channels-last with 2 channels or more, contiguous with 16 output
channels or more): its result depends on what the allocator hands back, so a training run gave NaN or not from one
run to the next. :class:`~tstcnn.models.cpu_kernels.FewFrameConv3d` pads such inputs in time itself. The tests
fill freed memory with NaN first, so that a kernel reading stale memory fails every time instead of now and then.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tstcnn.config import PRESETS, override
from tstcnn.engine.trainer import TrainData, fit, read_metrics
from tstcnn.models import build_model
from tstcnn.models.cpu_kernels import FewFrameConv3d
from tstcnn.runtime.checkpoint import load_checkpoint
from tstcnn.runtime.performance import (
    apply_performance_options,
    autocast,
    bf16_is_fast,
    prepare_inputs,
    resolve_precision,
)

from engine_helpers import CLASSES, SignalClips

# One intra-op thread: on a shared 2-core machine two threads wait on each other whenever another process holds a
# core, which made the 50 steps below last minutes instead of seconds.
pytestmark = pytest.mark.usefixtures("one_thread")
MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last_3d}


def fill_freed_memory_with_nan() -> None:
    """Allocate and free NaN-filled blocks of many sizes, so that memory the allocator hands out next holds NaN
    where a kernel reads what it did not write."""
    blocks = [torch.full((numel,), math.nan) for k in range(2, 22) for numel in (2**k, 2**k + 3, 2**k + 17)]
    del blocks


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.double() - expected).abs().max() / expected.abs().max()).item()


@pytest.mark.parametrize("memory_format", list(MEMORY_FORMATS))
@pytest.mark.parametrize("channels", [4, 12, 16])
@pytest.mark.parametrize("frames", [1, 2, 3])
def test_few_frame_convolution_in_bf16_does_not_read_stale_memory(frames, channels, memory_format):
    # 12 channels and one frame: where AMX kernels got the forward pass wrong.
    fmt = MEMORY_FORMATS[memory_format]
    generator = torch.Generator().manual_seed(0)
    # Values that bf16 holds exactly, so that the fp64 reference sees the same inputs and weights.
    x = torch.randn(2, channels, frames, 5, 5, generator=generator).bfloat16().double()
    conv = FewFrameConv3d(channels, channels, kernel_size=3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(conv.weight.bfloat16())
    grad = torch.randn(2, channels, frames, 5, 5, generator=generator).bfloat16().double()
    x64, weight64 = x.clone().requires_grad_(), conv.weight.detach().double().requires_grad_()
    expected = F.conv3d(x64, weight64, padding=1)
    expected.backward(grad)
    conv.to(memory_format=fmt)
    x16 = x.float().contiguous(memory_format=fmt).requires_grad_()
    fill_freed_memory_with_nan()
    with autocast("bf16", "cpu"):
        out = conv(x16)
    out.float().backward(grad.float().contiguous(memory_format=fmt))
    assert _relative_error(out, expected) < 0.02
    assert _relative_error(x16.grad, x64.grad) < 0.02
    assert _relative_error(conv.weight.grad, weight64.grad) < 0.02


def _tiny_twin() -> nn.Module:
    """A tiny Twin whose third stage, second attention block and first block's mask branch see two-frame maps,
    with every path carrying signal."""
    torch.manual_seed(0)
    model = build_model("twin", "attention", input_size=(8, 32, 32), channels=(8, 16, 16), num_features=16)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("conv3.weight"):  # residual blocks start as the identity
                parameter.normal_(0, 0.1)
    return model


def test_tiny_twin_training_step_in_bf16_channels_last_has_sane_gradients():
    # In training mode the batch statistics of 1×4×4 maps amplify bf16 rounding: gradients deep in the network are
    # as far from fp32 as those of fp64 with weights perturbed by 0.4 %, so only the head is compared closely.
    model = _tiny_twin().train()
    generator = torch.Generator().manual_seed(0)
    inputs = {"rgb": torch.rand(4, 3, 8, 32, 32, generator=generator),
              "flow": torch.rand(4, 2, 8, 32, 32, generator=generator) * 2 - 1}
    model(**inputs).square().mean().backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    apply_performance_options(model, override(PRESETS["cpu-small"], "train", precision="bf16").train)
    fill_freed_memory_with_nan()
    with autocast("bf16", "cpu"):
        logits = model(**prepare_inputs(inputs, "cpu", channels_last=True))
    logits.float().square().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad.isfinite().all(), name
        assert parameter.grad.abs().max() <= 100 * expected[name].abs().max() + 1e-6, name
        if ".fc." in name or name.startswith("classifier."):
            cosine = F.cosine_similarity(parameter.grad.flatten(), expected[name].flatten(), dim=0)
            assert cosine > 0.95, f"{name}: cosine {cosine:.3f} with fp32"


@pytest.mark.slow
def test_cpu_small_preset_trains_50_steps_in_its_precision_pair(tmp_path):
    # The preset as shipped (model, optimiser, schedule, clipping, precision auto, channels-last) on 4 classes of
    # quadrant signal: 5 epochs of 10 steps, of 8 clips instead of 32 to keep it short.
    preset = PRESETS["cpu-small"]
    assert preset.train.precision == "auto" and preset.train.channels_last
    size = preset.model.input_size
    cfg = override(preset, "model", num_classes=len(CLASSES))
    cfg = override(override(cfg, "data", num_workers=0), "train", epochs=5, batch_size=8)
    data = TrainData(train=SignalClips(10 * cfg.train.batch_size, "twin", size=size, seed=1, jitter=0.1),
                     validation=SignalClips(32, "twin", size=size, seed=2), classes=CLASSES, flow_scale=2.0)
    fill_freed_memory_with_nan()
    run = fit(cfg, data, tmp_path / "run", progress=False)
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["precision"] for r in rows] == [resolve_precision("auto", "cpu")] * 5
    assert (rows[0]["precision"] == "bf16") == bf16_is_fast("cpu")
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) for r in rows)
    assert rows[-1]["train_loss"] < 0.5 * rows[0]["train_loss"]
    assert rows[-1]["val_accuracy"] >= 0.75  # chance: 0.25
    weights = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert all(v.isfinite().all() for v in weights.values() if v.is_floating_point())
