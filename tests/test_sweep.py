"""A sweep of bad input over the whole command line and config: 150+ cases, table-driven.

Each case is a mistake a user could make. Every one must end with exit status 2, one `error:` line
(an option of the wrong type too), no traceback, no run trained (no
run folder) and, for `autoscale run`, nothing written but what a refused run may write.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from cli_helpers import run_cli

TRAINER = Path(__file__).parent / "fixtures" / "simworld_trainer.py"
DDO_RUNS = Path(__file__).parent.parent / "examples" / "ddo_gpt2_large_1.2B.csv"
INF, NAN = float("inf"), float("nan")


def base_config() -> dict:
    """A valid experiment with every method a command executor can train (it is never run whole)."""
    return {
        "data": {"domains": ["web", "code", "books"], "fingerprint": "simworld-3"},
        "methods": ["autoscale", "regmix", "dml", "mixture-law"],
        "ddo": {"budgets": [1_000_000, 4_000_000]},
        "regmix": {"budget": 4_000_000, "prior": "uniform", "runs": 16},
        "dml": {"budget": 4_000_000, "prior": "uniform"},
        "mixture_law": {"budgets": [1_000_000, 2_000_000, 4_000_000], "prior": "uniform", "runs": 5},
        "target": {"budget": 16_000_000, "validate": True, "compare": ["uniform", "ddo"]},
        "executor": {"kind": "command", "workers": 2,
                     "command": [sys.executable, str(TRAINER), "--world-seed", "3", "--mixture", "{mixture_json}",
                                 "--seed", "{seed}", "--out", "{run_dir}"]},
    }


DROP = object()  # the value that removes a key

# (dotted path, value): each a config mistake
CONFIG_CASES = [
    ("seed", "x"), ("seed", 1.5), ("seed", [1]), ("name", 5), ("output", 5), ("unknown_section", 1),
    ("data.domains", []), ("data.domains", ["web"]), ("data.domains", ["web", "web", "code"]),
    ("data.domains", ["we,b", "code"]), ("data.domains", "web"), ("data.domains", [1, 2, 3]),
    ("data.domains", [" web", "code"]), ("data.domains", ["w=b", "code"]), ("data.fingerprint", 5),
    ("data.store", "/nonexistent/store"), ("data.sources", "/nonexistent/corpus"), ("data.unknown", 1),
    ("data", DROP), ("data.domains", DROP),
    ("ddo.budgets", []), ("ddo.budgets", [1e6]), ("ddo.budgets", [4e6, 1e6]), ("ddo.budgets", [0, 1e6]),
    ("ddo.budgets", [-1, 1e6]), ("ddo.budgets", ["abc", 1e6]), ("ddo.budgets", [1e6, INF]),
    ("ddo.budgets", [1e6, NAN]), ("ddo.budgets", [1e6, 1e6]), ("ddo.budgets", "1M"),
    ("ddo.ratios", [0.2]), ("ddo.ratios", [-1, 3]), ("ddo.ratios", [0, 3]), ("ddo.ratios", "x"),
    ("ddo.ratios", [1.0, 3.0]), ("ddo.base", "other"), ("ddo.base", {"web": -1, "code": 1, "books": 1}),
    ("ddo.base", {"nope": 1}), ("ddo.min_ratio", -0.1), ("ddo.min_ratio", 1.0), ("ddo.min_ratio", "x"),
    ("ddo.max_epochs", 0), ("ddo.max_epochs", -1), ("ddo.max_epochs", INF), ("ddo.max_epochs", {"web": 0}),
    ("ddo.replicates", 0), ("ddo.replicates", -1), ("ddo.replicates", 1.5), ("ddo.replicates", "2"),
    ("ddo.bootstrap", 1), ("ddo.bootstrap", 19), ("ddo.bootstrap", 10**9), ("ddo.bootstrap", -1),
    ("ddo.eval_points", 0), ("ddo.eval_points", -1), ("ddo.unknown", 1),
    ("regmix.budget", 0), ("regmix.budget", -1), ("regmix.budget", "abc"), ("regmix.budget", INF),
    ("regmix.budget", 16_000_000), ("regmix.runs", 0), ("regmix.runs", 5), ("regmix.runs", -5),
    ("regmix.prior", "other"), ("regmix.temperature", 0), ("regmix.temperature", 2), ("regmix.min_weight", -0.1),
    ("regmix.min_weight", 0.5), ("regmix.floor", 0.4), ("regmix.floor", -0.1), ("regmix.floor", 0.5),
    ("regmix.candidates", 10), ("regmix.top_k", 0), ("regmix.top_k", 200_000), ("regmix.max_epochs", -1),
    ("regmix.eval_points", 0), ("regmix.unknown", 1), ("regmix", DROP),
    ("dml.budget", 0), ("dml.runs", 2), ("dml.floor", 0.34), ("dml.prior", 5), ("dml.unknown", 1),
    ("mixture_law.budgets", [1e6, 2e6]), ("mixture_law.budgets", [1e6, 2e6, 3e6]),
    ("mixture_law.budgets", [3e6, 2e6, 12e6]), ("mixture_law.budget", 1e6), ("mixture_law.starts", 0),
    ("mixture_law.runs", 2), ("mixture_law.floor", 0.4), ("mixture_law.budgets", [1e6, 4e6, INF]),
    ("methods", []), ("methods", ["nope"]), ("methods", ["autoscale", "autoscale"]), ("methods", "autoscale"),
    ("methods", ["autoscale", "doremi"]),
    ("objective.metric", "accuracy"), ("objective.weights", {"web": -1}), ("objective.weights", {}),
    ("objective.weights", {"web": 0, "code": 0}), ("objective.weights", {"web": INF}),
    ("objective.weights", {"nope": 1}), ("objective.unknown", 1),
    ("target.budget", 0), ("target.budget", -1), ("target.budget", "x"), ("target.budget", INF),
    ("target.budget", 2_000_000), ("target.offsets", "maybe"), ("target.validate", "x"),
    ("target.compare", ["nope"]), ("target.compare", "uniform"), ("target.mixtures", {"m": {"web": -1}}),
    ("target.mixtures", {"m": {"nope": 1}}), ("target.mixtures", {"uniform": {"web": 1}}),
    ("target.mixtures", {"m": {}}), ("target.mixtures", {"m": {"web": 0}}), ("target.seeds", []),
    ("target.seeds", ["x"]), ("target.smoothing", 1), ("target.smoothing", -0.1),
    ("target.downstream", {"tasks": []}), ("target.downstream", {"tasks": ["autoscale_wordcloze"]}),
    ("target.unknown", 1),
    ("executor.kind", "slurm"), ("executor.retries", -1), ("executor.workers", 0), ("executor.command", []),
    ("executor.command", ["/nonexistent/program"]), ("executor.timeout_s", 0), ("executor.timeout_s", -1),
    ("executor.env", {"A": [1]}), ("executor.unknown", 1), ("executor.command", "python train.py"),
]


def mutated(path: str, value: object) -> dict:
    config = base_config()
    *parents, leaf = path.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    if value is DROP:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return config


def assert_refused(capfd, args: list[str]) -> list[str]:
    capfd.readouterr()
    assert run_cli(*args) == 2
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert "Traceback" not in out + err
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines


@pytest.mark.parametrize(("path", "value"), CONFIG_CASES,
                         ids=[f"{p}=" + ("(removed)" if v is DROP else repr(v)) for p, v in CONFIG_CASES])
def test_a_config_mistake_is_one_line_before_anything_trains(tmp_path, capfd, path, value):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(mutated(path, value)))
    lines = assert_refused(capfd, ["run", str(config), "--quiet"])
    assert len(lines) == 1
    assert not list(tmp_path.glob("bad/runs/*")), "a run trained before the error"


def cli_cases(tmp: Path) -> list[list[str]]:
    good_mix = tmp / "mix.json"
    good_mix.write_text(json.dumps({"tokens": {"web": 1e6, "code": 3e6}}))
    other_mix = tmp / "other.json"
    other_mix.write_text(json.dumps({"tokens": {"web": 2e6, "books": 6e6}}))
    bad_json = tmp / "bad.json"
    bad_json.write_text("{not json")
    empty = tmp / "empty.csv"
    empty.write_text("")
    no_base = tmp / "nobase.csv"
    no_base.write_text("run,tokens.a,tokens.b,eval.a\nr1,1,2,3\nr2,2,1,3\n")
    nan_cell = tmp / "nan.csv"
    nan_cell.write_text("run,tokens.a,tokens.b,eval.a\nr1,1,nan,3\n")
    missing = str(tmp / "missing.csv")
    runs = str(DDO_RUNS)
    return [
        ["plan", "--domains", "a,b", "--budget", "-1"], ["plan", "--domains", "a,b", "--budget", "abc"],
        ["plan", "--domains", "a", "--budget", "1M"], ["plan", "--domains", "a,a", "--budget", "1M"],
        ["plan", "--domains", "a,b", "--budget", "1M", "--ratios", "x"],
        ["plan", "--domains", "a,b", "--budget", "1M", "--ratios", "0.2"],
        ["plan", "--domains", "a,b", "--budget", "1M", "--replicates", "0"],
        ["plan", "--domains", "a,,b", "--budget", "1M"], ["plan", "--budget", "1M"],
        ["plan", "--domains", "a,b", "--budget", "1M", "--eval-names", "x,,y"],
        ["plan", "--method", "nope", "--domains", "a,b", "--budget", "1M"],
        ["plan", "--method", "regmix", "--domains", "a,b,c"],
        ["plan", "--method", "regmix", "--domains", "a,b,c", "--budget", "1M", "--runs", "3"],
        ["plan", "--method", "mixture-law", "--domains", "a,b,c", "--budgets", "1M,2M"],
        ["plan", "--method", "mixture-law", "--domains", "a,b,c", "--budget", "1M"],
        ["plan", "--method", "regmix", "--domains", "a,b,c", "--budget", "1M", "--set", "top_k"],
        ["plan", "--method", "regmix", "--domains", "a,b,c", "--budget", "1M", "--set", "nope=1"],
        ["plan", "--method", "regmix", "--domains", "a,b,c", "--budget", "1M", "--prior", "natural",
         "--max-epochs", "2"],
        ["plan", "--method", "dml", "--domains", "a,b,c", "--budget", "1M", "--store", str(tmp / "nostore")],
        ["plan", "--domains", "a,b", "--budget", "1M", "--floor", "0.1"],
        ["plan", "--domains", "a,b", "--budget", "1M", "--out", str(tmp / "missing" / "p.csv")],
        ["fit", missing], ["fit", str(empty)], ["fit", str(tmp)], ["fit", str(no_base)], ["fit", str(nan_cell)],
        ["fit", runs, "--budget", "-1"], ["fit", runs, "--min-ratio", "2"], ["fit", runs, "--max-tokens", "web=x"],
        ["fit", runs, "--max-tokens", "nope=5"], ["fit", runs, "--eval-weights", "nope=1"],
        ["fit", runs, "--eval-weights", "wiki=-1"], ["fit", runs, "--bootstrap", "5"],
        ["fit", runs, "--out", str(tmp / "missing" / "f.json")], ["fit", runs, "--metric", "accuracy"],
        ["fit", runs, "--method", "regmix"], ["fit", runs, "--scores", str(tmp / "s.csv")],
        ["fit", runs, "--score", missing], ["fit", runs, "--method", "dml", "--bootstrap", "20"],
        ["predict", str(good_mix)], ["predict", str(good_mix), missing], ["predict", str(good_mix), str(bad_json)],
        ["predict", str(good_mix), str(other_mix)], ["predict", str(good_mix), str(good_mix), "--target", "-5"],
        ["predict", str(good_mix), str(good_mix), "--target", "abc"],
        ["predict", str(good_mix), str(good_mix), "--min-weight", "2"],
        ["predict", str(good_mix), str(good_mix), "--max-tokens", "nope=5"],
        ["export", missing, "--format", "megatron"], ["export", str(good_mix), "--format", "nope"],
        ["export", str(good_mix), "--format", "olmo-core", "--max-epochs", "0"],
        ["export", str(bad_json), "--format", "megatron"],
        ["export", str(good_mix), "--format", "megatron", "--out", str(tmp / "missing" / "x.txt")],
        ["train", missing], ["train", str(bad_json)],
        ["eval", str(tmp / "norun"), "--tasks", "autoscale_wordcloze"], ["eval", str(tmp), "--tasks", ","],
        ["status", str(tmp / "nothing")], ["report", str(tmp / "nothing")],
        ["demo", "--quick", "--dir", str(tmp / "d"), "--corpus", str(tmp / "nocorpus")],
        ["bench", "--quick", "--dir", str(tmp / "b"), "--corpus", str(tmp / "nocorpus")],
        ["run", missing], ["run", str(bad_json)], ["nope"],
    ]


CLI_COUNT = 63


def test_the_sweep_has_150_cases_or_more(tmp_path):
    assert len(cli_cases(tmp_path)) == CLI_COUNT and len(CONFIG_CASES) + CLI_COUNT >= 150


@pytest.mark.parametrize("index", range(CLI_COUNT))
def test_a_command_line_mistake_is_one_line_and_writes_nothing(tmp_path, capfd, index):
    args = cli_cases(tmp_path)[index]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert_refused(capfd, args)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, args
