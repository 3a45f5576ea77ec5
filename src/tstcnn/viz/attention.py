"""Attention maps of the TSTCNN (paper Fig. 5).

The soft mask of each attention block (eqs. 2–5) is a ``(C, t, h, w)`` tensor in (0, 1) at the
block's resolution. For display it is reduced over channels (the mean, or three chosen channels as
an RGB image, as Fig. 5 b–d), min-max normalised over the clip, resized to the input clip by
trilinear interpolation and overlaid on the RGB frames. :class:`MaskStatistics` accumulates the
range of raw mask values over a set of clips (the paper quotes 0.35–0.65 over its training set).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tstcnn.io.atomic import atomic_path
from tstcnn.viz.figures import save_figure

__all__ = ["collect_masks", "mask_to_clip", "overlay_heatmap", "save_attention_grid", "save_attention_animation",
           "MaskStatistics"]


def collect_masks(model: nn.Module, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run ``model`` once in eval mode on a batch and return its attention masks (on the CPU, float32)."""
    model.eval()
    with torch.inference_mode():
        model(**inputs)
    return {name: mask.float().cpu() for name, mask in model.attention_masks.items()}


def _min_max(x: torch.Tensor) -> torch.Tensor:
    low, high = x.min(), x.max()
    return (x - low) / (high - low) if high > low else torch.zeros_like(x)


def mask_to_clip(mask: torch.Tensor, size: Sequence[int], channels: Sequence[int] | None = None) -> np.ndarray:
    """One clip's mask ``(C, t, h, w)`` → min-max normalised values at the input ``size`` ``(T, H, W)``.

    Returns ``(T, H, W)`` (mean over channels) or, with three ``channels``, ``(T, H, W, 3)`` with each
    chosen channel normalised on its own, in [0, 1].
    """
    if mask.dim() != 4:
        raise ValueError(f"expected one clip's mask (C, t, h, w), got shape {tuple(mask.shape)}")
    if channels is None:
        reduced = mask.mean(0, keepdim=True)
    else:
        if len(channels) != 3 or max(channels) >= mask.shape[0]:
            raise ValueError(f"channels must be three indices below {mask.shape[0]}, got {tuple(channels)}")
        reduced = mask[list(channels)]
    resized = F.interpolate(reduced[None].float(), size=tuple(size), mode="trilinear", align_corners=True)[0]
    normalised = torch.stack([_min_max(c) for c in resized])
    if channels is None:
        return normalised[0].numpy()
    return normalised.permute(1, 2, 3, 0).numpy()


def overlay_heatmap(frames: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a ``(T, H, W)`` heat map in [0, 1] (jet colours) over ``(T, H, W, 3)`` uint8 RGB frames."""
    out = np.empty_like(frames)
    for t, (frame, h) in enumerate(zip(frames, heat)):
        colour = cv2.applyColorMap(np.uint8(np.clip(h, 0, 1) * 255), cv2.COLORMAP_JET)[..., ::-1]
        out[t] = cv2.addWeighted(frame, 1 - alpha, colour, alpha, 0)
    return out


def _frames_uint8(rgb: torch.Tensor) -> np.ndarray:
    """``(3, T, H, W)`` in [0, 1] → ``(T, H, W, 3)`` uint8."""
    return (rgb.clamp(0, 1) * 255).round().byte().permute(1, 2, 3, 0).cpu().numpy()


def _panels(rgb: torch.Tensor, masks: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    frames = _frames_uint8(rgb)
    size = frames.shape[:3]
    panels = {"input": frames}
    for name, mask in masks.items():
        panels[name] = overlay_heatmap(frames, mask_to_clip(mask, size))
    return panels


def save_attention_grid(path: str | Path, rgb: torch.Tensor, masks: dict[str, torch.Tensor],
                        time_steps: Sequence[int] | None = None, title: str = "") -> Path:
    """PNG grid: a row for the input and one per attention block, a column per time step.

    A last column shows three mask channels as colours at the middle time step (paper Fig. 5 b–d).

    Args:
        path: output PNG.
        rgb: one RGB clip ``(3, T, H, W)`` in [0, 1].
        masks: one clip's masks ``{name: (C, t, h, w)}`` (e.g. ``collect_masks(...)[name][0]``).
        time_steps: frame indices to show (default: five evenly spaced).
    """
    num_frames = rgb.shape[1]
    steps = list(time_steps) if time_steps is not None else np.linspace(0, num_frames - 1, 5).round().astype(int)
    bad = [t for t in steps if not 0 <= t < num_frames]
    if bad:
        raise ValueError(f"time steps {bad} outside the clip's {num_frames} frames")
    panels = _panels(rgb, masks)
    rows, cols = len(panels), len(steps) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows), squeeze=False)
    middle = num_frames // 2
    for r, (name, clip) in enumerate(panels.items()):
        for c, t in enumerate(steps):
            axes[r, c].imshow(clip[t])
            axes[r, c].set_title(f"t={t}" if r == 0 else "", fontsize=7)
        if name in masks:
            three = mask_to_clip(masks[name], clip.shape[:3], channels=(0, 1, 2))
            axes[r, -1].imshow(three[middle])
        axes[r, 0].set_ylabel(name, fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, -1].set_title(f"3 channels, t={middle}", fontsize=7)
    axes[0, -1].axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def save_attention_animation(path: str | Path, rgb: torch.Tensor, masks: dict[str, torch.Tensor],
                             fps: float = 10.0) -> Path:
    """Animated GIF over the clip: the input and each block's overlay side by side."""
    from PIL import Image

    panels = _panels(rgb, masks)
    strip = np.concatenate(list(panels.values()), axis=2)
    images = [Image.fromarray(frame) for frame in strip]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return Path(path)


@dataclass
class MaskStatistics:
    """Running range and mean of raw mask values per attention block over many clips."""

    minimum: dict[str, float] = field(default_factory=dict)
    maximum: dict[str, float] = field(default_factory=dict)
    total: dict[str, float] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)

    def update(self, masks: dict[str, torch.Tensor]) -> None:
        for name, mask in masks.items():
            self.minimum[name] = min(self.minimum.get(name, 1.0), mask.min().item())
            self.maximum[name] = max(self.maximum.get(name, 0.0), mask.max().item())
            self.total[name] = self.total.get(name, 0.0) + mask.double().sum().item()
            self.count[name] = self.count.get(name, 0) + mask.numel()

    def update_all(self, model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> None:
        """Accumulate over batches of model inputs (dicts with ``rgb`` and/or ``flow``)."""
        for batch in batches:
            self.update(collect_masks(model, **batch))

    def summary(self) -> dict[str, dict[str, float]]:
        """``{block: {"min", "max", "mean"}}``."""
        return {name: {"min": self.minimum[name], "max": self.maximum[name],
                       "mean": self.total[name] / self.count[name]} for name in self.minimum}
