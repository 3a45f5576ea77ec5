"""Speed options shared by training, inference and ``tstcnn bench``.

The fp32 eager path (no option set) is the reference: every option below changes how fast the same
network runs, not what it computes, within the tolerances stated in ``tests/test_performance.py``.

* ``precision`` ``auto``: ``bf16`` where the device has bf16 matrix units (:func:`bf16_is_fast`), else ``fp32``.
* ``precision`` ``bf16`` / ``fp16``: :func:`autocast` runs convolutions in 16 bits (AMX / AVX-512-BF16
  on recent Intel CPUs, tensor cores on GPUs); the 216,000×500 FC layers stay in fp32 (memory-bound).
* ``channels_last``: channels-last 3D memory format (``NDHWC``) for weights and inputs, which oneDNN
  convolutions prefer in bf16.
* ``checkpoint_attention``: attention blocks keep only their input and are recomputed in the backward
  pass (:meth:`~tstcnn.models.TSTCNN.set_grad_checkpointing`), for memory.
* ``step_in_backward``: :func:`step_large_parameters_in_backward`, for memory.
* ``compile``: ``torch.compile`` of the whole model (fuses batch norm, ReLU and the additions); for inference
  (:func:`compile_for_inference`) with the weights frozen into the graph, which folds the batch norms into the
  convolutions.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
from collections.abc import Mapping
from functools import partial

import torch
from torch import nn

from tstcnn.config import PRECISIONS

__all__ = ["PRECISIONS", "resolve_precision", "autocast", "apply_performance_options", "prepare_inputs",
           "autocast_dtype", "bf16_is_fast", "inference_options", "compile_for_inference", "FrozenCompiled",
           "step_large_parameters_in_backward", "return_freed_memory_to_os"]

logger = logging.getLogger(__name__)
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``precision`` with ``auto`` replaced by what ``device`` runs fastest: ``bf16`` or ``fp32``."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if bf16_is_fast(device) else "fp32"
    return precision


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a resolved ``precision`` (``None`` for fp32); ``ValueError`` for an unknown name."""
    if precision not in PRECISIONS[1:]:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS[1:])} (resolve 'auto' "
                         "with resolve_precision)")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``device`` for ``bf16`` / ``fp16`` (and ``auto`` where it means bf16); nothing for
    ``fp32`` (the reference path)."""
    dtype = autocast_dtype(resolve_precision(precision, device))
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def apply_performance_options(model: nn.Module, train_cfg: object, device: torch.device | str | None = None,
                              inference: bool = False) -> nn.Module:
    """Move ``model`` to ``device`` and apply ``train_cfg``'s ``channels_last``, ``checkpoint_attention``
    and ``compile``; returns the module to call (the compiled one, or ``model`` itself). With ``inference``
    the compiled module is :func:`compile_for_inference`'s.

    ``model`` keeps its parameter names (save ``model``'s state dict, not the compiled wrapper's).
    ``precision`` is applied per call with :func:`autocast`. ``train_cfg`` is a
    :class:`~tstcnn.config.TrainConfig` or anything with the same attributes.
    """
    resolve_precision(getattr(train_cfg, "precision", "fp32"), device or "cpu")
    if device is not None:
        model.to(device)
    if next(model.parameters()).device.type == "cpu":
        return_freed_memory_to_os()
    if getattr(train_cfg, "checkpoint_attention", False):
        set_checkpointing = getattr(model, "set_grad_checkpointing", None)
        if set_checkpointing is None:
            logger.warning("%s cannot checkpoint its attention blocks; option ignored", type(model).__name__)
        else:
            set_checkpointing(True)
    if getattr(train_cfg, "channels_last", False):
        model.to(memory_format=torch.channels_last_3d)
    if getattr(train_cfg, "compile", False):
        return compile_for_inference(model) if inference else torch.compile(model)
    return model


def compile_for_inference(model: nn.Module) -> nn.Module:
    """``model`` in eval mode, ``torch.compile``-d for inference (:class:`FrozenCompiled`)."""
    return FrozenCompiled(model.eval())


class FrozenCompiled(nn.Module):
    """``torch.compile`` of ``model`` with inductor's freezing: its weights become constants of the graph, so
    batch norms fold into the convolutions (``tstcnn bench`` at paper size on 2 cores: bf16 + channels-last
    inference 0.388 → 0.335 s per sample). Each input shape gets its own static graph.

    The first call of each shape compiles (about 1.5 min at paper size on 2 cores); ``model``'s weights must
    not change afterwards (the graph keeps the values it was compiled with). Freezing is switched on around
    each call only (given as a ``torch.compile`` option it had no effect), so other compiled models are not
    frozen.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if next(model.parameters()).device.type == "cpu":
            _check_cpp_compiler()
        self.model = model
        self.compiled = torch.compile(model, dynamic=False)

    def forward(self, *args: object, **kwargs: object) -> object:
        import torch._inductor.config

        with torch._inductor.config.patch(freezing=True):
            return self.compiled(*args, **kwargs)


