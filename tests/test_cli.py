"""The ``tstcnn`` command line: commands in workflow order, help, config flags generated from the dataclasses,
one name per concept (and the old names, deprecated), logging, and one-line errors."""

import argparse
import logging
import signal
import subprocess
import sys

import pytest
import torch

import tstcnn.cli.reports
from tstcnn.cli import build_parser, main
from tstcnn.cli.options import config_dest, config_from_args
from tstcnn.cli.training import STUDY_SETS, TRAINING_SECTIONS
from tstcnn.config import PRESETS, field_specs
from tstcnn.io.mediaeval import AnnotationError
from tstcnn.io.video import VideoError

WORKFLOW = ("synth", "prepare", "train", "evaluate", "study", "compare", "predict", "detect", "score-classification",
            "score-detection", "visualize", "export", "analyze", "annotate", "annotations", "report", "demo", "models",
            "bench")
RUN_OPTIONS = {"train": {"--store", "--out", "--resume", "--config", "--device"},
               "study": {"--store", "--out", "--models", "--seeds", "--config", "--device"}}
PREPARE_OPTIONS = {"--source", "--layout", "--out", "--config", "--classes", "--test-labels", "--workers",
                   "--decode-threads", "--shard", "--merge", "--from", "--max-videos"}
COMMON = {"-h", "--help", "-q", "--quiet", "-v", "--verbose"}


