"""DDO: from a filled runs table to the optimal mixture at one budget.

1. Find the base run (every other run differs from it in at most one domain) and, per domain, its
   perturbation runs (``design``). x = tokens / base tokens (relative amount), y = objective / base
   objective; with a ``seed`` column, each run is divided by its own seed's base run (paired).
2. Noise and signal (``noise``): with replicates, the run-to-run noise and each perturbation's effect
   with a t-based standard error. A domain whose response is non-monotone, or whose effects do not
   stand out from the noise, is *held* at its base share: it does not drive the allocation.
3. Fit y_i(x) = (x + a_i)^(-b_i) + c_i per domain (``powerlaw``): the per-point means are
   interpolated exactly with 3 amounts, least squares over every run with more.
4. Allocate relative amounts n_i minimising sum_i (n_i + a_i)^(-b_i) over the free domains with the
   budget met in tokens (sum_i n_i * base tokens_i = budget) and floors/caps (``allocate``). The
   model's objective is separable: y(n) = 1 + sum_i (y_i(n_i) - 1), times the base objective.
5. Optionally bootstrap: resample whole seeds (a seed's runs together, keeping the pairing; without
   a seed column, the replicate runs of every design point), refit, reallocate; report a percentile
   interval per weight and keep the draws (``DDOResult.draws``) for the extrapolation.

Why hold rather than fit: a power law through noise puts a domain at its floor or far above its base
for no reason, and the AutoScale law then extrapolates that accident as a trend. Held domains keep
the base mixture's weight, and ``fit_ddo_budgets`` holds a domain at *every* budget when it is held at
any, so that a hold at one budget never turns into a fake trend across budgets.

Units: ``budget``, ``max_tokens`` and the mixture are tokens; fits and ``Allocation.n`` are amounts
relative to the base run's per-domain tokens; intervals and draws are weights.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import numpy as np

from autoscale.ddo.allocate import Allocation, allocate, caps_in_tokens
from autoscale.ddo.design import Design, find_design
from autoscale.ddo.noise import LEVEL, NoiseReport, assess_noise, paired_objectives, replicate_cost
from autoscale.ddo.powerlaw import PowerLawFit, fit_power_law
from autoscale.ddo.runs import RunsTable
from autoscale.domains import check_mixture_domains
from autoscale.errors import AutoscaleError
from autoscale.mixture import Mixture

INTERVAL = (2.5, 97.5)  # bootstrap percentiles: a 95% interval
#: resamples a bootstrap takes: fewer cannot place the 2.5 and 97.5 percentiles, more only burn time
BOOTSTRAP_RANGE = (20, 100_000)


def check_bootstrap(resamples: int) -> int:
    """``resamples`` (0: no bootstrap), or one error outside `BOOTSTRAP_RANGE`."""
    lo, hi = BOOTSTRAP_RANGE
    if resamples and not lo <= resamples <= hi:
        raise AutoscaleError(f"bootstrap: {resamples} resamples; a 95% interval needs {lo} to {hi} (0: none)")
    return resamples


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
        noise: noise and effects (``NoiseReport``); held: domain -> why it keeps its base share.
        draws: ``[bootstrap, m]`` weights of the bootstrap refits (None without bootstrap).
        gain, gain_se: predicted relative gain over the base mixture (1 - predicted / base objective)
            and its uncertainty (bootstrap SD, else the noise's standard error; None when unknown).
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
    noise: NoiseReport | None = None
    held: dict[str, str] = field(default_factory=dict)
    draws: np.ndarray | None = None
    gain: float = math.nan
    gain_se: float | None = None

    def score(self, tokens: np.ndarray) -> tuple[np.ndarray, list[list[str]]]:
        """The fitted model's objective for mixtures of ``tokens`` ``[K, m]`` (absolute, the fit's
        domain order; eval units), and per mixture the domains whose amount lies outside the
        amounts that domain's fit saw (``web x4.2 > x3``): there the power law extrapolates."""
        assert self.base is not None
        base = np.array([self.base.tokens[d] for d in self.fits])
        n = np.asarray(tokens, dtype=float) / base
        fits = list(self.fits.values())
        values = np.array([self.base_objective * _model_value(fits, row) for row in n])
        outside = [[f"{d} x{v:.3g} {'<' if v < f.x.min() else '>'} x{f.x.min() if v < f.x.min() else f.x.max():.3g}"
                    for d, f, v in zip(self.fits, fits, row, strict=True) if not f.x.min() <= v <= f.x.max()]
                   for row in n]
        return values, outside


