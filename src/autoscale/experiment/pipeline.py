"""The AutoScale pipeline, end to end and resumable: DDO at each budget, extrapolation, validation.

Stages, in order (each recorded in the run store, each writing its artefacts at once):

1. ``ddo <budget>`` for every DDO budget: plan the base run and the one-domain perturbations
   (``plan_ddo``), ``ddo.replicates`` times with seeds seed, seed+1, ... (each seed's runs are
   coupled: same initialisation, and unchanged domains see the same data at the same relative point
   of the run), train those not finished yet, build the runs table (with its seed column) from the
   tokens each run ACTUALLY trained (metrics ``tokens_per_domain``) and its final validation
   numbers. Once every budget is trained, fit them together (``fit_ddo_budgets``): noise and paired
   effects per domain, domains held at their base share (at every budget when held at any), the
   per-domain power laws and the allocation with floors and caps; bootstrap draws resample whole
   seeds, the same seeds at every budget.
2. ``extrapolate``: the AutoScale law from the DDO optima to the target budget (held domains keep
   their base share); with bootstrap draws, the same law on every paired draw gives intervals.
3. ``validate`` (if ``target.validate``): train the predicted mixture and every comparison
   mixture at the target budget (each seed), and the paper's speed-up of the predicted one over
   each comparison, in training tokens (``autoscale.speedup``).

Experiment directory layout (everything the report needs)::

    DIR/experiment.json          the resolved config of the last `autoscale run`, with the domains,
                                 the data identity, the caps and the objective used
    DIR/runs.sqlite              the run store (SQLite, WAL; -wal/-shm beside it while open)
    DIR/.lock                    held (flock) while an `autoscale run` works here; holds its pid
    DIR/runs/<key16>/            one folder per run (first 16 hex digits of its key):
                                 metrics.json, checkpoint.pt while unfinished, mixture.json and
                                 stdout.log/stderr.log (command executor), progress.json
    DIR/runs_<budget>.csv        DDO runs table at <budget> tokens (completed runs; tokens actually
                                 trained; eval.<domain> = that domain's final validation metric)
    DIR/ddo_<budget>.json        DDO result: mixture (tokens, weights, budget), fits per domain
                                 (a, b, c, x, y, residuals, r2), bounded and held domains, predicted
                                 and base objective, noise (effects, replicates needed and their
                                 cost), bootstrap intervals and draws, warnings, run keys, failed runs
    DIR/target.json              the extrapolated mixture at the target, the law's s, method, held
                                 domains, intervals and draws (with bootstrap), warnings
    DIR/validation.json          per validated mixture and seed: run key, run dir, tokens, final
                                 objective, final perplexity per validation domain, curve (steps,
                                 tokens, objective, smoothed); speed-ups in training tokens; the
                                 per-domain final perplexities' mean over seeds
    DIR/summary.json             domains, budgets, DDO weights, target weights, speed-ups, run counts,
                                 timings, smoothing, objective: the numbers of the report

The files describe the last `autoscale run`: DDO files of budgets no longer configured are removed,
and validation.json too when validation is off. The run store keeps every run ever trained.

``<budget>`` is the integer token count. All token counts are absolute tokens; weights sum to 1.

Faults: a run that fails or diverges is retried ``executor.retries`` times, then recorded
``failed``; a DDO fit goes on without it only if every domain keeps 3 points (the base run and
two of its perturbations), else one error names the missing runs. Ctrl-C (or SIGTERM via the CLI)
marks running runs ``interrupted`` and re-raises ``KeyboardInterrupt``; a rerun resumes them from
their checkpoints. A run whose key is unchanged is never trained again, whatever else changed.
Progress goes to ``reporter`` (a callable taking the event dataclasses below); nothing is printed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autoscale.atomic import write_text_atomic
from autoscale.domains import check_mixture_domains
from autoscale.errors import AutoscaleError
from autoscale.experiment.config import ExperimentConfig
from autoscale.experiment.executors import Executor, RunJob, RunOutcome, RunProgress, make_executor
from autoscale.experiment.runstore import STORE_FILE, RunSpec, RunStore, experiment_lock
from autoscale.mixture import Mixture
from autoscale.speedup import Objective, SpeedUp, describe_smoothing, metric_value, smooth, speedup

RUNS_DIR = "runs"


# --- progress events (the CLI renders them) ---------------------------------------------------------


@dataclass(frozen=True)
class StageStarted:
    stage: str
    runs: int  # runs the stage uses
    done: int  # of which already finished (reused)


@dataclass(frozen=True)
class RunStarted:
    stage: str
    label: str
    key: str
    tokens: int  # training tokens of the run
    attempt: int  # 1-based, all invocations together


@dataclass(frozen=True)
class RunFinished:
    stage: str
    label: str
    key: str
    status: str  # completed | failed
    error: str | None
    retry: bool  # it will be tried again in this invocation
    wall_time_s: float | None = None  # seconds the attempt took, as the executor measured it


@dataclass(frozen=True)
class Note:
    text: str


Reporter = Callable[[Any], None]


@dataclass(frozen=True)
class ExperimentResult:
    """What `run_experiment` produced; the files in ``directory`` hold the same and more.

    ``ddo``: budget (tokens) -> optimal mixture; ``target``: the extrapolated mixture;
    ``speedups``: the predicted mixture against each comparison (one per comparison and seed).
    """

    directory: Path
    ddo: Mapping[float, Mixture]
    target: Mixture
    speedups: tuple[SpeedUp, ...] = ()
    summary: Mapping[str, Any] = field(default_factory=dict)


# --- the experiment's fixed facts -------------------------------------------------------------------


@dataclass(frozen=True)
class _Setup:
    """Facts derived once per invocation from the config and the data."""

    domains: tuple[str, ...]
    data_id: str  # the token store's manifest hash (or the user's data fingerprint)
    trainer: Mapping[str, Any]  # trainer settings in every run key
    unique_tokens: Mapping[str, int] | None  # per domain, one epoch (None without a store)
    caps: Mapping[str, float] | None  # max tokens per domain: max_epochs x unique tokens
    objective: Objective
    store_path: Path | None


def _setup(config: ExperimentConfig, say: Callable[[str], None]) -> _Setup:
    unique: dict[str, int] | None = None
    store_path = config.data.store
    if store_path is not None:
        from autoscale.data import DomainSource, TokenStore, prepare_store

        if config.data.sources is not None:
            sources = _corpus_sources(config.data.sources, config.data.domains)
            fields = config.data.text_fields or {}
            stray = [d for d in fields if d not in sources]
            if stray:
                raise AutoscaleError(f"data.text_fields: unknown domain {stray[0]!r} (domains: {', '.join(sources)})")
            sources = {d: DomainSource((str(p),), fields.get(d, "text")) for d, p in sources.items()}
            options = {k: v for k, v in (("vocab_size", config.data.vocab_size),
                                         ("val_tokens", config.data.val_tokens)) if v is not None}
            store = prepare_store(sources, store_path, progress=say, **options)
        else:
            store = TokenStore.open(store_path)
        data_id = store.manifest_hash
        domains = tuple(config.data.domains or store.domains)
        unknown = [d for d in domains if d not in store.domains]
        if unknown:
            raise AutoscaleError(f"data.domains: {unknown[0]!r} is not in the store (domains: {', '.join(store.domains)})")
        unique = {d: store.unique_train_tokens(d) for d in domains}
    else:
        assert config.data.domains is not None  # the config validator guarantees it
        domains = tuple(config.data.domains)
        data_id = "user:" + config.data.fingerprint
    domains = check_mixture_domains(domains)  # names (a store's or data.domains) and at least 2
    config.check_domains(domains)
    caps = None
    if config.ddo.max_epochs is not None and unique is not None:
        epochs = config.ddo.max_epochs
        caps = {d: (epochs.get(d, math.inf) if isinstance(epochs, dict) else epochs) * unique[d] for d in domains}
        caps = {d: c for d, c in caps.items() if math.isfinite(c)}
    ex = config.executor
    if ex.kind == "command":
        from autoscale.experiment.executors.command import check_program

        assert ex.command is not None  # the config validator guarantees it
        check_program(ex.command, ex.cwd or Path.cwd(), {**os.environ, **ex.env})
        trainer: dict[str, Any] = {"kind": "command", "command": ex.command, "env": ex.env, "id": ex.trainer_id}
    else:
        from autoscale.data.sampler import SAMPLER_VERSION

        # the sampler's version is part of every key: a new sampler never reuses an old run
        trainer = {"kind": "autoscale", "proxy": config.proxy.fingerprint_dict(), "sampler": SAMPLER_VERSION}
    objective = Objective(config.objective.metric, config.objective.weights)
    return _Setup(domains, data_id, trainer, unique, caps, objective, store_path)


def _corpus_sources(path: Path, domains: Sequence[str] | None) -> dict[str, Path]:
    """A corpus folder: one data file (``<domain>.jsonl``...) or sub-folder per domain."""
    from autoscale.data.sources import SUPPORTED_SUFFIXES

    if not path.is_dir():
        raise AutoscaleError(f"data.sources {str(path)!r} is not a folder of domains")
    found: dict[str, Path] = {}
    for p in sorted(path.iterdir()):
        suffix = next((s for s in SUPPORTED_SUFFIXES if p.name.lower().endswith(s)), None)
        if p.name.startswith("."):
            continue
        if p.is_dir():
            found[p.name] = p
        elif suffix is not None:
            found[p.name[: -len(suffix)]] = p
    if domains is not None:
        missing = [d for d in domains if d not in found]
        if missing:
            raise AutoscaleError(f"data.sources {str(path)!r} has no domain {missing[0]!r} (found: {', '.join(found)})")
        return {d: found[d] for d in domains}
    if not found:
        raise AutoscaleError(f"data.sources {str(path)!r} holds no domain files or folders")
    return found


# --- the pipeline ---------------------------------------------------------------------------------


def run_experiment(config: ExperimentConfig, reporter: Reporter | None = None) -> ExperimentResult:
    """Run (or resume) the experiment ``config`` describes, in ``config.output``.

    Raises AutoscaleError for bad input and unrecoverable failures (one line), KeyboardInterrupt
    after marking running runs interrupted.
    """
    if config.output is None:
        raise AutoscaleError("the experiment has no output directory (load it with load_config)")
    out = Path(config.output)
    report = reporter or (lambda event: None)
    # Everything that can reject the input happens before the experiment directory is touched.
    setup = _setup(config, lambda msg: report(Note(msg)))
    with experiment_lock(out), RunStore(out / STORE_FILE) as store:
        stale = store.interrupt_running("stopped: the previous `autoscale run` ended while this run trained")
        if stale:
            report(Note(f"{len(stale)} run(s) left running by an earlier invocation will resume"))
        _write_json(out / "experiment.json", _experiment_record(config, setup))
        pipe = _Pipeline(config, setup, store, out, report)
        try:
            return pipe.run()
        except KeyboardInterrupt:
            store.interrupt_running("interrupted (Ctrl-C); rerun to resume from the checkpoint")
            raise
        except BaseException:
            # an error stopped the experiment while other runs trained (Ray, parallel commands)
            store.interrupt_running("stopped by an error elsewhere in the experiment; rerun to resume")
            raise
        finally:
            pipe.close()


class _Pipeline:
    def __init__(self, config: ExperimentConfig, setup: _Setup, store: RunStore, out: Path, report: Reporter):
        self.config, self.setup, self.store, self.out, self.report = config, setup, store, out, report
        self._executor: Executor | None = None
        self.started = time.time()
        self.keys: set[str] = set()  # the runs this invocation's stages use
        self.target_intervals: dict[str, tuple[float, float]] = {}

    def close(self) -> None:
        if self._executor is not None:
            self._executor.close()

    @property
    def executor(self) -> Executor:
        # Created on first use: a resumed experiment with nothing left to train never starts Ray.
        if self._executor is None:
            self._executor = make_executor(self.config, self.setup.store_path)
        return self._executor

    def run(self) -> ExperimentResult:
        self.remove_stale_artefacts()
        trained = {budget: self.ddo_stage(budget) for budget in self.config.ddo.budgets}
        ddo = self.fit_stage(trained)
        target, extrapolation = self.extrapolate_stage(ddo)
        validation, speedups = None, []
        if self.config.target.validate_:
            validation, speedups = self.validate_stage(target, ddo)
        else:
            (self.out / "validation.json").unlink(missing_ok=True)  # it would describe another target
        summary = self.write_summary(ddo, target, extrapolation, validation)
        return ExperimentResult(self.out, {b: r.mixture for b, r in ddo.items()}, target, tuple(speedups), summary)

    def remove_stale_artefacts(self) -> None:
        """Drop the DDO files of budgets the config no longer has: the directory shows one experiment."""
        keep = {_b(b) for b in self.config.ddo.budgets}
        for pattern in ("ddo_*.json", "runs_*.csv"):
            for path in self.out.glob(pattern):
                if path.stem.split("_", 1)[1] not in keep:
                    path.unlink()

    def stage_done(self, name: str, status: str, detail: str | None) -> None:
        self.store.set_stage(name, status, detail)
        if detail:
            self.report(Note(f"{name}: {status}: {detail}"))

    # --- runs ---------------------------------------------------------------------------------------

    def job(self, stage: str, label: str, tokens: Mapping[str, float], seed: int,
            eval_points: int | None = None) -> RunJob:
        """Register a run of ``tokens`` (absolute, rounded to whole tokens) for ``stage``/``label``;
        ``eval_points`` overrides the proxy's evaluation points (and so is part of the key)."""
        rounded = tuple((d, int(round(float(tokens[d])))) for d in self.setup.domains)
        trainer = self.setup.trainer if eval_points is None else {**self.setup.trainer, "eval_points": eval_points}
        spec = RunSpec(self.setup.data_id, trainer, rounded, seed)
        self.store.register(spec, stage, label)
        self.keys.add(spec.key)
        return RunJob(spec.key, f"{stage}: {label}", dict(rounded), seed, self.out / RUNS_DIR / spec.key[:16],
                      eval_points)

    def execute(self, stage: str, jobs: Sequence[RunJob]) -> None:
        """Train the jobs not finished yet, retrying failures; every outcome goes to the store."""
        todo: list[RunJob] = []
        unique = list({job.key: job for job in jobs}.values())  # a run used twice in a stage trains once
        for job in unique:
            record = self.store.get(job.key)
            assert record is not None
            if record.status == "completed":
                continue
            adopted = _finished_on_disk(job)
            if adopted is not None:
                # trained to the end before a crash could record it: keep it, no new attempt
                self.store.adopt(job.key, adopted)
                self.report(Note(f"{job.label}: found finished on disk, recorded"))
                continue
            todo.append(job)
        self.report(StageStarted(stage, len(unique), len(unique) - len(todo)))
        retries = self.config.executor.retries
        for attempt in range(retries + 1):
            if not todo:
                break
            failed: list[RunJob] = []
            for job in todo:
                _prepare_run_dir(job, self.store.get(job.key))
            by_key = {j.key: j for j in todo}

            def on_start(job: RunJob) -> None:
                n = self.store.mark_started(job.key)
                self.report(RunStarted(stage, job.label, job.key, job.budget, n))

            def on_progress(p: RunProgress) -> None:
                self.report(p)

            with contextlib.closing(self.executor.execute(todo, on_start, on_progress)) as outcomes:
                for outcome in outcomes:
                    job = by_key[outcome.key]
                    outcome = self.check_outcome(outcome)
                    ok = outcome.status == "completed"
                    self.store.mark_finished(
                        job.key, "completed" if ok else "failed", metrics=outcome.metrics, error=outcome.error,
                        wall_time_s=outcome.wall_time_s,
                    )
                    retry = not ok and not outcome.fatal and attempt < retries
                    self.report(RunFinished(stage, job.label, job.key, "completed" if ok else "failed",
                                            outcome.error, retry, outcome.wall_time_s))
                    if outcome.fatal:
                        raise AutoscaleError(f"{job.label}: {outcome.error}")
                    if not ok:
                        failed.append(job)
            todo = failed

    def check_outcome(self, outcome: RunOutcome) -> RunOutcome:
        """A completed run must report every validation domain the objective needs."""
        if outcome.status != "completed" or outcome.metrics is None:
            return outcome
        final = outcome.metrics.get("final", {})
        names = list(self.setup.objective.weights or self.setup.domains)
        missing = [d for d in names if d not in final]
        if missing:
            return RunOutcome(outcome.key, "failed", outcome.metrics,
                              f"metrics.json: 'final' has no validation result for domain {missing[0]!r}",
                              outcome.wall_time_s)
        return outcome

    # --- stage 1: DDO -------------------------------------------------------------------------------

    def base_mixture(self, budget: float) -> Mixture:
        base = self.config.ddo.base
        if base == "uniform":
            weights = {d: 1.0 for d in self.setup.domains}
        elif base == "natural":
            weights = self.natural_weights()
        else:
            weights = {d: float(base[d]) for d in self.setup.domains}
        return Mixture.from_weights(weights, budget)

    def natural_weights(self) -> dict[str, float]:
        assert self.setup.unique_tokens is not None
        return {d: float(self.setup.unique_tokens[d]) for d in self.setup.domains}

    def ddo_stage(self, budget: float) -> tuple[Any, dict[str, Any]]:
        """Train the DDO design at ``budget`` (every replicate); return its runs table and run keys."""
        from autoscale.ddo.plan import plan_ddo
        from autoscale.ddo.runs import RunsTable

        name = f"ddo {_b(budget)}"
        self.store.set_stage(name, "running")
        domains = self.setup.domains
        replicates = self.config.ddo.replicates
        plan = plan_ddo(domains, budget=budget, base=self.base_mixture(budget), ratios=self.config.ddo.ratios,
                        eval_names=domains, replicates=replicates, seed=self.config.seed)
        assert plan.seeds is not None
        labels = [run if replicates == 1 else f"{run} seed {seed}" for run, seed in zip(plan.runs, plan.seeds, strict=True)]
        jobs = [self.job(name, label, dict(zip(domains, plan.tokens[i], strict=True)), int(plan.seeds[i]),
                         self.config.ddo.eval_points) for i, label in enumerate(labels)]
        self.store.forget_uses(name, set(labels))
        self.execute(name, jobs)

        records = [self.store.get(job.key) for job in jobs]
        ok = [i for i, r in enumerate(records) if r is not None and r.status == "completed"]
        failed = {labels[i]: r.error for i, r in enumerate(records) if i not in ok and r is not None}
        short = _domains_short_of_points(plan.tokens, plan.runs, domains, ok)
        if short:
            self.stage_done(name, "failed", f"too few completed runs for {', '.join(short)}")
            listed = "; ".join(f"{run} ({err})" for run, err in failed.items())
            raise AutoscaleError(
                f"DDO at {_b(budget)} tokens: domain(s) {', '.join(short)} keep fewer than 3 completed runs; "
                f"failed: {listed}; see `autoscale status {self.out}`"
            )
        metric = self.setup.objective.metric
        tokens, evals = [], []
        for i in ok:
            m = records[i].metrics  # type: ignore[union-attr]
            trained = m.get("tokens_per_domain") or {}
            # the tokens actually trained (whole sequences), else what was asked for
            tokens.append([float(trained.get(d, plan.tokens[i][j])) for j, d in enumerate(domains)])
            evals.append([metric_value(m["final"][d], metric) for d in domains])
        table = RunsTable(tuple(plan.runs[i] for i in ok), domains, np.array(tokens), domains, np.array(evals),
                          np.array([plan.seeds[i] for i in ok], dtype=np.int64))
        table.to_csv(self.out / f"runs_{_b(budget)}.csv")
        return table, {"runs": {labels[i]: jobs[i].key for i in range(len(jobs))}, "failed": failed,
                       "replicates": replicates}

    def fit_stage(self, trained: Mapping[float, tuple[Any, dict[str, Any]]]) -> dict[float, Any]:
        """Fit every budget's DDO together (one set of held domains) and write ddo_<budget>.json."""
        from autoscale.ddo.fit import fit_ddo_budgets

        results = fit_ddo_budgets(
            {b: table for b, (table, _) in trained.items()}, min_ratio=self.config.ddo.min_ratio,
            max_tokens=self.setup.caps, eval_weights=self.config.objective.weights,
            bootstrap=self.config.ddo.bootstrap, seed=self.config.seed,
        )
        for budget, result in results.items():
            name = f"ddo {_b(budget)}"
            for warning in result.warnings:
                self.report(Note(f"{name}: {warning}"))
            record = _ddo_record(result, budget) | trained[budget][1]
            record["objective"] = self.setup.objective.describe()
            _write_json(self.out / f"ddo_{_b(budget)}.json", record)
            self.stage_done(name, "completed", _weights_line(result.mixture))
        return results

    # --- stage 2: extrapolation ---------------------------------------------------------------------

    def extrapolate_stage(self, ddo: Mapping[float, Any]) -> tuple[Mixture, Any]:
        from autoscale.extrapolate import extrapolate, extrapolate_draws, held_weights

        self.store.set_stage("extrapolate", "running")
        mixtures = [r.mixture for r in ddo.values()]
        target = self.config.target
        hold = held_weights(mixtures)
        options = dict(target=target.budget, steps=None if target.budget is not None else 1,
                       max_tokens=self.setup.caps, offsets=target.offsets, hold=hold)
        ex = extrapolate(mixtures, **options)
        for warning in ex.warnings:
            self.report(Note(f"extrapolate: {warning}"))
        intervals, draws = {}, None
        if all(r.draws is not None for r in ddo.values()):
            draws, intervals = extrapolate_draws(mixtures, [r.draws for r in ddo.values()], **options)
        _write_json(self.out / "target.json", {
            "mixture": ex.mixture.to_dict(),
            "target_budget": target.budget,
            "s": ex.s,
            "method": ex.method,
            "law": None if ex.law is None else ex.law.to_dict(),
            "bounded": dict(ex.bounded),
            "held": dict(ex.held),
            "intervals": {d: list(v) for d, v in intervals.items()},
            "draws": draws,
            "offsets": dict(ex.offsets),
            "warnings": list(ex.warnings),
            "from": [{"budget": b, "mixture": r.mixture.to_dict()} for b, r in ddo.items()],
            "caps": self.setup.caps,
        })
        self.stage_done("extrapolate", "completed", _weights_line(ex.mixture))
        self.target_intervals = intervals
        return ex.mixture, ex

    # --- stage 3: validation at the target ----------------------------------------------------------

    def comparison_mixtures(self, target: Mixture, ddo: Mapping[float, Any]) -> dict[str, Mixture]:
        budget = target.budget
        out = {"predicted": target}
        for name in self.config.target.compare:
            if name == "uniform":
                out[name] = Mixture.from_weights({d: 1.0 for d in self.setup.domains}, budget)
            elif name == "natural":
                out[name] = Mixture.from_weights(self.natural_weights(), budget)
            else:  # the DDO optimum of the largest budget, reused at the target
                out[name] = list(ddo.values())[-1].mixture.scaled_to(budget)
        for name, weights in self.config.target.mixtures.items():
            out[name] = Mixture.from_weights({d: float(weights.get(d, 0.0)) for d in self.setup.domains}, budget)
        return out

    def validate_stage(self, target: Mixture, ddo: Mapping[float, Any]) -> tuple[dict[str, Any], list[SpeedUp]]:
        stage = "validate"
        self.store.set_stage(stage, "running")
        mixtures = self.comparison_mixtures(target, ddo)
        seeds = self.config.seeds
        jobs: dict[tuple[str, int], RunJob] = {}
        labels = set()
        for name, mixture in mixtures.items():
            for seed in seeds:
                label = name if len(seeds) == 1 else f"{name} seed {seed}"
                labels.add(label)
                jobs[name, seed] = self.job(stage, label, mixture.tokens, seed)
        self.store.forget_uses(stage, labels)
        self.execute(stage, list(jobs.values()))

        weight = self.config.target.smoothing
        objective = self.setup.objective
        runs: dict[str, list[dict[str, Any]]] = {}
        curves: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        for (name, seed), job in jobs.items():
            record = self.store.get(job.key)
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
        for name in mixtures:
            if name == "predicted":
                continue
            for seed in seeds:
                if ("predicted", seed) in curves and (name, seed) in curves:
                    speedups.append((seed, speedup(curves["predicted", seed], curves[name, seed], smoothing=weight,
                                                   names=("predicted", name))))
                else:
                    problems.append(f"no speed-up over {name!r} (seed {seed}): a run failed or has no curve")
        record = {
            "target_budget": target.budget,
            "objective": objective.describe(),
            "smoothing": describe_smoothing(weight),
            "smoothing_weight": weight,
            "seeds": seeds,
            "mixtures": {n: m.to_dict() for n, m in mixtures.items()},
            "runs": runs,
            "speedups": [s.to_dict() | {"seed": seed} for seed, s in speedups],
            "speedup_mean": _mean_speedups([s for _, s in speedups]),
            "final_perplexity": _mean_final_perplexity(runs),
            "gains": _gains(runs),
            "problems": problems,
        }
        _write_json(self.out / "validation.json", record)
        means = ", ".join(f"{b} {'not reached' if v is None else f'{v:+.1%}'}" for b, v in record["speedup_mean"].items())
        self.stage_done(stage, "failed" if problems else "completed",
                        "; ".join(problems) if problems else f"speed-up of predicted over {means}")
        return record, [s for _, s in speedups]

    # --- summary ------------------------------------------------------------------------------------

    def write_summary(self, ddo: Mapping[float, Any], target: Mixture, ex: Any,
                      validation: Mapping[str, Any] | None) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for r in self.store.runs():
            if r.key in self.keys:
                counts[r.status] = counts.get(r.status, 0) + 1
        summary = {
            "name": self.config.name,
            "domains": list(self.setup.domains),
            "objective": self.setup.objective.describe(),
            "data": self.setup.data_id,
            "ddo": [{"budget": b, "weights": r.mixture.weights, "tokens": dict(r.mixture.tokens),
                     "bounded": dict(r.bounded), "held": dict(r.held), "warnings": list(r.warnings),
                     "intervals": {d: list(v) for d, v in r.intervals.items()},
                     "replicates": r.noise.replicates if r.noise else 1,
                     "noise": r.noise.noise if r.noise else None,
                     "predicted_gain": r.gain, "predicted_gain_se": r.gain_se,
                     "runs_csv": f"runs_{_b(b)}.csv", "json": f"ddo_{_b(b)}.json"} for b, r in ddo.items()],
            "target": {"budget": target.budget, "weights": target.weights, "tokens": dict(target.tokens),
                       "s": ex.s, "method": ex.method, "warnings": list(ex.warnings), "held": dict(ex.held),
                       "intervals": {d: list(v) for d, v in self.target_intervals.items()}},
            "validation": None if validation is None else {
                "smoothing": validation["smoothing"],
                "speedups": validation["speedups"],
                "speedup_mean": validation["speedup_mean"],
                "final_perplexity": validation["final_perplexity"],
                "final_objective": {n: [e.get("final_objective") for e in v] for n, v in validation["runs"].items()},
                "gains": validation["gains"],
                "problems": validation["problems"],
            },
            "runs": counts,
            "wall_time_s": time.time() - self.started,  # of this invocation
            "executor": self.config.executor.kind,
        }
        _write_json(self.out / "summary.json", summary)
        return summary


