"""Configuration as dataclasses, with named presets.

A :class:`Config` has four sections: ``model`` (the architecture), ``prep`` (how videos become a
prepared store), ``data`` (clip sampling and augmentation) and ``train`` (the optimiser and the
paper's re-scheduler). Presets live in :data:`PRESETS`; ``configs/<name>.yaml`` holds the same
fields and a test keeps the two equal. Precedence everywhere: preset or ``--config`` file, then
explicit overrides (``None`` means unset and is dropped, so defaults live in one place).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ModelConfig",
    "PrepConfig",
    "DataConfig",
    "TrainConfig",
    "Config",
    "PRESETS",
    "PRECISIONS",
    "load_config",
    "config_to_dict",
    "config_from_dict",
    "override",
    "parse_size",
]


@dataclass(frozen=True)
class ModelConfig:
    """The network. Paper size: Twin with three attention blocks on 100×120×120 clips."""

    modality: str = "twin"  # rgb | flow | twin | i3d-rgb | i3d-flow
    block: str = "attention"  # none | residual | attention
    num_blocks: int = 3
    num_classes: int = 21
    input_size: tuple[int, int, int] = (100, 120, 120)  # (T, H, W)
    channels: tuple[int, int, int] = (30, 60, 80)
    num_features: int = 500
    drop_rate: float = 0.0


@dataclass(frozen=True)
class PrepConfig:
    """Decoding, optical flow and region of interest, done once by ``tstcnn prepare``."""

    width: int = 320  # frames are resized to this width, aspect kept, before the flow
    flow: str = "deepflow"  # deepflow | tvl1 | farneback | dis
    roi_smoothing: float = 5.0  # standard deviation, in frames, of the temporal smoothing of the ROI centre
    flow_scale_sigmas: float = 3.0  # normalisation scale = mean + k·std of per-frame maximum flow (train split)


@dataclass(frozen=True)
class DataConfig:
    """Clip sampling and augmentation (paper section IV and the authors' code)."""

    rotation: float = 10.0  # degrees, uniform in ±rotation
    zoom: float = 0.1  # homothety, uniform in 1 ± zoom
    translation: float = 0.1  # fraction of the crop size, uniform in ±translation
    temporal_sigma_divisor: float = 6.0  # start ~ N(centre, (length − T) / divisor), kept inside the stroke
    negatives_per_class: float = 1.0  # cap on mined negatives, as a multiple of the mean stroke-class count
    num_workers: int = 2
    split_by: str = "layout"  # layout (splits as the dataset layout gives them) | video (re-split by video)
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)  # train, validation, test for split_by=video
    split_seed: int = 0  # seed of split_by=video, separate from the training seed so splits stay put


