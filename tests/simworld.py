"""A simulated world for tests: validation perplexities whose true optimal mixture is known.

Per validation domain j (the validation domains are the training domains)::

    perplexity_j(N) = E_j + A_j * x_j ** (-alpha_j),    x_j = sum_i T[j, i] * N_i / S

N_i: training tokens of domain i (absolute counts); S: a token scale; T: transfer matrix, 1 on the
diagonal and a little cross-domain transfer off it; E_j: irreducible perplexity; alpha_j: the domain's
exponent. The exponents differ between domains, so the optimal weights move with the budget: slowly
saturating domains (small alpha) gain share as the budget grows. With modest transfer the objective is
close to a sum of per-domain power laws in each domain's own tokens, the assumption DDO and the
AutoScale extrapolation rest on.

The objective is the plain mean of the perplexities (the paper's). Each perplexity is convex in the
token vector, so the objective is convex on the simplex and ``World.optimum`` finds its minimum.

Units: ``tokens`` are absolute token counts per domain; ``weights`` sum to 1; ``budget`` is total tokens.
Imports numpy only at module level (the stand-in trainer imports this file; scipy loads on ``optimum``).
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

TOKEN_SCALE = 1e6  # S: x_j is in millions of tokens
# make_world places the optimum where it draws it at this budget (the tests' largest target)
REFERENCE_BUDGET = 1.6e7
EXPONENTS = (0.35, 0.75)  # alpha_j, drawn stratified so that the domains' exponents differ
TRANSFER = (0.01, 0.08)  # off-diagonal T[j, i]; with (0.02, 0.2) the separable DDO model alone loses 5-15% of the gain
FLOORS = (3.0, 10.0)  # E_j, irreducible perplexity
REDUCIBLE = (4.0, 8.0)  # mean reducible perplexity / mean E at the reference budget, at its optimum
SPREAD = (6.0, 10.0)  # largest / smallest optimal weight at the reference budget (<= 10: with 3
# domains the smallest is >= 0.071, above the DDO floor 0.2 x uniform = 0.067)
_SEED_STREAM = 0x5EED  # tags the random stream shared by all runs of a seed
_RUN_STREAM = 0x2A1  # tags the random stream of one run


@dataclass(frozen=True)
class World:
    """A simulated world; see the module docstring. Build one with ``make_world``.

    Attributes:
        domains: training domains, which are also the validation domains, in order.
        seed: the world's seed (also seeds the observation noise).
        floor: E_j per validation domain (perplexity).
        amplitude: A_j per validation domain (perplexity).
        exponent: alpha_j per validation domain.
        transfer: T[j][i], how much training domain i's tokens count for validation domain j.
        scale: S, tokens.
    """

    domains: tuple[str, ...]
    seed: int
    floor: tuple[float, ...]
    amplitude: tuple[float, ...]
    exponent: tuple[float, ...]
    transfer: tuple[tuple[float, ...], ...]
    scale: float = TOKEN_SCALE

    # --- the noise-free world ---------------------------------------------------------------------

    def perplexities(self, tokens: Mapping[str, float]) -> dict[str, float]:
        """Noise-free validation perplexity per domain of a model trained on ``tokens`` (domain -> tokens)."""
        return dict(zip(self.domains, self._perplexities(self._vector(tokens)).tolist(), strict=True))

    def objective(self, tokens: Mapping[str, float]) -> float:
        """The true objective: the plain mean of the validation perplexities."""
        return float(self._perplexities(self._vector(tokens)).mean())

    def optimum(self, budget: float, *, starts: str = "all") -> dict[str, float]:
        """The true optimal weights at ``budget`` total tokens (domain -> weight, summing to 1).

        The objective is convex on the simplex; SLSQP from several starts, the best kept, is accurate
        to about 1e-6 in the weights. ``starts="centre"``: from uniform alone (a seventh of the time at
        6 domains; what ``make_hard_world`` screens its candidates with).
        """
        from scipy.optimize import minimize

        if not (math.isfinite(budget) and budget > 0):
            raise ValueError(f"budget must be a positive number of tokens, got {budget!r}")
        m = len(self.domains)
        base = self._objective_w(np.full(m, 1.0 / m), budget)
        points = [np.full(m, 1.0 / m)]
        for i in range(m if starts == "all" else 0):  # one start leaning towards each domain
            w = np.full(m, 0.3 / max(m - 1, 1))
            w[i] = 0.7
            points.append(w / w.sum())
        best_w, best_f = points[0], math.inf
        for w0 in points:
            res = minimize(
                lambda w: self._objective_w(w, budget) / base,
                w0,
                jac=lambda w: self._gradient_w(w, budget) / base,
                method="SLSQP",
                bounds=[(0.0, 1.0)] * m,
                constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(m)}],
                options={"ftol": 1e-15, "maxiter": 1000},
            )
            w = np.clip(res.x, 0.0, None)
            w /= w.sum()
            f = self._objective_w(w, budget)
            if f < best_f:
                best_w, best_f = w, f
        return dict(zip(self.domains, best_w.tolist(), strict=True))

    def gain(self, weights: Mapping[str, float], budget: float) -> float:
        """Relative gain of ``weights`` (normalised to sum to 1) over uniform at ``budget`` tokens:
        1 - objective(weights) / objective(uniform). Positive is better than uniform."""
        w = self._vector(weights)
        if w.sum() <= 0:
            raise ValueError("weights must have a positive sum")
        m = len(self.domains)
        return 1.0 - self._objective_w(w / w.sum(), budget) / self._objective_w(np.full(m, 1.0 / m), budget)

    # --- observations -----------------------------------------------------------------------------

    def observe(
        self, tokens: Mapping[str, float], seed: int, *, run_noise: float = 0.0, seed_noise: float = 0.0,
        common_noise: float = 0.0,
    ) -> dict[str, float]:
        """Perplexity per domain as one training run with ``seed`` would measure it.

        Each perplexity is multiplied by exp(run_noise * z_run + seed_noise * z_seed + common_noise *
        z_common), z ~ N(0, 1): z_run is independent per (run, domain), drawn from the world seed, the run
        seed and the token vector rounded to whole tokens (the same run observed twice gives the same
        numbers); z_seed is per (domain, seed) and shared by every run of that seed; z_common is one draw
        per run shared by all its domains (a run that is luckier everywhere), so that it reaches the
        objective undiminished. ``run_noise=0.03`` is "3% run noise" on each perplexity: the mean of m
        perplexities then moves by about 3% / sqrt(m); ``common_noise=0.03`` moves it by 3%.
        """
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if run_noise < 0 or seed_noise < 0 or common_noise < 0:
            raise ValueError(f"noise levels must be >= 0, got run_noise={run_noise!r}, seed_noise={seed_noise!r}, "
                             f"common_noise={common_noise!r}")
        n = self._vector(tokens)
        z_run, z_seed, z_common = self._draws(n, int(seed))
        ppl = self._perplexities(n) * np.exp(run_noise * z_run + seed_noise * z_seed + common_noise * z_common)
        return dict(zip(self.domains, ppl.tolist(), strict=True))

    def noise(self, tokens: Mapping[str, float] | np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The standard normal draws (z_run, z_seed), one per domain, of a run on ``tokens`` with ``seed``."""
        z_run, z_seed, _ = self._draws(tokens if isinstance(tokens, np.ndarray) else self._vector(tokens), seed)
        return z_run, z_seed

    def _draws(self, n: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
        run_key = ",".join(f"{d}={int(round(v))}" for d, v in zip(self.domains, n, strict=True))
        run_rng = np.random.default_rng([self.seed, seed, _RUN_STREAM, zlib.crc32(run_key.encode())])
        seed_rng = np.random.default_rng([self.seed, seed, _SEED_STREAM])
        m = len(self.domains)
        z_run = run_rng.standard_normal(m)
        return z_run, seed_rng.standard_normal(m), float(run_rng.standard_normal())  # z_common after z_run

    # --- internals --------------------------------------------------------------------------------

    def _vector(self, values: Mapping[str, float]) -> np.ndarray:
        unknown = set(values) - set(self.domains)
        missing = set(self.domains) - set(values)
        if unknown or missing:
            raise ValueError(
                f"expected a value for each of {', '.join(self.domains)};"
                f" unknown {sorted(unknown)}, missing {sorted(missing)}"
            )
        v = np.array([float(values[d]) for d in self.domains])
        if not np.all(np.isfinite(v)) or np.any(v < 0) or v.sum() <= 0:
            raise ValueError(f"values must be finite, >= 0 and not all zero, got {dict(values)!r}")
        return v

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.array(self.floor),
            np.array(self.amplitude),
            np.array(self.exponent),
            np.array(self.transfer),
        )

    def _perplexities(self, n: np.ndarray) -> np.ndarray:
        e, a, alpha, t = self._arrays()
        x = t @ n / self.scale
        return e + a * x ** (-alpha)

    def _objective_w(self, w: np.ndarray, budget: float) -> float:
        return float(self._perplexities(np.clip(w, 0.0, None) * budget).mean())

    def _gradient_w(self, w: np.ndarray, budget: float) -> np.ndarray:
        _, a, alpha, t = self._arrays()
        x = t @ (np.clip(w, 0.0, None) * budget) / self.scale
        dppl_dx = -alpha * a * x ** (-alpha - 1.0)
        return (dppl_dx @ t) * budget / self.scale / len(self.domains)


