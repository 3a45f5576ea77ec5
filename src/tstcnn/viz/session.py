"""What a coach opens after ``tstcnn analyze``: the session figure and a self-contained ``index.html``.

The page has inline styling and no scripts; it links the stroke clips, the figure and the detection timelines by
relative paths, so the analysis folder can be copied or zipped as a whole and opened from disk without a server.
Every label (class names, video names, problems) is HTML-escaped: names come from files a user supplied.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from tstcnn.io.atomic import atomic_write_text
from tstcnn.viz.figures import save_figure

__all__ = ["plot_session", "write_session_page"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .88em; margin: .5em 0; }
td, th { border: 1px solid #ddd; padding: .2em .5em; vertical-align: top; }
th { background: #f4f4f4; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; } .low { color: #a33; } .note { color: #555; font-size: .9em; }
ul.problems li { color: #a33; } .counts { display: flex; gap: 2em; flex-wrap: wrap; align-items: flex-start; }
"""


def _bars(axis: Any, counts: Mapping[str, int], title: str) -> None:
    names = list(counts)
    axis.barh(range(len(names)), [counts[n] for n in names], color="#4a7fb5")
    axis.set_yticks(range(len(names)), names, fontsize=7 if len(names) > 8 else 9)
    axis.invert_yaxis()
    axis.set_title(title, fontsize=10)
    axis.set_xlabel("strokes")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
    for i, name in enumerate(names):
        axis.text(counts[name], i, f" {counts[name]}", va="center", fontsize=7)


def plot_session(stats: Mapping[str, Any], path: str | Path) -> Path:
    """Strokes per class, per type and per hand over the whole session, and strokes per minute of each video.

    ``stats`` is :func:`tstcnn.infer.analyze.session_statistics`'s output (``total`` and ``videos``).
    """
    total = stats["total"]
    videos = stats["videos"]
    figure = plt.figure(figsize=(12, 6.5))
    grid = figure.add_gridspec(2, 3, width_ratios=[1.6, 1, 1], height_ratios=[1, 1])
    _bars(figure.add_subplot(grid[:, 0]), total["by_class"], "strokes per class")
    _bars(figure.add_subplot(grid[0, 1]), total["by_type"], "per type")
    _bars(figure.add_subplot(grid[0, 2]), total["by_hand"], "per hand")
    rate = figure.add_subplot(grid[1, 1:])
    names = list(videos)
    rate.bar(range(len(names)), [videos[n]["per_minute"] for n in names], color="#d08c3a")
    rate.set_xticks(range(len(names)), names, rotation=30 if len(names) > 4 else 0, ha="right" if len(names) > 4
                    else "center", fontsize=7)
    rate.set_ylabel("strokes per minute")
    rate.set_title("per video", fontsize=10)
    figure.suptitle(f"{total['strokes']} strokes in {total['minutes']:.1f} min ({total['per_minute']:.1f} per "
                    f"minute), mean confidence {total['mean_confidence']:.2f}", fontsize=11)
    figure.tight_layout()
    return save_figure(figure, path, dpi=100)


def _link(relative: str) -> str:
    """A relative URL of a path under the analysis folder (each part percent-encoded), HTML-escaped."""
    return html.escape("/".join(quote(part) for part in relative.split("/")))


def _counts_table(title: str, counts: Mapping[str, int]) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td class=num>{v}</td></tr>" for k, v in counts.items())
    return f"<table><tr><th>{html.escape(title)}</th><th>strokes</th></tr>{rows}</table>"


def _summary_table(stats: Mapping[str, Any]) -> str:
    header = ("<tr><th>video</th><th>minutes</th><th>strokes</th><th>per minute</th><th>mean confidence</th>"
              "</tr>")
    rows = []
    for name, video in [*stats["videos"].items(), ("all videos", stats["total"])]:
        rows.append(f"<tr><td>{html.escape(name)}</td><td class=num>{video['minutes']:.2f}</td>"
                    f"<td class=num>{video['strokes']}</td><td class=num>{video['per_minute']:.1f}</td>"
                    f"<td class=num>{video['mean_confidence']:.2f}</td></tr>")
    return f"<table>{header}{''.join(rows)}</table>"


