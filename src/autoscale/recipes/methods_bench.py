"""`autoscale bench --methods`: every mixing method side by side at the benchmark's target.

One experiment (folder ``methods`` in the benchmark's workspace): the benchmark of record's first
search (its proxy, corpus, seeds 0..K-1, DDO budgets and target, `autoscale.recipes.bench.RECORD`)
with ``methods: [autoscale, regmix, dml, doremi, mixture-law]``, every method's mixture validated at the target beside
uniform, natural, AutoScale's DDO optimum reused and LLaMA-style, with the record's validation seeds.

The design, fixed before any result was seen:

- RegMix and DML search at the larger DDO budget N2 (the signal-to-noise study measured 3.7%
  seed-to-seed spread of mean perplexity there, against 16% at N1).
- RegMix trains round(K (2m + 2.2) (N1 + N2) / N2) mixtures (31 for the record): what AutoScale's DDO
  with K replicates costs, in runs of N2, so the two searches cost about the same. DML keeps its default 4m + 4 = 16
  runs, the first 16 of RegMix's (same seed and sampler), trained once and charged to both.
- DoReMi at N2 with the paper's settings (eta 1, smoothing 1e-3), reference and proxy on uniform.
- The mixture law on the same 4m + 4 mixtures at N1, sqrt(N1 N2) and N2 (4x: the least it accepts;
  at N2 they are RegMix's first runs), its loss predictions checked at the target (4x past N2) on
  every validated mixture.
- Floors and caps as AutoScale's: a floor of 0.2 / m per weight, caps of 4 epochs of unique tokens.

Each method searches once, so an interval here covers the validation seeds, not the method's own
search noise (the benchmark of record repeats AutoScale's search three times for that).

Runs the record's first search already trained are reused: when the ``methods`` folder is new, the
run store of ``search-1`` (same data, trainer, tokens and seeds, so the same run keys) is copied in.
"""

from __future__ import annotations

import datetime
import math
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoscale.ddo.plan import design_tokens
from autoscale.experiment.folder import ExperimentFolder
from autoscale.methods import METHODS
from autoscale.recipes.bench import RECORD, BenchPlan, machine_facts, open_bench_workspace
from autoscale.recipes.demo import demo_config, write_config
from autoscale.report.results import format_tokens

COMPARED = ("uniform", "natural", "ddo", "llama-style")


def methods_settings(plan: BenchPlan) -> dict[str, Any]:
    """The ``methods:`` and the RegMix / DML sections the comparison adds to the first search's config."""
    p = plan.proxy
    n1, n2 = p.budgets
    m = len(p.domains)
    ddo_tokens = p.replicates * design_tokens(m) * (n1 + n2)
    common = {"budget": float(n2), "max_epochs": p.max_epochs, "eval_points": 1}
    return {
        "methods": ["autoscale", "regmix", "dml", "doremi", "mixture-law"],
        "regmix": {**common, "runs": max(4 * m + 4, round(ddo_tokens / n2))},
        "dml": {**common, "runs": 4 * m + 4},
        "doremi": {**common},
        "mixture_law": {"budgets": [float(n1), float(math.sqrt(n1 * n2)), float(n2)], "runs": 4 * m + 4,
                        "max_epochs": p.max_epochs, "eval_points": 1},
    }


@dataclass(frozen=True)
class MethodsResult:
    """What the comparison measured: ``summary`` and ``validation`` are the experiment's
    summary.json and validation.json; ``directory`` its folder."""

    plan: BenchPlan
    domains: tuple[str, ...]
    summary: Mapping[str, Any]
    validation: Mapping[str, Any]
    records: Mapping[str, Any]  # regmix / dml: the fit's record at the search budget
    directory: Path
    wall_time_s: float
    machine: Mapping[str, str]