# --- helpers ----------------------------------------------------------------------------------------


def _b(budget: float) -> str:
    """A budget as it appears in stage and file names: the integer token count."""
    return str(int(round(budget)))


def _weights_line(mixture: Mixture) -> str:
    return ", ".join(f"{d} {w:.3f}" for d, w in mixture.weights.items())


def _mean_speedups(speedups: Sequence[SpeedUp]) -> dict[str, float | None]:
    """Mean speed-up per comparison over seeds (None if any seed never reached the baseline)."""
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


def _domains_short_of_points(tokens: np.ndarray, runs: Sequence[str], domains: Sequence[str],
                             ok: Sequence[int]) -> list[str]:
    """Domains that keep fewer than 3 completed runs among the base and their own perturbations.

    A planned row belongs to domain j when it differs from the base row in column j only.
    """
    base = runs.index("base") if "base" in runs else 0
    short = []
    for j, d in enumerate(domains):
        mine = [i for i in range(len(runs))
                if i == base or (tokens[i, j] != tokens[base, j] and np.all(np.delete(tokens[i] == tokens[base], j)))]
        if base not in ok or sum(i in ok for i in mine) < 3:
            short.append(d)
    return short


def _finished_on_disk(job: RunJob) -> dict[str, Any] | None:
    """A valid, completed metrics.json in the run's folder (None otherwise)."""
    from autoscale.train.metrics import read_metrics

    path = job.run_dir / "metrics.json"
    if not path.exists():
        return None
    try:
        metrics = read_metrics(path)
    except AutoscaleError:
        return None
    return metrics.to_dict() if metrics.usable else None


