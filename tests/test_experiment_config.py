"""Invalid experiment configs: one line on stderr naming the problem, exit status 2, nothing written."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from autoscale.cli import main
from autoscale.experiment.config import load_config

# Valid apart from the change each case makes; data without a store, so no data is needed.
VALID = {
    "data": {"domains": ["web", "code"], "fingerprint": "my-corpus-v1"},
    "ddo": {"budgets": [1.0e4, 2.0e4]},
    "target": {"budget": 8.0e4},
    "executor": {"kind": "command", "command": ["./train.sh", "{run_dir}", "{mixture_json}"]},
}


def changed(path: str, value) -> dict:
    """VALID with the setting at dotted ``path`` replaced (``...`` deletes it)."""
    config = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return config


CASES = {
    "unknown key": (changed("ddo.budget", [1e4]), "unknown setting 'ddo.budget'"),
    "missing section": (changed("ddo", ...), "missing required setting 'ddo'"),
    "one budget": (changed("ddo.budgets", [1e4]), "ddo.budgets: List should have at least 2 items"),
    "budgets not increasing": (changed("ddo.budgets", [2e4, 1e4]), "budgets must be strictly increasing"),
    "ratio of 1": (changed("ddo.ratios", [0.2, 1.0]), "ratios must be positive, finite and not 1"),
    "floor out of range": (changed("ddo.min_ratio", 1.5), "ddo.min_ratio: Input should be less than 1 (got 1.5)"),
    "target below a DDO budget": (changed("target.budget", 1.5e4), "target.budget (15000) must exceed"),
    "unknown executor": (changed("executor.kind", "slurm"), "executor.kind: Input should be 'inline', 'ray' or"),
    "command without argv": (changed("executor.command", ...), "executor.command (an argument list) is required"),
    "unknown placeholder": (changed("executor.command", ["./t", "{rundir}"]), "unknown placeholder {rundir}"),
    "negative retries": (changed("executor.retries", -1), "executor.retries: Input should be greater than or equal"),
    "bad base mixture": (changed("ddo.base", "popular"), "ddo.base: Input should be 'uniform' or 'natural'"),
    "reserved mixture name": (changed("target.mixtures", {"uniform": {"web": 1}}), "mixture name 'uniform' is reserved"),
    "unknown comparison": (changed("target.compare", ["llama"]), "target.compare: unknown baseline 'llama'"),
    "bad proxy setting": (changed("proxy", {"model": {"n_layer": 0}}), "proxy.model.n_layer: Input should be greater"),
    "seed given twice": (changed("proxy", {"train": {"seed": 3}}), "proxy.train.seed: give the seed once"),
    "inline without a store": (changed("executor", {"kind": "inline"}), "data.store is required with executor kind"),
    "unknown domain in weights": (changed("objective.weights", {"wiki": 1.0}), "objective.weights: unknown domain 'wiki'"),
    "one domain": (changed("data.domains", ["web"]), "a data mixture needs at least 2 domains"),
    "ray setting on a command executor": (changed("executor", {"kind": "command", "command": ["./t"], "num_gpus": 1}),
                              "executor.num_gpus is only used with kind 'ray'"),
    "negative weight": (changed("target.mixtures", {"llama": {"web": -1}}), "weight of 'web' must be a finite number"),
    "unknown design": (changed("ddo.design", 3), "ddo.design: Input should be 1 or 2 (got 3)"),
    "no DDO evaluation": (changed("ddo.eval_points", 0), "ddo.eval_points: Input should be greater than or equal to 1"),
    "DDO evaluation of a user's trainer": (changed("ddo.eval_points", 1),
                                           "ddo.eval_points applies to autoscale's trainer, not executor kind"),
    # one rule for domain names (autoscale.domains), also without a store
    "comma in a domain": (changed("data.domains", ["a,b", "code"]),
                          "data.domains: domain name 'a,b' contains ','"),
    "'=' in a weights key": (changed("objective.weights", {"web=2": 1.0}),
                             "objective.weights: domain name 'web=2' contains '='"),
    "space around a mixture's domain": (changed("target.mixtures", {"llama": {" web": 1.0}}),
                                        "mixtures.llama: domain name ' web' has surrounding whitespace"),
    "control character in the base": (changed("ddo.base", {"w\teb": 1.0, "code": 1.0}),
                                      "domain name 'w\\teb' contains the control character"),
    "long name in max_epochs": (changed("ddo.max_epochs", {"w" * 101: 2.0}), "is 101 characters long, more than 100"),
    # token counts take the command line's suffixes, and its checks
    "budget that is not a count": (changed("ddo.budgets", ["10k", "lots"]),
                                   "ddo.budgets.1: expected a number of tokens like 2e5 or 200k, got 'lots'"),
    "negative target with a suffix": (changed("target.budget", "-80k"),
                                      "target.budget: must be a positive, finite number of tokens, got '-80k'"),
    "fractional evaluation tokens": (changed("proxy", {"eval": {"max_tokens": "1.5"}}),
                                     "proxy.eval.max_tokens: must be a whole number of tokens, got '1.5'"),
}


def run(tmp_path: Path, text: str, capsys) -> tuple[int, str]:
    (tmp_path / "train.sh").write_text("#!/bin/sh\n")
    (tmp_path / "train.sh").chmod(0o755)
    path = tmp_path / "experiment.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit) as exc:
        main(["run", str(path)])
    return int(exc.value.code), capsys.readouterr().err


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_config_is_one_line_and_exit_2(case, tmp_path, capsys):
    config, expected = CASES[case]
    code, err = run(tmp_path, yaml.safe_dump(config), capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    assert expected in err
    assert not (tmp_path / "experiment").exists()  # nothing written for bad input


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ddo: [unclosed\n", "malformed YAML at line"),
        ("- just\n- a list\n", "expected a mapping of settings, got list"),
        ("", "expected a mapping of settings, got NoneType"),
    ],
)
def test_unreadable_config_is_one_line_and_exit_2(text, expected, tmp_path, capsys):
    code, err = run(tmp_path, text, capsys)
    assert code == 2 and err.count("\n") == 1 and expected in err


def test_missing_store_and_missing_file(tmp_path, capsys):
    config = changed("executor", {"kind": "inline"})
    config["data"] = {"store": "nowhere"}
    code, err = run(tmp_path, yaml.safe_dump(config), capsys)
    assert code == 2 and "no token store at" in err and str(tmp_path / "nowhere") in err
    with pytest.raises(SystemExit) as exc:
        main(["run", str(tmp_path / "absent.yaml")])
    assert exc.value.code == 2 and "does not exist" in capsys.readouterr().err


def test_paths_are_relative_to_the_config_file(tmp_path):
    config = changed("data.store", "data/store")
    path = tmp_path / "sub" / "exp.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(config))
    loaded = load_config(path)
    assert loaded.data.store == tmp_path / "sub" / "data" / "store"
    assert loaded.output == tmp_path / "sub" / "exp" and loaded.name == "exp"
    assert loaded.executor.cwd == tmp_path / "sub"


def test_token_counts_take_the_command_lines_suffixes(tmp_path):
    config = changed("ddo.budgets", ["10k", "20K"])
    config["target"]["budget"] = "0.08M"
    config["proxy"] = {"eval": {"max_tokens": "4k"}}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config))
    loaded = load_config(path)
    assert loaded.ddo.budgets == [1e4, 2e4] and loaded.target.budget == 8e4
    assert loaded.proxy.eval.max_tokens == 4000 and isinstance(loaded.proxy.eval.max_tokens, int)
    plain = changed("proxy", {"eval": {"max_tokens": 4000}})  # the same experiment written in digits
    path.write_text(yaml.safe_dump(plain))
    assert load_config(path).proxy.fingerprint_dict() == loaded.proxy.fingerprint_dict()


def test_the_design_version_sets_the_defaults_the_config_leaves_out(tmp_path):
    path = tmp_path / "exp.yaml"

    def ddo(**settings):
        path.write_text(yaml.safe_dump(changed("ddo", {"budgets": [1.0e4, 4.0e4], **settings})))
        return load_config(path).ddo

    # no design: version 1, what a config written before version 2 computed
    assert (ddo().design, ddo().ratios, ddo().replicates) == (1, [0.2, 3.0], 1)
    two = ddo(design=2)
    assert (two.ratios, two.replicates) == ([0.1, 5.0], 4)
    assert ddo(design=2, replicates=2, ratios=[0.2, 3.0]).replicates == 2  # what the config says stays
    assert ddo(design=2, ratios=[0.2, 3.0]).ratios == [0.2, 3.0]


def test_design_2_with_budgets_closer_than_it_was_measured_warns_and_says_what_would_match():
    from autoscale.methods.autoscale import DDOConfig, design_warnings

    (warning,) = design_warnings(DDOConfig(design=2, budgets=[1e6, 4e6]))
    assert "16x apart; these are 4x apart" in warning and "250k" in warning
    assert design_warnings(DDOConfig(design=2, budgets=[2.5e5, 4e6])) == []
    assert design_warnings(DDOConfig(budgets=[1e6, 4e6])) == []  # design 1: the budgets are the user's
