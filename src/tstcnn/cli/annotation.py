"""Annotation commands: ``annotate`` (the local web page over a project folder) and ``annotations`` (import,
export and agreement of a project's strokes from the command line)."""

from __future__ import annotations

from tstcnn.cli.command import Command

__all__ = ["COMMANDS"]

COMMANDS: tuple[Command, ...] = ()
