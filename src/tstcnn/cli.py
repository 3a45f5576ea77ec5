"""The ``tstcnn`` command line: one entry point, one subcommand per step of the workflow.

This module only parses arguments and maps them onto config fields and library calls; the work is
done in ``tstcnn.prep``, ``tstcnn.engine``, ``tstcnn.infer`` and friends. Errors a user can fix
(bad paths, bad values, unreadable files) end in a one-line message and exit status 2; set
``TSTCNN_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from tstcnn import __version__

__all__ = ["main", "build_parser"]

CommandAdder = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line."""


def _parse_size(text: str) -> tuple[int, ...]:
    """``100x120x120`` or ``640x360`` to a tuple of ints."""
    try:
        values = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 100x120x120, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return values


COMMANDS: list[CommandAdder] = []


def command(add: CommandAdder) -> CommandAdder:
    """Register a function that adds one subcommand (its parser and ``func``) to the command line."""
    COMMANDS.append(add)
    return add


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tstcnn",
        description="Fine-grained action recognition with the Twin Spatio-Temporal CNN and 3D attention.",
    )
    parser.add_argument("--version", action="version", version=f"tstcnn {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from tstcnn.io.mediaeval import AnnotationError
    from tstcnn.io.video import VideoError

    return (UsageError, ValueError, KeyError, OSError, VideoError, AnnotationError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"tstcnn {args.command}: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as exc:
        if os.environ.get("TSTCNN_DEBUG"):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"tstcnn {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
