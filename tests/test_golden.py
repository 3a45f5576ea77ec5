"""What earlier versions computed and saved, checked against the current code.

* A run folder saved by an earlier version (``data/legacy_run``) loads strictly and predicts the same logits.
* Recorded fp32 logits of tiny models for fixed inputs: every modality and block kind, and both I3D streams.

The fast paths are tested against the plain model of :mod:`tstcnn.models.reference`, which cannot see a change the
two share (a block's wiring, the pooling, the interpolation, an initialisation-independent weight layout). These
logits were recorded by an earlier version; weights come from a generator seeded by each state-dict key, so they do
not depend on module order or on the initialisation. Refresh them only after a deliberate change of what the network
computes: ``TSTCNN_UPDATE_GOLDEN=1 pytest tests/test_golden.py``.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest
import torch
from torch import nn

from tstcnn.models import TSTCNN, build_model
from tstcnn.runtime.checkpoint import load_checkpoint, load_run

GOLDEN = Path(__file__).parent / "data" / "golden_logits.pt"
UPDATE = os.environ.get("TSTCNN_UPDATE_GOLDEN") == "1"
SIZE = (8, 32, 32)
TINY = {"input_size": SIZE, "channels": (4, 8, 8), "num_features": 8, "num_classes": 5}
CASES = {f"{modality}_{block}": dict(modality=modality, block=block, **TINY)
         for modality in ("rgb", "flow", "twin") for block in ("none", "residual", "attention")}
CASES.update({f"i3d_{stream}": dict(modality=f"i3d-{stream}", input_size=SIZE, num_classes=5)
              for stream in ("rgb", "flow")})
# fp32 through up to ~60 layers: kernels that sum in another order (thread count, memory format, another CPU) move
# the logits by up to 2e-4 of their scale; a change of what the network computes moves them by far more.
RTOL, ATOL_OF_SCALE = 5e-4, 5e-4


def set_deterministic_weights(model: nn.Module) -> nn.Module:
    """Every parameter and batch-norm buffer drawn from a generator seeded by its state-dict key: convolutions and
    linear layers ``N(0, 1 / fan_in)``, biases and means ``N(0, 0.1²)``, batch-norm scales and variances
    ``U(0.5, 1.5)``."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            owner, _, leaf = name.rpartition(".")
            is_norm = isinstance(modules[owner], nn.modules.batchnorm._BatchNorm)
            if leaf == "running_var" or (is_norm and leaf == "weight"):
                value = torch.rand(tensor.shape, generator=generator) + 0.5
            elif tensor.dim() >= 2:
                value = torch.randn(tensor.shape, generator=generator) * (tensor.shape[0] / tensor.numel()) ** 0.5
            else:
                value = torch.randn(tensor.shape, generator=generator) * 0.1
            tensor.copy_(value)
    return model


def golden_inputs(batch: int = 8) -> dict[str, torch.Tensor]:
    """Eight clips: batch statistics of the deepest 1×1×1 maps over fewer values amplify rounding too much."""
    generator = torch.Generator().manual_seed(2020)
    return {"rgb": torch.rand(batch, 3, *SIZE, generator=generator),
            "flow": torch.rand(batch, 2, *SIZE, generator=generator) * 2 - 1}


def golden_logits(name: str) -> dict[str, torch.Tensor]:
    """The case's logits in training mode (batch statistics), then in evaluation mode with the running statistics
    that pass left (a cumulative average, so the statistics of the inputs themselves)."""
    model = set_deterministic_weights(build_model(**CASES[name]))
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = None
    inputs = {m: golden_inputs()[m] for m in model.modalities}
    with torch.no_grad():
        train = model.train()(**inputs)
        return {"train": train, "eval": model.eval()(**inputs)}


@pytest.fixture(scope="module")
def recorded() -> dict[str, dict[str, torch.Tensor]]:
    if UPDATE:
        GOLDEN.parent.mkdir(exist_ok=True)
        torch.save({name: golden_logits(name) for name in CASES}, GOLDEN)
    return torch.load(GOLDEN, weights_only=True)


def test_golden_file_covers_every_case(recorded):
    assert sorted(recorded) == sorted(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_logits_equal_the_recorded_ones(name, recorded):
    logits = golden_logits(name)
    for mode, expected in recorded[name].items():
        assert expected.shape == (8, 5) and expected.std(0).max() > 1e-2, "the recorded logits tell the inputs apart"
        torch.testing.assert_close(logits[mode], expected, rtol=RTOL, atol=ATOL_OF_SCALE * expected.abs().max().item(),
                                   msg=lambda m, name=name, mode=mode: f"{name} ({mode}): {m}")


LEGACY_RUN = Path(__file__).parent / "data" / "legacy_run"  # written by data/make_legacy_run.py


def test_run_saved_by_an_earlier_version_loads_strictly_and_predicts_the_same():
    run = load_run(LEGACY_RUN, "last")
    checkpoint = load_checkpoint(LEGACY_RUN / "checkpoints" / "last.pt", model_config=run.config.model,
                                 classes=run.classes.classes)
    assert isinstance(run.model, TSTCNN) and not run.model.training
    assert list(run.model.state_dict()) == list(checkpoint["model"])  # load_run loads strictly: same keys
    assert set(checkpoint) >= {"optimizer", "scheduler", "scaler", "rng", "best_accuracy"}
    expected = torch.load(LEGACY_RUN / "expected.pt", weights_only=True)
    inputs = {"rgb": expected["rgb"].float() / 255, "flow": expected["flow"].float() / 127.5 - 1}
    with torch.no_grad():
        logits = run.model(**inputs)
    scale = expected["logits"].abs().max().item()
    torch.testing.assert_close(logits, expected["logits"], rtol=RTOL, atol=ATOL_OF_SCALE * scale)
    assert torch.equal(logits.argmax(1), expected["logits"].argmax(1))
