"""The training loop on tiny in-memory clips: it learns, resumes exactly, reloads the best state, writes its run."""

import copy
import json
import math
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tstcnn.config import override
from tstcnn.engine.distributed import DistributedContext
from tstcnn.engine.trainer import build_optimizer, fit, read_metrics, run_epoch
from tstcnn.io.locks import folder_lock
from tstcnn.models import build_model_from_config
from tstcnn.runtime.checkpoint import load_checkpoint, load_run

from engine_helpers import tiny_config, tiny_data

pytestmark = pytest.mark.usefixtures("one_thread")
_TIMING = ("epoch_seconds", "train_samples_per_second")


def _without_timing(rows):
    return [{k: v for k, v in row.items() if k not in _TIMING} for row in rows]


class _Kill(Exception):
    pass


def _kill_after(epoch):
    def callback(row):
        if row["epoch"] == epoch:
            raise _Kill

    return callback


def test_tiny_model_learns_well_above_chance(tmp_path):
    # Four classes (chance 25%), quadrant signal under noise; deterministic on the CPU for this seed.
    cfg = override(tiny_config(epochs=8, lr=0.01, momentum=0.9, batch_size=8, seed=0), "model", channels=(4, 8, 8),
                   num_features=16)
    run = fit(cfg, tiny_data(n_train=64, n_val=32, jitter=0.05), tmp_path / "run", progress=False)
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == list(range(1, 9))
    assert max(r["val_accuracy"] for r in rows) >= 0.75  # ≥ 3 × chance
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    loaded = load_run(run, "best")
    assert loaded.epoch == max(rows, key=lambda r: r["val_accuracy"])["epoch"]
    data = tiny_data(n_train=64, n_val=32)
    inputs = torch.stack([data.validation[i][0]["rgb"] for i in range(32)])
    labels = torch.tensor([data.validation[i][1] for i in range(32)])
    with torch.no_grad():
        accuracy = (loaded.model(rgb=inputs).argmax(1) == labels).float().mean().item()
    assert accuracy == pytest.approx(max(r["val_accuracy"] for r in rows))


def test_run_folder_holds_the_contract_files(tmp_path):
    run = fit(tiny_config(epochs=2), tiny_data(), tmp_path / "run", progress=False)
    for name in ("config.yaml", "classes.json", "store.json", "metrics.jsonl", "curves.png", "checkpoints/best.pt",
                 "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").iterdir())
    assert json.loads((run / "classes.json").read_text())[-1] == "Negative"
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["epoch"] == 2 and set(last) >= {"model", "optimizer", "scheduler", "scaler", "rng", "flow_scale",
                                                "prep", "best_accuracy"}
    with pytest.raises(ValueError, match="already holds a run; pass --resume"):
        fit(tiny_config(epochs=2), tiny_data(), run, progress=False)


@pytest.mark.parametrize(("block", "accuracy_drop"), [("none", 1.5), ("attention", 1.2)])
def test_resume_after_interruption_equals_uninterrupted_run(tmp_path, block, accuracy_drop):
    # Re-scheduler with short windows, so learning-rate changes and best-state reloads happen on the way,
    # and noise drawn from the global generator in every read, so generator states must be restored.
    cfg = tiny_config(block=block, epochs=4, scheduler="paper", recent_window=1, previous_window=1, patience=1,
                      accuracy_drop=accuracy_drop, momentum=0.9)
    cfg = override(cfg, "model", num_blocks=1)
    data = {"n_train": 8, "n_val": 4, "jitter": 0.1}
    whole = fit(cfg, tiny_data(**data), tmp_path / "whole", progress=False)
    broken = tmp_path / "broken"
    with pytest.raises(_Kill):
        fit(cfg, tiny_data(**data), broken, progress=False, on_epoch_end=_kill_after(2))
    # As if the process died after writing epoch 3's metrics row but before its checkpoint.
    with open(broken / "metrics.jsonl", "a") as stream:
        stream.write(json.dumps({"epoch": 3, "val_accuracy": 0.0}) + "\n")
    fit(cfg, tiny_data(**data), broken, resume=True, progress=False)
    assert any(r["lr_change"] for r in read_metrics(whole / "metrics.jsonl")), "the schedule changed on the way"
    expected, resumed = read_metrics(whole / "metrics.jsonl"), read_metrics(broken / "metrics.jsonl")
    assert _without_timing(resumed) == _without_timing(expected)
    for which in ("last", "best"):
        a = load_checkpoint(whole / "checkpoints" / f"{which}.pt")
        b = load_checkpoint(broken / "checkpoints" / f"{which}.pt")
        assert a["epoch"] == b["epoch"]
        for key, value in a["model"].items():
            torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0, msg=f"{which} {key}")


