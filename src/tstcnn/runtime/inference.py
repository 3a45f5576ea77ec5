"""Class probabilities of a model over a loader's batches: the one inference loop of evaluation, prediction
and detection, so all three run a model the same way (device, precision, memory format)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from tstcnn.runtime.performance import autocast, prepare_inputs

__all__ = ["predict_batches"]


def _pad(inputs: dict[str, torch.Tensor], size: int) -> dict[str, torch.Tensor]:
    """A batch grown to ``size`` items with copies of its last one (a compiled model then sees one shape)."""
    missing = size - next(iter(inputs.values())).shape[0]
    if missing <= 0:
        return inputs
    return {k: torch.cat([v, v[-1:].expand(missing, *v.shape[1:])]) for k, v in inputs.items()}


def predict_batches(model: nn.Module, batches: Iterable[tuple[dict[str, torch.Tensor], Any]], *,
                    device: torch.device | str = "cpu", precision: str = "fp32", channels_last: bool = False,
                    pad_to: int | None = None, progress: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, probabilities)`` for every item of ``batches`` (``(inputs dict, labels)`` pairs), in order:
    int64 ``(N,)`` and float32 softmax ``(N, classes)``.

    ``pad_to`` pads an incomplete batch with copies of its last item (for compiled models, which then compile
    one graph); ``progress`` (anything with ``update``) counts items.
    """
    device = torch.device(device)
    labels, probabilities = [], []
    with torch.inference_mode():
        for inputs, label in batches:
            count = next(iter(inputs.values())).shape[0]
            batch = prepare_inputs(_pad(inputs, pad_to) if pad_to else inputs, device, channels_last)
            with autocast(precision, device):
                logits = model(**batch)
            probabilities.append(logits.float().softmax(1)[:count].cpu())
            labels.append(torch.as_tensor(label).reshape(-1))
            if progress is not None:
                progress.update(count)
    if not labels:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    return torch.cat(labels).numpy().astype(np.int64), torch.cat(probabilities).numpy()
