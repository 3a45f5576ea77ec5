"""Configuration as dataclasses, with named presets.

A :class:`Config` has four sections: ``model`` (the architecture), ``prep`` (how videos become a
prepared store), ``data`` (clip sampling and augmentation) and ``train`` (the optimiser and the
paper's re-scheduler). Presets live in :data:`PRESETS`; ``configs/<name>.yaml`` holds the same
fields and a test keeps the two equal. Precedence everywhere: preset or ``--config`` file, then
explicit overrides (``None`` means unset and is dropped, so defaults live in one place).

Each field carries its documentation and its allowed values: a ``Literal`` type lists the choices,
``metadata`` the one-line help and the numeric bounds (:func:`setting`). :func:`check_config` checks
every value against them (config files and checkpoints are checked on loading), and the command line
builds one flag per field from the same description (:func:`field_specs`), so a new field is added in
one place.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import numbers
import types
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

__all__ = [
    "ModelConfig",
    "PrepConfig",
    "DataConfig",
    "TrainConfig",
    "Config",
    "PRESETS",
    "PRECISIONS",
    "SECTIONS",
    "Modality",
    "BlockKind",
    "FlowMethod",
    "SplitMode",
    "SchedulerName",
    "Precision",
    "FrameStride",
    "Bounds",
    "FieldSpec",
    "setting",
    "field_specs",
    "check_config",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "override",
    "parse_size",
]

Modality = Literal["rgb", "flow", "twin", "i3d-rgb", "i3d-flow"]
BlockKind = Literal["none", "residual", "attention"]
FlowMethod = Literal["deepflow", "tvl1", "farneback", "dis", "liu"]
SplitMode = Literal["layout", "video"]
SchedulerName = Literal["paper", "cosine", "step", "constant"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
FrameStride = int | Literal["auto"]  # DataConfig.frame_stride; auto resolved per store by data.sampling

PRECISIONS: tuple[str, ...] = get_args(Precision)  # TrainConfig.precision; resolved by runtime.performance


@dataclass(frozen=True)
class Bounds:
    """Limits of a number, inclusive (``ge``, ``le``) or exclusive (``gt``, ``lt``); NaN and infinities are refused."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def check(self, value: float) -> None:
        """Raise ``ValueError`` saying what is allowed when ``value`` is not a finite number within the bounds."""
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value!r}")
        if ((self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt)
                or (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt)):
            raise ValueError(f"must be {self}, got {value!r}")

    def __str__(self) -> str:
        parts = [f"{sign} {limit:g}" for sign, limit in ((">=", self.ge), (">", self.gt), ("<=", self.le),
                                                          ("<", self.lt)) if limit is not None]
        return " and ".join(parts) or "finite"


def setting(default: Any, help: str, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None, metavar: str | None = None, derived: str | None = None) -> Any:
    """A config field with its one-line ``help`` and numeric bounds (of each item, for tuples).

    Args:
        metavar: how the command line names the value (default: from the type).
        derived: why the field has no command-line flag (another step sets it).
    """
    return field(default=default, metadata={"help": help, "bounds": Bounds(ge, gt, le, lt), "metavar": metavar,
                                            "derived": derived})


@dataclass(frozen=True)
class FieldSpec:
    """What validation and the command line know of one config field: its type, allowed values and help."""

    section: str
    name: str
    type: type  # bool, int, float, str or tuple
    item_type: type | None  # the items' type of a tuple
    length: int | None  # the number of items of a tuple
    choices: tuple[str, ...] | None
    bounds: Bounds
    help: str
    metavar: str | None
    derived: str | None
    words: tuple[str, ...] = ()  # named values a number field accepts too (``int | Literal["auto"]``)

    @property
    def qualname(self) -> str:
        return f"{self.section}.{self.name}"

    def check(self, value: Any) -> None:
        """Raise ``ValueError`` naming the field and what it allows when ``value`` does not fit."""
        if self.type is tuple:
            if not isinstance(value, (tuple, list)) or len(value) != self.length:
                raise ValueError(f"{self.qualname} needs {self.length} values, got {value!r}")
            for item in value:
                self._check_one(item, self.item_type)
        else:
            self._check_one(value, self.type)

    def _check_one(self, value: Any, kind: type | None) -> None:
        if self.words and isinstance(value, str) and value in self.words:
            return
        if self.choices is not None:
            if value not in self.choices:
                raise ValueError(f"unknown {self.qualname} {value!r}; allowed: {', '.join(self.choices)}")
        elif kind is bool or kind is str:
            if not isinstance(value, kind):
                raise ValueError(f"{self.qualname} must be {'true or false' if kind is bool else 'a string'}, "
                                 f"got {value!r}")
        else:
            wanted = numbers.Integral if kind is int else numbers.Real
            if isinstance(value, bool) or not isinstance(value, wanted):
                words = "".join(f" or {word}" for word in self.words)
                raise ValueError(f"{self.qualname} must be {'an integer' if kind is int else 'a number'}{words}, "
                                 f"got {value!r}")
            try:
                self.bounds.check(value)
            except ValueError as exc:
                raise ValueError(f"{self.qualname} {exc}") from None


