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


# (module, name) pairs allowed to spell AutoScale's name: the program's own name, the trainer
# identity inside run keys (not a method name: changing it would train every finished run again),
# and `fit --score`'s column of predictions (a column's name, whichever method fitted)
ALLOWED = {("cli/__init__.py", "autoscale"), ("experiment/setup.py", "autoscale"),
           ("cli/methods_table.py", "predicted")}


def test_only_the_registry_and_the_old_folder_reader_know_autoscale_by_name():
    """Outside the method registry (methods/) and the reader of old folders (experiment/legacy.py),
    no module of report/, cli/ or experiment/ holds AutoScale's name or its mixture's name as a value."""
    import ast
    from pathlib import Path

    import autoscale
    from autoscale.methods import METHODS

    names = {METHODS["autoscale"].name, METHODS["autoscale"].mixture}
    root = Path(autoscale.__file__).parent
    found = []
    for path in sorted(p for part in ("report", "cli", "experiment") for p in (root / part).rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel == "experiment/legacy.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and node.value in names and id(node) not in docstrings
                    and (rel, node.value) not in ALLOWED):
                found.append(f"{rel}:{node.lineno}: {node.value!r}")
    assert len(names) == 2 and not found, found