def _stroke_table(rows: Sequence[Mapping[str, Any]], clips: Sequence[str | None], low: float) -> str:
    if not rows:
        return "<p class=note>No stroke found.</p>"
    header = ("<tr><th>#</th><th>begin (s)</th><th>duration (s)</th><th>frames</th><th>class</th><th>type</th>"
              "<th>hand</th><th>confidence</th><th>next likeliest</th><th>clip</th></tr>")
    body = []
    for row, clip in zip(rows, clips):
        others = ", ".join(f"{html.escape(name)} {p:.2f}" for name, p in row["top3"][1:])
        css = " low" if row["confidence"] < low else ""
        link = f"<a href=\"{_link(clip)}\">play</a>" if clip else ""
        body.append(f"<tr><td class=num>{row['index']}</td><td class=num>{row['begin_s']:.2f}</td>"
                    f"<td class=num>{row['duration_s']:.2f}</td><td class=num>{row['begin_frame']}–{row['end_frame']}"
                    f"</td><td>{html.escape(row['class'])}</td><td>{html.escape(row['type'])}</td>"
                    f"<td>{html.escape(row['hand'])}</td><td class=\"num{css}\">{row['confidence']:.2f}</td>"
                    f"<td>{others}</td><td>{link}</td></tr>")
    return f"<table>{header}{''.join(body)}</table>"


def write_session_page(path: str | Path, stats: Mapping[str, Any], videos: Sequence[Mapping[str, Any]],
                       figure: str | None, problems: Sequence[str] = (), low_confidence: float = 0.5,
                       title: str = "Session analysis") -> Path:
    """Write ``index.html``: the session's figures and statistics, then per video its timeline and strokes.

    Args:
        path: the page, at the root of the analysis folder; every other path is relative to its folder.
        stats: :func:`tstcnn.infer.analyze.session_statistics`'s output.
        videos: per video ``{"id", "rows", "clips", "timeline", "csv", "json", "xml"}`` (paths relative, or None).
        figure: the session figure, relative, or None.
        problems: one line per input that could not be analysed.
        low_confidence: confidences below this are shown in red, as strokes to check first.
    """
    total = stats["total"]
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>{total['strokes']} strokes in {len(stats['videos'])} videos, {total['minutes']:.1f} minutes: "
             f"{total['per_minute']:.1f} per minute, mean confidence {total['mean_confidence']:.2f}. Confidence is the "
             "mean probability of the stroke's class over its frames; strokes below "
             f"{low_confidence:.2f} are in red.</p>"]
    if problems:
        items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
        parts.append(f"<h2>Not analysed</h2><ul class=problems>{items}</ul>")
    parts.append("<h2>Session</h2>" + _summary_table(stats))
    if figure:
        parts.append(f"<p><img src=\"{_link(figure)}\" alt=\"session statistics\"></p>")
    parts.append("<div class=counts>" + _counts_table("class", total["by_class"])
                 + _counts_table("type", total["by_type"]) + _counts_table("hand", total["by_hand"]) + "</div>")
    for video in videos:
        name = html.escape(video["id"])
        files = " · ".join(f"<a href=\"{_link(video[key])}\">{label}</a>" for key, label in
                           (("csv", "strokes.csv"), ("json", "strokes.json"), ("xml", "MediaEval XML"))
                           if video.get(key))
        parts.append(f"<h2 id=\"video-{name}\">{name}</h2><p class=note>{files}</p>")
        if video.get("timeline"):
            parts.append(f"<p><img src=\"{_link(video['timeline'])}\" alt=\"timeline of {name}\"></p>")
        parts.append(_stroke_table(video["rows"], video["clips"], low_confidence))
    page = (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
    return atomic_write_text(Path(path), page)
