"""autoscale: scale-aware data mixing for LLM pre-training (AutoScale, arXiv 2407.20177).

The Python API mirrors the CLI and is pure numpy/scipy (no torch is imported here):

    from autoscale import RunsTable, fit_ddo, extrapolate
    ddo_small = fit_ddo(RunsTable.read_csv("runs_0.3B.csv")).mixture
    ddo_large = fit_ddo(RunsTable.read_csv("runs_1.2B.csv")).mixture
    target = extrapolate([ddo_small, ddo_large], target=10e9).mixture

`fit_ddo` fits one budget on its own. `autoscale run` fits its budgets with `fit_ddo_budgets`, which
holds a domain at every budget once it is held at one (so that the optima extrapolate on the same
free domains); use it for the pipeline's answer from your own tables:

    from autoscale import fit_ddo_budgets
    results = fit_ddo_budgets({0.3e9: RunsTable.read_csv("runs_0.3B.csv"),
                               1.2e9: RunsTable.read_csv("runs_1.2B.csv")})
    target = extrapolate([r.mixture for r in results.values()], target=10e9).mixture
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autoscale.ddo.allocate import Allocation, allocate
    from autoscale.ddo.fit import DDOResult, fit_ddo, fit_ddo_budgets
    from autoscale.ddo.plan import plan_ddo
    from autoscale.ddo.runs import RunsTable
    from autoscale.errors import AutoscaleError
    from autoscale.extrapolate import Extrapolation, extrapolate
    from autoscale.mixture import Mixture

# Imported on first use: a trainer that imports only `autoscale.data` (one process per run) should
# not pay for scipy's import (about 1.5 s a process here).
_HOME = {
    "Allocation": "autoscale.ddo.allocate", "allocate": "autoscale.ddo.allocate",
    "DDOResult": "autoscale.ddo.fit", "fit_ddo": "autoscale.ddo.fit", "fit_ddo_budgets": "autoscale.ddo.fit",
    "plan_ddo": "autoscale.ddo.plan", "RunsTable": "autoscale.ddo.runs", "AutoscaleError": "autoscale.errors",
    "Extrapolation": "autoscale.extrapolate", "extrapolate": "autoscale.extrapolate", "Mixture": "autoscale.mixture",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'autoscale' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        # Importing the submodule `autoscale.extrapolate` binds it to the package's name
        # `extrapolate`, which is the function of the same name, whatever was imported first.
        if isinstance(value, types.ModuleType) and _HOME.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])


__all__ = [
    "Allocation",
    "AutoscaleError",
    "DDOResult",
    "Extrapolation",
    "Mixture",
    "RunsTable",
    "allocate",
    "extrapolate",
    "fit_ddo",
    "fit_ddo_budgets",
    "plan_ddo",
]
__version__ = "0.1.0"