def test_resume_without_checkpoint_starts_fresh_and_checks_architecture(tmp_path):
    run = fit(tiny_config(epochs=1), tiny_data(), tmp_path / "run", resume=True, progress=False)
    assert len(read_metrics(run / "metrics.jsonl")) == 1
    with pytest.raises(ValueError, match="another architecture"):
        fit(tiny_config(block="residual", epochs=2), tiny_data(), run, resume=True, progress=False)


def test_change_reloads_best_weights_and_optimizer(tmp_path):
    # accuracy_drop > 1 makes every epoch "drop" below the best: a change (and a reload) after each epoch.
    cfg = tiny_config(epochs=5, scheduler="paper", accuracy_drop=1.5, momentum=0.9)
    run = fit(cfg, tiny_data(jitter=0.1), tmp_path / "run", progress=False)
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["lr_change"] for r in rows] == ["accuracy_drop"] * 5
    assert [r["lr"] for r in rows] == pytest.approx([1e-2, 1e-3, 1e-4, 1e-5, 1e-2])
    last, best = load_checkpoint(run / "checkpoints" / "last.pt"), load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["epoch"] == max(rows, key=lambda r: (r["val_accuracy"], -r["epoch"]))["epoch"]
    for key, value in best["model"].items():
        torch.testing.assert_close(last["model"][key], value, rtol=0, atol=0)
    for index, state in best["optimizer"]["state"].items():
        torch.testing.assert_close(last["optimizer"]["state"][index]["momentum_buffer"], state["momentum_buffer"],
                                   rtol=0, atol=0)


@pytest.mark.parametrize(("precision", "channels_last"),
                         [("bf16", False), ("fp16", False), ("fp32", True), ("bf16", True)])
def test_mixed_precision_or_channels_last_train(tmp_path, precision, channels_last):
    # bf16 with channels-last is the presets' pair (its two-frame convolutions: tests/test_precision.py).
    cfg = tiny_config(block="attention", epochs=1, precision=precision, channels_last=channels_last,
                      clip_grad_norm=5.0)
    run = fit(cfg, tiny_data(), tmp_path / "run", progress=False)
    row = read_metrics(run / "metrics.jsonl")[0]
    assert math.isfinite(row["train_loss"]) and 0 <= row["val_accuracy"] <= 1
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert all(v.dtype == torch.float32 for v in last["model"].values() if v.is_floating_point())
    # fp16 runs with a gradient scaler (unscaled before clipping), whose state is checkpointed for resuming.
    assert (last["scaler"].get("scale", 0) > 0) == (precision == "fp16")


def test_unknown_precision_is_refused(tmp_path):
    with pytest.raises(ValueError, match="fp32, bf16, fp16"):
        fit(tiny_config(epochs=1, precision="fp8"), tiny_data(), tmp_path / "other", progress=False)


