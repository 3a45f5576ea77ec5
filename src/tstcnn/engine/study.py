"""The paper's comparison (Tables II and III, Figure 6): every model trained the same way on one store, per seed.

The grid: RGB, Flow and Twin, each without and with attention blocks, and the I3D baseline trained on
RGB and on flow separately, whose softmax scores are averaged for "I3D RGB + Flow" (late fusion, no
training of its own). Each model × seed is one run folder ``OUT/<model>/seed-<s>`` (``rgb-none``,
``twin-attention``, ``i3d-rgb``…) trained with ``train.seed = s`` by :func:`tstcnn.engine.trainer.train` and
scored by :func:`tstcnn.engine.evaluate.evaluate`; runs go seed-major, so a partial study is a complete
single-seed one first. After every run the study rewrites ``study.md``, ``study.csv``, ``study_runs.csv`` and
``study_stats.json`` (:mod:`tstcnn.engine.study_report`: means and intervals over seeds, attention against
none, convergence, the paper's claims) and ``fig6_validation_accuracy.png``. Re-running the same command
continues: finished runs are kept, interrupted ones resume from their last checkpoint.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tstcnn.config import Config, override
from tstcnn.data import StrokeClips, clip_span, store_frame_stride
from tstcnn.engine.evaluate import SPLITS, evaluate, evaluate_split, write_results
from tstcnn.engine.study_report import (
    accuracy_table,
    attention_comparisons,
    claims,
    model_summaries,
    report_markdown,
    runs_csv,
    stats_json,
    summary_csv,
)
from tstcnn.engine.trainer import read_metrics, train
from tstcnn.io.atomic import atomic_write_text
from tstcnn.models import LateFusion, build_model_from_config, count_parameters
from tstcnn.prep.store import Store
from tstcnn.runtime.checkpoint import load_checkpoint, load_run
from tstcnn.taxonomy import GROUPINGS
from tstcnn.viz.figures import plot_validation_bands

logger = logging.getLogger(__name__)

__all__ = ["StudyEntry", "STUDY_MODELS", "FUSION", "DIVERGENCE_FACTOR", "study_entries", "run_folder", "check_seeds",
           "epochs_to_fraction", "convergence", "run_record", "run_study", "write_study", "study_table"]


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
# A healthy run ends near its lowest training loss, one that broke down far above it (docs/study.md).
DIVERGENCE_FACTOR = 2.0


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


def run_folder(out_dir: str | Path, name: str, seed: int) -> Path:
    """Where the study keeps model ``name`` trained with ``seed``: ``OUT/<name>/seed-<seed>``."""
    return Path(out_dir) / name / f"seed-{seed}"


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """The seeds as a list; a ValueError when there are none, one is negative, or one repeats."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("no seeds given")
    negative = [s for s in seeds if s < 0]
    if negative:
        raise ValueError(f"seeds must be ≥ 0, got {negative[0]}")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ValueError(f"seed {', '.join(map(str, repeated))} is given more than once; give each seed once")
    return seeds


def _evaluated(run_dir: Path, last_path: Path) -> bool:
    """``results.json`` is newer than the last checkpoint, with a predictions file for every split it scored."""
    results_path = run_dir / "results.json"
    if not (results_path.is_file() and results_path.stat().st_mtime >= last_path.stat().st_mtime):
        return False
    splits = json.loads(results_path.read_text(encoding="utf-8")).get("splits", {})
    return all((run_dir / f"predictions_{split}.csv").is_file() for split in splits)


def _train_and_evaluate(cfg: Config, store: Any, run_dir: Path, device: Any, progress: bool) -> dict[str, Any]:
    last_path = run_dir / "checkpoints" / "last.pt"
    trained = last_path.is_file() and int(load_checkpoint(last_path)["epoch"]) >= cfg.train.epochs
    if not trained:
        train(cfg, store, run_dir, resume=True, device=device, progress=progress)
    if not trained or not _evaluated(run_dir, last_path):
        evaluate(run_dir, store=store, device=device, progress=progress)
    return json.loads((run_dir / "results.json").read_text(encoding="utf-8"))


