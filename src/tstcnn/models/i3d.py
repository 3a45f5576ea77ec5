"""Two-stream Inflated 3D ConvNet baseline (Carreira & Zisserman, CVPR 2017), Inception-v1 inflated.

Module and parameter names follow the widely used PyTorch port (``Conv3d_1a_7x7`` … ``Mixed_5c``,
units holding ``conv3d`` and ``bn``, inception branches ``b0``, ``b1a``, ``b1b``, ``b2a``, ``b2b``,
``b3b``, classifier ``logits.conv3d``), so its Kinetics checkpoints (``rgb_imagenet.pt``,
``flow_imagenet.pt``) load with ``strict=True`` into a model built with 400 classes. Convolutions
and poolings use TensorFlow's "SAME" padding, computed from the input size at run time.

RGB and flow streams are separate models (paper Table III trains them separately); :class:`LateFusion`
averages their softmax scores ("RGB + Flow").
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tstcnn.models.blocks import init_conv_weights

__all__ = ["Unit3d", "MaxPool3dSame", "InceptionModule3d", "I3D", "LateFusion", "load_i3d_checkpoint"]

Triple = tuple[int, int, int]


def _triple(value: int | Sequence[int]) -> Triple:
    return (value,) * 3 if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


def _same_padding(size: Sequence[int], kernel: Triple, stride: Triple) -> list[int]:
    """``F.pad`` amounts (last dimension first) for TensorFlow "SAME" padding: output = ceil(size / stride)."""
    pads: list[int] = []
    for n, k, s in reversed(list(zip(size, kernel, stride))):
        total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
        pads += [total // 2, total - total // 2]
    return pads


class Unit3d(nn.Module):
    """``Conv3d`` (no bias unless no batch norm) with "SAME" padding, then ``BatchNorm3d`` and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int] = 1,
                 stride: int | Sequence[int] = 1, use_batch_norm: bool = True, activation: bool = True,
                 use_bias: bool = False) -> None:
        super().__init__()
        self.kernel_size = _triple(kernel_size)
        self.stride = _triple(stride)
        self.activation = activation
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel_size, stride=self.stride, bias=use_bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=0.001, momentum=0.01) if use_batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(F.pad(x, _same_padding(x.shape[-3:], self.kernel_size, self.stride)))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x, inplace=True) if self.activation else x


class MaxPool3dSame(nn.Module):
    """Max pooling with TensorFlow "SAME" padding (zeros, as the port does; inputs are post-ReLU)."""

    def __init__(self, kernel_size: Sequence[int], stride: Sequence[int]) -> None:
        super().__init__()
        self.kernel_size = _triple(kernel_size)
        self.stride = _triple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, _same_padding(x.shape[-3:], self.kernel_size, self.stride))
        return F.max_pool3d(x, self.kernel_size, self.stride)


