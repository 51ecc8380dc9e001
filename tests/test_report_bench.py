"""The benchmark's arithmetic and its BENCHMARKS.md section, and the demo's comparison mixtures."""

import dataclasses
import html
import math
from pathlib import Path

import numpy as np
import pytest

from autoscale.baselines import LLAMA_TO_DEMO, LLAMA_WEIGHTS, llama_mapping, llama_style
from autoscale.data.demo import DOMAINS as ALL_DOMAINS
from autoscale.gain import paired_gain
from autoscale.recipes.bench import (
    PAPER_HELD_OUT_L1,
    QUICK_BENCH,
    RECORD,
    BenchResult,
    HeldOut,
    PairedSpeedUps,
    compare,
    held_out_budget,
)
from autoscale.recipes.demo import DEFAULT, QUICK, demo_config, with_llama_mapping
from autoscale.recipes.markdown import pair_sd, pairs_needed, record_markdown
from autoscale.report.html import render_html
from autoscale.report.results import ReportData

DOMAINS = ("web", "news", "code")


def test_llama_style_is_web_heavy_both_web_crawls_on_web():
    full = llama_style(ALL_DOMAINS)
    assert set(LLAMA_TO_DEMO.values()) <= set(ALL_DOMAINS)
    assert full["web"] == pytest.approx(LLAMA_WEIGHTS["common_crawl"] + LLAMA_WEIGHTS["c4"])  # 0.82
    assert max(full, key=full.get) == "web"
    assert full["news"] == 0.0  # State of the Union addresses: no LLaMA source
    assert full["code"] == pytest.approx(LLAMA_WEIGHTS["github"])
    quick = llama_style(("web", "news", "code", "books"))
    assert sum(quick.values()) == pytest.approx(1.0)
    assert max(quick, key=quick.get) == "web"
    # renormalised over 4 domains, ratios kept
    assert quick["web"] / quick["code"] == pytest.approx(0.82 / 0.045)


def test_the_report_states_the_whole_llama_mapping():
    four = ("web", "news", "code", "books")
    data = with_llama_mapping(ReportData(title="t", domains=four), four)
    line = data.facts["llama-style mixture"]
    assert html.escape(line) in render_html(data, {})  # in the page's facts table
    assert "CommonCrawl 0.67 + C4 0.15 -> web" in line
    assert "no LLaMA source -> news" in line and "GitHub 0.045 -> code" in line
    assert "not in this run: Wikipedia 0.045, ArXiv 0.025, StackExchange 0.02" in line
    assert "web 0.901" in line
    assert llama_mapping(ALL_DOMAINS).count("->") == len(ALL_DOMAINS)


def test_demo_and_bench_budgets_follow_the_paper_shape():
    for plan in (DEFAULT, QUICK, RECORD.proxy, QUICK_BENCH.proxy):
        n1, n2 = plan.budgets
        # the quick demo validates at 2 N2: half the cost of N2^2 / N1, and still past the search
        assert n2 == 4 * n1 and plan.target == pytest.approx(2 * n2 if plan is QUICK else n2 * n2 / n1)
    config = demo_config(QUICK, Path("/corpus"), QUICK.domains)
    assert config["target"]["compare"] == ["uniform", "natural", "ddo", "llama-style"]  # from the baseline registry
    assert config["target"]["mixtures"] == {}
    assert config["data"]["domains"] == list(QUICK.domains)
    # the noise-aware design: replicates with a bootstrap, DDO runs evaluated once, several seeds
    assert config["ddo"]["replicates"] == 2 and config["ddo"]["bootstrap"] > 0
    assert config["ddo"]["eval_points"] == 1 and config["ddo"]["max_epochs"] == 4
    assert config["target"]["seeds"] == [0, 1]
    assert demo_config(QUICK, Path("/c"), QUICK.domains, seed=5)["target"]["seeds"] == [5, 6]
    record = demo_config(RECORD.proxy, Path("/c"), RECORD.proxy.domains)
    assert record["executor"] == {"kind": "ray", "retries": 1, "workers": 2, "num_cpus": 1}


