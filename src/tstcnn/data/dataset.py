"""Stroke clips from a prepared store, as a torch ``Dataset``, and the ``DataLoader`` that goes with it.

Samples of a split are (:class:`~tstcnn.data.sampling.Segment`):

* trimmed clips (a video with a ``label``): the whole video;
* strokes of annotated long videos (``actions`` with a class);
* negatives mined between the strokes of those videos (:mod:`tstcnn.data.negatives`), capped, when the
  taxonomy has a rejection class.

An item is ``(inputs, label)``: ``inputs["rgb"]`` float32 ``(3, T, H, W)`` in [0, 1] and/or ``inputs["flow"]``
float32 ``(2, T, H, W)`` in [-1, 1] (flow divided by the store's ``flow_scale``, clipped); only the modalities the
model reads are loaded. Call the model as ``model(**inputs)``.

Randomness is per item, from ``(seed, epoch, index)``: the same seed gives the same clips whatever the number
of workers, and each epoch differs. :func:`build_dataloader`'s sampler passes the epoch along with each index;
an integer index uses the epoch set by :meth:`StrokeClips.set_epoch` (default 0).
"""

from __future__ import annotations

import math
import os
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from tstcnn.config import DataConfig
from tstcnn.data import functional as F
from tstcnn.data.negatives import cap_negatives, mine_negatives, negative_cap
from tstcnn.data.sampling import Segment, TemporalSampler
from tstcnn.data.splits import assign_splits
from tstcnn.data.transforms import RandomAffine
from tstcnn.prep.store import Store, VideoEntry
from tstcnn.taxonomy import NEGATIVE, Taxonomy

__all__ = ["MODALITY_INPUTS", "StrokeClips", "EpochSampler", "build_dataloader", "seed_worker", "collect_segments"]

MODALITY_INPUTS: dict[str, tuple[str, ...]] = {
    "rgb": ("rgb",), "i3d-rgb": ("rgb",), "flow": ("flow",), "i3d-flow": ("flow",), "twin": ("rgb", "flow"),
}


def collect_segments(entries: list[VideoEntry], classes: Taxonomy, data: DataConfig, clip_length: int,
                     seed: int = 0) -> list[Segment]:
    """The samples of ``entries``: trimmed clips, strokes, and capped negatives mined between strokes."""
    segments: list[Segment] = []
    for entry in entries:
        if entry.actions:
            segments += [Segment(entry.id, a.begin, min(a.end, entry.frames), a.move)
                         for a in entry.actions if a.move is not None and a.begin < min(a.end, entry.frames)]
        elif entry.label is not None:
            segments.append(Segment(entry.id, 0, entry.frames, entry.label))
    for segment in segments:
        if segment.label not in classes:
            raise ValueError(f"video {segment.video_id!r}: class {segment.label!r} is not in the taxonomy "
                             f"({len(classes)} classes)")
    if classes.negative_index is not None and data.negatives_per_class > 0:
        counts = Counter(s.label for s in segments if s.label != NEGATIVE)
        cap = negative_cap(counts, data.negatives_per_class)
        mined = mine_negatives(((e.id, e.actions, e.frames) for e in entries), NEGATIVE, clip_length)
        segments += cap_negatives(mined, cap, seed)
    return segments


