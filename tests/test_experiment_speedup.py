"""The paper's speed-up on smoothed curves, and the objective it is measured in."""

from __future__ import annotations

import numpy as np
import pytest

from autoscale.errors import AutoscaleError
from autoscale.experiment.speedup import Objective, smooth, speedup

STEPS = np.arange(0, 101, 10.0)


def test_smoothing_is_a_debiased_ema():
    assert smooth([5.0, 5.0, 5.0], 0.9).tolist() == pytest.approx([5.0, 5.0, 5.0])  # no pull towards 0
    assert smooth([4.0, 2.0], 0.5).tolist() == pytest.approx([4.0, (0.25 * 4 + 0.5 * 2) / 0.75])
    assert smooth([3.0, 1.0, 2.0], 0.0).tolist() == [3.0, 1.0, 2.0]
    with pytest.raises(AutoscaleError):
        smooth([1.0], 1.0)


def test_a_method_twice_as_fast_saves_half_the_steps():
    baseline = 10.0 / (1 + STEPS)  # final value at step 100
    method = 10.0 / (1 + 2 * STEPS)  # the same curve, twice as fast: reaches it at step 50
    result = speedup((STEPS, method), (STEPS, baseline), smoothing=0.0, names=("predicted", "uniform"))
    assert result.steps_to_reach == pytest.approx(50.0, rel=0.02)  # linear interpolation between points
    assert result.speedup == pytest.approx(0.5, rel=0.02)
    assert (result.method, result.baseline, result.baseline_steps) == ("predicted", "uniform", 100.0)


def test_smoothing_both_curves_alike_keeps_equal_curves_equal():
    noisy = 3.0 + 1.0 / (1 + STEPS) + 0.01 * np.sin(STEPS)
    result = speedup((STEPS, noisy), (STEPS, noisy), smoothing=0.6)
    assert result.speedup == pytest.approx(0.0, abs=1e-12)
    assert "weight 0.6" in result.smoothing


def test_a_slower_method_never_reaches_and_says_so():
    result = speedup((STEPS, 5.0 / (1 + STEPS) + 0.1), (STEPS, 5.0 / (1 + STEPS)), smoothing=0.5)
    assert result.speedup is None and result.steps_to_reach is None
    assert result.method_final > result.baseline_final


def test_objective_is_the_weighted_mean_of_the_domains_metric():
    evals = {"web": {"loss": 1.0, "perplexity": 2.0}, "code": {"loss": 2.0, "perplexity": 6.0}}
    assert Objective().of(evals) == pytest.approx(4.0)
    assert Objective("loss", {"web": 3, "code": 1}).of(evals) == pytest.approx(1.25)
    assert Objective("perplexity").of({"web": {"loss": 0.0}}) == pytest.approx(1.0)  # exp(loss)
    with pytest.raises(AutoscaleError, match="no perplexity for domain"):
        Objective("perplexity", {"books": 1}).of(evals)
    curve = {"curve": [{"step": 0, "eval": evals}, {"step": 5, "eval": evals}]}
    steps, values = Objective().curve(curve)
    assert steps.tolist() == [0.0, 5.0] and values.tolist() == pytest.approx([4.0, 4.0])
