"""The training loop: SGD with Nesterov momentum, cross-entropy on logits, the paper's re-scheduler.

One epoch = one pass over the training clips (augmented) then one over the validation clips (centred,
no augmentation). The best state (weights and optimiser) is the one with the best validation
accuracy; the last state is saved after every epoch, atomically, with the scheduler, the gradient
scaler and the random-number generators, so a killed run resumed with ``resume=True`` continues
exactly as if it had not stopped (on the CPU: bit for bit). Data comes through
:func:`tstcnn.data.build_dataloader`, the loader of every stage: each epoch's order comes from
``(train.seed, epoch)`` and each clip's augmentation from ``(train.seed, epoch, index)``, so neither depends on
a saved stream nor on the number of loader workers.

Runs under ``torchrun`` as well (DistributedDataParallel; ``train.batch_size`` is per process), where
only rank 0 writes. The run folder holds ``config.yaml``, ``classes.json``, ``store.json``,
``checkpoints/{best,last}.pt``, ``metrics.jsonl``, ``curves.png`` and ``tensorboard/``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tstcnn.config import Config, TrainConfig, config_to_dict, override
from tstcnn.data import StrokeClips, build_dataloader, rank_and_world, store_frame_stride
from tstcnn.engine.distributed import (
    DistributedContext,
    all_reduce_sums,
    barrier,
    init_distributed,
    shutdown_distributed,
)
from tstcnn.engine.scheduler import EpochScheduler, build_scheduler
from tstcnn.io.atomic import atomic_write_text
from tstcnn.io.locks import folder_lock
from tstcnn.models import build_model_from_config
from tstcnn.prep.store import Store
from tstcnn.progress import progress as progress_bar
from tstcnn.runtime.checkpoint import check_compatible, checkpoint_path, load_checkpoint, save_checkpoint
from tstcnn.runtime.performance import (
    PRECISIONS,
    apply_performance_options,
    autocast,
    prepare_inputs,
    resolve_precision,
    step_large_parameters_in_backward,
)
from tstcnn.taxonomy import Taxonomy
from tstcnn.viz.figures import plot_curves

__all__ = ["TrainData", "EpochResult", "build_optimizer", "fit", "train", "train_data_from_store", "read_metrics",
           "PRECISIONS", "run_epoch", "init_from_checkpoint"]

logger = logging.getLogger(__name__)
EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class TrainData:
    """What the loop trains on besides the config: datasets of ``(inputs dict, label)`` and their metadata."""

    train: Dataset
    validation: Dataset
    classes: Taxonomy
    flow_scale: float = 1.0
    prep: dict[str, Any] = field(default_factory=dict)  # the store's PrepConfig as a dict
    store: dict[str, Any] = field(default_factory=dict)  # what store.json records (path, flow_scale, prep)


@dataclass
class EpochResult:
    loss: float
    accuracy: float
    samples: int


def train_data_from_store(cfg: Config, store: Any, seed: int | None = None) -> TrainData:
    """Training (augmented) and validation (centred) clips of a prepared store, for ``cfg.model.modality``."""
    store = store if isinstance(store, Store) else Store(store)
    classes = Taxonomy(tuple(store.classes))
    if len(classes) != cfg.model.num_classes:
        raise ValueError(f"{store.root}: the store has {len(classes)} classes but model.num_classes is "
                         f"{cfg.model.num_classes}")
    seed = cfg.train.seed if seed is None else seed

    def clips(split: str, augment: bool) -> Dataset:
        return StrokeClips(store, split, cfg.model.modality, cfg.model.input_size, augment, cfg.data,
                           classes=classes, seed=seed)

    prep = asdict(store.prep)
    return TrainData(train=clips("train", True), validation=clips("validation", False), classes=classes,
                     flow_scale=float(store.flow_scale), prep=prep,
                     store={"path": str(Path(store.root).resolve()), "flow_scale": float(store.flow_scale),
                            "prep": prep})


def run_epoch(model: nn.Module, loader: Iterable, ctx: DistributedContext, *, precision: str = "fp32",
              optimizer: torch.optim.Optimizer | None = None, scaler: torch.amp.GradScaler | None = None,
              clip_grad_norm: float = 0.0, label_smoothing: float = 0.0, channels_last: bool = False,
              description: str = "", progress: bool = True) -> EpochResult:
    """One pass: trains when ``optimizer`` is given, else evaluates without gradients; sums over processes.

    ``clip_grad_norm`` > 0 rescales the gradients (after unscaling, under fp16) to at most that norm;
    ``label_smoothing`` applies to the loss that is minimised, so an evaluation pass reports plain cross-entropy.
    """
    training = optimizer is not None
    model.train(training)
    loss_sum, correct, count = 0.0, 0, 0
    bar = progress_bar(loader, desc=description, unit="batch", enabled=progress and ctx.is_primary)
    with torch.set_grad_enabled(training):
        for inputs, labels in bar:
            inputs = prepare_inputs(inputs, ctx.device, channels_last)
            labels = labels.to(ctx.device, non_blocking=True)
            with autocast(precision, ctx.device):
                logits = model(**inputs)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing if training else 0.0)
            if training:
                optimizer.zero_grad(set_to_none=True)
                scaling = scaler is not None and scaler.is_enabled()
                (scaler.scale(loss) if scaling else loss).backward()
                if clip_grad_norm > 0:
                    if scaling:
                        scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
                if scaling:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
            n = labels.numel()
            loss_sum += loss.item() * n
            correct += int((logits.argmax(1) == labels).sum().item())
            count += n
            bar.set_postfix(loss=f"{loss_sum / count:.4f}", acc=f"{correct / count:.3f}")
    loss_sum, correct, count = all_reduce_sums([loss_sum, float(correct), float(count)], ctx)
    return EpochResult(loss=loss_sum / max(count, 1), accuracy=correct / max(count, 1), samples=int(count))


def _cpu_copy(value: Any) -> Any:
    """A detached CPU copy of a (nested) state dict, so later steps cannot change it."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _cpu_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu_copy(v) for v in value)
    return copy.deepcopy(value)


