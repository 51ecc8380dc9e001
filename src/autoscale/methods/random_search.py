"""What RegMix, Data Mixing Laws and the mixture law share: K random mixtures trained at a budget
(the mixture law: at each of its budgets), and one fit per method on the runs table they make.

The mixtures are drawn as RegMix draws them (`autoscale.laws.regmix.sample_mixtures`: Dirichlet around
the tempered token distribution with a random strength, near-duplicates rejected, tiny weights set
to 0), all with the experiment's seed, so the two methods' designs coincide where their settings
do: the first K mixtures of one are the K of the other, and those runs are trained once.

Floors and caps of the chosen mixture: ``floor`` (default 0.2 / m, the floor AutoScale's
``min_ratio`` 0.2 gives a uniform base) and the availability caps (``max_epochs`` x unique tokens,
as a share of the target budget).

Two routes, one fit: the pipeline turns its finished runs into a runs table and calls the method's
``fit``; `autoscale fit --method X` reads the user's table and calls the same ``fit`` through
`fit_table` (the same least number of runs per budget, the same floors). `autoscale plan --method X`
writes the method's ``stages`` as a table, so a user's trainer trains the very mixtures the
pipeline would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from autoscale.ddo.runs import RunsTable
from autoscale.errors import AutoscaleError
from autoscale.methods.base import (
    Artefact,
    Context,
    FinishedRun,
    Method,
    MethodResult,
    PlannedRun,
    Stage,
    failures,
    fitted_answer,
    runs_table,
)
from autoscale.mixture import Mixture
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


def default_floor(m: int) -> float:
    """Every random-mixture method's default floor: 0.2 / m, what AutoScale's ``min_ratio`` 0.2 gives
    a uniform base (the RegMix and DML authors publish with 0)."""
    return 0.2 / m


def prior(settings: RandomSearchSettings, ctx: Context) -> np.ndarray:
    """The shares the draws centre on."""
    if settings.prior == "uniform" or (settings.prior is None and ctx.natural is None):
        return np.full(len(ctx.domains), 1.0 / len(ctx.domains))
    if ctx.natural is None:
        raise AutoscaleError("prior 'natural' needs data.store (the store's token shares)")
    p = np.array([float(ctx.natural[d]) for d in ctx.domains])
    return p / p.sum()


def floor_of(settings: RandomSearchSettings, m: int) -> float:
    """The chosen mixture's least weight: ``floor``, or the default; one error when m x floor >= 1."""
    floor = default_floor(m) if settings.floor is None else settings.floor
    if m * floor >= 1:
        raise AutoscaleError(f"floor {floor:g} x {m} domains >= 1: no room left to mix (the floor must be below "
                             f"1/m = {1 / m:.4g})")
    return floor


def check_bounds(settings: RandomSearchSettings, ctx: Context) -> None:
    """The floors and caps leave a mixture at the target (without a target yet: the floor alone),
    checked where the stages are planned, so that a bad floor is refused before anything trains."""
    if ctx.target is None:
        floor_of(settings, len(ctx.domains))
    else:
        bounds(settings, ctx, ctx.target)


def bounds(settings: RandomSearchSettings, ctx: Context, budget: float) -> tuple[np.ndarray, np.ndarray]:
    """(floor, cap) on each weight of a mixture of ``budget`` tokens."""
    m = len(ctx.domains)
    floor = floor_of(settings, m)
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
        raise AutoscaleError(f"{name} at {budget_name(stage.budget)} tokens: {done} of {len(runs)} runs completed, "
                             f"{least} needed; failed: {failures(runs)}")
    return (Artefact("table", runs_table(runs, ctx.domains, ctx.objective.metric, ctx.eval_domains), stage.budget),)


def table_data(ctx: Context, table: RunsTable) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(``[K, m]`` weights actually trained, ``[K]`` objective, ``[K, J]`` metric per validation
    domain (``ctx.eval_domains``), ``[K]`` tokens trained) of a runs table's rows."""
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


@dataclass(frozen=True)
class TableFit:
    """A random-mixture method fitted on a runs table (the pipeline's runs, or the user's).

    ``weights``: ``[m]`` its mixture at ``ctx.target``; ``predicted``: its objective under the fit (the
    table's metric); ``record``: the method's diagnostics, as its JSON record holds them;
    ``score(weights [K, m], tokens [K])``: the fit's objective ``[K]`` for other mixtures, and the
    metric per validation set ``[K, J]`` when the method models them one by one (else None)."""

    weights: np.ndarray
    predicted: float
    record: Mapping[str, Any]
    warnings: tuple[str, ...]
    score: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray | None]]
    per_eval: bool = False  # ``score`` gives the metric of each validation set
    extra: Mapping[str, Any] = field(default_factory=dict)  # result-file fields (where it searched)