def test_searches_use_disjoint_seeds_and_validation_seeds_of_their_own():
    k = RECORD.proxy.replicates
    seeds = [set(range(RECORD.search_seed(i), RECORD.search_seed(i) + k)) for i in range(RECORD.searches)]
    assert RECORD.searches >= 3 and k >= 2 and len(RECORD.proxy.seeds) >= 3
    assert len(set().union(*seeds)) == k * RECORD.searches  # disjoint
    assert not set().union(*seeds) & set(RECORD.proxy.seeds)
    assert 4 * RECORD.proxy.budgets[1] <= RECORD.proxy.target <= 8 * RECORD.proxy.budgets[1]


def test_held_out_budget_is_the_geometric_middle():
    assert held_out_budget((25_000, 100_000)) == 50_000


def test_held_out_l1_distance():
    h = HeldOut(5e4, {"web": 0.5, "news": 0.3, "code": 0.2}, {"web": 0.45, "news": 0.35, "code": 0.2})
    assert h.l1 == pytest.approx(0.1)


def _curve(final: float) -> tuple[list[float], list[float]]:
    return [0.0, 1000.0, 2000.0, 3000.0, 4000.0], [30.0, 20.0, 16.0, 13.0 + (final - 10.0) / 2, final]


FINALS = {
    "predicted": {0: 10.0, 1: 10.2}, "predicted-2": {0: 10.1, 1: 9.9},
    "uniform": {0: 10.5, 1: 10.4}, "natural": {0: 9.0, 1: 9.5},
    "ddo": {0: 10.0, 1: 10.3}, "ddo-2": {0: 11.0, 1: 10.0},
}


def test_compare_pairs_every_search_with_every_seed_and_its_own_reused_ddo():
    curves = {n: {s: _curve(v) for s, v in f.items()} for n, f in FINALS.items()}
    gains, per_search, ups = compare(FINALS, curves, 2, 0.0)
    assert set(gains) == {"uniform", "natural", "ddo"}  # predicted-2 and ddo-2 are no baselines
    expected = [1 - 10.0 / 10.5, 1 - 10.2 / 10.4, 1 - 10.1 / 10.5, 1 - 9.9 / 10.4]
    assert gains["uniform"].seeds == 4 and gains["uniform"].mean == pytest.approx(sum(expected) / 4)
    assert gains["uniform"].verdict == "win"  # every pair gains 2-5%
    assert gains["natural"].verdict == "loss"  # every pair loses 4-12%
    own = [1 - 10.0 / 10.0, 1 - 10.2 / 10.3, 1 - 10.1 / 11.0, 1 - 9.9 / 10.0]  # search 2 against ddo-2
    assert gains["ddo"].mean == pytest.approx(sum(own) / 4)
    assert per_search["ddo"] == pytest.approx((sum(own[:2]) / 2, sum(own[2:]) / 2))
    assert ups["uniform"].reached == 4 and ups["natural"].reached == 0
    assert ups["natural"].describe() == "not reached in any of 4 pairs"
    assert ups["ddo"].values[0] == pytest.approx(0.0)  # reaches ddo's final value at its last point
    # search 2, seed 0: 10.1 against ddo-2's 11.0, crossed between 13.05 and 10.1
    assert ups["ddo"].values[2] == pytest.approx(1 - (3000 + 1000 * (13.05 - 11.0) / (13.05 - 10.1)) / 4000)


def test_paired_speedups_never_average_away_a_pair_that_is_not_reached():
    assert PairedSpeedUps("u", (0.1, None, 0.3)).describe() == (
        "reached in 2 of 3 pairs (median of those +20.0%); not reached in 1")
    assert PairedSpeedUps("u", (0.1, 0.2, 0.3)).describe().startswith("reached in all 3 pairs, median +20.0%")


HELD = HeldOut(50_000, {"web": 0.5, "code": 0.3, "books": 0.2}, {"web": 0.45, "code": 0.35, "books": 0.2}, (0.05, 0.3))