def _fuse(cfg: Config, store: Any, run_dir: Path, streams: Sequence[Path], device: Any,
          progress: bool) -> dict[str, Any]:
    rgb, flow = (load_run(path) for path in streams)
    if rgb.classes != flow.classes:
        raise ValueError(f"{streams[0]} and {streams[1]} were trained on other classes")
    model = LateFusion(rgb.model, flow.model)
    run_dir.mkdir(parents=True, exist_ok=True)
    if (streams[0] / "store.json").is_file():  # compare finds the store the fused streams read
        atomic_write_text(run_dir / "store.json", (streams[0] / "store.json").read_text(encoding="utf-8"))
    reports = {}
    for split in SPLITS:
        dataset = StrokeClips(store, split, "twin", cfg.model.input_size, False, cfg.data, classes=rgb.classes,
                              seed=cfg.train.seed, flow_scale=flow.flow_scale)
        if len(dataset):
            reports[split] = evaluate_split(model, dataset, rgb.classes, run_dir, split,
                                            batch_size=cfg.train.batch_size, device=device,
                                            num_workers=cfg.data.num_workers, progress=progress,
                                            description=f"{run_dir.parent.name} {split}")
    return write_results(run_dir, reports, {"model": "late fusion of " + " and ".join(map(str, streams)),
                                            "checkpoint": "best"})


def _parameters(cfg: Config) -> tuple[int, int]:
    with torch.device("meta"):
        model = build_model_from_config(cfg.model)
    return count_parameters(model), count_parameters(model, exclude_fc=False)


