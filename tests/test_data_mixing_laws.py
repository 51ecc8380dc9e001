"""Data Mixing Laws at one budget: the fit recovers a law it was drawn from, and in the noise-free
simulated world (tests/simworld.py, where the true optimum is known) the law's optimum keeps most of
the optimum's gain over uniform."""

import numpy as np
import pytest

from autoscale.errors import AutoscaleError
from autoscale.laws.data_mixing import MixingLaw, fit_mixing_law, min_runs, optimal_proportions
from simworld import make_world


def _dirichlet(k: int, m: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(m), size=k)


def test_fit_recovers_the_law_it_was_drawn_from():
    true = MixingLaw(c=np.array([2.0, 3.0]), k=np.array([1.5, 0.7]),
                     t=np.array([[-1.2, 0.4, 0.0], [0.3, -2.0, 0.0]]), r2=np.ones(2))
    r = _dirichlet(20, 3, 0)
    law = fit_mixing_law(r, true.losses(r))
    test = _dirichlet(50, 3, 1)
    np.testing.assert_allclose(law.losses(test), true.losses(test), rtol=1e-5)
    np.testing.assert_allclose(law.t, true.t, atol=1e-3)  # the gauge makes t identifiable
    assert (law.r2 > 0.999999).all()


@pytest.mark.parametrize("metric, weights", [("loss", None), ("perplexity", None), ("perplexity", [3.0, 1.0])])
def test_the_objectives_gradient_is_its_derivative(metric, weights):
    # the optimiser is given this gradient: it must be the finite-difference slope of the objective
    law = MixingLaw(c=np.array([2.0, 1.0]), k=np.array([1.5, 0.7]),
                    t=np.array([[-1.2, 0.4, 0.0], [0.3, -2.0, 0.0]]), r2=np.ones(2))
    w = None if weights is None else np.array(weights)
    for r in _dirichlet(5, 3, 2):
        h = 1e-6
        slope = [(law.objective(r + h * e, w, metric) - law.objective(r - h * e, w, metric)) / (2 * h)
                 for e in np.eye(3)]
        np.testing.assert_allclose(law.objective_gradient(r, w, metric), slope, rtol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_in_the_simulated_world_the_law_keeps_most_of_the_optimum_gain(seed):
    world = make_world(seed)
    budget = 4e6
    r = _dirichlet(24, len(world.domains), seed)
    losses = np.array([[world.perplexities(dict(zip(world.domains, row * budget, strict=True)))[d]
                        for d in world.domains] for row in r])
    law = fit_mixing_law(r, losses)
    floor = 0.2 / len(world.domains)
    best = optimal_proportions(law, lower=[floor] * len(world.domains))
    assert best.sum() == pytest.approx(1.0) and (best >= floor - 1e-9).all()
    found = world.gain(dict(zip(world.domains, best, strict=True)), budget)
    optimum = world.gain(world.optimum(budget), budget)
    assert optimum > 0.02  # the world has headroom at this budget
    assert found >= 0.8 * optimum, (found, optimum)


def test_bounds_are_respected_and_bad_input_is_one_error():
    law = MixingLaw(c=np.array([1.0]), k=np.array([1.0]), t=np.array([[-3.0, 0.0, 0.0]]), r2=np.ones(1))
    unconstrained = optimal_proportions(law)
    assert unconstrained[0] == pytest.approx(1.0, abs=1e-6)  # all on the domain whose share lowers the loss
    capped = optimal_proportions(law, upper=[0.5, 1.0, 1.0])
    assert capped[0] == pytest.approx(0.5, abs=1e-6) and capped.sum() == pytest.approx(1.0)
    with pytest.raises(AutoscaleError, match="no proportions that sum to 1"):
        optimal_proportions(law, upper=[0.2, 0.2, 0.2])
    r = _dirichlet(min_runs(3) - 1, 3, 0)
    with pytest.raises(AutoscaleError, match="needs at least 5"):
        fit_mixing_law(r, np.ones((len(r), 2)))
    with pytest.raises(AutoscaleError, match="sum to 1"):
        fit_mixing_law(np.ones((6, 3)), np.ones((6, 2)))
