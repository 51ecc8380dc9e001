"""The DDO design: a base run plus one-domain perturbations.

For each domain and each ratio r, one run trains on r times the base amount of that domain and the
base amount of every other domain (so the total changes: the other domains are held fixed, which is
what the per-domain response y_i(x) measures). With R ratios there are 1 + R*m runs, and K
replicates train the whole design K times with seeds seed, seed+1, ... (the ``seed`` column):
replicates make the noise measurable and, trained coupled, let effects be paired within a seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from autoscale.ddo.runs import RunsTable
from autoscale.domains import check_mixture_domains
from autoscale.errors import AutoscaleError
from autoscale.mixture import Mixture

PUBLISHED_RATIOS = (0.2, 3.0)


def plan_ddo(
    domains: Sequence[str] | None = None,
    budget: float | None = None,
    base: Mixture | None = None,
    ratios: Sequence[float] = PUBLISHED_RATIOS,
    eval_names: Sequence[str] = (),
    replicates: int = 1,
    seed: int = 0,
) -> RunsTable:
    """The runs table of a DDO design, with empty eval cells to fill in.

    Args:
        domains: training domains, at least 2 (``autoscale.domains``). Optional with ``base`` (then
            its domains, in its order).
        budget: total tokens of the base run. Default: the base mixture's budget; required without one.
        base: base mixture (tokens or weights that matter); default uniform over ``domains``.
        ratios: multipliers of one domain's base amount (> 0, != 1, distinct); published: 0.2 and 3.
        eval_names: validation sets, one ``eval.<name>`` column each; default one per domain.
        replicates: K >= 1 copies of the design, seeds ``seed .. seed + K - 1``.
        seed: the first replicate's seed.
    Returns:
        ``RunsTable`` with runs ``base`` and ``<domain>-x<ratio>`` for each seed (seed-major order);
        tokens rounded to whole tokens.
    """
    if isinstance(replicates, bool) or not isinstance(replicates, (int, np.integer)) or replicates < 1:
        raise AutoscaleError(f"replicates must be an integer >= 1, got {replicates!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise AutoscaleError(f"seed must be an integer, got {seed!r}")
    if base is None:
        if not domains:
            raise AutoscaleError("plan needs the domains (or a base mixture)")
        if budget is None:
            raise AutoscaleError("plan needs a budget in tokens (or a base mixture)")
        names = _unique(domains)
        base = Mixture.from_weights({d: 1.0 for d in names}, _budget(budget))
    else:
        names = _unique(base.domains if not domains else domains)
        if set(names) != set(base.domains):
            raise AutoscaleError(
                f"domains {', '.join(names)} differ from the base mixture's {', '.join(base.domains)}"
            )
        if budget is not None:
            base = base.scaled_to(_budget(budget))
    exact = np.array([base.tokens[d] for d in names], dtype=float)
    base_tokens = np.round(exact)
    for d, n in zip(names, base_tokens, strict=True):
        if n <= 0:
            raise AutoscaleError(f"the base run gives domain {d!r} no tokens; DDO scales each domain's base amount")

    labels = []
    for r in ratios:
        r = float(r)
        if not math.isfinite(r) or r <= 0 or r == 1:
            raise AutoscaleError(f"ratios must be positive numbers other than 1, got {r!r}")
        labels.append((r, f"{r:g}"))
    if len({label for _, label in labels}) != len(labels):
        raise AutoscaleError(f"ratios must be distinct, got {', '.join(label for _, label in labels)}")
    if len(labels) < 2:  # with the base, two ratios give each domain the 3 amounts a fit needs
        raise AutoscaleError(f"ratios: {len(labels)} given; a fit needs at least 2 (with the base run, 3 amounts "
                             "per domain)")

    runs, tokens = ["base"], [base_tokens]
    for r, label in labels:
        for i, d in enumerate(names):
            row = base_tokens.copy()
            amount = float(exact[i]) * r  # Python floats: an overflow is inf, not a numpy warning
            if not math.isfinite(sum(row.tolist()) - float(row[i]) + amount):
                raise AutoscaleError(
                    f"run {d}-x{label} (base run of {base.budget:.4g} tokens, {d!r} x{label}) overflows: "
                    "a mixture's total must be finite; use a smaller budget"
                )
            row[i] = round(amount)
            runs.append(f"{d}-x{label}")
            tokens.append(row)
    evals = tuple(eval_names) if eval_names else names
    k = int(replicates)
    seeds = np.repeat(np.arange(int(seed), int(seed) + k), len(runs))
    return RunsTable(tuple(runs) * k, names, np.tile(np.array(tokens), (k, 1)), evals,
                     np.full((len(runs) * k, len(evals)), np.nan), seeds)


def design_tokens(m: int, ratios: Sequence[float] = PUBLISHED_RATIOS) -> float:
    """Training tokens of one replicate of the design of ``m`` domains, in units of the base budget N.

    The run that scales domain i by r trains 1 + (r - 1) w_i; summed over the domains that is
    m + r - 1 whatever the base weights, so the design costs 1 + sum_r (m + r - 1): 2m + 2.2 with
    the published ratios.
    """
    return 1.0 + sum(m + float(r) - 1.0 for r in ratios)


def _unique(domains: Sequence[str]) -> tuple[str, ...]:
    return check_mixture_domains(domains)


def _budget(budget: float) -> float:
    value = float(budget)
    if not math.isfinite(value) or value <= 0:
        raise AutoscaleError(f"budget must be a positive number of tokens, got {budget!r}")
    return value
