"""One self-contained HTML page per run: configuration, results, curves, confusion matrices, attention
maps and detection timelines.

Images are embedded as base64 data URIs and the styling is inline, so the page opens anywhere
without a network or the run folder beside it. Sections appear only when the run holds their files.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from tstcnn.io.atomic import atomic_write_text

__all__ = ["FIGURE_SECTIONS", "build_report"]

# (section title, patterns on the path relative to the run folder), in page order; a figure goes to the
# first section it matches.
FIGURE_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Training curves", ("*curve*.png", "*fig6*.png", "*validation_accuracy*.png")),
    ("Confusion matrices", ("*confusion*.png",)),
    ("Attention maps", ("*attention*.png", "*attention*.gif", "*mask*.png", "*mask*.gif")),
    ("Detection timelines", ("*timeline*.png",)),
    ("Other figures", ("*.png", "*.gif")),
)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .9em; } td, th { border: 1px solid #ddd; padding: .25em .6em; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; } pre { background: #f7f7f7; padding: 1em; overflow-x: auto; }
"""


def _image(path: Path, run_dir: Path) -> str:
    mime = "image/gif" if path.suffix.lower() == ".gif" else "image/png"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    caption = html.escape(str(path.relative_to(run_dir)))
    return f'<figure><img src="data:{mime};base64,{data}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f'<td class="num">{value:.4f}</td>'
        if isinstance(value, int):
            return f'<td class="num">{value}</td>'
        return f"<td>{html.escape(str(value))}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _results_sections(results: dict[str, Any]) -> list[str]:
    parts = []
    scalars = [(k, v) for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if scalars:
        parts.append("<h2>Results</h2>" + _table(("metric", "value"), scalars))
    per_class = results.get("per_class")
    if isinstance(per_class, dict) and per_class:
        keys = sorted({k for scores in per_class.values() if isinstance(scores, dict) for k in scores})
        rows = [[name, *(scores.get(k, "") for k in keys)] for name, scores in per_class.items()
                if isinstance(scores, dict)]
        parts.append("<h2>Per-class scores</h2>" + _table(("class", *keys), rows))
    return parts


def build_report(run_dir: str | Path, out: str | Path | None = None, title: str | None = None) -> Path:
    """Write ``run_dir/report.html`` (or ``out``) from the files the run folder holds; returns its path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    out = Path(out) if out is not None else run_dir / "report.html"
    sections = [f"<h1>{html.escape(title or f'tstcnn run: {run_dir.resolve().name}')}</h1>"]
    results_path = run_dir / "results.json"
    if results_path.is_file():
        sections += _results_sections(json.loads(results_path.read_text(encoding="utf-8")))
    for markdown in sorted(run_dir.glob("*.md")):
        sections.append(f"<h2>{html.escape(markdown.name)}</h2><pre>{html.escape(markdown.read_text('utf-8'))}</pre>")
    by_section: dict[str, list[Path]] = {heading: [] for heading, _ in FIGURE_SECTIONS}
    for path in sorted(p for p in run_dir.rglob("*") if p.suffix.lower() in (".png", ".gif") and p != out):
        relative = path.relative_to(run_dir).as_posix()
        heading = next((h for h, patterns in FIGURE_SECTIONS if any(fnmatch(relative, p) for p in patterns)), None)
        if heading is not None:
            by_section[heading].append(path)
    for heading, figures in by_section.items():
        if figures:
            sections.append(f"<h2>{heading}</h2>" + "".join(_image(p, run_dir) for p in figures))
    config_path = run_dir / "config.yaml"
    if config_path.is_file():
        sections.append(f"<h2>Configuration</h2><pre>{html.escape(config_path.read_text('utf-8'))}</pre>")
    if len(sections) == 1:
        raise ValueError(f"{run_dir}: nothing to report (no results.json, figures or config.yaml)")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(run_dir.name)}'
            f"</title><style>{_STYLE}</style></head><body>\n" + "\n".join(sections) + "\n</body></html>\n")
    atomic_write_text(out, page)
    return out
