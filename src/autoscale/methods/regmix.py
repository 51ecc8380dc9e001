"""RegMix (Liu et al., arXiv 2407.01492) behind the method interface.

Stage ``regmix <budget>``: K mixtures drawn around the token distribution
(`autoscale.methods.random_search`), each trained once at ``regmix.budget`` tokens. Then a LightGBM
regressor from weights to the objective (`autoscale.laws.regmix.fit_regressor`), its predictions on
``candidates`` random mixtures drawn around the same prior with the same temperature, inside the
floors and caps (`autoscale.laws.regmix.sample_within`: works at any m), and the mean of the
``top_k`` best is the mixture, used as is at the target (RegMix's assumption: the ranking of
mixtures holds across scale). The regressor is fitted on the loss (log of a perplexity objective),
as RegMix regresses the validation loss; its leaf size and rounds are chosen by 5-fold
cross-validation on the search runs. Diagnostics: that cross-validated Spearman correlation, and a
warning when the chosen mixture's prediction beats every search run (the fit extrapolates).

Runs: at least 4m + 4 (a tree needs several samples per split); default 16m, each one run at the
search budget (m = 7: 32 / 112; m = 17: 72 / 272; m = 24: 100 / 384). The paper used 512 proxies on
17 domains; a few dozen is what a CPU affords, and the diagnostics say how well it ranks.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from autoscale.ddo.runs import RunsTable
from autoscale.methods import random_search as rs
from autoscale.methods.base import Context


class RegMixSettings(rs.RandomSearchSettings):
    """The ``regmix:`` section (with those of every random-mixture search)."""

    candidates: int = Field(100_000, ge=100, strict=True, description="random mixtures the regressor scores")
    top_k: int = Field(100, ge=1, strict=True, description="the best this many candidates are averaged")

    @model_validator(mode="after")
    def _top_k(self) -> RegMixSettings:
        if self.top_k > self.candidates:
            raise ValueError(f"top_k {self.top_k} is more than the {self.candidates} candidates it averages from")
        return self


class RegMix(rs.RandomSearch):
    name = "regmix"
    section = "regmix"
    mixture = "regmix"
    description = "RegMix: LightGBM regression of the objective on random mixtures at one small budget"
    Settings = RegMixSettings

    def least_runs(self, m: int) -> int:
        from autoscale.laws.regmix import min_runs

        return min_runs(m)

    def default_runs(self, m: int) -> int:
        from autoscale.laws.regmix import default_runs

        return default_runs(m)

    def fit(self, settings: RegMixSettings, ctx: Context, table: RunsTable) -> rs.TableFit:
        from autoscale.laws.regmix import best_mixture, fit_regressor

        weights, objective, _, _ = rs.table_data(ctx, table)
        # RegMix regresses the loss: a perplexity objective in log (the same ranking, tamer outliers)
        perplexity = ctx.objective.metric == "perplexity"
        model = fit_regressor(weights, rs.as_loss(ctx, objective), seed=ctx.seed)
        assert ctx.target is not None  # the config requires target.budget without AutoScale
        lo, hi = rs.bounds(settings, ctx, ctx.target)
        best = best_mixture(model, rs.prior(settings, ctx), ctx.seed + 1, candidates=settings.candidates,
                            top_k=settings.top_k, lower=lo, upper=hi, temperature=settings.temperature,
                            min_weight=settings.min_weight)

        def score(w: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, None]:
            predicted = model.predict(np.asarray(w, dtype=float))
            return (np.exp(predicted) if perplexity else predicted), None

        predicted = float(score(best[None, :], np.array([ctx.target]))[0][0])
        rho = model.cv_spearman
        warnings = []
        if rho < 0.5:
            warnings.append(f"the regressor ranks held-out search runs poorly (5-fold Spearman {rho:.2f}); "
                            "more runs, or a larger search budget, would help")
        if predicted < objective.min():
            warnings.append(f"the regressor predicts {predicted:.4g} for the chosen mixture, better than every "
                            f"search run (best {objective.min():.4g}): it extrapolates")
        record = dict(
            weights=weights, objective=objective, prior=rs.prior(settings, ctx),
            predicted_objective=predicted, best_run_objective=float(objective.min()),
            cv_spearman=rho, regressor=dict(model.params), floor=lo, cap=hi, candidates=settings.candidates,
            top_k=settings.top_k, objective_name=ctx.objective.describe(), warnings=warnings)
        return rs.TableFit(best, predicted, record, tuple(warnings), score,
                           extra={"search_budget": float(settings.budget)})
