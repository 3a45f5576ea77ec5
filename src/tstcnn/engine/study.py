"""The paper's comparison (Tables II and III, Figure 6): every model trained the same way on one store.

The grid: RGB, Flow and Twin, each without and with attention blocks, and the I3D baseline trained on
RGB and on flow separately, whose softmax scores are averaged for "I3D RGB + Flow" (late fusion, no
training of its own). Each model is one run folder under the study folder (``rgb-none``,
``twin-attention``, ``i3d-rgb``…), trained with :func:`tstcnn.engine.trainer.train` and scored with
:func:`tstcnn.engine.evaluate.evaluate`. The study writes ``study.md`` and ``study.csv`` (train /
validation / test accuracy, best epoch, epochs to reach 90 % of the best validation accuracy,
parameters, training time) and ``fig6_validation_accuracy.png``. Re-running the same command
continues: finished runs are kept, interrupted ones resume from their last checkpoint.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tstcnn.config import Config, override
from tstcnn.data import StrokeClips
from tstcnn.engine.evaluate import SPLITS, evaluate, evaluate_model, write_confusions, write_results
from tstcnn.engine.trainer import read_metrics, train
from tstcnn.io.atomic import atomic_write_text
from tstcnn.models import LateFusion, build_model_from_config, count_parameters
from tstcnn.prep.store import Store
from tstcnn.runtime.checkpoint import load_checkpoint, load_run
from tstcnn.viz.figures import plot_validation_overlay

logger = logging.getLogger(__name__)

__all__ = ["StudyEntry", "STUDY_MODELS", "FUSION", "study_entries", "epochs_to_fraction", "run_study",
           "study_table"]


@dataclass(frozen=True)
class StudyEntry:
    """One row of the study: a model trained on its own, or the late fusion of two trained runs."""

    name: str
    modality: str
    block: str = "none"
    fuses: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        if self.fuses:
            return "I3D RGB + Flow (late fusion)"
        if self.modality.startswith("i3d"):
            return f"I3D {'RGB' if self.modality == 'i3d-rgb' else 'Flow'}"
        kind = {"rgb": "RGB", "flow": "Flow", "twin": "Twin"}[self.modality]
        return f"{kind} {'with' if self.block == 'attention' else 'without'} attention"


STUDY_MODELS: tuple[StudyEntry, ...] = (
    StudyEntry("rgb-none", "rgb", "none"),
    StudyEntry("rgb-attention", "rgb", "attention"),
    StudyEntry("flow-none", "flow", "none"),
    StudyEntry("flow-attention", "flow", "attention"),
    StudyEntry("twin-none", "twin", "none"),
    StudyEntry("twin-attention", "twin", "attention"),
    StudyEntry("i3d-rgb", "i3d-rgb"),
    StudyEntry("i3d-flow", "i3d-flow"),
)
FUSION = StudyEntry("i3d-fusion", "i3d-fusion", fuses=("i3d-rgb", "i3d-flow"))


def study_entries(names: Sequence[str] | None = None) -> list[StudyEntry]:
    """The grid, or the named subset (``i3d-fusion`` brings in the two I3D streams it needs)."""
    everything = {e.name: e for e in (*STUDY_MODELS, FUSION)}
    if not names:
        return [*STUDY_MODELS, FUSION]
    unknown = [n for n in names if n not in everything]
    if unknown:
        raise ValueError(f"unknown study model(s) {', '.join(unknown)}; allowed: {', '.join(everything)}")
    wanted = set(names) | (set(FUSION.fuses) if FUSION.name in names else set())
    return [e for e in (*STUDY_MODELS, FUSION) if e.name in wanted]


def epochs_to_fraction(rows: Sequence[dict[str, Any]], fraction: float = 0.9) -> int | None:
    """The first epoch whose validation accuracy reaches ``fraction`` × the run's best (paper Fig. 6's speed)."""
    accuracies = [(int(r["epoch"]), float(r["val_accuracy"])) for r in rows if r.get("val_accuracy") is not None]
    if not accuracies:
        return None
    best = max(a for _, a in accuracies)
    return next(epoch for epoch, accuracy in accuracies if accuracy >= fraction * best)


def _entry_config(cfg: Config, entry: StudyEntry) -> Config:
    return override(cfg, "model", modality=entry.modality, block=entry.block)


def _train_and_evaluate(cfg: Config, store: Any, run_dir: Path, device: Any, progress: bool) -> dict[str, Any]:
    results_path, last_path = run_dir / "results.json", run_dir / "checkpoints" / "last.pt"
    done = results_path.is_file() and last_path.is_file() and results_path.stat().st_mtime >= last_path.stat().st_mtime
    if done:
        done = int(load_checkpoint(last_path)["epoch"]) >= cfg.train.epochs
    if not done:
        train(cfg, store, run_dir, resume=True, device=device, progress=progress)
        evaluate(run_dir, store=store, device=device, progress=progress)
    return json.loads(results_path.read_text(encoding="utf-8"))


def _fuse(cfg: Config, store: Any, out_dir: Path, entry: StudyEntry, device: Any, progress: bool) -> dict[str, Any]:
    rgb, flow = (load_run(out_dir / name) for name in entry.fuses)
    if rgb.classes != flow.classes:
        raise ValueError(f"{out_dir}: {entry.fuses[0]} and {entry.fuses[1]} were trained on other classes")
    model = LateFusion(rgb.model, flow.model)
    run_dir = out_dir / entry.name
    run_dir.mkdir(parents=True, exist_ok=True)
    reports = {}
    for split in SPLITS:
        dataset = StrokeClips(store, split, "twin", cfg.model.input_size, False, cfg.data, classes=rgb.classes,
                              seed=cfg.train.seed, flow_scale=flow.flow_scale)
        if len(dataset):
            reports[split] = evaluate_model(model, dataset, rgb.classes, batch_size=cfg.train.batch_size,
                                            device=device, num_workers=cfg.data.num_workers, progress=progress,
                                            description=f"{entry.name} {split}")
            write_confusions(reports[split], run_dir, split)
    return write_results(run_dir, reports, {"model": "late fusion of " + " and ".join(entry.fuses),
                                            "checkpoint": "best"})


def _parameters(cfg: Config) -> tuple[int, int]:
    with torch.device("meta"):
        model = build_model_from_config(cfg.model)
    return count_parameters(model), count_parameters(model, exclude_fc=False)


def study_table(rows: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """The study's rows as (markdown, CSV)."""
    columns = ("model", "train_accuracy", "validation_accuracy", "test_accuracy", "best_epoch", "epochs_to_90pct",
               "epochs", "parameters_without_fc", "parameters", "train_hours")

    def percent(value: Any) -> str:
        return f"{100 * value:.1f}" if isinstance(value, float) else "–"

    def plain(value: Any) -> str:
        if value is None:
            return "–"
        return f"{value:,}" if isinstance(value, int) else (f"{value:.2f}" if isinstance(value, float) else str(value))

    lines = ["| model | train % | validation % | test % | best epoch | epochs to 90 % of best val. | epochs | "
             "parameters (no FC) | parameters | training hours |", "|---|" + "---:|" * 9]
    for row in rows:
        cells = [row["model"], *(percent(row[k]) for k in columns[1:4]), *(plain(row[k]) for k in columns[4:])]
        lines.append("| " + " | ".join(cells) + " |")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: row[k] for k in columns} for row in rows)
    return "\n".join(lines) + "\n", buffer.getvalue()


