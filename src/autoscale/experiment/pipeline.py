"""The pipeline, end to end and resumable: every selected method's search, its mixture, validation.

Stages, in order (each recorded in the run store, each writing its artefacts at once):

1. Each method's search (`autoscale.methods`; AutoScale's are ``ddo <budget>``): the runs its design
   asks for, trained through the configured executor unless the run store has them (a run two
   designs share, same data, trainer, tokens and seed, is trained once). After each stage the
   method checks what finished (AutoScale: every domain keeps 3 points) and its runs table is
   written.
2. Each method's result: its mixture at the target and its diagnostics (AutoScale: the DDO fits of
   every budget together, then the law to the target: stages ``ddo <budget>`` and ``extrapolate``).
3. ``validate`` (if ``target.validate``): train every method's mixture and every baseline
   (`autoscale.baselines`, and the user's mixtures) at the target budget (each seed), and the
   paper's speed-up of each method's mixture over each baseline, in training tokens
   (``autoscale.speedup``).

The experiment folder's layout is `autoscale.experiment.folder`'s. All token counts are absolute
tokens; weights sum to 1.

Faults: a run that fails or diverges is retried ``executor.retries`` times, then recorded
``failed``; a method goes on without it only if its check passes, else one error names the
failed runs. Ctrl-C (or SIGTERM via the CLI) marks running runs ``interrupted`` and re-raises
``KeyboardInterrupt``; a rerun resumes them from their checkpoints. A run whose key is unchanged is
never trained again, whatever else changed. Progress goes to ``reporter`` (a callable taking the
event dataclasses below); nothing is printed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autoscale.baselines import BASELINES
from autoscale.domains import check_mixture_domains
from autoscale.errors import AutoscaleError
from autoscale.experiment.config import ExperimentConfig
from autoscale.experiment.executors import Executor, RunJob, RunOutcome, RunProgress, make_executor
from autoscale.experiment.folder import CHECKPOINT, METRICS, ExperimentFolder
from autoscale.experiment.runstore import RunSpec, RunStore, experiment_lock
from autoscale.methods import METHODS
from autoscale.methods.base import Artefact, Context, FinishedRun, MethodResult, Stage
from autoscale.mixture import Mixture
from autoscale.speedup import Objective, SpeedUp, describe_smoothing, metric_value, smooth, speedup

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

    ``mixtures``: method -> its mixture at the target; ``ddo``: AutoScale's budget (tokens) ->
    optimal mixture (empty without AutoScale); ``target``: AutoScale's extrapolated mixture (else
    the first method's); ``speedups``: each method's mixture against each baseline (one per
    baseline and seed).
    """

    directory: Path
    ddo: Mapping[float, Mixture]
    target: Mixture
    speedups: tuple[SpeedUp, ...] = ()
    summary: Mapping[str, Any] = field(default_factory=dict)
    mixtures: Mapping[str, Mixture] = field(default_factory=dict)


# --- the experiment's fixed facts -------------------------------------------------------------------


@dataclass(frozen=True)
class _Setup:
    """Facts derived once per invocation from the config and the data."""

    domains: tuple[str, ...]
    data_id: str  # the token store's manifest hash (or the user's data fingerprint)
    trainer: Mapping[str, Any]  # trainer settings in every run key
    unique_tokens: Mapping[str, int] | None  # per domain, one epoch (None without a store)
    caps: Mapping[str, Mapping[str, float] | None]  # method -> max tokens per domain (its max_epochs x unique)
    objective: Objective
    store_path: Path | None
    validation: tuple[str, ...] = ()  # validation domains when the objective names some outside training


def _setup(config: ExperimentConfig, say: Callable[[str], None]) -> _Setup:
    unique: dict[str, int] | None = None
    store_path = config.data.store
    if store_path is not None:
        from autoscale.data import DomainSource, TokenStore, prepare_store

        if config.data.sources is not None:
            selected = config.data.domains
            if selected is not None:  # validation-only domains of the objective are tokenised too, not trained on
                selected = [*selected, *(d for d in config.objective.weights or {} if d not in selected)]
            sources = _corpus_sources(config.data.sources, selected)
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
        evaluated: tuple[str, ...] | None = tuple(config.proxy.eval.domains or store.domains)
    else:
        assert config.data.domains is not None  # the config validator guarantees it
        domains = tuple(config.data.domains)
        data_id = "user:" + config.data.fingerprint
        evaluated = None
    domains = check_mixture_domains(domains)  # names (a store's or data.domains) and at least 2
    config.check_domains(domains, evaluated)
    caps = {name: _caps(getattr(settings, "max_epochs", None), unique, domains)
            for name, settings in config.method_settings.items()}
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
    named = tuple(config.objective.weights or ())
    validation = named if any(d not in domains for d in named) else ()
    return _Setup(domains, data_id, trainer, unique, caps, objective, store_path, validation)


