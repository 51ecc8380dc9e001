"""Search designs measured on the hard worlds (``simworld.make_hard_world``): today's and the options of
issue 25, each a plan (budgets, replicates, ratios) and a way from the runs to the target mixture.

Every design runs the library's own path (``plan_ddo``, ``fit_ddo_budgets``, ``extrapolate``); the
options change only its arguments, or what is done with the whole-seed bootstrap draws:

- ``hold``: today: a domain whose effects do not stand out is held at its base share at every budget;
- ``free``: fitted all the same (``hold_weak=False``);
- ``bag``: the mean of the extrapolated bootstrap draws (bagging: a weak trend survives, weakened);
- ``shrink``: the target mixture pulled towards the base by the positive-part James-Stein factor
  1 - trace(covariance of the draws) / |prediction - base|^2;
- ``shared``: one curve per domain over both budgets' runs (absolute objective change against absolute
  tokens, f(N) = A (N + N0)^-b), allocated at the target directly; no AutoScale law.

Search compute: the tokens every run of the design trains. The score is the world's own: the fraction of
the true optimum's gain over uniform at the target, and the speed-up (tokens uniform needs to match the
mixture's objective at the target, over the target, minus 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from autoscale.ddo.design import find_design
from autoscale.ddo.fit import fit_ddo_budgets
from autoscale.ddo.noise import paired_objectives
from autoscale.ddo.plan import plan_ddo
from autoscale.ddo.runs import RunsTable
from autoscale.extrapolate import extrapolate, extrapolate_draws, held_weights
from simworld import HARD_SEARCH, HARD_TARGET, World

BOOTSTRAP = 100  # resamples of whole seeds, where a design uses the draws


@dataclass(frozen=True)
class Design:
    """A search design: what it trains and how it turns the runs into the target mixture."""

    name: str
    replicates: int = 3
    budgets: tuple[float, ...] = HARD_SEARCH
    ratios: tuple[float, float] = (0.2, 3.0)
    weak: str = "hold"  # "hold" | "free"
    draws: str | None = None  # None | "bag" | "shrink"
    shared: bool = False

    def tables(self, world: World, noise: Mapping[str, float]) -> tuple[dict[float, RunsTable], float]:
        """The runs tables the design trains in ``world`` with ``noise`` (``World.observe``'s keywords),
        and the tokens they trained."""
        tables, tokens = {}, 0.0
        for budget in self.budgets:
            plan = plan_ddo(world.domains, budget=budget, replicates=self.replicates, ratios=self.ratios)
            evals = []
            for i in range(plan.n_runs):
                run = dict(zip(world.domains, plan.tokens[i].tolist(), strict=True))
                tokens += sum(run.values())
                observed = world.observe(run, int(plan.seeds[i]), **noise)
                evals.append([observed[d] for d in world.domains])
            tables[budget] = plan.with_evals(np.array(evals))
        return tables, tokens

    def predict(self, tables: Mapping[float, RunsTable], target: float = HARD_TARGET) -> dict[str, float]:
        """The design's mixture at ``target`` (weights)."""
        domains = next(iter(tables.values())).domains
        if self.shared:
            return dict(zip(domains, shared_fit_optimum(tables, target, 0.2 / len(domains)).tolist(), strict=True))
        results = fit_ddo_budgets(tables, bootstrap=BOOTSTRAP if self.draws else 0, hold_weak=self.weak == "hold")
        mixtures = [r.mixture for r in results.values()]
        options = {"target": target, "hold": held_weights(mixtures)}
        target_weights = extrapolate(mixtures, **options).mixture.weights
        weights = np.array([target_weights[d] for d in domains])
        if self.draws:
            draws, _ = extrapolate_draws(mixtures, [r.draws for r in results.values()], **options)
            weights = draws.mean(axis=0) if self.draws == "bag" else shrunk(weights, draws)
        return dict(zip(domains, weights.tolist(), strict=True))


#: today's design (K = 3, the paper's ratios, 1M and 4M) and design 2 (``ddo.design: 2``: x0.1 and x5, K = 4,
#: the budgets 16x apart), the candidate bench/simworld.py picked on worlds 0-9 and measured on 10-19
TODAY = Design("today: K=3, hold")
DESIGN_2 = Design("0.25M and 4M, x0.1 and x5, K=4, hold", replicates=4, budgets=(2.5e5, 4e6), ratios=(0.1, 5.0))


def shrunk(weights: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Positive-part James-Stein towards the uniform base: the deviation scaled by 1 - its noise / its size."""
    base = np.full(weights.size, 1.0 / weights.size)
    deviation = weights - base
    size = float(deviation @ deviation)
    noise = float(np.trace(np.cov(draws.T)))
    return base + (max(0.0, 1.0 - noise / size) if size > 0 else 0.0) * deviation


def score(world: World, weights: Mapping[str, float], target: float = HARD_TARGET) -> tuple[float, float]:
    """(fraction of the optimum's gain over uniform, speed-up over uniform) of ``weights`` at ``target``."""
    from scipy.optimize import brentq

    fraction = world.gain(weights, target) / world.gain(world.optimum(target), target)
    value = world.objective({d: w * target for d, w in weights.items()})
    m = len(world.domains)
    uniform_tokens = brentq(lambda n: world.objective({d: n / m for d in world.domains}) - value, 1e3, 1e13)
    return fraction, uniform_tokens / target - 1.0


# --- the shared fit ---------------------------------------------------------------------------------


def shared_fit_optimum(tables: Mapping[float, RunsTable], target: float, min_weight: float) -> np.ndarray:
    """Weights at ``target`` from one curve per domain fitted on every budget's runs at once."""
    fits = [_fit_shared(*points) for points in _domain_points(tables)]
    floor = min_weight * target

    def tokens(log_lam: float) -> np.ndarray:
        # KKT: f_i'(N_i) = -lam, i.e. N_i / s + x0 = (lam s / (A b))^(-1 / (b + 1)), at the floor if below
        out = []
        for amp, x0, b, s in fits:
            log_x = -(log_lam + math.log(s) - math.log(amp * b)) / (b + 1)
            out.append(max(floor, (math.exp(min(log_x, 700.0)) - x0) * s))
        return np.array(out)

    lo, hi = -200.0, 200.0
    for _ in range(200):  # sum of tokens falls as lam grows
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if tokens(mid).sum() > target else (lo, mid)
    n = tokens(0.5 * (lo + hi))
    return n / n.sum()


def _domain_points(tables: Mapping[float, RunsTable]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per domain: its tokens in each run of its design points, the objective's change against the run's
    seed's base run in the objective's own units (the paired ratio minus 1, times the budget's base
    objective: the per-budget normalisation), and the base run's tokens of that domain."""
    points: list[tuple[list, list, list]] | None = None
    for table in tables.values():
        design = find_design(table)
        objective = table.objective()
        paired = paired_objectives(objective, design, table.seeds)
        assert paired is not None, "the designs here always have a seed column"
        base = float(objective[design.base_rows].mean())
        points = points or [([], [], []) for _ in table.domains]
        for j in range(len(table.domains)):
            for g in design.domain_groups[j]:
                for r in design.groups[g]:
                    points[j][0].append(float(table.tokens[r, j]))
                    points[j][1].append((paired[r] - 1.0) * base)
                    points[j][2].append(float(design.base_tokens[j]))
    assert points is not None
    return [(np.array(n), np.array(d), np.array(b)) for n, d, b in points]


def _fit_shared(n: np.ndarray, change: np.ndarray, base: np.ndarray) -> tuple[float, float, float, float]:
    """(A, x0, b, s) of change = A ((n / s + x0)^-b - (base / s + x0)^-b), least squares in logs of A, x0, b."""
    from scipy.optimize import least_squares

    s = float(base.max())
    x, xb = n / s, base / s

    def residual(p: np.ndarray) -> np.ndarray:
        amp, x0, b = np.exp(p)
        r = amp * ((x + x0) ** -b - (xb + x0) ** -b) - change
        return np.where(np.isfinite(r), r, 1e3)

    best = None
    for x0 in (0.01, 0.1, 1.0):
        for b in (0.3, 1.0, 2.0):
            basis = (x + x0) ** -b - (xb + x0) ** -b
            amp = max(float(basis @ change / (basis @ basis)), 1e-12)  # the best A for this x0 and b
            fit = least_squares(residual, np.log([amp, x0, b]), method="trf", max_nfev=500,
                                bounds=([-50.0, math.log(1e-6), math.log(1e-3)], [50.0, math.log(1e4), math.log(20.0)]))
            if best is None or fit.cost < best.cost:
                best = fit
    assert best is not None
    amp, x0, b = np.exp(best.x)
    return float(amp), float(x0), float(b), s
