"""What training, evaluation and inference share: speed options, metrics and checkpoints.

It sits below both :mod:`tstcnn.engine` (training) and :mod:`tstcnn.infer` (using a trained model), so the
two never import each other.
"""

from tstcnn.runtime.checkpoint import LoadedRun, load_checkpoint, load_run, save_checkpoint
from tstcnn.runtime.metrics import classification_report, confusion_matrix, normalize_rows, per_class_scores

__all__ = ["LoadedRun", "load_checkpoint", "load_run", "save_checkpoint", "classification_report",
           "confusion_matrix", "normalize_rows", "per_class_scores"]
