"""`autoscale bench`: the benchmark of record, on the demo's setting.

Three measurements, into one experiment folder (one run store, so nothing trains twice):

1. **Held-out budget check**: DDO directly at N_mid = sqrt(N1 N2), a budget between the demo's two,
   compared with the mixture the AutoScale law predicts there from the DDO optima at N1 and N2
   (interpolation, s = 1/2 for N2 = 4 N1): the L1 distance of the weights. The authors' own check
   gave 0.053. Run first, as its own config (budgets N1, N_mid; no validation).
2. **Validation with several seeds**: the demo's experiment (DDO at N1 and N2, the extrapolated
   mixture at N3, validation against uniform, natural, the reused DDO mixture and the LLaMA-style
   one), with every validation run repeated for each seed; speed-ups per seed, their mean and
   spread.
3. **Search cost**: training tokens of all DDO runs at N1 and N2 divided by one target run's tokens.

`record_markdown` turns the result into the BENCHMARKS.md section (command, machine facts,
tables, and what the numbers do and do not show).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoscale.errors import AutoscaleError
from autoscale.report.demo import (
    DemoPlan,
    demo_config,
    display_name,
    open_workspace,
    with_llama_mapping,
    write_config,
)
from autoscale.report.results import WeightsAtBudget, format_tokens, mean_and_spread

#: The authors' held-out check (METHOD.md; L1 distance of weights at a budget between the two).
PAPER_HELD_OUT_L1 = 0.053


@dataclass(frozen=True)
class HeldOut:
    """DDO run directly at ``budget`` (tokens) vs the law's prediction there (weights, sum 1)."""

    budget: float
    measured: Mapping[str, float]
    predicted: Mapping[str, float]

    @property
    def l1(self) -> float:
        return float(sum(abs(self.measured[d] - self.predicted[d]) for d in self.measured))


@dataclass(frozen=True)
class BenchResult:
    """What the benchmark measured. Tokens are absolute counts; weights sum to 1.

    ``finals``: mixture -> final objective per seed (None where a run failed);
    ``speedups``: baseline -> speed-up of the predicted mixture per seed (None: not reached).
    """

    plan: DemoPlan
    domains: tuple[str, ...]
    seeds: tuple[int, ...]
    ddo: Mapping[float, Mapping[str, float]]
    target_budget: float
    target: Mapping[str, float]
    finals: Mapping[str, Sequence[float | None]]
    speedups: Mapping[str, Sequence[float | None]]
    smoothing: str
    objective: str
    held_out: HeldOut
    search_tokens: float
    target_tokens: float
    wall_time_s: float
    directory: Path
    report_html: Path
    machine: Mapping[str, str]
    params: int | None = None  # the proxy's parameters

    @property
    def search_cost(self) -> float:
        """Proxy tokens of the whole DDO search per token of one target run."""
        return self.search_tokens / self.target_tokens


