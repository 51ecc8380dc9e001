"""DDO: from a filled runs table to the optimal mixture at one budget.

1. Find the base run (every other run differs from it in at most one domain) and, per domain, its
   perturbation runs. x = tokens / base tokens (relative amount), y = objective / base objective.
2. Fit y_i(x) = (x + a_i)^(-b_i) + c_i per domain (``powerlaw``).
3. Allocate relative amounts n_i minimising sum_i (n_i + a_i)^(-b_i) with the budget met in tokens
   (sum_i n_i * base tokens_i = budget) and floors/caps (``allocate``). The model's objective is
   separable: y(n) = 1 + sum_i (y_i(n_i) - 1), times the base objective.
4. Optionally bootstrap: resample the replicate runs of every design point, refit, reallocate, and
   report a percentile interval per weight.

Units: ``budget``, ``max_tokens`` and the mixture are tokens; fits and ``Allocation.n`` are amounts
relative to the base run's per-domain tokens; intervals are weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from autoscale.ddo.allocate import Allocation, allocate, caps_in_tokens
from autoscale.ddo.powerlaw import PowerLawFit, fit_power_law, is_decreasing
from autoscale.ddo.runs import RunsTable
from autoscale.errors import AutoscaleError
from autoscale.mixture import Mixture

INTERVAL = (2.5, 97.5)  # bootstrap percentiles: a 95% interval


@dataclass(frozen=True, eq=False)
class DDOResult:
    """What DDO found at one budget.

    Attributes:
        mixture: optimal tokens per domain at ``budget``; its metadata carries the fit (JSON form).
        fits: domain -> fitted response (relative amounts).
        bounded: domain -> "floor" | "cap" for domains the bounds stopped.
        predicted_objective: the model's objective at the optimum (eval units).
        base_objective: the base run's measured objective (mean over its replicates).
        intervals: domain -> (low, high) weight, with ``bootstrap``; else empty.
        warnings: one line each.
        base: the base run's tokens; budget: total tokens allocated; allocation: the raw solution.
    """

    mixture: Mixture
    fits: dict[str, PowerLawFit]
    bounded: dict[str, str]
    predicted_objective: float
    base_objective: float
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    base: Mixture | None = None
    budget: float = math.nan
    allocation: Allocation | None = None


@dataclass(frozen=True, eq=False)
class _Design:
    base_tokens: np.ndarray  # [m] tokens
    base_rows: np.ndarray  # row indices of the base run and its replicates
    groups: list[np.ndarray]  # row indices per distinct token vector (design point)
    domain_groups: list[np.ndarray]  # per domain: group ids of its points (base included)
    group_of: np.ndarray  # [n_runs] group id
    x: np.ndarray  # [n_runs, m] relative amounts


def fit_ddo(
    table: RunsTable,
    *,
    min_ratio: float = 0.2,
    budget: float | None = None,
    max_tokens: Mapping[str, float] | None = None,
    eval_weights: Mapping[str, float] | None = None,
    bootstrap: int = 0,
    seed: int = 0,
) -> DDOResult:
    """Fit the DDO model to a filled runs table and allocate ``budget`` tokens.

    Args:
        table: base run, perturbation runs (>= 3 distinct amounts per domain) and replicates.
        min_ratio: floor per domain, as a multiple of its base share of the budget (the published
            0.2: weight >= 0.2/m for a uniform base). 0 allows dropping a domain.
        budget: tokens to allocate; default the base run's total.
        max_tokens: domain -> cap in tokens (e.g. unique tokens x allowed epochs).
        eval_weights: eval name -> weight for the objective; default the plain mean.
        bootstrap: number of bootstrap resamples of the replicate runs (0: none). Needs replicates.
        seed: seed of the bootstrap resampling (the result is deterministic for a seed).
    """
    objective = table.objective(eval_weights)
    design = _design(table)
    domains = table.domains
    base_tokens = design.base_tokens
    base_total = float(base_tokens.sum())
    budget = base_total if budget is None else float(budget)
    if not math.isfinite(budget) or budget <= 0:
        raise AutoscaleError(f"budget must be a positive number of tokens, got {budget!r}")
    min_ratio = float(min_ratio)
    if not math.isfinite(min_ratio) or min_ratio < 0:
        raise AutoscaleError(f"min_ratio must be a number >= 0, got {min_ratio!r}")
    base_objective = float(objective[design.base_rows].mean())
    if base_objective <= 0:
        raise AutoscaleError(f"the base run's objective must be positive, got {base_objective:g}")

    warnings: list[str] = []
    # Bounds, in amounts relative to each domain's base tokens.
    lo = np.full(len(domains), min_ratio * budget / base_total)
    hi = caps_in_tokens(max_tokens, domains) / base_tokens
    for i in np.flatnonzero(hi < lo):
        warnings.append(f"domain {domains[i]!r}: cap of {hi[i] * base_tokens[i]:.4g} tokens is below its floor; "
                        "the floor is lowered to it")
        lo[i] = hi[i]
    unit = float(base_tokens.mean())
    cost, total = base_tokens / unit, budget / unit

    all_rows = np.arange(table.n_runs)
    fits = _fit_domains(objective, design, all_rows)
    alloc = _allocate(fits, total, lo, hi, cost)

    for i, d in enumerate(domains):
        f = fits[i]
        if not is_decreasing(f.x, f.y):
            warnings.append(f"domain {d!r}: the objective does not fall as its tokens grow; its fit is unreliable")
        elif not f.exact and np.unique(f.x).size == 3:
            warnings.append(f"domain {d!r}: no power law passes exactly through its 3 amounts; least-squares fit")
        n, (xmin, xmax) = alloc.n[i], (f.x.min(), f.x.max())
        if not (alloc.at_floor[i] or alloc.at_cap[i]) and not (xmin <= n <= xmax):
            warnings.append(
                f"domain {d!r}: optimum {n:.3g}x its base tokens lies outside the measured {xmin:.3g}x-{xmax:.3g}x"
            )

    tokens = alloc.n * base_tokens
    bounded = {d: "floor" if alloc.at_floor[i] else "cap" for i, d in enumerate(domains)
               if alloc.at_floor[i] or alloc.at_cap[i]}
    predicted = base_objective * (1.0 + sum(float(f(n)) - 1.0 for f, n in zip(fits, alloc.n, strict=True)))

    intervals: dict[str, tuple[float, float]] = {}
    if bootstrap:
        intervals = _bootstrap(objective, design, fits, total, lo, hi, cost, int(bootstrap), seed, warnings, domains)

    metadata = {
        "method": "ddo",
        "base_tokens": dict(zip(domains, base_tokens.tolist(), strict=True)),
        "base_objective": base_objective,
        "predicted_objective": predicted,
        "min_ratio": min_ratio,
        "fits": {d: _fit_record(f) for d, f in zip(domains, fits, strict=True)},
        # a_i in tokens: what `predict --offsets` adds before applying the AutoScale law
        "offset_tokens": {d: f.a * float(bt) for d, f, bt in zip(domains, fits, base_tokens, strict=True)},
        "bounded": bounded,
    }
    if intervals:
        metadata |= {"intervals": {d: list(v) for d, v in intervals.items()}, "bootstrap": int(bootstrap), "seed": seed}
    if warnings:
        metadata["warnings"] = list(warnings)
    mixture = Mixture(dict(zip(domains, tokens.tolist(), strict=True)), metadata)
    return DDOResult(
        mixture=mixture,
        fits=dict(zip(domains, fits, strict=True)),
        bounded=bounded,
        predicted_objective=predicted,
        base_objective=base_objective,
        intervals=intervals,
        warnings=warnings,
        base=Mixture(dict(zip(domains, base_tokens.tolist(), strict=True))),
        budget=budget,
        allocation=alloc,
    )


def _fit_record(f: PowerLawFit) -> dict:
    record = {"a": f.a, "b": f.b, "c": f.c, "r2": f.r2, "points": f.n_points, "exact": f.exact}
    if f.n_points > 3:
        record["residuals"] = f.residuals.tolist()  # normalised objective, one per run
    return record


def _design(table: RunsTable) -> _Design:
    """Locate the base run and each domain's perturbations."""
    tokens = table.tokens
    points, first, group_of = np.unique(tokens, axis=0, return_index=True, return_inverse=True)
    group_of = group_of.ravel()
    changed = (points[:, None, :] != points[None, :, :]).sum(axis=2)  # [g, g] domains that differ
    offending = (changed >= 2).sum(axis=1)
    compatible = (changed == 1).sum(axis=1)
    named_base = np.array([any(table.runs[r] == "base" for r in np.flatnonzero(group_of == g))
                           for g in range(len(points))])
    # fewest runs that change two domains; then most perturbations; then a run named "base"; then first
    order = sorted(range(len(points)), key=lambda g: (offending[g], -compatible[g], not named_base[g], first[g]))
    base = order[0]
    base_name = table.runs[first[base]]
    if offending[base]:
        if offending[base] >= compatible[base]:
            raise AutoscaleError("no base run: no run differs from every other run in at most one domain")
        bad = next(g for g in np.argsort(first) if changed[base, g] >= 2)
        which = [d for d, u, v in zip(table.domains, points[bad], points[base], strict=True) if u != v]
        raise AutoscaleError(
            f"run {table.runs[first[bad]]!r} changes {len(which)} domains ({', '.join(which)}) relative to the "
            f"base run {base_name!r}; a DDO perturbation changes exactly one"
        )
    base_tokens = points[base]
    for d, n in zip(table.domains, base_tokens, strict=True):
        if n <= 0:
            raise AutoscaleError(f"the base run {base_name!r} has no tokens of domain {d!r}; amounts are relative to it")
    domain_groups = []
    for j, d in enumerate(table.domains):
        members = [g for g in range(len(points)) if g == base or (changed[base, g] == 1 and points[g, j] != base_tokens[j])]
        if len(members) < 3:
            raise AutoscaleError(
                f"domain {d!r} has {len(members)} distinct token amounts (base included); the fit needs at least 3"
            )
        domain_groups.append(np.array(members))
    groups = [np.flatnonzero(group_of == g) for g in range(len(points))]
    return _Design(base_tokens, groups[base], groups, domain_groups, group_of, tokens / base_tokens)