def fit_ddo(
    table: RunsTable,
    *,
    min_ratio: float = 0.2,
    budget: float | None = None,
    max_tokens: Mapping[str, float] | None = None,
    eval_weights: Mapping[str, float] | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    hold: Collection[str] = (),
    hold_weak: bool = True,
) -> DDOResult:
    """Fit the DDO model to a filled runs table and allocate ``budget`` tokens.

    Args:
        table: base run, perturbation runs (>= 3 distinct amounts per domain) and replicates, over
            at least 2 domains (``autoscale.domains``).
        min_ratio: floor per domain, as a multiple of its base share of the budget (the published
            0.2: weight >= 0.2/m for a uniform base). 0 allows dropping a domain.
        budget: tokens to allocate; default the base run's total.
        max_tokens: domain -> cap in tokens (e.g. unique tokens x allowed epochs).
        eval_weights: eval name -> weight for the objective; default the plain mean.
        bootstrap: number of bootstrap resamples (0: none). Needs replicates.
        seed: seed of the bootstrap resampling (the result is deterministic for a seed; the same seed
            and replicate count draw the same seeds at every budget: the draws are joint).
        hold: domains to hold at their base share in any case (e.g. held at another budget).
        hold_weak: hold a domain whose effects do not stand out from the noise (what the pipeline does).
            False: fit it all the same (a non-monotone domain is held in any case: the power law cannot
            represent it), and leave the noise to the caller, e.g. bagging or shrinking the target mixture
            (the "free" designs of bench/simworld.py).
    """
    domains = check_mixture_domains(table.domains)
    check_bootstrap(bootstrap)
    objective = table.objective(eval_weights)
    design = find_design(table)
    base_tokens = design.base_tokens
    base_total = float(base_tokens.sum())
    budget, min_ratio = _checked(budget, base_total, min_ratio, hold, domains)
    base_objective = float(objective[design.base_rows].mean())
    if base_objective <= 0:
        raise AutoscaleError(f"the base run's objective must be positive, got {base_objective:g}")

    # 1-2: noise, paired effects, held domains
    warnings: list[str] = []
    noise = assess_noise(objective, design, domains, table.seeds)
    paired = paired_objectives(objective, design, table.seeds)
    if table.seeds is not None and paired is None:
        warnings.append("some seeds have no base run: effects are compared unpaired")
    held = {d: why for d, why in noise.held.items() if hold_weak or not noise.monotone[d]}
    weak = sorted(set(noise.held) - set(held))
    if weak:
        warnings.append(f"no effect of {', '.join(map(repr, weak))} stands out from the noise at the "
                        f"{LEVEL:.0%} level: fitted all the same")
    for d in hold:
        held.setdefault(d, "held at another budget")
    # 3-4: fit and allocate
    problem = _problem(domains, base_tokens, budget, min_ratio, max_tokens, held, warnings)
    fits = _fit_domains(objective, paired, design, np.arange(table.n_runs))
    alloc = problem.allocate(fits)
    warnings += _fit_warnings(domains, fits, alloc, held)
    if not noise.known:
        warnings.append("the noise is unknown (one run per design point): train replicates to measure it")
    bounded = {d: "floor" if alloc.at_floor[i] else "cap" for i, d in enumerate(domains)
               if alloc.at_floor[i] or alloc.at_cap[i]}
    predicted = base_objective * _model_value(fits, alloc.n)
    # gain over the base mixture at the same budget, under the fitted model
    gain = 1.0 - _model_value(fits, alloc.n) / _model_value(fits, np.full(len(domains), problem.held_n))
    # 5: uncertainty
    draws, gains = None, None
    if bootstrap:
        draws, gains = _bootstrap(objective, paired, design, table.seeds, fits, problem, int(bootstrap), seed,
                                  warnings)
    intervals, gain_se = _uncertainty(domains, draws, gains, noise, gain, warnings)

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
    metadata |= _noise_record(table, design, noise, held)
    metadata["predicted_gain"] = gain
    metadata["predicted_gain_se"] = gain_se
    if intervals:
        metadata |= {"intervals": {d: list(v) for d, v in intervals.items()}, "bootstrap": int(bootstrap), "seed": seed,
                     # failed resamples stay as null rows so that draw k is the same resample everywhere
                     "bootstrap_draws": [None if np.isnan(row).any() else np.round(row, 8).tolist()
                                         for row in draws]}  # type: ignore[union-attr]
    if warnings:
        metadata["warnings"] = list(warnings)
    tokens = alloc.n * base_tokens
    return DDOResult(
        mixture=Mixture(dict(zip(domains, tokens.tolist(), strict=True)), metadata),
        fits=dict(zip(domains, fits, strict=True)),
        bounded=bounded,
        predicted_objective=predicted,
        base_objective=base_objective,
        intervals=intervals,
        warnings=warnings,
        base=Mixture(dict(zip(domains, base_tokens.tolist(), strict=True))),
        budget=budget,
        allocation=alloc,
        noise=noise,
        held=held,
        draws=draws,
        gain=gain,
        gain_se=gain_se,
    )


