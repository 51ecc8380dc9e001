"""The runs table: CSV in and out, the objective, and what bad cells look like to the user."""

from pathlib import Path

import numpy as np
import pytest

from autoscale.ddo.plan import design_tokens, plan_ddo
from autoscale.ddo.runs import RunsTable
from autoscale.errors import AutoscaleError
from autoscale.mixture import Mixture

# the published GPT-2 Large DDO runs, shipped with the repository (source: examples/README.md)
REFERENCE = str(Path(__file__).resolve().parents[1] / "examples" / "ddo_gpt2_large_1.2B.csv")

CSV = """run,tokens.web,tokens.code,eval.web,eval.code
base,100,100,3.0,5.0
web-x0.5,50,100,3.5,5.1
web-x2,200,100,2.8,4.9
"""


def test_reference_table_reads_with_its_domain_order_and_mean_objective():
    table = RunsTable.read_csv(REFERENCE)
    assert table.domains == ("common_crawl", "github", "books", "wiki", "c4", "stackexchange", "arxiv")
    assert table.n_runs == 15 and table.runs[0] == "base"
    assert table.objective()[0] == pytest.approx(28.1137, abs=1e-4)  # METHOD.md: 28.11 uniform


def test_objective_is_the_mean_or_a_weighted_mean_of_evals():
    table = RunsTable.parse_csv(CSV)
    assert table.objective().tolist() == [4.0, 4.3, 3.85]
    assert table.objective({"web": 3, "code": 1}).tolist() == pytest.approx([3.5, 3.9, 3.325])
    assert table.objective({"code": 1}).tolist() == [5.0, 5.1, 4.9]  # names left out weigh 0


def test_csv_round_trip_is_exact(tmp_path):
    table = RunsTable.parse_csv(CSV)
    path = tmp_path / "runs.csv"
    table.to_csv(path)
    back = RunsTable.read_csv(path)
    assert back.runs == table.runs and back.domains == table.domains
    assert np.array_equal(back.tokens, table.tokens) and np.array_equal(back.evals, table.evals)
    assert path.read_text().splitlines()[1] == "base,100,100,3,5"  # whole numbers written without ".0"
    assert [p.name for p in tmp_path.iterdir()] == ["runs.csv"]  # no temporary left behind


def test_planned_table_has_empty_evals_that_must_be_filled_before_scoring():
    table = plan_ddo(["web", "code"], budget=1000)
    back = RunsTable.parse_csv(table.format_csv())
    assert not back.filled and np.isnan(back.evals).all()
    with pytest.raises(AutoscaleError, match="run 'base' has no value for eval.web"):
        back.objective()
    filled = back.with_evals(np.ones((back.n_runs, 2)))
    assert filled.filled and filled.objective().tolist() == [1.0] * back.n_runs


def test_unicode_domain_names_and_a_byte_order_mark_survive():
    text = "\ufeffrun,tokens.wiki-日本語,tokens.données,eval.x\nbase,1,2,3\n"
    table = RunsTable.parse_csv(text)
    assert table.domains == ("wiki-日本語", "données")
    assert RunsTable.parse_csv(table.format_csv()).domains == table.domains


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("\n\n", "is empty"),
        ("run,tokens.a,eval.a\n", "header but no runs"),
        ("tokens.a,eval.a\n1,2\n", "no 'run' column"),
        ("run,eval.a\nbase,2\n", "no tokens.<domain> columns"),
        ("run,tokens.a,step,eval.a\nbase,1,0,2\n", "unknown column 'step'"),
        ("run,seed,tokens.a,eval.a\nbase,0.5,1,2\n", "seed is not an integer: '0.5'"),
        ("run,seed,tokens.a,eval.a\nbase,x,1,2\n", "seed is not an integer: 'x'"),
        ("run,seed,tokens.a,eval.a\nbase,0,1,2\nagain,0,1,3\n", "same tokens and the same seed 0: a duplicate"),
        ("run,tokens.a,tokens.a,eval.a\nbase,1,1,2\n", "duplicate domain name 'a'"),
        ("run,tokens.a,eval.x,eval.x\nbase,1,1,2\n", "duplicate eval name 'x'"),
        ("run,tokens.a,eval.a\nbase,many,2\n", "tokens.a is not a number: 'many'"),
        ("run,tokens.a,eval.a\nbase,1,nan\n", "eval.a is NaN"),
        ("run,tokens.a,eval.a\nbase,inf,2\n", "tokens.a is infinite"),
        ("run,tokens.a,eval.a\nbase,-5,2\n", "tokens.a is negative"),
        ("run,tokens.a,eval.a\nbase,,2\n", "tokens.a is empty"),
        ("run,tokens.a,eval.a\nbase,1\n", "line 2: 2 cells, the header has 3"),
        ("run,tokens.a,eval.a\n,1,2\n", "empty run name"),
    ],
)
def test_bad_tables_are_one_line_user_errors(text, message):
    with pytest.raises(AutoscaleError, match=message) as err:
        RunsTable.parse_csv(text, "runs table 'x.csv'")
    assert "\n" not in str(err.value)


