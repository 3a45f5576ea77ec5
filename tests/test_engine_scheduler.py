"""The paper's re-scheduler (section IV-C) on scripted loss / accuracy sequences, and the plain schedules."""

import math

import pytest

from tstcnn.config import TrainConfig
from tstcnn.engine.scheduler import (
    ConstantScheduler,
    CosineScheduler,
    PaperReScheduler,
    StepScheduler,
    build_scheduler,
)


def _run(scheduler, losses, accuracies=None):
    """Step through the sequences; return {epoch (1-based): change} for the epochs where the rate changed."""
    accuracies = accuracies or [0.5] * len(losses)
    return {epoch: change for epoch, (loss, acc) in enumerate(zip(losses, accuracies), start=1)
            if (change := scheduler.step(loss, acc)) is not None}


def test_paper_defaults_come_from_the_config():
    scheduler = build_scheduler(TrainConfig(scheduler="paper"))
    assert type(scheduler) is PaperReScheduler  # not another scheduler with the same attributes
    assert (scheduler.lr, scheduler.recent_window, scheduler.previous_window, scheduler.patience) == (0.01, 25, 35, 50)
    assert (scheduler.lr_factor, scheduler.lr_min, scheduler.accuracy_drop) == (0.1, 1e-5, 0.7)


def test_loss_rule_fires_exactly_when_last_25_mean_exceeds_previous_35_mean():
    scheduler = PaperReScheduler(0.01)
    # 59 flat epochs: the windows (25 + 35 = 60) are not yet full, and equal means never fire.
    assert _run(scheduler, [1.0] * 59) == {}
    change = scheduler.step(1.0, 0.5)  # epoch 60: windows full, means equal → no change
    assert change is None
    change = scheduler.step(1.5, 0.5)  # epoch 61: the last 25 now average above the 35 before them
    assert change is not None and change.reason == "loss_plateau" and change.reload_best
    assert (change.old_lr, change.new_lr) == (0.01, pytest.approx(0.001))
    assert scheduler.lr == pytest.approx(0.001)


def test_falling_loss_never_fires():
    scheduler = PaperReScheduler(0.01)
    assert _run(scheduler, [1.0 / (1 + e) for e in range(300)]) == {}
    assert scheduler.lr == 0.01


def test_loss_rule_waits_for_patience_between_changes():
    scheduler = PaperReScheduler(0.01)
    rising = [1.0] * 60 + [1.0 + 0.01 * e for e in range(1, 200)]  # from epoch 61 the rule holds every epoch
    changes = _run(scheduler, rising)
    assert sorted(changes) == [61, 111, 161, 211]  # 50 epochs apart
    assert all(c.reason == "loss_plateau" for c in changes.values())


def test_rate_is_divided_by_ten_down_to_lr_min_then_set_back():
    scheduler = PaperReScheduler(0.01, recent_window=1, previous_window=1, patience=1)
    changes = _run(scheduler, [float(e) for e in range(1, 8)])  # rising every epoch: a change each epoch from 2
    rates = [changes[e].new_lr for e in sorted(changes)]
    assert rates == pytest.approx([1e-3, 1e-4, 1e-5, 1e-2, 1e-3, 1e-4])
    assert [round(math.log10(c.old_lr)) for c in (changes[e] for e in sorted(changes))] == [-2, -3, -4, -5, -2, -3]


def test_accuracy_drop_fires_at_once_without_patience():
    scheduler = PaperReScheduler(0.01)
    accuracies = [0.5, 0.8, 0.7, 0.57, 0.55, 0.8]  # 0.57 ≥ 0.7 × 0.8 = 0.56 > 0.55
    changes = _run(scheduler, [1.0] * 6, accuracies)
    assert list(changes) == [5]
    assert changes[5].reason == "accuracy_drop" and changes[5].reload_best
    assert changes[5].new_lr == pytest.approx(0.001)
    # A second drop right after a change fires again at once: patience does not hold it back.
    assert scheduler.step(1.0, 0.1).reason == "accuracy_drop"
    assert scheduler.lr == pytest.approx(1e-4)


def test_all_numbers_are_configurable():
    scheduler = build_scheduler(TrainConfig(scheduler="paper", lr=0.5, recent_window=2, previous_window=3,
                                            patience=4, lr_factor=0.5, lr_min=0.2, accuracy_drop=0.9))
    losses = [1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0]
    changes = _run(scheduler, losses)
    # Epoch 5 is the first with both windows full (2 + 3) and mean(2, 2) > mean(1, 1, 1); patience 4 → next at 9.
    assert sorted(changes) == [5, 9]
    assert [changes[e].new_lr for e in (5, 9)] == [0.25, 0.5]  # 0.25 × 0.5 < lr_min 0.2 → back to 0.5
    assert scheduler.step(5.0, 0.0).reason == "accuracy_drop"  # 0 < 0.9 × best 0.5


def test_state_dict_resumes_exactly():
    losses = [1.0] * 60 + [1.0 + 0.01 * e for e in range(1, 100)]
    accuracies = [0.5 + 0.001 * e for e in range(159)]
    accuracies[100] = 0.1
    whole = PaperReScheduler(0.01)
    expected = _run(whole, losses, accuracies)
    first = PaperReScheduler(0.01)
    head = _run(first, losses[:80], accuracies[:80])
    second = PaperReScheduler(0.01)
    second.load_state_dict(first.state_dict())
    tail = {e + 80: c for e, c in _run(second, losses[80:], accuracies[80:]).items()}
    assert {**head, **tail} == expected and len(expected) >= 2
    assert second.state_dict() == whole.state_dict()


@pytest.mark.parametrize(
    ("scheduler", "expected"),
    [
        (ConstantScheduler(0.1), [0.1, 0.1, 0.1, 0.1]),
        (StepScheduler(0.1, step_size=2, lr_factor=0.1), [0.1, 0.1, 0.01, 0.01]),
        (CosineScheduler(0.1, epochs=4), [0.1, 0.5 * 0.1 * (1 + math.cos(math.pi / 4)), 0.05,
                                          0.5 * 0.1 * (1 + math.cos(3 * math.pi / 4))]),
    ],
)
def test_plain_schedules_per_epoch(scheduler, expected):
    rates, changes = [], []
    for _ in expected:
        rates.append(scheduler.lr)
        change = scheduler.step(1.0, 0.5)
        assert change is None or not change.reload_best
        changes.append(change is not None)
    assert rates == pytest.approx(expected)
    # Only the step schedule reports its (discrete) changes; cosine moves every epoch and reports none.
    assert changes == ([False, True, False, True] if isinstance(scheduler, StepScheduler) else [False] * 4)


def test_unknown_scheduler_names_the_allowed_ones():
    with pytest.raises(ValueError, match="paper, cosine, step, constant"):
        build_scheduler(TrainConfig(scheduler="linear"))
