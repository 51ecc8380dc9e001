"""Noise and signal in a DDO design: is each domain's perturbation effect larger than run-to-run noise?

A proxy run's objective moves between seeds. At small budgets that noise can exceed what a
perturbation changes, and then the fitted power law, the allocation and the extrapolation are fitted
noise. With replicates (several seeds per design point) this module measures both:

- **noise**: the run-to-run standard deviation of the objective, pooled within design points, as a
  fraction of the base objective;
- **effects**: for each perturbation, its relative effect on the objective (perturbed / base - 1). With
  a ``seed`` column the effect is *paired*: perturbed minus base of the same seed, so whatever a seed
  shares across its runs (initialisation, coupled data order) cancels; without it, the two means are
  compared unpaired (Welch). Standard errors are t-based (K is small). Paired differences of every
  perturbation share one noise level (same model, same budget, same evaluation), so their spread is
  pooled: with m domains, 2 ratios and K = 3 seeds the t test has 4m degrees of freedom instead of 2,
  which is what makes 3 replicates enough to see a few-percent effect.

A domain is **held** (it must not drive the allocation) when its mean response does not fall as its
tokens grow (non-monotone), or, with replicates, when none of its effects differs from zero at the 95%
level. Without replicates the noise is unknown and only the monotonicity rule applies, so a table with
one run per point is fitted as before.

Design advice: the replicates a domain needs for its largest effect to stand 3 standard errors above
zero, ``ceil((3 sd / |effect|)^2)``, with ``sd`` the spread of one (paired) difference.

Units: effects, noise and standard errors are fractions of the base objective (0.01 = 1%).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from autoscale.ddo.design import Design

LEVEL = 0.95  # two-sided level at which an effect "stands out"
ADVICE_SE = 3.0  # design advice: the effect should be this many standard errors from zero


@dataclass(frozen=True)
class Effect:
    """One perturbation's effect on the objective, relative to the base run.

    Attributes:
        domain: the perturbed domain; ratio: its amount relative to the base run.
        mean: mean relative change of the objective (perturbed / base - 1; < 0 is better).
        sd: spread of one difference (paired) or the pooled per-run spread (unpaired); None with n < 2.
        se: standard error of ``mean``; None with n < 2.
        n: pairs (paired) or perturbed runs (unpaired).
        df: degrees of freedom of the t interval.
        significant: |mean| > t * se at ``LEVEL`` (False when unknown).
    """

    domain: str
    ratio: float
    mean: float
    sd: float | None
    se: float | None
    n: int
    df: float | None
    significant: bool

    @property
    def interval(self) -> tuple[float, float] | None:
        """The t-based ``LEVEL`` interval on ``mean``, or None without replicates."""
        if self.se is None or self.df is None:
            return None
        half = float(stats.t.ppf(0.5 + LEVEL / 2, self.df)) * self.se
        return self.mean - half, self.mean + half

    def to_dict(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "mean": self.mean, "sd": self.sd, "se": self.se, "n": self.n, "df": self.df,
                "interval": None if self.interval is None else list(self.interval), "significant": self.significant}


@dataclass(frozen=True)
class NoiseReport:
    """What replicates say about noise and signal at one budget.

    Attributes:
        replicates: seeds per design point (paired) or the fewest runs at any design point.
        paired: effects are paired within seeds.
        noise: run-to-run SD of the objective / base objective; None when unknown (no replicates).
        effects: domain -> its perturbations' effects, by ratio.
        monotone: domain -> its mean response falls strictly as its tokens grow.
        held: domain -> why it must not drive the allocation.
        needed: domain -> replicates for its largest effect to stand ``ADVICE_SE`` SEs from zero
            (None: unknown, or no effect at all).
    """

    replicates: int
    paired: bool
    noise: float | None
    effects: dict[str, tuple[Effect, ...]]
    monotone: dict[str, bool]
    held: dict[str, str] = field(default_factory=dict)
    needed: dict[str, int | None] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return self.noise is not None

    def evident(self, domain: str) -> bool | None:
        """Whether some effect of ``domain`` stands out from the noise (None: noise unknown)."""
        if not self.known:
            return None
        return any(e.significant for e in self.effects[domain])

    def to_dict(self) -> dict[str, Any]:
        return {
            "replicates": self.replicates, "paired": self.paired, "noise": self.noise,
            "effects": {d: [e.to_dict() for e in es] for d, es in self.effects.items()},
            "monotone": dict(self.monotone),
            "evident": {d: self.evident(d) for d in self.effects},
            "held": dict(self.held), "needed": dict(self.needed), "level": LEVEL, "advice_se": ADVICE_SE,
        }


def paired_objectives(objective: np.ndarray, design: Design, seeds: np.ndarray | None) -> np.ndarray | None:
    """Each run's objective over its own seed's base run (None when runs cannot be paired).

    Pairing needs a seed column and a base run for every seed that has runs.
    """
    if seeds is None:
        return None
    base_of: dict[int, float] = {int(seeds[r]): float(objective[r]) for r in design.base_rows}
    if any(int(s) not in base_of for s in seeds):
        return None
    return np.array([objective[r] / base_of[int(seeds[r])] for r in range(objective.size)])


def assess_noise(objective: np.ndarray, design: Design, domains: tuple[str, ...],
                 seeds: np.ndarray | None = None) -> NoiseReport:
    """Noise, effects and the domains to hold, from a design's runs.

    Args:
        objective: ``[n_runs]`` objective of each run (lower is better).
        design: the design located in the same runs table.
        domains: domain names, in the table's order.
        seeds: ``[n_runs]`` seeds (the table's seed column) or None.
    """
    objective = np.asarray(objective, dtype=float)
    base_mean = float(objective[design.base_rows].mean())
    ratio = paired_objectives(objective, design, seeds)
    paired = ratio is not None
    sizes = [g.size for g in design.groups]
    replicates = min(sizes)

    # pooled within-point spread of the objective, relative to the base
    ss, dof = 0.0, 0
    for g in design.groups:
        if g.size > 1:
            v = objective[g] / base_mean
            ss += float(((v - v.mean()) ** 2).sum())
            dof += g.size - 1
    noise = math.sqrt(ss / dof) if dof else None

    raw: dict[str, list[tuple[float, np.ndarray]]] = {}
    for j, d in enumerate(domains):
        raw[d] = []
        for g in design.domain_groups[j]:
            if g != design.base_group:
                rows = design.groups[g]
                raw[d].append((float(design.x[rows[0], j]), rows))
    pooled = None
    if paired:
        diffs = [ratio[rows] - 1.0 for pts in raw.values() for _, rows in pts]  # type: ignore[index]
        ss = sum(float(((v - v.mean()) ** 2).sum()) for v in diffs)
        df = sum(v.size - 1 for v in diffs)
        pooled = (math.sqrt(ss / df), float(df)) if df else None

    effects: dict[str, tuple[Effect, ...]] = {}
    monotone: dict[str, bool] = {}
    held: dict[str, str] = {}
    needed: dict[str, int | None] = {}
    for d, pts in raw.items():
        out = []
        for x, rows in sorted(pts, key=lambda p: p[0]):
            if paired:
                out.append(_paired(d, x, ratio[rows] - 1.0, pooled))  # type: ignore[index]
            else:
                out.append(_unpaired(d, x, objective[rows], objective[design.base_rows]))
        effects[d] = tuple(out)
        xs = [e.ratio for e in out] + [1.0]
        ys = [1.0 + e.mean for e in out] + [1.0]
        order = np.argsort(xs)
        monotone[d] = bool(np.all(np.diff(np.array(ys)[order]) < 0))
        if not monotone[d]:
            held[d] = "its objective does not fall as its tokens grow (non-monotone)"
        elif noise is not None and not any(e.significant for e in out):
            held[d] = f"no effect stands out from the noise at the {LEVEL:.0%} level"
        needed[d] = _needed(out) if noise is not None else None
    return NoiseReport(replicates, paired, noise, effects, monotone, held, needed)


def _tcrit(df: float) -> float:
    return float(stats.t.ppf(0.5 + LEVEL / 2, df))


def _paired(domain: str, ratio: float, diffs: np.ndarray, pooled: tuple[float, float] | None) -> Effect:
    """A paired effect; ``pooled``: (sd, df) of one difference, pooled over every perturbation."""
    n = int(diffs.size)
    mean = float(diffs.mean())
    if n < 2 or pooled is None:
        return Effect(domain, ratio, mean, None, None, n, None, False)
    sd, df = pooled
    se = sd / math.sqrt(n)
    return Effect(domain, ratio, mean, sd, se, n, df, _stands_out(mean, se, df))


def _unpaired(domain: str, ratio: float, perturbed: np.ndarray, base: np.ndarray) -> Effect:
    n1, n0 = perturbed.size, base.size
    b = float(base.mean())
    mean = float(perturbed.mean()) / b - 1.0
    if n1 < 2 or n0 < 2:
        return Effect(domain, ratio, mean, None, None, int(n1), None, False)
    v1, v0 = float(perturbed.var(ddof=1)) / b**2, float(base.var(ddof=1)) / b**2
    se = math.sqrt(v1 / n1 + v0 / n0)
    # Welch-Satterthwaite degrees of freedom
    num = (v1 / n1 + v0 / n0) ** 2
    den = (v1 / n1) ** 2 / (n1 - 1) + (v0 / n0) ** 2 / (n0 - 1)
    df = num / den if den > 0 else float(n1 + n0 - 2)
    sd = se * math.sqrt(n1)  # one more replicate of both points shrinks se as 1/sqrt(n)
    return Effect(domain, ratio, mean, sd, se, int(n1), df, _stands_out(mean, se, df))


def _stands_out(mean: float, se: float, df: float) -> bool:
    if se == 0:
        return mean != 0
    return abs(mean) > _tcrit(df) * se


def _needed(effects: list[Effect]) -> int | None:
    best = None
    for e in effects:
        if e.sd is None or e.mean == 0:
            continue
        n = max(2, math.ceil((ADVICE_SE * e.sd / abs(e.mean)) ** 2))
        best = n if best is None else min(best, n)
    return best


def replicate_cost(needed: Mapping[str, int | None], design_tokens: Mapping[str, float],
                   total_tokens: float) -> dict[str, Any]:
    """Tokens the design advice costs.

    Args:
        needed: domain -> replicates it needs (from ``NoiseReport.needed``).
        design_tokens: domain -> tokens of one replicate of that domain's part of the design (its base
            run and its perturbations).
        total_tokens: tokens of one replicate of the whole design.
    Returns:
        ``{"per_domain": {d: tokens}, "design": replicates for every domain, "design_tokens": tokens}``.
    """
    per = {d: (None if n is None else n * float(design_tokens[d])) for d, n in needed.items()}
    known = [n for n in needed.values() if n is not None]
    most = max(known) if known else None
    return {"per_domain": per, "design": most, "design_tokens": None if most is None else most * total_tokens}
