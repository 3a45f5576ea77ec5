"""Options shared by several ``tstcnn`` commands, the config flags generated from the config dataclasses, and
argparse types that refuse bad numbers and devices at parse time.

One name per concept: ``--config NAME|FILE`` chooses a preset, ``--checkpoint best|last`` a checkpoint and
``--device auto|cpu|cuda|cuda:N`` a device, in every command that takes one. The names they replace stay
accepted as hidden aliases that log a one-line deprecation warning.

The training and preparation settings are not listed here: :func:`add_config_flags` makes one flag per field
of a config section from :func:`tstcnn.config.field_specs` (type, allowed values, bounds, help), so a field
added to the dataclass is a flag without any change to the command line.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Callable, Collection, Iterable
from typing import Any

import torch

from tstcnn.config import (
    PRESETS,
    Bounds,
    Config,
    FieldSpec,
    check_config,
    field_specs,
    load_config,
    override,
    parse_size,
)
from tstcnn.engine.distributed import default_device
from tstcnn.runtime.checkpoint import CHECKPOINTS

__all__ = ["CHECKPOINTS", "add_log_options", "show_progress", "add_deprecated_alias", "integer", "number", "device",
           "add_config_option", "add_checkpoint_option", "add_device_option", "add_config_flags", "config_from_args",
           "config_dest", "config_type"]



def add_log_options(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """``-q/--quiet`` and ``-v/--verbose``, accepted before and after the command name.

    The subcommands' copies default to ``SUPPRESS`` so that they do not overwrite a value given before the command.
    """
    default = logging.INFO if top_level else argparse.SUPPRESS
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", dest="log_level", action="store_const", const=logging.WARNING,
                       default=default, help="warnings and errors only: no progress bars or progress lines")
    group.add_argument("-v", "--verbose", dest="log_level", action="store_const", const=logging.DEBUG,
                       default=default, help="debug messages too")


def show_progress(args: argparse.Namespace) -> bool:
    """Whether the library reports progress (a bar on a terminal, a log line per 10 % elsewhere): not with -q."""
    return getattr(args, "log_level", logging.INFO) <= logging.INFO


class _DeprecatedAlias(argparse.Action):
    """An old option name: stores into the new option's destination and records a note that ``main`` logs."""

    def __init__(self, option_strings: list[str], dest: str, replacement: str = "", **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.replacement = replacement

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        note = f"{parser.prog}: {option_string} is deprecated; use {self.replacement}"
        namespace.deprecations = [*getattr(namespace, "deprecations", []), note]


def add_deprecated_alias(parser: argparse.ArgumentParser, old: str, action: argparse.Action) -> None:
    """Accept ``old`` as a hidden alias of the option ``action`` (same type and choices), with a warning."""
    parser.add_argument(old, dest=action.dest, action=_DeprecatedAlias, replacement=action.option_strings[-1],
                        type=action.type, choices=action.choices, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def _bounded(convert: Callable[[str], Any], what: str, bounds: Bounds) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        try:
            bounds.check(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    parse.__name__ = what
    return parse


def integer(*, ge: int | None = None, le: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer within the inclusive bounds ``ge`` and ``le``."""
    return _bounded(int, "an integer", Bounds(ge=ge, le=le))


def number(*, ge: float | None = None, gt: float | None = None, le: float | None = None,
           lt: float | None = None) -> Callable[[str], float]:
    """An argparse type: a finite number (NaN and infinities refused) within inclusive (``ge``, ``le``) or
    exclusive (``gt``, ``lt``) bounds."""
    return _bounded(float, "a number", Bounds(ge=ge, gt=gt, le=le, lt=lt))


def device(text: str) -> str:
    """An argparse type: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` as a torch device name, ``auto`` resolved.

    A CUDA device that this torch build or machine does not have is refused here, so that the command fails
    before any work with one line instead of deep in the first ``.to(device)``.
    """
    name = text.strip().lower()
    if name == "auto":
        return str(default_device())
    match = re.fullmatch(r"cpu|cuda(?::(\d+))?", name)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA support" if torch.version.cuda is None else "no CUDA device is visible"
            raise argparse.ArgumentTypeError(f"{text!r}: {why}; use --device cpu or auto")
        if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return name


def add_config_option(parser: argparse.ArgumentParser, default: str = "paper") -> None:
    """``--config NAME|FILE`` (old name ``--preset``): the preset or YAML file the settings start from."""
    action = parser.add_argument(
        "--config", default=default, metavar="NAME|FILE",
        help=f"preset ({', '.join(PRESETS)}) or YAML config file that the settings start from; the setting flags "
             f"override it (default: {default})")
    add_deprecated_alias(parser, "--preset", action)


def add_checkpoint_option(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint best|last`` (old name ``--which``): which checkpoint of a run folder is used."""
    action = parser.add_argument("--checkpoint", choices=CHECKPOINTS, default="best",
                                 help="checkpoint of RUN_DIR: best (highest validation accuracy) or last (default: "
                                      "best)")
    add_deprecated_alias(parser, "--which", action)


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda|cuda:N``, default ``auto`` (CUDA when available, else the CPU)."""
    parser.add_argument("--device", type=device, default="auto", metavar="auto|cpu|cuda|cuda:N",
                        help="torch device; auto: CUDA when available, else the CPU (default: auto)")


def config_dest(spec: FieldSpec) -> str:
    """The attribute of the parsed arguments that holds a config field's flag (``train.lr``)."""
    return spec.qualname


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return "x".join(_show(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _field_help(spec: FieldSpec) -> str:
    shown = {name: _show(getattr(getattr(cfg, spec.section), spec.name)) for name, cfg in PRESETS.items()}
    if len(set(shown.values())) == 1:
        values = f"all presets: {next(iter(shown.values()))}"
    else:
        values = "; ".join(f"{name}: {value}" for name, value in shown.items())
    return f"{spec.help} ({values})".replace("%", "%%")


def config_type(section: str, name: str) -> Callable[[str], Any]:
    """The argparse type of the flag of config field ``section.name``, for commands that take one field alone."""
    return _field_type(next(spec for spec in field_specs(section) if spec.name == name))


def _field_type(spec: FieldSpec) -> Callable[[str], Any]:
    """An argparse type converting a flag's text to a value of ``spec``'s type and checking it like the config."""

    def parse(text: str) -> Any:
        try:
            if spec.type is tuple:
                value = parse_size(text) if spec.item_type is int else tuple(float(v) for v in text.lower().split("x"))
            elif text.strip().lower() in spec.words:
                value = text.strip().lower()
            elif spec.type in (int, float):
                value = spec.type(text)
            else:
                value = text
            spec.check(value)
        except ValueError as exc:
            message = str(exc) if spec.qualname in str(exc) else f"{spec.qualname} needs {_kind(spec)}, got {text!r}"
            raise argparse.ArgumentTypeError(message) from None
        return value

    parse.__name__ = spec.qualname
    return parse


def _kind(spec: FieldSpec) -> str:
    if spec.type is tuple:
        return f"{spec.length} numbers like {spec.metavar or 'AxBxC'}"
    return ("an integer" if spec.type is int else "a number") + "".join(f" or {word}" for word in spec.words)


def add_config_flags(parser: argparse.ArgumentParser, section: str, *, skip: Collection[str] = ()) -> None:
    """One flag per field of config ``section`` except ``skip`` and derived fields; a flag left out is ``None``.

    ``--field-name VALUE``, ``--x/--no-x`` for switches, ``AxBxC`` for tuples; choices, bounds and help come
    from the field (:func:`tstcnn.config.setting`), with each preset's value after the help.
    """
    group = parser.add_argument_group(f"{section} settings",
                                      f"fields of the config section '{section}'; a flag left out keeps the value of "
                                      "--config")
    for spec in field_specs(section):
        if spec.derived or spec.name in skip:
            continue
        flag = "--" + spec.name.replace("_", "-")
        common = {"dest": config_dest(spec), "default": None, "help": _field_help(spec)}
        if spec.type is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        else:
            metavar = spec.metavar or (None if spec.choices else "N" if spec.type is int else "X")
            group.add_argument(flag, type=_field_type(spec), choices=spec.choices, metavar=metavar, **common)


def config_from_args(args: argparse.Namespace, sections: Iterable[str]) -> Config:
    """The ``--config`` preset or file overlaid with the config flags of ``sections`` that were given."""
    cfg = load_config(args.config)
    for section in sections:
        cfg = override(cfg, section, **{spec.name: getattr(args, config_dest(spec), None)
                                        for spec in field_specs(section)})
    return check_config(cfg)
