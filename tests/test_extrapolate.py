"""AutoScale extrapolation against a world whose optimum is known in closed form.

World: L(N) = sum_i B_i (N_i + o_i)^(-b_i), N_i tokens. KKT with multiplier lam gives the optimum
N_i(lam) = (b_i B_i / lam)^(1 / (1 + b_i)) - o_i exactly, so log(N_i + o_i) is affine in log lam with
a per-domain slope: the structure the AutoScale law relies on.
"""

import numpy as np
import pytest
from scipy.optimize import brentq

from autoscale.ddo.allocate import allocate
from autoscale.errors import AutoscaleError
from autoscale.extrapolate import extrapolate
from autoscale.mixture import Mixture

DOMAINS = ("web", "code", "books", "wiki")


class PowerWorld:
    def __init__(self, B, b, o=(0.0, 0.0, 0.0, 0.0)):
        self.B, self.b, self.o = map(lambda v: np.asarray(v, float), (B, b, o))

    def at_multiplier(self, lam: float) -> np.ndarray:
        """The exact optimum where the marginal gain is ``lam`` (closed form)."""
        return (self.b * self.B / lam) ** (1 / (1 + self.b)) - self.o

    def at_budget(self, total: float) -> np.ndarray:
        """The exact unbounded optimum at ``total`` tokens (one monotone 1-D root in log lam)."""
        lam = np.exp(brentq(lambda t: self.at_multiplier(np.exp(t)).sum() - total, -200, 50, xtol=1e-15))
        return self.at_multiplier(lam)

    def bounded(self, total: float, lo=None, hi=None) -> np.ndarray:
        """The exact optimum with floors/caps in tokens: B N^(-b) = n^(-b) with N = n * B^(1/b)."""
        unit = self.B ** (1 / self.b)
        alloc = allocate(self.o / unit, self.b, total, None if lo is None else np.asarray(lo) / unit,
                         None if hi is None else np.asarray(hi) / unit, cost=unit)
        return alloc.n * unit

    def mixture(self, lam: float, **meta) -> Mixture:
        return Mixture(dict(zip(DOMAINS, self.at_multiplier(lam).tolist(), strict=True)), meta)


WORLD = PowerWorld(B=[3e3, 1e4, 2e3, 5e3], b=[0.35, 0.6, 0.45, 0.8])
SMALL, LARGE = WORLD.mixture(1e-8), WORLD.mixture(2.5e-9)


def tokens(mixture: Mixture) -> np.ndarray:
    return np.array([mixture.tokens[d] for d in DOMAINS])


def test_one_step_is_the_papers_rule_and_the_exact_optimum():
    result = extrapolate([SMALL, LARGE], steps=1)
    got = tokens(result.mixture)
    assert got == pytest.approx(tokens(LARGE) ** 2 / tokens(SMALL), rel=1e-14)
    # log lam moves by the same step again: 1e-8 -> 2.5e-9 -> 6.25e-10
    assert got == pytest.approx(WORLD.at_multiplier(6.25e-10), rel=1e-12)
    assert result.s == 2.0 and result.mixture.metadata["s"] == 2.0


def test_k_steps_apply_the_rule_k_times():
    result = extrapolate([LARGE, SMALL], steps=3)  # input order does not matter: sorted by budget
    assert result.s == 4.0
    assert tokens(result.mixture) == pytest.approx(WORLD.at_multiplier(1e-8 * 0.25**4), rel=1e-12)


@pytest.mark.parametrize("scale", [10.0, 1.5, 0.5])  # extrapolate, interpolate, go below
def test_a_target_budget_gives_the_exact_optimum_there(scale):
    target = LARGE.budget * scale
    result = extrapolate([SMALL, LARGE], target=target)
    assert result.mixture.budget == pytest.approx(target, rel=1e-12)
    assert tokens(result.mixture) == pytest.approx(WORLD.at_budget(target), rel=1e-9)
    assert (result.s > 1) == (scale > 1)


def test_three_mixtures_fit_one_shared_scale_and_say_so():
    mixtures = [WORLD.mixture(lam) for lam in (1e-8, 4e-9, 1e-9)]
    result = extrapolate(mixtures, target=2e10)
    assert tokens(result.mixture) == pytest.approx(WORLD.at_budget(2e10), rel=1e-9)
    assert "least-squares line" in result.method and result.rms < 1e-12
    assert result.scale[0] == 0.0 and result.scale[-1] == 1.0 and 0 < result.scale[1] < 1


def test_three_noisy_mixtures_report_the_misfit():
    noise = np.array([1.0, 1.02, 0.98, 1.0])
    mixtures = [WORLD.mixture(1e-8), Mixture(dict(zip(DOMAINS, (tokens(WORLD.mixture(4e-9)) * noise).tolist(), strict=True))),
                WORLD.mixture(1e-9)]
    result = extrapolate(mixtures, steps=1)
    assert result.rms > 1e-3 and f"{result.rms:.3g}" in result.method
    assert result.s == 1.5  # one mean input spacing beyond the largest


