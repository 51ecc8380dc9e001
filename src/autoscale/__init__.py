"""autoscale: scale-aware data mixing for LLM pre-training (AutoScale, arXiv 2407.20177).

The public Python API mirrors the CLI:

    from autoscale import Mixture, RunsTable, fit_ddo, allocate, extrapolate, plan_ddo
"""

from autoscale.errors import AutoscaleError
from autoscale.mixture import Mixture

__all__ = ["AutoscaleError", "Mixture"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy so that `import autoscale` stays cheap (no scipy import for the CLI's --help).
    lazy = {
        "RunsTable": "autoscale.ddo.runs",
        "plan_ddo": "autoscale.ddo.plan",
        "fit_ddo": "autoscale.ddo.fit",
        "DDOResult": "autoscale.ddo.fit",
        "allocate": "autoscale.ddo.allocate",
        "Allocation": "autoscale.ddo.allocate",
        "extrapolate": "autoscale.extrapolate",
    }
    if name in lazy:
        import importlib

        return getattr(importlib.import_module(lazy[name]), name)
    raise AttributeError(f"module 'autoscale' has no attribute {name!r}")
