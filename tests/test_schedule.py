"""wae.train.schedule.LRSchedule with a warm-up: the lr rises linearly from warmup_start x lr
to lr over the warm-up epochs (per step), then follows its schedule (cosine over the steps
after the warm-up, step drops by epoch, plateau cuts); checked at given epochs and steps."""

from __future__ import annotations

import math

import pytest

from wae.train import load_config
from wae.train.config import ConfigError, ScheduleConfig
from wae.train.schedule import LRSchedule

LR = 0.1
STEPS = 5  # steps per epoch


def _sched(epochs: int = 10, **cfg) -> LRSchedule:
    return LRSchedule(ScheduleConfig(**cfg), LR, epochs, STEPS)


def _warm(t: int, warm_steps: int, start: float = 0.1) -> float:
    """The warm-up factor at step t (0-based, counted over the stage)."""
    return start + (1 - start) * t / warm_steps


def test_cosine_after_a_warm_up() -> None:
    s = _sched(name="cosine", warmup_epochs=2)  # 10 warm-up steps of 50
    assert s.lr(0, 0) == pytest.approx(0.1 * LR)  # warmup_start x lr
    assert s.lr(1, 0) == pytest.approx(_warm(5, 10) * LR)  # = 0.55 lr, halfway
    assert s.lr(1, 4) == pytest.approx(_warm(9, 10) * LR)
    warm = [s.lr(e, i) for e in range(2) for i in range(STEPS)]
    steps = [b - a for a, b in zip(warm, warm[1:], strict=False)]
    assert steps == pytest.approx([0.9 * LR / 10] * 9)  # linear, one equal rise per step
    # Then the full lr, and a cosine over the 40 remaining steps down to min_lr (0).
    assert s.lr(2, 0) == pytest.approx(LR)
    assert s.lr(6, 0) == pytest.approx(LR / 2)  # halfway through the cosine
    assert s.lr(4, 0) == pytest.approx(LR * 0.5 * (1 + math.cos(math.pi * 10 / 40)))
    assert s.lr(9, 4) == pytest.approx(LR * 0.5 * (1 + math.cos(math.pi * 39 / 40)))
    after = [s.lr(e, i) for e in range(2, 10) for i in range(STEPS)]
    assert all(b < a for a, b in zip(after, after[1:], strict=False))


def test_cosine_with_a_min_lr_after_a_warm_up() -> None:
    s = _sched(name="cosine", warmup_epochs=1, warmup_start=0.5, min_lr=0.01)
    assert s.lr(0, 0) == pytest.approx(0.5 * LR)  # the warm-up scales the cosine's start
    assert s.lr(0, 2) == pytest.approx(_warm(2, 5, 0.5) * LR)
    assert s.lr(1, 0) == pytest.approx(LR)
    # The cosine runs from lr to min_lr over the steps after the warm-up: 45 of them.
    assert s.lr(9, 4) == pytest.approx(0.01 + (LR - 0.01) * 0.5 * (1 + math.cos(math.pi * 44 / 45)))


def test_step_schedule_after_a_warm_up() -> None:
    s = _sched(name="step", step_size=3, gamma=0.1, warmup_epochs=2)
    assert s.lr(0, 0) == pytest.approx(0.1 * LR)
    assert s.lr(1, 2) == pytest.approx(_warm(7, 10) * LR)
    assert s.lr(2, 0) == s.lr(2, 4) == pytest.approx(LR)  # constant within an epoch
    assert s.lr(3, 0) == pytest.approx(LR * 0.1)  # the first drop, at epoch 3
    assert s.lr(5, 4) == pytest.approx(LR * 0.1)
    assert s.lr(6, 0) == pytest.approx(LR * 0.01)
    assert s.lr(9, 0) == pytest.approx(LR * 0.001)


def test_milestones_after_a_warm_up() -> None:
    s = _sched(name="step", milestones=[4, 7], gamma=0.5, warmup_epochs=1)
    assert [s.lr(0, i) for i in range(STEPS)] == pytest.approx(
        [_warm(i, 5) * LR for i in range(STEPS)]
    )
    assert [s.lr(e, 0) for e in range(1, 10)] == pytest.approx(
        [LR] * 3 + [LR / 2] * 3 + [LR / 4] * 3
    )


def test_constant_and_plateau_warm_up() -> None:
    const = _sched(name="constant", warmup_epochs=1, warmup_start=0.2)
    assert const.lr(0, 0) == pytest.approx(0.2 * LR)
    assert const.lr(0, 4) == pytest.approx(_warm(4, 5, 0.2) * LR)
    assert const.lr(1, 0) == const.lr(9, 4) == pytest.approx(LR)
    plateau = _sched(name="plateau", warmup_epochs=1, patience=0, gamma=0.5)
    assert plateau.lr(0, 0) == pytest.approx(0.1 * LR)
    assert not plateau.end_epoch(0.5)  # the first value is the best so far
    assert plateau.end_epoch(0.4)  # no better: cut at once (patience 0)
    assert plateau.lr(1, 0) == pytest.approx(LR / 2)


def test_no_warm_up_starts_at_the_full_lr() -> None:
    for name in ("constant", "step", "cosine", "plateau"):
        assert _sched(name=name).lr(0, 0) == pytest.approx(LR)
    assert _sched(name="constant", warmup_epochs=1, warmup_start=1.0).lr(0, 0) == LR


def test_the_recipes_warm_up() -> None:
    """The packaged recipe's classifier stage: one epoch of warm-up, then the cosine."""
    st = load_config("fashion_mnist").stages[1]
    assert st.schedule.name == "cosine" and st.schedule.warmup_epochs == 1
    s = LRSchedule(st.schedule, st.lr, st.epochs, STEPS)
    assert s.lr(0, 0) == pytest.approx(st.schedule.warmup_start * st.lr)
    assert s.lr(0, 0) < s.lr(0, STEPS - 1) < s.lr(1, 0) == pytest.approx(st.lr)
    mid, last = s.lr(st.epochs // 2, 0), s.lr(st.epochs - 1, STEPS - 1)
    assert st.schedule.min_lr <= last < mid < st.lr


def test_a_warm_up_as_long_as_the_stage_is_refused() -> None:
    with pytest.raises(ConfigError, match="warmup_epochs must be < "):
        load_config("fashion_mnist", ["stages.3.schedule.warmup_epochs=2"])  # stage 3: 2 epochs
    with pytest.raises(ConfigError, match="warmup_start must be in"):
        load_config("fashion_mnist", ["stages.2.schedule.warmup_start=0"])
