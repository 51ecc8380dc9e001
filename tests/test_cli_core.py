"""`autoscale plan`, `fit` and `predict` from the command line, good input and bad."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autoscale.cli import main
from autoscale.ddo.runs import RunsTable
from autoscale.mixture import Mixture
from test_ddo_fit import PUBLISHED, PUBLISHED_WEIGHTS, SeparableWorld

# the published GPT-2 Large DDO runs, shipped with the repository (source: examples/README.md)
REFERENCE = str(Path(__file__).resolve().parents[1] / "examples" / "ddo_gpt2_large_1.2B.csv")
REFERENCE_TEXT = Path(REFERENCE).read_text()
AUTOSCALE = Path(sys.executable).with_name("autoscale")


def run(args):
    """Run the CLI in-process; returns the exit status."""
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    return exc.value.code


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def mixture_file(path: Path, tokens: dict, **meta) -> Path:
    return write(path, Mixture(tokens, meta).to_json())


# -- fit -------------------------------------------------------------------------------------------


def test_fit_json_reproduces_the_published_numbers():
    # The "done when" command, through the installed console script.
    proc = subprocess.run([AUTOSCALE, "fit", REFERENCE, "--json"], capture_output=True, text=True, check=True)
    data = json.loads(proc.stdout)
    assert list(data["weights"].values()) == pytest.approx(PUBLISHED_WEIGHTS, abs=1e-3)
    for d, abc in PUBLISHED.items():
        fit = data["fits"][d]
        assert (fit["a"], fit["b"], fit["c"]) == pytest.approx(abc, abs=1e-4)
    assert data["bounded"] == {"github": "floor"}
    assert data["predicted_objective"] == pytest.approx(26.48, abs=0.01)
    assert data["base_objective"] == pytest.approx(28.11, abs=0.01)
    assert proc.stderr == "warning: the noise is unknown (one run per design point): train replicates to measure it\n"


def test_fit_prints_a_table_and_writes_the_same_json(tmp_path, capsys):
    out = tmp_path / "ddo.json"
    assert run(["fit", REFERENCE, "--out", out]) == 0
    text = capsys.readouterr().out
    assert "common_crawl" in text and "floor" in text and "6.61618" in text
    assert "predicted objective 26.48" in text and "vs base 28.11" in text
    assert run(["fit", REFERENCE, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(out.read_text())


def test_fit_budget_caps_and_eval_weights(tmp_path, capsys):
    args = ["fit", REFERENCE, "--json", "--budget", "2.4B", "--max-tokens", "c4=400M",
            "--eval-weights", "c4=1,wiki=1"]
    assert run(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["budget"] == pytest.approx(2.4e9)
    assert data["tokens"]["c4"] == pytest.approx(4e8) and data["bounded"]["c4"] == "cap"


def test_fit_bootstrap_with_replicates_reports_intervals(tmp_path, capsys):
    world = SeparableWorld.random(("web", "code", "books"), seed=4)
    assert run(["plan", "--domains", "web,code,books", "--budget", "3e6", "--out", tmp_path / "plan.csv"]) == 0
    plan = RunsTable.read_csv(tmp_path / "plan.csv")
    idx = np.repeat(np.arange(plan.n_runs), 2)
    twice = RunsTable(tuple(f"{plan.runs[i]}#{k % 2}" for k, i in enumerate(idx)), plan.domains,
                      plan.tokens[idx], plan.eval_names, plan.evals[idx])
    world.fill(twice, noise=1e-3).to_csv(tmp_path / "runs.csv")
    capsys.readouterr()
    assert run(["fit", tmp_path / "runs.csv", "--bootstrap", "30", "--seed", "1"]) == 0
    assert "95% interval" in capsys.readouterr().out


def test_plan_fill_fit_round_trip_with_twelve_unicode_domains(tmp_path, capsys):
    domains = ("wiki-日本語", "código", "news—2024", "a b", "🙂", "c4", "the-pile", "données", "中文网页",
               "stack-exchange", "arXiv", "x.y")
    world = SeparableWorld.random(domains, seed=12)
    runs = tmp_path / "runs.csv"
    assert run(["plan", "--domains", ",".join(domains), "--budget", "1.2e9", "--out", runs]) == 0
    assert "wrote 25 runs" in capsys.readouterr().out
    world.fill(RunsTable.read_csv(runs)).to_csv(runs)
    assert run(["fit", runs, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert tuple(data["tokens"]) == domains
    for i, d in enumerate(domains):
        assert data["fits"][d]["b"] == pytest.approx(world.b[i], rel=1e-6)
    expected = world.optimum(12, lo=0.2) / 12
    assert list(data["weights"].values()) == pytest.approx(expected.tolist(), abs=1e-6)


def test_plan_to_stdout_with_a_base_mixture_and_ratios(tmp_path, capsys):
    base = mixture_file(tmp_path / "base.json", {"web": 3.0, "code": 1.0})
    assert run(["plan", "--base", base, "--budget", "4k", "--ratios", "0.2,0.5,2,3", "--eval-names", "val"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "run,seed,tokens.web,tokens.code,eval.val"
    assert lines[1] == "base,0,3000,1000," and len(lines) == 1 + 1 + 4 * 2


def test_plan_with_replicates_writes_every_run_once_per_seed(tmp_path, capsys):
    out = tmp_path / "runs.csv"
    assert run(["plan", "--domains", "web,code", "--budget", "4k", "--replicates", "3", "--seed", "5",
                "--out", str(out)]) == 0
    assert "wrote 15 runs ((base + 2 domains x 2 ratios) x 3 seeds)" in capsys.readouterr().out
    table = RunsTable.read_csv(out)
    assert table.seeds.tolist() == [5] * 5 + [6] * 5 + [7] * 5
    assert table.runs[:5] == table.runs[5:10] and table.replicates == 3


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "x"])
def test_plan_rejects_bad_replicates(tmp_path, capsys, value):
    out = tmp_path / "runs.csv"
    code = run(["plan", "--domains", "web,code", "--budget", "4k", "--replicates", value, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    if value in ("0", "-1"):  # ours: one line; non-integers: click's usage error
        assert err.strip().splitlines() == [f"error: replicates must be an integer >= 1, got {value}"]
    else:
        assert "Invalid value for '--replicates'" in err


# -- predict ---------------------------------------------------------------------------------------


def test_predict_steps_and_target(tmp_path, capsys):
    a = mixture_file(tmp_path / "a.json", {"web": 1e8, "code": 4e7})
    b = mixture_file(tmp_path / "b.json", {"web": 3e8, "code": 8e7})
    assert run(["predict", a, b, "--steps", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tokens"] == pytest.approx({"web": 9e8, "code": 1.6e8})  # B^2 / A
    out = tmp_path / "c.json"
    assert run(["predict", a, b, "--target", "10B", "--out", out]) == 0
    text = capsys.readouterr().out
    assert "two-point law" in text and "web" in text
    assert Mixture.from_json(out.read_text()).budget == pytest.approx(1e10)


def test_predict_from_three_fits_with_offsets_and_floors(tmp_path, capsys):
    files = []
    for k, budget in enumerate(("0.6e9", "1.2e9", "2.4e9")):
        out = tmp_path / f"ddo{k}.json"
        assert run(["fit", REFERENCE, "--budget", budget, "--json", "--out", out]) == 0
        files.append(out)
    capsys.readouterr()
    assert run(["predict", *files, "--target", "10B", "--offsets", "--min-weight", "0.03"]) == 0
    text = capsys.readouterr().out
    assert "least-squares line" in text and "DDO offsets" in text and "floor" in text


def test_predict_json_keeps_stdout_clean_and_warns_on_stderr(tmp_path, capsys):
    a = mixture_file(tmp_path / "a.json", {"web": 1e8, "code": 4e7}, bounded={"code": "floor"})
    b = mixture_file(tmp_path / "b.json", {"web": 3e8, "code": 8e7}, bounded={})
    assert run(["predict", a, b, "--steps", "2", "--json", "--max-tokens", "web=1e9"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)
    assert "warning: domain 'code' sat at its floor" in captured.err
    assert "warning: domain 'web': the law asks for" in captured.err


# -- bad input: exit 2, one line naming the problem, nothing written ---------------------------


def assert_refused(capsys, tmp_path, args, message, out_name="out.json"):
    before = set(tmp_path.iterdir())
    out = tmp_path / out_name
    assert run([*args, "--out", out]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    assert message in captured.err
    assert captured.out == ""
    assert not out.exists() and set(tmp_path.iterdir()) == before  # no file, no temporary


def reference_with(edit) -> str:
    lines = REFERENCE_TEXT.splitlines()
    return "\n".join(edit(lines)) + "\n"


def replace_cell(row: int, col: int, value: str):
    def edit(lines):
        cells = lines[row].split(",")
        cells[col] = value
        lines[row] = ",".join(cells)
        return lines
    return edit


FIT_CASES = {
    "empty file": ("", [], "is empty"),
    "header only": (REFERENCE_TEXT.splitlines()[0] + "\n", [], "has a header but no runs"),
    "no base run": (reference_with(lambda ls: [ls[0], *ls[2:]]), [], "no base run"),
    "two domains changed": (reference_with(replace_cell(2, 2, "34285714")), [],
                            "run 'common_crawl-x0.2' changes 2 domains (common_crawl, github)"),
    "too few points": (reference_with(lambda ls: [ls[i] for i in range(len(ls)) if i != 12]), [],
                       "domain 'wiki' has 2 distinct token amounts"),
    "non-numeric cell": (reference_with(replace_cell(3, 9, "n/a")), [], "eval.github is not a number: 'n/a'"),
    "NaN cell": (reference_with(replace_cell(3, 9, "NaN")), [], "eval.github is NaN"),
    "infinite cell": (reference_with(replace_cell(3, 1, "inf")), [], "tokens.common_crawl is infinite"),
    "negative tokens": (reference_with(replace_cell(3, 1, "-171428571")), [], "tokens.common_crawl is negative"),
    "duplicate domain": (reference_with(lambda ls: [ls[0].replace("tokens.github", "tokens.books"), *ls[1:]]), [],
                         "duplicate domain name 'books'"),
    "unknown --max-tokens domain": (REFERENCE_TEXT, ["--max-tokens", "reddit=1e9"], "unknown name 'reddit'"),
    "duplicate --max-tokens domain": (REFERENCE_TEXT, ["--max-tokens", "c4=1e9,c4=2e9"], "'c4' given twice"),
    "unknown --eval-weights name": (REFERENCE_TEXT, ["--eval-weights", "math=1"], "unknown name 'math'"),
    "caps below the budget": (REFERENCE_TEXT, ["--max-tokens", ",".join(f"{d}=1e8" for d in PUBLISHED)],
                              "caps allow"),
    "floors above the budget": (REFERENCE_TEXT, ["--min-ratio", "1.5"], "floors need"),
    "bad budget": (REFERENCE_TEXT, ["--budget", "lots"], "--budget: expected a number of tokens"),
    "negative budget": (REFERENCE_TEXT, ["--budget=-1e9"], "--budget: must be a positive, finite number"),
    "bootstrap without replicates": (REFERENCE_TEXT, ["--bootstrap", "20"], "bootstrap needs replicate runs"),
    "one domain": ("run,tokens.web,eval.web\nbase,100,5\nweb-x0.2,20,6\nweb-x3,300,4\n", [],
                   "a data mixture needs at least 2 domains, got 1 (web)"),
    "tokens that overflow": ("run,tokens.a,tokens.b,eval.a\nbase,1e308,1e308,5\n", [],
                             "run 'base': its tokens overflow when summed; a mixture's total must be finite"),
    "comma in a domain name": (reference_with(lambda ls: [ls[0].replace("tokens.books", '"tokens.a,b"'), *ls[1:]]),
                               [], "domain name 'a,b' contains ','"),
}


@pytest.mark.parametrize("case", FIT_CASES, ids=list(FIT_CASES))
def test_fit_refuses_bad_input(tmp_path, capsys, case):
    text, extra, message = FIT_CASES[case]
    runs = write(tmp_path / "runs.csv", text)
    assert_refused(capsys, tmp_path, ["fit", runs, *extra], message)


def test_fit_refuses_unreadable_files(tmp_path, capsys):
    assert_refused(capsys, tmp_path, ["fit", tmp_path / "missing.csv"], "No such file")
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    assert_refused(capsys, tmp_path, ["fit", folder], "cannot read runs table")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    assert_refused(capsys, tmp_path, ["fit", binary], "cannot read runs table")


PLAN_CASES = {
    "duplicate domain": (["--domains", "a,b,a", "--budget", "1e9"], "duplicate domain name 'a'"),
    "no budget": (["--domains", "a,b"], "needs a budget"),
    "no domains": (["--budget", "1e9"], "needs the domains"),
    "bad ratios": (["--domains", "a,b", "--budget", "1e9", "--ratios", "0.2,x"], "--ratios"),
    "ratio of one": (["--domains", "a,b", "--budget", "1e9", "--ratios", "1,3"], "other than 1"),
    "one domain": (["--domains", "web", "--budget", "1e9"], "a data mixture needs at least 2 domains, got 1 (web)"),
    "a budget whose runs overflow": (["--domains", "a,b", "--budget", "1.7e308"],
                                     "run a-x3 (base run of 1.7e+308 tokens, 'a' x3) overflows: a mixture's total "
                                     "must be finite"),
    "a budget that overflows x3 only": (["--domains", "a,b", "--budget", "1e308"], "a mixture's total must be finite"),
    "a domain name with '='": (["--domains", "a=1,b", "--budget", "1e9"], "domain name 'a=1' contains '='"),
}


@pytest.mark.parametrize("case", PLAN_CASES, ids=list(PLAN_CASES))
def test_plan_refuses_bad_input(tmp_path, capsys, case):
    args, message = PLAN_CASES[case]
    assert_refused(capsys, tmp_path, ["plan", *args], message, out_name="runs.csv")


def test_predict_refuses_bad_input(tmp_path, capsys):
    a = mixture_file(tmp_path / "a.json", {"web": 1e8, "code": 4e7})
    b = mixture_file(tmp_path / "b.json", {"web": 3e8, "code": 8e7})
    other = mixture_file(tmp_path / "other.json", {"web": 3e8, "books": 8e7})
    broken = write(tmp_path / "broken.json", '{"tokens": {"web": 1e8,')
    no_tokens = write(tmp_path / "weights.json", '{"weights": {"web": 0.5, "code": 0.5}}')
    empty = write(tmp_path / "empty.json", "")
    cases = [
        ([a, other, "--steps", "1"], "different domains"),
        ([a, broken, "--steps", "1"], "malformed JSON"),
        ([a, no_tokens, "--steps", "1"], "no 'tokens' field"),
        ([a, empty, "--steps", "1"], "is empty"),
        ([a, tmp_path / "missing.json", "--steps", "1"], "does not exist"),
        ([a, b, "--target", "-5"], "--target: must be a positive, finite number of tokens"),
        ([a, b, "--target=-1e9"], "--target: must be a positive, finite number of tokens"),
        ([a, b], "exactly one of"),
        ([a, b, "--steps", "0"], "steps must be a whole number"),
        ([a, "--steps", "1"], "at least two mixture files"),
        ([a, b, "--steps", "1", "--offsets"], "offset_tokens"),
        ([a, b, "--steps", "1", "--max-tokens", "reddit=1e9"], "unknown name 'reddit'"),
        ([a, b, "--steps", "1", "--min-weight", "0.6"], "floors need"),
    ]
    for args, message in cases:
        assert_refused(capsys, tmp_path, ["predict", *args], message)


def test_predict_refuses_a_target_below_the_inputs_and_a_total_that_overflows(tmp_path, capsys):
    a = mixture_file(tmp_path / "a.json", {"web": 1e8, "code": 4e7})
    b = mixture_file(tmp_path / "b.json", {"web": 3e8, "code": 8e7})
    huge = write(tmp_path / "huge.json", '{"tokens": {"web": 1e308, "code": 1e308}}')
    for target in ("1.2e7", "1.3e8"):  # 12x below the smaller budget (1.4e8), and just below it
        assert_refused(capsys, tmp_path, ["predict", a, b, "--target", target],
                       "is below the smallest input budget (inputs: 1.4e+08, 3.8e+08 tokens)")
    assert_refused(capsys, tmp_path, ["predict", a, huge, "--steps", "1"],
                   "the total of 1e+308, 1e+308 overflows; a mixture's total must be finite")
    large = mixture_file(tmp_path / "large.json", {"web": 3e299, "code": 8e299})  # B^2 / A overflows
    assert_refused(capsys, tmp_path, ["predict", a, large, "--steps", "1"],
                   "the law's mixture at s = 2 overflows: a mixture's total must be finite")
    for target in ("1.4e8", "2e8", "3.8e8"):  # the smaller budget itself, between (interpolation), the larger
        assert run(["predict", a, b, "--target", target, "--json"]) == 0
        assert Mixture.from_json(capsys.readouterr().out).budget == pytest.approx(float(target))


def test_a_comma_in_a_domain_name_is_refused_everywhere(tmp_path, capsys):
    """One rule for domain names, whether they come from a store, a mixture, a runs table or a config."""
    comma = write(tmp_path / "comma.json", '{"tokens": {"a,b": 1e8, "code": 4e7}}')
    plain = mixture_file(tmp_path / "plain.json", {"web": 3e8, "code": 8e7})
    runs = write(tmp_path / "runs.csv", reference_with(
        lambda ls: [ls[0].replace("tokens.books", '"tokens.a,b"'), *ls[1:]]))
    message = "domain name 'a,b' contains ','"
    assert_refused(capsys, tmp_path, ["plan", "--base", comma], message, out_name="runs_out.csv")
    assert_refused(capsys, tmp_path, ["fit", runs], message)
    assert_refused(capsys, tmp_path, ["predict", comma, plain, "--steps", "1"], message)
    for fmt in ("megatron", "olmo-core", "hf", "json"):
        assert_refused(capsys, tmp_path, ["export", comma, "--format", fmt], message, out_name=f"out.{fmt}")
    config = write(tmp_path / "exp.yaml", json.dumps({
        "data": {"domains": ["a,b", "code"], "fingerprint": "x"}, "ddo": {"budgets": [1e4, 2e4]},
        "executor": {"kind": "command", "command": ["true", "{run_dir}"]}}))
    assert run(["run", config]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and f"data.domains: {message}" in err
    assert not (tmp_path / "exp").exists()