def _result(tmp_path, finals, held=HELD):
    curves = {n: {s: _curve(v) for s, v in f.items()} for n, f in finals.items()}
    gains, per_search, ups = compare(finals, curves, 2, 0.0)
    w = {"web": 0.5, "code": 0.3, "books": 0.2}
    return BenchResult(
        plan=QUICK_BENCH, domains=("web", "code", "books"), seeds=(0, 1),
        predicted={0: w, 1: w}, ddo={0: {10_000: w, 40_000: w}, 1: {10_000: w, 40_000: w}}, oracle=w, natural=w,
        finals=finals, gains=gains, search_gains=per_search, speedups=ups,
        oracle_gain=paired_gain("uniform", finals["oracle"], finals["uniform"]), held_out=held,
        search_tokens=1_600_000, unique_tokens={"web": 10, "code": 20, "books": 30}, wall_time_s=60.0,
        directory=tmp_path, machine={"cpu": "test cpu", "cores": "2"},
    )


def test_record_states_each_verdict_the_oracle_fraction_and_the_goal(tmp_path):
    finals = {**FINALS, "oracle": {0: 10.0, 1: 9.8}}
    result = _result(tmp_path, finals)
    text = record_markdown(result, "autoscale bench --quick")
    assert "Command: `autoscale bench --quick`" in text and "test cpu, 2 cores" in text
    assert "| uniform | 10.500, 10.400 |" in text and "**win**" in text and "**loss**" in text
    oracle = (1 - 10.0 / 10.5 + 1 - 9.8 / 10.4) / 2
    assert result.oracle_fraction == pytest.approx(result.gains["uniform"].mean / oracle)
    assert f"fraction of it: **{result.oracle_fraction:.0%}**" in text
    assert f"**L1 0.100** (95% bootstrap interval 0.050 to 0.300); the authors' check: {PAPER_HELD_OUT_L1}" in text
    assert "**66.7x** one target run" in text  # 1.6M tokens of DDO / the 24k target
    assert "evaluation on the first 1,024 of the 2,048 validation tokens per domain" in text  # eval.max_tokens
    assert "Goal not met" in text and "loses to natural" in text
    assert "reached in all 4 pairs" in text
    # 10 unique web tokens against LLaMA-style's 0.90 x 24k: the cap binds
    assert "LLaMA-style's web: 2162.64 epochs, above the cap of max_epochs 4: the cap binds." in text
    roomy = dataclasses.replace(result, unique_tokens={"web": 10**6, "code": 10**6, "books": 10**6})
    assert "at this target no cap binds" in record_markdown(roomy, "autoscale bench")


def test_record_says_so_when_even_the_oracle_does_not_beat_uniform(tmp_path):
    noisy = _result(tmp_path, {**FINALS, "oracle": {0: 10.6, 1: 10.3}})  # gains -1% and +1%
    assert noisy.oracle_fraction is not None and noisy.oracle_gain.verdict == "not distinguishable"
    assert "the oracle's own gain is not distinguishable from noise" in record_markdown(noisy, "autoscale bench")
    finals = {**FINALS, "oracle": {0: 10.7, 1: 10.5}}
    result = _result(tmp_path, finals)
    assert result.oracle_fraction is None
    text = record_markdown(result, "autoscale bench")
    assert "n/a (the oracle does not gain over uniform)" in text
    assert "Even DDO run at the target does not beat uniform distinguishably" in text
    g = result.gains["uniform"]
    sd = float(np.std([1 - 10.0 / 10.5, 1 - 10.2 / 10.4, 1 - 10.1 / 10.5, 1 - 9.9 / 10.4], ddof=1))
    assert pair_sd(g) == pytest.approx(sd)
    effect = result.oracle_gain.mean
    assert f"would take about {pairs_needed(g, effect)} (search, seed) pairs" in text
    assert pairs_needed(g, effect) == math.ceil((1.96 * sd / abs(effect)) ** 2)
