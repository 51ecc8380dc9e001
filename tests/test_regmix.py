"""RegMix at one budget: the mixture sampler's rules, and in the noise-free simulated world
(tests/simworld.py, where the true optimum is known) the regression's best mixture keeps most of the
optimum's gain over uniform. Real lightgbm."""

import numpy as np
import pytest

from autoscale.errors import AutoscaleError
from autoscale.regmix import best_mixture, default_runs, fit_regressor, min_runs, sample_mixtures
from simworld import make_world

M = 3
FLOOR = [0.2 / M] * M  # the DDO floor, 0.2 x uniform


def test_sampled_mixtures_are_distinct_bounded_and_reproducible():
    prior = [0.6, 0.3, 0.1]
    a = sample_mixtures(prior, 64, 7, lower=FLOOR, upper=[0.8, 1.0, 1.0])
    assert a.shape == (64, 3)
    np.testing.assert_allclose(a.sum(axis=1), 1.0)
    assert (a >= FLOOR[0] - 1e-12).all() and (a[:, 0] <= 0.8 + 1e-12).all()
    distances = np.abs(a[:, None, :] - a[None, :, :]).sum(axis=2) + np.eye(64) * 9
    assert distances.min() >= 1e-2  # no near-duplicates
    np.testing.assert_array_equal(a, sample_mixtures(prior, 64, 7, lower=FLOOR, upper=[0.8, 1.0, 1.0]))
    assert not np.array_equal(a, sample_mixtures(prior, 64, 8, lower=FLOOR, upper=[0.8, 1.0, 1.0]))
    # without bounds, small strengths give mixtures with zeroed domains, large ones stay near the prior
    free = sample_mixtures(prior, 500, 0, min_weight=0.01)
    assert (free == 0).any() and ((free > 0) & (free < 0.01)).sum() == 0
    with pytest.raises(AutoscaleError, match="distinct mixtures within the bounds"):
        sample_mixtures(prior, 10, 0, lower=[0.5, 0.5, 0.5], max_draws=2000)


@pytest.mark.parametrize("seed", range(4))
def test_in_the_simulated_world_regmix_keeps_most_of_the_optimum_gain(seed):
    world = make_world(seed)
    budget, prior = 4e6, np.full(M, 1.0 / M)
    runs = sample_mixtures(prior, default_runs(M), seed, lower=FLOOR)
    objective = np.array([world.objective(dict(zip(world.domains, r * budget, strict=True))) for r in runs])
    model = fit_regressor(runs, objective, seed)
    best = best_mixture(model, prior, seed, lower=FLOOR, candidates=20_000)
    assert best.sum() == pytest.approx(1.0) and (best >= FLOOR[0] - 1e-9).all()
    found = world.gain(dict(zip(world.domains, best, strict=True)), budget)
    optimum = world.gain(world.optimum(budget), budget)
    assert found >= 0.8 * optimum, (found, optimum)
    again = best_mixture(fit_regressor(runs, objective, seed), prior, seed, lower=FLOOR, candidates=20_000)
    np.testing.assert_array_equal(best, again)  # deterministic for a seed


def test_too_few_runs_is_one_error():
    runs = sample_mixtures([1, 1, 1], min_runs(M) - 1, 0)
    with pytest.raises(AutoscaleError, match=f"needs at least {min_runs(M)} \\(default {default_runs(M)}\\)"):
        fit_regressor(runs, np.ones(len(runs)))
