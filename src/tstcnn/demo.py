"""The one-command demo: the whole pipeline on a small synthetic benchmark, on a CPU, in minutes.

``tstcnn demo --out DIR`` generates a synthetic classification benchmark (``DIR/data``), prepares it
(``DIR/store``), trains the Twin with attention with the ``cpu-small`` preset (``DIR`` is the run folder, so
``tstcnn predict DIR …`` and the other commands take it), evaluates every split, writes the MediaEval
submission for the test clips and scores it against the ground truth, draws the attention maps, and writes
the HTML report. Every step resumes: re-running the same command after an interruption finishes the work.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tstcnn.config import Config, load_config, override
from tstcnn.engine import evaluate, train
from tstcnn.engine.distributed import default_device
from tstcnn.infer.attention import visualize_attention
from tstcnn.infer.predict import PredictOptions, load_predictor, predict_store, write_predictions
from tstcnn.infer.scoring import score_classification
from tstcnn.io.atomic import atomic_write_text
from tstcnn.io.mediaeval import read_submission
from tstcnn.prep.prepare import prepare_dataset
from tstcnn.prep.store import Store
from tstcnn.runtime.checkpoint import load_run
from tstcnn.synth.generate import generate_dataset
from tstcnn.taxonomy import TTSTROKE21_CLASSES
from tstcnn.viz.report import build_report

logger = logging.getLogger(__name__)

__all__ = ["DemoSettings", "run_demo"]


@dataclass(frozen=True)
class DemoSettings:
    """What the demo generates and how it trains. The scene keeps the benchmark's default nuisance; only the
    number of clips, the frame size and the frame rate differ from ``tstcnn synth``'s defaults."""

    per_class: int = 88  # train clips per class; validation and test get a quarter each
    size: tuple[int, int] = (256, 144)
    fps: float = 20.0  # a 16-frame clip then spans most of a stroke
    seed: int = 0
    workers: int = 2
    preset: str = "cpu-small"
    epochs: int | None = 7  # more clips for fewer epochs generalise better at the same cost; None: the preset's


def _step(timings: dict[str, float], name: str, started: float) -> None:
    timings[name] = round(time.perf_counter() - started, 1)
    logger.info("[demo] %s: %.0f s", name, timings[name])


def demo_config(settings: DemoSettings) -> Config:
    return override(load_config(settings.preset), "train", epochs=settings.epochs, seed=settings.seed)


def run_demo(out: str | Path, settings: DemoSettings = DemoSettings(), *, progress: bool = True,
             device: str | None = None) -> dict[str, Any]:
    """Run the demo into ``out`` on ``device`` (CUDA when present by default) and return what
    ``out/results.json`` holds."""
    out = Path(out)
    data, store_dir = out / "data", out / "store"
    cfg = demo_config(settings)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    generate_dataset(data, "classification", settings.per_class, size=settings.size, fps=settings.fps,
                     seed=settings.seed, workers=settings.workers, progress=progress)
    _step(timings, "synthetic benchmark", started)

    started = time.perf_counter()
    truth_xml = data / "classificationTask" / "test_ground_truth.xml"
    summary = prepare_dataset(data, "mediaeval-classification", store_dir, cfg.prep, classes=TTSTROKE21_CLASSES,
                              workers=settings.workers, preset=settings.preset, test_labels=truth_xml,
                              progress=progress)
    if summary.problems:
        raise ValueError(f"preparing the synthetic benchmark failed: {summary.problems[0]}")
    _step(timings, "prepare", started)

    started = time.perf_counter()
    store = Store(store_dir)
    train(cfg, store, out, resume=True, device=device, progress=progress)
    _step(timings, "train", started)

    started = time.perf_counter()
    results = evaluate(out, ("train", "validation", "test"), store=store, device=device, progress=progress)
    # The submission takes the inference path with evaluate's settings and batches (bf16 + channels-last where
    # bf16 is fast), so that its score and the test accuracy are the same figure.
    predictor = load_predictor(out, device=str(device or default_device()))
    options = PredictOptions(aggregation="centre", windows=1, batch_size=cfg.train.batch_size)
    predictions, problems = predict_store(predictor, store, options, split="test")
    if problems:
        raise ValueError(f"classifying the test clips failed: {problems[0]}")
    submission, _ = write_predictions(out, predictions, predictor.classes.classes)
    scores = score_classification(read_submission(submission), read_submission(truth_xml), predictor.classes)
    _step(timings, "evaluate", started)

    started = time.perf_counter()
    test_ids = [entry.id for entry in store.videos("test")]
    visualize_attention(load_run(out), store, test_ids[:: max(1, len(test_ids) // 8)], out / "attention")
    report = build_report(out, title="tstcnn demo")
    _step(timings, "attention maps and report", started)

    results = {**results, "submission_accuracy": scores["accuracy"], "timings_s": timings,
               "demo": {**asdict(settings), "size": list(settings.size)},
               "files": {"submission": str(submission), "report": str(report), "store": str(store_dir),
                         "data": str(data), "checkpoint": str(out / "checkpoints" / "best.pt")}}
    atomic_write_text(out / "results.json", json.dumps(results, indent=1) + "\n")
    return results


def summary_lines(results: dict[str, Any], out: str | Path) -> list[str]:
    """The table the demo prints at the end: accuracies, time per step, and where everything is."""
    def percent(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    lines = ["", f"{'split':<12}{'accuracy':>10}"]
    for split in ("train", "validation", "test"):
        lines.append(f"{split:<12}{percent(results.get(f'{split}_accuracy')):>10}")
    lines.append(f"{'submission':<12}{percent(results.get('submission_accuracy')):>10}  (test, MediaEval scorer)")
    lines.append(f"chance: {100 / len(TTSTROKE21_CLASSES):.1f}% over {len(TTSTROKE21_CLASSES)} classes")
    lines.append("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in results["timings_s"].items()))
    out = Path(out)
    lines += ["", f"results      {out / 'results.json'}",
              f"summary      {out / 'summary.md'}",
              f"submission   {results['files']['submission']}",
              f"report       {results['files']['report']}",
              f"attention    {out / 'attention'}",
              f"next: tstcnn predict {out} VIDEO.mp4 · tstcnn visualize {out} --store {out / 'store'} …"]
    return lines