def convergence(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Best epoch (the first at the best validation accuracy), epochs to 90 % / 95 % of it, and two flags.

    ``plateaued`` is False when the best epoch lies in the last 10 % of the epochs run: the run was still
    improving, so its best accuracy and its epoch counts are lower bounds. ``diverged`` is True when the last
    epoch's training loss is more than :data:`DIVERGENCE_FACTOR` times the run's lowest: training broke down
    after its best checkpoint, which the tables score, so its numbers undersell the model.
    """
    losses = [float(r["train_loss"]) for r in rows if r.get("train_loss") is not None]
    diverged = None if not losses else not losses[-1] <= DIVERGENCE_FACTOR * min(losses)
    scored = [r for r in rows if r.get("val_accuracy") is not None]
    if not scored:
        return {"best_epoch": None, "best_val_accuracy": None, "epochs": len(rows) or None, "epochs_to_90pct": None,
                "epochs_to_95pct": None, "plateaued": None, "diverged": diverged}
    best = max(scored, key=lambda r: r["val_accuracy"])
    epochs = max(int(r["epoch"]) for r in rows)
    return {"best_epoch": int(best["epoch"]), "best_val_accuracy": float(best["val_accuracy"]), "epochs": epochs,
            "epochs_to_90pct": epochs_to_fraction(scored, 0.9), "epochs_to_95pct": epochs_to_fraction(scored, 0.95),
            "plateaued": int(best["epoch"]) <= 0.9 * epochs, "diverged": diverged}


def run_record(entry: StudyEntry, seed: int, run_dir: Path, results: dict[str, Any],
               metrics: Sequence[dict[str, Any]], parameters: tuple[int | None, int | None]) -> dict[str, Any]:
    """One run's row: accuracies per split and grouping, convergence, size and training time."""
    record: dict[str, Any] = {"model": entry.name, "label": entry.label, "seed": seed, "path": str(run_dir),
                              "run": f"{entry.name}/{run_dir.name}"}
    splits = results.get("splits", {})
    for split in SPLITS:
        report = splits.get(split, {})
        record[f"{split}_accuracy"] = report.get("accuracy")
        for grouping in GROUPINGS:
            record[f"{split}_{grouping}_accuracy"] = report.get("groupings", {}).get(grouping, {}).get("accuracy")
    record |= convergence(metrics) if metrics else {k: None for k in convergence([])}
    record["parameters_without_fc"], record["parameters"] = parameters
    record["train_hours"] = sum(r.get("epoch_seconds", 0.0) for r in metrics) / 3600 if metrics else None
    return record


def _fusion_current(run_dir: Path, streams: Sequence[Path]) -> bool:
    """The fused run's results are newer than both streams' and have their predictions."""
    results = run_dir / "results.json"
    if not results.is_file() or not all((s / "results.json").is_file() for s in streams):
        return False
    newest = max((s / "results.json").stat().st_mtime for s in streams)
    return results.stat().st_mtime >= newest and _evaluated(run_dir, streams[0] / "results.json")


def _run_one(cfg: Config, store: Any, out_dir: Path, entry: StudyEntry, seed: int, device: Any,
             progress: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train / resume / skip one model × seed (fuse, for the late fusion); its record and metrics rows."""
    run_dir = run_folder(out_dir, entry.name, seed)
    seeded = override(cfg, "train", seed=seed)
    if progress:
        logger.info("== %s, seed %d (%s)", entry.label, seed, run_dir)
    if entry.fuses:
        streams = [run_folder(out_dir, name, seed) for name in entry.fuses]
        if _fusion_current(run_dir, streams):
            results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
        else:
            results = _fuse(seeded, store, run_dir, streams, device, progress)
        return run_record(entry, seed, run_dir, results, [], (None, None)), []
    entry_cfg = _entry_config(seeded, entry)
    results = _train_and_evaluate(entry_cfg, store, run_dir, device, progress)
    metrics = read_metrics(run_dir / "metrics.jsonl")
    return run_record(entry, seed, run_dir, results, metrics, _parameters(entry_cfg)), metrics


def run_study(cfg: Config, store: Any, out_dir: str | Path, *, models: Sequence[str] | None = None,
              seeds: Sequence[int] | None = None, device: Any = None, progress: bool = True) -> list[dict[str, Any]]:
    """Train and score the grid (or ``models``) once per seed into ``out_dir``; write the tables and Figure 6.

    Runs go seed-major (the whole grid for the first seed, then the next), into ``OUT/<model>/seed-<s>`` with
    ``train.seed = s``; ``seeds`` defaults to the config's ``train.seed``. The tables are rewritten after every
    run, so an interrupted study leaves complete tables of what it finished. Returns one record per run.
    """
    seeds = check_seeds([cfg.train.seed] if seeds is None else seeds)
    entries = study_entries(models)
    store = store if isinstance(store, Store) else Store(store)
    cfg = override(cfg, "model", num_classes=len(store.classes))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    curves: dict[str, list[list[dict[str, Any]]]] = {}
    for seed in seeds:
        for entry in entries:
            record, metrics = _run_one(cfg, store, out_dir, entry, seed, device, progress)
            records.append(record)
            if metrics:
                curves.setdefault(entry.label, []).append(metrics)
            try:
                write_study(out_dir, records, entries, curves, cfg, store, seeds)
            except Exception:  # a fault in the tables must not stop a long study: its runs are what counts
                logger.exception("could not write the study tables after %s seed %d; the run is kept", entry.name,
                                 seed)
    return records


def write_study(out_dir: Path, records: Sequence[dict[str, Any]], entries: Sequence[StudyEntry],
                curves: dict[str, list[list[dict[str, Any]]]], cfg: Config, store: Any,
                seeds: Sequence[int]) -> None:
    """``study.md``, ``study.csv``, ``study_runs.csv``, ``study_stats.json`` and ``fig6_validation_accuracy.png``
    from the runs so far."""
    summaries = model_summaries(records, [(e.name, e.label) for e in entries])
    comparisons, found = attention_comparisons(records, out_dir), claims(records)
    body = report_markdown(summaries, comparisons, found)
    planned = len(seeds) * len(entries)
    atomic_write_text(out_dir / "study.md", _study_markdown(body, cfg, store, seeds, len(records), planned))
    atomic_write_text(out_dir / "study.csv", summary_csv(summaries))
    atomic_write_text(out_dir / "study_runs.csv", runs_csv(records))
    atomic_write_text(out_dir / "study_stats.json", stats_json(summaries, comparisons, found))
    if curves:
        plot_validation_bands(curves, out_dir / "fig6_validation_accuracy.png",
                              title="Validation accuracy per epoch (paper Fig. 6): mean over seeds ± 1 sd")


def study_table(records: Sequence[dict[str, Any]]) -> str:
    """The accuracy table of the runs' models over seeds, as markdown (what ``tstcnn study`` prints)."""
    names = list(dict.fromkeys((r["model"], r["label"]) for r in records))
    return "\n".join(accuracy_table(model_summaries(records, names))) + "\n"


def _study_markdown(body: str, cfg: Config, store: Any, seeds: Sequence[int], finished: int, planned: int) -> str:
    t, h, w = cfg.model.input_size
    stride = store_frame_stride(cfg.data.frame_stride, store, t)
    every = f" of one frame in {stride} ({clip_span(t, stride)} source frames)" if stride > 1 else ""
    return (f"# Study: Tables II/III of the paper on {Path(store.root).name}\n\n"
            f"Clips {t}×{h}×{w}{every}, {cfg.train.epochs} epochs, batch {cfg.train.batch_size}, scheduler "
            f"{cfg.train.scheduler}, lr {cfg.train.lr}; seeds {', '.join(map(str, seeds))} "
            f"({finished} of {planned} runs finished). Accuracies are of each run's best-validation checkpoint on "
            "centred clips; train accuracy without augmentation. Each run is `<model>/seed-<s>/`; "
            "`study_runs.csv` has one row per run.\n\n" + body +
            "\nFigure 6 (validation accuracy per epoch, mean over seeds with a ± 1 sd band): "
            "`fig6_validation_accuracy.png`.\n")
