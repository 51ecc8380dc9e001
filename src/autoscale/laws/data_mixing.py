"""Data Mixing Laws (Ye et al., arXiv 2403.16952) at one budget: fit, then optimise the proportions.

Per validation domain j, the loss of a model trained on proportions r (r_i >= 0, sum r_i = 1) is

    L_j(r) = c_j + k_j * exp(sum_i t_ji r_i)

fitted on runs of random mixtures at one training budget. Since sum r_i = 1, adding a constant to
every t_ji changes nothing but k_j: the model is not identifiable as written. We fix the gauge by
setting t_jm = 0 for the last domain (equivalently, fitting on the first m - 1 proportions), so each
domain has m + 1 parameters (c_j, log k_j, t_j1 .. t_j,m-1) and needs at least m + 2 runs to be
over-determined. The objective is the (weighted) mean of the L_j; its minimum over the simplex with
floors and caps is found by SLSQP from several starts (the fitted objective need not be convex).

Scale: this is the paper's law at a fixed budget only. The paper nests it with scaling laws in
steps and model size to predict large runs from small ones; here the mixture is optimised at the
budget where the runs were trained, and using it elsewhere is the caller's assumption.

The law is fitted on losses (nats), as in the paper: an exponential in the proportions fits the loss
across the simplex, where perplexity, its exponential, would not. An objective in perplexity is the
mean of exp(L_j), optimised as such (``metric="perplexity"``).

Pure numpy/scipy: no I/O, no torch. Units: proportions sum to 1; lower is better.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares, minimize

from autoscale.errors import AutoscaleError


@dataclass(frozen=True)
class MixingLaw:
    """Fitted L_j(r) = c_j + k_j exp(t_j . r) per validation domain (gauge: t_j[-1] = 0).

    Attributes:
        c, k: ``[J]`` offsets and scales; t: ``[J, m]`` exponents with the last column 0;
        r2: ``[J]`` coefficient of determination of each domain's fit.
    """

    c: np.ndarray
    k: np.ndarray
    t: np.ndarray
    r2: np.ndarray

    def losses(self, r: np.ndarray) -> np.ndarray:
        """``[..., J]`` predicted losses of proportions ``r`` (``[..., m]``)."""
        return self.c + self.k * np.exp(np.asarray(r, dtype=float) @ self.t.T)

    def objective(self, r: np.ndarray, weights: np.ndarray | None = None, metric: str = "loss") -> np.ndarray:
        """The weighted mean (plain mean when ``weights`` is None) of the predicted ``metric``: the
        loss, or the perplexity exp(loss) when the law was fitted on losses in nats."""
        values = self.losses(r) if metric == "loss" else np.exp(self.losses(r))
        return values.mean(axis=-1) if weights is None else values @ (weights / weights.sum())

    def objective_gradient(self, r: np.ndarray, weights: np.ndarray | None = None, metric: str = "loss") -> np.ndarray:
        """``[m]``: d objective / d r at one point ``r`` (``[m]``); dL_j/dr = k_j exp(t_j . r) t_j."""
        scale = self.k * np.exp(np.asarray(r, dtype=float) @ self.t.T)  # [J]
        if metric != "loss":  # d exp(L_j) = exp(L_j) dL_j
            scale = scale * np.exp(self.c + scale)
        share = np.full(len(scale), 1.0 / len(scale)) if weights is None else weights / weights.sum()
        return (share * scale) @ self.t


def min_runs(m: int) -> int:
    """Runs a fit of ``m`` training domains needs: m + 1 parameters per domain, plus one."""
    return m + 2


def fit_mixing_law(proportions: np.ndarray, losses: np.ndarray) -> MixingLaw:
    """Fit the law per validation domain by least squares in the loss.

    Args:
        proportions: ``[K, m]`` training proportions of K runs (rows sum to 1).
        losses: ``[K, J]`` their validation losses (positive, finite).
    """
    r = np.asarray(proportions, dtype=float)
    y = np.asarray(losses, dtype=float)
    if r.ndim != 2 or y.ndim != 2 or r.shape[0] != y.shape[0]:
        raise AutoscaleError("mixing law: proportions [K, m] and losses [K, J] must have the same K")
    k_runs, m = r.shape
    if m < 2:
        raise AutoscaleError("mixing law: needs at least 2 training domains")
    if k_runs < min_runs(m):
        raise AutoscaleError(f"mixing law: {k_runs} runs for {m} domains; needs at least {min_runs(m)}")
    if not (np.isfinite(r).all() and (r >= 0).all() and np.allclose(r.sum(axis=1), 1.0, atol=1e-6)):
        raise AutoscaleError("mixing law: every row of proportions must be >= 0 and sum to 1")
    if not (np.isfinite(y).all() and (y > 0).all()):
        raise AutoscaleError("mixing law: losses must be positive and finite")
    free = r[:, :-1]  # the gauge: the last domain's exponent is 0
    cs, ks, ts, r2s = [], [], [], []
    for j in range(y.shape[1]):
        c, k, t, r2 = _fit_domain(free, y[:, j])
        cs.append(c)
        ks.append(k)
        ts.append(np.append(t, 0.0))
        r2s.append(r2)
    return MixingLaw(np.array(cs), np.array(ks), np.array(ts), np.array(r2s))


def _fit_domain(r: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray, float]:
    """c, k, t (m - 1 values) and R^2 of one domain; several starts for c, the best kept."""
    lo, span = float(y.min()), max(float(np.ptp(y)), 1e-6 * abs(float(y.min())), 1e-12)
    design = np.column_stack([np.ones(len(y)), r])
    best = None
    for c0 in (0.0, lo - 0.1 * span, lo - span, lo - 10 * span):  # c starts below the smallest loss
        if c0 >= lo:
            continue
        # a linear fit of log(y - c0) gives log k and t to start from
        coef, *_ = np.linalg.lstsq(design, np.log(y - c0), rcond=None)
        fit = least_squares(residual_of, np.concatenate([[c0], coef]), jac=_jacobian_of, args=(r, y), method="trf",
                            x_scale="jac", max_nfev=2000)
        if best is None or fit.cost < best.cost:
            best = fit
    assert best is not None
    x = best.x
    ss_res = float((residual_of(x, r, y) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return float(x[0]), float(math.exp(x[1])), x[2:].copy(), r2


def residual_of(x: np.ndarray, r: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fitted minus measured loss; x = (c, log k, t_1 .. t_m-1), the exponent clipped against overflow."""
    return x[0] + np.exp(np.clip(x[1] + r @ x[2:], -50.0, 50.0)) - y


