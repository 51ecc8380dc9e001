"""Executors: where and how proxy runs are trained, behind one small interface.

An executor takes a batch of independent ``RunJob``s and yields one ``RunOutcome`` per job as each
finishes (in any order). It calls ``on_start(job)`` when a job really starts (the run store counts
attempts there) and ``on_progress(RunProgress)`` while it trains. Stopping the iteration early
(Ctrl-C) stops the jobs still running; their checkpoints stay, so they resume later.

- ``inline``: in this process, one run after another (``autoscale.train.train_run``).
- ``ray``: each run a Ray task with ``num_cpus``/``num_gpus`` from the config, on a local cluster
  (started here, dashboard off, on loopback) or an existing one (``address``).
- ``command``: the user's own trainer, an argument list with placeholders, run without a shell;
  it must write ``{run_dir}/metrics.json`` (schema: ``autoscale.train.metrics``), validated here.

Retries are the pipeline's business, not the executor's: a failed job is simply reported.

One trainer per run folder, whatever the executor: a trainer holds an exclusive lock (flock) on
``{run_dir}/.trainer.lock`` while it writes the folder (`claim_run_dir`). A run whose folder a
trainer of a killed driver still holds waits for it, then adopts the metrics.json it finished
(`ADOPTED`) or trains the run again.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from autoscale.atomic import write_text_atomic
from autoscale.errors import AutoscaleError

if TYPE_CHECKING:
    from autoscale.experiment.config import ExperimentConfig

PROGRESS_FILE = "progress.json"


@dataclass(frozen=True)
class RunJob:
    """One training run to execute.

    Args:
        key: the run's content hash (run store key).
        label: human name, e.g. ``"ddo 20k: code x3"``.
        tokens: domain -> absolute training tokens requested, in domain order.
        seed: the run's seed.
        run_dir: folder for metrics.json, checkpoint.pt and logs (created by the executor).
        eval_points: evaluation points of the run's curve, when not the proxy config's (a DDO run
            needs only its final evaluation: 1). Part of the run key (the pipeline's trainer dict).
        mode: a training mode of autoscale's trainer (``{"kind": "doremi", ...}``), also in the key;
            the command executor refuses it.
    """

    key: str
    label: str
    tokens: Mapping[str, int]
    seed: int
    run_dir: Path
    eval_points: int | None = None
    mode: Mapping[str, Any] | None = None
    keep_weights: bool = False  # keep the final weights (downstream evaluation); not in the key

    @property
    def budget(self) -> int:
        """Total training tokens."""
        return int(sum(self.tokens.values()))


@dataclass(frozen=True)
class RunProgress:
    """Where a running job is: ``tokens`` trained so far of ``total_tokens``, at ``tokens_per_s``."""

    key: str
    tokens: int
    total_tokens: int
    tokens_per_s: float | None = None


@dataclass(frozen=True)
class RunOutcome:
    """How a job ended.

    ``status``: ``completed``, ``diverged`` (a usable metrics.json saying so) or ``failed``.
    ``metrics``: the validated metrics.json as a dict (None when failed). ``error``: one line.
    ``fatal``: the failure is bad input that retrying cannot fix (stop the experiment).
    """

    key: str
    status: str
    metrics: Mapping[str, Any] | None = None
    error: str | None = None
    wall_time_s: float = 0.0
    fatal: bool = False
    note: str | None = None  # something the user should hear about this run (e.g. an adopted orphan)


OnStart = Callable[[RunJob], None]
OnProgress = Callable[[RunProgress], None]


class Executor(Protocol):
    """Runs jobs; see the module docstring."""

    name: str

    def execute(self, jobs: Sequence[RunJob], on_start: OnStart, on_progress: OnProgress) -> Iterator[RunOutcome]:
        ...

    def close(self) -> None:
        ...


LOCK = ".trainer.lock"
ADOPTED = "a trainer that a killed `autoscale run` left running finished this run: its result adopted, nothing trained again"


def claim_run_dir(run_dir: Path, *, wait: bool = False) -> int | None:
    """An open descriptor holding the exclusive lock of ``run_dir``; when a live trainer holds it, None
    (or, with ``wait``, once that trainer has ended). Closing the descriptor frees the folder."""
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def run_dir_holder(run_dir: Path) -> int | None:
    """The pid recorded by the trainer that holds ``run_dir``'s lock (0 if unrecorded); None when free."""
    fd = claim_run_dir(run_dir)
    if fd is not None:
        os.close(fd)
        return None
    try:
        return int((run_dir / LOCK).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def record_holder(lock: int, pid: int) -> None:
    os.ftruncate(lock, 0)
    os.pwrite(lock, f"{pid}\n".encode(), 0)


def finished_metrics(run_dir: Path) -> Any:
    """The valid, usable metrics.json (`RunMetrics`) a trainer left in ``run_dir``, or None."""
    from autoscale.train.metrics import read_metrics

    path = run_dir / "metrics.json"
    if not path.exists():
        return None
    try:
        metrics = read_metrics(path)
    except AutoscaleError:
        return None
    return metrics if metrics.usable else None


def outcome_from_metrics(job: RunJob, metrics: Any, wall_time_s: float) -> RunOutcome:
    """Turn a validated ``RunMetrics`` into an outcome (diverged runs are never usable)."""
    data = metrics.to_dict()
    if metrics.usable:
        return RunOutcome(job.key, "completed", data, None, wall_time_s)
    return RunOutcome(job.key, "diverged", data, f"diverged at step {metrics.diverged_at_step}", wall_time_s)


def one_line(exc: BaseException) -> str:
    """An exception as one line: AutoscaleError messages as they are, others with their type."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(exc, AutoscaleError):
        return first
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def write_progress(run_dir: Path, progress: RunProgress) -> None:
    """For out-of-process runs: a small file the driver polls (written atomically)."""
    write_text_atomic(run_dir / PROGRESS_FILE, json.dumps({
        "tokens": progress.tokens, "total_tokens": progress.total_tokens, "tokens_per_s": progress.tokens_per_s,
        "time": time.time(),
    }))


def read_progress(job: RunJob) -> RunProgress | None:
    """The latest progress a job wrote to ``run_dir/progress.json`` (None if none or unreadable)."""
    try:
        data = json.loads((job.run_dir / PROGRESS_FILE).read_text())
        rate = data.get("tokens_per_s")
        return RunProgress(job.key, int(data["tokens"]), int(data.get("total_tokens") or job.budget),
                           None if rate is None or not math.isfinite(rate) else float(rate))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def make_executor(config: ExperimentConfig, store_path: Path | None) -> Executor:
    """The executor ``config.executor`` asks for (the command executor checks its program)."""
    ex = config.executor
    if ex.kind == "inline":
        from autoscale.experiment.executors.inline import InlineExecutor

        return InlineExecutor(store_path, config.proxy)
    if ex.kind == "ray":
        from autoscale.experiment.executors.ray import RayExecutor

        return RayExecutor(store_path, config.proxy, workers=ex.workers, num_cpus=ex.num_cpus,
                           num_gpus=ex.num_gpus, address=ex.address, dashboard=ex.dashboard)
    from autoscale.experiment.executors.command import CommandExecutor

    assert ex.command is not None  # the config validator guarantees it
    return CommandExecutor(ex.command, store_path=store_path, cwd=ex.cwd or Path.cwd(), env=ex.env,
                           workers=ex.workers or 1, timeout_s=ex.timeout_s)
