"""The ``tstcnn`` command line: one entry point, one subcommand per step of the workflow, in workflow order.

The modules follow the stages: :mod:`~tstcnn.cli.data` (synth, prepare), :mod:`~tstcnn.cli.training` (train,
evaluate, study, compare), :mod:`~tstcnn.cli.inference` (predict, detect, score-classification, score-detection,
visualize, export), :mod:`~tstcnn.cli.reports` (report, demo) and :mod:`~tstcnn.cli.tools` (models, bench);
:mod:`~tstcnn.cli.options` holds the shared options and the flags generated from the config dataclasses. They
only parse arguments and call ``tstcnn.prep``, ``tstcnn.engine``, ``tstcnn.infer`` and friends.

Messages go through :mod:`logging` to standard error (``-q`` warnings only, ``-v`` debug too); results and the
paths written go to standard output. Errors a user can fix (bad paths, bad values, unreadable files) end in one
line ``tstcnn CMD: error: ...`` and exit status 2; set ``TSTCNN_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from tstcnn import __version__
from tstcnn.cli import analysis, annotation, data, inference, reports, tools, training
from tstcnn.cli.command import Command, Parser, UsageError
from tstcnn.cli.options import add_log_options
from tstcnn.io.mediaeval import AnnotationError
from tstcnn.io.video import VideoError

__all__ = ["main", "build_parser", "configure_logging", "STAGES", "UsageError"]

logger = logging.getLogger(__name__)

STAGES: tuple[tuple[str, tuple[Command, ...]], ...] = (
    ("data", data.COMMANDS),
    ("training", training.COMMANDS),
    ("inference", inference.COMMANDS + analysis.COMMANDS),
    ("annotation", annotation.COMMANDS),
    ("reports", reports.COMMANDS),
    ("tools", tools.COMMANDS),
)

USER_ERRORS: tuple[type[BaseException], ...] = (UsageError, ValueError, KeyError, OSError, VideoError,
                                                AnnotationError)


def _command_list() -> str:
    """The commands by stage with their one-line help, for ``tstcnn --help``."""
    width = max(len(command.name) for _, commands in STAGES for command in commands) + 4
    lines = ["commands, in workflow order:"]
    for stage, commands in STAGES:
        lines.append(f"  {stage}")
        lines += [f"    {command.name:<{width}}{command.help}" for command in commands]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``tstcnn`` parser with every subcommand, in workflow order."""
    parser = Parser(
        prog="tstcnn", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fine-grained action recognition with the Twin Spatio-Temporal CNN and 3D attention (Martin et "
                    "al., ICPR 2020):\nfrom table tennis videos to MediaEval submissions.\n\n" + _command_list(),
        epilog="Run 'tstcnn COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"tstcnn {__version__}")
    add_log_options(parser, top_level=True)
    parser.commands = {}
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                       help="one of the commands above, followed by its options")
    for _, commands in STAGES:
        for command in commands:
            # No help= here: the listing above groups the commands by stage instead of argparse's flat list.
            sub = subparsers.add_parser(command.name, description=command.description, usage=command.usage)
            command.add_arguments(sub)
            add_log_options(sub)
            sub.set_defaults(run=command.run)
            parser.commands[command.name] = sub
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to the ``sys.stderr`` of the moment, which redirections and test captures may have replaced."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> object:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def configure_logging(level: int = logging.INFO) -> None:
    """Print the package's log records at ``level`` and above to standard error, as plain messages."""
    package = logging.getLogger("tstcnn")
    for handler in [h for h in package.handlers if isinstance(h, _StderrHandler)]:
        package.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    package.addHandler(handler)
    package.setLevel(level)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _interrupt_on_sigterm() -> None:
    """SIGTERM (``kill``, a scheduler's time limit) ends a command as Ctrl-C does: temporary files are removed
    and locks released by the same ``finally`` blocks, instead of the process vanishing mid-write."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tstcnn`` with ``argv`` (default: the process's); returns the exit status.

    0: done; 1: done, but some inputs were skipped; 2: bad input (one line on standard error); 130: interrupted.
    """
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # argparse would blame them on "tstcnn", not on the command that does not know them
            parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help, --version, or a usage error already printed on one line
        return int(exc.code or 0)
    configure_logging(args.log_level)
    _interrupt_on_sigterm()
    for note in getattr(args, "deprecations", []):
        logger.warning("%s", note)
    try:
        return int(args.run(args) or 0)
    except BrokenPipeError:  # output piped into a command that stopped reading (e.g. `| head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"tstcnn {args.command}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if os.environ.get("TSTCNN_DEBUG"):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"tstcnn {args.command}: error: {message}", file=sys.stderr)
        return 2