def _prepare_run_dir(job: RunJob, record: Any) -> None:
    """Before an attempt: drop a stale metrics.json; after a divergence, the checkpoint too.

    Interrupted or crashed runs keep their checkpoint and resume from it.
    """
    job.run_dir.mkdir(parents=True, exist_ok=True)
    (job.run_dir / "metrics.json").unlink(missing_ok=True)
    if record is not None and record.error and record.error.startswith("diverged"):
        (job.run_dir / "checkpoint.pt").unlink(missing_ok=True)


def _gains(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """The predicted mixture's paired gain over each other validated mixture, with its verdict."""
    from autoscale.gain import paired_gain

    def finals(entries: Sequence[Mapping[str, Any]]) -> dict[int, float]:
        return {int(e["seed"]): float(e["final_objective"]) for e in entries
                if e.get("final_objective") is not None}

    predicted = finals(runs.get("predicted", []))
    out = []
    for name, entries in runs.items():
        if name != "predicted" and (g := paired_gain(name, predicted, finals(entries))) is not None:
            out.append(g.to_dict())
    return out


def _ddo_record(result: Any, budget: float) -> dict[str, Any]:
    """A DDOResult as JSON: fits in relative amounts (x) and normalised objectives (y)."""
    fits = {}
    for d, f in result.fits.items():
        fits[d] = {k: _plain(getattr(f, k)) for k in ("a", "b", "c", "x", "y", "residuals", "r2", "exact")}
    return {
        "budget": budget,
        "mixture": result.mixture.to_dict(),
        "fits": fits,
        "bounded": dict(result.bounded),
        "predicted_objective": _plain(result.predicted_objective),
        "base_objective": _plain(result.base_objective),
        "intervals": {d: list(v) for d, v in (result.intervals or {}).items()},
        "held": dict(result.held),
        "noise": result.mixture.metadata.get("noise"),
        "predicted_gain": _plain(result.gain),
        "predicted_gain_se": result.gain_se,
        "bootstrap_draws": result.mixture.metadata.get("bootstrap_draws"),
        "warnings": list(result.warnings),
    }


def _experiment_record(config: ExperimentConfig, setup: _Setup) -> dict[str, Any]:
    return {
        "config": json.loads(config.model_dump_json(by_alias=True)),
        "domains": list(setup.domains),
        "data": setup.data_id,
        "unique_tokens": setup.unique_tokens,
        "caps": setup.caps,
        "objective": setup.objective.describe(),
        "trainer": setup.trainer,
    }


def _plain(value: Any) -> Any:
    """JSON-able: numpy to Python, mappings and sequences walked, NaN/inf to null."""
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _write_json(path: Path, data: Any) -> None:
    """Atomic: a temporary file beside ``path``, then rename (a reader never sees half a file)."""
    write_text_atomic(path, json.dumps(_plain(data), indent=2, allow_nan=False) + "\n")

