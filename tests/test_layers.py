"""The layers by their paths: the pure cores (AutoScale's ddo/ and extrapolate, the other methods'
laws/) import neither torch nor the layers above them."""

import subprocess
import sys

PURE = ["autoscale.ddo.fit", "autoscale.ddo.plan", "autoscale.ddo.noise", "autoscale.extrapolate",
        "autoscale.laws.data_mixing", "autoscale.laws.optimal_mixture", "autoscale.laws.regmix",
        "autoscale.laws.doremi", "autoscale.gain", "autoscale.speedup", "autoscale.baselines"]
ABOVE = ("torch", "autoscale.train", "autoscale.experiment", "autoscale.report", "autoscale.cli",
         "autoscale.methods", "autoscale.recipes", "autoscale.data")


def test_pure_cores_import_nothing_above_them():
    # a fresh interpreter: this test process has imported everything already
    code = ("import importlib, sys\n"
            f"for name in {PURE!r}: importlib.import_module(name)\n"
            f"print(sorted(m for m in sys.modules if m.startswith({ABOVE!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
