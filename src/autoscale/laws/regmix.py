"""RegMix (Liu et al., arXiv 2407.01492): data mixture as regression, at one small budget.

1. ``sample_mixtures``: K training mixtures around the token distribution. Each is a Dirichlet draw
   with concentration ``strength * prior``, where the prior is the token distribution tempered by
   ``temperature`` (0.5 flattens a skewed corpus) and the strength is drawn log-uniformly in
   ``strengths`` (small: mixtures dominated by one or two domains; large: close to the prior).
   Weights under ``min_weight`` are set to 0 (the rest renormalised), draws over a cap are rejected,
   and so is a draw within L1 ``min_distance`` of one already kept (a near-duplicate trains nothing new).
2. ``fit_regressor``: a LightGBM regressor from mixture weights to the objective (the caller passes
   the loss, as RegMix regresses it), able to split at small K (no minimum hessian, one bin per
   sample), its leaf size and boosting rounds chosen by 5-fold cross-validation on the runs.
3. ``best_mixture``: the regressor's predictions on many random candidates drawn inside the floors
   and caps (``sample_within``: the floors, plus a Dirichlet draw of the same prior, temperature and
   strengths scaled into the mass the floors leave, then the caps), so that acceptance cannot collapse
   at any m; the mean of the top-k is the answer.

How many runs: RegMix used 512 proxies on 17 domains; a regressor of trees needs several samples per
split, so ``min_runs(m) = 4 m + 4`` is the least we accept and ``default_runs(m) = 16 m`` the default
(linear in m: 32 and 112 at m = 7, 72 and 272 at m = 17, 100 and 384 at m = 24).
Pure numpy plus ``lightgbm`` (imported when a regressor is fitted); no I/O, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autoscale.errors import AutoscaleError

STRENGTHS = (0.1, 5.0)
TEMPERATURE = 0.5


def min_runs(m: int) -> int:
    """The fewest RegMix runs we fit on for ``m`` domains."""
    return 4 * m + 4


def default_runs(m: int) -> int:
    return 16 * m


def _tempered(prior: Sequence[float], k: int, temperature: float) -> np.ndarray:
    """The Dirichlet's centre, prior ** temperature normalised, after checking ``prior`` and ``k``."""
    p = np.asarray(prior, dtype=float)
    if p.ndim != 1 or p.size < 2 or not np.isfinite(p).all() or (p <= 0).any():
        raise AutoscaleError("RegMix: the prior needs at least 2 positive, finite shares")
    if k < 1:
        raise AutoscaleError(f"RegMix: the number of mixtures must be >= 1, got {k}")
    alpha = p**temperature
    return alpha / alpha.sum()


