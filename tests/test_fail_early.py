"""Bad input fails before anything trains, in one line, and nothing is silently wrong.

Each case of the table is a mistake a user made: a config that used to train every search run before
its error, an input that used to end in a traceback, or one that used to exit 0 with a wrong answer.
Each is one `error:` line, exit status 2, and no run trained (no run folder, no run in the store).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from autoscale.errors import AutoscaleError
from cli_helpers import run_cli, tiny_experiment

EXAMPLES = Path(__file__).parent.parent / "examples"
DDO_RUNS = EXAMPLES / "ddo_gpt2_large_1.2B.csv"


def experiment(root: Path, **sections) -> Path:
    """The tiny simulated experiment (tests/cli_helpers.py) with ``sections`` merged into its own."""
    path = tiny_experiment(root)
    config = yaml.safe_load(path.read_text())
    for key, value in sections.items():
        config[key] = {**config[key], **value} if isinstance(config.get(key), dict) else value
    path.write_text(yaml.safe_dump(config))
    return path


RANDOM_SEARCH = {"budget": 1_000_000, "prior": "uniform", "runs": 16, "floor": 0.4}
CONFIGS = {
    "target budget .inf": ({"target": {"budget": float("inf")}}, "target.budget: must be a finite number"),
    "target budget 1e400": ({"target": {"budget": "1e400"}}, "target.budget: must be a positive, finite number"),
    "regmix floor 0.4 x 3 domains": ({"methods": ["autoscale", "regmix"], "regmix": RANDOM_SEARCH},
                                     "floor 0.4 x 3 domains >= 1"),
    "dml floor 0.4 x 3 domains": ({"methods": ["autoscale", "dml"], "dml": RANDOM_SEARCH},
                                  "floor 0.4 x 3 domains >= 1"),
    "mixture-law floor 0.4": ({"methods": ["autoscale", "mixture-law"],
                               "mixture_law": {"budgets": [1e6, 2e6, 4e6], "prior": "uniform", "floor": 0.4}},
                              "floor 0.4 x 3 domains >= 1"),
    "regmix top_k above its candidates": ({"methods": ["autoscale", "regmix"],
                                           "regmix": {"budget": 1e6, "candidates": 100, "top_k": 200}},
                                          "top_k 200 is more than the 100 candidates"),
    "ddo bootstrap 1": ({"ddo": {"bootstrap": 1}}, "1 resamples; a 95% interval needs 20 to 100000"),
    "ddo bootstrap 1e9": ({"ddo": {"bootstrap": 10**9}}, "a 95% interval needs 20 to 100000"),
}


@pytest.mark.parametrize("case", list(CONFIGS))
def test_a_bad_config_is_refused_before_any_run_trains(tmp_path, capfd, case):
    sections, message = CONFIGS[case]
    path = experiment(tmp_path, **sections)
    assert run_cli("run", str(path), "--quiet") == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not list(tmp_path.glob("tiny/runs/*")), "a run trained before the error"


def test_a_baseline_without_weights_on_these_domains_is_refused_before_any_run_trains(tmp_path, capfd):
    """llama-style on domains no LLaMA source maps to: once refused only after the search trained."""
    for target, message in (({"compare": ["uniform", "llama-style"]}, "no domain among d00, d01, d02 has a LLaMA"),):
        path = experiment(tmp_path, data={"domains": ["d00", "d01", "d02"]}, target=target)
        config = yaml.safe_load(path.read_text())
        config["executor"]["command"] += ["--domains", "d00,d01,d02"]
        path.write_text(yaml.safe_dump(config))
        assert run_cli("run", str(path), "--quiet") == 2
        err = capfd.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not list(tmp_path.glob("tiny/runs/*")), "a run trained before the error"


def test_doremi_floor_is_refused_where_its_stage_is_planned():
    from autoscale.methods import METHODS
    from autoscale.methods.base import Context
    from autoscale.speedup import Objective

    doremi = METHODS["doremi"]
    settings = doremi.Settings.model_validate({"budget": 1e6, "floor": 0.4})
    ctx = Context(("a", "b", "c"), 0, Objective(), target=4e6)
    with pytest.raises(AutoscaleError, match=r"floor 0.4 x 3 domains >= 1"):
        doremi.stages(settings, ctx)


def test_a_mixture_name_with_brackets_prints_as_itself(tmp_path, capsys, simworld_in_process):
    """Names are text, never console markup: `mine[/x]` once crashed the result table and status."""
    path = experiment(tmp_path, target={"mixtures": {"mine[/x]": {"web": 0.6, "code": 0.2, "books": 0.2}}})
    assert run_cli("run", str(path)) == 0
    assert run_cli("status", str(tmp_path / "tiny")) == 0
    assert "mine[/x]" in capsys.readouterr().out


# -- the command line ----------------------------------------------------------------------------------


def fitted(tmp_path: Path, budget: str, draws: object, name: str) -> Path:
    """A DDO mixture JSON of the published runs with ``bootstrap_draws`` replaced by ``draws``."""
    out = tmp_path / f"{name}.json"
    assert run_cli("fit", str(DDO_RUNS), "--budget", budget, "--json", "--out", str(out)) == 0
    mixture = json.loads(out.read_text())
    mixture["bootstrap_draws"] = draws
    out.write_text(json.dumps(mixture))
    return out


def uniform_draws(count: int, m: int = 7) -> list:
    return [[1.0 / m] * m for _ in range(count)]


def cli_cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    seed = tmp_path / "seed.csv"
    seed.write_text("run,seed,tokens.a,tokens.b,eval.a\nbase,99999999999999999999,1,1,3\n")
    mixture = tmp_path / "mix.json"
    mixture.write_text(json.dumps({"tokens": {"a": 1e6, "b": 3e6}}))
    small, large = "1.2B", "4.8B"
    predict = ["predict", "--target", "20B"]
    return {
        "a seed beyond 64 bits": (["fit", str(seed)], "seed is out of range"),
        "fit --bootstrap 1": (["fit", str(DDO_RUNS), "--bootstrap", "1"], "a 95% interval needs 20 to 100000"),
        "fit --bootstrap 1e9": (["fit", str(DDO_RUNS), "--bootstrap", "1000000000"], "needs 20 to 100000"),
        "draws that are a string": ([*predict, str(fitted(tmp_path, small, "abc", "s1")),
                                     str(fitted(tmp_path, large, uniform_draws(5), "s2"))],
                                    "bootstrap_draws must be a non-empty list"),
        "draws that are a number": ([*predict, str(fitted(tmp_path, small, 5, "n1")),
                                     str(fitted(tmp_path, large, uniform_draws(5), "n2"))],
                                    "bootstrap_draws must be a non-empty list"),
        "20 draws against 5": ([*predict, str(fitted(tmp_path, small, uniform_draws(20), "c1")),
                                str(fitted(tmp_path, large, uniform_draws(5), "c2"))], "draws per input"),
        "draws in one input only": ([*predict, str(fitted(tmp_path, small, uniform_draws(5), "o1")),
                                     str(fitted(tmp_path, large, None, "o2"))], "has no bootstrap_draws"),
        "draws of the wrong shape": ([*predict, str(fitted(tmp_path, small, [[0.5, 0.5]] * 5, "w1")),
                                      str(fitted(tmp_path, large, uniform_draws(5), "w2"))],
                                     "bootstrap_draws row 0: expected 7 weights"),
        "draws that do not sum to 1": ([*predict, str(fitted(tmp_path, small, [[0.2] * 7] * 5, "u1")),
                                        str(fitted(tmp_path, large, uniform_draws(5), "u2"))],
                                       "summing to 1"),
        "export --max-epochs -1": (["export", str(mixture), "--format", "olmo-core", "--max-epochs", "-1"],
                                   "must be a finite number >= 1"),
        "export --max-epochs nan": (["export", str(mixture), "--format", "olmo-core", "--max-epochs", "nan"],
                                    "must be a finite number >= 1"),
    }


CLI_CASES = ["a seed beyond 64 bits", "fit --bootstrap 1", "fit --bootstrap 1e9", "draws that are a string",
             "draws that are a number", "20 draws against 5", "draws in one input only", "draws of the wrong shape",
             "draws that do not sum to 1", "export --max-epochs -1", "export --max-epochs nan"]


@pytest.mark.parametrize("case", CLI_CASES)
def test_a_bad_command_is_one_line_and_writes_nothing(tmp_path, capfd, case):
    args, message = cli_cases(tmp_path)[case]
    capfd.readouterr()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert run_cli(*args) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_refused_demo_leaves_no_folder(tmp_path):
    folder = tmp_path / "demo"
    assert run_cli("demo", "--quick", "--dir", str(folder), "--corpus", str(tmp_path / "nope")) == 2
    assert not folder.exists()


def test_a_constant_objective_ranks_nothing_without_a_library_warning():
    from autoscale.laws.regmix import fit_regressor

    rng = np.random.default_rng(0)
    weights = rng.dirichlet(np.ones(3), size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's ConstantInputWarning once reached the user
        model = fit_regressor(weights, np.full(16, 3.0), seed=0)
    assert model.cv_spearman == -1.0


@pytest.mark.parametrize("command", ["demo", "bench"])
def test_a_folder_demo_or_bench_cannot_write_in_is_one_line_and_left_as_it_was(tmp_path, capfd, monkeypatch, command):
    import autoscale.recipes.demo as recipes

    afile = tmp_path / "a-file"
    afile.write_text("mine\n")
    capfd.readouterr()
    assert run_cli(command, "--quick", "--dir", str(afile)) == 2
    [line] = capfd.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and f"'{afile}' is a file" in line and afile.read_text() == "mine\n"
    # a folder this user may not write in (root may write anywhere, so the permission check is made to fail)
    folder = tmp_path / "locked"
    folder.mkdir()
    monkeypatch.setattr(recipes.os, "access", lambda path, mode: not mode & recipes.os.W_OK)
    assert run_cli(command, "--quick", "--dir", str(folder)) == 2
    [line] = capfd.readouterr().err.strip().splitlines()
    assert line.startswith("error: cannot write in the ") and line.endswith(f"folder '{folder}': permission denied")
    assert not any(folder.iterdir())
