"""The in-process executor: runs one after another in this Python process."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from autoscale.errors import AutoscaleError
from autoscale.experiment.executors import (
    ADOPTED,
    OnProgress,
    OnStart,
    RunJob,
    RunOutcome,
    RunProgress,
    claim_run_dir,
    finished_metrics,
    one_line,
    outcome_from_metrics,
    record_holder,
)
from autoscale.train.config import ProxyConfig


def train_job(job: RunJob, store: Any, proxy: ProxyConfig, on_progress: OnProgress | None = None) -> RunOutcome:
    """Train ``job`` with autoscale's trainer in this process (a store path or an open TokenStore).

    Bad input (an ``AutoscaleError`` from the trainer, e.g. a budget below one batch) is ``fatal``:
    retrying cannot fix it. Any other exception is an ordinary failure. Ctrl-C propagates.
    The run's folder is held for the whole run: a trainer that a killed driver left in it (a Ray
    worker not yet stopped) is waited for, and its finished metrics.json adopted.
    """
    from autoscale.train.loop import train_run  # torch: only when a run really trains here

    started = time.perf_counter()
    config = proxy.replace(train={"seed": job.seed})
    if job.eval_points is not None:
        config = config.replace(eval={"points": job.eval_points})
    if job.keep_weights:
        config = config.replace(train={"keep_checkpoint": True})

    def progress(step: int, total_steps: int, tokens: int, rate: float) -> None:
        if on_progress is not None:
            on_progress(RunProgress(job.key, tokens, job.budget, rate))

    job.run_dir.mkdir(parents=True, exist_ok=True)
    lock = claim_run_dir(job.run_dir, wait=True)
    assert lock is not None
    try:
        record_holder(lock, os.getpid())
        adopted = finished_metrics(job.run_dir)  # the scheduler removed any stale one before this attempt
        if adopted is not None:
            return dataclasses.replace(outcome_from_metrics(job, adopted, 0.0), note=ADOPTED)
        try:
            metrics = train_run(store, dict(job.tokens), config, job.run_dir, progress=progress, mode=job.mode)
        except AutoscaleError as exc:
            return RunOutcome(job.key, "failed", None, one_line(exc), time.perf_counter() - started, fatal=True)
        except Exception as exc:  # a crash in one run must not take the experiment down
            return RunOutcome(job.key, "failed", None, one_line(exc), time.perf_counter() - started)
        return outcome_from_metrics(job, metrics, time.perf_counter() - started)
    finally:
        os.close(lock)


class InlineExecutor:
    """Sequential runs in this process; the simplest and the default."""

    name = "inline"

    def __init__(self, store_path: Path | None, proxy: ProxyConfig) -> None:
        if store_path is None:
            raise AutoscaleError("the inline executor needs data.store")
        self.store_path = store_path
        self.proxy = proxy
        self._store: Any = None

    def execute(self, jobs: Sequence[RunJob], on_start: OnStart, on_progress: OnProgress) -> Iterator[RunOutcome]:
        if self._store is None:
            from autoscale.data import TokenStore

            self._store = TokenStore.open(self.store_path)  # verified once, not per run
        for job in jobs:
            on_start(job)
            yield train_job(job, self._store, self.proxy, on_progress)

    def close(self) -> None:
        self._store = None
