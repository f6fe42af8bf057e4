"""The learning-rate schedule: linear warm-up, cosine decay, then the floor."""

from __future__ import annotations

import math

import pytest

from aigc_studio.training.schedule import learning_rate

SCHEDULE = {"peak_lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 100, "decay_steps": 2000}


def test_warmup_rises_linearly_from_a_nonzero_rate_to_the_peak() -> None:
    assert learning_rate(0, **SCHEDULE) == pytest.approx(1e-3 / 101)
    assert learning_rate(49, **SCHEDULE) == pytest.approx(1e-3 * 50 / 101)
    assert learning_rate(99, **SCHEDULE) == pytest.approx(1e-3 * 100 / 101)
    assert learning_rate(100, **SCHEDULE) == pytest.approx(1e-3)


def test_cosine_is_halfway_between_peak_and_floor_at_mid_decay() -> None:
    midpoint = (100 + 2000) // 2
    assert learning_rate(midpoint, **SCHEDULE) == pytest.approx((1e-3 + 1e-4) / 2)


def test_cosine_follows_the_formula_inside_the_decay() -> None:
    step = 700
    ratio = (step - 100) / (2000 - 100)
    expected = 1e-4 + 0.5 * (1 + math.cos(math.pi * ratio)) * (1e-3 - 1e-4)
    assert learning_rate(step, **SCHEDULE) == pytest.approx(expected)


def test_rate_decreases_monotonically_after_warmup_and_stays_at_the_floor() -> None:
    rates = [learning_rate(step, **SCHEDULE) for step in range(100, 2500)]
    assert all(later <= earlier for earlier, later in zip(rates, rates[1:]))
    assert learning_rate(2000, **SCHEDULE) == pytest.approx(1e-4)
    assert learning_rate(2400, **SCHEDULE) == 1e-4


def test_no_warmup_starts_at_the_peak() -> None:
    assert learning_rate(0, peak_lr=1e-3, min_lr=0.0, warmup_steps=0, decay_steps=10) == pytest.approx(1e-3)
