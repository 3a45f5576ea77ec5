"""Paper Fig. 5 from a trained run: the soft mask of every attention block over a clip, and mask statistics.

For the first clip, its first window is run through the model and each block's mask (eqs. 2–5) is
reduced over channels, min-max normalised, resized to the input and overlaid on the RGB frames
(:mod:`tstcnn.viz.attention`): a PNG grid at chosen time steps and an animated GIF. Over all the clips given,
the range and mean of the raw mask values per block are gathered (the paper quotes 0.35–0.65) and written
as JSON. A trimmed clip gives its centred window; an annotated long video one window centred on each
of its strokes. With a run's frame stride ``k`` a window spans ``(T − 1)·k + 1`` source frames, centred the same
way; the grid's ``t`` are the network's time steps, its title the source frames.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tstcnn.data import WindowClips, centred_start
from tstcnn.infer.predict import run_reader
from tstcnn.io.atomic import atomic_write_text
from tstcnn.prep.store import Store, VideoEntry
from tstcnn.progress import progress as progress_bar
from tstcnn.viz.attention import MaskStatistics, collect_masks, save_attention_animation, save_attention_grid

__all__ = ["clip_starts", "visualize_attention"]


def clip_starts(entry: VideoEntry, length: int) -> list[int]:
    """Window starts of a stored video: one centred on each stroke of an annotated video, else the centred one
    (``length``: the window's span in source frames)."""
    if entry.actions:
        return [centred_start(a.begin, min(a.end, entry.frames), length) for a in entry.actions]
    return [centred_start(0, entry.frames, length)]


def visualize_attention(run: Any, store: Store, video_ids: Sequence[str], out_dir: str | Path,
                        time_steps: Sequence[int] | None = None, gif: bool = True,
                        progress: bool = False) -> dict[str, Path]:
    """Write ``attention_grid.png``, ``attention.gif`` (first window) and ``mask_statistics.json`` (all windows).

    Raises ``ValueError`` for a model without attention blocks or an export (masks need the PyTorch model).
    """
    if not isinstance(run.model, torch.nn.Module) or not hasattr(run.model, "attention_masks"):
        raise ValueError("attention maps need a run's PyTorch checkpoint with attention blocks, not an export")
    if not video_ids:
        raise ValueError("no clips given")
    reader = run_reader(store, run)
    display = run_reader(store, run, modality="rgb")
    length, stride = reader.span, reader.frame_stride
    device = next(run.model.parameters()).device
    statistics = MaskStatistics()
    out_dir = Path(out_dir)
    paths: dict[str, Path] = {}
    windows = 0
    for video_id in progress_bar(video_ids, desc="attention", unit="clip", enabled=progress):
        entry = store.entry(video_id)
        starts = clip_starts(entry, length)
        windows_of_clip, display_windows = (WindowClips.of_video(r, video_id, starts) for r in (reader, display))
        for index, start in enumerate(starts):
            inputs = {k: v[None].to(device) for k, v in windows_of_clip[index][0].items()}
            masks = collect_masks(run.model, **inputs)
            if not masks:
                raise ValueError(f"{run.path}: the model ({run.config.model.block} blocks) has no attention masks")
            statistics.update(masks)
            windows += 1
            if windows == 1:  # the figures show the first window
                rgb = display_windows[index][0]["rgb"]
                first = {name: mask[0] for name, mask in masks.items()}
                title = f"{video_id}: frames {max(start, 0)}–{min(start + length, entry.frames) - 1}"
                title += f" (one in {stride})" if stride > 1 else ""
                paths["grid"] = save_attention_grid(out_dir / "attention_grid.png", rgb, first, time_steps, title)
                if gif:
                    paths["gif"] = save_attention_animation(out_dir / "attention.gif", rgb, first)
    summary = {"clips": list(video_ids), "windows": windows, "blocks": statistics.summary()}
    paths["statistics"] = out_dir / "mask_statistics.json"
    atomic_write_text(paths["statistics"], json.dumps(summary, indent=1) + "\n")
    return paths