def _context(config: ExperimentConfig, setup: _Setup, folder: ExperimentFolder, name: str) -> Context:
    """The facts method ``name`` sees: its own caps, and the names the folder gives its files."""
    return Context(setup.domains, config.seed, setup.objective, setup.validation, natural=_natural(setup),
                   caps=setup.caps.get(name),
                   target=config.target.budget, offsets=config.target.offsets,
                   name_of=lambda kind, budget: _artefact_path(folder, name, kind, budget).name)


def _natural(setup: _Setup) -> dict[str, float] | None:
    """Unique training tokens per domain (the natural mixture), None without a token store."""
    return None if setup.unique_tokens is None else {d: float(setup.unique_tokens[d]) for d in setup.domains}


def _artefact_path(folder: ExperimentFolder, method: str, kind: str, budget: float | None) -> Path:
    """Where the folder keeps a method's artefact of ``kind`` (table, record, result)."""
    if kind == "result":
        return folder.method_result(method)
    assert budget is not None
    return folder.runs_table(method, budget) if kind == "table" else folder.search_record(method, budget)


def _caps(epochs: float | Mapping[str, float] | None, unique: Mapping[str, int] | None,
          domains: Sequence[str]) -> dict[str, float] | None:
    """Max tokens per domain: ``epochs`` (one number or per domain) x its unique tokens."""
    if epochs is None or unique is None:
        return None
    caps = {d: (epochs.get(d, math.inf) if isinstance(epochs, Mapping) else epochs) * unique[d] for d in domains}
    return {d: c for d, c in caps.items() if math.isfinite(c)}


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