def budget_groups(totals: np.ndarray) -> list[np.ndarray]:
    """Row indices grouped by budget, smallest first: totals within 5% of a group's smallest are
    one budget (runs trained in whole sequences miss their budget by a little)."""
    order = np.argsort(totals, kind="stable")
    groups: list[list[int]] = []
    for i in order:
        if groups and totals[i] <= 1.05 * totals[groups[-1][0]]:
            groups[-1].append(int(i))
        else:
            groups.append([int(i)])
    return [np.array(g) for g in groups]


class RandomSearch(Method):
    """The design part of a method searching over random mixtures: its stages, their check, and the
    result from its fit. A subclass names itself, gives its least and default numbers of runs and
    ``fit``: the one fit both routes call (the pipeline's runs, and `fit_table` on a user's table)."""

    name: str

    def least_runs(self, m: int) -> int:
        raise NotImplementedError

    def default_runs(self, m: int) -> int:
        raise NotImplementedError

    def fit(self, settings: Any, ctx: Context, table: RunsTable) -> TableFit:
        """The method's mixture at ``ctx.target`` from the runs of ``table``."""
        raise NotImplementedError

    def search_budgets(self, settings: RandomSearchSettings) -> list[float]:
        return [float(settings.budget)]

    def stages(self, settings: RandomSearchSettings, ctx: Context) -> list[Stage]:
        check_bounds(settings, ctx)
        m = len(ctx.domains)
        runs = settings.runs if settings.runs is not None else self.default_runs(m)
        return [search_stage(self.name, settings, ctx, runs, self.least_runs(m))]

    def check(self, settings: RandomSearchSettings, ctx: Context, stage: Stage,
              runs: Sequence[FinishedRun]) -> tuple[Artefact, ...]:
        return check_runs(self.name, ctx, stage, runs, self.least_runs(len(ctx.domains)))

    def result(self, settings: Any, ctx: Context, runs: Mapping[str, Sequence[FinishedRun]]) -> MethodResult:
        stages = self.stages(settings, ctx)
        table = runs_table([r for s in stages for r in runs[s.name]], ctx.domains, ctx.objective.metric,
                           ctx.eval_domains)
        fitted = self.fit(settings, ctx, table)
        assert ctx.target is not None  # the config requires target.budget without AutoScale
        mixture = Mixture.from_weights(dict(zip(ctx.domains, map(float, fitted.weights), strict=True)), ctx.target)
        largest = stages[-1]
        record = self.record(largest, runs[largest.name], mixture, **fitted.record)
        return fitted_answer(self.name, mixture, ctx, record, largest.budget, f"{self.name} fit", fitted.warnings,
                             **fitted.extra)

    def table_settings(self, options: Mapping[str, Any], budgets: Sequence[float]) -> dict[str, Any]:
        """The settings section (unvalidated) for a user's table: ``options`` and the table's
        ``budgets`` (one per budget group, increasing) as the search budget(s)."""
        return {**options, "budget": float(budgets[-1])}

    def record(self, stage: Stage, runs: Sequence[FinishedRun], mixture: Any, **diagnostics: Any) -> dict[str, Any]:
        """The JSON record at the search budget: the runs, the chosen mixture and ``diagnostics``."""
        return {
            "budget": stage.budget, "method": self.name, "mixture": mixture.scaled_to(stage.budget).to_dict(),
            "runs": {r.planned.label: r.key for r in runs},
            "failed": {r.planned.label: r.error for r in runs if r.status != "completed"},
            **diagnostics,
        }


def table_budgets(table: RunsTable) -> list[float]:
    """The budgets of a user's table (the median total of each budget group, increasing), after
    checking that every row trained on tokens and holds a finite value >= 0 in every eval cell."""
    totals = table.tokens.sum(axis=1)
    for i, total in enumerate(totals):
        if not total > 0:
            raise AutoscaleError(f"run {table.runs[i]!r} has no tokens")
    if not table.eval_names:
        raise AutoscaleError("the runs table has no eval.<name> columns")
    bad = np.argwhere(~np.isfinite(table.evals) | (table.evals < 0))
    if bad.size:
        i, j = bad[0]
        value = float(table.evals[i, j])
        raise AutoscaleError(f"run {table.runs[i]!r}: eval.{table.eval_names[j]} must be a finite number >= 0, "
                             f"got {'an empty cell' if value != value else f'{value:g}'}")
    return [float(np.median(totals[g])) for g in budget_groups(totals)]


def fit_table(method: RandomSearch, settings: Any, ctx: Context, table: RunsTable) -> TableFit:
    """``method``'s fit on a user's runs table (`table_budgets` checked it), with the pipeline's
    rule: at least ``least_runs(m)`` runs at each budget; the floors and caps are checked first."""
    assert ctx.target is not None
    bounds(settings, ctx, ctx.target)
    totals = table.tokens.sum(axis=1)
    least = method.least_runs(len(table.domains))
    for g in budget_groups(totals):
        if g.size < least:
            raise AutoscaleError(f"{method.name}: {g.size} runs at {float(np.median(totals[g])):.4g} "
                                 f"tokens for {len(table.domains)} domains; it needs at least {least}")
    return method.fit(settings, ctx, table)
