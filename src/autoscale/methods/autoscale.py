"""AutoScale (arXiv 2407.20177) behind the method interface: DDO at two or more small budgets, then
the law derived from the KKT conditions to the target.

Stages ``ddo <budget>``: the DDO design (`autoscale.ddo.plan.plan_ddo`: the base run and each
domain reduced and increased with the others held fixed), ``ddo.replicates`` times with seeds
seed, seed+1, ... (each seed's runs coupled). After each stage the completed runs become its runs
table; every domain must keep 3 points (the base run and two of its perturbations), else one error
names the failed runs. Then every budget is fitted together (`fit_ddo_budgets`: one set of held
domains; bootstrap draws resample whole seeds, the same seeds at every budget), and the AutoScale
law carries the optima to the target (``extrapolate``); with draws, the same law on every paired
draw gives intervals. The DDO optimum of the largest budget is offered as the ``ddo`` baseline.

Settings: the config's ``ddo:`` section (`DDOConfig`). Target default: N2^2 / N1 (the paper's rule).

Runs: 2m + 1 per budget and replicate ((2m + 2.2) x budget tokens with ratios 0.2 and 3), fixed by
the design; a fit needs 3 points per domain (the base and two perturbations). m = 7: 15; m = 17: 35;
m = 24: 49 per budget and replicate. Validation domains may differ from the training domains: the
fit reads only the objective.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import Field, field_validator, model_validator

from autoscale.ddo.plan import PUBLISHED_RATIOS
from autoscale.errors import AutoscaleError
from autoscale.methods.base import (
    Artefact,
    Context,
    FinishedRun,
    Method,
    MethodResult,
    PlannedRun,
    Stage,
    base_weights,
    failures,
    runs_table,
    weights_line,
)
from autoscale.mixture import Mixture
from autoscale.settings import Strict as _Strict
from autoscale.settings import Tokens, check_base, check_epochs
from autoscale.tokens import budget_name, format_tokens

#: What each version of the search design sets where the config is silent (``ddo.design``). Version 1 is
#: the paper's perturbations, one run per design point; version 2 is what recovered most of the target's
#: gain per unit of search compute on hard simulated worlds (bench/simworld.py): wider perturbations
#: (x0.1 and x5) and 4 replicates, with the budgets 16x apart (N1 = N2 / 16; the budgets stay the config's).
DESIGNS: dict[int, dict[str, object]] = {
    1: {"ratios": list(PUBLISHED_RATIOS), "replicates": 1},
    2: {"ratios": [0.1, 5.0], "replicates": 4},
}


class DDOConfig(_Strict):
    """Direct Data Optimization at two or more affordable budgets (METHOD.md section 2)."""

    design: Literal[1, 2] = Field(
        1, description="version of the search design: the defaults of ratios and replicates (DESIGNS); "
                       "1 when absent, so that a config written before version 2 computes what it did")
    budgets: list[Tokens] = Field(min_length=2, description="tokens, increasing")
    ratios: list[float] = Field(DESIGNS[1]["ratios"], min_length=2, description="relative to the base amount")
    base: Literal["uniform", "natural"] | dict[str, float] = "uniform"
    min_ratio: float = Field(0.2, ge=0, lt=1, description="floor, relative to the base amount")
    max_epochs: float | dict[str, float] | None = Field(None, description="cap: epochs x unique tokens")
    bootstrap: int = Field(0, ge=0, description="bootstrap resamples for weight intervals")
    replicates: int = Field(DESIGNS[1]["replicates"], ge=1, strict=True,
                            description="seeds per design point: seed, seed+1, ...")
    eval_points: int | None = Field(
        None, ge=1, strict=True,
        description="evaluation points of each DDO run (1: the final evaluation only); default proxy.eval.points")

    @model_validator(mode="before")
    @classmethod
    def _design_defaults(cls, data: object) -> object:
        # the design's defaults fill what the config leaves out; what it says stays
        if isinstance(data, dict) and data.get("design", 1) in DESIGNS:
            return DESIGNS[data.get("design", 1)] | data
        return data

    @field_validator("bootstrap")
    @classmethod
    def _bootstrap(cls, v: int) -> int:
        from autoscale.ddo.fit import check_bootstrap

        try:
            return check_bootstrap(v)
        except AutoscaleError as exc:
            raise ValueError(str(exc).removeprefix("bootstrap: ")) from None

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, v: list[float]) -> list[float]:
        if any(not (b > 0 and b != float("inf")) for b in v):
            raise ValueError(f"budgets must be positive token counts, got {v}")
        if any(b2 <= b1 for b1, b2 in zip(v, v[1:], strict=False)):
            raise ValueError(f"budgets must be strictly increasing, got {v}")
        return v

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, v: list[float]) -> list[float]:
        if any(not (r > 0 and r != float("inf")) or r == 1 for r in v):
            raise ValueError(f"ratios must be positive, finite and not 1 (the base run), got {v}")
        if len(set(v)) != len(v):
            raise ValueError(f"ratios must be distinct, got {v}")
        return v

    _base = field_validator("base")(check_base)

    _epochs = field_validator("max_epochs")(check_epochs)


#: design 2's budgets: the largest over the smallest, as measured (bench/simworld.py)
DESIGN_2_SPAN = 16.0


def design_warnings(settings: DDOConfig) -> list[str]:
    """What to tell a user whose config departs from how its design was measured."""
    span = settings.budgets[-1] / settings.budgets[0]
    if settings.design == 2 and span < DESIGN_2_SPAN:
        return [f"ddo.design 2 was measured with the budgets {DESIGN_2_SPAN:g}x apart; these are {span:.3g}x apart "
                f"(a smallest budget of {format_tokens(settings.budgets[-1] / DESIGN_2_SPAN)} would match)"]
    return []


class AutoScale(Method):
    """DDO at the configured budgets + the AutoScale law to the target."""

    name = "autoscale"
    section = "ddo"
    mixture = "predicted"
    description = "AutoScale: DDO at two or more small budgets, extrapolated to the target by its law"
    Settings = DDOConfig
    offers = ("ddo",)  # its DDO optimum of the largest budget, reused as is at the target
    default_target = True  # the law's N2^2 / N1

    def base(self, settings: DDOConfig, ctx: Context, budget: float) -> Mixture:
        return Mixture.from_weights(base_weights(settings.base, ctx, self.section), budget)

    def search_budgets(self, settings: DDOConfig) -> list[float]:
        return list(settings.budgets)

    def stages(self, settings: DDOConfig, ctx: Context) -> list[Stage]:
        from autoscale.ddo.plan import plan_ddo

        out = []
        for budget in settings.budgets:
            plan = plan_ddo(ctx.domains, budget=budget, base=self.base(settings, ctx, budget), ratios=settings.ratios,
                            eval_names=ctx.eval_domains, replicates=settings.replicates, seed=ctx.seed)
            assert plan.seeds is not None
            runs = tuple(
                PlannedRun(run if settings.replicates == 1 else f"{run} seed {seed}",
                           dict(zip(ctx.domains, map(float, plan.tokens[i]), strict=True)), int(seed),
                           settings.eval_points, row=run)
                for i, (run, seed) in enumerate(zip(plan.runs, plan.seeds, strict=True))
            )
            out.append(Stage(f"ddo {budget_name(budget)}", float(budget), runs))
        return out

    def check(self, settings: DDOConfig, ctx: Context, stage: Stage, runs: Sequence[FinishedRun]) -> tuple[Artefact, ...]:
        import numpy as np

        from autoscale.ddo.record import domains_short_of_points

        ok = [i for i, r in enumerate(runs) if r.status == "completed"]
        planned = np.array([[r.planned.tokens[d] for d in ctx.domains] for r in runs])
        short = domains_short_of_points(planned, [r.planned.row or r.planned.label for r in runs], ctx.domains, ok)
        if short:
            raise AutoscaleError(f"DDO at {budget_name(stage.budget)} tokens: domain(s) {', '.join(short)} keep fewer than 3 "
                                 f"completed runs; failed: {failures(runs)}")
        return (Artefact("table", runs_table(runs, ctx.domains, ctx.objective.metric, ctx.eval_domains), stage.budget),)


    def result(self, settings: DDOConfig, ctx: Context, runs: Mapping[str, Sequence[FinishedRun]]) -> MethodResult:
        from autoscale.ddo.fit import fit_ddo_budgets
        from autoscale.ddo.record import ddo_record
        from autoscale.extrapolate import extrapolate, extrapolate_draws, held_weights

        stages = self.stages(settings, ctx)
        tables = {s.budget: runs_table(runs[s.name], ctx.domains, ctx.objective.metric, ctx.eval_domains)
                  for s in stages}
        results = fit_ddo_budgets(tables, min_ratio=settings.min_ratio, max_tokens=ctx.caps,
                                  eval_weights=ctx.objective.weights, bootstrap=settings.bootstrap, seed=ctx.seed)
        artefacts, done, summary_ddo = [], [], []
        for stage in stages:
            budget, result = stage.budget, results[stage.budget]
            record = ddo_record(result, budget) | {
                "runs": {r.planned.label: r.key for r in runs[stage.name]},
                "failed": {r.planned.label: r.error for r in runs[stage.name] if r.status != "completed"},
                "replicates": settings.replicates,
                "objective": ctx.objective.describe(),
            }
            artefacts.append(Artefact("record", record, budget))
            done.append((stage.name, weights_line(result.mixture), tuple(result.warnings)))
            summary_ddo.append({
                "budget": budget, "weights": result.mixture.weights, "tokens": dict(result.mixture.tokens),
                "bounded": dict(result.bounded), "held": dict(result.held), "warnings": list(result.warnings),
                "intervals": {d: list(v) for d, v in result.intervals.items()},
                "replicates": result.noise.replicates if result.noise else 1,
                "noise": result.noise.noise if result.noise else None,
                "predicted_gain": result.gain, "predicted_gain_se": result.gain_se,
                "runs_csv": ctx.name_of("table", budget), "json": ctx.name_of("record", budget)})

        mixtures = [r.mixture for r in results.values()]
        options = dict(target=ctx.target, steps=None if ctx.target is not None else 1,
                       max_tokens=ctx.caps, offsets=ctx.offsets, hold=held_weights(mixtures))
        ex = extrapolate(mixtures, **options)
        intervals, draws = {}, None
        if all(r.draws is not None for r in results.values()):
            draws, intervals = extrapolate_draws(mixtures, [r.draws for r in results.values()], **options)
        artefacts.append(Artefact("result", {
            "mixture": ex.mixture.to_dict(),
            "target_budget": ctx.target,
            "s": ex.s,
            "method": ex.method,
            "law": None if ex.law is None else ex.law.to_dict(),
            "bounded": dict(ex.bounded),
            "held": dict(ex.held),
            "intervals": {d: list(v) for d, v in intervals.items()},
            "draws": draws,
            "offsets": dict(ex.offsets),
            "warnings": list(ex.warnings),
            "from": [{"budget": b, "mixture": r.mixture.to_dict()} for b, r in results.items()],
            "caps": ctx.caps,
        }))
        done.append(("extrapolate", weights_line(ex.mixture), (*ex.warnings, *design_warnings(settings))))
        summary = {
            "searched": summary_ddo,
            "target": {"budget": ex.mixture.budget, "weights": ex.mixture.weights, "tokens": dict(ex.mixture.tokens),
                       "s": ex.s, "method": ex.method, "warnings": list(ex.warnings), "held": dict(ex.held),
                       "intervals": {d: list(v) for d, v in intervals.items()}},
        }
        largest = list(results.values())[-1].mixture
        return MethodResult(ex.mixture, tuple(artefacts), {b: r.mixture for b, r in results.items()},
                            {"ddo": largest.scaled_to(ex.mixture.budget)}, summary, stages=tuple(done))
