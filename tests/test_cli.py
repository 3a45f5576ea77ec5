import subprocess
import sys

from tstcnn.cli import build_parser, main


def test_models_prints_table_one_next_to_ours(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for count in ("180,800", "498,420", "179,990", "497,610", "360,790", "996,030"):
        assert out.count(count) == 2, f"{count} should appear as paper and ours"
    assert "222,247,051" in out


def test_models_bad_input_size_is_one_line_error(capsys):
    assert main(["models", "--input-size", "4x8x8"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("tstcnn models: error:") and captured.err.count("\n") == 1


def test_console_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "tstcnn.cli", "--help"], capture_output=True, text=True, check=True)
    assert "models" in result.stdout and "usage: tstcnn" in result.stdout


def test_every_command_help_renders_its_percent_signs():
    """argparse %-formats help strings but not descriptions, so a literal '%%' must never reach the user."""
    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"train", "study", "demo", "detect"} <= set(commands)
    for name, parser in commands.items():
        assert "%%" not in parser.format_help(), f"tstcnn {name} --help shows '%%'"


def test_report_command_writes_page_or_one_line_error(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: {}\n")
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").is_file() and "report.html" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tstcnn report: error:") and err.count("\n") == 1
