"""The study's tables: per model over seeds, attention against none, convergence, and the paper's claims.

Input is one record per finished run (a model trained with one seed, see :func:`tstcnn.engine.study.run_study`);
output is the markdown of ``study.md``, the CSV of ``study.csv`` (one row per model) and ``study_runs.csv``
(one row per run), and ``study_stats.json`` (all of it, full precision). Every interval is the two-sided 95 %
Student-t interval over seeds (:func:`tstcnn.runtime.statistics.summarize`); differences between models are paired
by seed.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tstcnn.engine.compare import paired_correct
from tstcnn.runtime.statistics import McNemar, Summary, mcnemar_exact, paired_difference, summarize
from tstcnn.taxonomy import GROUPINGS

__all__ = ["SPLIT_NAMES", "ACCURACIES", "RUN_COLUMNS", "Claim", "model_summaries", "attention_comparisons", "claims",
           "accuracy_table", "report_markdown", "summary_csv", "stats_json", "runs_csv"]

SPLIT_NAMES = ("train", "validation", "test")
ACCURACIES = tuple(f"{s}_accuracy" for s in SPLIT_NAMES) + tuple(
    f"{s}_{g}_accuracy" for s in SPLIT_NAMES for g in GROUPINGS)
CONVERGENCE = ("best_epoch", "epochs_to_90pct", "epochs_to_95pct", "epochs")
RUN_COLUMNS = ("model", "label", "seed", "run", *ACCURACIES, "best_val_accuracy", *CONVERGENCE, "plateaued",
               "diverged", "parameters_without_fc", "parameters", "train_hours")
MODALITIES = (("rgb", "RGB"), ("flow", "Flow"), ("twin", "Twin"))


def _by_seed(records: Sequence[Mapping[str, Any]], name: str, key: str) -> dict[int, float]:
    return {r["seed"]: r[key] for r in records if r["model"] == name and r.get(key) is not None}


def _paired(records: Sequence[Mapping[str, Any]], a: str, b: str, key: str,
            value: Callable[[Mapping[str, Any]], float | None] | None = None) -> Summary:
    """``a`` minus ``b`` paired by seed over the seeds both have (``value`` derives the number from a record)."""
    pick = value or (lambda r: r.get(key))
    left = {r["seed"]: pick(r) for r in records if r["model"] == a}
    right = {r["seed"]: pick(r) for r in records if r["model"] == b}
    seeds = sorted(s for s in left.keys() & right.keys() if left[s] is not None and right[s] is not None)
    return paired_difference([left[s] for s in seeds], [right[s] for s in seeds])


def model_summaries(records: Sequence[Mapping[str, Any]], names: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """Per model (``names``: run name, label) that has runs: seeds, a :class:`Summary` per number, flags."""
    rows = []
    for name, label in names:
        runs = [r for r in records if r["model"] == name]
        if not runs:
            continue
        row: dict[str, Any] = {"model": name, "label": label, "seeds": [r["seed"] for r in runs]}
        for key in (*ACCURACIES, *CONVERGENCE, "train_hours"):
            row[key] = summarize([r.get(key) for r in runs])
        row["not_plateaued"] = sum(r.get("plateaued") is False for r in runs)
        row["diverged"] = sum(r.get("diverged") is True for r in runs)
        row["parameters_without_fc"], row["parameters"] = runs[0].get("parameters_without_fc"), runs[0].get(
            "parameters")
        rows.append(row)
    return rows


def attention_comparisons(records: Sequence[Mapping[str, Any]], out_dir: str | Path,
                          split: str = "test") -> list[dict[str, Any]]:
    """Per modality with both models: paired difference over seeds and per-seed McNemar on the same clips."""
    comparisons = []
    present = {r["model"] for r in records}
    for modality, kind in MODALITIES:
        with_name, without_name = f"{modality}-attention", f"{modality}-none"
        if with_name not in present or without_name not in present:
            continue
        seeds = sorted({r["seed"] for r in records if r["model"] == with_name}
                       & {r["seed"] for r in records if r["model"] == without_name})
        tests = {}
        for seed in seeds:
            paths = [next(r["path"] for r in records if r["model"] == n and r["seed"] == seed)
                     for n in (with_name, without_name)]
            try:
                tests[seed] = mcnemar_exact(*paired_correct(*paths, split))
            except ValueError as error:  # an old run without predictions: the table says why
                tests[seed] = str(error)
        comparisons.append({"modality": modality, "label": kind, "seeds": seeds,
                            **{f"{s}_difference": _paired(records, with_name, without_name, f"{s}_accuracy")
                               for s in SPLIT_NAMES},
                            "epochs_to_90pct_difference": _paired(records, without_name, with_name,
                                                                  "epochs_to_90pct"),
                            "mcnemar": tests})
    return comparisons


@dataclass(frozen=True)
class Claim:
    claim: str
    verdict: str
    numbers: str
    rule: str


def _verdict(supporting: Sequence[Summary], contradicting: Sequence[Summary]) -> str:
    """Reproduced when every interval lies above 0, not reproduced when one lies below 0, else inconclusive."""
    if not supporting or any(s.n < 2 for s in supporting):
        return "inconclusive"
    if any(s.below(0) for s in contradicting):
        return "not reproduced"
    return "reproduced" if all(s.above(0) for s in supporting) else "inconclusive"


def _number(value: float, scale: float, digits: int, sign: str = "") -> str:
    """``scale × value`` rounded, with no "-0.0" for a difference that rounds to nothing."""
    return f"{round(scale * value, digits) + 0.0:{sign}.{digits}f}"


def _points(summary: Summary, unit: str = "pp", scale: float = 100.0) -> str:
    if summary.mean is None:
        return "–"
    mean = f"{_number(summary.mean, scale, 1, '+')} {unit}"
    if summary.low is None:
        return f"{mean} (1 seed)"
    return f"{mean} [{_number(summary.low, scale, 1, '+')}, {_number(summary.high, scale, 1, '+')}]"


def claims(records: Sequence[Mapping[str, Any]]) -> list[Claim]:
    """The paper's claims, each with its verdict by the rule it states and the numbers behind it."""
    present = {r["model"] for r in records}
    found: list[Claim] = []
    gains = {m: _paired(records, f"{m}-attention", f"{m}-none", "test_accuracy") for m, _ in MODALITIES
             if {f"{m}-attention", f"{m}-none"} <= present}
    if "rgb" in gains and len(gains) == 3:
        margins = {m: paired_difference(*_seed_aligned(records, m)) for m in ("flow", "twin")}
        found.append(Claim(
            "Attention improves RGB most", _verdict([gains["rgb"], *margins.values()], [gains["rgb"],
                                                                                          *margins.values()]),
            f"gain RGB {_points(gains['rgb'])}; RGB gain minus Flow gain {_points(margins['flow'])}, "
            f"minus Twin gain {_points(margins['twin'])}",
            "test-accuracy gain of attention (paired by seed) above 0 for RGB, and RGB's gain above Flow's and "
            "Twin's (paired by seed)"))
    if "flow" in gains and "twin" in gains:
        found.append(Claim(
            "Attention improves Flow and Twin, less than RGB", _verdict([gains["flow"], gains["twin"]],
                                                                       [gains["flow"], gains["twin"]]),
            f"gain Flow {_points(gains['flow'])}, Twin {_points(gains['twin'])}",
            "test-accuracy gain of attention above 0 for Flow and for Twin (how it compares with RGB's: the claim "
            "above)"))
    speedups = {m: _paired(records, f"{m}-none", f"{m}-attention", "epochs_to_90pct") for m, _ in MODALITIES
                if {f"{m}-attention", f"{m}-none"} <= present}
    if speedups:
        verdict = _verdict(list(speedups.values()), list(speedups.values()))
        # A run still improving has a lower bound for its epoch count: it can weaken the side it stands on.
        unsettled = {block: sum(r.get("plateaued") is False for r in records
                                if r["model"] in {f"{m}-{block}" for m in speedups}) for block in ("attention", "none")}
        if (verdict == "reproduced" and unsettled["attention"]) or (verdict == "not reproduced" and unsettled["none"]):
            verdict = "inconclusive"
        found.append(Claim(
            "Attention converges in fewer epochs", verdict,
            "; ".join(f"{kind} {_points(speedups[m], 'epochs', 1.0)}" for m, kind in MODALITIES if m in speedups)
            + "".join(f"; {n} run(s) {'with' if b == 'attention' else 'without'} attention not plateaued"
                      for b, n in unsettled.items() if n),
            "epochs to 90 % of the best validation accuracy, without minus with attention (paired by seed), above "
            "0 for every modality; inconclusive at best while a run with attention (for not reproduced: without) "
            "has not plateaued, its count being a lower bound"))
    if "twin-attention" in present and len(present - {"twin-attention"}) > 0:
        others = sorted(present - {"twin-attention"})
        leads = {m: _paired(records, "twin-attention", m, "test_accuracy") for m in others}
        verdict = _verdict(list(leads.values()), list(leads.values()))
        unsettled = [r for r in records if r["model"] == "twin-attention" and r.get("plateaued") is False]
        diverged = [r for r in records if r["model"] == "twin-attention" and r.get("diverged") is True]
        if (unsettled and verdict == "reproduced") or (diverged and verdict == "not reproduced"):
            verdict = "inconclusive"
        found.append(Claim(
            "Twin with attention is the best model after convergence", verdict,
            "; ".join(f"minus {m} {_points(s)}" for m, s in leads.items())
            + (f"; {len(unsettled)} Twin-with-attention run(s) not plateaued" if unsettled else "")
            + (f"; {len(diverged)} Twin-with-attention run(s) diverged" if diverged else ""),
            "test accuracy of Twin with attention minus every other model (paired by seed) above 0, its runs "
            "plateaued (else at best inconclusive); not reproduced only if none of its runs diverged"))
    gaps = {}
    for stream, ours in (("i3d-rgb", "rgb-attention"), ("i3d-flow", "flow-attention")):
        if {stream, ours} <= present:
            gaps[stream] = (_paired(records, stream, ours, "", _gap), ours)
    if gaps:
        found.append(Claim(
            "I3D over-fits: a large train/validation gap", _verdict([g for g, _ in gaps.values()],
                                                                   [g for g, _ in gaps.values()]),
            "; ".join(f"{stream} gap minus {ours} gap {_points(g)} (gap {_points(_gap_summary(records, stream))})"
                      for stream, (g, ours) in gaps.items()),
            "train minus validation accuracy of each I3D stream above that of the attention model of the same "
            "input (paired by seed)"))
    return found


