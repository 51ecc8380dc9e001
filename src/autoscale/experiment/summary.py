"""The results record of an experiment: summary.json, the numbers of the report (every method's
mixture and search compute, the validation's speed-ups, gains and final objectives, run counts)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from autoscale.experiment.records import SummaryRecord, ValidationRecord, dump
from autoscale.experiment.scheduler import Scheduler
from autoscale.methods import METHODS
from autoscale.methods.base import MethodResult


def method_summaries(results: Mapping[str, MethodResult], search_runs: Mapping[str, Mapping[str, float]],
                     validation: ValidationRecord | None) -> tuple[dict[str, Any], dict[str, float]]:
    """Per method: its mixture, the compute of its whole design (runs it shares with another
    method's design are charged to both; ``shared_tokens`` says how much), at the target its final
    objective and gain over uniform, then what the method says of its search and target (its
    result's ``summary``). And the search compute charged vs trained."""
    out: dict[str, Any] = {}
    finals = {n: [e.final_objective for e in v if e.final_objective is not None]
              for n, v in (validation.runs if validation else {}).items()}
    gains = {(g.of, g.baseline): dump(g) for g in (validation.gains if validation else [])}
    trained: dict[str, float] = {}
    for name, result in results.items():
        method, mine = METHODS[name], search_runs.get(name, {})
        trained |= mine
        others = {k for n, runs in search_runs.items() if n != name for k in runs}
        tokens = float(sum(mine.values()))
        out[name] = {
            "mixture": method.mixture, "description": method.description,
            "weights": result.mixture.weights, "target_budget": result.mixture.budget,
            "search_runs": len(mine), "search_tokens": tokens,
            "search_vs_target": tokens / result.mixture.budget,
            "shared_tokens": float(sum(t for k, t in mine.items() if k in others)),
            "final_objective": float(np.mean(finals[method.mixture])) if finals.get(method.mixture) else None,
            "gain_over_uniform": gains.get((method.mixture, "uniform")),
            **result.summary,
        }
    compute = {"charged_tokens": float(sum(e["search_tokens"] for e in out.values())),
               "trained_tokens": float(sum(trained.values()))}
    return out, compute

def write_summary(sched: Scheduler, results: Mapping[str, MethodResult], search_runs: Mapping[str, Mapping[str, float]],
                  validation: ValidationRecord | None, started: float) -> SummaryRecord:
    """summary.json: the numbers of the report, from every method's result and the validation record."""
    counts: dict[str, int] = {}
    for r in sched.store.runs():
        if r.key in sched.keys:
            counts[r.status] = counts.get(r.status, 0) + 1
    summary: dict[str, Any] = {
        "name": sched.config.name,
        "domains": list(sched.setup.domains),
        "objective": sched.setup.objective.describe(),
        "data": sched.setup.data_id,
    }
    summary["methods"], summary["search_compute"] = method_summaries(results, search_runs, validation)
    v = None if validation is None else dump(validation)
    summary |= {
        "validation": None if v is None else {
            "smoothing": v["smoothing"],
            "speedups": v["speedups"],
            "speedup_mean": v["speedup_mean"],
            "speedup_means": v["speedup_means"],
            "final_perplexity": v["final_perplexity"],
            "final_objective": {n: [e.get("final_objective") for e in runs] for n, runs in v["runs"].items()},
            "gains": v["gains"],
            "problems": v["problems"],
            **({"downstream": v["downstream"]["mixtures"]} if "downstream" in v else {}),
        },
        "runs": counts,
        "wall_time_s": time.time() - started,  # of this invocation
        "executor": sched.config.executor.kind,
    }
    return sched.folder.write_record(sched.folder.summary, SummaryRecord, summary)