def _jacobian_of(x: np.ndarray, r: np.ndarray, y: np.ndarray) -> np.ndarray:
    """d residual / d x, analytic (finite differences cost m + 1 evaluations a step); 0 where clipped."""
    z = x[1] + r @ x[2:]
    e = np.where(np.abs(z) < 50.0, np.exp(np.clip(z, -50.0, 50.0)), 0.0)
    return np.column_stack([np.ones_like(y), e, e[:, None] * r])


def optimal_proportions(
    law: MixingLaw,
    *,
    lower: Sequence[float] | None = None,
    upper: Sequence[float] | None = None,
    weights: Sequence[float] | None = None,
    metric: str = "loss",
) -> np.ndarray:
    """The proportions minimising the law's objective on the simplex with ``lower <= r <= upper``.

    ``lower``/``upper``: per-domain bounds on the proportion (default 0 and 1), e.g. a floor as a
    share of uniform and a cap from the available tokens; ``weights``: per validation domain;
    ``metric``: what the objective averages, ``loss`` or ``perplexity`` (exp of the fitted loss).
    """
    w = None if weights is None else np.asarray(weights, dtype=float)
    return minimize_on_simplex(lambda r: float(law.objective(r, w, metric)), law.t.shape[1], lower, upper,
                               jac=lambda r: law.objective_gradient(r, w, metric))


def minimize_on_simplex(f: Callable[[np.ndarray], float], m: int, lower: Sequence[float] | None = None,
                        upper: Sequence[float] | None = None,
                        jac: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """The point of {lower <= r <= upper, sum r = 1} minimising ``f``: SLSQP from the centre and
    from a start leaning towards each domain (``f`` need not be convex); the best is kept.
    ``jac``: the gradient of ``f``, when known (else finite differences: m + 1 calls of ``f`` a step)."""
    lo = np.zeros(m) if lower is None else np.asarray(lower, dtype=float)
    hi = np.ones(m) if upper is None else np.asarray(upper, dtype=float)
    if lo.shape != (m,) or hi.shape != (m,) or (lo > hi).any() or lo.sum() > 1 + 1e-9 or hi.sum() < 1 - 1e-9:
        raise AutoscaleError("the bounds leave no proportions that sum to 1")
    starts = [np.full(m, 1.0 / m)] + [np.eye(m)[i] * 0.7 + 0.3 / m for i in range(m)]
    best_r, best_f = None, math.inf
    for r0 in starts:
        r0 = project(r0, lo, hi)
        # a law carried far from its runs (a start leaning on one of many domains) may predict a
        # perplexity past float range: inf there, a start that loses, not a warning to the user
        with np.errstate(over="ignore", invalid="ignore"):
            res = minimize(f, r0, method="SLSQP", jac=jac, bounds=list(zip(lo, hi, strict=True)),
                           constraints=[{"type": "eq", "fun": lambda r: r.sum() - 1.0}],
                           options={"ftol": 1e-12, "maxiter": 500})
            r = project(res.x, lo, hi)
            value = f(r)
        if value < best_f:
            best_r, best_f = r, value
    assert best_r is not None
    return best_r


def project(r: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The point of {lo <= r <= hi, sum r = 1} closest to ``r`` (bisection on a shift)."""
    a, b = float((lo - r).min()) - 1.0, float((hi - r).max()) + 1.0
    for _ in range(100):
        mid = (a + b) / 2
        if np.clip(r + mid, lo, hi).sum() > 1:
            b = mid
        else:
            a = mid
    return np.clip(r + (a + b) / 2, lo, hi)
