"""DDO's JSON record and its check that a design kept enough runs to fit (pure; no files)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from autoscale.ddo.fit import DDOResult


def ddo_record(result: DDOResult, budget: float) -> dict[str, Any]:
    """A DDOResult as a JSON-able record (numpy values left to the writer): fits in relative amounts
    (x) and normalised objectives (y)."""
    fits = {}
    for d, f in result.fits.items():
        fits[d] = {k: getattr(f, k) for k in ("a", "b", "c", "x", "y", "residuals", "r2", "exact")}
    return {
        "budget": budget,
        "mixture": result.mixture.to_dict(),
        "fits": fits,
        "bounded": dict(result.bounded),
        "predicted_objective": result.predicted_objective,
        "base_objective": result.base_objective,
        "intervals": {d: list(v) for d, v in (result.intervals or {}).items()},
        "held": dict(result.held),
        "noise": result.mixture.metadata.get("noise"),
        "predicted_gain": result.gain,
        "predicted_gain_se": result.gain_se,
        "bootstrap_draws": result.mixture.metadata.get("bootstrap_draws"),
        "warnings": list(result.warnings),
    }


def domains_short_of_points(tokens: np.ndarray, runs: Sequence[str], domains: Sequence[str],
                            ok: Sequence[int]) -> list[str]:
    """Domains that keep fewer than 3 completed runs among the base and their own perturbations.

    A planned row belongs to domain j when it differs from the base row in column j only.
    """
    base = runs.index("base") if "base" in runs else 0
    short = []
    for j, d in enumerate(domains):
        mine = [i for i in range(len(runs))
                if i == base or (tokens[i, j] != tokens[base, j] and np.all(np.delete(tokens[i] == tokens[base], j)))]
        if base not in ok or sum(i in ok for i in mine) < 3:
            short.append(d)
    return short