def machine_facts() -> dict[str, str]:
    """CPU model, cores, Python and torch versions: enough to compare benchmark numbers."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    facts = {"cpu": cpu, "cores": str(os.cpu_count()), "python": sys.version.split()[0],
             "platform": platform.platform(terse=True)}
    try:
        import torch

        facts["torch"] = torch.__version__
        facts["torch threads"] = str(torch.get_num_threads())
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return facts


def held_out_budget(budgets: Sequence[float]) -> float:
    """The geometric middle of the two DDO budgets, in whole tokens."""
    return float(round(math.sqrt(budgets[0] * budgets[1])))


def run_bench(
    directory: str | os.PathLike,
    *,
    seeds: int = 3,
    quick: bool = False,
    corpus: str | os.PathLike | None = None,
    reporter: Callable[[Any], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> BenchResult:
    """Run (or resume) the benchmark in ``directory`` and return its numbers (report written)."""
    from autoscale.experiment.pipeline import run_experiment
    from autoscale.extrapolate import extrapolate
    from autoscale.report.html import write_report
    from autoscale.report.load import load_experiment

    if seeds < 1:
        raise AutoscaleError(f"--seeds must be at least 1, got {seeds}")
    started = time.perf_counter()
    plan, out, source, domains, note = open_workspace(directory, quick, corpus, say, "benchmark")
    mid = held_out_budget(plan.budgets)

    # The held-out DDO gets its own experiment folder: the pipeline keeps one experiment per
    # folder (it drops DDO files of budgets its config does not list). The N1 runs train again
    # there, (2m + 2.2) N1 tokens, the price of keeping the main experiment's folder clean.
    note(f"held-out check: DDO at {format_tokens(plan.budgets[0])} and {format_tokens(mid)} tokens")
    check = write_config(out, "heldout.yaml", demo_config(
        plan, source, domains, validate=False, budgets=(plan.budgets[0], mid), output="heldout"))
    measured = run_experiment(check, reporter).ddo[mid]

    note(f"validation with seeds {', '.join(map(str, range(seeds)))}")
    config = write_config(out, "bench.yaml", demo_config(plan, source, domains, seeds=list(range(seeds))))
    result = run_experiment(config, reporter)
    ddo = dict(result.ddo)
    predicted_mid = extrapolate([ddo[b] for b in plan.budgets], target=mid).mixture

    experiment = Path(result.directory)
    validation = json.loads((experiment / "validation.json").read_text(encoding="utf-8"))
    finals = {n: [e.get("final_objective") for e in runs] for n, runs in validation["runs"].items()}
    ups: dict[str, list[float | None]] = {}
    for s in validation["speedups"]:
        ups.setdefault(s["baseline"], []).append(s["speedup"])
    data = with_llama_mapping(load_experiment(experiment), domains)
    # the held-out check on the weights plot: measured by DDO vs the law's interpolation there
    data = dataclasses.replace(data, mixtures=data.mixtures + (
        WeightsAtBudget("held-out DDO", mid, measured.weights),
        WeightsAtBudget("law at held-out", mid, predicted_mid.weights, measured=False),
    ))
    files = write_report(data, out / "report")
    params = _params(validation)
    return BenchResult(
        plan=plan, domains=tuple(domains), seeds=tuple(range(seeds)),
        ddo={b: m.weights for b, m in ddo.items()},
        target_budget=result.target.budget, target=result.target.weights,
        finals=finals, speedups=ups, smoothing=str(validation.get("smoothing", "")),
        objective=str(validation.get("objective", "")),
        held_out=HeldOut(mid, measured.weights, predicted_mid.weights),
        search_tokens=_ddo_tokens(experiment, plan.budgets), target_tokens=float(plan.target),
        wall_time_s=time.perf_counter() - started, directory=out, report_html=files.html,
        machine=machine_facts(), params=params,
    )


def _params(validation: Mapping[str, Any]) -> int | None:
    """The proxy's parameter count, from one validation run's metrics.json."""
    for runs in (validation.get("runs") or {}).values():
        for entry in runs:
            try:
                metrics = json.loads((Path(entry["run_dir"]) / "metrics.json").read_text(encoding="utf-8"))
                return int(metrics["params"])
            except (KeyError, OSError, TypeError, ValueError):
                continue
    return None


def _ddo_tokens(experiment: Path, budgets: Sequence[float]) -> float:
    """Training tokens of every DDO run at ``budgets`` (from the runs tables: tokens trained)."""
    from autoscale.ddo.runs import RunsTable

    return float(sum(RunsTable.read_csv(experiment / f"runs_{int(round(b))}.csv").tokens.sum() for b in budgets))


def _shown_path(path: Path) -> str:
    """``path`` relative to the current folder when it lies below it (BENCHMARKS.md is shared)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _pct(v: float | None) -> str:
    return "not reached" if v is None else f"{v:+.1%}"


def verdict(baseline: str, values: Sequence[float | None]) -> str:
    """One sentence on whether the predicted mixture beat ``baseline`` across the seeds."""
    n = len(values)
    missing = sum(v is None for v in values)
    if missing == n:
        return f"does not reach {baseline}'s final perplexity in any of {n} seeds"
    if missing:
        return f"does not reach {baseline}'s final perplexity in {missing} of {n} seeds"
    mean, sd = mean_and_spread([v for v in values if v is not None])
    wins = sum(v > 0 for v in values if v is not None)
    if wins == n:
        spread = " (seed spread larger than the mean)" if n > 1 and sd > abs(mean) else ""
        return f"beats {baseline} in all {n} seeds, mean {mean:+.1%}{spread}"
    if mean > 0:
        return f"is ahead of {baseline} on average ({mean:+.1%} +- {sd:.1%}) but only in {wins} of {n} seeds: within seed noise"
    return f"does not beat {baseline} (mean {mean:+.1%} +- {sd:.1%}, ahead in {wins} of {n} seeds)"


