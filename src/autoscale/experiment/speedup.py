"""The validation objective on a curve, and the paper's speed-up (METHOD.md section 4).

Speed-up of a method over a baseline, both trained at the same target budget::

    speedup = 1 - (steps the method needs to reach the baseline's final objective)
                  / (the baseline's total steps)

on smoothed evaluation curves. Smoothing (stated in every result): a debiased exponential moving
average over the evaluation points, ``s_t = w * s_(t-1) + (1 - w) * y_t`` divided by ``1 - w^t``
(TensorBoard's "smoothing" slider; ``w = 0`` leaves the curve as measured). Both curves are
smoothed alike. The crossing is interpolated linearly in steps between evaluation points; a method
that never reaches the baseline's final value within its own curve gets ``speedup = None``.
Positive: the method is faster; negative: slower.
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

    def curve(self, metrics: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(steps, objective) along a metrics.json curve (int steps, floats)."""
        points = metrics.get("curve") or []
        if not points:
            raise AutoscaleError("the run reported no evaluation curve; a speed-up needs one")
        steps = np.array([p["step"] for p in points], dtype=float)
        values = np.array([self.of(p["eval"]) for p in points])
        return steps, values

    def describe(self) -> str:
        if self.weights is None:
            return f"mean validation {self.metric} over domains"
        return f"weighted mean validation {self.metric} ({', '.join(f'{d}={w:g}' for d, w in self.weights.items())})"


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


def smooth(values: Sequence[float], weight: float) -> np.ndarray:
    """Debiased exponential moving average (``weight`` in [0, 1); 0 returns the values)."""
    if not 0 <= weight < 1:
        raise AutoscaleError(f"smoothing weight must be in [0, 1), got {weight!r}")
    y = np.asarray(values, dtype=float)
    out = np.empty_like(y)
    acc = 0.0
    for t, v in enumerate(y, start=1):
        acc = weight * acc + (1 - weight) * v
        out[t - 1] = acc / (1 - weight**t)
    return out


def describe_smoothing(weight: float) -> str:
    if weight == 0:
        return "none (curves as measured)"
    return f"debiased exponential moving average over evaluation points, weight {weight:g}"


@dataclass(frozen=True)
class SpeedUp:
    """How much sooner ``method`` reaches ``baseline``'s final smoothed objective.

    Steps are optimizer steps. ``speedup`` = 1 - ``steps_to_reach`` / ``baseline_steps``; None
    (with ``steps_to_reach`` None) when the method never gets there.
    """

    method: str
    baseline: str
    speedup: float | None
    steps_to_reach: float | None
    baseline_steps: float
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
    """Speed-up of ``method`` over ``baseline``; each a (steps, objective) curve, lower is better."""
    (ms, my), (bs, by) = method, baseline
    ms, bs = np.asarray(ms, dtype=float), np.asarray(bs, dtype=float)
    if len(ms) == 0 or len(bs) == 0 or len(ms) != len(my) or len(bs) != len(by):
        raise AutoscaleError(f"speed-up of {names[0]!r} over {names[1]!r}: empty or ragged curve")
    my_s, by_s = smooth(my, smoothing), smooth(by, smoothing)
    target, total = float(by_s[-1]), float(bs[-1])
    below = np.flatnonzero(my_s <= target)
    if below.size == 0 or total <= 0:
        reached = None
    elif below[0] == 0:
        reached = float(ms[0])
    else:
        i = int(below[0])
        y0, y1 = my_s[i - 1], my_s[i]
        frac = 1.0 if y0 == y1 else (y0 - target) / (y0 - y1)
        reached = float(ms[i - 1] + frac * (ms[i] - ms[i - 1]))
    return SpeedUp(
        method=names[0], baseline=names[1],
        speedup=None if reached is None else 1.0 - reached / total,
        steps_to_reach=reached, baseline_steps=total, baseline_final=target,
        method_final=float(my_s[-1]), smoothing=describe_smoothing(smoothing),
    )