def make_world(seed: int, domains: Sequence[str] = ("web", "code", "books")) -> World:
    """A random world, reproducible from ``seed``.

    Draws, from a numpy Generator seeded by ``seed``: exponents alpha_j in ``EXPONENTS`` (stratified:
    one per equal slice of the range, in random order, so the domains differ), transfer T[j, i] in
    ``TRANSFER``, floors E_j in ``FLOORS``, the ratio of the largest to the smallest optimal weight at
    ``REFERENCE_BUDGET`` in ``SPREAD`` (weights geometric in between, ranked by exponent), and the
    reducible share in ``REDUCIBLE``. The amplitudes A_j then follow from the KKT conditions, so that
    those weights are exactly the optimum at the reference budget; at other budgets the optimum moves.
    """
    domains = tuple(domains)
    if len(domains) < 2 or len(set(domains)) != len(domains):
        raise ValueError(f"need at least two distinct domains, got {domains!r}")
    m = len(domains)
    rng = np.random.default_rng(seed)
    lo, hi = EXPONENTS
    alpha = lo + (hi - lo) * (rng.permutation(m) + rng.uniform(size=m)) / m
    t = np.eye(m) + (1 - np.eye(m)) * rng.uniform(*TRANSFER, size=(m, m))
    e = rng.uniform(*FLOORS, size=m)
    # optimal weights at the reference: geometric from largest to smallest, the smallest to the domain
    # that saturates fastest (largest alpha), as in the paper, where such data loses share with scale
    spread = rng.uniform(*SPREAD)
    w = np.empty(m)
    w[np.argsort(alpha)] = spread ** (-np.arange(m) / (m - 1))
    w /= w.sum()
    reducible = rng.uniform(*REDUCIBLE)
    return _world_with_optimum(domains, seed, alpha, t, e, w, REFERENCE_BUDGET, reducible)


