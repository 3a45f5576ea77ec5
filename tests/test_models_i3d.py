import pytest
import torch

from tstcnn.models import I3D, build_model, count_parameters, load_i3d_checkpoint
from tstcnn.models.i3d import _same_padding

PORT_MODULES = ["Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "Mixed_3b", "Mixed_3c", "Mixed_4b", "Mixed_4c",
                "Mixed_4d", "Mixed_4e", "Mixed_4f", "Mixed_5b", "Mixed_5c"]


@pytest.fixture(scope="module")
def rgb_400() -> I3D:
    torch.manual_seed(0)
    return build_model("i3d-rgb", num_classes=400)


def test_state_dict_uses_the_port_names(rgb_400):
    keys = set(rgb_400.state_dict())
    for name in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"):
        assert {f"{name}.conv3d.weight", f"{name}.bn.weight", f"{name}.bn.bias", f"{name}.bn.running_mean",
                f"{name}.bn.running_var"} <= keys
    for mixed in PORT_MODULES[3:]:
        for branch in ("b0", "b1a", "b1b", "b2a", "b2b", "b3b"):
            assert f"{mixed}.{branch}.conv3d.weight" in keys
        assert not any(k.startswith(f"{mixed}.b3a.") for k in keys), "b3a is a parameter-free pooling"
    assert {"logits.conv3d.weight", "logits.conv3d.bias"} <= keys
    assert not any(".conv3d.bias" in k for k in keys if not k.startswith("logits"))


def test_a_few_port_shapes(rgb_400):
    sd = rgb_400.state_dict()
    assert sd["Conv3d_1a_7x7.conv3d.weight"].shape == (64, 3, 7, 7, 7)
    assert sd["Conv3d_2c_3x3.conv3d.weight"].shape == (192, 64, 3, 3, 3)
    assert sd["Mixed_3b.b1b.conv3d.weight"].shape == (128, 96, 3, 3, 3)
    assert sd["Mixed_4f.b3b.conv3d.weight"].shape == (128, 528, 1, 1, 1)
    assert sd["Mixed_5c.b0.conv3d.weight"].shape == (384, 832, 1, 1, 1)
    assert sd["logits.conv3d.weight"].shape == (400, 1024, 1, 1, 1)
    assert rgb_400.Conv3d_1a_7x7.bn.eps == 0.001


def test_flow_stream_takes_two_channels_and_counts_match_inception_v1():
    flow = build_model("i3d-flow", num_classes=400)
    assert flow.state_dict()["Conv3d_1a_7x7.conv3d.weight"].shape == (64, 2, 7, 7, 7)
    rgb = build_model("i3d-rgb", num_classes=400)
    assert count_parameters(rgb) - count_parameters(flow) == 64 * 7 * 7 * 7
    assert count_parameters(rgb, exclude_fc=False) - count_parameters(rgb) == 1024 * 400 + 400


def test_port_state_dict_loads_strictly_and_round_trips_with_new_classes(rgb_400, tmp_path):
    path = tmp_path / "rgb_imagenet.pt"
    state = {k: v for k, v in rgb_400.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, path)
    fresh = build_model("i3d-rgb", num_classes=400)
    fresh.load_state_dict(torch.load(path, weights_only=True), strict=False)
    model = load_i3d_checkpoint(path, num_classes=21)
    assert model.modality == "rgb" and model.num_classes == 21
    assert model.logits.conv3d.weight.shape == (21, 1024, 1, 1, 1)
    for key, value in state.items():
        if not key.startswith("logits"):
            torch.testing.assert_close(model.state_dict()[key], value)
    model.eval()
    out = model(rgb=torch.rand(1, 3, 8, 32, 32))
    assert out.shape == (1, 21)


def test_load_i3d_checkpoint_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable weights-only checkpoint"):
        load_i3d_checkpoint(bad, num_classes=21)
    other = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(ValueError, match="not an I3D state dict"):
        load_i3d_checkpoint(other, num_classes=21)


@pytest.mark.parametrize("size, kernel, stride, expected", [
    ((16, 224, 224), (7, 7, 7), (2, 2, 2), [2, 3, 2, 3, 2, 3]),
    ((9, 9, 9), (3, 3, 3), (2, 2, 2), [1, 1, 1, 1, 1, 1]),
    ((8, 8, 8), (1, 3, 3), (1, 2, 2), [0, 1, 0, 1, 0, 0]),
])
def test_same_padding_gives_ceil_output(size, kernel, stride, expected):
    assert _same_padding(size, kernel, stride) == expected
    pads = _same_padding(size, kernel, stride)
    for i, (n, k, s) in enumerate(zip(reversed(size), reversed(kernel), reversed(stride))):
        assert (n + pads[2 * i] + pads[2 * i + 1] - k) // s + 1 == -(-n // s)


def test_rgb_stream_rescales_unit_range_input():
    model = build_model("i3d-rgb", input_size=(8, 32, 32)).eval()
    first = {}
    model.Conv3d_1a_7x7.register_forward_pre_hook(lambda m, args: first.setdefault("x", args[0]))
    with torch.no_grad():
        model(rgb=torch.ones(1, 3, 8, 32, 32))
    assert torch.all(first["x"] == 1.0)
    first.clear()
    with torch.no_grad():
        model(rgb=torch.zeros(1, 3, 8, 32, 32))
    assert torch.all(first["x"] == -1.0)