def _fit_domains(objective, design: _Design, rows: np.ndarray, starts=None) -> list[PowerLawFit]:
    """Fit every domain on the runs ``rows`` (indices, repeats allowed: a bootstrap sample)."""
    in_base = design.group_of[rows] == design.group_of[design.base_rows[0]]
    y = objective[rows] / objective[rows[in_base]].mean()
    fits = []
    for j, groups in enumerate(design.domain_groups):
        mask = np.isin(design.group_of[rows], groups)
        start = None if starts is None else (starts[j].a, starts[j].b)
        fits.append(fit_power_law(design.x[rows[mask], j], y[mask], start=start))
    return fits


def _allocate(fits, total, lo, hi, cost) -> Allocation:
    a = np.array([f.a for f in fits])
    b = np.array([f.b for f in fits])
    return allocate(a, b, total, lo, hi, cost=cost)


def _bootstrap(objective, design, fits, total, lo, hi, cost, replicates, seed, warnings, domains):
    if replicates < 0:
        raise AutoscaleError(f"bootstrap must be a number of resamples >= 0, got {replicates}")
    if all(g.size == 1 for g in design.groups):
        raise AutoscaleError(
            "bootstrap needs replicate runs (rows with the same tokens, e.g. other seeds); every design point has one run"
        )
    rng = np.random.default_rng(seed)
    weights, failed = [], 0
    for _ in range(replicates):
        rows = np.concatenate([rng.choice(g, size=g.size, replace=True) for g in design.groups])
        try:
            alloc = _allocate(_fit_domains(objective, design, rows, starts=fits), total, lo, hi, cost)
        except AutoscaleError:
            failed += 1
            continue
        tokens = alloc.n * cost
        weights.append(tokens / tokens.sum())
    if not weights:
        raise AutoscaleError("bootstrap: every resample failed to fit")
    if failed:
        warnings.append(f"bootstrap: {failed} of {replicates} resamples failed to fit and were skipped")
    single = sum(g.size == 1 for g in design.groups)
    if single:
        warnings.append(f"bootstrap: {single} of {len(design.groups)} design points have a single run and stay fixed")
    low, high = np.percentile(np.array(weights), INTERVAL, axis=0)
    return {d: (float(lo_), float(hi_)) for d, lo_, hi_ in zip(domains, low, high, strict=True)}
