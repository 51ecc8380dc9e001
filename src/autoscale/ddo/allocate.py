"""Exact allocation: minimise sum_i (n_i + a_i)^(-b_i) subject to sum_i cost_i n_i = total and
lo_i <= n_i <= hi_i.

The problem is convex and separable, so KKT is necessary and sufficient. With multiplier lambda,
every domain sits where its marginal gain b_i (n_i + a_i)^(-b_i - 1) / cost_i equals lambda,
unless a bound stops it first:

    n_i(lambda) = clip((b_i / (lambda cost_i))^(1 / (1 + b_i)) - a_i, lo_i, hi_i)

Domains at a bound form the active set. total(lambda) = sum cost_i n_i(lambda) is continuous and
non-increasing, so lambda is one bracketed 1-D root (Brent, in log lambda) and the active set falls
out of the clipping: no iteration over active sets, no step size. Everything is vectorised, so
10,000 domains solve in milliseconds.

Amounts n are in the caller's units; ``fit_ddo`` uses amounts relative to the base run's per-domain
tokens, with cost_i = base tokens_i / mean base tokens (all 1 for a uniform base).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from autoscale.errors import AutoscaleError

_RTOL = 1e-12  # relative slack for "the bounds exactly meet the total"


@dataclass(frozen=True, eq=False)
class Allocation:
    """The optimum of the separable problem.

    Attributes:
        n: amounts per domain (the caller's units).
        at_floor, at_cap: boolean masks of the active set.
        lam: the multiplier: marginal gain per unit of cost shared by every free domain
            (nan when every domain is at a bound).
        value: sum_i (n_i + a_i)^(-b_i) at the optimum.
    """

    n: np.ndarray
    at_floor: np.ndarray
    at_cap: np.ndarray
    lam: float
    value: float


def allocate(a, b, total: float, lo=None, hi=None, *, cost=None) -> Allocation:
    """Minimise sum (n_i + a_i)^(-b_i) s.t. sum cost_i n_i = total, lo_i <= n_i <= hi_i.

    Args:
        a: offsets (n_i + a_i must stay > 0); b: exponents (> 0).
        total: the budget, in the units of cost * n.
        lo, hi: floors and caps (scalars or arrays; None or -inf/inf: unbounded).
        cost: budget used per unit of n_i (> 0); default 1.
    Returns:
        ``Allocation``. Raises AutoscaleError when the bounds cannot meet ``total``.
    """
    a, b, lo, hi, cost, total = _validate(a, b, lo, hi, cost, total)
    closed = bool(np.all(lo >= -a))  # else some n_i may only approach -a_i, where its term is infinite
    min_total = float(cost @ np.maximum(lo, -a))
    max_total = float(cost @ hi) if np.all(np.isfinite(hi)) else math.inf
    slack = _RTOL * max(abs(total), 1e-300)
    if total > max_total + slack:
        raise AutoscaleError(f"infeasible bounds: the caps allow {max_total:.6g} in all, below the budget {total:.6g}")
    if closed and total < min_total - slack:
        raise AutoscaleError(f"infeasible bounds: the floors need {min_total:.6g} in all, above the budget {total:.6g}")
    if not closed and total <= min_total:
        raise AutoscaleError(f"budget {total:.6g} too small: the amounts must exceed -a, {min_total:.6g} in all")
    if closed and total <= min_total + slack:
        return _result(lo.copy(), a, b, np.ones(lo.size, bool), np.zeros(lo.size, bool), math.nan)
    if total >= max_total - slack:
        return _result(hi.copy(), a, b, np.zeros(hi.size, bool), np.ones(hi.size, bool), math.nan)

    logk = np.log(b / cost)  # n_i + a_i = exp((logk_i - mu) / (1 + b_i)) with mu = log lambda
    inv = 1.0 / (1.0 + b)

    def amounts(mu: float) -> np.ndarray:
        with np.errstate(over="ignore"):
            return np.clip(np.exp((logk - mu) * inv) - a, lo, hi)

    def excess(mu: float) -> float:
        return float(cost @ amounts(mu)) - total

    # Start where a uniform split would sit; then widen the bracket geometrically.
    guess = np.maximum(total / cost.sum() + a, 1e-12)
    mu0 = float(np.median(logk - (1.0 + b) * np.log(guess)))
    mu_lo, mu_hi = bracket_root(excess, mu0, decreasing=True)
    mu = brentq(excess, mu_lo, mu_hi, xtol=1e-14, rtol=4 * np.finfo(float).eps, maxiter=200)

    raw = np.exp((logk - mu) * inv) - a
    at_floor, at_cap = raw <= lo, (raw >= hi) & ~(raw <= lo)
    free = ~(at_floor | at_cap)
    # Newton polish of mu on the free set: the sum then meets the budget to rounding.
    for _ in range(2):
        n = np.clip(raw, lo, hi)
        gap = float(cost @ n) - total
        slope = -float(cost[free] @ ((raw[free] + a[free]) * inv[free]))
        if slope == 0 or gap == 0:
            break
        step = mu - gap / slope
        new = np.exp((logk - step) * inv) - a
        if np.any((new <= lo) != at_floor) or np.any((new >= hi) & ~at_floor != at_cap):
            break  # would change the active set: keep the bracketed root
        mu, raw = step, new
    return _result(np.clip(raw, lo, hi), a, b, at_floor, at_cap, math.exp(mu))


def bracket_root(
    f: Callable[[float], float], x0: float, *, decreasing: bool, limit: int = 80, what: str = "multiplier"
) -> tuple[float, float]:
    """An interval [lo, hi] around x0 on which a monotone ``f`` changes sign (steps double outwards)."""
    lo = hi = x0
    step = 1.0
    f0 = f(x0)
    if f0 == 0:
        return x0 - 1e-12, x0 + 1e-12
    # f decreasing: f(x0) > 0 means the root is to the right
    right = (f0 > 0) == decreasing
    for _ in range(limit):
        if right:
            lo, hi = hi, hi + step
            if (f(hi) > 0) != (f0 > 0):
                return lo, hi
        else:
            lo, hi = lo - step, lo
            if (f(lo) > 0) != (f0 > 0):
                return lo, hi
        step *= 2
    raise AutoscaleError(f"could not bracket the {what} (values too extreme for float64)")


def caps_in_tokens(max_tokens: Mapping[str, float] | None, domains: tuple[str, ...]) -> np.ndarray:
    """Per-domain caps (tokens) from domain -> cap; inf where none. Unknown names are errors."""
    hi = np.full(len(domains), np.inf)
    for d, cap in (max_tokens or {}).items():
        if d not in domains:
            raise AutoscaleError(f"max_tokens names unknown domain {d!r} (known: {', '.join(domains)})")
        cap = float(cap)
        if not math.isfinite(cap) or cap < 0:
            raise AutoscaleError(f"max_tokens for {d!r} must be a number of tokens >= 0, got {cap!r}")
        hi[domains.index(d)] = cap
    return hi


def _result(n, a, b, at_floor, at_cap, lam) -> Allocation:
    with np.errstate(divide="ignore", over="ignore"):
        value = float(np.sum((n + a) ** (-b)))
    for arr in (n, at_floor, at_cap):
        arr.setflags(write=False)
    return Allocation(n, at_floor, at_cap, lam, value)


def _validate(a, b, lo, hi, cost, total):
    a = np.array(a, dtype=float).ravel()
    b = np.array(b, dtype=float).ravel()
    m = a.size
    if m == 0 or b.size != m:
        raise AutoscaleError(f"allocation needs equal, non-empty a and b, got {a.size} and {b.size}")
    lo = np.full(m, -np.inf) if lo is None else np.array(np.broadcast_to(np.asarray(lo, float), (m,)))
    hi = np.full(m, np.inf) if hi is None else np.array(np.broadcast_to(np.asarray(hi, float), (m,)))
    cost = np.ones(m) if cost is None else np.array(np.broadcast_to(np.asarray(cost, float), (m,)))
    total = float(total)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and math.isfinite(total)):
        raise AutoscaleError("allocation: a, b and the total must be finite")
    if np.any(b <= 0):
        raise AutoscaleError("allocation: exponents b must be > 0")
    if np.any(np.isnan(lo)) or np.any(np.isnan(hi)) or np.any(lo == np.inf) or np.any(hi == -np.inf):
        raise AutoscaleError("allocation: floors and caps must be numbers (or -inf/inf for none)")
    if not (np.all(np.isfinite(cost)) and np.all(cost > 0)):
        raise AutoscaleError("allocation: costs must be finite and > 0")
    bad = np.flatnonzero(lo > hi)
    if bad.size:
        i = bad[0]
        raise AutoscaleError(f"infeasible bounds: domain {i} has floor {lo[i]:.6g} above its cap {hi[i]:.6g}")
    bad = np.flatnonzero(hi <= -a)
    if bad.size:
        i = bad[0]
        raise AutoscaleError(f"infeasible bounds: domain {i} has cap {hi[i]:.6g} at or below -a = {-a[i]:.6g}")
    return a, b, lo, hi, cost, total
