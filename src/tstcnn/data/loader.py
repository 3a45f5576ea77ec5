"""The one ``DataLoader`` of the package: training, evaluation, prediction and detection all batch through it.

:func:`build_dataloader` pairs a dataset with an :class:`EpochSampler` (shuffled per ``(seed, epoch)``, sharded
across torchrun ranks) and reads a batch at a time: a dataset with ``load(key, out)`` (the clip datasets of
:mod:`tstcnn.data.dataset`) writes each clip straight into its slot of the batch tensors, which live in shared
memory inside a worker, so no per-clip tensor is made, nothing is stacked and nothing is copied between
processes. Other datasets of ``(inputs dict, label)`` items (tests, custom data) are collated as usual.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate, get_worker_info

from tstcnn.data.reader import INPUT_CHANNELS

__all__ = ["EpochSampler", "build_dataloader", "seed_worker", "rank_and_world"]


class EpochSampler(Sampler):
    """Indices for one epoch, each paired with the epoch number (so items are seeded per epoch).

    Shuffles with ``(seed, epoch)``; with ``world_size`` > 1 each rank gets every ``world_size``-th index of the
    shared order, padded by repetition to equal lengths when ``pad`` (training, as ``DistributedSampler``), or
    not (evaluation, so that sums over ranks count each clip once). The epoch advances at every pass;
    :meth:`set_epoch` sets it (for a resumed run).
    """

    def __init__(self, size: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1,
                 pad: bool = True) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside a world of {world_size}")
        self.size, self.shuffle, self.seed, self.rank, self.world_size = size, shuffle, seed, rank, world_size
        self.pad, self.epoch = pad, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.pad:
            return math.ceil(self.size / self.world_size)
        return len(range(self.rank, self.size, self.world_size))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        self.epoch += 1
        if self.shuffle:
            order = np.random.default_rng((self.seed, epoch)).permutation(self.size)
        else:
            order = np.arange(self.size)
        if self.world_size > 1 and self.size:
            if self.pad:
                order = np.resize(order, len(self) * self.world_size)
            order = order[self.rank::self.world_size]
        return iter([(int(i), epoch) for i in order])


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one torch thread per worker (the workers are the parallelism), and Python's
    and NumPy's global generators seeded from the worker's torch seed for any code that uses them. The clips
    themselves are seeded per item, so they do not depend on which worker reads them.

    OpenCV's thread count is not changed here: changing it in a forked worker whose parent already ran OpenCV
    in parallel deadlocks (the pool's state is copied half-held by fork); :func:`build_dataloader` sets it.
    """
    torch.set_num_threads(1)
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size: from the process group, else torchrun's variables."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _empty_batch(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An uninitialised tensor, in shared memory inside a DataLoader worker, so that sending the batch to the
    main process moves no data (what ``default_collate`` does for the batches it stacks)."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(math.prod(shape))
    return torch.empty(0, dtype=dtype).set_(storage).view(shape)


class _Batched(Dataset):
    """A clip dataset read a batch at a time (``DataLoader`` calls ``__getitems__``): each clip is written into
    its slot of the batch tensors by the dataset's ``load(key, out)``."""

    def __init__(self, clips: Any) -> None:
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getattr__(self, name: str) -> Any:
        """The wrapped dataset's attributes (``loader.dataset.classes``, ``.set_epoch`` …)."""
        if name == "clips":  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.clips, name)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[dict[str, torch.Tensor], int]:
        return self.clips.load(key)

    def __getitems__(self, keys: list) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        shape = self.clips.clip_size
        batch = {m: _empty_batch((len(keys), INPUT_CHANNELS[m], *shape)) for m in self.clips.inputs}
        labels = torch.empty(len(keys), dtype=torch.int64)
        for slot, key in enumerate(keys):
            _, labels[slot] = self.clips.load(key, out={m: t[slot].numpy() for m, t in batch.items()})
        return batch, labels


class _ByIndex(Dataset):
    """Any map-style dataset under the epoch sampler's ``(index, epoch)`` keys: items by index, collated as usual."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        return self.dataset[key[0] if isinstance(key, tuple) else key]


def _prebatched(batch: tuple[dict[str, torch.Tensor], torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The collate function of :class:`_Batched`: its batches are already made."""
    return batch


def build_dataloader(dataset: Dataset, batch_size: int, *, shuffle: bool, num_workers: int = 0, seed: int = 0,
                     distributed: bool = False, pad: bool = True, drop_last: bool = False,
                     pin_memory: bool = False) -> DataLoader:
    """A ``DataLoader`` over ``dataset`` with an :class:`EpochSampler`; batches are ``(inputs, labels)``, the
    inputs a dict of ``(N, C, T, H, W)`` tensors, labels int64 ``(N,)``.

    Args:
        shuffle: a new order each epoch, from ``(seed, epoch)`` (training); otherwise dataset order.
        num_workers: worker processes (persistent across epochs); 0 reads in this process.
        distributed: shard the samples across the torchrun ranks (``pad``: equal shard lengths by repetition).
        drop_last: drop an incomplete last batch (a batch of one breaks batch norm).

    With workers, OpenCV is set to one thread in this process before any worker is forked: clips are small
    (one warp per frame and plane), so OpenCV's own threads only compete with the workers, and a forked worker
    cannot safely change the thread count it inherits. ``loader.dataset`` reads the wrapped dataset's attributes.
    """
    if batch_size < 1 or num_workers < 0:
        raise ValueError(f"batch size must be positive and workers not negative, got {batch_size}, {num_workers}")
    if num_workers > 0:
        cv2.setNumThreads(1)
    rank, world_size = rank_and_world() if distributed else (0, 1)
    sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, pad=pad)
    generator = torch.Generator()
    generator.manual_seed(seed)
    batched = hasattr(dataset, "load") and hasattr(dataset, "inputs")
    return DataLoader(_Batched(dataset) if batched else _ByIndex(dataset), batch_size=batch_size, sampler=sampler,
                      num_workers=num_workers, collate_fn=_prebatched if batched else default_collate,
                      worker_init_fn=seed_worker, generator=generator, persistent_workers=num_workers > 0,
                      pin_memory=pin_memory, drop_last=drop_last)