def _check_cpp_compiler() -> None:
    """``ValueError`` now, rather than an inductor traceback at the first call, where no C++ compiler works."""
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        get_cpp_compiler()
    except RuntimeError as exc:
        raise ValueError(f"torch.compile on a CPU needs a C++ compiler (g++, or the one $CXX names): {exc}") from None


def step_large_parameters_in_backward(optimizer: torch.optim.Optimizer, min_numel: int = 1 << 20) -> list:
    """Update each parameter of ``optimizer`` with at least ``min_numel`` elements as soon as its gradient is
    accumulated in the backward pass, then free that gradient; returns the hook handles.

    ``optimizer.step()`` after the backward pass then updates the other parameters (optimizers skip parameters
    without gradient); the update is the optimizer's own, with its current learning rate and state, so the
    result is the same. At paper size the 0.43 GB gradient of each branch's 216,000×500 FC layer is freed
    before the backward pass of the convolutions starts. Not with gradient clipping or fp16 loss scaling (both
    need every gradient first) nor DistributedDataParallel (gradients are averaged after the hook).
    """
    handles = []
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            if parameter.numel() >= min_numel:
                handles.append(parameter.register_post_accumulate_grad_hook(partial(_step_alone, optimizer)))
    return handles


def _step_alone(optimizer: torch.optim.Optimizer, parameter: torch.Tensor) -> None:
    # Groups are looked up at each call: load_state_dict replaces them.
    groups = optimizer.param_groups
    kept = [group["params"] for group in groups]
    try:
        for group in groups:
            group["params"] = [parameter] if any(p is parameter for p in group["params"]) else []
        optimizer.step()
    finally:
        for group, params in zip(groups, kept):
            group["params"] = params
    parameter.grad = None


def prepare_inputs(inputs: Mapping[str, torch.Tensor], device: torch.device | str, channels_last: bool = False
                   ) -> dict[str, torch.Tensor]:
    """Model inputs moved to ``device`` (asynchronously from pinned memory) in the chosen memory format."""
    moved = {}
    for key, value in inputs.items():
        value = value.to(device, non_blocking=True)
        moved[key] = value.contiguous(memory_format=torch.channels_last_3d) if channels_last and value.dim() == 5 \
            else value
    return moved


def bf16_is_fast(device: torch.device | str) -> bool:
    """Whether ``device`` has bf16 matrix units: AMX or AVX-512-BF16 on a CPU, bf16 support on a CUDA GPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    return False


def inference_options(device: torch.device | str) -> dict[str, object]:
    """The fastest measured inference settings for ``device`` (``tstcnn bench``, case ``bf16-cl``):
    bf16 autocast and channels-last 3D where bf16 is fast, else the fp32 reference path."""
    precision = resolve_precision("auto", device)
    return {"precision": precision, "channels_last": precision == "bf16"}


def return_freed_memory_to_os(threshold_bytes: int = 24 << 20) -> bool:
    """Serve CPU allocations above ``threshold_bytes`` with ``mmap`` so that freeing them returns the memory.

    glibc raises its mmap threshold after the first large free, after which the largest activations of each
    step come from the heap and stay resident. A fixed threshold returns them, but every allocation above it
    then costs page faults: measured at paper size (bf16, channels-last, checkpointed attention, FC steps in
    the backward pass), 1 MiB gave 2.50 s per sample and 3.06 GB, 24 MiB 1.81 s and 3.65 GB (the maps of one
    block stay on the heap, the first stages' maps and the FC gradients do not). Returns ``False`` where the C
    library has no ``mallopt`` (not glibc); nothing changes then.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold_bytes))