def test_offsets_make_the_law_exact_for_the_offset_model():
    world = PowerWorld(B=[3e3, 1e4, 2e3, 5e3], b=[0.35, 0.6, 0.45, 0.8], o=[2e7, 5e6, 4e6, 1e6])
    offsets = dict(zip(DOMAINS, world.o.tolist(), strict=True))
    a = world.mixture(1e-8, offset_tokens=offsets)
    b = world.mixture(2.5e-9, offset_tokens=offsets)
    target = 3 * b.budget
    exact = world.at_budget(target)
    with_offsets = extrapolate([a, b], target=target, offsets=True)
    assert tokens(with_offsets.mixture) == pytest.approx(exact, rel=1e-9)
    assert "offsets" in with_offsets.method and with_offsets.offsets == offsets
    raw = extrapolate([a, b], target=target)  # the paper's rule on raw tokens is off for this world
    assert np.max(np.abs(tokens(raw.mixture) / exact - 1)) > 1e-3


def test_offsets_need_the_fit_metadata():
    with pytest.raises(AutoscaleError, match="offset_tokens"):
        extrapolate([SMALL, LARGE], steps=1, offsets=True)


def test_a_weight_floor_reallocates_to_the_exact_bounded_optimum():
    target = 20 * LARGE.budget
    law = tokens(extrapolate([SMALL, LARGE], target=target).mixture) / target
    floor = float(law.min()) * 1.5  # the smallest domain must rise to the floor
    result = extrapolate([SMALL, LARGE], target=target, min_weight=floor)
    lo = np.full(4, floor * target)
    assert tokens(result.mixture) == pytest.approx(WORLD.bounded(target, lo=lo), rel=1e-8)
    assert list(result.bounded.values()) == ["floor"]
    assert result.mixture.budget == pytest.approx(target, rel=1e-12)
    assert any("below the floor" in w for w in result.warnings)


def test_a_cap_reallocates_to_the_exact_bounded_optimum_and_warns():
    target = 20 * LARGE.budget
    law = tokens(extrapolate([SMALL, LARGE], target=target).mixture)
    big = int(np.argmax(law))
    cap = {DOMAINS[big]: 0.8 * law[big]}
    result = extrapolate([SMALL, LARGE], target=target, max_tokens=cap)
    hi = np.full(4, np.inf)
    hi[big] = cap[DOMAINS[big]]
    assert tokens(result.mixture) == pytest.approx(WORLD.bounded(target, hi=hi), rel=1e-8)
    assert result.bounded == {DOMAINS[big]: "cap"}
    assert any("above its cap" in w for w in result.warnings)
    assert result.law.tokens[DOMAINS[big]] == pytest.approx(law[big])  # the law before the cap


def test_bounds_are_not_applied_unless_asked():
    result = extrapolate([SMALL, LARGE], steps=1)
    assert result.bounded == {} and result.warnings == []


def test_warns_when_a_domain_was_at_its_floor_at_one_budget_only():
    a = SMALL.with_metadata(bounded={"code": "floor"})
    b = LARGE.with_metadata(bounded={})
    result = extrapolate([a, b], steps=1)
    assert len(result.warnings) == 1 and "'code' sat at its floor" in result.warnings[0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target": -5.0}, "target must be a positive number of tokens"),
        ({"target": 0.0}, "target must be a positive number of tokens"),
        ({}, "exactly one of"),
        ({"target": 1e9, "steps": 1}, "exactly one of"),
        ({"steps": 0}, "steps must be a whole number >= 1"),
        ({"steps": 1, "min_weight": 0.3}, "floors need"),
        ({"steps": 1, "max_tokens": dict.fromkeys(DOMAINS, 1.0)}, "caps allow"),
        ({"steps": 1, "max_tokens": {"reddit": 1.0}}, "unknown domain 'reddit'"),
    ],
)
def test_bad_requests_are_user_errors(kwargs, message):
    with pytest.raises(AutoscaleError, match=message):
        extrapolate([SMALL, LARGE], **kwargs)


def test_bad_mixture_sets_are_user_errors():
    with pytest.raises(AutoscaleError, match="at least two mixtures"):
        extrapolate([SMALL], steps=1)
    other = Mixture({"web": 1.0, "code": 1.0, "books": 1.0, "reddit": 1.0})
    with pytest.raises(AutoscaleError, match=r"different domains .*missing: wiki; extra: reddit"):
        extrapolate([SMALL, other], steps=1)
    with pytest.raises(AutoscaleError, match="same budget"):
        extrapolate([SMALL, SMALL.scaled_to(SMALL.budget)], steps=1)
    with pytest.raises(AutoscaleError, match="needs positive amounts"):
        extrapolate([Mixture({"a": 0.0, "b": 1.0}), Mixture({"a": 1.0, "b": 2.0})], steps=1)


def test_a_target_below_the_inputs_is_a_user_error_naming_their_budgets():
    # one domain shrinks as the budget grows: the total has a minimum (about 10.97 tokens), below 11
    a, b = Mixture({"x": 1.0, "y": 10.0}), Mixture({"x": 4.0, "y": 9.0})
    assert extrapolate([a, b], target=11.5).mixture.budget == pytest.approx(11.5)  # between: interpolation
    assert extrapolate([a, b], target=11.0).mixture.budget == pytest.approx(11.0)  # at the smallest
    for target in (10.99, 5.0):  # reachable by the law or not: below the inputs is not what it is for
        with pytest.raises(AutoscaleError, match=r"below the smallest input budget \(inputs: 11, 13 tokens\)"):
            extrapolate([a, b], target=target)
    with pytest.raises(AutoscaleError, match="below the smallest input budget"):
        extrapolate([a, b], target=5.0, hold={"x": 0.1})  # the held-domain path checks the whole budgets