@dataclass(frozen=True)
class ModelConfig:
    """The network. Paper size: Twin with three attention blocks on 100×120×120 clips."""

    modality: Modality = setting(
        "twin", "input streams: one branch (rgb, flow), both (twin), or an I3D stream")
    block: BlockKind = setting(
        "attention", "block after each stage; attention is the paper's 3D attention")
    num_blocks: int = setting(3, "stages with a block, from the first", ge=0, le=3)
    num_classes: int = setting(21, "output classes", ge=1, derived="train sets it to the prepared store's classes")
    input_size: tuple[int, int, int] = setting((100, 120, 120), "clip size in frames and pixels", ge=1,
                                               metavar="TxHxW")
    channels: tuple[int, int, int] = setting((30, 60, 80), "filters of the three stages", ge=1, metavar="AxBxC")
    num_features: int = setting(500, "width of each branch's fully connected layer", ge=1)
    drop_rate: float = setting(0.0, "dropout before the classifier", ge=0, lt=1)


@dataclass(frozen=True)
class PrepConfig:
    """Decoding, optical flow and region of interest, done once by ``tstcnn prepare``."""

    width: int = setting(320, "frame width after resizing (aspect kept), before the flow", ge=1)
    flow: FlowMethod = setting(
        "liu", "optical flow back-end; liu is the paper's (C. Liu's variational flow), deepflow the authors' code's, "
               "dis the fast one")
    roi_smoothing: float = setting(5.0, "temporal smoothing of the ROI centre: standard deviation in frames", ge=0)
    flow_scale_sigmas: float = setting(3.0, "flow normalisation scale: mean + k std of the per-frame maximum flow "
                                            "over the train split; this is k", ge=0)


@dataclass(frozen=True)
class DataConfig:
    """Clip sampling and augmentation (paper section IV and the authors' code)."""

    rotation: float = setting(10.0, "augmentation: rotation in degrees, uniform in +-rotation", ge=0)
    zoom: float = setting(0.1, "augmentation: homothety, uniform in 1 +- zoom", ge=0, lt=1)
    translation: float = setting(0.1, "augmentation: shift as a fraction of the crop size, uniform in +-translation",
                                 ge=0)
    temporal_sigma_divisor: float = setting(6.0, "clip start ~ N(centre, (length - T) / divisor), kept inside the "
                                                 "stroke", gt=0)
    negatives_per_class: float = setting(1.0, "cap on mined negatives, as a multiple of the mean stroke-class count",
                                         ge=0)
    context_windows: int = setting(0, "detection training: per annotated long video, this many extra clips of real "
                                      "context centred on random frames, labelled by their centre frame (a stroke's "
                                      "class, or Negative); 0 is off", ge=0)
    num_workers: int = setting(2, "data-loader worker processes", ge=0)
    split_by: SplitMode = setting(
        "layout", "splits as the dataset layout gives them, or re-split by video")
    split_fractions: tuple[float, float, float] = setting((0.7, 0.15, 0.15), "train, validation and test shares "
                                                          "for split_by=video", ge=0, le=1, metavar="TRAINxVALxTEST")
    split_seed: int = setting(0, "seed of split_by=video, apart from the training seed so that splits stay put", ge=0)
    frame_stride: FrameStride = setting(1, "a clip takes every k-th source frame, so T frames span (T-1)k+1; auto: "
                                           "about 0.83 s per clip from the videos' frame rate", ge=1,
                                        metavar="K|auto")


