"""What a command-line user expects of every command: -h, click's usage errors, one way to write
token counts, and progress lines in logs."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from autoscale.cli import COMMANDS
from autoscale.cli.common import parse_tokens
from autoscale.errors import AutoscaleError
from autoscale.mixture import Mixture
from cli_helpers import run_cli, tiny_experiment

AUTOSCALE = Path(sys.executable).with_name("autoscale")
DATA_COMMANDS = [["data", "fetch-demo"], ["data", "prepare"], ["data", "stats"]]


def cli(capsys, *args) -> tuple[int, str, str]:
    code = run_cli(*map(str, args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- -h -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], *([name] for name in COMMANDS), *DATA_COMMANDS], ids=" ".join)
def test_dash_h_is_help_on_every_command(capsys, command):
    code, out, _ = cli(capsys, *command, "-h")
    assert code == 0 and out.startswith(f"Usage: autoscale {' '.join(command)}".rstrip())
    assert cli(capsys, *command, "--help") == (0, out, "")


# -- usage errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("args, where, error", [
    (["plan", "--bogus"], "autoscale plan", "No such option '--bogus'."),
    (["fit"], "autoscale fit", "Missing argument 'RUNS_CSV'."),
    (["plot"], "autoscale", "No such command 'plot'."),
    (["data", "prepare"], "autoscale data prepare", "Missing argument 'STORE'."),
    (["fit", "x.csv", "--bootstrap", "many"], "autoscale fit", "Invalid value for '--bootstrap': 'many' is not a valid integer"),
])
def test_a_usage_error_is_one_line_naming_the_help_to_read(capsys, args, where, error):
    code, out, err = cli(capsys, *args)
    assert code == 2 and out == ""
    [line] = err.splitlines()  # click's message (with its "Did you mean" where it has one) on one line
    assert line.startswith(f"error: {error}") and line.endswith(f" (see '{where} --help')"), line


# -- token counts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text, tokens", [
    ("250000", 250_000), ("2.5e5", 250_000), ("250_000", 250_000), ("16k", 16_000), ("16K", 16_000),
    ("4M", 4_000_000), ("4m", 4_000_000), ("4.1M", 4_100_000), ("1.2B", 1_200_000_000), ("1.2g", 1_200_000_000),
    ("1T", 10**12), (" 3k ", 3000),
])
def test_token_counts_take_the_same_suffixes_exactly(text, tokens):
    assert parse_tokens(text) == tokens  # exact: 4.1M is 4100000, not 4099999.9999999995
    assert parse_tokens(text, whole=True) == tokens


@pytest.mark.parametrize("text, message", [
    ("lots", "expected a number of tokens"), ("k", "expected a number of tokens"), ("-5", "positive"),
    ("0", "positive"), ("nan", "positive"), ("inf", "positive"), ("1e400", "positive"), ("2e308k", "positive"),
])
def test_bad_token_counts_are_one_user_error(text, message):
    with pytest.raises(AutoscaleError, match=message):
        parse_tokens(text, "--budget")


def test_every_token_count_option_takes_suffixes(tmp_path, capsys):
    def same(*args_with_suffix_and_plain) -> str:
        """Run the command with the suffixed spelling, then the plain one: the same stdout."""
        outs = []
        for args in args_with_suffix_and_plain:
            code, out, err = cli(capsys, *args)
            assert code == 0, err
            outs.append(out)
        assert outs[0] == outs[1]
        return outs[0]

    plan = same(["plan", "--domains", "web,code", "--budget", "4k"], ["plan", "--domains", "web,code", "--budget", "4000"])
    assert "base,0,2000,2000," in plan
    runs = tmp_path / "filled.csv"
    runs.write_text("run,tokens.web,tokens.code,eval.web,eval.code\nbase,2000,2000,10,10\n"
                    "web-x0.2,400,2000,13,10\nweb-x3,6000,2000,8,10\ncode-x0.2,2000,400,10,12\n"
                    "code-x3,2000,6000,10,9\n")
    fitted = same(["fit", runs, "--budget", "1.2M", "--max-tokens", "web=500k", "--json"],
                  ["fit", runs, "--budget", "1200000", "--max-tokens", "web=500000", "--json"])
    small = Mixture.from_json(fitted)
    assert small.budget == pytest.approx(1.2e6) and small.tokens["web"] == pytest.approx(5e5)  # at its cap
    (tmp_path / "small.json").write_text(fitted)
    (tmp_path / "large.json").write_text(Mixture({"web": 2.4e6, "code": 2.4e6}).to_json())
    inputs = [tmp_path / "small.json", tmp_path / "large.json"]
    predicted = same(["predict", *inputs, "--target", "9.6m", "--max-tokens", "web=3.5M", "--json"],
                     ["predict", *inputs, "--target", "9600000", "--max-tokens", "web=3500000", "--json"])
    assert Mixture.from_json(predicted).budget == pytest.approx(9.6e6)
    exported = same(["export", inputs[1], "--format", "olmo-core", "--global-batch-tokens", "4M"],
                    ["export", inputs[1], "--format", "olmo-core", "--global-batch-tokens", "4000000"])
    assert yaml.safe_load(exported)["global_batch_size"] == 4_000_000
    # data prepare --val-tokens is parsed first: with nothing to prepare, that is the error
    code, _, err = cli(capsys, "data", "prepare", tmp_path / "store", "--val-tokens", "16k")
    assert code == 2 and "nothing to prepare" in err
    code, _, err = cli(capsys, "data", "prepare", tmp_path / "store", "--val-tokens", "16q")
    assert code == 2 and err == "error: --val-tokens: expected a number of tokens like 2e5 or 200k, got '16q'\n"
    code, _, err = cli(capsys, "data", "prepare", tmp_path / "store", "--val-tokens", "1.5")
    assert code == 2 and err == "error: --val-tokens: must be a whole number of tokens, got '1.5'\n"


# -- progress in logs -----------------------------------------------------------------------------

LINE = re.compile(r"^\[(\d+)/(\d+)\] (ddo \d+|validate): (\S+) completed in \d+\.\ds$")


def test_run_prints_one_line_per_finished_run_when_not_on_a_terminal(tmp_path, capsys, simworld_in_process):
    config = tiny_experiment(tmp_path, "logs")
    code, out, err = cli(capsys, "run", config)
    assert code == 0, err
    lines = err.splitlines()
    finished = [m.groups() for line in lines if (m := LINE.match(line))]
    by_stage: dict[str, list[int]] = {}
    for done, total, stage, _ in finished:
        by_stage.setdefault(stage, []).append(int(done))
        assert int(total) == (3 if stage == "validate" else 7)
    # every run of every stage, counted up one by one, each line as it finishes
    assert by_stage == {"ddo 1000000": list(range(1, 8)), "ddo 4000000": list(range(1, 8)),
                        "validate": [1, 2, 3]}
    assert "ddo 1000000: 7 runs" in lines
    assert not any(ch in err for ch in "━\r\x1b")  # no progress bars, no terminal control codes
    assert "Mixtures (weights)" in out  # the results stay on stdout

    # rerun: everything is reused, the stages say so, no run line
    code, out, err = cli(capsys, "run", config)
    assert code == 0 and not LINE.search(err) and "ddo 1000000: 7 runs, 7 already finished" in err.splitlines()


def test_quiet_prints_failures_only(tmp_path, capsys, simworld_in_process):
    config = tiny_experiment(tmp_path, "quiet", target={"budget": 16_000_000})
    code, out, err = cli(capsys, "run", config, "--quiet")
    assert code == 0 and err == ""


def test_a_terminal_keeps_the_live_display(tmp_path):
    config = tiny_experiment(tmp_path, "tty", target={"budget": 16_000_000})
    controller, terminal = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
    proc = subprocess.Popen([str(AUTOSCALE), "run", str(config)], stdin=terminal, stdout=terminal, stderr=terminal,
                            env=env, close_fds=True)
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    assert proc.wait(timeout=120) == 0
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert "━" in screen and "7/7 runs" in screen  # rich's bars
    assert not re.search(r"^\[\d+/\d+\] ", screen, re.M)  # not the log lines


def test_failed_runs_are_lines_too(tmp_path, capsys, simworld_in_process):
    config = tiny_experiment(tmp_path, "broken", target={"budget": 16_000_000})
    settings = yaml.safe_load(config.read_text())
    settings["executor"]["command"] += ["--domains", "web,code,wiki"]  # the world disagrees: every run fails
    settings["executor"]["retries"] = 0
    config.write_text(yaml.safe_dump(settings))
    code, _, err = cli(capsys, "run", config)
    assert code == 2
    failed = [line for line in err.splitlines() if re.match(r"^\[0/7\] ddo 1000000: \S+ failed: ", line)]
    assert len(failed) == 3 and "mixture domains" in failed[0]
    # the same error three times: the stage stops, in one line, rather than train 4 more runs to fail
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ddo 1000000: its first 3 runs all failed the same way, so it stopped before "
                           "the other 4: ") and "mixture domains" in last, last
    assert json.loads((tmp_path / "broken" / "experiment.json").read_text())["domains"] == ["web", "code", "books"]


# -- token counts and ratios as people write them ------------------------------------------------


@pytest.mark.parametrize("tokens, text", [
    (40_000, "40k"), (1_200_000, "1.2M"), (3e9, "3B"), (1_234_567, "1.23M"), (999_999, "1M"), (512, "512"),
    (2e12, "2T"), (None, "-"), (float("nan"), "-"),
])
def test_token_counts_print_as_people_write_them(tokens, text):
    from autoscale.tokens import format_tokens

    assert format_tokens(tokens) == text


def test_a_perturbation_prints_as_planned_not_as_its_rounding():
    from autoscale.cli.core import effects_line
    from autoscale.ddo.noise import Effect

    # x0.2 of 40000/3 tokens, trained in whole batches: 2688 / 13333
    line = effects_line([Effect("web", 2688 / 13333, 0.031, None, None, 1, None, False),
                         Effect("web", 40000 / 13333, -0.02, None, None, 1, None, False)])
    assert line == "x0.2 +3.1%, x3 -2.0%"


def test_the_run_table_prints_budgets_as_token_counts(tmp_path, capsys, simworld_in_process):
    from cli_helpers import run_cli, tiny_experiment

    assert run_cli("run", str(tiny_experiment(tmp_path))) == 0
    out = capsys.readouterr().out
    assert re.search(r"search\s+│?\s*1M\b", out) and re.search(r"\b16M\b", out) and "e+0" not in out, out
