"""DistributedDataParallel on 2 CPU processes (torchrun, gloo) against one process with the same global batch."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tstcnn.engine.evaluate import evaluate
from tstcnn.engine.trainer import fit, read_metrics
from tstcnn.models import build_model_from_config
from tstcnn.runtime.checkpoint import load_checkpoint

from engine_helpers import tiny_config, tiny_data

pytestmark = pytest.mark.usefixtures("one_thread")

SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from engine_helpers import tiny_config, tiny_data
    from tstcnn.engine.trainer import fit

    block, batch_size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    cfg = tiny_config(block=block, epochs=1, batch_size=batch_size, lr=0.05, momentum=0.9)
    fit(cfg, tiny_data(n_train=16, n_val=6), out, progress=False, device="cpu")
""")


def _torchrun(tmp_path: Path, block: str, batch_size: int, out: Path) -> None:
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
               block, str(batch_size), str(out)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    _torchrun(tmp_path, "none", 4, tmp_path / "ddp")
    single = fit(tiny_config(block="none", epochs=1, batch_size=8, lr=0.05, momentum=0.9),
                 tiny_data(n_train=16, n_val=6), tmp_path / "single", progress=False, device="cpu")
    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")["model"]
    reference = load_checkpoint(single / "checkpoints" / "last.pt")["model"]
    torch.manual_seed(0)  # the trainer's initialisation: training did move the weights, so equality means something
    initial = build_model_from_config(tiny_config(block="none").model).state_dict()
    assert ddp.keys() == reference.keys()
    assert max((reference[k] - initial[k]).abs().max().item() for k in reference) > 1e-3
    for key, value in reference.items():
        torch.testing.assert_close(ddp[key], value, rtol=0, atol=1e-5, msg=key)
    # Validation is split between the processes and summed: the same accuracy as one process, one row per epoch.
    ddp_rows, single_rows = read_metrics(tmp_path / "ddp" / "metrics.jsonl"), read_metrics(single / "metrics.jsonl")
    assert len(ddp_rows) == 1
    assert ddp_rows[0]["val_accuracy"] == single_rows[0]["val_accuracy"]
    assert ddp_rows[0]["train_loss"] == pytest.approx(single_rows[0]["train_loss"], abs=1e-5)


@pytest.mark.slow
def test_attention_model_trains_under_ddp_and_rank0_checkpoint_evaluates(tmp_path):
    _torchrun(tmp_path, "attention", 4, tmp_path / "ddp")
    data = tiny_data(n_train=16, n_val=6)
    results = evaluate(tmp_path / "ddp", ["validation"], datasets={"validation": data.validation}, progress=False)
    assert results["splits"]["validation"]["num_samples"] == 6
    assert results["validation_accuracy"] == pytest.approx(read_metrics(tmp_path / "ddp" / "metrics.jsonl")[0][
        "val_accuracy"])