def _checked(budget: float | None, base_total: float, min_ratio: float, hold: Collection[str],
             domains: tuple[str, ...]) -> tuple[float, float]:
    """The budget (default: the base run's total) and floor ratio, checked, and ``hold`` checked."""
    budget = base_total if budget is None else float(budget)
    if not math.isfinite(budget) or budget <= 0:
        raise AutoscaleError(f"budget must be a positive number of tokens, got {budget!r}")
    min_ratio = float(min_ratio)
    if not math.isfinite(min_ratio) or min_ratio < 0:
        raise AutoscaleError(f"min_ratio must be a number >= 0, got {min_ratio!r}")
    unknown = [d for d in hold if d not in domains]
    if unknown:
        raise AutoscaleError(f"hold: unknown domain {unknown[0]!r} (domains: {', '.join(domains)})")
    return budget, min_ratio


def _problem(domains: tuple[str, ...], base_tokens: np.ndarray, budget: float, min_ratio: float,
             max_tokens: Mapping[str, float] | None, held: Mapping[str, str], warnings: list[str]) -> _Problem:
    """The allocation problem in amounts relative to each domain's base tokens: floors, caps, costs."""
    base_total = float(base_tokens.sum())
    lo = np.full(len(domains), min_ratio * budget / base_total)
    hi = caps_in_tokens(max_tokens, domains) / base_tokens
    for i in np.flatnonzero(hi < lo):
        warnings.append(f"domain {domains[i]!r}: cap of {hi[i] * base_tokens[i]:.4g} tokens is below its floor; "
                        "the floor is lowered to it")
        lo[i] = hi[i]
    unit = float(base_tokens.mean())
    is_held = np.array([d in held for d in domains])
    # held_n: the base share of the budget, as a relative amount
    return _Problem(budget / unit, lo, hi, base_tokens / unit, is_held, budget / base_total)


def _uncertainty(domains: tuple[str, ...], draws: np.ndarray | None, gains: np.ndarray | None, noise: NoiseReport,
                 gain: float, warnings: list[str]) -> tuple[dict[str, tuple[float, float]], float | None]:
    """Per-domain weight intervals from the bootstrap draws, and the predicted gain's standard error
    (the draws' SD, else the noise's); warns when the gain does not exceed it."""
    intervals: dict[str, tuple[float, float]] = {}
    gain_se = None
    if draws is not None and gains is not None:
        low, high = np.nanpercentile(draws, INTERVAL, axis=0)
        intervals = {d: (float(lo_), float(hi_)) for d, lo_, hi_ in zip(domains, low, high, strict=True)}
        ok = gains[np.isfinite(gains)]
        gain_se = float(ok.std(ddof=1)) if ok.size > 1 else None
    if gain_se is None and noise.known:
        gain_se = float(noise.noise) / math.sqrt(noise.replicates)  # type: ignore[arg-type]
    if gain_se is not None and gain < gain_se:
        warnings.append(
            f"the fitted optimum's predicted gain over the base mixture ({gain:.2%}) is smaller than its own "
            f"uncertainty ({gain_se:.2%}): the base mixture is as good a choice at this budget"
        )
    return intervals, gain_se


#: the words of a search's warning that a domain is held (``domain 'web' is held at its base share: why``)
HELD_AT_BASE = "is held at its base share"


