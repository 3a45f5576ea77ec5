"""Training and evaluation: the loop, the paper's re-scheduler, checkpoints, DDP, metrics."""

from tstcnn.engine.checkpoint import LoadedRun, load_checkpoint, load_run, save_checkpoint
from tstcnn.engine.metrics import classification_report, confusion_matrix, normalize_rows, per_class_scores

__all__ = ["LoadedRun", "load_checkpoint", "load_run", "save_checkpoint", "classification_report",
           "confusion_matrix", "normalize_rows", "per_class_scores"]
