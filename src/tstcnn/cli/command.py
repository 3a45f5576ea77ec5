"""What every ``tstcnn`` subcommand is made of: its declaration, a parser with one-line errors, and user errors."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

__all__ = ["Command", "Parser", "UsageError"]


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, ``tstcnn CMD: error: ...``, with exit status 2.

    argparse prints the whole usage before the message; for commands with forty options that buries the one
    line that matters, so the usage stays in ``--help``.
    """

    commands: dict[str, Parser]  # the subcommands' parsers by name, on the top-level parser

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, the line it gets in ``tstcnn --help``, its own help, and what it runs.

    ``add_arguments`` fills the subcommand's parser; ``run`` takes the parsed arguments and returns the exit
    status. ``usage`` replaces argparse's generated usage line where that would list every option.
    """

    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    usage: str | None = None