class _VideoArrays:
    """Memory maps of one stored video (the layout of :mod:`tstcnn.prep.store`), opened once per process."""

    def __init__(self, folder: Path, entry: VideoEntry) -> None:
        # plain ndarray views of the maps: slicing a np.memmap costs more than the small reads themselves
        raw = np.asarray(np.load(folder / "rgb.npy", mmap_mode="r"))
        h, w = entry.height, entry.width
        self.y = raw[:, :h]
        chroma = raw[:, h:].reshape(len(raw), 2, h // 2, w // 2)
        self.u, self.v = chroma[:, 0], chroma[:, 1]
        self.flow = np.asarray(np.load(folder / "flow.npy", mmap_mode="r"))
        self.roi = np.load(folder / "roi.npy")


class StrokeClips(Dataset):
    """Clips of ``clip_size`` (T, H, W) from the ``split`` of a prepared store, for ``modality``.

    Args:
        store: the prepared store.
        split: "train", "validation", "test" (as :func:`~tstcnn.data.splits.assign_splits` gives them).
        modality: a model modality (rgb, flow, twin, i3d-rgb, i3d-flow); decides which inputs are read.
        clip_size: (T, H, W) of the model input.
        augment: random temporal start and random affine per clip (training); otherwise the centred ROI crop.
        data: sampling, augmentation, negatives and split settings.
        classes: the label order; the store's classes when None.
        seed: base of all randomness (augmentation, choice of negatives).
    """

    def __init__(self, store: Store, split: str, modality: str, clip_size: tuple[int, int, int], augment: bool,
                 data: DataConfig, classes: Taxonomy | None = None, seed: int = 0) -> None:
        if modality not in MODALITY_INPUTS:
            raise ValueError(f"unknown modality {modality!r}; allowed: {', '.join(MODALITY_INPUTS)}")
        length, height, width = (int(v) for v in clip_size)
        if min(length, height, width) < 1:
            raise ValueError(f"clip size must be positive, got {length}x{height}x{width}")
        self.store, self.split, self.modality, self.augment, self.data = store, split, modality, augment, data
        self.inputs = MODALITY_INPUTS[modality]
        self.clip_size = (length, height, width)
        self.classes = classes if classes is not None else Taxonomy(tuple(store.classes))
        self.seed, self.epoch = seed, 0
        splits = assign_splits(store.videos(), data)
        entries = [e for e in store.videos() if splits[e.id] == split]
        self._crop = (height + height % 2, width + width % 2)  # I420 crops are even; odd sizes are trimmed
        for entry in entries:
            if self._crop[0] > entry.height or self._crop[1] > entry.width:
                raise ValueError(f"clip {height}x{width} does not fit video {entry.id!r} of "
                                 f"{entry.width}x{entry.height}; prepare at a larger width or use a smaller clip")
        self.segments = collect_segments(entries, self.classes, data, length, seed)
        self.labels = [self.classes.index(s.label) for s in self.segments]
        self.temporal = TemporalSampler(length, random=augment, sigma_divisor=data.temporal_sigma_divisor)
        self.spatial = RandomAffine.from_config(data) if augment else None
        self._arrays: dict[str, _VideoArrays] = {}

    def __len__(self) -> int:
        return len(self.segments)

    def __repr__(self) -> str:
        return (f"StrokeClips(split={self.split!r}, modality={self.modality!r}, clip_size={self.clip_size}, "
                f"augment={self.augment}, samples={len(self)})")

    def set_epoch(self, epoch: int) -> None:
        """The epoch used for integer indices (:class:`EpochSampler` passes its own)."""
        self.epoch = epoch

    def class_counts(self) -> dict[str, int]:
        """Samples per class name, in taxonomy order (classes without samples omitted)."""
        counts = Counter(s.label for s in self.segments)
        return {name: counts[name] for name in self.classes.classes if counts[name]}

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[dict[str, torch.Tensor], int]:
        return self.load(key)

    def load(self, key: int | tuple[int, int], out: dict[str, np.ndarray] | None = None
             ) -> tuple[dict[str, torch.Tensor], int]:
        """Item ``key`` (an index, or ``(index, epoch)``), its inputs written into ``out`` arrays when given."""
        index, epoch = key if isinstance(key, tuple) else (key, self.epoch)
        segment = self.segments[index]
        rng = np.random.default_rng((self.seed, epoch, index))
        clip = self.temporal(segment.begin, segment.end, rng)
        params = self.spatial(rng, self.clip_size[1:]) if self.spatial is not None else F.AffineParams()
        return self.read(segment.video_id, clip.indices, params, out), self.labels[index]

    def read(self, video_id: str, indices: np.ndarray, params: F.AffineParams,
             out: dict[str, np.ndarray] | None = None) -> dict[str, torch.Tensor]:
        """The model inputs for frames ``indices`` of a video under the spatial transform ``params``, written
        into ``out`` (float32 ``(C, T, H, W)`` arrays per modality) when given."""
        arrays = self._open(video_id)
        entry = self.store.entry(video_id)
        _, h, w = self.clip_size
        out = out or {}
        centres = F.window_centres(arrays.roi[indices], self._crop, (entry.height, entry.width))
        matrices = F.clip_matrices(centres, self._crop, params)
        inputs = {}
        if "rgb" in self.inputs:
            rgb = F.warp_yuv420(arrays.y, arrays.u, arrays.v, indices, matrices, self._crop)
            inputs["rgb"] = F.rgb_to_tensor(rgb[:, :h, :w], out.get("rgb"))
        if "flow" in self.inputs:
            even = self._crop == (h, w)  # odd sizes are warped one pixel larger, then trimmed
            flow = F.warp_flow(arrays.flow, indices, matrices, self._crop, scale=1.0 / self.store.flow_scale,
                               table=self.store.flow_table(video_id), out=out.get("flow") if even else None)
            if not even and "flow" in out:
                out["flow"][...] = flow[:, :, :h, :w]
                flow = out["flow"]
            inputs["flow"] = F.flow_to_tensor(flow[:, :, :h, :w])
        return inputs

    def _open(self, video_id: str) -> _VideoArrays:
        arrays = self._arrays.get(video_id)
        if arrays is None:
            arrays = _VideoArrays(self.store.root / "videos" / video_id, self.store.entry(video_id))
            self._arrays[video_id] = arrays
        return arrays

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_arrays"] = {}  # memory maps are reopened in each worker, never pickled
        return state


def _empty_batch(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An uninitialised tensor, in shared memory inside a DataLoader worker, so that sending the batch to the
    main process moves no data (what ``default_collate`` does for the batches it stacks)."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(math.prod(shape))
    return torch.empty(0, dtype=dtype).set_(storage).view(shape)


class _BatchedClips(Dataset):
    """:class:`StrokeClips` read a batch at a time (``DataLoader`` calls ``__getitems__``): each clip is written
    straight into its slot of the batch tensors, so no per-clip tensor is made and nothing is stacked after."""

    def __init__(self, clips: StrokeClips) -> None:
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getattr__(self, name: str) -> Any:
        """The wrapped dataset's attributes (``loader.dataset.classes``, ``.set_epoch`` …)."""
        if name == "clips":  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.clips, name)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[dict[str, torch.Tensor], int]:
        return self.clips[key]

    def __getitems__(self, keys: list) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        channels = {"rgb": 3, "flow": 2}
        batch = {m: _empty_batch((len(keys), channels[m], *self.clips.clip_size)) for m in self.clips.inputs}
        labels = torch.empty(len(keys), dtype=torch.int64)
        for slot, key in enumerate(keys):
            _, labels[slot] = self.clips.load(key, out={m: t[slot].numpy() for m, t in batch.items()})
        return batch, labels


def _prebatched(batch: tuple[dict[str, torch.Tensor], torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The collate function of :class:`_BatchedClips`: its batches are already made."""
    return batch


class EpochSampler(Sampler):
    """Indices for one epoch, each paired with the epoch number (so items are seeded per epoch).

    Shuffles with ``(seed, epoch)``; with ``world_size`` > 1 each rank gets every ``world_size``-th index of the
    shared order (padded by repetition to equal lengths, as ``DistributedSampler``). The epoch advances at every
    pass; :meth:`set_epoch` sets it (for a resumed run).
    """

    def __init__(self, size: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside a world of {world_size}")
        self.size, self.shuffle, self.seed, self.rank, self.world_size = size, shuffle, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.size / self.world_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        self.epoch += 1
        if self.shuffle:
            order = np.random.default_rng((self.seed, epoch)).permutation(self.size)
        else:
            order = np.arange(self.size)
        if self.world_size > 1 and self.size:
            order = np.resize(order, len(self) * self.world_size)[self.rank::self.world_size]
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


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def build_dataloader(dataset: StrokeClips, batch_size: int, shuffle: bool, num_workers: int, seed: int,
                     distributed: bool = False) -> DataLoader:
    """A ``DataLoader`` over ``dataset`` with an :class:`EpochSampler`; batches are ``(inputs, labels)``, the
    inputs a dict of ``(N, C, T, H, W)`` tensors, labels int64 ``(N,)``, read a batch at a time straight into the
    batch tensors. ``distributed`` shards the samples across the torchrun ranks. ``loader.dataset`` wraps
    ``dataset`` (its attributes read through).

    Sets OpenCV to one thread in this process, before any worker is forked: clips are small (one warp per frame
    and plane), so OpenCV's own threads only compete with the workers, and a forked worker cannot safely
    change the thread count it inherits.
    """
    cv2.setNumThreads(1)
    rank, world_size = _rank_and_world() if distributed else (0, 1)
    sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed, rank=rank, world_size=world_size)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(_BatchedClips(dataset), batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      collate_fn=_prebatched, worker_init_fn=seed_worker, generator=generator,
                      persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available())
