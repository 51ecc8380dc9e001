"""DoReMi (Xie et al., arXiv 2305.10429) behind the method interface: domain weights learnt online.

Stage ``doremi <budget>``: one run of autoscale's trainer in DoReMi's mode (`autoscale.train.doremi`):
a reference model trained on the base mixture, then a proxy trained on the same mixture by group
DRO against it; the mean of the domain weights over the proxy's steps is the mixture, projected
onto the floors and caps and used as is at the target. The run costs twice its budget (reference
and proxy), which is what the method is charged. The user's command cannot run it (the config says
so in one line); our trainer on Ray or inline can, and a killed run resumes.

Settings (``doremi:``): budget, base (uniform | natural | weights; the reference's mixture and the
proxy's batches), eta 1 and smoothing 1e-3 (the paper's), floor (default 0.2 / m), max_epochs.

Runs: one, at any m (the weights are learnt per training domain, from the excess loss on each
training domain's own data; the validation objective plays no part in the search).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from autoscale.errors import AutoscaleError
from autoscale.laws.doremi import ETA, SMOOTHING
from autoscale.methods import random_search as rs
from autoscale.methods.base import (
    Artefact,
    Context,
    FinishedRun,
    Method,
    MethodResult,
    PlannedRun,
    Stage,
    base_weights,
    fitted_answer,
)
from autoscale.mixture import Mixture
from autoscale.settings import Strict, Tokens, check_base, check_epochs
from autoscale.tokens import budget_name


class DoReMiSettings(Strict):
    """The ``doremi:`` section (tokens; weights sum to 1)."""

    budget: Tokens = Field(gt=0, description="tokens of the reference run and of the proxy run")
    base: Literal["uniform", "natural"] | dict[str, float] = "uniform"
    eta: float = Field(ETA, gt=0, description="step size of the exponentiated-gradient update")
    smoothing: float = Field(SMOOTHING, ge=0, le=1, description="mix of uniform into the weights each step")
    floor: float | None = Field(None, ge=0, lt=0.5, description="least weight of the chosen mixture; default 0.2 / m")
    max_epochs: float | dict[str, float] | None = Field(None, description="cap: epochs x unique tokens")
    eval_points: int | None = Field(None, ge=1, strict=True, description="evaluation points of the proxy run")

    _base = field_validator("base")(check_base)

    _epochs = field_validator("max_epochs")(check_epochs)


class DoReMi(Method):
    name = "doremi"
    section = "doremi"
    mixture = "doremi"
    description = "DoReMi: domain weights learnt online by group DRO against a reference model"
    Settings = DoReMiSettings
    own_trainer = True

    def search_budgets(self, settings: DoReMiSettings) -> list[float]:
        return [float(settings.budget)]

    def base(self, settings: DoReMiSettings, ctx: Context) -> dict[str, float]:
        return base_weights(settings.base, ctx, self.section)

    def stages(self, settings: DoReMiSettings, ctx: Context) -> list[Stage]:
        rs.check_bounds(settings, ctx)  # type: ignore[arg-type]
        base = Mixture.from_weights(self.base(settings, ctx), settings.budget)
        mode = {"kind": "doremi", "eta": settings.eta, "smoothing": settings.smoothing}
        run = PlannedRun("proxy", dict(base.tokens), ctx.seed, settings.eval_points, mode=mode, phases=2)
        return [Stage(f"doremi {budget_name(settings.budget)}", float(settings.budget), (run,))]

    def check(self, settings: DoReMiSettings, ctx: Context, stage: Stage, runs: Sequence[FinishedRun]) -> tuple[Artefact, ...]:
        failed = [r for r in runs if r.status != "completed"]
        if failed:
            raise AutoscaleError(f"DoReMi at {budget_name(stage.budget)} tokens: the run failed ({failed[0].error})")
        return ()

    def result(self, settings: DoReMiSettings, ctx: Context, runs: Mapping[str, Sequence[FinishedRun]]) -> MethodResult:
        from autoscale.laws.data_mixing import project

        (stage,) = self.stages(settings, ctx)
        (run,) = runs[stage.name]
        report = (run.metrics or {}).get("doremi")
        if not isinstance(report, Mapping) or "weights" not in report:
            raise AutoscaleError(f"DoReMi at {budget_name(stage.budget)} tokens: the run's metrics.json has no "
                                 "doremi weights; delete its folder to train it again")
        learnt = np.array([float(report["weights"][d]) for d in ctx.domains])
        assert ctx.target is not None  # the config requires target.budget beside AutoScale
        lo, hi = rs.bounds(settings, ctx, ctx.target)  # type: ignore[arg-type]
        chosen = project(learnt / learnt.sum(), lo, hi)
        mixture = Mixture.from_weights(dict(zip(ctx.domains, map(float, chosen), strict=True)), ctx.target)
        record = {
            "budget": stage.budget, "method": self.name, "mixture": mixture.scaled_to(stage.budget).to_dict(),
            "runs": {run.planned.label: run.key}, "learnt": dict(report["weights"]),
            "final_alpha": report.get("final_alpha"), "mean_excess": report.get("mean_excess"),
            "steps": report.get("steps"), "eta": settings.eta, "smoothing": settings.smoothing,
            "base": self.base(settings, ctx), "floor": lo, "cap": hi, "warnings": [],
        }
        return fitted_answer(self.name, mixture, ctx, record, stage.budget, stage.name, search_budget=stage.budget)
