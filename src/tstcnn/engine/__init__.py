"""Training and evaluation: the loop, the paper's re-scheduler, DDP, the study.

``train(cfg, store, out_dir, resume=False) -> run_dir`` and ``evaluate(run_dir, splits) -> results`` are
the two calls behind ``tstcnn train`` and ``tstcnn evaluate``; :func:`tstcnn.runtime.load_run` gives the
trained model.
"""

from tstcnn.engine.evaluate import evaluate, evaluate_model
from tstcnn.engine.scheduler import PaperReScheduler, build_scheduler
from tstcnn.engine.trainer import TrainData, fit, read_metrics, train

__all__ = ["evaluate", "evaluate_model", "PaperReScheduler", "build_scheduler", "TrainData", "fit", "read_metrics",
           "train"]
