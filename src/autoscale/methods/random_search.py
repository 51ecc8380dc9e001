"""What RegMix and Data Mixing Laws share: K random mixtures trained at one small budget.

The mixtures are drawn as RegMix draws them (`autoscale.laws.regmix.sample_mixtures`: Dirichlet around
the tempered token distribution with a random strength, near-duplicates rejected, tiny weights set
to 0), all with the experiment's seed, so the two methods' designs coincide where their settings
do: the first K mixtures of one are the K of the other, and those runs are trained once.

Floors and caps of the chosen mixture: ``floor`` (default 0.2 / m, the floor AutoScale's
``min_ratio`` 0.2 gives a uniform base) and the availability caps (``max_epochs`` x unique tokens,
as a share of the target budget).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from autoscale.errors import AutoscaleError
from autoscale.methods.base import Artefact, Context, FinishedRun, Method, PlannedRun, Stage, runs_table
from autoscale.settings import Strict, Tokens, check_epochs
from autoscale.tokens import budget_name


class RandomSearchSettings(Strict):
    """Settings of a search over random mixtures at one budget (units: tokens; weights sum to 1)."""

    budget: Tokens = Field(gt=0, description="tokens of each search run")
    runs: int | None = Field(None, ge=1, strict=True, description="mixtures trained; default: the method's")
    prior: Literal["natural", "uniform"] | None = Field(
        None, description="centre of the Dirichlet draws; default natural (token shares) with a store, else uniform")
    temperature: float = Field(0.5, gt=0, le=1, description="prior ** temperature (1: the token shares as they are)")
    min_weight: float = Field(1e-3, ge=0, lt=0.5, description="sampled weights below this are set to 0")
    floor: float | None = Field(None, ge=0, lt=0.5, description="least weight of the chosen mixture; default 0.2 / m")
    max_epochs: float | dict[str, float] | None = Field(None, description="cap: epochs x unique tokens")
    eval_points: int | None = Field(
        None, ge=1, strict=True, description="evaluation points of each search run; default proxy.eval.points")

    _epochs = field_validator("max_epochs")(check_epochs)


def prior(settings: RandomSearchSettings, ctx: Context) -> np.ndarray:
    """The shares the draws centre on."""
    if settings.prior == "uniform" or (settings.prior is None and ctx.natural is None):
        return np.full(len(ctx.domains), 1.0 / len(ctx.domains))
    if ctx.natural is None:
        raise AutoscaleError("prior 'natural' needs data.store (the store's token shares)")
    p = np.array([float(ctx.natural[d]) for d in ctx.domains])
    return p / p.sum()


def bounds(settings: RandomSearchSettings, ctx: Context, budget: float) -> tuple[np.ndarray, np.ndarray]:
    """(floor, cap) on each weight of a mixture of ``budget`` tokens."""
    m = len(ctx.domains)
    floor = 0.2 / m if settings.floor is None else settings.floor
    hi = np.array([min(1.0, (ctx.caps or {}).get(d, np.inf) / budget) for d in ctx.domains])
    lo = np.full(m, floor)
    if lo.sum() > 1 or hi.sum() < 1 or (lo > hi).any():
        raise AutoscaleError(f"floor {floor:g} and the caps at {budget:g} tokens leave no mixture")
    return lo, hi


def sampled(settings: RandomSearchSettings, ctx: Context, runs: int) -> np.ndarray:
    """``[runs, m]`` search mixtures (caps at the search budget respected)."""
    from autoscale.laws.regmix import sample_mixtures

    _, hi = bounds(settings.model_copy(update={"floor": 0.0}), ctx, settings.budget)
    return sample_mixtures(prior(settings, ctx), runs, ctx.seed, temperature=settings.temperature,
                           min_weight=settings.min_weight, upper=hi)


def search_stage(name: str, settings: RandomSearchSettings, ctx: Context, runs: int, least: int) -> Stage:
    """The stage ``<name> <budget>``: ``runs`` mixtures (at least ``least``), each trained once."""
    if runs < least:
        raise AutoscaleError(f"{name}.runs: {runs} runs for {len(ctx.domains)} domains; {name} needs at least "
                             f"{least}")
    weights = sampled(settings, ctx, runs)
    planned = tuple(
        PlannedRun(f"mix {i + 1:03d}", {d: float(w[j]) * settings.budget for j, d in enumerate(ctx.domains)},
                   ctx.seed, settings.eval_points)
        for i, w in enumerate(weights)
    )
    return Stage(f"{name} {budget_name(settings.budget)}", float(settings.budget), planned)


def check_runs(name: str, ctx: Context, stage: Stage, runs: Sequence[FinishedRun], least: int) -> tuple[Artefact, ...]:
    """The runs table, or one error when fewer than ``least`` runs completed."""
    done = sum(r.status == "completed" for r in runs)
    if done < least:
        failed = "; ".join(f"{r.planned.label} ({r.error})" for r in runs if r.status != "completed")
        raise AutoscaleError(f"{name} at {budget_name(stage.budget)} tokens: {done} of {len(runs)} runs completed, "
                             f"{least} needed; failed: {failed}")
    return (Artefact("table", runs_table(runs, ctx.domains, ctx.objective.metric, ctx.eval_domains), stage.budget),)


def weights_and_objective(ctx: Context, runs: Sequence[FinishedRun]) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                             np.ndarray]:
    """(``[K, m]`` weights actually trained, ``[K]`` objective, ``[K, J]`` metric per validation
    domain (``ctx.eval_domains``), ``[K]`` tokens trained) of the completed runs."""
    table = runs_table(runs, ctx.domains, ctx.objective.metric, ctx.eval_domains)
    totals = table.tokens.sum(axis=1)
    return table.tokens / totals[:, None], table.objective(ctx.objective.weights), table.evals, totals


def as_loss(ctx: Context, values: np.ndarray) -> np.ndarray:
    """Values of the objective's metric as losses in nats (log of a perplexity): what the laws and
    RegMix's regressor fit."""
    return np.log(values) if ctx.objective.metric == "perplexity" else np.asarray(values)


