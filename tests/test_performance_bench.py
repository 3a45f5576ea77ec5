"""``tstcnn bench``: FLOP counts, a tiny real run of the subprocess cases, and its command-line errors."""

from __future__ import annotations

import json

import pytest

from tstcnn.bench import CASES, count_flops, format_table, run_benchmark
from tstcnn.cli import main


def test_flop_counts_match_the_design_yardsticks():
    # DESIGN.md: Twin + attention at paper size, 203 GFLOP per training sample and 72 per inference sample.
    flops = count_flops("twin", "attention", (100, 120, 120), batch_size=2)
    assert flops["train_flops"] / 2 / 1e9 == pytest.approx(203, rel=0.03)
    assert flops["infer_flops"] / 2 / 1e9 == pytest.approx(72, rel=0.03)


@pytest.mark.slow  # four fresh Python processes: about 30 s on 2 idle cores
def test_tiny_run_reports_every_case_and_the_ratios():
    summary = run_benchmark("twin", "attention", (8, 32, 32), batch_size=2, threads=1, steps=1, warmup=0,
                            train_cases=("baseline", "bf16-cl-ckpt-sib"), infer_cases=("baseline", "bf16-cl"),
                            progress=False)
    assert [(r["case"], r["mode"]) for r in summary["cases"]] == [
        ("baseline", "train"), ("bf16-cl-ckpt-sib", "train"), ("baseline", "infer"), ("bf16-cl", "infer")]
    assert (summary["fast_train_case"], summary["fast_infer_case"]) == ("bf16-cl-ckpt-sib", "bf16-cl")
    assert not [r for r in summary["cases"] if "error" in r]
    for prefix in ("", "baseline_"):
        assert summary[f"{prefix}train_samples_per_s"] > 0 and summary[f"{prefix}infer_samples_per_s"] > 0
        assert 0.05 < summary[f"{prefix}peak_rss_gb"] < 8
    assert summary["train_speedup"] == pytest.approx(
        summary["train_samples_per_s"] / summary["baseline_train_samples_per_s"])
    for result in summary["cases"]:
        assert result["s_per_sample"] == pytest.approx(1 / result["samples_per_s"])
        assert result["gflop_per_s"] > 0 and 0 < result["peak_share"] < 2
    assert summary["matmul_peak_gflop_per_s"]["fp32"] > 0
    table = format_table(summary)
    assert all(CASES[name].help in table for name in ("baseline", "bf16-cl-ckpt-sib", "bf16-cl"))
    json.dumps(summary)  # the JSON line


def test_bench_command_rejects_bad_arguments_in_one_line(capsys):
    assert main(["bench", "--input-size", "8x8"]) == 2
    assert main(["bench", "--size", "8x32x32", "--train-cases", "turbo"]) == 2  # the former name still works
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("tstcnn bench: error: --input-size needs three values")
    assert err[1].startswith("tstcnn bench: error: unknown benchmark case 'turbo'")
