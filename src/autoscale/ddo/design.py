"""The DDO design found in a runs table: the base run, each domain's perturbations, the replicates.

Pure: a runs table in, row indices out. Shared by the fit (``fit``) and the noise study (``noise``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autoscale.ddo.runs import RunsTable
from autoscale.errors import AutoscaleError


@dataclass(frozen=True, eq=False)
class Design:
    base_tokens: np.ndarray  # [m] tokens
    base_rows: np.ndarray  # row indices of the base run and its replicates
    groups: list[np.ndarray]  # row indices per distinct token vector (design point)
    domain_groups: list[np.ndarray]  # per domain: group ids of its points (base included)
    group_of: np.ndarray  # [n_runs] group id
    x: np.ndarray  # [n_runs, m] relative amounts


    @property
    def base_group(self) -> int:
        return int(self.group_of[self.base_rows[0]])


def find_design(table: RunsTable) -> Design:
    """Locate the base run and each domain's perturbations."""
    tokens = table.tokens
    points, first, group_of = np.unique(tokens, axis=0, return_index=True, return_inverse=True)
    group_of = group_of.ravel()
    changed = (points[:, None, :] != points[None, :, :]).sum(axis=2)  # [g, g] domains that differ
    offending = (changed >= 2).sum(axis=1)
    compatible = (changed == 1).sum(axis=1)
    named_base = np.array([any(table.runs[r] == "base" for r in np.flatnonzero(group_of == g))
                           for g in range(len(points))])
    # fewest runs that change two domains; then most perturbations; then a run named "base"; then first
    order = sorted(range(len(points)), key=lambda g: (offending[g], -compatible[g], not named_base[g], first[g]))
    base = order[0]
    base_name = table.runs[first[base]]
    if offending[base]:
        if offending[base] >= compatible[base]:
            raise AutoscaleError("no base run: no run differs from every other run in at most one domain")
        bad = next(g for g in np.argsort(first) if changed[base, g] >= 2)
        which = [d for d, u, v in zip(table.domains, points[bad], points[base], strict=True) if u != v]
        raise AutoscaleError(
            f"run {table.runs[first[bad]]!r} changes {len(which)} domains ({', '.join(which)}) relative to the "
            f"base run {base_name!r}; a DDO perturbation changes exactly one"
        )
    base_tokens = points[base]
    for d, n in zip(table.domains, base_tokens, strict=True):
        if n <= 0:
            raise AutoscaleError(f"the base run {base_name!r} has no tokens of domain {d!r}; amounts are relative to it")
    domain_groups = []
    for j, d in enumerate(table.domains):
        members = [g for g in range(len(points)) if g == base or (changed[base, g] == 1 and points[g, j] != base_tokens[j])]
        if len(members) < 3:
            raise AutoscaleError(
                f"domain {d!r} has {len(members)} distinct token amounts (base included); the fit needs at least 3"
            )
        domain_groups.append(np.array(members))
    groups = [np.flatnonzero(group_of == g) for g in range(len(points))]
    return Design(base_tokens, groups[base], groups, domain_groups, group_of, tokens / base_tokens)
