"""Evaluation of a trained run the way the MediaEval organisers score classification.

:func:`evaluate` loads a run's best (or last) checkpoint, classifies the centred clips of each split of
the prepared store the run was trained on, and writes into the run folder: ``results.json`` (accuracy
per split as fractions, per-class precision / recall / F1, confusion matrices for the 21 classes and
the three groupings), ``predictions_<split>.csv`` (one row per clip: its index, video, frames, true and
predicted class and the probability of the prediction, so that two runs can be compared clip by clip),
``confusion_<split>[_<grouping>].png/.csv`` and ``summary.md``. :func:`evaluate_split` does the same for any
model and dataset (the study's late fusion uses it).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from tstcnn.data import StrokeClips, build_dataloader
from tstcnn.engine.distributed import default_device
from tstcnn.io.atomic import atomic_write_text
from tstcnn.prep.store import Store
from tstcnn.progress import progress as progress_bar
from tstcnn.runtime.checkpoint import load_run
from tstcnn.runtime.inference import predict_batches
from tstcnn.runtime.metrics import classification_report
from tstcnn.taxonomy import Taxonomy
from tstcnn.viz.figures import plot_confusion

logger = logging.getLogger(__name__)

__all__ = ["SPLITS", "PREDICTION_COLUMNS", "predict", "evaluate_model", "predictions_csv", "read_predictions",
           "evaluate_split", "write_confusions", "write_results", "evaluate"]

SPLITS = ("train", "validation", "test")
PREDICTION_COLUMNS = ("index", "video_id", "begin", "end", "true_class", "predicted_class", "probability")


def predict(model: nn.Module, dataset: Dataset, *, batch_size: int = 8, device: str | torch.device | None = None,
            precision: str = "fp32", channels_last: bool = False, num_workers: int = 0, progress: bool = True,
            description: str = "evaluate") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, predicted classes and class probabilities for every item of ``dataset``, in order."""
    device = torch.device(device) if device is not None else default_device()
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    loader = build_dataloader(dataset, batch_size, shuffle=False, num_workers=num_workers,
                              pin_memory=device.type == "cuda")
    with progress_bar(total=len(dataset), desc=description, unit="clip", enabled=progress) as bar:
        labels, probabilities = predict_batches(model, loader, device=device, precision=precision,
                                                channels_last=channels_last, progress=bar)
    return labels, probabilities.argmax(1) if len(labels) else np.zeros(0, np.int64), probabilities


def evaluate_model(model: nn.Module, dataset: Dataset, classes: Taxonomy, **predict_options: Any) -> dict[str, Any]:
    """:func:`~tstcnn.runtime.metrics.classification_report` of ``model`` on ``dataset``."""
    labels, predictions, _ = predict(model, dataset, **predict_options)
    return classification_report(labels, predictions, classes)


def _clip_identity(dataset: Dataset, index: int) -> tuple[str, str, str]:
    """Video id, first and end frame of clip ``index`` (empty for a dataset without segments)."""
    segments = getattr(dataset, "segments", None)
    if segments is None:
        return "", "", ""
    segment = segments[index]
    return str(segment.video_id), str(segment.begin), str(segment.end)


def predictions_csv(dataset: Dataset, labels: np.ndarray, predictions: np.ndarray, probabilities: np.ndarray,
                    classes: Taxonomy) -> str:
    """One row per clip of ``dataset`` (:data:`PREDICTION_COLUMNS`): what a paired comparison needs."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PREDICTION_COLUMNS)
    names = classes.classes
    for index, (label, predicted) in enumerate(zip(labels.tolist(), predictions.tolist())):
        writer.writerow([index, *_clip_identity(dataset, index), names[label], names[predicted],
                         f"{float(probabilities[index, predicted]):.6f}"])
    return buffer.getvalue()


def read_predictions(path: str | Path) -> list[dict[str, str]]:
    """The rows of a ``predictions_<split>.csv``, as strings keyed by :data:`PREDICTION_COLUMNS`."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in PREDICTION_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: not a predictions file (no column {', '.join(missing)})")
        return list(reader)


def evaluate_split(model: nn.Module, dataset: Dataset, classes: Taxonomy, out_dir: str | Path, split: str,
                   **predict_options: Any) -> dict[str, Any]:
    """Score ``model`` on one split and write ``predictions_<split>.csv`` and the confusion files; the report."""
    labels, predictions, probabilities = predict(model, dataset, **predict_options)
    report = classification_report(labels, predictions, classes)
    atomic_write_text(Path(out_dir) / f"predictions_{split}.csv",
                      predictions_csv(dataset, labels, predictions, probabilities, classes))
    write_confusions(report, out_dir, split)
    return report


def _confusion_csv(cm: Sequence[Sequence[int]], names: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["true \\ predicted", *names])
    for name, row in zip(names, cm):
        writer.writerow([name, *row])
    return buffer.getvalue()


def write_confusions(report: Mapping[str, Any], out_dir: str | Path, split: str = "") -> list[Path]:
    """``confusion[_<split>].png/.csv`` for the fine classes and ``confusion[_<split>]_<grouping>.*`` per grouping."""
    out_dir = Path(out_dir)
    matrices = [("", report["classes"], report["confusion_matrix"])]
    matrices += [(f"_{g}", v["names"], v["confusion_matrix"]) for g, v in report.get("groupings", {}).items()]
    written = []
    for suffix, names, cm in matrices:
        stem = out_dir / f"confusion{'_' + split if split else ''}{suffix}"
        atomic_write_text(stem.with_suffix(".csv"), _confusion_csv(cm, names))
        title = f"{split or 'classes'}{' by ' + suffix[1:].replace('_', '+') if suffix else ''}"
        written += [stem.with_suffix(".csv"), plot_confusion(np.asarray(cm), names, stem.with_suffix(".png"), title)]
    return written


