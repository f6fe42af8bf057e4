"""The learning-rate schedule: linear warm-up, then cosine decay to a floor (as nanoGPT's ``get_lr``).

The rate is a pure function of the step, so a checkpoint only needs the step to resume the schedule.
Cosine decay follows Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts" (2017),
without the restarts.
"""

from __future__ import annotations

import math

from aigc_studio.training.config import OptimiserConfig, ScheduleConfig


def learning_rate(step: int, *, peak_lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """The learning rate for optimiser step ``step`` (0-based).

    Args:
        step: the step about to be taken.
        peak_lr: the rate at the end of warm-up.
        min_lr: the floor reached at ``decay_steps`` and kept afterwards.
        warmup_steps: steps of linear warm-up from ``peak_lr / (warmup_steps + 1)`` up to ``peak_lr``.
        decay_steps: the step where the cosine reaches ``min_lr``; must exceed ``warmup_steps``.

    Returns:
        The learning rate.
    """
    # 1. linear warm-up; the +1 keeps step 0 from having a zero rate (a wasted step)
    if step < warmup_steps:
        return peak_lr * (step + 1) / (warmup_steps + 1)
    # 2. past the decay horizon, stay at the floor
    if step > decay_steps:
        return min_lr
    # 3. in between, a half cosine from peak_lr down to min_lr
    decay_ratio = (step - warmup_steps) / (decay_steps - warmup_steps)
    coefficient = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))  # 1 -> 0
    return min_lr + coefficient * (peak_lr - min_lr)


def scheduled_learning_rate(step: int, optimiser: OptimiserConfig, schedule: ScheduleConfig) -> float:
    """:func:`learning_rate` with the values of a :class:`TrainConfig`'s optimiser and schedule sections."""
    return learning_rate(
        step,
        peak_lr=optimiser.lr,
        min_lr=schedule.min_lr,
        warmup_steps=schedule.warmup_steps,
        decay_steps=schedule.decay_steps,
    )