def run_methods_bench(
    directory: str | os.PathLike,
    *,
    plan: BenchPlan = RECORD,
    corpus: str | os.PathLike | None = None,
    reporter: Callable[[Any], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> MethodsResult:
    """Run (or resume) the comparison in ``directory`` (the benchmark's workspace)."""
    from autoscale.experiment.pipeline import run_experiment

    started = time.perf_counter()
    p = plan.proxy
    out, source, domains, note = open_bench_workspace(directory, plan, corpus, say)
    config = demo_config(p, source, domains, output="methods", seed=plan.search_seed(0))
    config |= methods_settings(plan)
    config["target"]["compare"] = list(COMPARED)
    _reuse_runs(ExperimentFolder(out / "search-1"), ExperimentFolder(out / "methods"), note)
    note(f"methods: {', '.join(config['methods'])}; regmix {config['regmix']['runs']} runs at "
         f"{format_tokens(config['regmix']['budget'])} tokens; validation at {format_tokens(p.target)}")
    experiment = write_config(out, "methods.yaml", config)
    result = run_experiment(experiment, reporter)
    folder = ExperimentFolder(result.directory)
    records = {name: folder.read_json(folder.search_record(name, METHODS[name].search_budgets(settings)[-1]))
               for name, settings in experiment.method_settings.items() if name != "autoscale"}
    return MethodsResult(plan, tuple(domains), folder.read_json(folder.summary), folder.read_json(folder.validation),
                         records, out, time.perf_counter() - started, machine_facts())


def _reuse_runs(source: ExperimentFolder, target: ExperimentFolder, note: Callable[[str], None]) -> None:
    """Copy ``source``'s run store and run folders into a ``target`` that has none yet."""
    if target.store.exists() or not source.store.exists():
        return
    target.path.mkdir(parents=True, exist_ok=True)
    partial = target.store.with_name(target.store.name + ".copy")
    with sqlite3.connect(source.store) as src, sqlite3.connect(partial) as dst:
        src.backup(dst)  # a consistent copy, WAL included
    runs = source.run_dir("0" * 16).parent
    if runs.is_dir():
        shutil.copytree(runs, target.run_dir("0" * 16).parent, dirs_exist_ok=True)
    os.replace(partial, target.store)  # last: a store present means the copy is whole
    note(f"reusing the runs of {source.path.name} (same data, trainer and seeds: the same run keys)")


def _gain(g: Mapping[str, Any] | None) -> str:
    if not g:
        return "-"
    ci = "" if g.get("interval") is None else f" [{g['interval'][0]:+.1%}, {g['interval'][1]:+.1%}]"
    return f"{g['mean']:+.1%}{ci} {g['verdict']}"


def methods_markdown(result: MethodsResult, command: str) -> str:
    """The BENCHMARKS.md section: the design, per method its search compute and its gains with
    intervals over every baseline, the mixtures, and how to read them."""
    p = result.plan.proxy
    s, v = result.summary, result.validation
    methods = s.get("methods") or {}
    gains = {(g["of"], g["baseline"]): g for g in v.get("gains") or []}
    finals = (s.get("validation") or {}).get("final_objective") or {}
    means = (s.get("validation") or {}).get("speedup_means") or {}
    today = datetime.date.today().isoformat()
    lines = [
        "## Mixing methods compared at the target (`autoscale bench --methods`)",
        "",
        f"Command: `{command}`. Date: {today}; wall time of this invocation {result.wall_time_s / 60:.1f} min "
        "(runs finished earlier are reused, not retrained). "
        f"Machine: {result.machine.get('cpu')}, {result.machine.get('cores')} cores, torch {result.machine.get('torch')}.",
        "",
        f"Design (`autoscale.recipes.methods_bench`, fixed before any result): the benchmark of record's first "
        f"search: domains {', '.join(result.domains)}, the {p.model.get('n_layer')}-layer {p.model.get('d_model')}-wide "
        f"byte-level proxy, AutoScale's noise-aware DDO at {format_tokens(p.budgets[0])} and "
        f"{format_tokens(p.budgets[1])} tokens with {p.replicates} replicates (seeds 0-{p.replicates - 1}), the "
        f"target {format_tokens(p.target)}; RegMix and DML search at {format_tokens(p.budgets[1])} tokens "
        "(RegMix's run count chosen to cost about what AutoScale's search costs; DML's default 4m + 4 runs are "
        "RegMix's first, trained once); DoReMi at the same budget (eta 1, smoothing 1e-3; a reference and a proxy "
        f"run, so twice the budget); the mixture law on 4m + 4 mixtures at {format_tokens(p.budgets[0])}, "
        f"{format_tokens(math.sqrt(p.budgets[0] * p.budgets[1]))} and {format_tokens(p.budgets[1])} tokens "
        "(at the largest, RegMix's first runs). Floors 0.2/m, caps 4 epochs. Validation at the target with seeds "
        f"{', '.join(map(str, p.seeds))} for every mixture. Gains are 1 - objective(method) / objective(baseline) "
        "per validation seed, mean and t 95% interval over the seeds. Each method searched once: the intervals "
        "hold the validation noise, not the search's.",
        "",
        "| method | search runs | search tokens | x one target run | shared tokens | final mean ppl | "
        "gain over uniform | over natural | over LLaMA-style | over DDO reused | speed-up over uniform |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in methods.items():
        mix = e["mixture"]
        final = finals.get(mix) or []
        final_text = "-" if not final else f"{sum(final) / len(final):.3f}"
        up = (means.get(mix) or {}).get("uniform")
        lines.append(
            f"| {name} | {e['search_runs']} | {format_tokens(e['search_tokens'])} | {e['search_vs_target']:.1f} | "
            f"{format_tokens(e['shared_tokens'])} | {final_text} | {_gain(gains.get((mix, 'uniform')))} | "
            f"{_gain(gains.get((mix, 'natural')))} | {_gain(gains.get((mix, 'llama-style')))} | "
            f"{_gain(gains.get((mix, 'ddo')))} | {'not reached' if up is None else f'{up:+.1%}'} |")
    compute = s.get("search_compute") or {}
    if compute:
        lines += ["", f"Search compute charged to the methods: {format_tokens(compute['charged_tokens'])} tokens; "
                      f"trained: {format_tokens(compute['trained_tokens'])} (the shared runs once)."]
    lines += ["", "Mixtures at the target (weights):", "",
              "| mixture | " + " | ".join(result.domains) + " | final mean ppl (per seed) |",
              "|---|" + "---|" * len(result.domains) + "---|"]
    for name, mixture in (v.get("mixtures") or {}).items():
        final = ", ".join(f"{x:.3f}" for x in finals.get(name) or [] if x is not None)
        lines.append(f"| {name} | " + " | ".join(f"{mixture['weights'][d]:.3f}" for d in result.domains)
                     + f" | {final} |")
    regmix, dml = result.records.get("regmix") or {}, result.records.get("dml") or {}
    lines += ["", "Diagnostics of the fits on the search runs:", ""]
    if regmix:
        lines.append(f"- RegMix: regressor settings chosen by 5-fold cross-validation {regmix.get('regressor')}, "
                     f"out-of-fold Spearman {regmix.get('cv_spearman', float('nan')):.2f} over "
                     f"{len(regmix.get('objective') or [])} runs; predicted objective of its mixture "
                     f"{regmix.get('predicted_objective', float('nan')):.3f} at the search budget, best search run "
                     f"{regmix.get('best_run_objective', float('nan')):.3f}.")
        lines += [f"  - warning: {w}" for w in regmix.get("warnings") or []]
    if dml:
        r2 = ", ".join(f"{d} {v:.2f}" for d, v in ((dml.get("law") or {}).get("r2") or {}).items())
        lines.append(f"- Data Mixing Laws: R^2 of the law per domain {r2}; predicted objective of its mixture "
                     f"{dml.get('predicted_objective', float('nan')):.3f} at the search budget, best search run "
                     f"{dml.get('best_run_objective', float('nan')):.3f}.")
    doremi, law = result.records.get("doremi") or {}, result.records.get("mixture-law") or {}
    if doremi:
        learnt = ", ".join(f"{d} {w:.3f}" for d, w in (doremi.get("learnt") or {}).items())
        excess = ", ".join(f"{d} {w:.3f}" for d, w in (doremi.get("mean_excess") or {}).items())
        lines.append(f"- DoReMi: mean weights over {doremi.get('steps')} proxy steps {learnt} (before floors and "
                     f"caps); mean excess loss per domain (nats) {excess}.")
    if law:
        lines.append(f"- Mixture law: fitted on {len(law.get('tokens') or [])} runs at "
                     f"{', '.join(format_tokens(b) for b in law.get('budgets') or [])} tokens, mean relative "
                     f"error of the fit {law.get('fit_relative_error', float('nan')):.2%}.")
        held = held_out_error(law, v)
        if held is not None:
            lines.append(f"  - its loss predictions at the target ({format_tokens(p.target)} tokens, 4x past its "
                         f"largest budget) for the {held[1]} validated mixtures: mean relative error {held[0]:.2%} "
                         f"(per validation domain and mixture, against the mean over seeds).")
    lines += ["", "Reading (generated from the numbers above):", ""]
    for name, e in methods.items():
        g = gains.get((e["mixture"], "uniform"))
        if g is not None:
            lines.append(f"- {name} over uniform: {_gain(g)} ({g['seeds']} seeds).")
    lines.append("")
    return "\n".join(lines)


def held_out_error(record: Mapping[str, Any], validation: Mapping[str, Any]) -> tuple[float, int] | None:
    """The mixture law's loss predictions at the target against the validation runs' final losses:
    (mean relative error over mixtures and validation domains, number of mixtures)."""
    import numpy as np

    from autoscale.laws.optimal_mixture import MixtureLaw

    law = record.get("law") or {}
    domains = list(law.get("domains") or [])
    if not domains:
        return None
    fitted = MixtureLaw(np.array(law["params"], dtype=float), len(domains))
    errors, count = [], 0
    for name, runs in (validation.get("runs") or {}).items():
        finals = [r["final_perplexity"] for r in runs if r.get("final_perplexity")]
        mixture = (validation.get("mixtures") or {}).get(name) or {}
        if not finals or not mixture:
            continue
        h = np.array([float(mixture["weights"][d]) for d in domains])
        measured = np.log([np.mean([f[d] for f in finals]) for d in domains])
        predicted = fitted.losses(float(mixture["budget"]), h)
        errors.extend(np.abs(predicted - measured) / measured)
        count += 1
    return (float(np.mean(errors)), count) if errors else None