def _summary_markdown(results: Mapping[str, Any]) -> str:
    lines = [f"# Evaluation of {results.get('model', 'the model')} ({results.get('checkpoint', '')} checkpoint, "
             f"epoch {results.get('epoch', '?')})", "",
             "| split | clips | accuracy | macro F1 | type | hand | type+hand |", "|---|---:|---:|---:|---:|---:|---:|"]
    for split, report in results["splits"].items():
        groups = [report.get("groupings", {}).get(g, {}).get("accuracy") for g in ("type", "hand", "type_hand")]
        cells = [f"{g:.1%}" if g is not None else "–" for g in groups]
        lines.append(f"| {split} | {report['num_samples']} | {report['accuracy']:.1%} | {report['macro_f1']:.3f} | "
                     + " | ".join(cells) + " |")
    primary = results.get("primary_split")
    if primary:
        lines += ["", f"## Per class ({primary})", "", "| class | precision | recall | F1 | support |",
                  "|---|---:|---:|---:|---:|"]
        for name, s in results["per_class"].items():
            lines.append(f"| {name} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['support']} |")
        lines += ["", f"Confusion matrices (rows = true class, normalised per row): `confusion_{primary}.png` and "
                      f"`.csv`, and per grouping `confusion_{primary}_<type|hand|type_hand>.*`."]
    return "\n".join(lines) + "\n"


def write_results(out_dir: str | Path, split_reports: Mapping[str, Mapping[str, Any]],
                  extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge split reports into ``out_dir/results.json`` (keeping splits evaluated before) and write ``summary.md``.

    The top-level ``per_class``, ``confusion_matrix`` and ``groupings`` are those of the primary split: test when
    evaluated, else validation, else train.
    """
    out_dir = Path(out_dir)
    path = out_dir / "results.json"
    previous = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    splits = {**previous.get("splits", {}), **split_reports}
    splits = {s: splits[s] for s in (*SPLITS, *sorted(set(splits) - set(SPLITS))) if s in splits}
    primary = next((s for s in ("test", "validation", "train") if s in splits), next(iter(splits), None))
    results: dict[str, Any] = {**previous, **(extra or {})}
    for split in SPLITS:
        results[f"{split}_accuracy"] = splits[split]["accuracy"] if split in splits else None
    results["primary_split"] = primary
    if primary is not None:
        results["per_class"] = splits[primary]["per_class"]
        results["confusion_matrix"] = splits[primary]["confusion_matrix"]
        results["classes"] = splits[primary]["classes"]
        results["groupings"] = splits[primary]["groupings"]
    results["splits"] = splits
    atomic_write_text(path, json.dumps(results, indent=1) + "\n")
    atomic_write_text(out_dir / "summary.md", _summary_markdown(results))
    return results


def _store_of(run_dir: Path, store: Any) -> Store:
    if store is not None:
        return store if isinstance(store, Store) else Store(store)
    info_path = run_dir / "store.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    if not info.get("path"):
        raise ValueError(f"{run_dir}: no store recorded in store.json; pass --store")
    return Store(info["path"])


def evaluate(run_dir: str | Path, splits: Sequence[str] = SPLITS, *, store: Any = None, which: str = "best",
             device: str | torch.device | None = None, batch_size: int | None = None,
             num_workers: int | None = None, datasets: Mapping[str, Dataset] | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Score a run's checkpoint on ``splits``; write ``results.json``, ``summary.md``, predictions and confusions.

    Args:
        run_dir: a training run folder.
        splits: among ``train``, ``validation``, ``test``; empty splits are skipped with a note.
        store: the prepared store (default: the one recorded in ``RUN_DIR/store.json``).
        which: ``best`` or ``last`` checkpoint.
        datasets: split → dataset, instead of reading the store (for tests and custom data).

    Returns:
        The results dict written to ``results.json``.
    """
    run_dir = Path(run_dir)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ValueError(f"unknown split(s) {', '.join(unknown)}; allowed: {', '.join(SPLITS)}")
    run = load_run(run_dir, which, device="cpu")
    cfg = run.config
    if datasets is None:
        source = _store_of(run_dir, store)
        datasets = {s: StrokeClips(source, s, cfg.model.modality, cfg.model.input_size, False, cfg.data,
                                   classes=run.classes, seed=cfg.train.seed, flow_scale=run.flow_scale)
                    for s in splits}
    options = {"batch_size": batch_size or cfg.train.batch_size, "device": device, "precision": cfg.train.precision,
               "channels_last": cfg.train.channels_last,
               "num_workers": cfg.data.num_workers if num_workers is None else num_workers, "progress": progress}
    reports = {}
    for split in splits:
        dataset = datasets[split]
        if len(dataset) == 0:
            logger.info("%s: no labelled clips, skipped", split)
            continue
        reports[split] = evaluate_split(run.model, dataset, run.classes, run_dir, split,
                                        description=f"evaluate {split}", **options)
    if not reports:
        raise ValueError(f"{run_dir}: none of the splits {', '.join(splits)} has clips to evaluate")
    model = cfg.model
    extra = {"model": f"{model.modality}/{model.block}×{model.num_blocks}", "checkpoint": which, "epoch": run.epoch,
             "checkpoint_path": str(run.path), "frame_stride": cfg.data.frame_stride}
    return write_results(run_dir, reports, extra)
