"""Per-domain response: y(x) = (x + a)^(-b) + c.

x is a domain's relative amount (its tokens / its base tokens) and y the normalised objective
(objective / base objective), measured with every other domain held at its base amount. There is no
amplitude factor, as in the paper, so the three parameters are pinned by three distinct x.

Three distinct x: exact interpolation through the (mean) y at each x. Eliminating c leaves two
equations in (a, b); for a given b the first fixes a by a monotone 1-D root, so the whole problem is
one 1-D root in log b. That root is not unique: the published data admits two exact curves, one
with b ~ 0.1 and an asymptote c near 0 (one domain alone could remove almost all the loss) and the
published one with b ~ 1-2 and c ~ 0.8-0.95. We take the largest-b root, which reproduces the
published parameters. More distinct x: least squares with c projected out (it is linear), over
log(a + min x) and log b, so that b > 0 and a > -min(x) hold by construction; several starts, the
exact 3-point curves among them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq, least_squares, minimize_scalar

from autoscale.errors import AutoscaleError

B_RANGE = (1e-4, 100.0)  # exponents searched; the published ones are 1.2-2.0
_LOG_B_GRID = np.linspace(math.log(B_RANGE[0]), math.log(B_RANGE[1]), 64)
_LU_RANGE = (-700.0, 700.0)  # log(x1 + a): keeps exp() finite
_U_RANGE = (1e-9, 1e9)  # min(x) + a in least squares
_UNREACHABLE = -1e300  # outer residual where no a matches the first gap (tiny b): "far below 0"


@dataclass(frozen=True, eq=False)
class PowerLawFit:
    """A fitted response y = (x + a)^(-b) + c.

    Attributes:
        a: offset, in relative amounts (an "equivalent data size" already in the model); > -min(x).
        b: exponent (> 0).
        c: asymptote of the normalised objective as x grows.
        x: relative amounts of the points fitted; y: their normalised objectives.
        residuals: y - fit(x) per point.
        r2: coefficient of determination with more than 3 points, else None.
        exact: True when the curve passes exactly through the mean y of 3 distinct x.
    """

    a: float
    b: float
    c: float
    x: np.ndarray
    y: np.ndarray
    residuals: np.ndarray
    r2: float | None
    exact: bool

    def __call__(self, x):
        """Normalised objective at relative amount(s) ``x``."""
        return (np.asarray(x, dtype=float) + self.a) ** (-self.b) + self.c

    @property
    def n_points(self) -> int:
        return int(self.x.size)


def group_means(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct x (ascending) and the mean y at each."""
    xs, inverse = np.unique(x, return_inverse=True)
    return xs, np.bincount(inverse, weights=y) / np.bincount(inverse)