@dataclass(frozen=True)
class TrainConfig:
    """SGD with Nesterov momentum and the paper's learning-rate re-scheduler (section IV-C)."""

    epochs: int = 1000
    batch_size: int = 10
    lr: float = 0.01
    momentum: float = 0.5
    weight_decay: float = 0.005
    clip_grad_norm: float = 0.0  # clip the gradient norm to this before each step (0: off, as the paper)
    label_smoothing: float = 0.0  # of the training loss's targets (0: plain cross-entropy, as the paper)
    nesterov: bool = True
    scheduler: str = "paper"  # paper | cosine | step | constant
    recent_window: int = 25  # the re-scheduler compares the mean loss of the last `recent_window` epochs…
    previous_window: int = 35  # …with the mean of the `previous_window` epochs before them
    patience: int = 50  # epochs between two learning-rate changes
    lr_factor: float = 0.1
    lr_min: float = 1e-5  # below this the learning rate goes back to `lr`
    accuracy_drop: float = 0.7  # a validation accuracy below this × best triggers a change at once
    step_size: int = 100  # for scheduler=step
    precision: str = "fp32"  # auto | fp32 | bf16 | fp16 (autocast; auto = bf16 where fast; fp32 is the reference)
    channels_last: bool = False  # channels-last 3D memory format for activations
    compile: bool = False  # torch.compile the model
    checkpoint_attention: bool = False  # recompute attention blocks in the backward pass to save memory
    step_in_backward: bool = False  # step the large FC weights in the backward pass, freeing their gradients at once
    seed: int = 0


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    prep: PrepConfig = field(default_factory=PrepConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # TrainConfig.precision; resolved by engine.performance

_SECTIONS = {"model": ModelConfig, "prep": PrepConfig, "data": DataConfig, "train": TrainConfig}

PRESETS: dict[str, Config] = {
    # Speed (tstcnn bench, paper size, batch 2, 2 CPU threads): bf16 autocast ("auto" picks it on GPUs and AMX
    # CPUs, fp32 elsewhere) with channels-last; checkpointing the attention blocks and stepping the FC weights in
    # the backward pass keep the step under 4 GB (README, Speed).
    "paper": Config(train=TrainConfig(batch_size=5, precision="auto", channels_last=True, checkpoint_attention=True,
                                      step_in_backward=True)),
    "cpu-small": Config(
        # The paper's field of view (a 120-pixel crop of 320-pixel frames) scaled down: 48 of 128.
        model=ModelConfig(input_size=(16, 48, 48), channels=(16, 32, 48), num_features=128),
        prep=PrepConfig(width=128, flow="dis", roi_smoothing=2.0),
        data=DataConfig(num_workers=2),
        # Clipping guards the first steps of the bilinear fusion, whose gradients grow with both branches' outputs.
        # Channels-last is faster here in fp32 too (training step 1.27x, bf16 1.32x on this 2-core machine).
        # Small convolutions are overhead-bound: a clip costs ~13% less in batches of 32 than of 16 (~30% less
        # than of 8). On the demo's data 32 from 0.02 beat 16 from 0.01 at equal time (README, The demo).
        train=TrainConfig(epochs=12, batch_size=32, lr=0.02, momentum=0.9, weight_decay=5e-4, clip_grad_norm=5.0,
                          scheduler="cosine", precision="auto", channels_last=True),
    ),
}


def _coerce(cls: type, values: dict[str, Any]) -> Any:
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {', '.join(unknown)}; allowed: {', '.join(names)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any], base: Config | None = None) -> Config:
    """Build a config from nested plain data (YAML, a checkpoint), overlaid on ``base`` (default: dataclass defaults)."""
    base = base or Config()
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ValueError(f"unknown config section(s) {', '.join(unknown)}; allowed: {', '.join(_SECTIONS)}")
    sections = {}
    for name, cls in _SECTIONS.items():
        merged = {**dataclasses.asdict(getattr(base, name)), **(data.get(name) or {})}
        sections[name] = _coerce(cls, merged)
    return Config(**sections)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) for YAML files and ``weights_only`` checkpoints."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(cfg))


def load_config(name_or_path: str | Path = "paper") -> Config:
    """A preset by name (``paper``, ``cpu-small``) or a YAML file; a file may hold only the fields it changes."""
    key = str(name_or_path)
    if key in PRESETS:
        return PRESETS[key]
    path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(f"no preset or config file {key!r}; presets: {', '.join(sorted(PRESETS))}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must be a mapping of sections")
    return config_from_dict(data)


def override(cfg: Config, section: str, **values: Any) -> Config:
    """Replace fields of one section; ``None`` values are unset and dropped."""
    if section not in _SECTIONS:
        raise ValueError(f"unknown config section {section!r}; allowed: {', '.join(_SECTIONS)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if v is not None}
    if not values:
        return cfg
    current = getattr(cfg, section)
    allowed = {f.name for f in fields(current)}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValueError(f"unknown {section} field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    return dataclasses.replace(cfg, **{section: dataclasses.replace(current, **values)})


def parse_size(text: str) -> tuple[int, ...]:
    """``100x120x120`` or ``640x360`` to a tuple of positive ints (an ``argparse`` type)."""
    try:
        values = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 100x120x120, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return values
