"""AutoScale: extrapolate optimal mixtures from affordable budgets to a larger one.

If the loss is a separable sum of per-domain power laws, KKT makes every log N_i* affine in one
common parameter, so with optimal token amounts A (smaller budget) and B (larger budget)

    N_i(s) = A_i * (B_i / A_i)^s        (tokens, element-wise; s = 0 gives A, s = 1 gives B)

and the paper's rule N_i = B_i^2 / A_i is s = 2. ``steps=K`` applies the rule K times (s = K + 1);
``target=T`` solves sum_i N_i(s) = T for s (any real s: interpolation too). The new budget and
weights follow from the tokens.

Three or more mixtures: log N_ij = alpha_i + beta_i t_j with one scale parameter t_j per input
mixture shared by all domains, fitted by least squares (the leading singular vector of the centred
log-token matrix), normalised so t = 0 at the smallest budget and 1 at the largest. With two
mixtures this is exactly the formula above. ``steps=K`` then moves K mean input spacings beyond the
largest input: s = 1 + K / (k - 1).

Offsets (``offsets=True``): the DDO model is (n + a)^(-b), for which the exact geometric law holds
for N_i + N_i^0 with N_i^0 = a_i x base tokens (the "equivalent data size"), not for N_i. The
variant applies the law to N_i + o_i and subtracts o_i afterwards, with o_i the mean over the
inputs of ``offset_tokens`` that ``fit --json`` stores. The default (no offsets) is the paper's rule.

Held domains (``hold``): DDO holds a domain at its base share when its effects do not stand out from
the noise (``ddo.noise``). Such a domain keeps that weight at the target, and the law runs on the
free domains alone over the rest of the budget (their shares of each input are then consistent).

Uncertainty (``extrapolate_draws``): the k-th bootstrap draw of every input mixture (the same seeds
resampled at every budget) is extrapolated with the same settings; percentiles of the results are
the interval on each target weight.

Floors (``min_weight``) and caps (``max_tokens``) apply only when asked. They are met by
re-allocating at the target, not by clipping and renormalising: the law is the KKT path of an
implied separable convex model (domain i's marginal gain falls as its tokens grow along the path),
so bounded domains are pinned and the free ones move together along the law to a new s' where
sum_i clip(N_i(s'), lo_i, hi_i) = target. For a separable power-law world this is the exact
bounded optimum at the target; free domains keep the law's relative trends, not its proportions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
from scipy.optimize import brentq
from scipy.special import logsumexp

from autoscale.ddo.allocate import bracket_root, caps_in_tokens
from autoscale.errors import AutoscaleError
from autoscale.mixture import Mixture


@dataclass(frozen=True, eq=False)
class Extrapolation:
    """The extrapolated mixture and how it was obtained.

    Attributes:
        mixture: tokens per domain at the target (bounds applied when asked).
        s: the law's scale parameter at the target (0: smallest input, 1: largest input).
        warnings: one line each.
        method: how the law was built, in words (two-point law or least-squares line).
        law: the law's tokens at s before any floor or cap.
        scale: s of each input mixture, in budget order.
        alpha, beta: domain -> log-law coefficients: log(N_i + o_i) = alpha_i + beta_i * s.
        offsets: domain -> o_i tokens added before applying the law (all 0 by default).
        rms: root-mean-square residual of the log-law over the inputs (3+ mixtures), else None.
        bounded: domain -> "floor" | "cap" for domains the bounds stopped.
        held: domain -> weight kept fixed at the target (``hold``).
    """

    mixture: Mixture
    s: float
    warnings: list[str]
    method: str
    law: Mixture | None = None
    scale: tuple[float, ...] = ()
    alpha: dict[str, float] = field(default_factory=dict)
    beta: dict[str, float] = field(default_factory=dict)
    offsets: dict[str, float] = field(default_factory=dict)
    rms: float | None = None
    bounded: dict[str, str] = field(default_factory=dict)
    held: dict[str, float] = field(default_factory=dict)


def extrapolate(
    mixtures: Sequence[Mixture],
    *,
    target: float | None = None,
    steps: int | None = None,
    min_weight: float | None = None,
    max_tokens: Mapping[str, float] | None = None,
    offsets: bool = False,
    hold: Mapping[str, float] | None = None,
) -> Extrapolation:
    """Extrapolate optimal mixtures (two or more budgets) to ``target`` tokens or ``steps`` steps.

    Args:
        mixtures: optimal mixtures at different budgets, same domains (any order: sorted by budget).
        target: total tokens wanted (> 0); exclusive with ``steps``.
        steps: apply the paper's rule this many times (>= 1); exclusive with ``target``.
        min_weight: floor on every domain's weight at the target (applied only when given).
        max_tokens: domain -> cap in tokens at the target (applied only when given).
        offsets: apply the law to tokens + DDO offsets (see the module docstring).
        hold: domain -> weight it keeps at the target; the law moves the other domains.

    A ``target`` below the smallest input budget is an error: the law is fitted from the inputs
    upward (interpolation between them is fine, extrapolation down is not what it is for).
    """
    if target is not None and len(mixtures) >= 2 and float(target) > 0:  # other bad targets: below
        smallest = min(mx.budget for mx in mixtures)
        if float(target) < smallest * (1 - 1e-12):
            budgets = ", ".join(f"{mx.budget:.4g}" for mx in sorted(mixtures, key=lambda mx: mx.budget))
            raise AutoscaleError(
                f"target {float(target):.4g} tokens is below the smallest input budget (inputs: {budgets} tokens); "
                "the law extrapolates upward from them (a target between them is allowed)"
            )
    return _extrapolate(mixtures, target=target, steps=steps, min_weight=min_weight, max_tokens=max_tokens,
                        offsets=offsets, hold=hold)


def _extrapolate(mixtures: Sequence[Mixture], *, target: float | None, steps: int | None,
                 min_weight: float | None, max_tokens: Mapping[str, float] | None, offsets: bool,
                 hold: Mapping[str, float] | None) -> Extrapolation:
    """:func:`extrapolate` without the check of ``target`` against the inputs' budgets: the held-domain
    path calls it on the free domains' tokens, whose smallest total need not be below the target's share."""
    if hold:
        return _extrapolate_held(mixtures, dict(hold), target=target, steps=steps, min_weight=min_weight,
                                 max_tokens=max_tokens, offsets=offsets)
    ordered, tokens = _inputs(mixtures, target, steps)
    domains, budgets = ordered[0].domains, [mx.budget for mx in ordered]
    offset = _offsets(ordered, domains) if offsets else np.zeros(len(domains))
    law = _Law.fit(tokens, offset, offsets, budgets, domains)
    if steps is not None:
        s = 1.0 + int(steps) / (len(ordered) - 1)
    else:
        s = _solve_target(law.alpha, law.beta, float(target) + float(offset.sum()))
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is the error below, not a warning
        unconstrained = law(s)
        law_total = float(np.sum(unconstrained))
    if not math.isfinite(law_total):
        raise AutoscaleError(f"the law's mixture at s = {s:.4g} overflows: a mixture's total must be finite "
                             f"(inputs: {', '.join(f'{b:.4g}' for b in budgets)} tokens)")
    total = law_total if target is None else float(target)
    warnings = _bound_history(ordered, domains)
    lo, hi = _bounds(domains, total, min_weight, max_tokens)
    warnings += _law_warnings(domains, unconstrained, total, lo, hi, min_weight)
    final, bounded = unconstrained, {}
    if np.any(unconstrained < lo) or np.any(unconstrained > hi):
        final, bounded = _within_bounds(law, s, total, lo, hi, domains)

    metadata = {
        "method": "autoscale",
        "law": law.method,
        "s": s,
        "scale": law.scale.tolist(),
        "input_budgets": budgets,
        "offsets": bool(offsets),
        "bounded": bounded,
    }
    if bounded:
        metadata["law_tokens"] = dict(zip(domains, unconstrained.tolist(), strict=True))
    if warnings:
        metadata["warnings"] = list(warnings)
    return Extrapolation(
        mixture=Mixture(dict(zip(domains, final.tolist(), strict=True)), metadata),
        s=float(s),
        warnings=warnings,
        method=law.method,
        law=Mixture(dict(zip(domains, np.maximum(unconstrained, 0).tolist(), strict=True))),
        scale=tuple(law.scale.tolist()),
        alpha=dict(zip(domains, law.alpha.tolist(), strict=True)),
        beta=dict(zip(domains, law.beta.tolist(), strict=True)),
        offsets=dict(zip(domains, offset.tolist(), strict=True)),
        rms=law.rms,
        bounded=bounded,
    )


def _inputs(mixtures: Sequence[Mixture], target: float | None, steps: int | None) -> tuple[list[Mixture], np.ndarray]:
    """The input mixtures in budget order and their ``[k, m]`` tokens, checked with the target or steps."""
    if len(mixtures) < 2:
        raise AutoscaleError(f"extrapolation needs at least two mixtures at different budgets, got {len(mixtures)}")
    if (target is None) == (steps is None):
        raise AutoscaleError("give exactly one of a target budget (tokens) or a number of steps")
    if target is not None and (not math.isfinite(float(target)) or float(target) <= 0):
        raise AutoscaleError(f"target must be a positive number of tokens, got {float(target):g}")
    if steps is not None and (isinstance(steps, bool) or int(steps) != steps or steps < 1):
        raise AutoscaleError(f"steps must be a whole number >= 1, got {steps!r}")
    domains = mixtures[0].domains
    for k, mx in enumerate(mixtures[1:], 2):
        if set(mx.domains) != set(domains):
            missing = sorted(set(domains) - set(mx.domains))
            extra = sorted(set(mx.domains) - set(domains))
            raise AutoscaleError(
                f"mixture {k} has different domains from mixture 1 (missing: {', '.join(missing) or '-'}; "
                f"extra: {', '.join(extra) or '-'})"
            )
    ordered = sorted(mixtures, key=lambda mx: mx.budget)
    for b1, b2 in pairwise(mx.budget for mx in ordered):
        if b2 <= b1 * (1 + 1e-12):
            raise AutoscaleError(f"two mixtures have the same budget ({b1:.6g} tokens); the law needs different budgets")
    return ordered, np.array([[mx.tokens[d] for d in domains] for mx in ordered])


@dataclass(frozen=True)
class _Law:
    """log(N_i(s) + o_i) = alpha_i + beta_i s, fitted on the inputs' tokens (``tokens``, in budget order)."""

    tokens: np.ndarray
    offset: np.ndarray
    scale: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    rms: float | None
    method: str
    with_offsets: bool  # DDO's offsets asked for (even if all 0)

    @classmethod
    def fit(cls, tokens: np.ndarray, offset: np.ndarray, with_offsets: bool, budgets: list[float],
            domains: tuple[str, ...]) -> _Law:
        shifted = tokens + offset
        bad = np.argwhere(shifted <= 0)
        if bad.size:
            k, i = bad[0]
            what = "tokens + offset" if with_offsets else "tokens"
            raise AutoscaleError(f"domain {domains[i]!r} has {what} <= 0 in the {budgets[k]:.4g}-token mixture; "
                                 "the law needs positive amounts")
        log_n = np.log(shifted)
        if len(tokens) == 2:
            scale, alpha, beta, rms = np.array([0.0, 1.0]), log_n[0], log_n[1] - log_n[0], None
            method = "two-point law N_i(s) = A_i (B_i / A_i)^s"
        else:
            scale, alpha, beta, rms = _fit_line(log_n)
            method = (f"least-squares line of log tokens in one shared scale parameter over {len(tokens)} mixtures "
                      f"(rms {rms:.3g} in log tokens)")
        if with_offsets:
            method += ", applied to tokens + DDO offsets"
        return cls(tokens, offset, scale, alpha, beta, rms, method, with_offsets)

    def __call__(self, s: float) -> np.ndarray:
        if len(self.tokens) == 2 and not self.with_offsets:
            return self.tokens[0] * (self.tokens[1] / self.tokens[0]) ** s  # the paper's arithmetic: s = 2 is B^2 / A
        return np.exp(self.alpha + self.beta * s) - self.offset