def _rng_state() -> dict[str, Any]:
    version, mt_state, gauss = random.getstate()
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": [version, list(mt_state), gauss],
             "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                       "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])}}
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"],
                         numpy["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl`` (one JSON object per epoch); a torn last line is ignored."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rows.append(json.loads(line))
    return rows


class _RunWriter:
    """Everything rank 0 writes during training: run files, metrics, TensorBoard, the curves figure."""

    def __init__(self, out_dir: Path, cfg: Config, data: TrainData, start_epoch: int, enabled: bool) -> None:
        self.out_dir, self.enabled = out_dir, enabled
        self.rows = [r for r in read_metrics(out_dir / "metrics.jsonl") if r.get("epoch", 0) <= start_epoch]
        self.tensorboard = None
        if not enabled:
            return
        (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        header = "# Resolved configuration of this run (tstcnn train writes it; load it with --config).\n"
        atomic_write_text(out_dir / "config.yaml", header + yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        atomic_write_text(out_dir / "classes.json", json.dumps(list(data.classes.classes), indent=1) + "\n")
        atomic_write_text(out_dir / "store.json", json.dumps(data.store or {"flow_scale": data.flow_scale,
                                                                              "prep": data.prep}, indent=1) + "\n")
        # Drop rows of epochs a killed run finished after its last checkpoint: they are trained again.
        atomic_write_text(out_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.rows))
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(out_dir / "tensorboard"), purge_step=start_epoch + 1)
        except ImportError:  # tensorboard is a dependency, but a trimmed install should still train
            logger.warning("tensorboard is not installed; metrics go to metrics.jsonl only")

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if not self.enabled:
            return
        with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as stream:
            stream.write(json.dumps(row) + "\n")
        if self.tensorboard is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                    self.tensorboard.add_scalar(key.replace("_", "/", 1), value, row["epoch"])
            self.tensorboard.flush()
        plot_curves(self.rows, self.out_dir / "curves.png")

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def build_optimizer(model: nn.Module, train: TrainConfig, device: torch.device) -> torch.optim.SGD:
    """SGD with Nesterov momentum as the paper trains, fused into one kernel on CPU and CUDA (no copies of the
    large FC gradients).

    The momentum buffers start at zero, which for SGD without dampening is the same first step as PyTorch's
    lazily made buffers: fused SGD allocates its buffers uninitialised and, when the fp16 gradient scaler skips
    a step, leaves them unwritten, so the next step would add whatever the memory held.
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=train.lr, momentum=train.momentum,
                                weight_decay=train.weight_decay, nesterov=train.nesterov,
                                fused=device.type in ("cpu", "cuda"))
    if train.momentum > 0:
        for parameter in model.parameters():
            if parameter.requires_grad:
                optimizer.state[parameter]["momentum_buffer"] = torch.zeros_like(parameter)
    return optimizer


def _prepare_model(cfg: Config, ctx: DistributedContext) -> tuple[nn.Module, nn.Module]:
    """(the model to call, the plain model to save): device, speed options, DDP and compile applied."""
    plain = build_model_from_config(cfg.model)
    apply_performance_options(plain, replace(cfg.train, compile=False), ctx.device)  # compiled after DDP wraps it
    model: nn.Module = plain
    if ctx.enabled:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(plain, device_ids=device_ids)
    if cfg.train.compile:
        model = torch.compile(model)
    return model, plain


def _classifier_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the model's classifier (the layer whose shape follows the classes)."""
    classifier = model.get_classifier()
    prefix = next(name for name, module in model.named_modules() if module is classifier)
    return {f"{prefix}.{key}" for key in classifier.state_dict()}


def init_from_checkpoint(model: nn.Module, source: str | Path, cfg: Config, classes: list[str],
                         prep: dict[str, Any] | None = None) -> bool:
    """Start ``model`` from the weights of a trained run (its ``best`` checkpoint) or a checkpoint file.

    The architecture must be the same, classes aside. With the same classes, in the same order, every weight is
    loaded strictly; otherwise the classifier keeps its fresh initialisation (one log line says so) and the rest is
    loaded strictly. Returns whether the classifier was rebuilt. For fine-tuning on corrected or other data.
    """
    path = checkpoint_path(source, "best")
    checkpoint = load_checkpoint(path)
    saved_arch = dict(checkpoint["config"].get("model", {}), num_classes=len(classes))
    check_compatible({"config": {"model": saved_arch}}, path, model_config=cfg.model)
    state = checkpoint["model"]
    saved_classes = list(checkpoint["classes"])
    rebuilt = saved_classes != list(classes)
    if rebuilt:
        head = _classifier_keys(model)
        state = {k: v for k, v in state.items() if k not in head}
        state.update({k: v for k, v in model.state_dict().items() if k in head})
        logger.info("init from %s: its %d classes differ from the data's %d, so the classifier starts afresh",
                    path, len(saved_classes), len(classes))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit the model ({' '.join(str(exc).split())[:200]})") from None
    saved_prep = checkpoint.get("prep")
    if prep and isinstance(saved_prep, dict) and saved_prep != prep:
        logger.warning("init from %s: its store was prepared with other settings (%s) than this one (%s)", path,
                       saved_prep, prep)
    return rebuilt


def _check_train_config(cfg: Config) -> None:
    train = cfg.train
    resolve_precision(train.precision, "cpu")  # raises on an unknown precision, before any work
    if train.epochs < 1 or train.batch_size < 1:
        raise ValueError(f"epochs and batch_size must be at least 1, got {train.epochs} and {train.batch_size}")
    if train.lr <= 0:
        raise ValueError(f"lr must be positive, got {train.lr}")
    if not 0.0 <= train.label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {train.label_smoothing}")
    if train.step_in_backward and (train.clip_grad_norm > 0 or train.precision == "fp16"):
        raise ValueError("step_in_backward needs every gradient unclipped and unscaled: not with clip_grad_norm > 0 "
                         "or fp16")
    if train.nesterov and train.momentum <= 0:
        raise ValueError("Nesterov momentum needs momentum > 0: set --momentum or --no-nesterov")
    build_scheduler(train)  # raises on an unknown scheduler name, before any work


def fit(cfg: Config, data: TrainData, out_dir: str | Path, *, resume: bool = False,
        device: str | torch.device | None = None, progress: bool = True,
        on_epoch_end: EpochCallback | None = None) -> Path:
    """Train ``cfg.model`` on ``data`` into the run folder ``out_dir``; returns the folder.

    Args:
        resume: continue from ``out_dir/checkpoints/last.pt`` (a fresh start when there is none).
            Without it, a folder that already holds a run is an error, so no run is overwritten.
        device: ``cpu`` / ``cuda``; default CUDA when present.
        progress: per-epoch progress (a bar on a terminal, log lines elsewhere); the one-line summary of each
            epoch is always logged, by rank 0.
        on_epoch_end: called with each epoch's metrics row after its checkpoint is written.
    """
    _check_train_config(cfg)
    out_dir = Path(out_dir)
    last_path = out_dir / "checkpoints" / "last.pt"
    if len(data.train) == 0:
        raise ValueError("no training clips: the train split is empty")
    if len(data.validation) == 0:
        raise ValueError("no validation clips: the validation split is empty (the best state is chosen on it)")
    if len(data.classes) != cfg.model.num_classes:
        raise ValueError(f"the data has {len(data.classes)} classes but model.num_classes is {cfg.model.num_classes}")
    if not resume and last_path.exists():
        raise ValueError(f"{out_dir}: already holds a run; pass --resume to continue it, or choose another --out")
    # One writer per run folder: a second command into it is refused, naming the first (rank 0 writes alone).
    lock = folder_lock(out_dir, "tstcnn train") if rank_and_world()[0] == 0 else contextlib.nullcontext()
    with lock:
        ctx = init_distributed(device)
        try:
            return _fit(cfg, data, out_dir, ctx, resume=resume and last_path.exists(), progress=progress,
                        on_epoch_end=on_epoch_end)
        finally:
            shutdown_distributed(ctx)


def _fit(cfg: Config, data: TrainData, out_dir: Path, ctx: DistributedContext, *, resume: bool, progress: bool,
         on_epoch_end: EpochCallback | None) -> Path:
    train_cfg = cfg.train
    last_path, best_path = out_dir / "checkpoints" / "last.pt", out_dir / "checkpoints" / "best.pt"
    _seed_everything(train_cfg.seed)
    model, plain = _prepare_model(cfg, ctx)
    if train_cfg.init_from and not resume:  # a resumed run continues from its own weights
        init_from_checkpoint(plain, train_cfg.init_from, cfg, list(data.classes.classes), data.prep)
    optimizer = build_optimizer(plain, train_cfg, ctx.device)
    if train_cfg.step_in_backward:
        if ctx.enabled:
            logger.warning("step_in_backward is off under DistributedDataParallel (gradients are averaged after it)")
        else:
            step_large_parameters_in_backward(optimizer)
    scheduler: EpochScheduler = build_scheduler(train_cfg)
    precision = resolve_precision(train_cfg.precision, ctx.device)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=precision == "fp16")
    classes = list(data.classes.classes)
    start_epoch, best_accuracy, best_epoch, best_state = 0, -1.0, 0, None
    if resume:
        last = load_checkpoint(last_path, model_config=cfg.model, classes=classes)
        plain.load_state_dict(last["model"])
        optimizer.load_state_dict(last["optimizer"])
        scheduler.load_state_dict(last["scheduler"])
        scaler.load_state_dict(last["scaler"])
        start_epoch, best_accuracy, best_epoch = int(last["epoch"]), float(last["best_accuracy"]), last["best_epoch"]
        if best_path.exists():
            best = load_checkpoint(best_path, model_config=cfg.model, classes=classes)
            best_state = {"model": best["model"], "optimizer": best["optimizer"]}
        _set_rng_state(last["rng"][ctx.rank] if ctx.rank < len(last["rng"]) else last["rng"][0])
    writer = _RunWriter(out_dir, cfg, data, start_epoch, enabled=ctx.is_primary)
    common = {"config": config_to_dict(cfg), "classes": classes, "flow_scale": float(data.flow_scale),
              "prep": data.prep}
    loaders = _loaders(cfg, data, ctx)
    try:
        for epoch in range(start_epoch, train_cfg.epochs):
            started = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = scheduler.lr
            for loader in loaders:
                loader.sampler.set_epoch(epoch)
            label = f"epoch {epoch + 1}/{train_cfg.epochs}"
            train_result = run_epoch(
                model, loaders[0], ctx, precision=precision, optimizer=optimizer, scaler=scaler,
                clip_grad_norm=train_cfg.clip_grad_norm, label_smoothing=train_cfg.label_smoothing,
                channels_last=train_cfg.channels_last, description=f"{label} train", progress=progress)
            val_result = run_epoch(
                model, loaders[1], ctx, precision=precision, channels_last=train_cfg.channels_last,
                description=f"{label} validation", progress=progress)
            if not math.isfinite(train_result.loss):
                raise ValueError(f"training diverged: the loss is {train_result.loss} at epoch {epoch + 1}; "
                                 "lower --lr, set --clip-grad-norm (e.g. 5), or use --precision fp32")
            is_best = val_result.accuracy > best_accuracy
            if is_best:
                best_accuracy, best_epoch = val_result.accuracy, epoch + 1
                best_state = {"model": _cpu_copy(plain.state_dict()), "optimizer": _cpu_copy(optimizer.state_dict())}
                if ctx.is_primary:
                    save_checkpoint(best_path, **common, epoch=epoch + 1, model=best_state["model"],
                                    optimizer=best_state["optimizer"], val_accuracy=val_result.accuracy)
            lr = scheduler.lr
            change = scheduler.step(train_result.loss, val_result.accuracy)
            if change is not None and change.reload_best and best_state is not None:
                plain.load_state_dict(best_state["model"])
                # A copy: the optimiser adopts the given tensors as its buffers and updates them in place.
                optimizer.load_state_dict(_cpu_copy(best_state["optimizer"]))
            seconds = time.perf_counter() - started
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": train_result.loss,
                   "train_accuracy": train_result.accuracy, "val_loss": val_result.loss,
                   "val_accuracy": val_result.accuracy, "best_val_accuracy": best_accuracy, "best_epoch": best_epoch,
                   "is_best": is_best, "lr_change": change.reason if change else None,
                   "next_lr": scheduler.lr, "precision": precision, "epoch_seconds": seconds,
                   "train_samples_per_second": train_result.samples / seconds if seconds > 0 else 0.0}
            writer.add(row)
            rng = _gather_rng(ctx)
            if ctx.is_primary:
                save_checkpoint(last_path, **common, epoch=epoch + 1, model=plain.state_dict(),
                                optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                                scaler=scaler.state_dict(), rng=rng, best_accuracy=best_accuracy,
                                best_epoch=best_epoch)
                logger.info("%s", _summary_line(row, train_cfg.epochs))
            barrier(ctx)
            if on_epoch_end is not None:
                on_epoch_end(row)
    finally:
        writer.close()
    return out_dir


