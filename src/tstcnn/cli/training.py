"""Training commands, the second stage of the workflow: ``train`` one model, ``evaluate`` it on every split,
``study`` the paper's grid of models over seeds (Tables II/III, Figure 6), and ``compare`` two evaluated runs
clip by clip.

``train`` and ``study`` take ``--config`` and then one flag per field of the ``model``, ``data`` and ``train``
config sections (:func:`~tstcnn.cli.options.add_config_flags`); the resolved config is written into the run
folder.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from tstcnn.cli.command import Command
from tstcnn.cli.options import (
    add_checkpoint_option,
    add_config_flags,
    add_config_option,
    add_device_option,
    config_from_args,
    integer,
    show_progress,
)
from tstcnn.engine.compare import compare_runs, comparison_text
from tstcnn.engine.evaluate import SPLITS, evaluate
from tstcnn.engine.study import FUSION, STUDY_MODELS, check_seeds, run_study, study_table
from tstcnn.engine.trainer import read_metrics, train
from tstcnn.io.atomic import atomic_write_text

__all__ = ["COMMANDS", "TRAIN", "EVALUATE", "STUDY", "COMPARE", "TRAINING_SECTIONS"]

TRAINING_SECTIONS = ("model", "data", "train")  # the config sections train and study take flags for
STUDY_SETS = ("modality", "block")  # model fields each study entry sets, so study has no flag for them


def _run_options(parser: argparse.ArgumentParser, out_help: str) -> None:
    parser.add_argument("--store", required=True, help="prepared store (tstcnn prepare --out)")
    parser.add_argument("--out", required=True, metavar="DIR", help=out_help)
    add_config_option(parser)
    add_device_option(parser)


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    _run_options(parser, "run folder to create (or resume)")
    parser.add_argument("--resume", action="store_true", help="continue the run from DIR/checkpoints/last.pt")
    for section in TRAINING_SECTIONS:
        add_config_flags(parser, section)


def _train(args: argparse.Namespace) -> int:
    run_dir = train(config_from_args(args, TRAINING_SECTIONS), args.store, args.out, resume=args.resume,
                    device=args.device, progress=show_progress(args))
    if os.environ.get("RANK", "0") == "0":
        rows = read_metrics(run_dir / "metrics.jsonl")
        best = max(rows, key=lambda r: r["val_accuracy"], default=None)
        if best is not None:
            print(f"best validation accuracy {best['val_accuracy']:.1%} at epoch {best['epoch']}; "
                  f"checkpoints in {run_dir / 'checkpoints'}; next: tstcnn evaluate {run_dir}")
    return 0


TRAIN = Command(
    "train", "train a model on a prepared store, the paper's way",
    "Train RGB, Flow, Twin (with or without attention) or an I3D stream with SGD + Nesterov and the paper's "
    "learning-rate re-scheduler. The settings start from --config and each flag below overrides one field. DIR gets "
    "config.yaml (the resolved settings), checkpoints/{best,last}.pt, metrics.jsonl, curves.png and tensorboard/. "
    "A killed run continues with --resume. For several GPUs or machines launch it with torchrun (see the README); "
    "--batch-size is per process.",
    _train_arguments, _train, usage="%(prog)s --store STORE --out DIR [--config NAME|FILE] [--resume] [settings]")


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a tstcnn train run folder")
    parser.add_argument("--split", action="append", choices=SPLITS, dest="splits",
                        help="split to score; repeat for several (default: all three)")
    parser.add_argument("--store", default=None, help="prepared store (default: the one in RUN_DIR/store.json)")
    add_checkpoint_option(parser)
    add_device_option(parser)
    parser.add_argument("--batch-size", type=integer(ge=1), metavar="N",
                        help="clips per batch (default: the run's train.batch_size)")
    parser.add_argument("--num-workers", type=integer(ge=0), metavar="N",
                        help="data-loader workers (default: the run's data.num_workers)")


def _evaluate(args: argparse.Namespace) -> int:
    results = evaluate(args.run_dir, args.splits or SPLITS, store=args.store, which=args.checkpoint,
                       device=args.device, batch_size=args.batch_size, num_workers=args.num_workers,
                       progress=show_progress(args))
    for split, report in results["splits"].items():
        print(f"{split:<11} {report['accuracy']:7.1%}  ({report['num_samples']} clips)")
    print(f"wrote {Path(args.run_dir) / 'results.json'} and summary.md, predictions_*.csv, confusion_*.png/csv")
    return 0


EVALUATE = Command(
    "evaluate", "score a trained run on train / validation / test",
    "Classify the centred clips of each split with the run's best checkpoint and write RUN_DIR/results.json "
    "(accuracy per split as fractions, per-class precision/recall/F1, confusion matrices), "
    "predictions_<split>.csv (one row per clip, for tstcnn compare), "
    "confusion_<split>[_<grouping>].png/.csv (21 classes; by type, hand, type+hand) and summary.md.",
    _evaluate_arguments, _evaluate)

STUDY_NAMES = tuple(entry.name for entry in (*STUDY_MODELS, FUSION))


def _study_arguments(parser: argparse.ArgumentParser) -> None:
    _run_options(parser, "study folder, one run folder per model and seed")
    parser.add_argument("--models", nargs="+", choices=STUDY_NAMES, metavar="NAME",
                        help=f"subset of the grid (default: all): {', '.join(STUDY_NAMES)}")
    parser.add_argument("--seeds", nargs="+", type=integer(ge=0), metavar="S",
                        help="train every model once per seed (train.seed = S), the whole grid for one seed before "
                             "the next (default: the config's train.seed, one run per model)")
    for section in TRAINING_SECTIONS:
        add_config_flags(parser, section, skip=STUDY_SETS if section == "model" else ())


def _study(args: argparse.Namespace) -> int:
    seeds = check_seeds(args.seeds) if args.seeds is not None else None  # a repeated seed fails before training
    records = run_study(config_from_args(args, TRAINING_SECTIONS), args.store, args.out, models=args.models,
                        seeds=seeds, device=args.device, progress=show_progress(args))
    print(study_table(records), end="")
    print(f"wrote {Path(args.out) / 'study.md'}, study.csv, study_runs.csv and fig6_validation_accuracy.png")
    return 0


STUDY = Command(
    "study", "train and score the paper's model grid (Tables II/III, Figure 6)",
    "Train RGB, Flow and Twin, each without and with attention, and the I3D RGB and Flow streams (scored alone and "
    "by late fusion) with the same settings; write DIR/study.md and study.csv (train/validation/test accuracy, "
    "epochs to 90% of the best validation accuracy) and DIR/fig6_validation_accuracy.png. Each model of the grid "
    "sets model.modality and model.block; every other setting starts from --config and follows the flags below. "
    "Each model is trained once per seed (--seeds; default the config's train.seed) into DIR/<model>/seed-<S>/, "
    "and the tables give the mean, standard deviation and 95% interval over seeds, attention against none (paired "
    "differences, McNemar), convergence and the paper's claims answered. Re-running continues an interrupted "
    "study.",
    _study_arguments, _study, usage="%(prog)s --store STORE --out DIR [--config NAME|FILE] [--models NAME ...] "
                                    "[--seeds S ...] [settings]")


def _compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", metavar="RUN_A", help="an evaluated run folder (tstcnn evaluate)")
    parser.add_argument("run_b", metavar="RUN_B", help="another, scored on the same clips")
    parser.add_argument("--split", choices=SPLITS, default="test", help="split to compare on (default: test)")
    parser.add_argument("--resamples", type=integer(ge=100), default=10000, metavar="N",
                        help="bootstrap resamples of the clips (default: 10000)")
    parser.add_argument("--seed", type=integer(ge=0), default=0, metavar="S", help="bootstrap seed (default: 0)")
    parser.add_argument("--out", metavar="FILE", help="also write the numbers as JSON to FILE")


def _compare(args: argparse.Namespace) -> int:
    result = compare_runs(args.run_a, args.run_b, args.split, resamples=args.resamples, seed=args.seed)
    print(comparison_text(result), end="")
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


COMPARE = Command(
    "compare", "did a change help? two evaluated runs compared clip by clip",
    "Compare the accuracy of RUN_A and RUN_B on the same clips of one split (their predictions_<split>.csv, "
    "written by tstcnn evaluate): the difference A - B with its 95% percentile bootstrap interval over clips, and "
    "McNemar's exact p-value on the clips one run gets right and the other wrong. Runs scored on other stores, "
    "classes or clips are refused.",
    _compare_arguments, _compare, usage="%(prog)s RUN_A RUN_B [--split SPLIT] [--resamples N] [--seed S] "
                                        "[--out FILE]")

COMMANDS = (TRAIN, EVALUATE, STUDY, COMPARE)