def _bounds(domains: tuple[str, ...], total: float, min_weight: float | None,
            max_tokens: Mapping[str, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """Floors and caps in tokens at the target, checked to leave a mixture of ``total`` tokens."""
    lo = np.zeros(len(domains))  # tokens cannot be negative (only reachable with offsets)
    if min_weight is not None:
        min_weight = float(min_weight)
        if not math.isfinite(min_weight) or not 0 <= min_weight < 1:
            raise AutoscaleError(f"min_weight must be in [0, 1), got {min_weight!r}")
        lo[:] = min_weight * total
    hi = caps_in_tokens(max_tokens, domains)
    if lo.sum() > total * (1 + 1e-12):
        raise AutoscaleError(f"infeasible bounds: the floors need {lo.sum():.6g} tokens, above the target {total:.6g}")
    if hi.sum() < total * (1 - 1e-12):
        raise AutoscaleError(f"infeasible bounds: the caps allow {hi.sum():.6g} tokens, below the target {total:.6g}")
    return np.minimum(lo, hi), hi


def _law_warnings(domains: tuple[str, ...], tokens: np.ndarray, total: float, lo: np.ndarray, hi: np.ndarray,
                  min_weight: float | None) -> list[str]:
    """One line per domain whose law amount crosses a bound."""
    warnings = []
    for i, d in enumerate(domains):
        if tokens[i] > hi[i]:
            warnings.append(f"domain {d!r}: the law asks for {tokens[i]:.4g} tokens, above its cap of {hi[i]:.4g}")
        elif tokens[i] < 0:
            warnings.append(f"domain {d!r}: the offset law gives it a negative amount; it is held at 0")
        elif min_weight is not None and tokens[i] < lo[i]:
            warnings.append(f"domain {d!r}: the law gives it weight {tokens[i] / total:.4g}, below the floor {min_weight:g}")
    return warnings


def _within_bounds(law: _Law, s: float, total: float, lo: np.ndarray, hi: np.ndarray,
                   domains: tuple[str, ...]) -> tuple[np.ndarray, dict[str, str]]:
    """The law's mixture moved along s until, with bounded domains clipped, it holds ``total`` tokens."""
    raw = law(_reallocate(law, s, total, lo, hi))
    at_floor, at_cap = raw <= lo, (raw >= hi) & (raw > lo)
    final = np.clip(raw, lo, hi)
    free = ~(at_floor | at_cap)
    if free.any():  # the root leaves a relative 1e-15 drift: give it to the free domains
        final[free] *= 1 + (total - final.sum()) / final[free].sum()
    return final, {d: "floor" if at_floor[i] else "cap" for i, d in enumerate(domains) if at_floor[i] or at_cap[i]}


def held_weights(mixtures: Sequence[Mixture]) -> dict[str, float] | None:
    """The ``hold`` for ``extrapolate``: domains DDO held at their base share in any input mixture
    (metadata ``held``, written by ``fit_ddo``), with that share from the largest budget; None if none."""
    held: dict[str, float] = {}
    for mx in sorted(mixtures, key=lambda m: m.budget):
        value = mx.metadata.get("held")
        if isinstance(value, Mapping):
            held.update({str(d): w for d, w in value.items()})
    return held or None


def _extrapolate_held(mixtures: Sequence[Mixture], hold: dict[str, float], *, target, steps, min_weight,
                      max_tokens, offsets) -> Extrapolation:
    """The law on the free domains over the budget left by the held ones (see the module docstring)."""
    if not mixtures:
        raise AutoscaleError("extrapolation needs at least two mixtures at different budgets, got 0")
    domains = mixtures[0].domains
    unknown = [d for d in hold if d not in domains]
    if unknown:
        raise AutoscaleError(f"hold: unknown domain {unknown[0]!r} (domains: {', '.join(domains)})")
    for d, w in hold.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w < 1:
            raise AutoscaleError(f"hold: weight of {d!r} must be a number in (0, 1), got {w!r}")
    share = float(sum(hold.values()))
    free = [d for d in domains if d not in hold]
    if share >= 1 or not free:
        # nothing left for the law to move: the held weights are the answer
        total = target if target is not None else _steps_budget(mixtures, steps)
        weights = {d: hold.get(d, 0.0) for d in domains}
        mixture = Mixture.from_weights(weights, total)
        note = "every domain is held at its base share"
        return Extrapolation(Mixture(mixture.tokens, {"method": "autoscale", "law": note, "held": hold}), math.nan,
                             [note], note, held=dict(hold))

    def sub(mx: Mixture) -> Mixture:
        meta = dict(mx.metadata)
        if isinstance(meta.get("offset_tokens"), Mapping):
            meta["offset_tokens"] = {d: v for d, v in meta["offset_tokens"].items() if d in free}
        return Mixture({d: mx.tokens[d] for d in free}, meta)

    inner = _extrapolate(
        [sub(mx) for mx in mixtures],
        target=None if target is None else float(target) * (1 - share),
        steps=steps,
        min_weight=None if min_weight is None else float(min_weight) / (1 - share),
        max_tokens=None if max_tokens is None else {d: v for d, v in max_tokens.items() if d in free},
        offsets=offsets,
        hold=None,
    )
    total = inner.mixture.budget / (1 - share)
    tokens = {d: (hold[d] * total if d in hold else inner.mixture.tokens[d]) for d in domains}
    method = inner.method + f"; {', '.join(hold)} held at {share:.4g} of the budget"
    metadata = dict(inner.mixture.metadata) | {"law": method, "held": dict(hold)}
    return Extrapolation(
        mixture=Mixture(tokens, metadata), s=inner.s, warnings=inner.warnings, method=method,
        law=None if inner.law is None else Mixture({d: (hold[d] * total if d in hold else inner.law.tokens[d])
                                                    for d in domains}),
        scale=inner.scale, alpha=inner.alpha, beta=inner.beta, offsets=inner.offsets, rms=inner.rms,
        bounded=inner.bounded, held=dict(hold),
    )


def _steps_budget(mixtures: Sequence[Mixture], steps: int | None) -> float:
    """The paper's rule applied to the budgets alone: B (B / A)^steps for the two largest."""
    budgets = sorted(mx.budget for mx in mixtures)
    a, b = budgets[-2], budgets[-1]
    return b * (b / a) ** (steps or 1)


def extrapolate_draws(mixtures: Sequence[Mixture], draws: Sequence[np.ndarray], *, interval=(2.5, 97.5),
                      **options) -> tuple[np.ndarray, dict[str, tuple[float, float]]]:
    """Extrapolate paired bootstrap draws: the k-th weights of every input, with ``options``.

    Args:
        mixtures: the input mixtures (their budgets and domains).
        draws: per input, ``[B, m]`` weights in its domain order (NaN rows: failed resamples).
        interval: percentiles of the reported interval.
        options: as for ``extrapolate`` (target, steps, bounds, hold).
    Returns:
        ``[B', m]`` target weights of the draws that extrapolated, and domain -> (low, high).
    """
    if len(draws) != len(mixtures):
        raise AutoscaleError("extrapolate_draws: one array of draws per input mixture")
    count = min(len(d) for d in draws)
    domains = mixtures[0].domains
    out = []
    for k in range(count):
        rows = [np.asarray(d[k], dtype=float) for d in draws]
        if any(np.isnan(r).any() for r in rows):
            continue
        inputs = [Mixture.from_weights(dict(zip(mx.domains, r.tolist(), strict=True)), mx.budget)
                  for mx, r in zip(mixtures, rows, strict=True)]
        try:
            ex = extrapolate(inputs, **options)
        except AutoscaleError:
            continue  # e.g. a draw with a zero weight: the law needs positive amounts
        out.append([ex.mixture.weights[d] for d in domains])
    if not out:
        raise AutoscaleError("no bootstrap draw could be extrapolated")
    result = np.array(out)
    low, high = np.percentile(result, interval, axis=0)
    return result, {d: (float(lo), float(hi)) for d, lo, hi in zip(domains, low, high, strict=True)}


def _offsets(mixtures: Sequence[Mixture], domains: tuple[str, ...]) -> np.ndarray:
    rows = []
    for mx in mixtures:
        stored = mx.metadata.get("offset_tokens")
        if not isinstance(stored, Mapping) or set(stored) != set(domains):
            raise AutoscaleError(
                f"offsets need 'offset_tokens' for every domain in each mixture (written by `autoscale fit --json`); "
                f"the {mx.budget:.4g}-token mixture has none"
            )
        values = [stored[d] for d in domains]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise AutoscaleError(f"offset_tokens of the {mx.budget:.4g}-token mixture must be finite numbers")
        rows.append(values)
    return np.mean(np.array(rows, dtype=float), axis=0)


def _fit_line(log_n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Least-squares log N_ij = alpha_i + beta_i t_j with a shared t (t = 0 first, 1 last)."""
    centred = log_n - log_n.mean(axis=0)
    u, _, _ = np.linalg.svd(centred, full_matrices=False)
    t = u[:, 0]
    if abs(t[-1] - t[0]) < 1e-12 * max(1.0, float(np.abs(t).max())):
        raise AutoscaleError("the mixtures do not change between the smallest and largest budget; no law to fit")
    t = (t - t[0]) / (t[-1] - t[0])
    tc = t - t.mean()
    beta = tc @ centred / (tc @ tc)
    alpha = log_n.mean(axis=0) - beta * t.mean()
    rms = float(np.sqrt(np.mean((log_n - alpha - np.outer(t, beta)) ** 2)))
    return t, alpha, beta, rms


def _solve_target(alpha: np.ndarray, beta: np.ndarray, goal: float) -> float:
    """s with sum_i exp(alpha_i + beta_i s) = goal, on the branch where the total grows with s.

    log-total F(s) is convex; budgets grow from s = 0 to s = 1, so F increases at s = 1 and the
    growing branch is s > s*, the minimiser of F (-inf when no domain shrinks).
    """
    if goal <= 0:
        raise AutoscaleError("target is below what the offset law can reach (its offsets sum above it)")
    log_goal = math.log(goal)

    def f(s: float) -> float:
        return float(logsumexp(alpha + beta * s)) - log_goal

    def slope(s: float) -> float:
        w = np.exp(alpha + beta * s - logsumexp(alpha + beta * s))
        return float(w @ beta)

    if slope(1.0) <= 0:
        raise AutoscaleError("the fitted law does not grow with the budget; it cannot reach a target")
    if np.any(beta < 0):
        lo, hi = bracket_root(slope, 1.0, decreasing=False, what="law's smallest total")
        s_min = brentq(slope, lo, hi, xtol=1e-14)
        floor = f(s_min) + log_goal
        if f(s_min) >= 0:
            raise AutoscaleError(
                f"target {goal:.6g} tokens is below the smallest budget the law reaches ({math.exp(floor):.6g} tokens)"
            )
        if f(1.0) >= 0:
            return brentq(f, s_min, 1.0, xtol=1e-14, rtol=1e-15)
    else:
        zero = beta == 0
        reachable = float(np.exp(logsumexp(alpha[zero]))) if zero.any() else 0.0
        if goal <= reachable:
            raise AutoscaleError(
                f"target {goal:.6g} tokens is not above {reachable:.6g}, the amount of the domains the law holds fixed"
            )
    lo, hi = bracket_root(f, 1.0, decreasing=False, limit=200, what="law's scale for the target")
    return brentq(f, lo, hi, xtol=1e-14, rtol=1e-15)


def _reallocate(law, s: float, total: float, lo: np.ndarray, hi: np.ndarray) -> float:
    """s' nearest s where the bounded amounts along the law sum to ``total``."""

    def gap(t: float) -> float:
        return float(np.clip(law(t), lo, hi).sum()) - total

    g0 = gap(s)
    if g0 == 0:
        return s
    step = 1e-3 * max(1.0, abs(s))
    prev = {1: s, -1: s}
    for _ in range(80):
        for side in (1, -1):
            t = s + side * step
            if (gap(t) > 0) != (g0 > 0):
                a, b = sorted((prev[side], t))
                return brentq(gap, a, b, xtol=1e-14, rtol=1e-15)
            prev[side] = t
        step *= 2
    raise AutoscaleError("cannot meet the floors and caps along the law at this target")


def _bound_history(mixtures: Sequence[Mixture], domains: tuple[str, ...]) -> list[str]:
    """Warnings for domains that sat at a floor or cap at some input budgets but not at others."""
    out = []
    states = []
    for mx in mixtures:
        bounded = mx.metadata.get("bounded")
        states.append(bounded if isinstance(bounded, Mapping) else {})
    for d in domains:
        for kind in ("floor", "cap"):
            at = [mx.budget for mx, st in zip(mixtures, states, strict=True) if st.get(d) == kind]
            not_at = [mx.budget for mx, st in zip(mixtures, states, strict=True) if st.get(d) != kind]
            if at and not_at:
                out.append(
                    f"domain {d!r} sat at its {kind} at {at[0]:.4g} tokens but not at {not_at[0]:.4g}; "
                    "its extrapolated trend is unreliable"
                )
    return out