def run_study(cfg: Config, store: Any, out_dir: str | Path, *, models: Sequence[str] | None = None,
              device: Any = None, progress: bool = True) -> list[dict[str, Any]]:
    """Train and score the grid (or ``models``) into ``out_dir``; write the table and Figure 6; return the rows."""
    store = store if isinstance(store, Store) else Store(store)
    cfg = override(cfg, "model", num_classes=len(store.classes))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, curves = [], {}
    for entry in study_entries(models):
        if progress:
            logger.info("== %s (%s)", entry.label, out_dir / entry.name)
        if entry.fuses:
            results, metrics = _fuse(cfg, store, out_dir, entry, device, progress), []
            parameters = (None, None)
        else:
            entry_cfg = _entry_config(cfg, entry)
            results = _train_and_evaluate(entry_cfg, store, out_dir / entry.name, device, progress)
            metrics = read_metrics(out_dir / entry.name / "metrics.jsonl")
            curves[entry.label] = metrics
            parameters = _parameters(entry_cfg)
        best = max(metrics, key=lambda r: r["val_accuracy"], default=None)
        rows.append({"model": entry.label, "run": entry.name, "train_accuracy": results.get("train_accuracy"),
                     "validation_accuracy": results.get("validation_accuracy"),
                     "test_accuracy": results.get("test_accuracy"),
                     "best_epoch": best["epoch"] if best else None, "epochs_to_90pct": epochs_to_fraction(metrics),
                     "epochs": len(metrics) or None, "parameters_without_fc": parameters[0],
                     "parameters": parameters[1],
                     "train_hours": sum(r.get("epoch_seconds", 0.0) for r in metrics) / 3600 if metrics else None})
        markdown, table = study_table(rows)
        atomic_write_text(out_dir / "study.md", _study_markdown(markdown, cfg, store))
        atomic_write_text(out_dir / "study.csv", table)
        if curves:
            plot_validation_overlay(curves, out_dir / "fig6_validation_accuracy.png",
                                    title="Validation accuracy per epoch (paper Fig. 6)")
    return rows


def _study_markdown(table: str, cfg: Config, store: Any) -> str:
    t, h, w = cfg.model.input_size
    return (f"# Study: Tables II/III of the paper on {Path(store.root).name}\n\n"
            f"Clips {t}×{h}×{w}, {cfg.train.epochs} epochs, batch {cfg.train.batch_size}, scheduler "
            f"{cfg.train.scheduler}, lr {cfg.train.lr}. Accuracies are of each run's best-validation checkpoint on "
            "centred clips; train accuracy without augmentation.\n\n" + table +
            "\nFigure 6 (validation accuracy per epoch): `fig6_validation_accuracy.png`.\n")
