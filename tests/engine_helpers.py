"""Tiny in-memory clip datasets with a learnable signal, shaped like ``tstcnn.data.StrokeClips`` items."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
import yaml
from torch.utils.data import Dataset

from tstcnn.config import PRESETS, Config, ModelConfig, PrepConfig, config_to_dict, override
from tstcnn.engine.trainer import TrainData
from tstcnn.models import build_model_from_config
from tstcnn.runtime.checkpoint import save_checkpoint
from tstcnn.taxonomy import Taxonomy

TINY_SIZE = (8, 16, 16)
CLASSES = Taxonomy(("Serve Forehand Topspin", "Offensive Backhand Hit", "Defensive Forehand Push", "Negative"))



class SignalClips(Dataset):
    """``(inputs, label)`` items: class ``k`` lights quadrant ``k`` of every frame, under uniform noise.

    With ``jitter`` each read adds fresh noise from torch's global generator, as augmentation would, so
    a resumed run only matches when the generator states are restored.
    """

    def __init__(self, n: int, modality: str = "rgb", size: tuple[int, int, int] = TINY_SIZE,
                 num_classes: int = len(CLASSES), seed: int = 0, jitter: float = 0.0) -> None:
        generator = torch.Generator().manual_seed(seed)
        t, h, w = size
        self.labels = torch.arange(n) % num_classes
        self.inputs: dict[str, torch.Tensor] = {}
        for key, channels in (("rgb", 3), ("flow", 2)):
            if modality in (key, "twin", f"i3d-{key}"):
                clips = torch.rand(n, channels, t, h, w, generator=generator) * 0.5
                for i, label in enumerate(self.labels.tolist()):
                    row, column = divmod(label % 4, 2)
                    clips[i, :, :, row * h // 2:(row + 1) * h // 2, column * w // 2:(column + 1) * w // 2] += 0.5
                self.inputs[key] = clips if key == "rgb" else clips * 2 - 1
        self.jitter = jitter

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[dict[str, torch.Tensor], int]:
        inputs = {k: v[index] for k, v in self.inputs.items()}
        if self.jitter:
            inputs = {k: v + self.jitter * torch.randn(v.shape) for k, v in inputs.items()}
        return inputs, int(self.labels[index])


def tiny_config(modality: str = "rgb", block: str = "none", **train: object) -> Config:
    cfg = override(PRESETS["cpu-small"], "model", modality=modality, block=block, num_classes=len(CLASSES),
                   input_size=TINY_SIZE, channels=(4, 4, 4), num_features=8)
    cfg = override(cfg, "data", num_workers=0)
    # The fp32 reference path: the same figures on every CPU, whatever bf16 "auto" would pick there; the
    # optimiser's settings pinned, so that the tests do not follow the preset's.
    defaults = {"epochs": 3, "batch_size": 4, "lr": 0.01, "scheduler": "constant", "clip_grad_norm": 0.0,
                "precision": "fp32", "channels_last": False}
    return override(cfg, "train", **{**defaults, **train})


def tiny_data(modality: str = "rgb", n_train: int = 16, n_val: int = 8, jitter: float = 0.0) -> TrainData:
    return TrainData(train=SignalClips(n_train, modality, seed=1, jitter=jitter),
                     validation=SignalClips(n_val, modality, seed=2), classes=CLASSES, flow_scale=2.0,
                     prep={"width": 160, "flow": "dis", "roi_smoothing": 2.0, "flow_scale_sigmas": 3.0})


def write_untrained_run(root: Path, classes: Sequence[str], modality: str = "twin", logit_scale: float = 1e-3,
                        input_size: tuple[int, int, int] = (8, 16, 16)) -> Path:
    """A run folder as training writes it, with a tiny untrained network; the classifier is scaled by
    ``logit_scale`` (small: logits are O(1), like a trained model's)."""
    cfg = Config(model=ModelConfig(modality=modality, input_size=input_size, channels=(4, 4, 4), num_features=8,
                                   num_classes=len(classes)),
                 prep=PrepConfig(width=32, flow="dis", roi_smoothing=1.0))
    torch.manual_seed(0)
    model = build_model_from_config(cfg.model)
    with torch.no_grad():
        for parameter in model.classifier.parameters():
            parameter.mul_(logit_scale)
    data = config_to_dict(cfg)
    save_checkpoint(root / "checkpoints" / "best.pt", config=data, classes=list(classes), flow_scale=2.0,
                    prep=data["prep"], epoch=1, model=model.state_dict())
    (root / "config.yaml").write_text(yaml.safe_dump(data))
    (root / "classes.json").write_text(json.dumps(list(classes)))
    (root / "store.json").write_text(json.dumps({"store": "none", "flow_scale": 2.0, "prep": data["prep"]}))
    return root
