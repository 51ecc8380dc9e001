"""autoscale: scale-aware data mixing for LLM pre-training (AutoScale, arXiv 2407.20177).

The Python API mirrors the CLI and is pure numpy/scipy (no torch is imported here):

    from autoscale import RunsTable, fit_ddo, extrapolate
    ddo_small = fit_ddo(RunsTable.read_csv("runs_0.3B.csv")).mixture
    ddo_large = fit_ddo(RunsTable.read_csv("runs_1.2B.csv")).mixture
    target = extrapolate([ddo_small, ddo_large], target=10e9).mixture
"""

from autoscale.ddo.allocate import Allocation, allocate
from autoscale.ddo.fit import DDOResult, fit_ddo
from autoscale.ddo.plan import plan_ddo
from autoscale.ddo.runs import RunsTable
from autoscale.errors import AutoscaleError
from autoscale.extrapolate import Extrapolation, extrapolate
from autoscale.mixture import Mixture

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
    "plan_ddo",
]
__version__ = "0.1.0"
