"""Training throughput of every model of the study, and what a study would take at that speed.

Times ``--steps`` SGD steps (forward, cross-entropy, backward, Nesterov step; after ``--warmup``) of each
model of the paper's grid on random clips of the preset's size, in fp32 and optionally bf16 autocast, and
scales it to a study: ``epochs × (train clips + validation clips)`` per model. Prints a table, then one
JSON line.

    python benchmarks/bench_train_step.py --config cpu-small --train-clips 840 --val-clips 210
    python benchmarks/bench_train_step.py --models twin-attention --precision fp32 bf16 --threads 2
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from tstcnn.config import load_config, override
from tstcnn.engine.study import STUDY_MODELS
from tstcnn.models import build_model_from_config
from tstcnn.runtime.performance import autocast


def _inputs(modality: str, batch: int, size: tuple[int, int, int]) -> dict[str, torch.Tensor]:
    inputs = {}
    if modality in ("rgb", "twin", "i3d-rgb"):
        inputs["rgb"] = torch.rand(batch, 3, *size)
    if modality in ("flow", "twin", "i3d-flow"):
        inputs["flow"] = torch.rand(batch, 2, *size) * 2 - 1
    return inputs


def time_training(cfg, precision: str, steps: int, warmup: int) -> float:
    """Seconds per training clip."""
    model = build_model_from_config(cfg.model).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True, weight_decay=5e-4)
    inputs = _inputs(cfg.model.modality, cfg.train.batch_size, cfg.model.input_size)
    labels = torch.randint(0, cfg.model.num_classes, (cfg.train.batch_size,))
    device = torch.device("cpu")
    for step in range(warmup + steps):
        if step == warmup:
            started = time.perf_counter()
        with autocast(precision, device):
            logits = model(**inputs)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - started) / (steps * cfg.train.batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="cpu-small")
    parser.add_argument("--models", nargs="+", default=[e.name for e in STUDY_MODELS])
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=("fp32", "bf16"))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--train-clips", type=int, default=840, help="train clips per epoch (synth default: 40 x 21)")
    parser.add_argument("--val-clips", type=int, default=210)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = load_config(args.config)
    entries = {e.name: e for e in STUDY_MODELS}
    rows = []
    for name in args.models:
        cfg = override(base, "model", modality=entries[name].modality, block=entries[name].block)
        for precision in args.precision:
            per_clip = time_training(cfg, precision, args.steps, args.warmup)
            # Validation is a forward pass only: about a third of a training step.
            epoch = per_clip * (args.train_clips + args.val_clips / 3)
            rows.append({"model": name, "precision": precision, "train_clips_per_s": 1 / per_clip,
                         "epoch_s": epoch, "study_h": epoch * base.train.epochs / 3600})
    t, h, w = base.model.input_size
    print(f"{args.config}: clips {t}x{h}x{w}, batch {base.train.batch_size}, {args.threads} threads, "
          f"{base.train.epochs} epochs of {args.train_clips} train + {args.val_clips} validation clips")
    print(f"{'model':<16}{'precision':<10}{'clips/s':>9}{'epoch s':>9}{'run h':>8}")
    for r in rows:
        print(f"{r['model']:<16}{r['precision']:<10}{r['train_clips_per_s']:>9.2f}{r['epoch_s']:>9.0f}"
              f"{r['study_h']:>8.2f}")
    total = sum(r["study_h"] for r in rows if r["precision"] == args.precision[0])
    print(f"whole grid ({args.precision[0]}): {total:.1f} h")
    print(json.dumps({"config": args.config, "threads": args.threads, "rows": rows, "grid_hours": total}))


if __name__ == "__main__":
    main()
