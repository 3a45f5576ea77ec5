from pathlib import Path

import pytest
import yaml

from tstcnn.config import PRESETS, Config, config_from_dict, config_to_dict, load_config, override

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
