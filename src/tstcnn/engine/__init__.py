"""Training and evaluation: the loop, the paper's re-scheduler, checkpoints, DDP, metrics, the study.

``train(cfg, store, out_dir, resume=False) -> run_dir`` and ``evaluate(run_dir, splits) -> results`` are
the two calls behind ``tstcnn train`` and ``tstcnn evaluate``; ``load_run(run_dir)`` gives the trained model.
(``tstcnn.engine.evaluate`` is the function; its module is imported as ``from tstcnn.engine.evaluate import …``.)
"""

from tstcnn.engine.checkpoint import LoadedRun, load_checkpoint, load_run, save_checkpoint
from tstcnn.engine.evaluate import evaluate, evaluate_model
from tstcnn.engine.metrics import classification_report, confusion_matrix, normalize_rows, per_class_scores
from tstcnn.engine.scheduler import PaperReScheduler, build_scheduler
from tstcnn.engine.trainer import TrainData, fit, read_metrics, train

__all__ = ["LoadedRun", "load_checkpoint", "load_run", "save_checkpoint", "evaluate", "evaluate_model",
           "classification_report", "confusion_matrix", "normalize_rows", "per_class_scores", "PaperReScheduler",
           "build_scheduler", "TrainData", "fit", "read_metrics", "train"]