class InceptionModule3d(nn.Module):
    """Inflated inception module: four branches concatenated on channels.

    ::

        x ─┬─ b0: 1³ ────────────────────────┐
           ├─ b1a: 1³ → b1b: 3³ ─────────────┤
           ├─ b2a: 1³ → b2b: 3³ ─────────────┼─ concat
           └─ b3a: maxpool 3³/1 → b3b: 1³ ───┘

    ``widths`` = (b0, b1a, b1b, b2a, b2b, b3b) output channels.
    """

    def __init__(self, in_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3b = widths
        self.b0 = Unit3d(in_channels, w0)
        self.b1a = Unit3d(in_channels, w1a)
        self.b1b = Unit3d(w1a, w1b, kernel_size=3)
        self.b2a = Unit3d(in_channels, w2a)
        self.b2b = Unit3d(w2a, w2b, kernel_size=3)
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3d(in_channels, w3b)
        self.out_channels = w0 + w1b + w2b + w3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


# (name, in_channels, (b0, b1a, b1b, b2a, b2b, b3b)) of Inception-v1.
_INCEPTION_SPECS: tuple[tuple[str, int, tuple[int, ...]], ...] = (
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
)


class I3D(nn.Module):
    """One I3D stream: RGB (``in_channels=3``) or flow (``in_channels=2``).

    Inputs (keyword, as :class:`~tstcnn.models.tstcnn.TSTCNN`): ``rgb`` ``(N, 3, T, H, W)`` in [0, 1]
    (rescaled to [-1, 1] inside, as the Kinetics weights expect) or ``flow`` ``(N, 2, T, H, W)`` in
    [-1, 1]. Output: logits ``(N, num_classes)``. Global average pooling replaces the port's fixed
    2×7×7 pooling so that any input size works; at 224×224 the two agree.
    """

    def __init__(self, modality: str = "rgb", num_classes: int = 400, drop_rate: float = 0.5) -> None:
        super().__init__()
        if modality not in ("rgb", "flow"):
            raise ValueError(f"unknown I3D stream {modality!r}; allowed: rgb, flow")
        self.modality = modality
        self.modalities = (modality,)
        self.num_classes = num_classes
        self.num_features = 1024
        self.Conv3d_1a_7x7 = Unit3d(3 if modality == "rgb" else 2, 64, kernel_size=7, stride=2)
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3d(64, 64)
        self.Conv3d_2c_3x3 = Unit3d(64, 192, kernel_size=3)
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        for name, in_channels, widths in _INCEPTION_SPECS:
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
            elif name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
            self.add_module(name, InceptionModule3d(in_channels, widths))
        self.avg_pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(drop_rate)
        self.logits = self._make_classifier(num_classes)
        self.init_weights()

    def _make_classifier(self, num_classes: int) -> Unit3d:
        return Unit3d(self.num_features, num_classes, use_batch_norm=False, activation=False, use_bias=True)

    def init_weights(self) -> None:
        init_conv_weights(self)

    def get_classifier(self) -> nn.Module:
        return self.logits

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.logits = self._make_classifier(num_classes)

    def forward_features(self, rgb: torch.Tensor | None = None, flow: torch.Tensor | None = None) -> torch.Tensor:
        """The ``Mixed_5c`` feature map ``(N, 1024, T/8, H/32, W/32)``."""
        x = rgb * 2 - 1 if self.modality == "rgb" and rgb is not None else flow
        if x is None:
            raise ValueError(f"this I3D stream needs input: {self.modality}")
        for name, module in self.named_children():
            if name == "avg_pool":
                break
            x = module(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.avg_pool(x)
        if pre_logits:
            return torch.flatten(x, 1)
        return torch.flatten(self.logits(self.dropout(x)), 1)

    def forward(self, rgb: torch.Tensor | None = None, flow: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(rgb, flow))


class LateFusion(nn.Module):
    """"RGB + Flow": the mean of two single-stream models' softmax scores.

    Returns the log of the averaged probabilities, so that ``softmax`` of the output gives the
    averaged probabilities and ``argmax`` the fused decision.
    """

    def __init__(self, rgb: nn.Module, flow: nn.Module) -> None:
        super().__init__()
        self.rgb = rgb
        self.flow = flow

    def forward(self, rgb: torch.Tensor | None = None, flow: torch.Tensor | None = None) -> torch.Tensor:
        probabilities = (self.rgb(rgb=rgb).softmax(1) + self.flow(flow=flow).softmax(1)) / 2
        return probabilities.log()


def load_i3d_checkpoint(path: str | Path, num_classes: int, modality: str | None = None) -> I3D:
    """Build an I3D stream from a port-format state dict (weights only) and replace its logits for ``num_classes``.

    The stream (RGB or flow) is read from the first convolution's input channels unless given.
    Files saved before batch norm counted its batches lack ``num_batches_tracked``; those are filled in.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise ValueError(f"{path}: not a readable weights-only checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or "Conv3d_1a_7x7.conv3d.weight" not in state:
        raise ValueError(f"{path}: not an I3D state dict (no Conv3d_1a_7x7.conv3d.weight)")
    stream = modality or ("rgb" if state["Conv3d_1a_7x7.conv3d.weight"].shape[1] == 3 else "flow")
    model = I3D(stream, num_classes=state["logits.conv3d.weight"].shape[0])
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else "mismatch"
        raise ValueError(f"{path}: does not match the I3D {stream} stream ({first_line})") from None
    if num_classes != model.num_classes:
        model.reset_classifier(num_classes)
    return model