def run_experiment(config: ExperimentConfig, reporter: Reporter | None = None,
                   retrain_unkept: bool = False) -> ExperimentResult:
    """Run (or resume) the experiment ``config`` describes, in ``config.output``.

    ``retrain_unkept``: with ``target.downstream``, train again the validation runs that finished
    before it was configured and so kept no weights (else they are one error naming them).

    Raises AutoscaleError for bad input and unrecoverable failures (one line), KeyboardInterrupt
    after marking running runs interrupted.
    """
    if config.output is None:
        raise AutoscaleError("the experiment has no output directory (load it with load_config)")
    out = Path(config.output)
    report = reporter or (lambda event: None)
    # Everything that can reject the input happens before the experiment directory is touched.
    setup = _setup(config, lambda msg: report(Note(msg)))
    folder = ExperimentFolder(out)
    contexts = {name: _context(config, setup, folder, name) for name in config.methods}
    # every method's design, checked (e.g. enough runs for its domains) before anything is trained
    plans = {name: tuple(METHODS[name].stages(settings, contexts[name]))
             for name, settings in config.method_settings.items()}
    with experiment_lock(out), RunStore(folder.store) as store:
        stale = store.interrupt_running("stopped: the previous `autoscale run` ended while this run trained")
        if stale:
            report(Note(f"{len(stale)} run(s) left running by an earlier invocation will resume"))
        folder.write_json(folder.experiment, _experiment_record(config, setup))
        pipe = _Pipeline(config, setup, store, folder, report, contexts, plans, retrain_unkept)
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
    def __init__(self, config: ExperimentConfig, setup: _Setup, store: RunStore, folder: ExperimentFolder,
                 report: Reporter, contexts: Mapping[str, Context], plans: Mapping[str, Sequence[Stage]],
                 retrain_unkept: bool = False):
        self.config, self.setup, self.store, self.report = config, setup, store, report
        self.retrain_unkept = retrain_unkept
        self.folder, self.out = folder, folder.path
        self.contexts, self.plans = contexts, plans
        self.search_runs: dict[str, dict[str, float]] = {}  # method -> run key -> its training tokens
        self._executor: Executor | None = None
        self.started = time.time()
        self.keys: set[str] = set()  # the runs this invocation's stages use

    def close(self) -> None:
        if self._executor is not None:
            self._executor.close()

    @property
    def executor(self) -> Executor:
        # Created on first use: a resumed experiment with nothing left to train never starts Ray.
        if self._executor is None:
            self._executor = make_executor(self.config, self.setup.store_path)
        return self._executor

    def write_artefacts(self, method: str, artefacts: Sequence[Artefact]) -> None:
        for artefact in artefacts:
            path = _artefact_path(self.folder, method, artefact.kind, artefact.budget)
            if artefact.kind == "table":
                artefact.data.to_csv(path)
            else:
                self.folder.write_json(path, artefact.data)

    def run(self) -> ExperimentResult:
        settings = self.config.method_settings
        # the folder shows one experiment: files of methods or budgets no longer configured go
        self.folder.remove_stale({n: METHODS[n].search_budgets(s) for n, s in settings.items()}, METHODS)
        results: dict[str, MethodResult] = {}
        for name, method_settings in settings.items():
            ctx = self.contexts[name]
            runs = {stage.name: self.search_stage(name, method_settings, ctx, stage) for stage in self.plans[name]}
            results[name] = self.result_stage(name, method_settings, ctx, runs)
        validation, speedups = None, []
        if self.config.target.validate_:
            validation, speedups = self.validate_stage(results)
        else:
            self.folder.validation.unlink(missing_ok=True)  # it would describe another target
        summary = self.write_summary(results, validation)
        first = results.get("autoscale") or next(iter(results.values()))
        return ExperimentResult(self.out, dict(results["autoscale"].searched) if "autoscale" in results else {},
                                first.mixture, tuple(speedups), summary,
                                {METHODS[n].mixture: r.mixture for n, r in results.items()})

    def stage_done(self, name: str, status: str, detail: str | None) -> None:
        self.store.set_stage(name, status, detail)
        if detail:
            self.report(Note(f"{name}: {status}: {detail}"))

    # --- runs ---------------------------------------------------------------------------------------

    def job(self, stage: str, label: str, tokens: Mapping[str, float], seed: int,
            eval_points: int | None = None, mode: Mapping[str, Any] | None = None) -> RunJob:
        """Register a run of ``tokens`` (absolute, rounded to whole tokens) for ``stage``/``label``;
        ``eval_points`` overrides the proxy's evaluation points and ``mode`` is a training mode
        (both part of the key)."""
        rounded = tuple((d, int(round(float(tokens[d])))) for d in self.setup.domains)
        trainer = dict(self.setup.trainer)
        if eval_points is not None:
            trainer["eval_points"] = eval_points
        if mode is not None:
            trainer["mode"] = dict(mode)
        spec = RunSpec(self.setup.data_id, trainer, rounded, seed)
        self.store.register(spec, stage, label)
        self.keys.add(spec.key)
        return RunJob(spec.key, f"{stage}: {label}", dict(rounded), seed, self.folder.run_dir(spec.key), eval_points,
                      None if mode is None else dict(mode))

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

    # --- stage 1: each method's search ------------------------------------------------------------

    def search_stage(self, method: str, settings: Any, ctx: Context, stage: Stage) -> list[FinishedRun]:
        """Train one stage of a method's design; its check's artefacts are written at once."""
        self.store.set_stage(stage.name, "running")
        jobs = [self.job(stage.name, r.label, r.tokens, r.seed, r.eval_points, r.mode) for r in stage.runs]
        self.search_runs.setdefault(method, {}).update({job.key: r.cost for job, r in zip(jobs, stage.runs, strict=True)})
        self.store.forget_uses(stage.name, {r.label for r in stage.runs})
        self.execute(stage.name, jobs)
        finished = []
        for planned, job in zip(stage.runs, jobs, strict=True):
            record = self.store.get(job.key)
            assert record is not None
            ok = record.status == "completed"
            finished.append(FinishedRun(planned, job.key, "completed" if ok else "failed", record.error,
                                        record.metrics if ok else None))
        try:
            artefacts = METHODS[method].check(settings, ctx, stage, finished)
        except AutoscaleError as exc:
            self.stage_done(stage.name, "failed", str(exc))
            raise AutoscaleError(f"{exc}; see `autoscale status {self.out}`") from None
        self.write_artefacts(method, artefacts)
        return finished

    # --- stage 2: each method's mixture at the target -----------------------------------------------

    def result_stage(self, method: str, settings: Any, ctx: Context,
                     runs: Mapping[str, Sequence[FinishedRun]]) -> MethodResult:
        result = METHODS[method].result(settings, ctx, runs)
        self.write_artefacts(method, result.artefacts)
        named = {stage for stage, _, _ in result.stages}
        for stage, finished in runs.items():  # search stages the result does not complete itself
            if stage not in named:
                done = sum(r.status == "completed" for r in finished)
                self.stage_done(stage, "completed", f"{done} of {len(finished)} runs completed")
        for stage, detail, warnings in result.stages:
            for warning in warnings:
                self.report(Note(f"{stage}: {warning}"))
            self.stage_done(stage, "completed", detail)
        return result

    # --- stage 3: validation at the target ----------------------------------------------------------

    def comparison_mixtures(self, results: Mapping[str, MethodResult]) -> dict[str, Mixture]:
        """Every method's mixture, then the baselines, then the user's mixtures, at the target."""
        out = {METHODS[n].mixture: r.mixture for n, r in results.items()}
        budget = next(iter(out.values())).budget
        for name in self.config.comparisons:
            baseline = BASELINES[name]
            if baseline.weights is None:  # offered by a method (ddo: AutoScale's optimum reused)
                assert baseline.needs is not None
                out[name] = results[baseline.needs].baselines[name].scaled_to(budget)
            else:
                out[name] = Mixture.from_weights(baseline.weights(self.setup.domains, _natural(self.setup)), budget)
        for name, weights in self.config.target.mixtures.items():
            out[name] = Mixture.from_weights({d: float(weights.get(d, 0.0)) for d in self.setup.domains}, budget)
        return out

    def validate_stage(self, results: Mapping[str, MethodResult]) -> tuple[dict[str, Any], list[SpeedUp]]:
        stage = "validate"
        self.store.set_stage(stage, "running")
        mixtures = self.comparison_mixtures(results)
        own = [METHODS[n].mixture for n in results]  # the methods' mixtures; the rest are baselines
        seeds = self.config.seeds
        jobs: dict[tuple[str, int], RunJob] = {}
        labels = set()
        for name, mixture in mixtures.items():
            for seed in seeds:
                label = name if len(seeds) == 1 else f"{name} seed {seed}"
                labels.add(label)
                jobs[name, seed] = self.job(stage, label, mixture.tokens, seed)
        downstream = self.config.target.downstream
        if downstream is not None:
            jobs = {k: dataclasses.replace(j, keep_weights=True) for k, j in jobs.items()}
            self.check_kept_weights(list(jobs.values()))
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
        if downstream is not None:
            record["downstream"] = self.downstream_stage(jobs)
        self.folder.write_json(self.folder.validation, record)
        means = ", ".join(f"{b} {'not reached' if v is None else f'{v:+.1%}'}" for b, v in record["speedup_mean"].items())
        self.stage_done(stage, "failed" if problems else "completed",
                        "; ".join(problems) if problems else f"speed-up of {own[0]} over {means}")
        return record, [s for _, s in speedups]

    # --- downstream evaluation of the validation runs ------------------------------------------------

    def check_kept_weights(self, jobs: Sequence[RunJob]) -> None:
        """Validation runs that finished without weights (before target.downstream was set): one
        error naming them, or with ``retrain_unkept`` marked to train again (never silently)."""
        unkept = [j for j in jobs if (r := self.store.get(j.key)) is not None and r.status == "completed"
                  and not (j.run_dir / CHECKPOINT).exists()]
        if not unkept:
            return
        if not self.retrain_unkept:
            names = "; ".join(f"{j.label} ({j.run_dir.relative_to(self.out)})" for j in unkept)
            raise AutoscaleError(f"target.downstream: {len(unkept)} validation run(s) finished before it was set and "
                                 f"kept no weights: {names}; retrain them with `autoscale run CONFIG --retrain-unkept`")
        for j in unkept:
            self.store.mark_finished(j.key, "failed", error="retrained: it kept no weights for downstream evaluation")
            (j.run_dir / METRICS).unlink(missing_ok=True)
            self.report(Note(f"{j.label}: kept no weights; trained again for downstream evaluation"))

    def downstream_stage(self, jobs: Mapping[tuple[str, int], RunJob]) -> dict[str, Any]:
        """Every completed validation run scored on the configured tasks (cached per run)."""
        from autoscale.data.store import TokenStore
        from autoscale.train.downstream import evaluate_run, mean_over_seeds

        cfg = self.config.target.downstream
        assert cfg is not None and self.setup.store_path is not None
        self.store.set_stage("downstream", "running")
        store = TokenStore.open(self.setup.store_path)
        runs: dict[str, list[dict[str, Any]]] = {}
        for (name, seed), job in jobs.items():
            record = self.store.get(job.key)
            if record is None or record.status != "completed":
                continue
            result = evaluate_run(job.run_dir, store, cfg.tasks, cfg.num_fewshot, cfg.limit)
            self.report(Note(f"downstream: {job.label}: average {result['average']:.3f}"
                             + (" (cached)" if result["cached"] else "")))
            runs.setdefault(name, []).append({"seed": seed, **{k: v for k, v in result.items() if k != "cached"}})
        mixtures = {name: mean_over_seeds(results) for name, results in runs.items()}
        best = max(mixtures, key=lambda n: mixtures[n]["average"]) if mixtures else None
        self.stage_done("downstream", "completed", None if best is None else
                        f"best average {best} {mixtures[best]['average']:.3f} over {', '.join(cfg.tasks)}")
        return {"tasks": list(cfg.tasks), "num_fewshot": cfg.num_fewshot, "limit": cfg.limit, "runs": runs,
                "mixtures": mixtures}

    # --- summary ------------------------------------------------------------------------------------

    def method_summaries(self, results: Mapping[str, MethodResult],
                         validation: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, float]]:
        """Per method: its mixture, the compute of its whole design (runs it shares with another
        method's design are charged to both; ``shared_tokens`` says how much), and at the target its
        final objective and gain over uniform. And the search compute charged vs trained."""
        out: dict[str, Any] = {}
        finals = {n: [e["final_objective"] for e in v if e.get("final_objective") is not None]
                  for n, v in ((validation or {}).get("runs") or {}).items()}
        gains = {(g["of"], g["baseline"]): g for g in (validation or {}).get("gains") or []}
        trained: dict[str, float] = {}
        for name, result in results.items():
            method, mine = METHODS[name], self.search_runs.get(name, {})
            trained |= mine
            others = {k for n, runs in self.search_runs.items() if n != name for k in runs}
            tokens = float(sum(mine.values()))
            out[name] = {
                "mixture": method.mixture, "description": method.description,
                "weights": result.mixture.weights, "target_budget": result.mixture.budget,
                "search_runs": len(mine), "search_tokens": tokens,
                "search_vs_target": tokens / result.mixture.budget,
                "shared_tokens": float(sum(t for k, t in mine.items() if k in others)),
                "final_objective": float(np.mean(finals[method.mixture])) if finals.get(method.mixture) else None,
                "gain_over_uniform": gains.get((method.mixture, "uniform")),
            }
        compute = {"charged_tokens": float(sum(e["search_tokens"] for e in out.values())),
                   "trained_tokens": float(sum(trained.values()))}
        return out, compute

    def write_summary(self, results: Mapping[str, MethodResult], validation: Mapping[str, Any] | None) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for r in self.store.runs():
            if r.key in self.keys:
                counts[r.status] = counts.get(r.status, 0) + 1
        summary: dict[str, Any] = {
            "name": self.config.name,
            "domains": list(self.setup.domains),
            "objective": self.setup.objective.describe(),
            "data": self.setup.data_id,
        }
        for result in results.values():
            summary.update(result.summary)
        summary["methods"], summary["search_compute"] = self.method_summaries(results, validation)
        summary |= {
            "validation": None if validation is None else {
                "smoothing": validation["smoothing"],
                "speedups": validation["speedups"],
                "speedup_mean": validation["speedup_mean"],
                "speedup_means": validation["speedup_means"],
                "final_perplexity": validation["final_perplexity"],
                "final_objective": {n: [e.get("final_objective") for e in v] for n, v in validation["runs"].items()},
                "gains": validation["gains"],
                "problems": validation["problems"],
                **({"downstream": validation["downstream"]["mixtures"]} if "downstream" in validation else {}),
            },
            "runs": counts,
            "wall_time_s": time.time() - self.started,  # of this invocation
            "executor": self.config.executor.kind,
        }
        self.folder.write_json(self.folder.summary, summary)
        return summary


# --- helpers ----------------------------------------------------------------------------------------


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


def _finished_on_disk(job: RunJob) -> dict[str, Any] | None:
    """A valid, completed metrics.json in the run's folder (None otherwise)."""
    from autoscale.train.metrics import read_metrics

    path = job.run_dir / METRICS
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
    (job.run_dir / METRICS).unlink(missing_ok=True)
    if record is not None and record.error and record.error.startswith("diverged"):
        (job.run_dir / "checkpoint.pt").unlink(missing_ok=True)


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


def _experiment_record(config: ExperimentConfig, setup: _Setup) -> dict[str, Any]:
    return {
        "config": json.loads(config.model_dump_json(by_alias=True)),
        "domains": list(setup.domains),
        "data": setup.data_id,
        "unique_tokens": setup.unique_tokens,
        "caps": next(iter(setup.caps.values())),
        "objective": setup.objective.describe(),
        "trainer": setup.trainer,
    }