def _gap(record: Mapping[str, Any]) -> float | None:
    train, validation = record.get("train_accuracy"), record.get("validation_accuracy")
    return None if train is None or validation is None else train - validation


def _gap_summary(records: Sequence[Mapping[str, Any]], name: str) -> Summary:
    return summarize([_gap(r) for r in records if r["model"] == name])


def _seed_aligned(records: Sequence[Mapping[str, Any]], other: str) -> tuple[list[float], list[float]]:
    """RGB's and ``other``'s attention gains on the seeds where all four runs exist."""
    gain = {}
    for modality in ("rgb", other):
        with_, without = (_by_seed(records, f"{modality}-{b}", "test_accuracy") for b in ("attention", "none"))
        gain[modality] = {s: with_[s] - without[s] for s in with_.keys() & without.keys()}
    seeds = sorted(gain["rgb"].keys() & gain[other].keys())
    return [gain["rgb"][s] for s in seeds], [gain[other][s] for s in seeds]


def _cell(summary: Summary, scale: float = 100.0, digits: int = 1) -> str:
    if summary.mean is None:
        return "–"
    text = _number(summary.mean, scale, digits)
    if summary.low is not None:
        text += (f" ± {_number(summary.sd, scale, digits)} [{_number(summary.low, scale, digits)}, "
                 f"{_number(summary.high, scale, digits)}]")
    return text


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: bool = True) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|---|" + ("---:|" if numeric else "---|") * (len(header) - 1),
            *("| " + " | ".join(row) + " |" for row in rows)]