def _loaders(cfg: Config, data: TrainData, ctx: DistributedContext) -> tuple[DataLoader, DataLoader]:
    """The training loader (shuffled per epoch, sharded across ranks) and the validation loader (in order, each
    rank every world_size-th clip without padding, so the sums over ranks count each clip once)."""
    batch, workers, seed = cfg.train.batch_size, cfg.data.num_workers, cfg.train.seed
    shard_length = -(-len(data.train) // ctx.world_size)
    options = {"num_workers": workers, "seed": seed, "distributed": ctx.enabled,
               "pin_memory": ctx.device.type == "cuda"}
    # The incomplete last batch is dropped (a batch of one breaks batch norm), unless it is the only one.
    train = build_dataloader(data.train, batch, shuffle=True, drop_last=shard_length >= batch, **options)
    validation = build_dataloader(data.validation, batch, shuffle=False, pad=False, **options)
    return train, validation


def _gather_rng(ctx: DistributedContext) -> list[dict[str, Any]]:
    """Every process's generator states, in rank order (rank 0 saves them all)."""
    state = _rng_state()
    if not ctx.enabled:
        return [state]
    states: list[Any] = [None] * ctx.world_size
    torch.distributed.all_gather_object(states, state)
    return states


def _summary_line(row: dict[str, Any], epochs: int) -> str:
    change = f"  lr → {row['next_lr']:.0e} ({row['lr_change']})" if row["lr_change"] else ""
    return (f"epoch {row['epoch']}/{epochs}  lr {row['lr']:.0e}  train loss {row['train_loss']:.4f} "
            f"acc {row['train_accuracy']:.3f}  val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f}"
            f"{'  *best*' if row['is_best'] else ''}{change}  {row['epoch_seconds']:.1f}s")


def train(cfg: Config, store: Any, out_dir: str | Path, resume: bool = False, *,
          device: str | torch.device | None = None, progress: bool = True,
          on_epoch_end: EpochCallback | None = None) -> Path:
    """Train on a prepared store (a :class:`~tstcnn.prep.store.Store` or its path); returns the run folder.

    ``model.num_classes`` is set to the store's number of classes, and ``data.frame_stride`` ``auto`` to the
    stride it resolves to on this store, so the run's saved config tells evaluation and inference its ``k``.
    """
    store = store if isinstance(store, Store) else Store(store)
    cfg = override(cfg, "model", num_classes=len(store.classes))
    cfg = override(cfg, "data", frame_stride=store_frame_stride(cfg.data.frame_stride, store,
                                                                cfg.model.input_size[0]))
    return fit(cfg, train_data_from_store(cfg, store), out_dir, resume=resume, device=device, progress=progress,
               on_epoch_end=on_epoch_end)


