"""A few Twin training steps on a CUDA device: fp16 with the gradient scaler, bf16, channels-last, and
DistributedDataParallel in a process group of one. Skipped without CUDA; run with ``pytest -m gpu``."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from tstcnn.config import Config
from tstcnn.engine.distributed import DistributedContext
from tstcnn.engine.trainer import fit, read_metrics, run_epoch
from tstcnn.models import build_model_from_config
from tstcnn.runtime.checkpoint import load_checkpoint
from tstcnn.runtime.performance import apply_performance_options

from engine_helpers import tiny_config, tiny_data

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

DEVICE = torch.device("cuda", 0)
# Three steps of four clips: fp16 may skip a first step whose scaled gradients overflow.
STEPS, BATCH = 3, 4


def _twin_config(**train: object) -> Config:
    return tiny_config("twin", "attention", epochs=1, batch_size=BATCH, clip_grad_norm=5.0, **train)


def _seeded_model(cfg: Config) -> torch.nn.Module:
    """The model ``fit`` starts from: it seeds with ``train.seed`` and then builds it."""
    torch.manual_seed(cfg.train.seed)
    return build_model_from_config(cfg.model)


def _assert_training_moved_the_weights(initial: dict[str, torch.Tensor], trained: dict[str, torch.Tensor]) -> None:
    # A few clipped steps at lr 0.01 leave every weight within a few units; stale optimiser state would not.
    assert all(trained[name].isfinite().all() and trained[name].abs().max() < 100 for name in initial)
    unchanged = [name for name, value in initial.items() if torch.equal(trained[name].cpu(), value)]
    # Residual blocks' last convolutions start at zero and get their first gradient in the first step; the
    # classifier and the fully connected layers get one in every step.
    assert not [name for name in unchanged if name.startswith("classifier") or ".fc." in name], unchanged
    assert len(unchanged) < len(initial) / 2, unchanged


def _fit_on_cuda(cfg: Config, tmp_path: Path) -> dict:
    run = fit(cfg, tiny_data("twin", n_train=STEPS * BATCH, n_val=BATCH), tmp_path / "run", device=DEVICE,
              progress=False)
    row = read_metrics(run / "metrics.jsonl")[0]
    assert math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"])
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    initial = {name: p.detach() for name, p in _seeded_model(cfg).named_parameters()}
    _assert_training_moved_the_weights(initial, last["model"])
    return last


def test_fp16_step_with_gradient_scaler(tmp_path):
    last = _fit_on_cuda(_twin_config(precision="fp16"), tmp_path)
    assert last["scaler"]["scale"] > 0  # the scaler ran and its state is checkpointed


def test_bf16_step(tmp_path):
    assert DEVICE.type != "cuda" or torch.cuda.is_bf16_supported()
    last = _fit_on_cuda(_twin_config(precision="bf16"), tmp_path)
    assert not last["scaler"]  # bf16 needs no loss scaling


def test_channels_last_step(tmp_path):
    _fit_on_cuda(_twin_config(channels_last=True), tmp_path)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_distributed_data_parallel_step_on_one_device(monkeypatch):
    # fit wraps the model only when WORLD_SIZE > 1; in a process group of one the wrapper runs all the same
    # (bucketed all-reduce, buffer broadcast), which is what this covers.
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0", "LOCAL_RANK": "0",
                       "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(key, value)
    cfg = _twin_config(precision="bf16", channels_last=True)
    model = _seeded_model(cfg)
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    apply_performance_options(model, cfg.train, DEVICE)
    dist.init_process_group("nccl" if DEVICE.type == "cuda" else "gloo", rank=0, world_size=1)
    try:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[DEVICE.index] if DEVICE.type == "cuda" else None)
        data = tiny_data("twin", n_train=STEPS * BATCH).train
        loader = [({k: v[i:i + BATCH] for k, v in data.inputs.items()}, data.labels[i:i + BATCH])
                  for i in range(0, STEPS * BATCH, BATCH)]
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.train.lr, momentum=cfg.train.momentum)
        result = run_epoch(wrapped, loader, DistributedContext(device=DEVICE), precision="bf16", optimizer=optimizer,
                           clip_grad_norm=cfg.train.clip_grad_norm, channels_last=True, progress=False)
    finally:
        dist.destroy_process_group()
    assert math.isfinite(result.loss) and result.samples == STEPS * BATCH
    _assert_training_moved_the_weights(initial, {name: p.detach() for name, p in model.named_parameters()})