def is_decreasing(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether the mean response falls strictly as x grows (what the model can represent)."""
    _, ym = group_means(np.asarray(x, float), np.asarray(y, float))
    return bool(np.all(np.diff(ym) < 0))


def fit_power_law(x, y, start: tuple[float, float] | None = None) -> PowerLawFit:
    """Fit y = (x + a)^(-b) + c to points (x relative amounts >= 0, y normalised objectives).

    Args:
        x, y: equal-length 1-D arrays with at least 3 distinct x.
        start: optional (a, b) to try first in least squares (e.g. the point fit, in a bootstrap).
    Returns:
        ``PowerLawFit``; ``exact`` tells whether 3 distinct x were interpolated exactly. Data that no
        decreasing convex curve passes through (flat, rising, concave) get the least-squares curve.
    """
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.size != y.size:
        raise AutoscaleError(f"power-law fit: {x.size} amounts but {y.size} objectives")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise AutoscaleError("power-law fit: amounts and objectives must be finite")
    if np.any(x < 0):
        raise AutoscaleError("power-law fit: amounts must be >= 0")
    xs, ym = group_means(x, y)
    if xs.size < 3:
        raise AutoscaleError(f"power-law fit needs at least 3 distinct amounts, got {xs.size}")

    params = None
    if xs.size == 3:
        roots = interpolate3(xs, ym)
        if roots:
            params = roots[-1]  # largest b: see the module docstring
    exact = params is not None
    if params is None:
        params = _least_squares(x, y, xs, ym, start)
    a, b, c = params
    residuals = y - ((x + a) ** (-b) + c)
    r2 = None
    if x.size > 3:
        sst = float(np.sum((y - y.mean()) ** 2))
        r2 = 1.0 - float(np.sum(residuals**2)) / sst if sst > 0 else None
    return PowerLawFit(float(a), float(b), float(c), x, y, residuals, r2, exact)


# -- exact interpolation through 3 points ---------------------------------------------------------


def _log_gap(b, lu, h):
    """log(u^-b - (u + h)^-b) with u = exp(lu), stable for large and small b (arrays)."""
    return -b * lu + np.log(-np.expm1(-b * np.log1p(h * np.exp(-lu))))


def _log_gap1(b: float, lu: float, h: float) -> float:
    """`_log_gap` for one point, with math (numpy scalars are slow in a root finder's loop)."""
    inner = -math.expm1(-b * math.log1p(h * math.exp(-lu)))
    return -b * lu + math.log(inner) if inner > 0 else -math.inf


def interpolate3(x: np.ndarray, y: np.ndarray) -> list[tuple[float, float, float]]:
    """All exact (a, b, c) through 3 points with ascending x, b in ``B_RANGE``, ascending in b.

    Empty when the points are not strictly decreasing or no curve of the family passes through them.
    """
    (x1, x2, x3), (y1, y2, y3) = x, y
    d1, d2 = y1 - y2, y2 - y3
    if not (d1 > 0 and d2 > 0):
        return []
    h1, h2 = x2 - x1, x3 - x2
    ld1, ld2 = math.log(d1), math.log(d2)

    def lu1(b: float) -> float:
        # log(x1 + a) such that the first gap matches; the gap falls monotonically in u.
        f = lambda lu: _log_gap1(b, lu, h1) - ld1  # noqa: E731
        lo, hi = _LU_RANGE
        if not (f(lo) >= 0 >= f(hi)):
            return math.nan  # no offset makes the gap this large (tiny b) or this small
        return brentq(f, lo, hi, xtol=1e-14, rtol=1e-15)

    def g(lb: float) -> float:
        b = math.exp(lb)
        lu = lu1(b)
        value = _log_gap1(b, math.log(math.exp(lu) + h1), h2) - ld2 if math.isfinite(lu) else math.nan
        return value if math.isfinite(value) else _UNREACHABLE

    grid = _LOG_B_GRID
    values = _grid_g(grid, h1, h2, ld1, ld2)
    roots = []
    for k in range(len(grid) - 1):
        lo, hi = values[k], values[k + 1]
        if lo == 0:
            roots.append(float(grid[k]))
        elif (lo < 0) != (hi < 0) and hi != 0:
            roots.append(_root(g, grid[k], grid[k + 1]))
    # Two roots closer than the grid spacing hide under a local maximum below 0: refine it.
    for k in range(1, len(grid) - 1):
        if _UNREACHABLE < values[k] < 0 and values[k] >= max(values[k - 1], values[k + 1]):
            peak = minimize_scalar(lambda lb: -g(lb), bounds=(grid[k - 1], grid[k + 1]), method="bounded",
                                   options={"xatol": 1e-12})
            top = -float(peak.fun)
            if top > 0:
                roots.append(brentq(g, grid[k - 1], peak.x, xtol=1e-14, rtol=1e-15))
                roots.append(brentq(g, peak.x, grid[k + 1], xtol=1e-14, rtol=1e-15))
            elif top > -1e-10:  # tangent: a double root
                roots.append(float(peak.x))
    roots.sort()
    out = []
    for lb in roots:
        b = math.exp(lb)
        u1 = math.exp(lu1(b))
        out.append((u1 - x1, b, y1 - u1 ** (-b)))
    return out


def _root(g, lo: float, hi: float) -> float:
    """The root of ``g`` in [lo, hi], where the grid saw a change of sign. A root on a grid point can
    show the scalar ``g`` the same sign at both ends (1e-12 from zero): that end is the root."""
    g_lo, g_hi = g(lo), g(hi)
    if (g_lo < 0) == (g_hi < 0):
        return lo if abs(g_lo) <= abs(g_hi) else hi
    return brentq(g, lo, hi, xtol=1e-14, rtol=1e-15)


def _grid_g(log_b: np.ndarray, h1: float, h2: float, ld1: float, ld2: float) -> np.ndarray:
    """The outer residual on a grid of log b, with the inner root found by vectorised bisection."""
    b = np.exp(log_b)
    lo = np.full_like(b, _LU_RANGE[0])
    hi = np.full_like(b, _LU_RANGE[1])
    with np.errstate(all="ignore"):
        reachable = _log_gap(b, lo, h1) - ld1 >= 0
        for _ in range(48):  # 1400 / 2^48: far finer than the sign of g needs
            mid = 0.5 * (lo + hi)
            above = _log_gap(b, mid, h1) - ld1 > 0
            lo = np.where(above, mid, lo)
            hi = np.where(above, hi, mid)
        lu = 0.5 * (lo + hi)
        out = _log_gap(b, np.log(np.exp(lu) + h1), h2) - ld2
    out = np.where(reachable, out, _UNREACHABLE)
    return np.where(np.isnan(out), _UNREACHABLE, out)


# -- least squares ---------------------------------------------------------------------------------


def _least_squares(x, y, xs, ym, start) -> tuple[float, float, float]:
    x0 = float(xs[0])
    dx = x - x0

    def curve(theta):
        u = math.exp(theta[0]) + dx
        return u, np.exp(-math.exp(theta[1]) * np.log(u))

    def residual(theta):
        _, p = curve(theta)
        r = y - p
        return r - r.mean()  # c projected out

    def jacobian(theta):
        u, p = curve(theta)
        b = math.exp(theta[1])
        dp = np.column_stack([-b * p / u * math.exp(theta[0]), -b * np.log(u) * p])
        return -(dp - dp.mean(axis=0))

    # The exact curves through the smallest, middle (the base, x = 1, if inside) and largest
    # amounts give one start in each basin (small and large b); a coarse grid when there are none.
    mid = int(np.argmin(np.abs(xs - 1.0)))
    idx = [0, mid if 0 < mid < xs.size - 1 else xs.size // 2, xs.size - 1]
    starts = [(a, b) for a, b, _ in interpolate3(xs[idx], ym[idx])]
    if not starts:
        span = float(xs[-1] - xs[0])
        starts = [(u * span - x0, b) for u in (0.1, 1.0) for b in (0.3, 1.0, 3.0)]
    if start is not None and start[0] + x0 > 0 and start[1] > 0:
        starts.insert(0, start)  # a warm start (bootstrap): the resample is close to the point fit

    lower = [math.log(_U_RANGE[0]), math.log(B_RANGE[0])]
    upper = [math.log(_U_RANGE[1]), math.log(B_RANGE[1])]
    found = []
    for a, b in starts:
        theta0 = np.clip([math.log(max(a + x0, _U_RANGE[0])), math.log(b)], np.add(lower, 1e-9), np.subtract(upper, 1e-9))
        with np.errstate(all="ignore"):
            sol = _solve(residual, jacobian, theta0, lower, upper)
        if not np.all(np.isfinite(sol.fun)):
            continue
        found.append((float(sol.fun @ sol.fun), sol.x))
    if not found:
        raise AutoscaleError("power-law fit failed: no start gave a finite curve")
    # Noisy data often fit a flat small-b curve and a large-b curve about equally well. As for
    # exact interpolation, take the largest b among the optima the data cannot tell apart: those
    # within one noise variance (best cost / degrees of freedom) of the best cost.
    best = min(cost for cost, _ in found)
    slack = best / max(x.size - 3, 1)
    theta = max((th for cost, th in found if cost <= best + slack + 1e-300), key=lambda th: th[1])
    a, b = math.exp(theta[0]) - x0, math.exp(theta[1])
    _, p = curve(theta)
    return a, b, float(np.mean(y - p))


def _solve(residual, jacobian, theta0, lower, upper):
    """Least squares from ``theta0`` within the bounds. MINPACK's Levenberg-Marquardt first: it ignores
    bounds but runs its loop in compiled code (a third of the time of the bounded trust region, which
    spends ~0.4 ms of Python per step on a 2-parameter problem); its answer is kept when it converged
    strictly inside the bounds, where both solvers look for the same minimum. Else the bounded one."""
    tol = {"ftol": 1e-13, "xtol": 1e-13, "gtol": 1e-13, "max_nfev": 300}
    try:
        sol = least_squares(residual, theta0, jac=jacobian, method="lm", **tol)
        if sol.status > 0 and np.all(np.isfinite(sol.fun)) and np.all((sol.x > lower) & (sol.x < upper)):
            return sol
    except (ValueError, OverflowError, np.linalg.LinAlgError):  # unbounded, it may step where exp() overflows
        pass
    return least_squares(residual, theta0, jac=jacobian, bounds=(lower, upper), method="trf", **tol)
