"""Tiny prepared stores written straight with write_video_entry: textured frames and a moving bright square."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tstcnn.config import PrepConfig
from tstcnn.prep.store import Store, finalize_store, write_video_entry

H, W = 48, 64


def synthetic_video(frames: int, seed: int, height: int = H, width: int = W, speed: int = 2
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rgb, flow, roi)``: a textured background with a bright square moving right by ``speed`` px per frame,
    that motion as flow, and an ROI that follows it."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 120, (height, width, 3), dtype=np.uint8)
    rgb = np.repeat(background[None], frames, axis=0)
    flow = np.zeros((frames, height, width, 2), np.float32)
    for t in range(frames):
        x = 8 + speed * t % (width - 24)
        rgb[t, 18:30, x:x + 12] = 240
        flow[t, 18:30, x:x + 12, 0] = float(speed)
    roi = np.stack([np.linspace(20, width - 20, frames), np.full(frames, height / 2)], axis=1)
    return rgb, flow, roi


def make_store(root: Path, videos: dict[str, tuple[int, dict]], classes: tuple[str, ...]) -> Store:
    """A store of ``videos`` (id → (frames, meta with split, label, actions)), each from its own seed."""
    for seed, (video_id, (frames, meta)) in enumerate(videos.items()):
        speed = 1 + seed % 3
        write_video_entry(root, video_id, *synthetic_video(frames, seed, speed=speed),
                          {"actions": [], "label": None, **meta, "fps": 25.0})
    finalize_store(root, PrepConfig(width=W), classes)
    return Store(root)