def _world_with_optimum(domains: tuple[str, ...], seed: int, alpha: np.ndarray, t: np.ndarray, e: np.ndarray,
                        w: np.ndarray, budget: float, reducible: float) -> World:
    """The world whose optimum at ``budget`` is exactly ``w``: the amplitudes follow from the KKT
    conditions, scaled so that the mean reducible perplexity there is ``reducible`` x the mean floor."""
    # KKT at an interior optimum: the gradient over training domains is equal, (g @ T)_i = lam, with
    # g_j = alpha_j * A_j * x_j ** (-alpha_j - 1). So g = lam * T^-T 1, positive for modest transfer.
    m = len(domains)
    x = t @ (w * budget) / TOKEN_SCALE
    c = np.linalg.solve(t.T, np.ones(m))
    if np.any(c <= 0):
        raise ValueError("transfer too large for an interior optimum; narrow TRANSFER")
    shape = c * x ** (alpha + 1.0) / alpha  # A_j up to the common factor lam
    shape *= reducible * e.mean() / np.mean(shape * x ** (-alpha))  # mean reducible = share * mean E
    return World(
        domains=domains,
        seed=int(seed),
        floor=tuple(e.tolist()),
        amplitude=tuple(shape.tolist()),
        exponent=tuple(alpha.tolist()),
        transfer=tuple(tuple(row) for row in t.tolist()),
    )


