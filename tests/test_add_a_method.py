"""The documented way to add a mixing method (docs/examples/add_a_method.py), run end to end.

The example is imported from its file as a user's own module would be, registered, and run through
`autoscale run` on the simulated world (the command executor with its stand-in trainer): its runs
are trained, its artefacts written, its mixture validated beside uniform, and the report and status
read the folder without the method registered. The registry is restored afterwards.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from autoscale.errors import AutoscaleError
from autoscale.methods import METHODS, register
from cli_helpers import run_cli, tiny_experiment

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "add_a_method.py"


@pytest.fixture
def best_of():
    spec = importlib.util.spec_from_file_location("add_a_method", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import would: pydantic resolves its annotations there
    spec.loader.exec_module(module)
    method = register(module.BestOf())
    yield method
    METHODS.pop(method.name, None)
    del sys.modules[spec.name]


def test_the_documented_method_runs_end_to_end(best_of, tmp_path, simworld_in_process):
    assert best_of.own_trainer is False  # an optional attribute, defaulted by Method
    config = tiny_experiment(tmp_path, "mine", methods=["best-of"], ddo=None,
                             best_of={"budget": 4_000_000, "runs": 6},
                             target={"budget": 16_000_000, "validate": True, "compare": ["uniform"]})
    assert run_cli("run", str(config), "--quiet") == 0
    out = tmp_path / "mine"
    record = json.loads((out / "best-of_4000000.json").read_text())
    table = (out / "best-of_runs_4000000.csv").read_text().splitlines()
    assert len(table) == 1 + 6  # header and the 6 runs
    target = json.loads((out / "best-of_target.json").read_text())
    assert target["mixture"]["budget"] == pytest.approx(16_000_000)
    validation = json.loads((out / "validation.json").read_text())
    assert list(validation["mixtures"]) == ["best-of", "uniform"]
    assert {(g["of"], g["baseline"]) for g in validation["gains"]} == {("best-of", "uniform")}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["methods"]["best-of"]["search_runs"] == 6
    assert record["best_run"].startswith("mix ")
    METHODS.pop(best_of.name)  # `autoscale report` and `status` in a new process do not know it
    assert run_cli("report", str(out)) == 0 and run_cli("status", str(out)) == 0
    page = (out / "report" / "report.html").read_text()
    assert "best-of" in page
    # without a store, the settings name the data by the config's fingerprint, whole
    assert ">data (data.fingerprint)</td><td>simworld-3</td>" in page


def test_a_method_whose_name_is_taken_is_refused(best_of):
    with pytest.raises(AutoscaleError, match="clashes with method 'best-of'"):
        register(type(best_of)())
