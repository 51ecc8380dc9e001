"""The optimal-mixture scaling law (Shukor et al., arXiv 2507.09404), joint form, at one model size.

Per validation domain (target) T, the loss after D training tokens of mixture h (h_i >= 0, sum 1):

    L_T(D, h) = E + 1 / (sum_i C_i h_i^g_i) + B_h / D^beta,   B_h = (sum_i K_i h_i)^g_B

This is the paper's joint law with the model-size term dropped (our proxies have one size, so it
folds into E). The mixture term and the data term interact through B_h, so the optimal h moves with
D: what AutoScale also claims, and what the additive form (B constant) cannot express. 3m + 3
parameters per target, all positive (fitted in logs).

Fit: the paper's Huber loss (delta 1e-3) on the loss itself, minimised from random starts by
trust-region least squares (the paper uses basin-hopping L-BFGS; a Huber least-squares solver reaches
the same kind of minimum much faster on a few dozen runs); the best of the starts is kept. Optimum: the objective (the mean, or a weighted
mean, of L_T, or of exp(L_T) for perplexity) minimised over the simplex within floors and caps at
the target's D. Repetition is not modelled (the paper's law assumes no repeated data); our caps keep
a domain under max_epochs instead.

Pure numpy/scipy: no I/O, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from autoscale.errors import AutoscaleError

HUBER_DELTA = 1e-3


@dataclass(frozen=True)
class MixtureLaw:
    """Fitted joint law per target (rows): ``params`` ``[J, 3m + 3]`` in logs, in the order
    log E, log C_1..m, log g_1..m, log K_1..m, log g_B, log beta."""

    params: np.ndarray
    m: int

    def losses(self, tokens: float | np.ndarray, h: np.ndarray) -> np.ndarray:
        """``[..., J]`` predicted losses after ``tokens`` (broadcast) of mixtures ``h`` ``[..., m]``."""
        # every target at once (the optimum search calls this some 10^4 times at m = 24)
        h = np.asarray(h, dtype=float)[..., None, :]
        d = np.asarray(tokens, dtype=float)[..., None]
        return _law_of(_unpacked(self.params.T, self.m), d, h)

    def objective(self, tokens: float, h: np.ndarray, weights: np.ndarray | None = None,
                  metric: str = "loss") -> np.ndarray:
        values = self.losses(tokens, h)
        values = values if metric == "loss" else np.exp(values)
        return values.mean(axis=-1) if weights is None else values @ (weights / weights.sum())

    def objective_gradient(self, tokens: float, h: np.ndarray, weights: np.ndarray | None = None,
                           metric: str = "loss") -> np.ndarray:
        """``[m]``: d objective / d h at one mixture ``h`` ``[m]`` (finite differences would cost m + 1
        objective calls a step of the optimum search)."""
        e, c, g, k, gb, beta = _unpacked(self.params.T, self.m)
        hp = np.maximum(np.asarray(h, dtype=float), 1e-300)  # h^(g - 1) at h = 0: the floor's side
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            terms = c * np.power(hp, g)  # [J, m]
            mix = np.maximum(terms.sum(axis=-1), 1e-12)
            s = k @ hp  # [J]
            data = np.power(s, gb) / np.power(float(tokens), beta)
            dloss = -(terms * g / hp) / mix[:, None] ** 2 + (data * gb / s)[:, None] * k  # [J, m]
            if metric != "loss":  # d exp(L) = exp(L) dL
                dloss = dloss * np.exp(e + 1.0 / mix + data)[:, None]
        share = np.full(len(dloss), 1.0 / len(dloss)) if weights is None else weights / weights.sum()
        return share @ dloss


def _unpacked(p: np.ndarray, m: int) -> tuple:
    """(E, C, g, K, g_B, beta) from the parameters in logs: ``p`` ``[3m + 3]`` for one target, or
    ``[3m + 3, J]`` (transposed rows) for all, giving C, g, K as ``[J, m]`` and the rest as ``[J]``."""
    return (np.exp(p[0]), np.exp(p[1:1 + m].T), np.exp(p[1 + m:1 + 2 * m].T), np.exp(p[1 + 2 * m:1 + 3 * m].T),
            np.exp(p[1 + 3 * m]), np.exp(p[2 + 3 * m]))


def _law(p: np.ndarray, d: np.ndarray, h: np.ndarray, m: int) -> np.ndarray:
    return _law_of(_unpacked(p, m), d, h)


def _law_of(unpacked: tuple, d: np.ndarray, h: np.ndarray) -> np.ndarray:
    e, c, g, k, gb, beta = unpacked
    hp = np.clip(h, 0.0, None)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        mix = np.sum(c * np.power(hp, g), axis=-1)
        data = np.power(np.sum(hp * k, axis=-1), gb) / np.power(d, beta)
        return e + 1.0 / np.maximum(mix, 1e-12) + data


def _law_jacobian(p: np.ndarray, d: np.ndarray, h: np.ndarray, m: int) -> np.ndarray:
    """``[K, 3m + 3]``: d law / d p (p in logs, so each column is the derivative times the parameter)."""
    e, c, g, k, gb, beta = _unpacked(p, m)
    hp = np.clip(h, 0.0, None)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        terms = c * np.power(hp, g)  # [K, m]
        mix = np.sum(terms, axis=-1)
        s = hp @ k
        data = np.power(s, gb) / np.power(d, beta)
        inv2 = np.where(mix > 1e-12, -1.0 / mix**2, 0.0)[:, None]  # the law clamps mix at 1e-12
        log_h = np.where(hp > 0, np.log(np.where(hp > 0, hp, 1.0)), 0.0)  # h^g log h -> 0 as h -> 0
        return np.column_stack([
            np.full(d.shape, e), inv2 * terms, inv2 * terms * log_h * g,
            (data * gb / s)[:, None] * k * hp, data * np.log(s) * gb, -data * np.log(d) * beta,
        ])


def min_budgets() -> int:
    return 3


def fit_mixture_law(tokens: np.ndarray, h: np.ndarray, losses: np.ndarray, seed: int = 0,
                    starts: int = 8, max_steps: int = 4000) -> MixtureLaw:
    """Fit the law per target on K runs: ``tokens`` ``[K]`` (total tokens of each run), ``h``
    ``[K, m]`` (its weights), ``losses`` ``[K, J]`` (validation loss per target). The runs must
    cover at least 3 budgets spanning at least 4x. ``max_steps``: least-squares evaluations per start."""
    d = np.asarray(tokens, dtype=float)
    h = np.asarray(h, dtype=float)
    y = np.asarray(losses, dtype=float)
    budgets = np.unique(np.round(d, -2))
    if budgets.size < min_budgets() or budgets.max() < 4 * budgets.min():
        raise AutoscaleError(f"mixture law: runs at {budgets.size} budget(s) spanning "
                             f"{budgets.max() / budgets.min():.1f}x; it needs 3 budgets spanning 4x or more")
    m = h.shape[1]
    if y.ndim != 2 or y.shape[0] != d.size or h.shape[0] != d.size or not np.isfinite(y).all():
        raise AutoscaleError("mixture law: one finite loss per run and target is needed")
    rng = np.random.default_rng(seed)
    params = []
    for j in range(y.shape[1]):
        best = _fit_target(d, h, y[:, j], rng, starts, max_steps)
        if not np.isfinite(best).all() or not np.isfinite(_law(best, d, h, m)).all():
            raise AutoscaleError(f"mixture law: the fit of target {j} gave non-finite parameters")
        params.append(best)
    return MixtureLaw(np.array(params), m)


def _fit_target(d: np.ndarray, h: np.ndarray, target: np.ndarray, rng: np.random.Generator, starts: int,
                max_steps: int) -> np.ndarray:
    """One target's parameters: the best of ``starts`` trust-region least-squares fits with the
    paper's Huber loss (``least_squares`` with loss "huber", scale delta)."""
    m = h.shape[1]
    scale = np.log(d.mean())

    def residuals(p: np.ndarray) -> np.ndarray:
        r = _law(p, d, h, m) - target
        return np.clip(np.where(np.isfinite(r), r, 1e3), -1e3, 1e3)  # a wild start must not overflow

    def jacobian(p: np.ndarray) -> np.ndarray:
        # analytic: finite differences cost 3m + 3 law evaluations per step (most of the time at m = 24)
        r = _law(p, d, h, m) - target
        jac = _law_jacobian(p, d, h, m)
        live = np.isfinite(r) & (np.abs(r) < 1e3) & np.isfinite(jac).all(axis=1)
        return np.where(live[:, None], np.nan_to_num(jac), 0.0)

    best_p, best_f = None, math.inf
    for _ in range(starts):
        p0 = np.concatenate([
            [math.log(max(target.min() * 0.5, 1e-3))], rng.normal(0.0, 1.0, m), rng.normal(-0.5, 0.5, m),
            rng.normal(0.0, 1.0, m), [rng.normal(0.0, 0.3)], [math.log(rng.uniform(0.2, 0.6))],
        ])
        # start B_h so that the data term is of the order of the loss's spread at the mean D
        p0[1 + 2 * m:1 + 3 * m] += (math.log(max(np.ptp(target), 1e-3)) + np.exp(p0[2 + 3 * m]) * scale) / np.exp(
            p0[1 + 3 * m])
        with np.errstate(over="ignore", invalid="ignore"):  # a wild start's exp(params) may overflow: clipped above
            res = least_squares(residuals, p0, jac=jacobian, loss="huber", f_scale=HUBER_DELTA,
                                max_nfev=max_steps)
        if res.cost < best_f:
            best_p, best_f = res.x, float(res.cost)
    assert best_p is not None
    return best_p


def optimal_weights(law: MixtureLaw, tokens: float, *, lower: Sequence[float] | None = None,
                    upper: Sequence[float] | None = None, weights: Sequence[float] | None = None,
                    metric: str = "loss") -> np.ndarray:
    """The mixture minimising the law's objective after ``tokens`` within ``lower <= h <= upper``."""
    from autoscale.laws.data_mixing import minimize_on_simplex

    w = None if weights is None else np.asarray(weights, dtype=float)
    return minimize_on_simplex(lambda h: float(law.objective(tokens, h, w, metric)), law.m, lower, upper,
                               jac=lambda h: law.objective_gradient(tokens, h, w, metric))
