"""The benchmark's arithmetic and its BENCHMARKS.md section, and the demo's comparison mixtures."""

import dataclasses
import html
from pathlib import Path

import pytest

from autoscale.report.bench import (
    PAPER_HELD_OUT_L1,
    BenchResult,
    HeldOut,
    held_out_budget,
    record_markdown,
    verdict,
)
from autoscale.report.demo import (
    DEFAULT,
    LLAMA_TO_DEMO,
    LLAMA_WEIGHTS,
    QUICK,
    demo_config,
    llama_mapping,
    llama_style,
    with_llama_mapping,
)
from autoscale.report.html import render_html
from autoscale.report.results import ReportData

DOMAINS = ("web", "news", "code")


def test_llama_style_is_web_heavy_both_web_crawls_on_web():
    full = llama_style(DEFAULT.domains)
    assert set(LLAMA_TO_DEMO.values()) <= set(DEFAULT.domains)
    assert full["web"] == pytest.approx(LLAMA_WEIGHTS["common_crawl"] + LLAMA_WEIGHTS["c4"])  # 0.82
    assert max(full, key=full.get) == "web"
    assert full["news"] == 0.0  # State of the Union addresses: no LLaMA source
    assert full["code"] == pytest.approx(LLAMA_WEIGHTS["github"])
    quick = llama_style(QUICK.domains)
    assert sum(quick.values()) == pytest.approx(1.0)
    assert max(quick, key=quick.get) == "web"
    # renormalised over the quick demo's 4 domains, ratios kept
    assert quick["web"] / quick["code"] == pytest.approx(0.82 / 0.045)


def test_the_report_states_the_whole_llama_mapping():
    data = with_llama_mapping(ReportData(title="t", domains=QUICK.domains), QUICK.domains)
    line = data.facts["llama-style mixture"]
    assert html.escape(line) in render_html(data, {})  # in the page's facts table
    assert "CommonCrawl 0.67 + C4 0.15 -> web" in line
    assert "no LLaMA source -> news" in line and "GitHub 0.045 -> code" in line
    assert "not in this run: Wikipedia 0.045, ArXiv 0.025, StackExchange 0.02" in line
    assert "web 0.901" in line
    assert llama_mapping(DEFAULT.domains).count("->") == len(DEFAULT.domains)


def test_demo_budgets_follow_the_paper_shape():
    for plan in (DEFAULT, QUICK):
        n1, n2 = plan.budgets
        assert n2 == 4 * n1 and plan.target == pytest.approx(n2 * n2 / n1)
    config = demo_config(QUICK, Path("/corpus"), QUICK.domains)
    assert config["target"]["compare"] == ["uniform", "natural", "ddo"]
    assert set(config["target"]["mixtures"]) == {"llama-style"}
    assert config["data"]["domains"] == list(QUICK.domains)


def test_held_out_budget_is_the_geometric_middle():
    assert held_out_budget((25_000, 100_000)) == 50_000


def test_held_out_l1_distance():
    h = HeldOut(5e4, {"web": 0.5, "news": 0.3, "code": 0.2}, {"web": 0.45, "news": 0.35, "code": 0.2})
    assert h.l1 == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.1, 0.2, 0.15], "beats uniform in all 3 seeds, mean +15.0%"),
        ([0.1, -0.05, 0.1], "on average (+5.0%"),
        ([-0.1, -0.05, 0.02], "does not beat uniform"),
        ([0.1, None, 0.2], "does not reach uniform's final perplexity in 1 of 3 seeds"),
    ],
)
def test_verdict_says_what_the_seeds_show(values, expected):
    assert expected in verdict("uniform", values)


def test_record_section_holds_command_numbers_and_reading(tmp_path):
    w = {"web": 0.5, "news": 0.3, "code": 0.2}
    result = BenchResult(
        plan=QUICK, domains=DOMAINS, seeds=(0, 1, 2),
        ddo={25_000: w, 100_000: w}, target_budget=400_000, target=w,
        finals={"predicted": [10.0, 10.2, 10.1], "uniform": [10.5, 10.4, 10.6], "ddo": [10.1, None, 10.0]},
        speedups={"uniform": [0.2, 0.1, 0.15], "ddo": [0.01, None, -0.02]},
        smoothing="none", objective="mean validation perplexity over domains",
        held_out=HeldOut(50_000, w, {"web": 0.45, "news": 0.35, "code": 0.2}),
        search_tokens=1_000_000, target_tokens=400_000, wall_time_s=123.0,
        directory=tmp_path, report_html=tmp_path / "report.html", machine={"cpu": "test cpu", "cores": "2"},
    )
    text = record_markdown(result, "autoscale bench --quick")
    assert "Command: `autoscale bench --quick`" in text
    assert "test cpu, 2 cores" in text
    assert "+20.0%, +10.0%, +15.0%" in text and "+15.0% +- 5.0%" in text
    assert "| DDO 100k reused | 10.100, failed, 10.000 |" in text
    assert f"L1 distance 0.100** (authors' check: {PAPER_HELD_OUT_L1})" in text
    assert "**2.50x** one target run" in text
    assert "beats uniform in all 3 seeds" in text
    assert "does not reach DDO 100k reused's final perplexity in 1 of 3 seeds" in text
    assert "DDO optima themselves are unstable" not in text  # L1 0.1 is within 4x the authors' 0.053
    far = dataclasses.replace(result, held_out=HeldOut(50_000, w, {"web": 0.1, "news": 0.1, "code": 0.8}))
    assert "DDO optima themselves are unstable at these budgets (L1 1.20" in record_markdown(far, "autoscale bench")