def test_unreadable_files_are_user_errors(tmp_path):
    with pytest.raises(AutoscaleError, match="No such file"):
        RunsTable.read_csv(tmp_path / "missing.csv")
    with pytest.raises(AutoscaleError, match="cannot read runs table"):
        RunsTable.read_csv(tmp_path)
    binary = tmp_path / "runs.csv"
    binary.write_bytes(b"run,tokens.a\n\xff\xfe\x00\x81")
    with pytest.raises(AutoscaleError, match="cannot read runs table"):
        RunsTable.read_csv(binary)


def test_eval_weights_are_checked_against_the_eval_names():
    table = RunsTable.parse_csv(CSV)
    with pytest.raises(AutoscaleError, match="unknown eval 'math'"):
        table.objective({"math": 1})
    with pytest.raises(AutoscaleError, match="at least one weight must be positive"):
        table.objective({"web": 0})
    with pytest.raises(AutoscaleError, match=">= 0"):
        table.objective({"web": -1})


def test_plan_design_has_one_run_per_domain_and_ratio():
    table = plan_ddo(["a", "b", "c"], budget=1.2e9, ratios=(0.2, 0.5, 2, 3), eval_names=("val",))
    assert table.n_runs == 1 + 4 * 3
    assert table.runs[:3] == ("base", "a-x0.2", "b-x0.2") and table.eval_names == ("val",)
    base = table.tokens[0]
    assert base.tolist() == [4e8] * 3
    for row in table.tokens[1:]:
        assert (row != base).sum() == 1  # exactly one domain changed, the others held fixed
    assert sorted(set(table.tokens[:, 0] / 4e8)) == [0.2, 0.5, 1.0, 2.0, 3.0]


def test_plan_from_a_base_mixture_scales_it_to_the_budget():
    base = Mixture({"web": 3.0, "code": 1.0})
    table = plan_ddo(base=base, budget=4000, ratios=(0.5, 2))
    assert table.domains == ("web", "code") and table.tokens[0].tolist() == [3000, 1000]
    assert table.tokens[table.runs.index("code-x2")].tolist() == [3000, 2000]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"domains": ["a", "a"], "budget": 10}, "duplicate domain name 'a'"),
        ({"domains": ["a", "b"]}, "needs a budget"),
        ({"domains": ["a", "b"], "budget": -1}, "positive number of tokens"),
        ({"domains": ["a", "b"], "budget": 10, "ratios": (1.0, 2.0)}, "other than 1"),
        ({"domains": ["a", "b"], "budget": 10, "ratios": (2.0, 2.0)}, "distinct"),
        ({"domains": ["a", "c"], "base": Mixture({"a": 1.0, "b": 1.0})}, "differ from the base"),
        ({"base": Mixture({"a": 1.0, "b": 0.0})}, "no tokens"),
    ],
)
def test_bad_plans_are_user_errors(kwargs, message):
    with pytest.raises(AutoscaleError, match=message):
        plan_ddo(**kwargs)


@pytest.mark.parametrize("ratios", [(0.2, 3.0), (0.5, 2.0, 4.0)])
@pytest.mark.parametrize("m", [2, 7, 24])
def test_design_tokens_is_what_the_plan_trains_for_any_base(m, ratios):
    rng = np.random.default_rng(m)
    base = Mixture.from_weights(dict(zip([f"d{i}" for i in range(m)], rng.dirichlet(np.ones(m)), strict=True)),
                                1e9)
    plan = plan_ddo(base=base, ratios=ratios)
    assert plan.tokens.sum() / 1e9 == pytest.approx(design_tokens(m, ratios), rel=1e-6)