def eval_weights(ctx: Context) -> np.ndarray | None:
    """Per validation domain (``ctx.eval_domains``), the objective's weight (None: the plain mean)."""
    if ctx.objective.weights is None:
        return None
    return np.array([float(ctx.objective.weights.get(d, 0.0)) for d in ctx.eval_domains])


class RandomSearch(Method):
    """The design part of a method searching over random mixtures at one budget: its stage and its
    check. A subclass names itself, gives its least and default numbers of runs and its result."""

    name: str

    def least_runs(self, m: int) -> int:
        raise NotImplementedError

    def default_runs(self, m: int) -> int:
        raise NotImplementedError

    def search_budgets(self, settings: RandomSearchSettings) -> list[float]:
        return [float(settings.budget)]

    def stages(self, settings: RandomSearchSettings, ctx: Context) -> list[Stage]:
        m = len(ctx.domains)
        runs = settings.runs if settings.runs is not None else self.default_runs(m)
        return [search_stage(self.name, settings, ctx, runs, self.least_runs(m))]

    def check(self, settings: RandomSearchSettings, ctx: Context, stage: Stage,
              runs: Sequence[FinishedRun]) -> tuple[Artefact, ...]:
        return check_runs(self.name, ctx, stage, runs, self.least_runs(len(ctx.domains)))

    def record(self, stage: Stage, runs: Sequence[FinishedRun], mixture: Any, **diagnostics: Any) -> dict[str, Any]:
        """The JSON record at the search budget: the runs, the chosen mixture and ``diagnostics``."""
        return {
            "budget": stage.budget, "method": self.name, "mixture": mixture.scaled_to(stage.budget).to_dict(),
            "runs": {r.planned.label: r.key for r in runs},
            "failed": {r.planned.label: r.error for r in runs if r.status != "completed"},
            **diagnostics,
        }
