"""Adding a mixing method: "best-of", the best of a few random mixtures trained at one budget.

The smallest method that is still a method: it plans ``runs`` random mixtures (a seeded Dirichlet
draw) at ``budget`` tokens, and its answer at the target is the weights of the search run with the
lowest objective. It never trains, reads or writes files: the pipeline trains what it plans through
the configured executor (our trainer, Ray or the user's command), reuses runs already in the run
store, writes its artefacts (``best-of_runs_<budget>.csv``, ``best-of_<budget>.json``,
``best-of_target.json``) and validates its mixture beside the others.

Use it from your own code:

    from autoscale.methods import register
    register(BestOf())

then a config takes ``methods: [autoscale, best-of]`` with a ``best_of:`` section
(``budget``, optional ``runs``). tests/test_add_a_method.py runs this file end to end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from autoscale.errors import AutoscaleError
from autoscale.methods.base import (
    Artefact,
    Context,
    FinishedRun,
    Method,
    MethodResult,
    PlannedRun,
    Stage,
    runs_table,
)
from autoscale.mixture import Mixture
from autoscale.settings import Strict, Tokens
from autoscale.tokens import budget_name


class BestOfSettings(Strict):
    """The ``best_of:`` section: the search budget (tokens) and how many random mixtures."""

    budget: Tokens
    runs: int = 8


class BestOf(Method):  # subclassing Method gives the optional attributes their defaults
    name = "best-of"
    section = "best_of"
    mixture = "best-of"
    description = "best-of: the best of a few random mixtures trained at one budget"
    Settings = BestOfSettings

    def search_budgets(self, settings: BestOfSettings) -> list[float]:
        return [float(settings.budget)]

    def stages(self, settings: BestOfSettings, ctx: Context) -> list[Stage]:
        rng = np.random.default_rng(ctx.seed)
        weights = rng.dirichlet(np.ones(len(ctx.domains)), size=settings.runs)
        runs = tuple(PlannedRun(f"mix {i}", {d: float(w) * settings.budget for d, w in zip(ctx.domains, row, strict=True)},
                                ctx.seed, eval_points=1)
                     for i, row in enumerate(weights))
        return [Stage(f"best-of {budget_name(settings.budget)}", float(settings.budget), runs)]

    def check(self, settings: BestOfSettings, ctx: Context, stage: Stage,
              runs: Sequence[FinishedRun]) -> tuple[Artefact, ...]:
        table = runs_table(runs, ctx.domains, ctx.objective.metric, ctx.eval_domains)
        if len(table.runs) < 2:
            raise AutoscaleError(f"best-of: {len(table.runs)} of {len(runs)} runs finished; it needs 2")
        return (Artefact("table", table, stage.budget),)

    def result(self, settings: BestOfSettings, ctx: Context,
               runs: Mapping[str, Sequence[FinishedRun]]) -> MethodResult:
        done = [r for stage in runs.values() for r in stage if r.status == "completed" and r.metrics]
        best = min(done, key=lambda r: ctx.objective.of(r.metrics["final"]))
        mixture = Mixture.from_weights(best.planned.tokens, ctx.target or 4 * settings.budget)
        # a search record holds its budget, the mixture found there and its runs' keys; the rest is ours
        record = {"budget": float(settings.budget),
                  "mixture": Mixture.from_weights(best.planned.tokens, float(settings.budget)).to_dict(),
                  "runs": {r.planned.label: r.key for r in done},
                  "best_run": best.planned.label, "objective": ctx.objective.of(best.metrics["final"])}
        return MethodResult(mixture, (Artefact("record", record, float(settings.budget)),
                                      Artefact("result", {"mixture": mixture.to_dict(), "method": self.name})))
