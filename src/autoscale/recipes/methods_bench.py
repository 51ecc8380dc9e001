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
from autoscale.experiment.records import SummaryRecord, ValidationRecord
from autoscale.methods import METHODS
from autoscale.recipes.bench import RECORD, BenchPlan, machine_facts, open_bench_workspace
from autoscale.recipes.demo import demo_config, write_config
from autoscale.tokens import format_tokens

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
                        "max_epochs": p.max_epochs, "eval_points": 1, "starts": plan.law_starts,
                        "fit_steps": plan.law_fit_steps},
    }


@dataclass(frozen=True)
class MethodsResult:
    """What the comparison measured: ``summary`` and ``validation`` are the experiment's
    summary.json and validation.json; ``directory`` its folder."""

    plan: BenchPlan
    domains: tuple[str, ...]
    summary: SummaryRecord
    validation: ValidationRecord
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
    return MethodsResult(plan, tuple(domains), result.summary, folder.read_record(folder.validation, ValidationRecord),
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
