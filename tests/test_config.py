import dataclasses
import re
from pathlib import Path
from typing import get_args

import pytest
import yaml

from tstcnn.config import (
    PRECISIONS,
    PRESETS,
    SECTIONS,
    BlockKind,
    Config,
    FlowMethod,
    Modality,
    ModelConfig,
    SchedulerName,
    SplitMode,
    TrainConfig,
    check_config,
    config_from_dict,
    config_to_dict,
    field_specs,
    load_config,
    override,
)
from tstcnn.data.splits import SPLIT_MODES
from tstcnn.engine.scheduler import SCHEDULERS
from tstcnn.models import BLOCK_KINDS, MODALITIES
from tstcnn.prep.flow import FLOW_METHODS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_yaml_presets_equal_code_presets(name):
    assert load_config(CONFIGS / f"{name}.yaml") == PRESETS[name]
    assert yaml.safe_load((CONFIGS / f"{name}.yaml").read_text()) == config_to_dict(PRESETS[name])


def test_paper_preset_is_the_paper():
    cfg = load_config("paper")
    assert cfg.model.input_size == (100, 120, 120) and cfg.model.channels == (30, 60, 80)
    assert cfg.model.num_features == 500 and cfg.model.modality == "twin" and cfg.model.block == "attention"
    assert (cfg.train.lr, cfg.train.momentum, cfg.train.weight_decay, cfg.train.nesterov) == (0.01, 0.5, 0.005, True)
    assert (cfg.train.recent_window, cfg.train.previous_window, cfg.train.patience) == (25, 35, 50)
    assert (cfg.train.lr_min, cfg.train.accuracy_drop) == (1e-5, 0.7)
    assert cfg.prep.width == 320


def test_partial_yaml_overlays_defaults_and_round_trips(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model:\n  modality: rgb\n  input_size: [16, 32, 32]\ntrain:\n  lr: 0.1\n")
    cfg = load_config(path)
    assert cfg.model.modality == "rgb" and cfg.model.input_size == (16, 32, 32) and cfg.train.lr == 0.1
    assert cfg.train.momentum == Config().train.momentum
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_override_drops_none_and_rejects_unknown():
    cfg = PRESETS["paper"]
    assert override(cfg, "train", lr=None) is cfg
    assert override(cfg, "train", lr=0.5, epochs=None).train.lr == 0.5
    with pytest.raises(ValueError, match="unknown train field"):
        override(cfg, "train", learning_rate=0.1)
    with pytest.raises(ValueError, match="unknown config section"):
        override(cfg, "optim", lr=0.1)


def test_bad_config_sources(tmp_path):
    with pytest.raises(ValueError, match="presets: cpu-small, paper"):
        load_config("nope")
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  modallity: rgb\n")
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        load_config(path)


@pytest.mark.parametrize("section, values, message", [
    ("model", {"modality": "depth"}, "unknown model.modality 'depth'; allowed: rgb, flow, twin, i3d-rgb, i3d-flow"),
    ("model", {"input_size": (8, 16)}, "model.input_size needs 3 values"),
    ("model", {"channels": (4, 0, 4)}, "model.channels must be >= 1, got 0"),
    ("model", {"num_blocks": 4}, "model.num_blocks must be >= 0 and <= 3, got 4"),
    ("prep", {"flow": "lucas-kanade"}, "allowed: deepflow, tvl1, farneback, dis"),
    ("data", {"split_by": "random"}, "unknown data.split_by"),
    ("data", {"zoom": 1.0}, "data.zoom must be >= 0 and < 1"),
    ("train", {"lr": float("nan")}, "train.lr must be a finite number"),
    ("train", {"lr": 0.0}, "train.lr must be > 0"),
    ("train", {"epochs": 2.5}, "train.epochs must be an integer"),
    ("train", {"batch_size": True}, "train.batch_size must be an integer"),
    ("train", {"nesterov": "yes"}, "train.nesterov must be true or false"),
    ("train", {"precision": "fp8"}, "allowed: auto, fp32, bf16, fp16"),
])
def test_every_field_is_checked_against_its_type_choices_and_bounds(section, values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_config(override(PRESETS["paper"], section, **values))
    with pytest.raises(ValueError, match=re.escape(message)):
        config_from_dict({section: values})


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_pass_the_checks(name):
    assert check_config(PRESETS[name]) is PRESETS[name]


def test_bad_value_in_a_config_file_names_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  scheduler: linear\n")
    with pytest.raises(ValueError, match="unknown train.scheduler 'linear'; allowed: paper, cosine, step, constant"):
        load_config(path)


def test_every_field_has_help_and_its_allowed_values_are_defined_once():
    for section in SECTIONS:
        for spec in field_specs(section):
            assert spec.help and not spec.help.endswith("."), spec.qualname
            assert spec.type in (bool, int, float, str, tuple), spec.qualname
    assert [s.name for s in field_specs("model")] == [f.name for f in dataclasses.fields(ModelConfig)]
    assert field_specs(TrainConfig) == field_specs("train")
    choices = {s.qualname: s.choices for section in SECTIONS for s in field_specs(section) if s.choices}
    assert choices == {"model.modality": get_args(Modality), "model.block": get_args(BlockKind),
                       "prep.flow": get_args(FlowMethod), "data.split_by": get_args(SplitMode),
                       "train.scheduler": get_args(SchedulerName), "train.precision": PRECISIONS}


def test_the_library_allows_the_values_the_config_allows():
    """The library's own tuples of names (until they read the config's) hold the same values."""
    assert get_args(Modality) == MODALITIES and get_args(BlockKind) == BLOCK_KINDS
    assert get_args(FlowMethod) == FLOW_METHODS and get_args(SplitMode) == SPLIT_MODES
    assert get_args(SchedulerName) == SCHEDULERS


@pytest.mark.parametrize("text, message", [
    ("train:\n  lr: [oops\n", r"not a valid YAML config at line 3"),
    ('train: !!python/object/apply:os.system ["echo never"]\n', r"could not determine a constructor for the tag"),
    ("train:\n  lr: fast\n", r"train.lr must be a number"),
    ("- a list\n", r"must be a mapping of sections"),
])
def test_bad_yaml_configs_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as caught:
        load_config(path)
    assert "\n" not in str(caught.value)
