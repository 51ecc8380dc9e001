"""Validation at the target: every method's mixture beside every baseline (`autoscale.baselines`)
and the user's mixtures, trained at the target budget with each seed; the paper's speed-up of each
method's mixture over each baseline, in training tokens (`autoscale.speedup`); paired gains with
intervals (`autoscale.gain`); and, with ``target.downstream``, each run scored on the tasks.
Writes validation.json.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autoscale.baselines import BASELINES
from autoscale.errors import AutoscaleError
from autoscale.experiment.config import ExperimentConfig
from autoscale.experiment.executors import RunJob
from autoscale.experiment.folder import CHECKPOINT, METRICS
from autoscale.experiment.records import ValidationRecord
from autoscale.experiment.scheduler import Note, Scheduler
from autoscale.experiment.setup import Setup, natural
from autoscale.methods import METHODS
from autoscale.methods.base import MethodResult
from autoscale.mixture import Mixture
from autoscale.speedup import SpeedUp, describe_smoothing, metric_value, smooth, speedup


def comparison_mixtures(sched: Scheduler, results: Mapping[str, MethodResult]) -> dict[str, Mixture]:
    """Every method's mixture, then the baselines, then the user's mixtures, at the target."""
    out = {METHODS[n].mixture: r.mixture for n, r in results.items()}
    budget = next(iter(out.values())).budget
    weights = baseline_weights(sched.config, sched.setup)
    for name in [*sched.config.comparisons, *sched.config.target.mixtures]:
        if name in weights:
            out[name] = Mixture.from_weights(weights[name], budget)
        else:  # offered by a method (ddo: AutoScale's optimum reused)
            offered = next(r.baselines[name] for r in results.values() if name in r.baselines)
            out[name] = offered.scaled_to(budget)
    return out


def baseline_weights(config: ExperimentConfig, setup: Setup) -> dict[str, dict[str, float]]:
    """The weights of every baseline that has its own (not a method's offer) and of the user's
    mixtures, over the experiment's domains: checked before anything trains."""
    out = {}
    for name in config.comparisons:
        baseline = BASELINES[name]
        if baseline.weights is not None:
            out[name] = baseline.weights(setup.domains, natural(setup))
    for name, weights in config.target.mixtures.items():
        out[name] = {d: float(weights.get(d, 0.0)) for d in setup.domains}
        if not sum(out[name].values()) > 0:
            raise AutoscaleError(f"target.mixtures.{name}: no weight on the training domains "
                                 f"({', '.join(setup.domains)})")
    return out


def validate(sched: Scheduler, results: Mapping[str, MethodResult],
             retrain_unkept: bool = False) -> tuple[ValidationRecord, list[SpeedUp]]:
    stage = "validate"
    sched.store.set_stage(stage, "running")
    mixtures = comparison_mixtures(sched, results)
    own = [METHODS[n].mixture for n in results]  # the methods' mixtures; the rest are baselines
    seeds = sched.config.seeds
    jobs: dict[tuple[str, int], RunJob] = {}
    labels = set()
    for name, mixture in mixtures.items():
        for seed in seeds:
            label = name if len(seeds) == 1 else f"{name} seed {seed}"
            labels.add(label)
            jobs[name, seed] = sched.job(stage, label, mixture.tokens, seed)
    tasks = sched.config.target.downstream
    if tasks is not None:
        jobs = {k: dataclasses.replace(j, keep_weights=True) for k, j in jobs.items()}
        check_kept_weights(sched, list(jobs.values()), retrain_unkept)
    sched.store.forget_uses(stage, labels)
    sched.execute(stage, list(jobs.values()))

    weight = sched.config.target.smoothing
    objective = sched.setup.objective
    runs: dict[str, list[dict[str, Any]]] = {}
    curves: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
    for (name, seed), job in jobs.items():
        record = sched.store.get(job.key)
        assert record is not None
        entry: dict[str, Any] = {"seed": seed, "key": job.key, "run_dir": str(job.run_dir),
                                 "status": record.status, "error": record.error}
        if record.status == "completed" and record.metrics is not None:
            m = record.metrics
            entry["final_objective"] = objective.of(m["final"])
            entry["final_perplexity"] = {d: metric_value(v, "perplexity") for d, v in m["final"].items()}
            entry["tokens_per_domain"] = m.get("tokens_per_domain")
            if m.get("curve"):
                # speed-ups in training tokens: a step's tokens depend on batch, accumulation and ranks
                tokens, values = objective.curve(m, budget=mixtures[name].budget)
                curves[name, seed] = (tokens, values)
                entry["curve"] = {
                    "step": [p["step"] for p in m["curve"]], "tokens": tokens.tolist(),
                    "objective": values.tolist(), "smoothed": smooth(tokens, values, weight).tolist(),
                }
        runs.setdefault(name, []).append(entry)
    speedups: list[tuple[int, SpeedUp]] = []
    problems: list[str] = []
    for mine in own:
        for name in mixtures:
            if name in own:
                continue
            for seed in seeds:
                if (mine, seed) in curves and (name, seed) in curves:
                    speedups.append((seed, speedup(curves[mine, seed], curves[name, seed], smoothing=weight,
                                                   names=(mine, name))))
                else:
                    problems.append(f"no speed-up over {name!r} (seed {seed}): a run failed or has no curve")
    record = {
        "target_budget": next(iter(mixtures.values())).budget,
        "objective": objective.describe(),
        "smoothing": describe_smoothing(weight),
        "smoothing_weight": weight,
        "seeds": seeds,
        "mixtures": {n: m.to_dict() for n, m in mixtures.items()},
        "runs": runs,
        "speedups": [s.to_dict() | {"seed": seed} for seed, s in speedups],
        "speedup_mean": _mean_speedups([s for _, s in speedups if s.method == own[0]]),
        "speedup_means": {mine: _mean_speedups([s for _, s in speedups if s.method == mine]) for mine in own},
        "final_perplexity": _mean_final_perplexity(runs),
        "gains": _gains(runs, own),
        "problems": problems,
    }
    if tasks is not None:
        record["downstream"] = downstream(sched, jobs)
    written = sched.folder.write_record(sched.folder.validation, ValidationRecord, record)
    means = ", ".join(f"{b} {'not reached' if v is None else f'{v:+.1%}'}" for b, v in record["speedup_mean"].items())
    sched.stage_done(stage, "failed" if problems else "completed",
                    "; ".join(problems) if problems else f"speed-up of {own[0]} over {means}")
    return written, [s for _, s in speedups]

def check_kept_weights(sched: Scheduler, jobs: Sequence[RunJob], retrain_unkept: bool) -> None:
    """Validation runs that finished without weights (before target.downstream was set): one
    error naming them, or with ``retrain_unkept`` marked to train again (never silently)."""
    unkept = [j for j in jobs if (r := sched.store.get(j.key)) is not None and r.status == "completed"
              and not (j.run_dir / CHECKPOINT).exists()]
    if not unkept:
        return
    if not retrain_unkept:
        names = "; ".join(f"{j.label} ({j.run_dir.relative_to(sched.out)})" for j in unkept)
        raise AutoscaleError(f"target.downstream: {len(unkept)} validation run(s) finished before it was set and "
                             f"kept no weights: {names}; retrain them with `autoscale run CONFIG --retrain-unkept`")
    for j in unkept:
        sched.store.mark_finished(j.key, "failed", error="retrained: it kept no weights for downstream evaluation")
        (j.run_dir / METRICS).unlink(missing_ok=True)
        sched.report(Note(f"{j.label}: kept no weights; trained again for downstream evaluation"))

def downstream(sched: Scheduler, jobs: Mapping[tuple[str, int], RunJob]) -> dict[str, Any]:
    """Every completed validation run scored on the configured tasks (cached per run)."""
    from autoscale.data.store import TokenStore
    from autoscale.train.downstream import evaluate_run, mean_over_seeds

    cfg = sched.config.target.downstream
    assert cfg is not None and sched.setup.store_path is not None
    sched.store.set_stage("downstream", "running")
    store = TokenStore.open(sched.setup.store_path)
    runs: dict[str, list[dict[str, Any]]] = {}
    for (name, seed), job in jobs.items():
        record = sched.store.get(job.key)
        if record is None or record.status != "completed":
            continue
        result = evaluate_run(job.run_dir, store, cfg.tasks, cfg.num_fewshot, cfg.limit, cfg.include_path)
        sched.report(Note(f"downstream: {job.label}: average {result['average']:.3f}"
                         + (" (cached)" if result["cached"] else "") + (f"; {result['note']}" if "note" in result else "")))
        runs.setdefault(name, []).append({"seed": seed, **{k: v for k, v in result.items() if k not in ("cached", "note")}})
    mixtures = {name: mean_over_seeds(results) for name, results in runs.items()}
    best = max(mixtures, key=lambda n: mixtures[n]["average"]) if mixtures else None
    sched.stage_done("downstream", "completed", None if best is None else
                    f"best average {best} {mixtures[best]['average']:.3f} over {', '.join(cfg.tasks)}")
    return {"tasks": list(cfg.tasks), "num_fewshot": cfg.num_fewshot, "limit": cfg.limit, "runs": runs,
            "mixtures": mixtures}


def _mean_speedups(speedups: Sequence[SpeedUp]) -> dict[str, float | None]:
    """Mean speed-up per baseline over seeds (None if any seed never reached the baseline)."""
    by: dict[str, list[float | None]] = {}
    for s in speedups:
        by.setdefault(s.baseline, []).append(s.speedup)
    return {b: (None if any(v is None for v in vals) else float(np.mean(vals))) for b, vals in by.items()}  # type: ignore[arg-type]

def _mean_final_perplexity(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, dict[str, float]]:
    """Mixture -> validation domain -> final perplexity, the mean over the mixture's completed seeds."""
    out: dict[str, dict[str, float]] = {}
    for name, entries in runs.items():
        done = [e["final_perplexity"] for e in entries if e.get("final_perplexity")]
        if done:
            out[name] = {d: float(np.mean([f[d] for f in done if d in f])) for d in done[0]}
    return out

def _gains(runs: Mapping[str, Sequence[Mapping[str, Any]]], own: Sequence[str]) -> list[dict[str, Any]]:
    """Each method's mixture's (``own``) paired gain over each baseline, with its verdict."""
    from autoscale.gain import paired_gain

    def finals(entries: Sequence[Mapping[str, Any]]) -> dict[int, float]:
        return {int(e["seed"]): float(e["final_objective"]) for e in entries
                if e.get("final_objective") is not None}

    out = []
    for mine in own:
        predicted = finals(runs.get(mine, []))
        for name, entries in runs.items():
            if name not in own and (g := paired_gain(name, predicted, finals(entries))) is not None:
                out.append({"of": mine} | g.to_dict())
    return out