def _fit_warnings(domains: tuple[str, ...], fits: list[PowerLawFit], alloc: Allocation,
                  held: Mapping[str, str]) -> list[str]:
    """Per domain: why it is held, or what to distrust in its fit or its optimum."""
    warnings = []
    for i, d in enumerate(domains):
        f = fits[i]
        if d in held:
            warnings.append(f"domain {d!r} {HELD_AT_BASE}: {held[d]}")
            continue
        if not f.exact and np.unique(f.x).size == 3:
            warnings.append(f"domain {d!r}: no power law passes exactly through its 3 amounts; least-squares fit")
        n, (xmin, xmax) = alloc.n[i], (f.x.min(), f.x.max())
        if not (alloc.at_floor[i] or alloc.at_cap[i]) and not (xmin <= n <= xmax):
            warnings.append(
                f"domain {d!r}: optimum {n:.3g}x its base tokens lies outside the measured {xmin:.3g}x-{xmax:.3g}x"
            )
    return warnings


def _noise_record(table: RunsTable, design: Design, noise: NoiseReport, held: Mapping[str, str]) -> dict:
    """The metadata of the noise (with replicates or seeds) and of the held domains."""
    record: dict = {}
    domains, base_tokens = table.domains, design.base_tokens
    if noise.replicates > 1 or table.seeds is not None:
        point_tokens = [float(table.tokens[g[0]].sum()) for g in design.groups]  # one run of each design point
        design_tokens = {d: sum(point_tokens[g] for g in design.domain_groups[j]) for j, d in enumerate(domains)}
        record["noise"] = noise.to_dict() | {"cost": replicate_cost(noise.needed, design_tokens, sum(point_tokens))}
    if held:
        base_weights = base_tokens / float(base_tokens.sum())
        # what `predict` keeps fixed at the target: the base share of every held domain
        record["held"] = {d: float(base_weights[i]) for i, d in enumerate(domains) if d in held}
        record["held_reasons"] = dict(held)
    return record


def draws_from_rows(rows: object, m: int) -> np.ndarray:
    """The ``[B, m]`` weights of ``bootstrap_draws`` as JSON holds them: a null row (a failed
    resample) becomes NaN, so that draw k stays the same resample at every budget. Anything else
    than rows of ``m`` finite weights >= 0 summing to 1 is one error."""
    if not isinstance(rows, list) or not rows:
        raise AutoscaleError(f"bootstrap_draws must be a non-empty list of rows of {m} weights (or null)")
    out = np.full((len(rows), m), np.nan)
    for k, row in enumerate(rows):
        if row is None:
            continue
        try:
            values = np.array([float(v) for v in row], dtype=float) if isinstance(row, list) else None
        except (TypeError, ValueError):
            values = None
        if (values is None or values.shape != (m,) or not np.isfinite(values).all() or (values < 0).any()
                or abs(values.sum() - 1.0) > 1e-6):
            raise AutoscaleError(f"bootstrap_draws row {k}: expected {m} weights >= 0 summing to 1 (or null), "
                                 f"got {str(row)[:80]}")
        out[k] = values
    return out


def fit_ddo_budgets(tables: Mapping[float, RunsTable], **options) -> dict[float, DDOResult]:
    """DDO at several budgets with one set of held domains: held at any budget means held at all.

    Args:
        tables: budget (tokens) -> that budget's runs table.
        options: as for ``fit_ddo`` (``budget`` and ``hold`` are set here).
    Returns:
        budget -> ``DDOResult``, in the order of ``tables``.
    """
    held: set[str] = set(options.pop("hold", ()))
    first = {b: fit_ddo(t, budget=b, hold=held, **(options | {"bootstrap": 0})) for b, t in tables.items()}
    for r in first.values():
        held |= set(r.held)
    return {b: fit_ddo(t, budget=b, hold=held, **options) for b, t in tables.items()}


def _model_value(fits: list[PowerLawFit], n: np.ndarray) -> float:
    """The separable DDO model's normalised objective at relative amounts ``n``."""
    return 1.0 + sum(float(f(v)) - 1.0 for f, v in zip(fits, n, strict=True))


def _fit_record(f: PowerLawFit) -> dict:
    record = {"a": f.a, "b": f.b, "c": f.c, "r2": f.r2, "points": f.n_points, "exact": f.exact}
    if f.n_points > 3:
        record["residuals"] = f.residuals.tolist()  # normalised objective, one per run
    return record


def _fit_domains(objective, paired, design: Design, rows: np.ndarray, starts=None) -> list[PowerLawFit]:
    """Fit every domain on the runs ``rows`` (indices, repeats allowed: a bootstrap sample).

    ``paired``: each run's objective over its seed's base run (None: over the mean base run).
    """
    if paired is not None:
        y = paired[rows]
    else:
        in_base = design.group_of[rows] == design.base_group
        y = objective[rows] / objective[rows[in_base]].mean()
    fits = []
    for j, groups in enumerate(design.domain_groups):
        mask = np.isin(design.group_of[rows], groups)
        start = None if starts is None else (starts[j].a, starts[j].b)
        fits.append(fit_power_law(design.x[rows[mask], j], y[mask], start=start))
    return fits


