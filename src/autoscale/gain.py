"""The predicted mixture's gain over a baseline at the target, and whether it stands out from noise.

A comparison of two mixtures is a claim about noise: each validation seed trains both mixtures
(same seed, so the pair shares initialisation), the gain of that seed is

    g_s = 1 - objective(predicted, s) / objective(baseline, s)      (> 0: the predicted one is better)

and the gain is the mean over seeds with a t-based 95% interval (few seeds). The verdict is "win"
when the interval lies above 0, "loss" when below, and "not distinguishable" otherwise, which is
also the honest answer with a single seed (the noise is then unknown).

Units: gains are fractions of the baseline's final objective (0.01 = 1% lower perplexity).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class Gain:
    """The predicted mixture against one baseline.

    Attributes:
        baseline: the baseline's name.
        mean: mean gain over the paired seeds (fraction of the baseline's objective).
        interval: (low, high) t interval at ``LEVEL``; None with one seed.
        seeds: paired seeds used.
        verdict: "win" | "loss" | "not distinguishable".
    """

    baseline: str
    mean: float
    interval: tuple[float, float] | None
    seeds: int
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "mean": self.mean,
                "interval": None if self.interval is None else list(self.interval), "seeds": self.seeds,
                "verdict": self.verdict, "level": LEVEL}

    def describe(self) -> str:
        """``+1.2% [-0.4%, +2.8%] over 3 seeds: not distinguishable``."""
        ci = "" if self.interval is None else f" [{self.interval[0]:+.1%}, {self.interval[1]:+.1%}]"
        return f"{self.mean:+.1%}{ci} over {self.seeds} seed{'s' * (self.seeds != 1)}: {self.verdict}"


def paired_gain(baseline: str, predicted: Mapping[int, float], other: Mapping[int, float]) -> Gain | None:
    """The gain of ``predicted`` over ``other`` (seed -> final objective, lower is better).

    Only seeds present in both count. Returns None when no seed pairs up.
    """
    seeds = sorted(set(predicted) & set(other))
    values = [1.0 - float(predicted[s]) / float(other[s]) for s in seeds
              if math.isfinite(float(predicted[s])) and math.isfinite(float(other[s])) and float(other[s]) > 0]
    if not values:
        return None
    mean, interval = t_interval(values)
    if interval is None:
        return Gain(baseline, mean, None, 1, "not distinguishable")
    lo, hi = interval
    verdict = "win" if lo > 0 else "loss" if hi < 0 else "not distinguishable"
    return Gain(baseline, mean, (lo, hi), len(values), verdict)


def t_interval(values: Sequence[float]) -> tuple[float, tuple[float, float] | None]:
    """The mean of ``values`` (one per seed) and its t interval at ``LEVEL``; None with one value."""
    g = np.asarray(values, dtype=float)
    mean = float(g.mean())
    if g.size < 2:
        return mean, None
    half = float(stats.t.ppf(0.5 + LEVEL / 2, g.size - 1)) * float(g.std(ddof=1)) / math.sqrt(g.size)
    return mean, (mean - half, mean + half)