def _mcnemar_cell(tests: Mapping[int, Any]) -> str:
    cells = []
    for seed, test in tests.items():
        if isinstance(test, str):
            cells.append(f"seed {seed}: –")
        else:
            cells.append(f"seed {seed}: {test.a_only}/{test.b_only}, p = {test.p_value:.3g}")
    return "; ".join(cells) or "–"


def accuracy_table(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    """Train / validation / test accuracy per model over seeds, as markdown lines."""
    return _table(("model", "seeds", "train %", "validation %", "test %"),
                  [(s["label"], str(len(s["seeds"])), *(_cell(s[f"{k}_accuracy"]) for k in SPLIT_NAMES))
                   for s in summaries])


def report_markdown(summaries: Sequence[Mapping[str, Any]], comparisons: Sequence[Mapping[str, Any]],
                    found: Sequence[Claim]) -> str:
    """The tables of ``study.md``: accuracies, groupings, convergence, attention against none, claims."""
    lines = ["## Accuracy over seeds", "",
             "Mean ± standard deviation [95 % t-interval] over seeds, in %; one seed gives the value alone.", ""]
    lines += accuracy_table(summaries)
    if any(s["test_type_accuracy"].n for s in summaries):
        lines += ["", "MediaEval's groupings on the test split (stroke type, hand, type and hand), % as above:", ""]
        lines += _table(("model", "type %", "hand %", "type+hand %"),
                        [(s["label"], *(_cell(s[f"test_{g}_accuracy"]) for g in GROUPINGS)) for s in summaries])
    lines += ["", "## Convergence", "",
              "Epochs (mean ± sd [95 % interval]) to the best validation accuracy and to 90 % and 95 % of it. A run "
              "whose best epoch falls in the last 10 % of its epochs has not plateaued: its numbers are lower "
              "bounds. A run whose last training loss is over twice its lowest diverged after its best "
              "checkpoint (which the tables score): see its metrics.jsonl.", ""]
    lines += _table(("model", "best epoch", "epochs to 90 %", "epochs to 95 %", "epochs", "not plateaued",
                     "diverged", "parameters (no FC)", "training hours"),
                    [(s["label"], *(_cell(s[k], 1.0) for k in CONVERGENCE),
                      _flagged(s, "not_plateaued"), _flagged(s, "diverged"),
                      f"{s['parameters_without_fc']:,}" if s["parameters_without_fc"] is not None else "–",
                      _cell(s["train_hours"], 1.0, 2)) for s in summaries if s["epochs"].n])
    if comparisons:
        lines += ["", "## Attention against none", "",
                  "Accuracy with minus without attention, paired by seed: mean [95 % t-interval] in percentage "
                  "points. McNemar's exact test per seed on the same test clips: clips only the attention model "
                  "gets right / clips only the model without gets right, and the two-sided p-value.", ""]
        lines += _table(("modality", "seeds", "Δ train", "Δ validation", "Δ test", "McNemar (test)"),
                        [(c["label"], str(len(c["seeds"])), *(_points(c[f"{s}_difference"]) for s in SPLIT_NAMES),
                          _mcnemar_cell(c["mcnemar"])) for c in comparisons])
    if found:
        lines += ["", "## The paper's claims", "",
                  "Reproduced when every interval the rule names lies above 0; not reproduced when one lies below "
                  "0; inconclusive otherwise, and always with fewer than two seeds.", ""]
        lines += _table(("claim", "verdict", "numbers", "rule"),
                        [(c.claim, f"**{c.verdict}**", c.numbers, c.rule) for c in found], numeric=False)
    return "\n".join(lines) + "\n"


def _flagged(summary: Mapping[str, Any], flag: str) -> str:
    """``⚠ k of n`` for the ``k`` of a model's ``n`` runs that raised ``flag``, or a dash for none."""
    count = summary[flag]
    return f"⚠ {count} of {len(summary['seeds'])}" if count else "–"


def summary_csv(summaries: Sequence[Mapping[str, Any]]) -> str:
    """``study.csv``: one row per model, n / mean / sd / ci_low / ci_high of every number."""
    keys = (*ACCURACIES, *CONVERGENCE, "train_hours")
    columns = ["model", "label", "seeds", *(f"{k}_{part}" for k in keys for part in ("mean", "sd", "ci_low",
                                                                                       "ci_high")),
               "not_plateaued", "diverged", "parameters_without_fc", "parameters"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for s in summaries:
        row: dict[str, Any] = {"model": s["model"], "label": s["label"], "seeds": " ".join(map(str, s["seeds"])),
                               "not_plateaued": s["not_plateaued"], "diverged": s["diverged"],
                               "parameters_without_fc": s["parameters_without_fc"], "parameters": s["parameters"]}
        for key in keys:
            summary: Summary = s[key]
            row |= {f"{key}_mean": summary.mean, f"{key}_sd": summary.sd, f"{key}_ci_low": summary.low,
                    f"{key}_ci_high": summary.high}
        writer.writerow(row)
    return buffer.getvalue()


def stats_json(summaries: Sequence[Mapping[str, Any]], comparisons: Sequence[Mapping[str, Any]],
               found: Sequence[Claim]) -> str:
    """``study_stats.json``: every summary, comparison and claim of ``study.md`` with full precision."""

    def plain(value: Any) -> Any:
        if isinstance(value, (Summary, McNemar)):
            return value.as_dict()
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return json.dumps({"models": plain(list(summaries)), "attention_against_none": plain(list(comparisons)),
                       "claims": [asdict(c) for c in found]}, indent=1) + "\n"


def runs_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """``study_runs.csv``: one row per run (model × seed), the numbers the summaries are made of."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RUN_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()