def sample_mixtures(
    prior: Sequence[float],
    k: int,
    seed: int,
    *,
    temperature: float = TEMPERATURE,
    strengths: tuple[float, float] = STRENGTHS,
    min_weight: float = 1e-3,
    lower: Sequence[float] | None = None,
    upper: Sequence[float] | None = None,
    min_distance: float = 1e-2,
    max_draws: int = 1_000_000,
) -> np.ndarray:
    """``[k, m]`` mixtures (rows sum to 1), deterministic for ``seed``; see the module docstring.

    ``lower``/``upper``: per-domain bounds a kept mixture must satisfy (after zeroing small weights).
    """
    alpha = _tempered(prior, k, temperature)
    m = alpha.size
    lo = np.zeros(m) if lower is None else np.asarray(lower, dtype=float)
    hi = np.ones(m) if upper is None else np.asarray(upper, dtype=float)
    rng = np.random.default_rng(seed)
    kept: list[np.ndarray] = []
    draws = 0
    while len(kept) < k:
        batch = max(256, 4 * (k - len(kept)))
        draws += batch
        if draws > max_draws:
            raise AutoscaleError(f"RegMix: only {len(kept)} of {k} distinct mixtures within the bounds "
                                 f"after {max_draws} draws; widen the bounds or lower min_distance")
        strength = np.exp(rng.uniform(math.log(strengths[0]), math.log(strengths[1]), size=(batch, 1)))
        w = rng.gamma(alpha * strength)  # Dirichlet: normalised gammas (exact for tiny concentrations too)
        w = np.where(w < min_weight * w.sum(axis=1, keepdims=True), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        ok = total[:, 0] > 0
        w = w[ok] / total[ok]
        inside = w[((w >= lo - 1e-12) & (w <= hi + 1e-12)).all(axis=1)]
        if min_distance <= 0:  # candidates for the search: no de-duplication
            kept.extend(inside[: k - len(kept)])
            continue
        for row in inside:
            if not kept or np.abs(np.array(kept) - row).sum(axis=1).min() >= min_distance:
                kept.append(row)
                if len(kept) == k:
                    break
    return np.array(kept)


@dataclass(frozen=True)
class Regressor:
    """A fitted LightGBM booster with the settings 5-fold cross-validation chose and their score."""

    booster: Any
    params: Mapping[str, Any]
    cv_spearman: float | None

    def predict(self, weights: np.ndarray) -> np.ndarray:
        return self.booster.predict(np.asarray(weights, dtype=float))


#: the settings cross-validation chooses from: leaves of at least this many runs, boosting rounds
LEAF_SIZES = (2, 4, 8)
ROUNDS = (100, 300, 1000)


def fit_regressor(weights: np.ndarray, objective: np.ndarray, seed: int = 0) -> Regressor:
    """A LightGBM regressor of the objective on the mixture weights (``[K, m]`` -> ``[K]``).

    With a few dozen runs the trees overfit easily, and the search then picks candidates whose
    prediction is an artefact of the fit. So the leaf size and the number of rounds are chosen by
    5-fold cross-validation on the runs themselves (the best Spearman correlation of out-of-fold
    predictions; ties to the smaller model), then the regressor is refitted on every run.
    """
    x = np.asarray(weights, dtype=float)
    y = np.asarray(objective, dtype=float)
    if x.ndim != 2 or y.shape != (x.shape[0],) or not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise AutoscaleError("RegMix: weights [K, m] and one finite objective per run are needed")
    if x.shape[0] < min_runs(x.shape[1]):
        raise AutoscaleError(f"RegMix: {x.shape[0]} runs for {x.shape[1]} domains; needs at least "
                             f"{min_runs(x.shape[1])} (default {default_runs(x.shape[1])})")
    best: tuple[float, dict[str, Any]] | None = None
    for leaf in LEAF_SIZES:
        if leaf > x.shape[0] // 4:
            continue
        for rounds in ROUNDS:
            params = {"min_data_in_leaf": leaf, "rounds": rounds}
            score = _cross_validated(x, y, params, seed)
            if best is None or score > best[0] + 1e-12:
                best = (score, params)
    assert best is not None  # min_runs leaves room for leaves of 2
    return Regressor(_booster(x, y, best[1], seed), best[1], best[0])


def _booster(x: np.ndarray, y: np.ndarray, settings: Mapping[str, Any], seed: int) -> Any:
    try:
        import lightgbm
    except ImportError:
        raise AutoscaleError("RegMix needs lightgbm: pip install 'autoscale[regmix]'") from None
    params = {
        "objective": "regression", "learning_rate": 0.05, "num_leaves": 8,
        "min_data_in_leaf": settings["min_data_in_leaf"], "min_sum_hessian_in_leaf": 0.0, "min_data_in_bin": 1,
        "feature_fraction": 1.0, "bagging_fraction": 1.0, "seed": seed, "deterministic": True,
        "force_row_wise": True, "num_threads": 1, "verbose": -1,
    }
    data = lightgbm.Dataset(x, y, params={"min_data_in_bin": 1, "verbose": -1})
    return lightgbm.train(params, data, num_boost_round=settings["rounds"])


def _cross_validated(x: np.ndarray, y: np.ndarray, settings: Mapping[str, Any], seed: int, folds: int = 5) -> float:
    """Spearman correlation between ``y`` and out-of-fold predictions (-1 when undefined)."""
    from scipy.stats import spearmanr

    order = np.random.default_rng(seed).permutation(len(y))
    predicted = np.empty(len(y))
    for f in range(folds):
        held = order[f::folds]
        train = np.setdiff1d(order, held)
        predicted[held] = _booster(x[train], y[train], settings, seed).predict(x[held])
    if np.ptp(predicted) == 0 or np.ptp(y) == 0:  # a constant ranks nothing (and scipy would warn)
        return -1.0
    rho = spearmanr(predicted, y).statistic
    return float(rho) if np.isfinite(rho) else -1.0


def sample_within(
    prior: Sequence[float],
    k: int,
    seed: int,
    *,
    lower: Sequence[float] | None = None,
    upper: Sequence[float] | None = None,
    temperature: float = TEMPERATURE,
    strengths: tuple[float, float] = STRENGTHS,
    min_weight: float = 1e-3,
) -> np.ndarray:
    """``[k, m]`` mixtures inside ``lower <= w <= upper`` (rows sum to 1), deterministic for ``seed``.

    Each row is the floors plus RegMix's Dirichlet draw (the tempered ``prior``, a log-uniform
    strength, shares under ``min_weight`` zeroed) scaled into the mass ``1 - sum(lower)`` the floors
    leave; a share over its cap is cut to the cap and the excess shared out in proportion to the room
    the other domains have left, which always suffices when ``sum(upper) >= 1``. No draw is rejected,
    so this works at any m, where rejection under a floor of 0.2/m accepts ~1% of draws at m = 7 and
    none at m = 17.
    """
    alpha = _tempered(prior, k, temperature)
    m = alpha.size
    lo = np.zeros(m) if lower is None else np.asarray(lower, dtype=float)
    hi = np.ones(m) if upper is None else np.minimum(np.asarray(upper, dtype=float), 1.0)
    if (lo < 0).any() or (lo > hi).any() or lo.sum() > 1 + 1e-12 or hi.sum() < 1 - 1e-12:
        raise AutoscaleError("RegMix: the floors and caps leave no mixture")
    rng = np.random.default_rng(seed)
    strength = np.exp(rng.uniform(math.log(strengths[0]), math.log(strengths[1]), size=(k, 1)))
    free = np.zeros((k, m))
    while not (filled := free.sum(axis=1) > 0).all():  # a draw whose every share was zeroed: draw again
        g = rng.gamma(alpha * strength[~filled])
        free[~filled] = np.where(g < min_weight * g.sum(axis=1, keepdims=True), 0.0, g)
    w = lo + (1.0 - lo.sum()) * free / free.sum(axis=1, keepdims=True)
    excess = np.clip(w - hi, 0.0, None).sum(axis=1, keepdims=True)
    w = np.minimum(w, hi)
    room = hi - w
    total = room.sum(axis=1, keepdims=True)
    w = w + np.divide(excess * room, total, out=np.zeros_like(w), where=total > 0)
    return np.clip(w, lo, hi)


def best_mixture(
    model: Any,
    prior: Sequence[float],
    seed: int,
    *,
    candidates: int = 100_000,
    top_k: int = 100,
    lower: Sequence[float] | None = None,
    upper: Sequence[float] | None = None,
    temperature: float = TEMPERATURE,
    min_weight: float = 1e-3,
) -> np.ndarray:
    """The mean of the ``top_k`` candidate mixtures (`sample_within`, with the search's prior,
    ``temperature`` and ``min_weight``) with the lowest predicted objective."""
    pool = sample_within(prior, candidates, seed, lower=lower, upper=upper, temperature=temperature,
                         min_weight=min_weight)
    predicted = model.predict(pool)
    best = pool[np.argsort(predicted, kind="stable")[:top_k]].mean(axis=0)
    return best / best.sum()
