"""RegMix and Data Mixing Laws beside AutoScale, on one backend.

In the noise-free simulated world (tests/simworld.py, behind the command executor: the true optimum is
known), each method's mixture keeps at least 80% of the optimum's gain over uniform at the budget it
searches; the two designs share their first runs, trained once and charged to both; a rerun trains
nothing and writes the same mixtures. On the fixture corpus with our trainer, `autoscale run` with
all three methods goes from the corpus to the validation, the report and the status. Bad input to
the `methods:` config is one line and exit 2, before anything is written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from autoscale.experiment.runstore import STORE_FILE, RunStore
from cli_helpers import run_cli
from simworld import make_world
from simworld_inprocess import simworld_in_process

TRAINER = Path(__file__).parent / "fixtures" / "simworld_trainer.py"
CORPUS = Path(__file__).parent / "fixtures" / "corpus"
DOMAINS = ["web", "code", "books"]
SEARCH = 4_000_000


def sim_config(root: Path, name: str, **sections) -> Path:
    config = {
        "data": {"domains": DOMAINS, "fingerprint": "simworld-3"},
        "seed": 5,
        "methods": ["regmix", "dml"],
        "regmix": {"budget": SEARCH, "prior": "uniform"},
        "dml": {"budget": SEARCH, "prior": "uniform"},
        "target": {"budget": 16_000_000},
        "executor": {
            "kind": "command",
            "command": [sys.executable, str(TRAINER), "--world-seed", "3", "--mixture", "{mixture_json}",
                        "--seed", "{seed}", "--out", "{run_dir}"],
            "workers": 2, "trainer_id": "simworld-v1",
        },
        **sections,
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def read_json(path: Path):
    return json.loads(path.read_text())


# its tests share `simulated`: built once, on one worker (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("test_methods")


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("methods")
    with simworld_in_process():
        assert run_cli("run", str(sim_config(root, "sim")), "--quiet") == 0
    return root / "sim"


@pytest.mark.parametrize("method", ["regmix", "dml"])
def test_each_method_keeps_most_of_the_optimum_gain_where_it_searches(simulated, method):
    world = make_world(3)
    weights = read_json(simulated / f"{method}_target.json")["mixture"]["weights"]
    found = world.gain(weights, SEARCH)
    optimum = world.gain(world.optimum(SEARCH), SEARCH)
    assert optimum > 0.01  # the world has a gain to find
    assert found >= 0.8 * optimum, (method, found, optimum)


def test_the_designs_share_their_first_runs_trained_once_and_charged_to_both(simulated):
    summary = read_json(simulated / "summary.json")
    methods = summary["methods"]
    assert methods["regmix"]["search_runs"] == 48 and methods["dml"]["search_runs"] == 16  # 16m and 4m + 4
    assert methods["regmix"]["search_tokens"] == pytest.approx(48 * SEARCH, rel=1e-6)
    assert methods["dml"]["search_tokens"] == pytest.approx(16 * SEARCH, rel=1e-6)
    assert methods["dml"]["search_vs_target"] == pytest.approx(16 * SEARCH / 16e6, rel=1e-6)
    # the same seed and sampler: dml's 16 mixtures are regmix's first 16
    assert methods["dml"]["shared_tokens"] == pytest.approx(methods["dml"]["search_tokens"])
    assert methods["regmix"]["shared_tokens"] == pytest.approx(methods["dml"]["search_tokens"])
    assert summary["search_compute"]["trained_tokens"] == pytest.approx(48 * SEARCH, rel=1e-6)
    assert summary["search_compute"]["charged_tokens"] == pytest.approx(64 * SEARCH, rel=1e-6)
    with RunStore(simulated / STORE_FILE, readonly=True) as store:
        runs = store.runs()
    assert len(runs) == 48 and all(r.status == "completed" for r in runs)
    record = read_json(simulated / f"dml_{SEARCH}.json")
    assert set(record["law"]["r2"]) == set(DOMAINS) and len(record["weights"]) == 16
    assert read_json(simulated / f"regmix_{SEARCH}.json")["cv_spearman"] > 0.5


def test_a_rerun_trains_nothing_and_gives_the_same_mixtures(simulated, tmp_path, simworld_in_process):
    before = {m: (simulated / f"{m}_target.json").read_text() for m in ("regmix", "dml")}
    assert run_cli("run", str(simulated.parent / "sim.yaml"), "--quiet") == 0
    assert {m: (simulated / f"{m}_target.json").read_text() for m in ("regmix", "dml")} == before
    with RunStore(simulated / STORE_FILE, readonly=True) as store:
        assert all(r.attempts == 1 for r in store.runs())
    # a fresh folder with the same seed computes the same mixtures (deterministic for a seed)
    assert run_cli("run", str(sim_config(tmp_path, "again")), "--quiet") == 0
    assert {m: (tmp_path / "again" / f"{m}_target.json").read_text() for m in ("regmix", "dml")} == before


def test_every_method_end_to_end_on_the_fixture_corpus(tmp_path):
    """All five methods on all five domains of the fixture corpus (web, code, books, news,
    encyclopedia), each with its least number of runs."""
    config = {
        "seed": 0,
        "data": {"store": str(tmp_path / "store"), "sources": str(CORPUS), "vocab_size": 512, "val_tokens": 2048},
        "proxy": {"model": {"n_layer": 1, "d_model": 32, "n_head": 2, "seq_len": 32},
                  "train": {"batch_size": 8, "lr": 1.0e-2, "warmup": 0.1, "threads": 1},
                  "eval": {"points": 4, "max_tokens": 1024}},
        "methods": ["autoscale", "regmix", "dml", "doremi", "mixture-law"],
        "ddo": {"budgets": [6000, 12000], "max_epochs": 4, "eval_points": 1},
        "regmix": {"budget": 12000, "runs": 24, "candidates": 2000, "top_k": 20, "max_epochs": 4, "eval_points": 1},
        "dml": {"budget": 12000, "runs": 7, "max_epochs": 4, "eval_points": 1},
        "doremi": {"budget": 12000, "max_epochs": 4, "eval_points": 1},
        "mixture_law": {"budgets": [3000, 6000, 12000], "runs": 7, "max_epochs": 4, "eval_points": 1, "starts": 2,
                        "fit_steps": 500},  # the path, not the fit (4000 steps: 25 s here)
        "target": {"budget": 24000, "validate": True, "compare": ["uniform", "natural", "ddo", "llama-style"]},
    }
    path = tmp_path / "five.yaml"
    path.write_text(yaml.safe_dump(config))
    assert run_cli("run", str(path), "--quiet") == 0
    out = tmp_path / "five"
    for name in ("autoscale_target.json", "regmix_target.json", "dml_target.json", "doremi_target.json", "autoscale_runs_12000.csv",
                 "regmix_runs_12000.csv", "dml_runs_12000.csv", "autoscale_12000.json", "regmix_12000.json",
                 "dml_12000.json", "doremi_12000.json", "mixture-law_target.json", "mixture-law_runs_3000.csv",
                 "mixture-law_12000.json"):
        assert (out / name).exists(), name
    validation = read_json(out / "validation.json")
    assert list(validation["mixtures"]) == ["predicted", "regmix", "dml", "doremi", "mixture-law", "uniform",
                                            "natural", "ddo", "llama-style"]
    gains = {(g["of"], g["baseline"]) for g in validation["gains"]}
    assert {("regmix", "uniform"), ("dml", "uniform"), ("doremi", "uniform"), ("predicted", "uniform")} <= gains
    assert ("regmix", "dml") not in gains  # methods are compared through the baselines, each with its interval
    summary = read_json(out / "summary.json")
    assert list(summary["methods"]) == ["autoscale", "regmix", "dml", "doremi", "mixture-law"]
    assert len(summary["domains"]) == 5
    for name in ("autoscale_target.json", "regmix_target.json", "dml_target.json", "doremi_target.json", "mixture-law_target.json"):
        weights = read_json(out / name)["mixture"]["weights"]
        assert len(weights) == 5 and sum(weights.values()) == pytest.approx(1.0)
        if name != "autoscale_target.json":  # the methods' floor, 0.2 / m (AutoScale's law moves past its DDO floors)
            assert min(weights.values()) >= 0.2 / 5 - 1e-9, name
    # the law's 7 mixtures at 24k tokens are dml's 7 (the same sampler and seed): trained once
    law = summary["methods"]["mixture-law"]
    assert law["search_runs"] == 21 and law["shared_tokens"] == pytest.approx(7 * 12000, rel=1e-2)
    # DoReMi: one run of our trainer in its mode, charged twice its budget (the reference, then the proxy)
    doremi = read_json(out / "doremi_12000.json")
    assert summary["methods"]["doremi"]["search_tokens"] == pytest.approx(2 * 12000, rel=1e-3)
    assert sum(doremi["learnt"].values()) == pytest.approx(1.0) and doremi["steps"] > 0
    for entry in summary["methods"].values():
        assert entry["search_tokens"] > 0 and entry["final_objective"] > 0
        assert entry["gain_over_uniform"]["baseline"] == "uniform"
    assert summary["methods"]["dml"]["shared_tokens"] == pytest.approx(summary["methods"]["dml"]["search_tokens"])
    assert run_cli("report", str(out)) == 0
    html = (out / "report" / "report.html").read_text()
    assert "Methods compared" in html and "regmix" in html and "dml" in html
    assert (out / "report" / "methods.png").stat().st_size > 10_000  # gain over uniform against search compute
    assert run_cli("status", str(out)) == 0


BAD = {
    "unknown method": ({"methods": ["regmix", "doremi2"]}, "methods: unknown method 'doremi2'"),
    "settings of a method not selected": ({"methods": ["dml"]}, "regmix: settings of method 'regmix', which is not in methods"),
    "too few regmix runs": ({"regmix": {"budget": SEARCH, "runs": 15}}, "regmix.runs: 15 runs for 3 domains; regmix needs at least 16"),
    "too few dml runs": ({"dml": {"budget": SEARCH, "runs": 4}}, "dml.runs: 4 runs for 3 domains; dml needs at least 5"),
    "no target budget without autoscale": ({"target": {}}, "target.budget is required with method 'regmix'"),
    "no target budget beside autoscale": ({"target": {}, "methods": ["autoscale", "dml"], "regmix": None,
                                           "ddo": {"budgets": [1e6, 4e6]}}, "target.budget is required with method 'dml'"),
    "ddo baseline without autoscale": ({"target": {"budget": 16e6, "validate": True, "compare": ["ddo"]}},
                                       "reused as is at the target) needs autoscale among the methods"),
    "a selected method without settings": ({"methods": ["regmix", "dml", "autoscale"]}, "missing required setting 'ddo'"),
    "target below the search budget": ({"target": {"budget": SEARCH}}, "must exceed the largest regmix budget"),
    "a mixture law on two budgets": ({"methods": ["regmix", "mixture-law"], "dml": None,
                                      "mixture_law": {"budgets": [1e6, 4e6]}}, "mixture_law.budgets: List should have at least 3"),
    "doremi with the user's command": ({"methods": ["regmix", "doremi"], "dml": None, "doremi": {"budget": SEARCH}},
                                       "method 'doremi' needs autoscale's trainer"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_method_config_is_one_line_and_exit_2(tmp_path, capsys, case):
    sections, message = BAD[case]
    path = sim_config(tmp_path, "bad", **sections)
    assert run_cli("run", str(path), "--quiet") == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()  # nothing written


def test_report_and_status_of_an_experiment_without_autoscale(simulated, capsys):
    assert run_cli("report", str(simulated)) == 0
    html = (simulated / "report" / "report.html").read_text()
    assert "Methods compared" in html and "Fitted power laws" not in html
    for name in ("regmix", "dml"):
        assert f"{name} @ 16M (predicted)" in html  # each method's mixture at the target in the mixtures table
    assert run_cli("status", str(simulated)) == 0
    out = capsys.readouterr().out
    assert "regmix 4000000" in out and "dml fit" in out and "running" not in out


def test_identical_failures_are_one_entry_with_their_count():
    from autoscale.methods.base import FinishedRun, PlannedRun, failures

    def run(label, error):
        return FinishedRun(PlannedRun(label, {"web": 1.0}, 0), label, "failed" if error else "completed", error)

    torch = "trainer exited with status 1: No module named 'torch'"
    runs = [run(f"ddo 1M: r{i}", torch) for i in range(12)] + [run("ddo 1M: base", None), run("x", "timed out after 5 s")]
    assert failures(runs) == (f"12 runs: {torch} (ddo 1M: r0, ddo 1M: r1, ddo 1M: r2, ... and 9 more); "
                              "1 run: timed out after 5 s (x)")
