"""Scheduling runs: each run registered under its key in the run store, trained through the
executor unless it already finished (in the store, or on disk after a crash), retried on failure;
and the progress events the CLI renders.

Faults: a run that fails or diverges is retried ``executor.retries`` times, then recorded
``failed``. A run whose key is unchanged is never trained again, whatever else changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autoscale.errors import AutoscaleError
from autoscale.experiment.config import ExperimentConfig
from autoscale.experiment.executors import (
    Executor,
    RunJob,
    RunOutcome,
    RunProgress,
    finished_metrics,
    make_executor,
)
from autoscale.experiment.folder import METRICS, ExperimentFolder
from autoscale.experiment.runstore import RunSpec, RunStore
from autoscale.experiment.setup import Setup

#: a stage stops when its first runs all fail with one error: the rest would fail the same way
EARLY_FAILURES = 3

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


class Scheduler:
    """The runs of one invocation: registered, trained once, their outcomes in the run store."""

    def __init__(self, config: ExperimentConfig, setup: Setup, store: RunStore, folder: ExperimentFolder,
                 report: Reporter):
        self.config, self.setup, self.store, self.folder, self.report = config, setup, store, folder, report
        self.out = folder.path
        self._executor: Executor | None = None
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

    def stage_done(self, name: str, status: str, detail: str | None) -> None:
        self.store.set_stage(name, status, detail)
        if detail:
            self.report(Note(f"{name}: {status}: {detail}"))

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

            first_errors: list[str | None] = []  # the stage's first outcomes: None for a completed run, else its error
            with contextlib.closing(self.executor.execute(todo, on_start, on_progress)) as outcomes:
                for outcome in outcomes:
                    job = by_key[outcome.key]
                    if outcome.note:
                        self.report(Note(f"{job.label}: {outcome.note}"))
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
                    if attempt == 0 and len(first_errors) < EARLY_FAILURES:
                        first_errors.append(None if ok else outcome.error)
                        left = len(todo) - len(first_errors)
                        if (len(first_errors) == EARLY_FAILURES and first_errors[0] is not None
                                and len(set(first_errors)) == 1 and left):
                            # a broken trainer or environment: the other runs would fail the same way
                            raise AutoscaleError(f"{stage}: its first {EARLY_FAILURES} runs all failed the same way, "
                                                 f"so it stopped before the other {left}: {outcome.error} (each "
                                                 "run's own output is in its folder's stderr.log)")
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


def _finished_on_disk(job: RunJob) -> dict[str, Any] | None:
    """A valid, completed metrics.json in the run's folder (None otherwise)."""
    metrics = finished_metrics(job.run_dir)
    return None if metrics is None else metrics.to_dict()


def _prepare_run_dir(job: RunJob, record: Any) -> None:
    """Before an attempt: drop a stale metrics.json; after a divergence, the checkpoint too.

    Interrupted or crashed runs keep their checkpoint and resume from it.
    """
    job.run_dir.mkdir(parents=True, exist_ok=True)
    (job.run_dir / METRICS).unlink(missing_ok=True)
    if record is not None and record.error and record.error.startswith("diverged"):
        (job.run_dir / "checkpoint.pt").unlink(missing_ok=True)
