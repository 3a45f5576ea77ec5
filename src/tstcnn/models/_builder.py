"""Model builder, registry and parameter counts.

:func:`build_model` is the one builder; named variants in the registry only fill in its arguments
(``tstcnn_twin_attention``, ``i3d_rgb``, the tiny ``test_*`` variants for CPU tests…).
:data:`PAPER_TABLE_I` holds the paper's Table I parameter counts (fully connected and bilinear
layers excluded), which :func:`count_parameters` reproduces exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from tstcnn.config import ModelConfig
from tstcnn.models.blocks import BLOCK_KINDS
from tstcnn.models.i3d import I3D
from tstcnn.models.tstcnn import TSTCNN, branch_output_size

__all__ = ["MODALITIES", "BLOCK_KINDS", "PAPER_TABLE_I", "build_model", "build_model_from_config",
           "register_model", "list_models", "create_model", "count_parameters"]

MODALITIES = ("rgb", "flow", "twin", "i3d-rgb", "i3d-flow")
_BRANCHES = {"rgb": ("rgb",), "flow": ("flow",), "twin": ("rgb", "flow")}

# Paper Table I: (modality, with 3 attention blocks) → parameters without FC and bilinear layers.
PAPER_TABLE_I: dict[tuple[str, bool], int] = {
    ("rgb", False): 180_800,
    ("rgb", True): 498_420,
    ("flow", False): 179_990,
    ("flow", True): 497_610,
    ("twin", False): 360_790,
    ("twin", True): 996_030,
}


def _check_arguments(modality: str, block: str, num_blocks: int, num_classes: int,
                     input_size: Sequence[int], channels: Sequence[int]) -> None:
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; allowed: {', '.join(MODALITIES)}")
    if block not in BLOCK_KINDS:
        raise ValueError(f"unknown block {block!r}; allowed: {', '.join(BLOCK_KINDS)}")
    if not 0 <= num_blocks <= len(channels):
        raise ValueError(f"num_blocks must be between 0 and {len(channels)}, got {num_blocks}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    if len(input_size) != 3:
        raise ValueError(f"input_size must be (T, H, W), got {tuple(input_size)}")
    minimum = 2 ** len(channels)
    if not modality.startswith("i3d") and min(branch_output_size(input_size, len(channels))) < 1:
        raise ValueError(f"input_size {tuple(input_size)} is too small: {len(channels)} poolings by 2 need at least "
                         f"{minimum} frames and {minimum}×{minimum} pixels")
    if min(input_size) < 1:
        raise ValueError(f"input_size must be positive, got {tuple(input_size)}")


def build_model(modality: str, block: str = "attention", *, num_blocks: int = 3, num_classes: int = 21,
                input_size: Sequence[int] = (100, 120, 120), channels: Sequence[int] = (30, 60, 80),
                num_features: int = 500, drop_rate: float = 0.0) -> TSTCNN | I3D:
    """Build a TSTCNN (``rgb``, ``flow``, ``twin``) or an I3D stream (``i3d-rgb``, ``i3d-flow``).

    Args:
        modality: ``rgb | flow | twin | i3d-rgb | i3d-flow``.
        block: block after each stage's pooling, ``none | residual | attention`` (TSTCNN only).
        num_blocks: how many stages get a block, starting from the first (0–3), as the paper's ablation.
        num_classes: output classes.
        input_size: ``(T, H, W)`` of the clips; paper: (100, 120, 120).
        channels: filters of the three stages; paper: (30, 60, 80).
        num_features: width of each branch's fully connected layer; paper: 500.
        drop_rate: dropout before the classifier (I3D: before the logits).

    Raises:
        ValueError: an argument outside the allowed values, before any layer is built.
    """
    _check_arguments(modality, block, num_blocks, num_classes, input_size, channels)
    if modality.startswith("i3d-"):
        return I3D(modality.removeprefix("i3d-"), num_classes=num_classes, drop_rate=drop_rate)
    blocks = tuple(block if i < num_blocks else "none" for i in range(len(channels)))
    return TSTCNN(_BRANCHES[modality], num_classes=num_classes, input_size=input_size, channels=channels,
                  blocks=blocks, num_features=num_features, drop_rate=drop_rate)


def build_model_from_config(cfg: ModelConfig) -> TSTCNN | I3D:
    """:func:`build_model` with the fields of a :class:`~tstcnn.config.ModelConfig`."""
    return build_model(cfg.modality, cfg.block, num_blocks=cfg.num_blocks, num_classes=cfg.num_classes,
                       input_size=cfg.input_size, channels=cfg.channels, num_features=cfg.num_features,
                       drop_rate=cfg.drop_rate)


_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a named variant; a name registered twice is an error."""

    def add(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return add


def list_models(prefix: str = "") -> list[str]:
    """Registered variant names, sorted, optionally filtered by prefix (``test_`` gives the tiny ones)."""
    return sorted(n for n in _REGISTRY if n.startswith(prefix))


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered variant; ``overrides`` (``None`` values dropped) replace its arguments."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    return _REGISTRY[name](**{k: v for k, v in overrides.items() if v is not None})


TINY_INPUT = (8, 32, 32)


def _register_variants() -> None:
    def variant(name: str, **defaults: Any) -> None:
        register_model(name)(lambda **kw: build_model(**{**defaults, **kw}))

    for modality in ("rgb", "flow", "twin"):
        for block in BLOCK_KINDS:
            variant(f"tstcnn_{modality}_{block}", modality=modality, block=block)
            variant(f"test_tstcnn_{modality}_{block}", modality=modality, block=block, input_size=TINY_INPUT,
                    channels=(4, 8, 8), num_features=16)
    for stream in ("rgb", "flow"):
        variant(f"i3d_{stream}", modality=f"i3d-{stream}")


_register_variants()


def count_parameters(model: nn.Module, exclude_fc: bool = True) -> int:
    """Number of parameters; ``exclude_fc`` leaves out fully connected, bilinear and classifier layers (Table I)."""
    excluded: set[int] = set()
    if exclude_fc:
        fc_modules = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Bilinear))]
        get_classifier = getattr(model, "get_classifier", None)
        if get_classifier is not None:
            fc_modules.append(get_classifier())
        excluded = {id(p) for m in fc_modules for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in excluded)