# --- hard worlds: the mixture barely matters at the search budgets and a lot at the target -------------
HARD_DOMAINS = ("web", "code", "books", "wiki", "papers", "qa")
HARD_SEARCH = (1e6, 4e6)  # the search budgets the hard worlds are built for
HARD_TARGET = 3.2e7  # 8x the larger search budget
HARD_SEARCH_GAIN = 0.02  # at most: the optimum's gain over uniform at each search budget
HARD_TARGET_GAIN = 0.04  # at least: its gain at the target
HARD_EXPONENTS = (0.05, 0.95)
HARD_REDUCIBLE = (5.0, 15.0)  # at the pivot: the mixture matters through the reducible part
HARD_PIVOT = (3e5, 1.5e6)  # tokens; where the optimum is uniform
HARD_MIN_WEIGHT = 0.04  # every optimal weight at the search budgets and the target, above DDO's floor (0.2/6)
_HARD_STREAM = 0x4A7D


@functools.cache  # some 17 rejection draws each (0.06 s); the world is frozen
def make_hard_world(seed: int, domains: Sequence[str] = HARD_DOMAINS) -> World:
    """A world of the kind AutoScale exists for, reproducible from ``seed``.

    The optimum is exactly uniform at a pivot budget drawn in ``HARD_PIVOT`` (below or at the search
    budgets) and moves away from it with scale, since the exponents differ widely (``HARD_EXPONENTS``).
    Candidates are drawn (numpy Generator on ``[seed, _HARD_STREAM]``) until one has: the optimum's gain over
    uniform at most ``HARD_SEARCH_GAIN`` at both ``HARD_SEARCH`` budgets, at least ``HARD_TARGET_GAIN`` at
    ``HARD_TARGET``, and every optimal weight at those budgets at least ``HARD_MIN_WEIGHT``. About one
    candidate in 17 passes with 6 domains (338 for seeds 0-19).
    """
    domains = tuple(domains)
    m = len(domains)
    if m < 2 or len(set(domains)) != m:
        raise ValueError(f"need at least two distinct domains, got {domains!r}")
    rng = np.random.default_rng([seed, _HARD_STREAM])
    lo, hi = HARD_EXPONENTS
    for _ in range(200):
        alpha = lo + (hi - lo) * (rng.permutation(m) + rng.uniform(size=m)) / m
        t = np.eye(m) + (1 - np.eye(m)) * rng.uniform(*TRANSFER, size=(m, m))
        e = rng.uniform(*FLOORS, size=m)
        pivot = math.exp(rng.uniform(*np.log(HARD_PIVOT)))
        world = _world_with_optimum(domains, seed, alpha, t, e, np.full(m, 1.0 / m), pivot,
                                    rng.uniform(*HARD_REDUCIBLE))
        if _is_hard(world):
            return world
    raise ValueError(f"no hard world among 200 candidates for seed {seed} and {m} domains")


def _is_hard(world: World) -> bool:
    for budget in (HARD_TARGET, *HARD_SEARCH):  # the target first: most candidates fail there
        best = world.optimum(budget, starts="centre")
        gain = world.gain(best, budget)
        if min(best.values()) < HARD_MIN_WEIGHT:
            return False
        if gain > HARD_SEARCH_GAIN if budget in HARD_SEARCH else gain < HARD_TARGET_GAIN:
            return False
    return True


def true_metrics(
    world: World, tokens: Mapping[str, float], seed: int, run_noise: float, seed_noise: float,
    common_noise: float = 0.0,
) -> dict:
    """The metrics.json (autoscale schema version 1) of a run on ``tokens`` with ``seed`` in ``world``."""
    ppl = world.observe(tokens, seed, run_noise=run_noise, seed_noise=seed_noise, common_noise=common_noise)
    return {
        "schema_version": 1,
        "status": "completed",
        "diverged_at_step": None,
        "final": {d: {"loss": math.log(p), "perplexity": p} for d, p in ppl.items()},
        "tokens_per_domain": {d: int(round(float(tokens[d]))) for d in world.domains},
        "mixture": {d: float(tokens[d]) for d in world.domains},
        "simworld": {
            "world_seed": world.seed,
            "seed": seed,
            "run_noise": run_noise,
            "seed_noise": seed_noise,
            **({"common_noise": common_noise} if common_noise else {}),
        },
    }
