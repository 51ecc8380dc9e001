"""RegMix at one budget: the mixture sampler's rules, and in the noise-free simulated world
(tests/simworld.py, where the true optimum is known) the regression's best mixture keeps most of the
optimum's gain over uniform. Real lightgbm."""

import numpy as np
import pytest

from autoscale.errors import AutoscaleError
from autoscale.laws.regmix import (
    best_mixture,
    default_runs,
    fit_regressor,
    min_runs,
    sample_mixtures,
    sample_within,
)
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


@pytest.mark.parametrize("m", [2, 5, 7, 17, 24, 64])
def test_candidates_lie_inside_the_floors_and_caps_at_any_m(m):
    """The search's candidates: floors of 0.2/m (where rejection accepts ~1% of draws at m = 7 and none
    at m = 17), one cap that binds often, every row inside the bounds, no draw lost."""
    prior = np.geomspace(1.0, 0.01, m)
    lower = np.full(m, 0.2 / m)
    upper = np.ones(m)
    upper[0] = 1.5 / m  # the largest prior share capped just above uniform
    w = sample_within(prior, 5000, 3, lower=lower, upper=upper)
    assert w.shape == (5000, m)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert (w >= lower - 1e-12).all() and (w <= upper + 1e-12).all()
    assert np.isclose(w[:, 0], upper[0]).mean() > 0.05  # the cap binds, and the excess went elsewhere
    np.testing.assert_array_equal(w, sample_within(prior, 5000, 3, lower=lower, upper=upper))
    with pytest.raises(AutoscaleError, match="leave no mixture"):
        sample_within(prior, 10, 0, lower=np.full(m, 1.1 / m))


def test_candidates_follow_the_prior_and_its_temperature():
    """The free mass is RegMix's Dirichlet: centred on prior ** temperature, so temperature 1 keeps the
    token shares' skew and a lower one flattens it; min_weight zeroes small shares of the free part."""
    prior = np.array([0.8, 0.15, 0.05])
    sharp = sample_within(prior, 20000, 0, temperature=1.0).mean(axis=0)
    flat = sample_within(prior, 20000, 0, temperature=0.2).mean(axis=0)
    np.testing.assert_allclose(sharp, prior, atol=0.02)
    tempered = prior**0.2 / (prior**0.2).sum()
    np.testing.assert_allclose(flat, tempered, atol=0.02)
    floored = sample_within(prior, 2000, 0, lower=[0.05] * 3, min_weight=0.2)
    assert np.isclose(floored, 0.05).any() and (floored >= 0.05 - 1e-12).all()


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
