"""The Twin Spatio-Temporal CNN (Martin et al., ICPR 2020, section III-A, Fig. 1).

A branch is three :class:`~tstcnn.models.blocks.ConvStage3d` stages of 30, 60 and 80 filters, each
optionally followed by a residual or attention block, then ``flatten → Linear(→500) → ReLU``.
:class:`TSTCNN` holds one branch per input modality: with a single branch ("RGB" or "Flow" model)
the classifier is ``Linear(500 → classes)``; with both ("Twin") it is the bilinear
:class:`TwinFusion`. The builder is :func:`tstcnn.models.build_model`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from tstcnn.models.blocks import (
    AttentionBlock3d,
    ConvStage3d,
    LayerFactory,
    ResidualBlock3d,
    create_block,
    init_conv_weights,
)
from tstcnn.models.cpu_kernels import autocast_disabled

__all__ = ["MODALITY_CHANNELS", "Branch3d", "TwinFusion", "TSTCNN", "create_branch", "branch_output_size"]

MODALITY_CHANNELS = {"rgb": 3, "flow": 2}


def branch_output_size(input_size: Sequence[int], num_stages: int = 3) -> tuple[int, ...]:
    """T, H, W after ``num_stages`` 2× poolings (floor), e.g. (100, 120, 120) → (12, 15, 15)."""
    return tuple(d // 2**num_stages for d in input_size)


class Branch3d(nn.Module):
    """One modality's feature extractor and its 500-d fully connected layer.

    Inputs: ``(N, in_channels, T, H, W)``. :meth:`forward_features` returns the last feature map
    ``(N, channels[-1], T/8, H/8, W/8)``; :meth:`forward_head` flattens it and applies ``fc → ReLU``.
    Built by :func:`create_branch`.
    """

    def __init__(self, in_channels: int, input_size: Sequence[int], channels: Sequence[int] = (30, 60, 80),
                 blocks: Sequence[str] = ("attention",) * 3, num_features: int = 500,
                 norm_layer: LayerFactory | None = None, act_layer: LayerFactory | None = None) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_features = num_features
        widths = (in_channels, *channels)
        for i, kind in enumerate(blocks, start=1):
            self.add_module(f"stage{i}", ConvStage3d(widths[i - 1], widths[i], act_layer=act_layer))
            self.add_module(f"block{i}", create_block(kind, widths[i], norm_layer=norm_layer, act_layer=act_layer))
        self.num_stages = len(blocks)
        self.feature_shape = (channels[-1], *branch_output_size(input_size, self.num_stages))
        self.fc = nn.Linear(math.prod(self.feature_shape), num_features)
        self.act = nn.ReLU(inplace=True)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"block{i}")(getattr(self, f"stage{i}")(x))
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        # The FC is memory-bound (0.43 GB of weights for 2 GFLOP): under autocast it stays in its weights'
        # dtype, which spares casting the whole matrix to bf16 and its gradient back at every step.
        x = torch.flatten(x, 1).to(self.fc.weight.dtype)
        with autocast_disabled(x):
            return self.act(self.fc(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class TwinFusion(nn.Module):
    """Bilinear fusion of the RGB and flow branch outputs into class logits: ``Bilinear(500, 500 → classes)``."""

    def __init__(self, rgb_features: int, flow_features: int, num_classes: int) -> None:
        super().__init__()
        self.bilinear = nn.Bilinear(rgb_features, flow_features, num_classes)

    def forward(self, rgb: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        # Autocast has no rule for bilinear: run it in the weights' dtype (a 500×500×21 product, cheap).
        dtype = self.bilinear.weight.dtype
        with autocast_disabled(rgb):
            return self.bilinear(rgb.to(dtype), flow.to(dtype))


class TSTCNN(nn.Module):
    """RGB, Flow or Twin TSTCNN classifier.

    Inputs (keyword): ``rgb`` ``(N, 3, T, H, W)`` in [0, 1] and/or ``flow`` ``(N, 2, T, H, W)`` in [-1, 1],
    as ``modalities`` requires. Output: logits ``(N, num_classes)`` (softmax only for probabilities).

    Args:
        modalities: ``("rgb",)``, ``("flow",)`` or ``("rgb", "flow")`` (Twin).
        num_classes: output classes (21 for TTStroke-21).
        input_size: ``(T, H, W)`` of the clips; fixes the width of each branch's fully connected layer.
        channels: filters of the three stages.
        blocks: block after each stage's pooling (``attention``, ``residual``, ``none``).
        num_features: width of each branch's fully connected layer.
        drop_rate: dropout on the branch features before the classifier.
    """

    def __init__(self, modalities: Sequence[str], num_classes: int = 21, input_size: Sequence[int] = (100, 120, 120),
                 channels: Sequence[int] = (30, 60, 80), blocks: Sequence[str] = ("attention",) * 3,
                 num_features: int = 500, drop_rate: float = 0.0, norm_layer: LayerFactory | None = None,
                 act_layer: LayerFactory | None = None) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.num_classes = num_classes
        self.num_features = num_features
        self.input_size = tuple(input_size)
        self.drop_rate = drop_rate
        self.branches = nn.ModuleDict({
            m: create_branch(m, input_size, channels=channels, blocks=blocks, num_features=num_features,
                             norm_layer=norm_layer, act_layer=act_layer)
            for m in self.modalities
        })
        self.head_drop = nn.Dropout(drop_rate)
        self.classifier = self._make_classifier(num_classes)
        self.init_weights()

    @property
    def is_twin(self) -> bool:
        return len(self.modalities) == 2

    def _make_classifier(self, num_classes: int) -> nn.Module:
        if self.is_twin:
            return TwinFusion(self.num_features, self.num_features, num_classes)
        return nn.Linear(self.num_features, num_classes)

    def init_weights(self) -> None:
        """Kaiming-normal convolutions, unit batch norms; linear and bilinear layers keep PyTorch's default.

        The last convolution of every residual block starts at zero, so each block starts as the identity: an
        attention block stacks twelve of them, and with all branches live the activations (and the first
        logits) grow by orders of magnitude, which makes SGD at the paper's learning rate diverge.
        """
        init_conv_weights(self)
        for module in self.modules():
            if isinstance(module, ResidualBlock3d):
                nn.init.zeros_(module.conv3.weight)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute every attention block in the backward pass instead of keeping its activations."""
        for module in self.modules():
            if isinstance(module, AttentionBlock3d):
                module.checkpoint = enable

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier (linear or bilinear) for ``num_classes`` outputs, e.g. for another taxonomy."""
        self.num_classes = num_classes
        self.classifier = self._make_classifier(num_classes)

    def _inputs(self, rgb: torch.Tensor | None, flow: torch.Tensor | None) -> dict[str, torch.Tensor]:
        given = {"rgb": rgb, "flow": flow}
        missing = [m for m in self.modalities if given[m] is None]
        if missing:
            raise ValueError(f"this model needs input(s): {', '.join(missing)}")
        return {m: given[m] for m in self.modalities}  # type: ignore[misc]

    def forward_features(self, rgb: torch.Tensor | None = None,
                         flow: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Each branch's last feature map, keyed by modality."""
        return {m: self.branches[m].forward_features(x) for m, x in self._inputs(rgb, flow).items()}

    def forward_head(self, features: dict[str, torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        """Branch fully connected layers, then the classifier; ``pre_logits`` returns the 500-d vectors
        (concatenated in modality order for the Twin)."""
        vectors = [self.head_drop(self.branches[m].forward_head(features[m])) for m in self.modalities]
        if pre_logits:
            return torch.cat(vectors, dim=1)
        return self.classifier(*vectors)

    def forward(self, rgb: torch.Tensor | None = None, flow: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(rgb, flow))

    @property
    def attention_masks(self) -> dict[str, torch.Tensor]:
        """Soft masks of every attention block from the last forward pass, keyed ``"<modality>.block<i>"``.

        Each is ``(N, C, T, H, W)`` with the block's input size and values in (0, 1). Empty before the
        first forward pass or for models without attention blocks.
        """
        masks = {}
        for modality, branch in self.branches.items():
            for name, module in branch.named_children():
                if isinstance(module, AttentionBlock3d) and module.mask is not None:
                    masks[f"{modality}.{name}"] = module.mask
        return masks


def create_branch(modality: str, input_size: Sequence[int], *, channels: Sequence[int] = (30, 60, 80),
                  blocks: Sequence[str] = ("attention",) * 3, num_features: int = 500,
                  norm_layer: LayerFactory | None = None, act_layer: LayerFactory | None = None) -> Branch3d:
    """A branch for ``rgb`` (3 input channels) or ``flow`` (2 input channels)."""
    if modality not in MODALITY_CHANNELS:
        raise ValueError(f"unknown branch modality {modality!r}; allowed: {', '.join(MODALITY_CHANNELS)}")
    return Branch3d(MODALITY_CHANNELS[modality], input_size, channels=channels, blocks=blocks,
                    num_features=num_features, norm_layer=norm_layer, act_layer=act_layer)