def record_markdown(result: BenchResult, command: str) -> str:
    """The BENCHMARKS.md section: command, machine, setting, the three measurements, a reading."""
    plan, doms = result.plan, list(result.domains)
    m = result.machine
    lines = [
        "## AutoScale on the demo corpus (benchmark of record)",
        "",
        f"Command: `{command}` (from the repository root; writes `bench/results/record.md`).  ",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores; Python {m.get('python')}, torch {m.get('torch', '?')} "
        f"({m.get('torch threads', '?')} threads); {m.get('platform')}.  ",
        f"Date: {datetime.date.today().isoformat()}; wall time {result.wall_time_s / 60:.1f} min "
        f"(runs finished earlier in `{result.directory.name}/` are reused, not retrained).",
        "",
        f"Setting: {len(doms)} domains ({', '.join(doms)}); proxy: decoder, {plan.model['n_layer']} layers, "
        f"d_model {plan.model['d_model']}, seq_len {plan.model['seq_len']}, byte-level tokens; DDO at "
        f"{format_tokens(plan.budgets[0])} and {format_tokens(plan.budgets[1])} tokens (amounts 0.2/1/3, floor 0.2); "
        f"target {format_tokens(result.target_budget)} tokens; objective: {result.objective}; speed-ups on "
        f"curves smoothed by {result.smoothing}; validation seeds {', '.join(map(str, result.seeds))}.",
        "",
        "### Speed-up of the predicted mixture at the target",
        "",
        "Speed-up = 1 - (tokens the predicted mixture needs to reach the baseline's final perplexity) / "
        "(the baseline's tokens). The paper reports +38% over uniform and +28% over LLaMA weights "
        "(GPT-2 Large, 774M parameters, ~10B tokens).",
        "",
        "| mixture | final perplexity per seed | mean +- sd | speed-up of predicted per seed | mean +- sd |",
        "|---|---|---|---|---|",
    ]
    for name, finals in result.finals.items():
        shown = [f"{v:.3f}" if v is not None else "failed" for v in finals]
        fmean, fsd = mean_and_spread([v for v in finals if v is not None])
        if name == "predicted":
            up_cells = ["-", "-"]
        else:
            ups = result.speedups.get(name, [])
            got = [v for v in ups if v is not None]
            umean, usd = mean_and_spread(got)
            up_cells = [", ".join(_pct(v) for v in ups) or "-",
                        f"{umean:+.1%} +- {usd:.1%}" if got and len(got) == len(ups) else "-"]
        lines.append(f"| {display_name(name, plan)} | {', '.join(shown)} | {fmean:.3f} +- {fsd:.3f} | "
                     + " | ".join(up_cells) + " |")
    h = result.held_out
    lines += [
        "",
        "### Mixtures (weights)",
        "",
        "| mixture | tokens | " + " | ".join(doms) + " |",
        "|---|---|" + "---|" * len(doms),
    ]
    for b, w in result.ddo.items():
        lines.append(f"| DDO | {format_tokens(b)} | " + " | ".join(f"{w[d]:.3f}" for d in doms) + " |")
    lines.append(f"| held-out DDO | {format_tokens(h.budget)} | " + " | ".join(f"{h.measured[d]:.3f}" for d in doms) + " |")
    lines.append(f"| law at the held-out budget | {format_tokens(h.budget)} | "
                 + " | ".join(f"{h.predicted[d]:.3f}" for d in doms) + " |")
    lines.append(f"| **predicted (target)** | {format_tokens(result.target_budget)} | "
                 + " | ".join(f"{result.target[d]:.3f}" for d in doms) + " |")
    lines += [
        "",
        "### Held-out budget check and search cost",
        "",
        f"- DDO run directly at {format_tokens(h.budget)} tokens vs the mixture the law predicts there from the "
        f"optima at {format_tokens(plan.budgets[0])} and {format_tokens(plan.budgets[1])}: **L1 distance "
        f"{h.l1:.3f}** (authors' check: {PAPER_HELD_OUT_L1}).",
        f"- Search cost: all DDO runs at both budgets trained {format_tokens(result.search_tokens)} tokens = "
        f"**{result.search_cost:.2f}x** one target run ({format_tokens(result.target_tokens)} tokens).",
        "",
        "### Reading",
        "",
    ]
    for name, values in result.speedups.items():
        lines.append(f"- The predicted mixture {verdict(display_name(name, plan), values)}.")
    if h.l1 > 4 * PAPER_HELD_OUT_L1:
        lines.append(
            f"- The held-out check says the DDO optima themselves are unstable at these budgets (L1 {h.l1:.2f} "
            f"between DDO at {format_tokens(h.budget)} and the law's interpolation, vs the authors' "
            f"{PAPER_HELD_OUT_L1}): with optima that move this much between neighbouring budgets, the law "
            "extrapolates their noise as much as their trend."
        )
    size = f"about {format_tokens(result.params)} parameters" if result.params else "a few layers"
    lines += [
        f"- Where it does not win, the likely causes are scale and noise, not the method's arithmetic: the proxy "
        f"has {size} and the target {format_tokens(result.target_budget)} tokens, orders of magnitude below the "
        "paper's 774M parameters and 10B tokens; "
        "at this size the mixtures' final perplexities differ by a few percent, the same order as the spread "
        "between seeds, and the DDO fits at the small budget rest on differences of that size too.",
        "- What would settle it: more seeds (10 or more, for a confidence interval on each speed-up) and a larger "
        "proxy with larger budgets (e.g. 4 layers, 128 wide, N1 = 1M tokens, on a GPU), checking that the "
        "held-out L1 distance shrinks as the DDO fits get more tokens.",
        "",
        f"Report with plots: `{_shown_path(result.report_html)}`.",
        "",
    ]
    return "\n".join(lines)
