"""Training checkpoints and run folders.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python values, so it loads
with ``torch.load(..., weights_only=True)`` (no pickled classes, no code execution)::

    {"format": "tstcnn-checkpoint", "version": 1, "config": config_to_dict(cfg), "classes": [...],
     "flow_scale": float, "prep": {...}, "epoch": int, "model": state_dict,
     "optimizer": ..., "scheduler": ..., "scaler": ..., "rng": ..., "best_accuracy": float, ...}

Files are written atomically (temporary file, then rename), so a run killed mid-write leaves the
previous file intact. Every way a file can be wrong (missing, truncated, not ours, another
architecture, other classes) ends in one-line ``ValueError`` / ``FileNotFoundError`` naming the file.
"""

from __future__ import annotations

import dataclasses
import errno
import pickle
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tstcnn.config import Config, ModelConfig, PrepConfig, config_from_dict
from tstcnn.io.atomic import atomic_path
from tstcnn.models import build_model_from_config
from tstcnn.taxonomy import Taxonomy

__all__ = ["CHECKPOINTS", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "LoadedRun", "save_checkpoint", "load_checkpoint",
           "check_compatible", "build_model_from_checkpoint", "checkpoint_path", "load_run"]

CHECKPOINTS = ("best", "last")  # the states a run folder keeps: best validation accuracy, latest epoch
CHECKPOINT_FORMAT = "tstcnn-checkpoint"
CHECKPOINT_VERSION = 1
_REQUIRED = ("config", "classes", "model", "epoch")
# ModelConfig fields that change the weights' shapes or meaning (drop_rate does not).
_ARCHITECTURE = ("modality", "block", "num_blocks", "num_classes", "input_size", "channels", "num_features")


def save_checkpoint(path: str | Path, **fields: Any) -> Path:
    """Write ``fields`` (tensors and plain values only) as a tstcnn checkpoint, atomically; returns the path.

    A full disk is an ``OSError`` that says so (torch reports it as an unexplained ``RuntimeError`` from its
    zip writer); the previous file at ``path`` is left as it was.
    """
    path = Path(path)
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **fields}
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except RuntimeError as exc:
        free = shutil.disk_usage(path.parent).free
        if free < (64 << 20):
            raise OSError(errno.ENOSPC, f"no space left on device to write {path} ({free >> 20} MiB free)") from None
        raise OSError(f"{path}: could not write the checkpoint ({_first_line(exc)})") from None
    return path


def _first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, cut at a word boundary with an ellipsis when too long."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[:limit].rsplit(" ", 1)[0] + " …"


