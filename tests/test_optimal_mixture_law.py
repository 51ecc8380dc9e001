"""The optimal-mixture scaling law (joint form) in a noise-free world generated from its own form:
fitted on runs at 3 budgets spanning 4x, it predicts losses at held-out budgets and its optimum
keeps at least 90% of the true optimum's gain over uniform at budgets 4x and 16x past its data."""

import numpy as np
import pytest

from autoscale.errors import AutoscaleError
from autoscale.laws.optimal_mixture import MixtureLaw, fit_mixture_law, optimal_weights

M = 3
FLOOR = np.full(M, 0.2 / M)


def _params(e, c, g, k, gb, beta):
    return np.log(np.concatenate([[e], c, g, k, [gb], [beta]]))


# three validation domains; each is helped most by its own training domain, and the data term's
# dependence on the mixture makes the optimum move with the budget
# (true optima: at 4M tokens 0.21, 0.69, 0.10, a gain of 6.2% over uniform; at 64M 0.32, 0.49,
# 0.19, gain 1.2%)
TRUE = MixtureLaw(np.array([
    _params(2.0, [1.0, 0.3, 0.4], [0.5, 0.4, 0.6], [300, 20, 40], 1.0, 0.3),
    _params(2.5, [0.3, 1.2, 0.4], [0.4, 0.5, 0.5], [30, 60, 40], 1.0, 0.3),
    _params(1.8, [0.2, 0.1, 0.4], [0.6, 0.5, 0.4], [40, 30, 600], 1.0, 0.3),
]), M)
BUDGETS = (1e6, 2e6, 4e6)


# its tests share `fitted`: built once, on one worker (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("test_optimal_mixture_law")


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    h = np.tile(rng.dirichlet(np.ones(M), 12), (len(BUDGETS), 1))  # the same mixtures at every budget
    d = np.repeat(BUDGETS, 12)
    return fit_mixture_law(d, h, TRUE.losses(d, h), seed=0, starts=3)


@pytest.mark.parametrize("target", [16e6, 64e6])
def test_the_law_keeps_most_of_the_optimum_gain_past_its_data(fitted, target):
    def objective(h):
        return float(TRUE.objective(target, h))

    uniform = np.full(M, 1.0 / M)
    best = optimal_weights(TRUE, target, lower=FLOOR)
    found = optimal_weights(fitted, target, lower=FLOOR)
    assert 1 - objective(best) / objective(uniform) > 0.01  # there is a gain to find
    assert (objective(uniform) - objective(found)) >= 0.9 * (objective(uniform) - objective(best))
    assert (found >= FLOOR - 1e-9).all() and found.sum() == pytest.approx(1.0)


def test_the_optimum_moves_with_the_budget_as_the_joint_form_says(fitted):
    small, large = optimal_weights(fitted, 4e6, lower=FLOOR), optimal_weights(fitted, 64e6, lower=FLOOR)
    assert np.abs(small - large).sum() > 0.2


def test_loss_predictions_at_held_out_budgets_and_their_error(fitted):
    rng = np.random.default_rng(1)
    h = rng.dirichlet(np.ones(M), 20)
    for budget in (0.5e6, 16e6):  # below and 4x past the fitted budgets
        d = np.full(20, budget)
        error = np.abs(fitted.losses(d, h) - TRUE.losses(d, h)) / TRUE.losses(d, h)
        assert error.mean() < 1e-3, (budget, error.mean())


def test_too_few_budgets_or_too_narrow_a_span_is_one_error():
    rng = np.random.default_rng(0)
    h = rng.dirichlet(np.ones(M), 12)
    for budgets in ((1e6, 4e6), (1e6, 2e6, 3e6)):
        d = np.resize(np.array(budgets), 12)
        with pytest.raises(AutoscaleError, match="needs 3 budgets spanning 4x"):
            fit_mixture_law(d, h, TRUE.losses(d, h))
    d = np.resize(np.array(BUDGETS), 12)
    losses = TRUE.losses(d, h)
    losses[0, 0] = np.inf
    with pytest.raises(AutoscaleError, match="one finite loss per run"):
        fit_mixture_law(d, h, losses)


@pytest.mark.parametrize("metric, weights", [("loss", None), ("perplexity", None), ("perplexity", [3.0, 1.0, 0.5])])
def test_the_objectives_gradient_is_its_derivative(metric, weights):
    # the optimum search is given this gradient: it must be the finite-difference slope of the objective
    w = None if weights is None else np.array(weights)
    for h in np.random.default_rng(2).dirichlet(np.ones(M), 5):
        for tokens in (1e6, 64e6):
            step = 1e-6
            slope = [(TRUE.objective(tokens, h + step * e, w, metric) - TRUE.objective(tokens, h - step * e, w, metric))
                     / (2 * step) for e in np.eye(M)]
            # central differences are exact to about 1e-6 of the largest component
            np.testing.assert_allclose(TRUE.objective_gradient(tokens, h, w, metric), slope, rtol=1e-6,
                                       atol=1e-6 * np.abs(slope).max())