@dataclass(frozen=True, eq=False)
class _Problem:
    """The allocation problem at one budget, in relative amounts; held domains sit at ``held_n``."""

    total: float
    lo: np.ndarray
    hi: np.ndarray
    cost: np.ndarray
    held: np.ndarray  # [m] bool
    held_n: float

    def allocate(self, fits: list[PowerLawFit]) -> Allocation:
        a = np.array([f.a for f in fits])
        b = np.array([f.b for f in fits])
        free = ~self.held
        if not self.held.any():
            return allocate(a, b, self.total, self.lo, self.hi, cost=self.cost)
        n = np.clip(np.full(a.size, self.held_n), self.lo, self.hi)
        at_floor, at_cap = np.zeros(a.size, bool), np.zeros(a.size, bool)
        lam = math.nan
        if free.any():
            rest = self.total - float(self.cost[~free] @ n[~free])
            sub = allocate(a[free], b[free], rest, self.lo[free], self.hi[free], cost=self.cost[free])
            n[free], at_floor[free], at_cap[free], lam = sub.n, sub.at_floor, sub.at_cap, sub.lam
        value = float(np.sum((n + a) ** (-b)))
        return Allocation(n, at_floor, at_cap, lam, value)


def _bootstrap(objective, paired, design: Design, seeds, fits, problem: _Problem, resamples: int, seed: int,
               warnings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``[draws, m]`` and predicted gains ``[draws]`` of bootstrap refits.

    With seeds: resample whole seeds (positions in the sorted seed list, so equal replicate counts
    draw the same seeds at every budget). Without: resample the runs of each design point.
    """
    if resamples < 0:
        raise AutoscaleError(f"bootstrap must be a number of resamples >= 0, got {resamples}")
    if all(g.size == 1 for g in design.groups):
        raise AutoscaleError(
            "bootstrap needs replicate runs (rows with the same tokens, e.g. other seeds); every design point has one run"
        )
    rng = np.random.default_rng(seed)
    by_seed = None
    if seeds is not None:
        values = np.unique(seeds)
        by_seed = [np.flatnonzero(seeds == v) for v in values]
    base = np.full(len(fits), problem.held_n)  # the base mixture at this budget

    def refit(rows: np.ndarray) -> tuple[np.ndarray, float] | None:
        try:
            fitted = _fit_domains(objective, paired, design, rows, starts=fits)
            alloc = problem.allocate(fitted)
        except AutoscaleError:
            return None  # a resample can lose a design point (a seed without some run)
        tokens = alloc.n * problem.cost
        return tokens / tokens.sum(), 1.0 - _model_value(fitted, alloc.n) / _model_value(fitted, base)

    # A draw is a deterministic function of its rows, and whole-seed draws repeat often (K = 2
    # replicates give 4 distinct ordered draws): each distinct draw is fitted once.
    done: dict[bytes, tuple[np.ndarray, float] | None] = {}
    weights, gains, failed = [], [], 0
    for _ in range(resamples):
        if by_seed is not None:
            rows = np.concatenate([by_seed[k] for k in rng.integers(0, len(by_seed), size=len(by_seed))])
        else:
            rows = np.concatenate([rng.choice(g, size=g.size, replace=True) for g in design.groups])
        key = rows.tobytes()
        if key not in done:
            done[key] = refit(rows)
        if done[key] is None:
            failed += 1
            # a NaN row keeps draw k at index k: `predict` pairs the k-th draws of every budget
            weights.append(np.full(len(fits), np.nan))
            gains.append(np.nan)
            continue
        w, gain = done[key]
        weights.append(w)
        gains.append(gain)
    if failed == resamples:
        raise AutoscaleError("bootstrap: every resample failed to fit")
    if failed:
        warnings.append(f"bootstrap: {failed} of {resamples} resamples failed to fit and were skipped")
    single = sum(g.size == 1 for g in design.groups)
    if single and by_seed is None:
        warnings.append(f"bootstrap: {single} of {len(design.groups)} design points have a single run and stay fixed")
    return np.array(weights), np.array(gains)
