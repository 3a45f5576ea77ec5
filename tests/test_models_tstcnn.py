import itertools

import pytest
import torch
from torch import nn

from tstcnn.models import (
    BLOCK_KINDS,
    I3D,
    PAPER_TABLE_I,
    TSTCNN,
    LateFusion,
    build_model,
    count_parameters,
    create_model,
    list_models,
)

TINY = (8, 32, 32)


def _inputs(model: nn.Module, size=TINY, batch=2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    rgb = torch.rand(batch, 3, *size, generator=generator)
    flow = torch.rand(batch, 2, *size, generator=generator) * 2 - 1
    return {m: {"rgb": rgb, "flow": flow}[m] for m in model.modalities}


@pytest.mark.parametrize("modality, attention", list(PAPER_TABLE_I))
def test_table_one_parameter_counts_exactly(modality, attention):
    with torch.device("meta"):
        model = build_model(modality, "attention" if attention else "none")
    assert count_parameters(model) == PAPER_TABLE_I[(modality, attention)]


def test_paper_size_fc_has_216000_features_per_branch():
    with torch.device("meta"):
        model = build_model("twin", "attention")
    assert model.branches["rgb"].fc.in_features == 80 * 12 * 15 * 15 == 216_000
    assert isinstance(model.classifier.bilinear, nn.Bilinear)
    assert model.classifier.bilinear.weight.shape == (21, 500, 500)
    assert count_parameters(model, exclude_fc=False) - count_parameters(model) == 2 * (216_000 * 500 + 500) + (
        21 * 500 * 500 + 21)


VARIANTS = [(m, b, n) for m, b, n in itertools.product(("rgb", "flow", "twin"), BLOCK_KINDS, range(4))
            if not (b == "none" and n)]


@pytest.mark.parametrize("modality, block, num_blocks", VARIANTS)
def test_every_variant_builds_at_paper_size(modality, block, num_blocks):
    with torch.device("meta"):
        model = build_model(modality, block, num_blocks=num_blocks)
    kinds = [type(model.branches[m].get_submodule(f"block{i}")).__name__ for m in model.modalities for i in (1, 2, 3)]
    expected = {"attention": "AttentionBlock3d", "residual": "ResidualBlock3d", "none": "Identity"}[block]
    per_branch = [expected] * num_blocks + ["Identity"] * (3 - num_blocks) if block != "none" else ["Identity"] * 3
    assert kinds == per_branch * len(model.modalities)


@pytest.mark.parametrize("modality, block, num_blocks", VARIANTS)
def test_every_variant_forward_backward_tiny(modality, block, num_blocks):
    model = build_model(modality, block, num_blocks=num_blocks, input_size=TINY).train()
    logits = model(**_inputs(model))
    assert logits.shape == (2, 21) and torch.isfinite(logits).all()
    logits.logsumexp(1).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"


@pytest.mark.parametrize("stream", ["rgb", "flow"])
def test_i3d_streams_build_at_paper_size_and_train_tiny(stream):
    with torch.device("meta"):
        big = build_model(f"i3d-{stream}", input_size=(64, 120, 120))
    assert isinstance(big, I3D)
    model = build_model(f"i3d-{stream}", input_size=TINY, num_classes=5).train()
    logits = model(**_inputs(model, batch=2))
    assert logits.shape == (2, 5)
    logits.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


@pytest.mark.parametrize("name", list_models("test_"))
def test_registered_tiny_variants_output_num_classes_without_nans(name):
    model = create_model(name, num_classes=7).eval()
    with torch.no_grad():
        out = model(**_inputs(model))
    assert out.shape == (2, 7) and not torch.isnan(out).any()


def test_api_contract_features_head_and_reset_classifier():
    model = build_model("twin", "attention", input_size=TINY, channels=(4, 8, 8), num_features=16).eval()
    inputs = _inputs(model)
    features = model.forward_features(**inputs)
    assert set(features) == {"rgb", "flow"} and features["rgb"].shape == (2, 8, 1, 4, 4)
    assert model.forward_head(features, pre_logits=True).shape == (2, 32)
    torch.testing.assert_close(model.forward_head(features), model(**inputs))
    model.reset_classifier(4)
    assert model.num_classes == 4 and model(**inputs).shape == (2, 4)
    assert model.get_classifier() is model.classifier


def test_single_branch_pre_logits_and_linear_classifier():
    model = build_model("flow", "residual", input_size=TINY, num_features=12).eval()
    feats = model.forward_head(model.forward_features(flow=_inputs(model)["flow"]), pre_logits=True)
    assert feats.shape == (2, 12) and isinstance(model.classifier, nn.Linear)
    assert torch.all(feats >= 0), "branch features come after a ReLU"


def test_attention_masks_readable_after_forward_without_hooks():
    # Train mode: batch statistics keep an untrained model's mask logits away from float32 saturation.
    model = build_model("twin", "attention", num_blocks=2, input_size=(16, 32, 32)).train()
    assert model.attention_masks == {}
    with torch.no_grad():
        model(**_inputs(model, size=(16, 32, 32), batch=2))
    masks = model.attention_masks
    assert list(masks) == ["rgb.block1", "rgb.block2", "flow.block1", "flow.block2"]
    assert masks["rgb.block1"].shape == (2, 30, 8, 16, 16)
    assert masks["flow.block2"].shape == (2, 60, 4, 8, 8)
    assert all(((m > 0) & (m < 1)).all() for m in masks.values())


def test_missing_modality_input_is_a_value_error():
    model = build_model("twin", "none", input_size=TINY)
    with pytest.raises(ValueError, match="needs input"):
        model(rgb=torch.rand(1, 3, *TINY))


@pytest.mark.parametrize("kwargs, message", [
    (dict(modality="depth"), "allowed: rgb, flow, twin, i3d-rgb, i3d-flow"),
    (dict(modality="rgb", block="dense"), "allowed: none, residual, attention"),
    (dict(modality="rgb", num_blocks=4), "between 0 and 3"),
    (dict(modality="rgb", num_blocks=-1), "between 0 and 3"),
    (dict(modality="twin", input_size=(4, 120, 120)), "at least 8 frames"),
    (dict(modality="twin", input_size=(100, 7, 120)), "too small"),
    (dict(modality="rgb", num_classes=0), "at least 1"),
])
def test_bad_arguments_raise_value_error_naming_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_model(**kwargs)


def test_late_fusion_averages_softmax_scores():
    rgb = build_model("rgb", "none", input_size=TINY).eval()
    flow = build_model("flow", "none", input_size=TINY).eval()
    fused = LateFusion(rgb, flow)
    x = _inputs(build_model("twin", "none", input_size=TINY))
    with torch.no_grad():
        expected = (rgb(rgb=x["rgb"]).softmax(1) + flow(flow=x["flow"]).softmax(1)) / 2
        torch.testing.assert_close(fused(**x).softmax(1), expected)


def test_model_is_device_agnostic_via_to():
    model = build_model("twin", "attention", input_size=TINY).to(torch.float64)
    out = model(**{k: v.double() for k, v in _inputs(model).items()})
    assert out.dtype == torch.float64
    assert isinstance(model, TSTCNN)
