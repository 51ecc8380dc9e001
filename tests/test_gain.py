"""The predicted mixture's paired gain over a baseline, with a t interval and a verdict."""

import math

import pytest

from autoscale.gain import paired_gain


def test_a_clear_win_a_clear_loss_and_noise():
    win = paired_gain("uniform", {0: 9.0, 1: 9.1, 2: 8.9}, {0: 10.0, 1: 10.1, 2: 9.9})
    assert win.verdict == "win" and win.seeds == 3
    assert win.mean == pytest.approx(sum(1 - p / b for p, b in ((9, 10), (9.1, 10.1), (8.9, 9.9))) / 3)
    lo, hi = win.interval
    assert 0 < lo < win.mean < hi
    loss = paired_gain("natural", {0: 11.0, 1: 11.2, 2: 10.9}, {0: 10.0, 1: 10.1, 2: 9.9})
    assert loss.verdict == "loss" and loss.interval[1] < 0
    noisy = paired_gain("ddo", {0: 9.0, 1: 11.0, 2: 10.0}, {0: 10.0, 1: 10.0, 2: 10.1})
    assert noisy.verdict == "not distinguishable" and noisy.interval[0] < 0 < noisy.interval[1]


def test_the_interval_is_the_t_interval_of_the_per_seed_gains():
    g = paired_gain("uniform", {0: 9.0, 1: 9.5}, {0: 10.0, 1: 10.0})
    gains = [0.1, 0.05]
    mean, sd = sum(gains) / 2, math.sqrt(sum((x - 0.075) ** 2 for x in gains))
    half = 12.706204736 * sd / math.sqrt(2)  # t(0.975, 1 degree of freedom)
    assert g.interval == pytest.approx((mean - half, mean + half), rel=1e-6)


def test_one_seed_is_honestly_not_distinguishable_and_unpaired_seeds_do_not_count():
    one = paired_gain("uniform", {0: 5.0}, {0: 10.0})
    assert one.verdict == "not distinguishable" and one.interval is None and one.mean == pytest.approx(0.5)
    assert "1 seed: not distinguishable" in one.describe()
    assert paired_gain("uniform", {0: 5.0}, {1: 10.0}) is None
    only_shared = paired_gain("uniform", {0: 9.0, 1: 9.0, 7: 1.0}, {0: 10.0, 1: 10.0, 2: 20.0})
    assert only_shared.seeds == 2
