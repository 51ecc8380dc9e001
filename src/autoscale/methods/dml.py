"""Data Mixing Laws (Ye et al., arXiv 2403.16952) behind the method interface.

Stage ``dml <budget>``: K random mixtures (`autoscale.methods.random_search`; with RegMix's settings
the same first K mixtures, trained once) at ``dml.budget`` tokens. Then per validation domain
L_j(r) = c_j + k_j exp(t_j . r) on the validation loss (`autoscale.laws.data_mixing`, gauge t_jm = 0 so the
fit is identifiable; a perplexity objective is the mean of exp(L_j)), and the objective's optimum
over the simplex within the floors and caps.

Scale: one budget. The paper nests the law with scaling laws in training steps and model size to
predict the large run from small ones; we optimise the proportions at the search budget and use
them as is at the target, and say so (the comparison at the target measures what that costs).
Runs: at least m + 2 (the law has m + 1 parameters per validation domain, fitted on K runs; J
validation domains are J separate fits, so their number costs fitting time, not runs); default
4m + 4, each one run at the search budget (m = 7: 9 / 32; m = 17: 19 / 72; m = 24: 26 / 100).
"""

from __future__ import annotations

import numpy as np

from autoscale.ddo.runs import RunsTable
from autoscale.methods import random_search as rs
from autoscale.methods.base import Context


class DMLSettings(rs.RandomSearchSettings):
    """The ``dml:`` section (those of every random-mixture search)."""


class DataMixingLaws(rs.RandomSearch):
    name = "dml"
    section = "dml"
    mixture = "dml"
    description = "Data Mixing Laws: an exponential law per domain fitted on random mixtures at one budget"
    Settings = DMLSettings

    def least_runs(self, m: int) -> int:
        from autoscale.laws.data_mixing import min_runs

        return min_runs(m)

    def default_runs(self, m: int) -> int:
        return 4 * m + 4

    def fit(self, settings: DMLSettings, ctx: Context, table: RunsTable) -> rs.TableFit:
        from autoscale.laws.data_mixing import fit_mixing_law, optimal_proportions

        weights, objective, evals, _ = rs.table_data(ctx, table)
        metric = ctx.objective.metric
        law = fit_mixing_law(weights, rs.as_loss(ctx, evals))  # the law is on losses
        assert ctx.target is not None  # the config requires target.budget without AutoScale
        lo, hi = rs.bounds(settings, ctx, ctx.target)
        w = rs.eval_weights(ctx)
        best = optimal_proportions(law, lower=lo, upper=hi, weights=w, metric=metric)

        def score(r: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            losses = law.losses(r)
            return law.objective(r, w, metric), (losses if metric == "loss" else np.exp(losses))

        warnings = [f"the law fits {d}'s validation loss poorly (R^2 {r2:.2f})"
                    for d, r2 in zip(ctx.eval_domains, law.r2, strict=True) if not r2 >= 0.5]
        warnings.append("one budget: the proportions optimal at the search budget are used as is at the target")
        predicted = float(law.objective(best, w, metric))
        record = dict(
            weights=weights, objective=objective, prior=rs.prior(settings, ctx),
            law={"c": law.c, "k": law.k, "t": law.t, "r2": dict(zip(ctx.eval_domains, law.r2, strict=True))},
            predicted_objective=predicted, best_run_objective=float(objective.min()),
            floor=lo, cap=hi, objective_name=ctx.objective.describe(), warnings=warnings)
        return rs.TableFit(best, predicted, record, tuple(warnings), score, per_eval=True,
                           extra={"search_budget": float(settings.budget)})