def test_gradient_clipping_bounds_the_step_and_divergence_is_a_one_line_error(tmp_path):
    # One step of plain SGD (no momentum, no decay) moves the weights by lr × clipped gradient: norm ≤ lr × clip.
    cfg = tiny_config(epochs=1, batch_size=16, lr=1.0, momentum=0.0, nesterov=False,
                      weight_decay=0.0, clip_grad_norm=1e-3)
    run = fit(cfg, tiny_data(n_train=16), tmp_path / "run", progress=False)
    torch.manual_seed(0)
    initial = build_model_from_config(cfg.model).state_dict()
    moved = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    step = torch.sqrt(sum(((moved[k] - initial[k]).double() ** 2).sum() for k in initial if k in moved))
    assert 0 < step.item() <= 1e-3 * (1 + 1e-4)
    with pytest.raises(ValueError, match="training diverged.*--clip-grad-norm") as excinfo:
        fit(tiny_config(epochs=1, lr=1e6, momentum=0.9), tiny_data(), tmp_path / "nan", progress=False)
    assert "\n" not in str(excinfo.value)
    with pytest.raises(ValueError, match="Nesterov momentum needs momentum"):
        fit(tiny_config(epochs=1, momentum=0.0), tiny_data(), tmp_path / "nesterov", progress=False)
    with pytest.raises(ValueError, match="step_in_backward needs every gradient unclipped"):
        fit(tiny_config(epochs=1, clip_grad_norm=1.0, step_in_backward=True), tiny_data(), tmp_path / "sib",
            progress=False)


def test_class_count_must_match_the_model(tmp_path):
    with pytest.raises(ValueError, match="the data has 4 classes but model.num_classes is 21"):
        fit(override(tiny_config(), "model", num_classes=21), tiny_data(), tmp_path / "run", progress=False)


def test_label_smoothing_changes_the_training_loss_only(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_model_from_config(cfg.model)
    data = tiny_data()
    inputs = {k: v[:8] for k, v in data.train.inputs.items()}
    labels = data.train.labels[:8]
    with torch.no_grad():
        logits = model(**inputs)
    loader = [(inputs, labels)]
    ctx = DistributedContext()
    evaluation = run_epoch(model, loader, ctx, label_smoothing=0.3, progress=False)
    assert evaluation.loss == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    training = run_epoch(model, loader, ctx, optimizer=optimizer, label_smoothing=0.3, progress=False)
    smoothed = F.cross_entropy(logits, labels, label_smoothing=0.3).item()
    assert smoothed != pytest.approx(evaluation.loss, rel=1e-3)
    assert training.loss == pytest.approx(smoothed, rel=1e-5)
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        fit(tiny_config(label_smoothing=1.0), data, tmp_path / "run", progress=False)


def test_a_second_training_into_the_same_run_folder_is_refused(tmp_path):
    run = tmp_path / "run"
    in_use = rf"in use by `tstcnn train` \(pid {os.getpid()}\)"
    with folder_lock(run, "tstcnn train"), pytest.raises(ValueError, match=in_use):
        fit(tiny_config(epochs=1), tiny_data(), run, progress=False)
    assert not (run / "metrics.jsonl").exists()  # the refused run wrote nothing
    fit(tiny_config(epochs=1), tiny_data(), run, progress=False)  # free again once the first is done
    assert len(read_metrics(run / "metrics.jsonl")) == 1


def test_a_step_skipped_by_the_gradient_scaler_leaves_no_garbage_in_the_momentum():
    torch.manual_seed(0)
    model = nn.Linear(64, 32)
    reference = copy.deepcopy(model)
    train = tiny_config(momentum=0.9, lr=0.1).train
    fused = build_optimizer(model, train, torch.device("cpu"))
    plain = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9, weight_decay=train.weight_decay,
                            nesterov=train.nesterov)
    inputs = torch.randn(8, 64)
    scaler = torch.amp.GradScaler("cpu")
    garbage = [torch.full((n,), math.nan) for n in (32, 2048, 4096)]  # what the allocator may hand back next
    del garbage
    fused.zero_grad()
    scaler.scale(model(inputs).sum() * math.inf).backward()  # an overflow: the scaler skips this step
    scaler.step(fused)
    scaler.update()
    assert all(torch.equal(fused.state[p]["momentum_buffer"], torch.zeros_like(p)) for p in model.parameters())
    for _ in range(3):
        for net, optimizer in ((model, fused), (reference, plain)):
            optimizer.zero_grad()
            net(inputs).square().mean().backward()
            optimizer.step()
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b)