@dataclass(frozen=True)
class TrainConfig:
    """SGD with Nesterov momentum and the paper's learning-rate re-scheduler (section IV-C)."""

    epochs: int = setting(1000, "training epochs", ge=1)
    batch_size: int = setting(10, "clips per step and per process", ge=1)
    lr: float = setting(0.01, "initial learning rate", gt=0)
    momentum: float = setting(0.5, "SGD momentum", ge=0)
    weight_decay: float = setting(0.005, "SGD weight decay", ge=0)
    clip_grad_norm: float = setting(0.0, "clip the gradient norm to this before each step; 0 is off, as in the paper",
                                    ge=0)
    label_smoothing: float = setting(0.0, "label smoothing of the training loss; 0 is plain cross-entropy, as in "
                                          "the paper", ge=0, lt=1)
    nesterov: bool = setting(True, "Nesterov momentum")
    scheduler: SchedulerName = setting(
        "paper", "learning-rate schedule; paper: the loss-plateau re-scheduler of section IV-C")
    recent_window: int = setting(25, "re-scheduler: epochs of the recent mean loss, compared with the mean of the "
                                     "previous_window epochs before them", ge=1)
    previous_window: int = setting(35, "re-scheduler: epochs of the earlier mean loss, before the recent_window "
                                       "last ones", ge=1)
    patience: int = setting(50, "re-scheduler: epochs between two learning-rate changes", ge=0)
    lr_factor: float = setting(0.1, "re-scheduler and step: factor of a learning-rate change", gt=0)
    lr_min: float = setting(1e-5, "re-scheduler: below this the learning rate goes back to lr", ge=0)
    accuracy_drop: float = setting(0.7, "re-scheduler: a validation accuracy below this x best changes the rate at "
                                        "once", ge=0, le=1)
    step_size: int = setting(100, "scheduler step: epochs between two changes", ge=1)
    precision: Precision = setting(
        "fp32", "autocast precision; auto is bf16 where the CPU or GPU has fast bf16, else fp32, the reference")
    channels_last: bool = setting(False, "channels-last 3D memory format for activations")
    compile: bool = setting(False, "torch.compile the model")
    checkpoint_attention: bool = setting(False, "recompute the attention blocks in the backward pass, for less memory")
    step_in_backward: bool = setting(False, "step the large FC weights during the backward pass, freeing their "
                                            "gradients at once, for less memory; not with clip_grad_norm, fp16 or "
                                            "several processes")
    seed: int = setting(0, "seed of initialisation, shuffling and augmentation", ge=0)
    init_from: str = setting("", "start a new run from the weights of a trained run folder (its best checkpoint) or a "
                                 "checkpoint file, to fine-tune; the classifier starts afresh when the classes "
                                 "differ", metavar="RUN_DIR|CHECKPOINT")


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    prep: PrepConfig = field(default_factory=PrepConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


SECTIONS: dict[str, type] = {"model": ModelConfig, "prep": PrepConfig, "data": DataConfig, "train": TrainConfig}


@functools.cache
def field_specs(section: str | type) -> tuple[FieldSpec, ...]:
    """The fields of a config section (by name, e.g. ``"train"``, or class), in declaration order."""
    if isinstance(section, str):
        if section not in SECTIONS:
            raise ValueError(f"unknown config section {section!r}; allowed: {', '.join(SECTIONS)}")
        name, cls = section, SECTIONS[section]
    else:
        name, cls = next(k for k, v in SECTIONS.items() if v is section), section
    hints = get_type_hints(cls)
    specs = []
    for f in fields(cls):
        hint, choices, item_type, length, words = hints[f.name], None, None, None, ()
        if get_origin(hint) in (Union, types.UnionType):  # a number or named values: int | Literal["auto"]
            literals = [a for a in get_args(hint) if get_origin(a) is Literal]
            words = tuple(w for a in literals for w in get_args(a))
            hint = next(a for a in get_args(hint) if a not in literals)
        if get_origin(hint) is Literal:
            kind, choices = str, get_args(hint)
        elif get_origin(hint) is tuple:
            kind, item_type, length = tuple, get_args(hint)[0], len(get_args(hint))
        else:
            kind = hint
        specs.append(FieldSpec(name, f.name, kind, item_type, length, choices, f.metadata["bounds"],
                               f.metadata["help"], f.metadata["metavar"], f.metadata["derived"], words))
    return tuple(specs)


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
# The study's grid on a CPU: cpu-small's models on clips that span whole strokes at any frame rate (16 frames
# every 6th at 120 fps cover the paper's 0.83 s), trained long enough for the cosine schedule to flatten the curves.
PRESETS["study-cpu"] = dataclasses.replace(
    PRESETS["cpu-small"], data=dataclasses.replace(PRESETS["cpu-small"].data, frame_stride="auto"),
    train=dataclasses.replace(PRESETS["cpu-small"].train, epochs=30))


def check_config(cfg: Config) -> Config:
    """Check every field of every section against its type, choices and bounds; return ``cfg``.

    Raises ``ValueError`` naming the first field that does not fit and what it allows.
    """
    for name in SECTIONS:
        section = getattr(cfg, name)
        for spec in field_specs(name):
            spec.check(getattr(section, spec.name))
    return cfg


def _coerce(cls: type, values: dict[str, Any]) -> Any:
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {', '.join(unknown)}; allowed: {', '.join(names)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any], base: Config | None = None) -> Config:
    """Build a config from nested plain data (YAML, a checkpoint), overlaid on ``base`` (default: dataclass defaults),
    and check it (:func:`check_config`)."""
    base = base or Config()
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown config section(s) {', '.join(unknown)}; allowed: {', '.join(SECTIONS)}")
    sections = {}
    for name, cls in SECTIONS.items():
        merged = {**dataclasses.asdict(getattr(base, name)), **(data.get(name) or {})}
        sections[name] = _coerce(cls, merged)
    return check_config(Config(**sections))


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
    """A preset by name (a key of :data:`PRESETS`) or a YAML file; a file may hold only the fields it changes."""
    key = str(name_or_path)
    if key in PRESETS:
        return PRESETS[key]
    path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(f"no preset or config file {key!r}; presets: {', '.join(sorted(PRESETS))}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:  # syntax errors and tags such as !!python/... that safe_load refuses
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ValueError(f"{path}: not a valid YAML config{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file (a YAML config is UTF-8 text)") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must be a mapping of sections")
    return config_from_dict(data)


def override(cfg: Config, section: str, **values: Any) -> Config:
    """Replace fields of one section; ``None`` values are unset and dropped."""
    if section not in SECTIONS:
        raise ValueError(f"unknown config section {section!r}; allowed: {', '.join(SECTIONS)}")
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
