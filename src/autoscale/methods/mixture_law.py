"""The optimal-mixture scaling law (Shukor et al., arXiv 2507.09404) behind the method interface.

Stages ``mixture-law <budget>`` for each of ``mixture_law.budgets`` (3 or more, spanning 4x or
more): the same K random mixtures (`autoscale.methods.random_search`, so at RegMix's budget and
seed they are RegMix's first K runs, trained once) at every budget. Then the joint law
L_T(D, h) per validation domain (`autoscale.laws.optimal_mixture`) fitted on every run's validation loss,
and its objective minimised at the target budget within the floors and caps: the law, not a rule
of thumb, carries the mixture to the target. The record keeps the fitted parameters, so the law's
loss predictions can be checked against runs at any other budget (the methods benchmark does so
at the target, with its validation runs).

Runs: the law has 3m + 3 parameters per validation domain, fitted on K mixtures x B budgets points;
at least m + 2 mixtures (with B >= 3 that is 3m + 6 points, above the parameters), default 4m + 4,
each trained at every budget (m = 7: 9 / 32 mixtures; m = 17: 19 / 72; m = 24: 26 / 100; runs = B x
mixtures). Each validation domain is its own multi-start fit of 3m + 3 parameters: fitting time grows
with J x m, runs do not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from autoscale.ddo.runs import RunsTable
from autoscale.errors import AutoscaleError
from autoscale.methods import random_search as rs
from autoscale.methods.base import Context, Stage
from autoscale.settings import Tokens


class MixtureLawSettings(rs.RandomSearchSettings):
    """The ``mixture_law:`` section: the budgets, and those of every random-mixture search."""

    budget: Tokens | None = Field(None, description="not used: see budgets")
    budgets: list[Tokens] = Field(min_length=3, description="tokens, increasing, 3 or more spanning 4x or more")
    starts: int = Field(8, ge=1, strict=True, description="random starts of each target's fit")
    fit_steps: int = Field(4000, ge=10, strict=True,
                           description="least-squares evaluations per start of each target's fit: at 20+ domains "
                                       "the fit often uses them all, so fewer trade closeness of fit for time")

    @field_validator("budget")
    @classmethod
    def _no_budget(cls, v: float | None) -> float | None:
        if v is not None:
            raise ValueError("the mixture law searches at several budgets: give budgets, not budget")
        return v

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, v: list[float]) -> list[float]:
        if any(not (b > 0 and b != float("inf")) for b in v) or any(b2 <= b1 for b1, b2 in zip(v, v[1:], strict=False)):
            raise ValueError(f"budgets must be positive and strictly increasing, got {v}")
        if v[-1] < 4 * v[0]:
            raise ValueError(f"budgets must span 4x or more (the law's data term needs it), got {v[-1] / v[0]:.2f}x")
        return v


class MixtureLawMethod(rs.RandomSearch):
    name = "mixture-law"
    section = "mixture_law"
    mixture = "mixture-law"
    description = "optimal-mixture scaling law: a joint law in tokens and weights, fitted at 3+ budgets"
    Settings = MixtureLawSettings

    def least_runs(self, m: int) -> int:
        return m + 2

    def default_runs(self, m: int) -> int:
        return 4 * m + 4

    def search_budgets(self, settings: MixtureLawSettings) -> list[float]:
        return [float(b) for b in settings.budgets]

    def stages(self, settings: MixtureLawSettings, ctx: Context) -> list[Stage]:
        return [stage for b in settings.budgets
                for stage in rs.RandomSearch.stages(self, settings.model_copy(update={"budget": float(b)}), ctx)]

    def table_settings(self, options: Mapping[str, Any], budgets: Sequence[float]) -> dict[str, Any]:
        return {**options, "budgets": [float(b) for b in budgets]}

    def fit(self, settings: MixtureLawSettings, ctx: Context, table: RunsTable) -> rs.TableFit:
        from autoscale.laws.optimal_mixture import fit_mixture_law, optimal_weights

        weights, objective, evals, tokens = rs.table_data(ctx, table)
        metric = ctx.objective.metric
        measured = rs.as_loss(ctx, evals)  # the law is on losses
        law = fit_mixture_law(tokens, weights, measured, seed=ctx.seed, starts=settings.starts,
                              max_steps=settings.fit_steps)
        assert ctx.target is not None  # the config requires target.budget beside AutoScale
        lo, hi = rs.bounds(settings, ctx, ctx.target)
        w = rs.eval_weights(ctx)
        best = optimal_weights(law, ctx.target, lower=lo, upper=hi, weights=w, metric=metric)
        fitted = law.losses(tokens, weights)
        error = float(np.mean(np.abs(fitted - measured) / np.abs(measured)))
        if not np.isfinite(error):
            raise AutoscaleError("mixture law: the fitted law predicts non-finite losses")
        spread = ((measured - measured.mean(axis=0)) ** 2).sum(axis=0)
        r2 = 1.0 - ((fitted - measured) ** 2).sum(axis=0) / np.where(spread > 0, spread, np.inf)

        def score(h: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            losses = law.losses(d, h)
            values = losses if metric == "loss" else np.exp(losses)
            return (values.mean(axis=-1) if w is None else values @ (w / w.sum())), values

        budgets = [float(b) for b in settings.budgets]
        record = dict(
            budgets=budgets, tokens=tokens, weights=weights,
            objective=objective, law={"params": law.params, "domains": list(ctx.domains),
                                      "validation": list(ctx.eval_domains),
                                      "order": "log E, log C_1..m, log g_1..m, log K_1..m, log g_B, log beta"},
            fit_relative_error=error, r2=dict(zip(ctx.eval_domains, map(float, r2), strict=True)),
            predicted_objective=float(law.objective(ctx.target, best, w, metric)),
            floor=lo, cap=hi, objective_name=ctx.objective.describe(), warnings=[])
        return rs.TableFit(best, record["predicted_objective"], record, (), score, per_eval=True,
                           extra={"search_budgets": budgets})