def _commands() -> dict[str, argparse.ArgumentParser]:
    return build_parser().commands


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Visible option strings → action (deprecated aliases are hidden)."""
    return {s: a for a in parser._actions if a.help != argparse.SUPPRESS for s in a.option_strings}


def _one_line_error(capsys, command: str) -> str:
    captured = capsys.readouterr()
    assert captured.err.startswith(f"tstcnn {command}: error:") and captured.err.count("\n") == 1, captured.err
    return captured.err


def test_models_prints_table_one_next_to_ours(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for count in ("180,800", "498,420", "179,990", "497,610", "360,790", "996,030"):
        assert out.count(count) == 2, f"{count} should appear as paper and ours"
    assert "222,247,051" in out


def test_models_bad_input_size_is_one_line_error(capsys):
    assert main(["models", "--input-size", "4x8x8"]) == 2
    assert capsys.readouterr().out == ""
    assert main(["models", "--input-size", "8x8"]) == 2
    assert "needs 3 values" in _one_line_error(capsys, "models")


def test_console_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "tstcnn.cli", "--help"], capture_output=True, text=True, check=True)
    assert "usage: tstcnn" in result.stdout
    positions = [result.stdout.index(f"\n    {name} ") for name in WORKFLOW]
    assert positions == sorted(positions), "tstcnn --help lists the commands in workflow order"


def test_commands_are_in_workflow_order():
    assert tuple(_commands()) == WORKFLOW


def test_every_command_help_renders(capsys):
    """argparse %-formats help strings but not descriptions, so a literal '%%' must never reach the user."""
    assert main(["--help"]) == 0
    assert "commands, in workflow order" in capsys.readouterr().out
    for name, parser in _commands().items():
        text = parser.format_help()
        assert "%%" not in text, f"tstcnn {name} --help shows '%%'"
        assert text.startswith(f"usage: tstcnn {name}") and max(map(len, text.splitlines())) <= 120
        assert main([name, "--help"]) == 0 and capsys.readouterr().out == text


def test_train_study_prepare_flags_are_the_config_fields():
    """One flag per field (derived ones aside); no setting of train/study/prepare exists outside the config."""
    commands = _commands()
    for name in ("train", "study"):
        options = _options(commands[name])
        flags = {s for s, a in options.items() if "." in a.dest}
        skip = {f"--{f.replace('_', '-')}" for f in STUDY_SETS} if name == "study" else set()
        expected = {f"--{spec.name.replace('_', '-')}" for section in TRAINING_SECTIONS
                    for spec in field_specs(section) if not spec.derived}
        expected |= {f"--no-{spec.name.replace('_', '-')}" for section in TRAINING_SECTIONS
                     for spec in field_specs(section) if spec.type is bool}
        assert flags == expected - skip
        assert set(options) - flags == RUN_OPTIONS[name] | COMMON
    options = _options(commands["prepare"])
    assert {s for s, a in options.items() if "." in a.dest} == {f"--{s.name.replace('_', '-')}"
                                                                for s in field_specs("prep")}
    assert set(options) - {s for s, a in options.items() if "." in a.dest} == PREPARE_OPTIONS | COMMON
    assert [s.qualname for section in ("model", "prep", "data", "train") for s in field_specs(section)
            if s.derived] == ["model.num_classes"]


def _other_value(spec, current):
    """A valid value of ``spec`` other than ``current``, and how it is written on the command line."""
    if spec.choices:
        value = next(c for c in spec.choices if c != current)
    elif spec.type is tuple and spec.item_type is int:
        value = tuple(v + 1 for v in current)
    elif spec.type is tuple:
        value = (0.5, 0.25, 0.25)
    elif spec.type is int:
        value = current + 1 if spec.bounds.le is None or current < spec.bounds.le else current - 1
    elif spec.type is str:
        value = current + "x"
    else:
        value = current / 2 if current else 0.5
    text = "x".join(map(str, value)) if isinstance(value, tuple) else str(value)
    return value, text


@pytest.mark.parametrize("section", ["model", "data", "train", "prep"])
def test_each_config_flag_reaches_the_config(section):
    command, sections = ("prepare", ["prep"]) if section == "prep" else ("train", TRAINING_SECTIONS)
    required = ["--out", "o"] + (["--store", "s"] if command == "train" else [])
    base = PRESETS["paper"]
    argv, expected = [], {}
    for spec in field_specs(section):
        if spec.derived:
            continue
        current = getattr(getattr(base, section), spec.name)
        flag = spec.name.replace("_", "-")
        if spec.type is bool:
            argv.append(f"--{flag}" if not current else f"--no-{flag}")
            expected[spec.name] = not current
        else:
            expected[spec.name], text = _other_value(spec, current)
            argv += [f"--{flag}", text]
    args = build_parser().parse_args([command, *required, *argv])
    cfg = getattr(config_from_args(args, sections), section)
    assert {name: getattr(cfg, name) for name in expected} == expected
    untouched = build_parser().parse_args([command, *required, "--config", "cpu-small"])
    assert all(getattr(untouched, config_dest(spec), None) is None for spec in field_specs(section))
    assert config_from_args(untouched, sections) == PRESETS["cpu-small"]


@pytest.mark.parametrize("argv, message", [
    (["train", "--store", "s", "--out", "o", "--lr", "nan"], "train.lr must be a finite number"),
    (["train", "--store", "s", "--out", "o", "--lr", "0"], "train.lr must be > 0"),
    (["train", "--store", "s", "--out", "o", "--input-size", "8x16"], "model.input_size needs 3 values"),
    (["train", "--store", "s", "--out", "o", "--scheduler", "linear"], "allowed: paper, cosine, step, constant"),
    (["train", "--store", "s", "--out", "o", "--epochs", "2.5"], "train.epochs needs an integer"),
    (["study", "--store", "s", "--out", "o", "--modality", "rgb"], "unrecognized arguments: --modality rgb"),
    (["prepare", "--out", "o", "--max-videos", "-1"], "--max-videos: must be >= 1"),
    (["prepare", "--out", "o", "--flow", "lucas-kanade"], "allowed: deepflow, tvl1, farneback, dis"),
    (["detect", "run", "--out", "o", "--stride", "0"], "--stride: must be >= 1"),
    (["detect", "run", "--out", "o", "--smooth-width", "-4"], "--smooth-width: must be >= 1"),
    (["detect", "run", "--out", "o", "--threshold", "1"], "--threshold: must be > 0 and < 1"),
    (["predict", "run", "--sigma", "-1"], "--sigma: must be > 0"),
    (["predict", "run", "--device", "foo"], "expected auto, cpu, cuda or cuda:N, got 'foo'"),
    (["visualize", "run", "clip", "--time-steps", "0,x"], "frame numbers like 0,25,50"),
    (["train", "--out", "o"], "the following arguments are required: --store"),
])
def test_bad_values_are_refused_at_parse_time_in_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = _one_line_error(capsys, argv[0])
    assert message in err and f"(see tstcnn {argv[0]} --help)" in err


def test_cuda_device_without_cuda_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for command in (["evaluate", "run"], ["predict", "run"], ["train", "--store", "s", "--out", "o"]):
        for device in ("cuda", "cuda:1"):
            assert main([*command, "--device", device]) == 2
            assert "CUDA" in _one_line_error(capsys, command[0])
    args = build_parser().parse_args(["predict", "run"])
    assert args.device == "cpu"  # auto, resolved


def test_device_defaults_to_auto_in_every_command_that_takes_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    commands = _commands()
    takes = sorted(n for n, p in commands.items() if "--device" in _options(p))
    assert takes == ["analyze", "annotate", "demo", "detect", "evaluate", "predict", "study", "train", "visualize"]
    for name in takes:
        action = _options(commands[name])["--device"]
        assert action.default == "auto" and action.type("auto") == "cuda" and action.type("CUDA:1") == "cuda:1"


def test_one_name_per_concept():
    """--config chooses a preset, --checkpoint a checkpoint, wherever a command takes one."""
    for name, parser in _commands().items():
        options = _options(parser)
        assert "--preset" not in options and "--which" not in options, name
        if "--checkpoint" in options:
            assert options["--checkpoint"].choices == ("best", "last") and options["--checkpoint"].default == "best"
    commands = _commands()
    assert all("--config" in _options(commands[n]) for n in ("prepare", "train", "study"))
    assert all("--checkpoint" in _options(commands[n]) for n in ("evaluate", "predict", "detect", "visualize",
                                                                  "export"))


def test_deprecated_preset_still_works_with_a_warning(tmp_path, capsys):
    args = build_parser().parse_args(["prepare", "--out", "o", "--preset", "cpu-small"])
    assert args.config == "cpu-small" and config_from_args(args, ["prep"]).prep == PRESETS["cpu-small"].prep
    assert main(["prepare", "--out", str(tmp_path / "s"), "--preset", "cpu-small"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "tstcnn prepare: --preset is deprecated; use --config"
    assert err[1].startswith("tstcnn prepare: error: --source and --layout are needed")


def test_deprecated_which_still_works_with_a_warning(tmp_path, capsys):
    for command in (["predict", "run"], ["detect", "run", "--out", "o"], ["visualize", "run", "clip"],
                    ["export", "run"]):
        assert build_parser().parse_args([*command, "--which", "last"]).checkpoint == "last"
    assert main(["export", str(tmp_path / "missing"), "--which", "last", "-q"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "tstcnn export: --which is deprecated; use --checkpoint"
    assert err[1].startswith("tstcnn export: error:") and "missing" in err[1] and len(err) == 2
    assert main(["export", "run", "--which", "newest"]) == 2
    assert "invalid choice: 'newest'" in _one_line_error(capsys, "export")


def _logging_report(monkeypatch):
    """Make ``tstcnn report`` log one message per level instead of building a page."""

    def build_report(run_dir, out):
        log = logging.getLogger("tstcnn.viz.report")
        log.debug("debug line")
        log.info("info line")
        log.warning("warning line")
        return "page.html"

    monkeypatch.setattr(tstcnn.cli.reports, "build_report", build_report)


@pytest.mark.parametrize("flags, lines", [
    ([], ["info line", "warning line"]),
    (["-q"], ["warning line"]),
    (["--quiet"], ["warning line"]),
    (["-v"], ["debug line", "info line", "warning line"]),
])
def test_log_level_options_before_or_after_the_command(flags, lines, monkeypatch, capsys):
    _logging_report(monkeypatch)
    for argv in ([*flags, "report", "run"], ["report", "run", *flags]):
        assert main(argv) == 0
        captured = capsys.readouterr()
        assert captured.err.splitlines() == lines and captured.out == "wrote page.html\n"


@pytest.mark.parametrize("argv, progress", [
    (["demo"], True), (["demo", "--quiet"], False), (["-q", "demo"], False), (["demo", "-v"], True),
])
def test_quiet_turns_progress_off(argv, progress, monkeypatch, capsys):
    seen = {}

    def run_demo(out, settings, *, progress, device):
        seen.update(progress=progress)
        return {}

    monkeypatch.setattr(tstcnn.cli.reports, "run_demo", run_demo)
    monkeypatch.setattr(tstcnn.cli.reports, "summary_lines", lambda results, out: ["done"])
    assert main([*argv, "--out", "d"]) == 0
    assert seen["progress"] is progress and capsys.readouterr().out == "done\n"


@pytest.mark.parametrize("error", [
    ValueError("bad value"), VideoError("clip.mp4: cannot open video"), AnnotationError("a.xml: bad action"),
    FileNotFoundError("run/config.yaml: no such file"), KeyError("missing key"), OSError("disk full"),
])
def test_user_errors_are_one_line_with_status_two(error, monkeypatch, capsys):
    def build_report(run_dir, out):
        raise error

    monkeypatch.setattr(tstcnn.cli.reports, "build_report", build_report)
    monkeypatch.delenv("TSTCNN_DEBUG", raising=False)
    assert main(["report", "run"]) == 2
    err = _one_line_error(capsys, "report")
    assert err.strip().endswith(str(error.args[0]))
    monkeypatch.setenv("TSTCNN_DEBUG", "1")
    with pytest.raises(type(error)):
        main(["report", "run"])


def test_report_command_writes_page_or_one_line_error(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: {}\n")
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").is_file() and "report.html" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nope")]) == 2
    _one_line_error(capsys, "report")


def test_sigterm_ends_a_command_like_ctrl_c(tmp_path):
    # A child that blocks inside a command; SIGTERM must unwind it (finally blocks run) and exit 130.
    script = (
        "import sys, time\n"
        "from tstcnn.cli import main\n"
        "from tstcnn.cli import tools\n"
        "def slow(args):\n"
        "    try:\n"
        "        print('started', flush=True)\n"
        "        __import__('time').sleep(60)\n"
        "    finally:\n"
        f"        open({str(tmp_path / 'cleaned')!r}, 'w').close()\n"
        "tools.COMMANDS[0].run.__code__ = slow.__code__\n"
        "sys.exit(main(['models']))\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    assert child.stdout.readline().strip() == "started"
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130 and "interrupted" in err
    assert (tmp_path / "cleaned").exists()
