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

The rooms: `setup` (the config checked against the data, once), `scheduler` (runs trained once,
retried, recorded in the run store), this module (each method's search and result), `validation`
(stage 3, validation.json), `summary` (summary.json). The experiment folder's layout is
`autoscale.experiment.folder`'s. All token counts are absolute tokens; weights sum to 1.

Faults: a run that fails or diverges is retried ``executor.retries`` times, then recorded
``failed``; a method goes on without it only if its check passes, else one error names the
failed runs. Ctrl-C (or SIGTERM via the CLI) marks running runs ``interrupted`` and re-raises
``KeyboardInterrupt``; a rerun resumes them from their checkpoints. A run whose key is unchanged is
never trained again, whatever else changed. Progress goes to ``reporter`` (a callable taking the
event dataclasses of `autoscale.experiment.scheduler`); nothing is printed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoscale.errors import AutoscaleError
from autoscale.experiment import legacy
from autoscale.experiment.config import ExperimentConfig
from autoscale.experiment.folder import ExperimentFolder
from autoscale.experiment.records import ExperimentRecord, MethodRecord, SearchRecord, SummaryRecord
from autoscale.experiment.runstore import RunStore, experiment_lock
from autoscale.experiment.scheduler import Note, Reporter, Scheduler
from autoscale.experiment.setup import context, experiment_record, setup_experiment
from autoscale.experiment.summary import write_summary
from autoscale.experiment.validation import baseline_weights, validate
from autoscale.methods import METHODS
from autoscale.methods.base import Artefact, Context, FinishedRun, MethodResult, Stage
from autoscale.mixture import Mixture
from autoscale.speedup import SpeedUp


@dataclass(frozen=True)
class ExperimentResult:
    """What `run_experiment` produced; the files in ``directory`` hold the same and more.

    ``mixtures``: method -> its mixture at the target, in the config's order (the first is the
    featured one, ``target``); ``searched``: method -> search budget (tokens) -> the optimum it found
    there (AutoScale: its DDO optima); ``speedups``: each method's mixture against each baseline (one
    per baseline and seed); ``summary``: summary.json's record.
    """

    directory: Path
    mixtures: Mapping[str, Mixture]
    searched: Mapping[str, Mapping[float, Mixture]]
    summary: SummaryRecord
    speedups: tuple[SpeedUp, ...] = ()

    @property
    def target(self) -> Mixture:
        """The featured method's mixture at the target."""
        return next(iter(self.mixtures.values()))


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
    setup = setup_experiment(config, lambda msg: report(Note(msg)))
    folder = ExperimentFolder(out)
    contexts = {name: context(config, setup, folder, name) for name in config.methods}
    # every method's design, checked (e.g. enough runs for its domains) before anything is trained
    plans = {name: tuple(METHODS[name].stages(settings, contexts[name]))
             for name, settings in config.method_settings.items()}
    if config.target.validate_:
        baseline_weights(config, setup)  # and every baseline's weights over these domains
    with experiment_lock(out), RunStore(folder.store) as store:
        stale = store.interrupt_running("stopped: the previous `autoscale run` ended while this run trained")
        if stale:
            report(Note(f"{len(stale)} run(s) left running by an earlier invocation will resume"))
        folder.write_record(folder.experiment, ExperimentRecord, experiment_record(config, setup))
        pipe = _Pipeline(Scheduler(config, setup, store, folder, report), contexts, plans, retrain_unkept)
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
    def __init__(self, runs: Scheduler, contexts: Mapping[str, Context], plans: Mapping[str, Sequence[Stage]],
                 retrain_unkept: bool = False):
        self.runs, self.config, self.folder = runs, runs.config, runs.folder
        self.retrain_unkept = retrain_unkept
        self.contexts, self.plans = contexts, plans
        self.search_runs: dict[str, dict[str, float]] = {}  # method -> run key -> its training tokens
        self.started = time.time()

    def close(self) -> None:
        self.runs.close()

    def write_artefacts(self, method: str, artefacts: Sequence[Artefact]) -> None:
        for artefact in artefacts:
            path = self.folder.artefact(method, artefact.kind, artefact.budget)
            if artefact.kind == "table":
                artefact.data.to_csv(path)
            else:
                kind = SearchRecord if artefact.kind == "record" else MethodRecord
                self.folder.write_record(path, kind, artefact.data)

    def run(self) -> ExperimentResult:
        settings = self.config.method_settings
        legacy.upgrade(self.folder.path)  # a folder of an older autoscale: its files under today's names
        # the folder shows one experiment: files of methods or budgets no longer configured go
        self.folder.remove_stale({n: METHODS[n].search_budgets(s) for n, s in settings.items()}, METHODS)
        results: dict[str, MethodResult] = {}
        for name, method_settings in settings.items():
            ctx = self.contexts[name]
            runs = {stage.name: self.search_stage(name, method_settings, ctx, stage) for stage in self.plans[name]}
            results[name] = self.result_stage(name, method_settings, ctx, runs)
        validation, speedups = None, []
        if self.config.target.validate_:
            validation, speedups = validate(self.runs, results, self.retrain_unkept)
        else:
            self.folder.validation.unlink(missing_ok=True)  # it would describe another target
        summary = write_summary(self.runs, results, self.search_runs, validation, self.started)
        return ExperimentResult(self.folder.path, {n: r.mixture for n, r in results.items()},
                                {n: dict(r.searched) for n, r in results.items()}, summary, tuple(speedups))

    # --- stage 1: each method's search ------------------------------------------------------------

    def search_stage(self, method: str, settings: Any, ctx: Context, stage: Stage) -> list[FinishedRun]:
        """Train one stage of a method's design; its check's artefacts are written at once."""
        self.runs.store.set_stage(stage.name, "running")
        jobs = [self.runs.job(stage.name, r.label, r.tokens, r.seed, r.eval_points, r.mode) for r in stage.runs]
        self.search_runs.setdefault(method, {}).update({job.key: r.cost for job, r in zip(jobs, stage.runs, strict=True)})
        self.runs.store.forget_uses(stage.name, {r.label for r in stage.runs})
        self.runs.execute(stage.name, jobs)
        finished = []
        for planned, job in zip(stage.runs, jobs, strict=True):
            record = self.runs.store.get(job.key)
            assert record is not None
            ok = record.status == "completed"
            finished.append(FinishedRun(planned, job.key, "completed" if ok else "failed", record.error,
                                        record.metrics if ok else None))
        try:
            artefacts = METHODS[method].check(settings, ctx, stage, finished)
        except AutoscaleError as exc:
            self.runs.stage_done(stage.name, "failed", str(exc))
            raise AutoscaleError(f"{exc}; see `autoscale status {self.runs.out}`") from None
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
                self.runs.stage_done(stage, "completed", f"{done} of {len(finished)} runs completed")
        for stage, detail, warnings in result.stages:
            for warning in warnings:
                self.runs.report(Note(f"{stage}: {warning}"))
            self.runs.stage_done(stage, "completed", detail)
        return result
