"""What a report shows, as plain values: no files, no plotting.

The loader (`autoscale.report.load`) fills these from an experiment directory; tests and the
benchmark build them directly. Units: ``budget``/``tokens`` are absolute token counts, ``weights``
sum to 1, ``x`` is a domain's amount relative to the base run (1 = base), ``y`` the objective
relative to the base run's (1 = base).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autoscale.speedup import SpeedUp, smooth


@dataclass(frozen=True)
class WeightsAtBudget:
    """One mixture on the weights-vs-budget plot.

    Args:
        label: short name ("DDO", "predicted", "held-out DDO").
        budget: total training tokens.
        weights: domain -> weight (sum 1).
        measured: True for a DDO optimum found by training (measured), False for an extrapolation.
        intervals: domain -> (low, high) 95% bootstrap interval on its weight (empty: none).
        held: domains held at their base share (the search's warnings give each one's reason).
    """

    label: str
    budget: float
    weights: Mapping[str, float]
    measured: bool = True
    intervals: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    held: tuple[str, ...] = ()


@dataclass(frozen=True)
class CurveFit:
    """One domain's fitted response y = (x + a)^(-b) + c at one DDO budget, with its measured points.

    ``x``: the domain's amount relative to the base run; ``y``: objective relative to the base run.
    ``optimum``: the amount the allocation chose (same units as ``x``), if known.
    ``base_tokens``: the domain's training tokens in the base run at this budget (x = 1), if known:
    the amount ``x`` is ``x * base_tokens`` tokens.
    ``r2``: coefficient of determination over every point, as DDO records it (None with 3 points);
    ``residuals``: y - fit(x) per point (empty: not recorded).
    """

    label: str
    a: float
    b: float
    c: float
    x: tuple[float, ...]
    y: tuple[float, ...]
    optimum: float | None = None
    base_tokens: float | None = None
    r2: float | None = None
    residuals: tuple[float, ...] = ()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        base = np.asarray(x, dtype=float) + self.a
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(base > 0, np.power(np.where(base > 0, base, 1.0), -self.b) + self.c, np.nan)
        return out


@dataclass(frozen=True)
class ValidationCurve:
    """Validation objective of one mixture trained at the target budget, at evaluation points.

    ``tokens``: training tokens seen at each point (increasing; 0 for the evaluation before
    training); ``objective``: the validation objective there (lower is better). ``final`` is the
    measured objective at the end of training (mean over seeds). ``domain_finals``: validation
    domain -> final perplexity (mean over seeds), when known. ``spread``: (lowest, highest) objective
    over the seeds at each point; empty with one seed.
    """

    name: str
    tokens: tuple[float, ...]
    objective: tuple[float, ...]
    final: float
    weights: Mapping[str, float] = field(default_factory=dict)
    seed: int | None = None
    domain_finals: Mapping[str, float] = field(default_factory=dict)
    spread: tuple[tuple[float, ...], tuple[float, ...]] | tuple[()] = ()


@dataclass(frozen=True)
class RecordedSpeedUp:
    """The featured mixture's speed-up over one baseline as validation.json records it: computed
    once, by the pipeline, per seed (`autoscale.speedup`). ``mean``: over the seeds, None when a seed
    never reached the baseline; ``seeds``: (seed, its SpeedUp), in the record's order."""

    baseline: str
    mean: float | None
    seeds: tuple[tuple[int, SpeedUp], ...] = ()

    def mean_of(self, field: str) -> float | None:
        """The mean over seeds of one field of their SpeedUps (where the plot marks it); None when
        a seed lacks it."""
        values = [getattr(u, field) for _, u in self.seeds]
        return None if not values or any(v is None for v in values) else float(np.mean(values))


def validation_line(curve: ValidationCurve, smoothing: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The line the validation plot draws for ``curve``: (training tokens, objective smoothed as the
    speed-ups see it) at the evaluations after training started. The evaluation before training
    (tokens 0) is a measured point only, neither part of the line nor smoothed into it."""
    x = np.asarray(curve.tokens, dtype=float)
    line = smooth(x, curve.objective, smoothing)
    trained = x > 0
    if not trained.any():
        return x, line
    return x[trained], line[trained]


@dataclass(frozen=True)
class MethodSummary:
    """One mixing method's row in the comparison: its search compute (``search_tokens``, absolute;
    ``search_vs_target``: as a multiple of one target run; ``shared_tokens``: of those, tokens of runs
    another method's design also has, trained once) and at the target its mean ``final`` objective
    and ``gain`` over uniform (``autoscale.gain.Gain.to_dict()``, None when not validated)."""

    name: str
    mixture: str
    description: str
    search_runs: int
    search_tokens: float
    search_vs_target: float
    shared_tokens: float
    final: float | None = None
    gain: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows.

    Args:
        title: page heading.
        domains: domain order used everywhere.
        mixtures: DDO optima (measured) and predictions, one per budget, for the stacked plot and tables.
        fits: DDO budget label -> domain -> fitted curve.
        validation: curves of every mixture validated at the target budget.
        featured: the name of the featured mixture among ``validation`` (the first method's: the
            one the speed-ups and gains are for).
        objective_label: what the objective is ("mean validation loss (nats/token)").
        notes: free lines shown under the title (warnings from fits and extrapolation, settings).
        facts: key -> value pairs shown in a small table (proxy model, corpus, wall time...).
        smoothing: weight of the smoothing of validation curves (`autoscale.speedup.smooth`)
            for the plot, as the pipeline smoothed them for the speed-ups (0: as measured).
        speedups: the featured mixture's speed-up over each baseline, from validation.json.
        noise: DDO budget label -> the DDO noise record (``NoiseReport.to_dict()`` plus its cost).
        gains: baseline -> the featured mixture's paired gain over it (``autoscale.gain.Gain.to_dict()``).
        methods: the mixing methods compared (empty or one: no comparison table).
        downstream: validated mixture -> {"tasks": {task: {"value", "stderr"}}, "average", "seeds"}
            (lm-evaluation-harness scores, the mean over seeds; empty: not configured).
    """

    title: str
    domains: tuple[str, ...]
    mixtures: tuple[WeightsAtBudget, ...] = ()
    fits: Mapping[str, Mapping[str, CurveFit]] = field(default_factory=dict)
    validation: tuple[ValidationCurve, ...] = ()
    featured: str = ""
    objective_label: str = "validation objective"
    notes: tuple[str, ...] = ()
    facts: Mapping[str, str] = field(default_factory=dict)
    smoothing: float = 0.0
    noise: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    gains: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    methods: tuple[MethodSummary, ...] = ()
    downstream: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    speedups: tuple[RecordedSpeedUp, ...] = ()

    def smoothed(self, curve: ValidationCurve) -> np.ndarray:
        """``curve``'s objective smoothed as the speed-ups see it."""
        return smooth(curve.tokens, curve.objective, self.smoothing)


def mean_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0
