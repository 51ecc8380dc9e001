"""The validation objective on a curve, and the paper's speed-up (METHOD.md section 4).

Speed-up of a method over a baseline, both trained at the same target budget::

    speedup = 1 - (training tokens the method needs to reach the baseline's final objective)
                  / (the baseline's training tokens)

on smoothed evaluation curves, always in training tokens (never optimizer steps: with gradient
accumulation, several data-parallel ranks or another batch size, a step holds a different number of
tokens). `autoscale run`, `report`, `demo` and `bench` all call `speedup` here.

Smoothing (`smooth`, stated in every result): at each evaluation point, a local quadratic fit of
log(objective) on log(tokens) over the curve's evaluations, a point k evaluations away weighted
``w^k`` (the weights of an exponential moving average, made two-sided); ``w = 0`` leaves the curve as
measured. A power law, and its bend towards an asymptote, are kept as measured, so unlike a moving
average the line neither lags behind a falling curve nor ends above its measured final value. The evaluation before
any training (tokens 0, perplexity about the vocabulary size) is kept as measured and never smoothed
into the rest. Both curves are smoothed alike. The crossing is interpolated linearly in tokens between
evaluation points; a method that never reaches the baseline's final value within its own curve gets
``speedup = None``. Positive: the method is faster; negative: slower.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autoscale.errors import AutoscaleError


@dataclass(frozen=True)
class Objective:
    """A weighted mean over validation domains of one metric (``perplexity`` or ``loss``).

    ``weights``: domain -> weight (normalised here); None: the unweighted mean (the paper's).
    """

    metric: str = "perplexity"
    weights: Mapping[str, float] | None = None

    def of(self, evals: Mapping[str, Mapping[str, float]]) -> float:
        """The objective of one evaluation: ``evals`` is domain -> {"loss": .., "perplexity": ..}."""
        names = list(self.weights) if self.weights is not None else list(evals)
        missing = [d for d in names if d not in evals]
        if missing or not names:
            raise AutoscaleError(f"evaluation has no {self.metric} for domain(s) {', '.join(missing) or '(none)'}")
        w = np.array([self.weights[d] for d in names] if self.weights is not None else [1.0] * len(names))
        values = np.array([metric_value(evals[d], self.metric) for d in names])
        return float(np.dot(w, values) / w.sum())

    def curve(self, metrics: Mapping[str, Any], budget: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(training tokens, objective) at each evaluation of a metrics.json curve (`curve_tokens`)."""
        points = metrics.get("curve") or []
        if not points:
            raise AutoscaleError("the run reported no evaluation curve; a speed-up needs one")
        values = np.array([self.of(p["eval"]) for p in points])
        return curve_tokens(metrics, budget), values

    def describe(self) -> str:
        if self.weights is None:
            return f"mean validation {self.metric} over domains"
        return f"weighted mean validation {self.metric} ({', '.join(f'{d}={w:g}' for d, w in self.weights.items())})"


def curve_tokens(metrics: Mapping[str, Any], budget: float | None = None) -> np.ndarray:
    """Training tokens seen at each evaluation of a metrics.json curve (absolute token counts).

    The curve's own ``tokens`` when it reports them. A trainer that reports steps only gets its steps
    scaled so that the last evaluation sits at the tokens the run trained (``tokens_per_domain``, else
    ``budget``): exact when every step trains the same number of tokens, as fixed-batch trainers do.
    """
    points = metrics.get("curve") or []
    tokens = np.array([float(p.get("tokens") or 0) for p in points])
    if tokens.size and tokens[-1] > 0:
        return tokens
    steps = np.array([float(p["step"]) for p in points])
    trained = sum(float(v) for v in (metrics.get("tokens_per_domain") or {}).values()) or budget
    if not trained or not steps.size or steps[-1] <= 0:
        raise AutoscaleError("the run's curve reports no training tokens and the tokens it trained are unknown")
    return steps * (float(trained) / steps[-1])


def metric_value(value: Mapping[str, float], metric: str) -> float:
    """``metric`` (perplexity or loss) of one domain's evaluation ``{"loss": .., "perplexity": ..}``."""
    if metric in value:
        return float(value[metric])
    # metrics.json may give either; perplexity = exp(loss)
    if metric == "perplexity" and "loss" in value:
        return math.exp(float(value["loss"]))
    if metric == "loss" and "perplexity" in value:
        return math.log(float(value["perplexity"]))
    raise AutoscaleError(f"evaluation has no {metric}")


def smooth(tokens: Sequence[float], values: Sequence[float], weight: float) -> np.ndarray:
    """The curve ``values`` at ``tokens`` smoothed as the speed-ups and the plots see it (module docstring).

    ``tokens``: training tokens at each evaluation (increasing); ``weight`` in [0, 1): a neighbour k
    evaluations away counts ``weight^k`` in each point's local fit; 0 returns the values. Points at 0
    tokens are returned as measured and left out of the other points' fits.
    """
    if not 0 <= weight < 1:
        raise AutoscaleError(f"smoothing weight must be in [0, 1), got {weight!r}")
    x, y = np.asarray(tokens, dtype=float), np.asarray(values, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise AutoscaleError(f"smoothing: {x.size} token counts but {y.size} values")
    out = y.copy()
    trained = np.flatnonzero(x > 0)
    if weight == 0 or trained.size < 4:  # three points: a parabola through them is the points themselves
        return out
    u = np.log(x[trained])
    logy = bool(np.all(y[trained] > 0))  # power laws are straight in log-log; a loss can be <= 0
    v = np.log(y[trained]) if logy else y[trained]
    k = np.arange(trained.size)
    for i in range(trained.size):
        w = weight ** np.abs(k - i)
        basis = np.vander(u - u[i], 3, increasing=True)  # 1, du, du^2: the fit's value at du = 0 is coef[0]
        coef = np.linalg.lstsq(basis.T @ (w[:, None] * basis), basis.T @ (w * v), rcond=None)[0]
        out[trained[i]] = math.exp(coef[0]) if logy else coef[0]
    return out


def as_tokens_saved(speedup: float) -> str:
    """A speed-up in words that cannot be misread: ``0.5`` -> "50% fewer tokens (2.0x faster)", since
    saving half the tokens is twice as fast, not 1.5x; ``-0.25`` -> "25% more tokens (0.80x)"."""
    factor = 1.0 / (1.0 - speedup) if speedup < 1 else math.inf
    if speedup >= 0:
        return f"{speedup:.0%} fewer tokens ({factor:.1f}x faster)"
    return f"{-speedup:.0%} more tokens ({factor:.2f}x)"


def describe_smoothing(weight: float) -> str:
    if weight == 0:
        return "none (curves as measured)"
    return (f"local quadratic fit of log objective on log tokens at each evaluation, neighbours k evaluations "
            f"away weighted {weight:g}^k (no lag; the evaluation before training is not smoothed)")


@dataclass(frozen=True)
class SpeedUp:
    """How much sooner ``method`` reaches ``baseline``'s final smoothed objective.

    ``tokens_to_reach`` and ``baseline_tokens`` are training tokens (absolute counts).
    ``speedup`` = 1 - ``tokens_to_reach`` / ``baseline_tokens``; None (with ``tokens_to_reach``
    None) when the method never gets there.
    """

    method: str
    baseline: str
    speedup: float | None
    tokens_to_reach: float | None
    baseline_tokens: float
    baseline_final: float  # smoothed
    method_final: float  # smoothed
    smoothing: str

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def speedup(
    method: tuple[Sequence[float], Sequence[float]],
    baseline: tuple[Sequence[float], Sequence[float]],
    *,
    smoothing: float = 0.6,
    names: tuple[str, str] = ("method", "baseline"),
) -> SpeedUp:
    """Speed-up of ``method`` over ``baseline``; each a (training tokens, objective) curve, lower is better."""
    (mx, my), (bx, by) = method, baseline
    mx, bx = np.asarray(mx, dtype=float), np.asarray(bx, dtype=float)
    if len(mx) == 0 or len(bx) == 0 or len(mx) != len(my) or len(bx) != len(by):
        raise AutoscaleError(f"speed-up of {names[0]!r} over {names[1]!r}: empty or ragged curve")
    my_s, by_s = smooth(mx, my, smoothing), smooth(bx, by, smoothing)
    target, total = float(by_s[-1]), float(bx[-1])
    below = np.flatnonzero(my_s <= target)
    if below.size == 0 or total <= 0:
        reached = None
    elif below[0] == 0:
        reached = float(mx[0])
    else:
        i = int(below[0])
        y0, y1 = my_s[i - 1], my_s[i]
        frac = 1.0 if y0 == y1 else (y0 - target) / (y0 - y1)
        reached = float(mx[i - 1] + frac * (mx[i] - mx[i - 1]))
    return SpeedUp(
        method=names[0], baseline=names[1],
        speedup=None if reached is None else 1.0 - reached / total,
        tokens_to_reach=reached, baseline_tokens=total, baseline_final=target,
        method_final=float(my_s[-1]), smoothing=describe_smoothing(smoothing),
    )