def load_checkpoint(path: str | Path, *, model_config: ModelConfig | None = None,
                    classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` and check it is one of ours.

    Args:
        path: the ``.pt`` file.
        model_config: when given, the checkpoint's architecture must be this one.
        classes: when given, the checkpoint's class names must be these, in this order.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a truncated or unreadable file, a file that is not a tstcnn checkpoint, a newer
            format version, or an architecture / class list other than the expected one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before it refuses a file
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" not in str(exc).lower():
            raise ValueError(f"{path}: not a readable checkpoint, truncated or not a torch file "
                             f"(UnpicklingError: {_first_line(exc)})") from None
        raise ValueError(f"{path}: refused: the file holds Python objects that a tstcnn checkpoint never contains "
                         "(loading them could run code); it was not loaded") from None
    except Exception as exc:  # torch raises RuntimeError, EOFError… depending on the damage
        raise ValueError(f"{path}: not a readable checkpoint, truncated or not a torch file "
                         f"({type(exc).__name__}: {_first_line(exc)})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path}: not a tstcnn checkpoint (format {found!r}, expected {CHECKPOINT_FORMAT!r}; "
                         "a bare state dict or another project's file?)")
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {checkpoint.get('version')!r} is not supported "
                         f"(this tstcnn reads version {CHECKPOINT_VERSION})")
    missing = [key for key in _REQUIRED if key not in checkpoint]
    if missing:
        raise ValueError(f"{path}: incomplete tstcnn checkpoint, missing {', '.join(missing)}")
    check_compatible(checkpoint, path, model_config=model_config, classes=classes)
    return checkpoint


def _architecture(model: dict[str, Any] | ModelConfig) -> dict[str, Any]:
    values = dataclasses.asdict(model) if isinstance(model, ModelConfig) else model
    return {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in values.items() if k in _ARCHITECTURE}


def _describe(arch: dict[str, Any]) -> str:
    size = "x".join(map(str, arch.get("input_size", ())))
    return f"{arch.get('modality')}/{arch.get('block')}×{arch.get('num_blocks')} at {size}"


def check_compatible(checkpoint: dict[str, Any], path: str | Path, *, model_config: ModelConfig | None = None,
                     classes: Sequence[str] | None = None) -> None:
    """Raise a one-line ``ValueError`` when the checkpoint is another architecture or has other classes."""
    if model_config is not None:
        saved = _architecture(checkpoint["config"].get("model", {}))
        wanted = _architecture(model_config)
        differences = [f"{k} {saved.get(k)}≠{wanted[k]}" for k in _ARCHITECTURE if saved.get(k) != wanted[k]]
        if differences:
            raise ValueError(f"{path}: checkpoint holds another architecture ({_describe(saved)}, expected "
                             f"{_describe(wanted)}: {', '.join(differences)})")
    if classes is not None and list(checkpoint["classes"]) != list(classes):
        saved_classes, wanted_classes = list(checkpoint["classes"]), list(classes)
        if len(saved_classes) != len(wanted_classes):
            detail = f"{len(saved_classes)} classes, expected {len(wanted_classes)}"
        else:
            i = next(i for i, (a, b) in enumerate(zip(saved_classes, wanted_classes)) if a != b)
            detail = f"class {i} is {saved_classes[i]!r}, expected {wanted_classes[i]!r}"
        raise ValueError(f"{path}: checkpoint was trained on other classes ({detail})")


def build_model_from_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> nn.Module:
    """The model the checkpoint's config describes, with its weights (strict), on the CPU in eval mode."""
    cfg = config_from_dict(checkpoint["config"])
    model = build_model_from_config(cfg.model)
    try:
        model.load_state_dict(checkpoint["model"], strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:200]
        raise ValueError(f"{path}: weights do not match the architecture in its config ({detail})") from None
    return model.eval()


@dataclass
class LoadedRun:
    """A trained model ready for inference, with what is needed to feed it the same way as in training."""

    model: nn.Module
    config: Config
    classes: Taxonomy
    flow_scale: float
    prep: PrepConfig
    epoch: int
    path: Path
    checkpoint: dict[str, Any]
    precision: str = "fp32"  # how inference runs the model (tstcnn.infer.predict.load_predictor sets the fast path)
    channels_last: bool = False
    compiled: bool = False  # model is a compile_for_inference module (fixed batch size)


def checkpoint_path(run_dir: str | Path, which: str = "best") -> Path:
    """``RUN_DIR/checkpoints/{best,last}.pt``, or ``run_dir`` itself when it is a checkpoint file."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        return run_dir
    if which not in CHECKPOINTS:
        raise ValueError(f"unknown checkpoint {which!r}; allowed: {', '.join(CHECKPOINTS)}")
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder or checkpoint file")
    return run_dir / "checkpoints" / f"{which}.pt"


def load_run(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu") -> LoadedRun:
    """Load a run's ``best`` or ``last`` checkpoint (or a checkpoint file) as a model in eval mode on ``device``."""
    path = checkpoint_path(run_dir, which)
    checkpoint = load_checkpoint(path)
    config = config_from_dict(checkpoint["config"])
    model = build_model_from_checkpoint(checkpoint, path).to(device)
    prep = checkpoint.get("prep")
    return LoadedRun(model=model, config=config, classes=Taxonomy(tuple(checkpoint["classes"])),
                     flow_scale=float(checkpoint.get("flow_scale") or 1.0),
                     prep=config_from_dict({"prep": prep}).prep if isinstance(prep, dict) else config.prep,
                     epoch=int(checkpoint["epoch"]), path=path, checkpoint=checkpoint)
