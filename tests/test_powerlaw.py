"""Per-domain response fits: y = (x + a)^(-b) + c."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscale.ddo.powerlaw import fit_power_law, interpolate3, is_decreasing
from autoscale.errors import AutoscaleError


def curve(x, a, b, c):
    return (np.asarray(x, float) + a) ** (-b) + c


def test_three_points_are_interpolated_exactly():
    x = [0.2, 1.0, 3.0]
    fit = fit_power_law(x, curve(x, 2.5, 1.4, 0.85))
    assert fit.exact and fit.r2 is None and fit.n_points == 3
    assert (fit.a, fit.b, fit.c) == pytest.approx((2.5, 1.4, 0.85), rel=1e-8)
    assert np.abs(fit.residuals).max() < 1e-12


def test_three_points_admit_two_exact_curves_and_the_larger_exponent_is_taken():
    # The published GitHub domain: a flat, low-asymptote curve (b ~ 0.03) also passes through it.
    x = np.array([0.2, 1.0, 3.0])
    y = curve(x, 6.61618, 1.43600, 0.94582)
    roots = interpolate3(x, y)
    assert len(roots) == 2
    for a, b, c in roots:
        assert np.allclose(curve(x, a, b, c), y, atol=1e-12)
    assert roots[0][1] < 0.1 and roots[0][2] < 0.1
    fit = fit_power_law(x, y)
    assert (fit.a, fit.b, fit.c) == pytest.approx((6.61618, 1.43600, 0.94582), rel=1e-7)


@settings(max_examples=40, deadline=None)
@given(
    a=st.floats(0.5, 6.0), b=st.floats(0.6, 3.0), c=st.floats(0.5, 0.95),
    x1=st.floats(0.1, 0.5), x3=st.floats(2.0, 5.0),
)
def test_exact_fit_passes_through_any_decreasing_convex_triple(a, b, c, x1, x3):
    x = np.array([x1, 1.0, x3])
    y = curve(x, a, b, c)
    fit = fit_power_law(x, y)
    assert fit.exact and fit.b > 0 and fit.a > -x1
    assert np.allclose(fit(x), y, rtol=0, atol=1e-10)


def test_more_points_use_least_squares_and_recover_a_known_curve():
    x = np.array([0.2, 0.5, 1.0, 2.0, 3.0])
    fit = fit_power_law(x, curve(x, 2.0, 1.2, 0.8))
    assert not fit.exact and fit.n_points == 5
    assert (fit.a, fit.b, fit.c) == pytest.approx((2.0, 1.2, 0.8), rel=1e-5)
    assert fit.r2 == pytest.approx(1.0, abs=1e-10)


def test_noisy_points_report_residuals_and_r2():
    rng = np.random.default_rng(0)
    x = np.repeat([0.2, 0.5, 1.0, 2.0, 3.0], 2)
    y = curve(x, 2.0, 1.2, 0.8) + rng.normal(0, 2e-3, x.size)
    fit = fit_power_law(x, y)
    assert 0.9 < fit.r2 < 1.0
    assert np.allclose(fit.residuals, y - fit(x))
    assert fit.b > 0 and fit.a > -0.2


def test_replicates_at_three_amounts_interpolate_the_means():
    x = np.array([0.2, 0.2, 1.0, 1.0, 3.0, 3.0])
    y = curve(x, 2.5, 1.4, 0.85) + np.array([1e-3, -1e-3, 2e-3, -2e-3, 5e-4, -5e-4])
    fit = fit_power_law(x, y)
    assert fit.exact and fit.r2 is not None and fit.r2 < 1
    assert (fit.a, fit.b, fit.c) == pytest.approx((2.5, 1.4, 0.85), rel=1e-6)


def test_a_rising_response_gets_a_least_squares_curve_not_an_error():
    x, y = [0.2, 1.0, 3.0], [0.98, 1.0, 1.01]
    assert not is_decreasing(np.array(x), np.array(y))
    fit = fit_power_law(x, y)
    assert not fit.exact and fit.b > 0
    assert is_decreasing(np.array(x), curve(x, 2.5, 1.4, 0.85))


def test_too_few_distinct_amounts_is_a_user_error():
    with pytest.raises(AutoscaleError, match="at least 3 distinct amounts, got 2"):
        fit_power_law([1.0, 1.0, 3.0], [1.0, 1.0, 0.9])
    with pytest.raises(AutoscaleError, match="finite"):
        fit_power_law([0.2, 1.0, 3.0], [1.1, np.nan, 0.9])


@settings(max_examples=30, deadline=None)
@given(
    x=st.lists(st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 10.0]), min_size=3, max_size=7),
    y=st.lists(st.floats(0.5, 2.0), min_size=7, max_size=7),
)
def test_any_finite_data_gives_a_finite_curve_or_a_user_error(x, y):
    try:
        fit = fit_power_law(x, y[: len(x)])
    except AutoscaleError as err:
        assert "distinct amounts" in str(err)
        return
    assert all(np.isfinite([fit.a, fit.b, fit.c])) and fit.b > 0 and fit.a > -min(x)
    assert np.all(np.isfinite(fit.residuals))


def test_a_root_on_the_grid_of_exponents_is_found():
    # b = 1 lies on the grid of log b that brackets the roots: found there, not an error
    x = np.array([0.5, 1.0, 2.0])
    fit = fit_power_law(x, curve(x, 1.0, 1.0, 0.5))
    assert fit.exact and np.allclose(fit(x), curve(x, 1.0, 1.0, 0.5), rtol=0, atol=1e-10)
