"""The command executor: the user's own trainer, one process per run, no shell.

``command`` is an argument list whose items may hold placeholders, filled per run:

=================  ======================================================================
``{run_dir}``      the run's folder; the trainer must write ``{run_dir}/metrics.json``
``{mixture_json}`` ``{run_dir}/mixture.json``: the run's Mixture (tokens, weights, budget)
``{budget}``       total training tokens (an integer)
``{tokens[web]}``  training tokens of domain ``web``; ``{weights[web]}`` its weight
``{seed}``         the run's seed; ``{key}`` its content hash; ``{label}`` its name
``{store}``        the token store's path (empty without one); ``{domains}``: comma-separated
``{python}``       the Python that runs autoscale (``sys.executable``): ``[{python}, train.py, ...]``
                   runs the trainer in autoscale's environment; the run key holds ``{python}``
                   itself, so runs are reused from another virtual environment
=================  ======================================================================

metrics.json must follow ``autoscale.train.metrics`` (schema version 1: ``schema_version``,
``status``, ``final`` required); it is validated, and an invalid one fails that run with the
validator's one-line message. The process's stdout and stderr go to ``{run_dir}/stdout.log`` and
``stderr.log``. Optional: writing ``{run_dir}/progress.json`` (``{"tokens": n, "total_tokens": N,
"tokens_per_s": r}``) feeds the progress display. Ctrl-C sends SIGTERM to each running trainer's
process group (SIGKILL after 5 s).

One trainer per run folder: the executor takes an exclusive lock on ``{run_dir}/.trainer.lock``
(flock) and hands the locked file to the trainer (an inherited descriptor), so the lock lives as
long as the trainer, whatever happens to the driver. A driver killed with kill -9 cannot stop its
trainers (they run in their own sessions): they run to their end. A rerun that finds a run's folder
still locked waits for that trainer, then adopts the metrics.json it wrote (or, when it wrote none,
trains the run again), and says which; it never starts a second trainer in a folder a live one writes.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from autoscale.errors import AutoscaleError
from autoscale.experiment.executors import (
    ADOPTED,
    OnProgress,
    OnStart,
    RunJob,
    RunOutcome,
    claim_run_dir,
    finished_metrics,
    outcome_from_metrics,
    read_progress,
    record_holder,
    run_dir_holder,
)
from autoscale.mixture import Mixture

POLL_S = 0.05
TERM_GRACE_S = 5.0


class CommandExecutor:
    """Runs the user's trainer; see the module docstring."""

    name = "command"

    def __init__(
        self, command: Sequence[str], *, store_path: Path | None, cwd: Path, env: Mapping[str, str] | None = None,
        workers: int = 1, timeout_s: float | None = None,
    ) -> None:
        self.command = list(command)
        self.store_path = store_path
        self.cwd = cwd
        self.env = {**os.environ, **(env or {})}
        self.workers = workers
        self.timeout_s = timeout_s
        self.notes: dict[str, str] = {}  # run key -> a note for its outcome
        check_program(self.command, cwd, self.env)

    def argv(self, job: RunJob) -> list[str]:
        """The command for ``job``, placeholders filled."""
        total = job.budget or 1
        values = {
            "run_dir": str(job.run_dir), "mixture_json": str(job.run_dir / "mixture.json"),
            "budget": job.budget, "seed": job.seed, "key": job.key, "label": job.label,
            "store": "" if self.store_path is None else str(self.store_path), "domains": ",".join(job.tokens),
            "tokens": dict(job.tokens), "weights": {d: n / total for d, n in job.tokens.items()},
            "python": sys.executable,
        }
        try:
            return [arg.format_map(values) for arg in self.command]
        except (KeyError, IndexError) as exc:
            raise AutoscaleError(f"executor.command: no domain {exc} for a placeholder") from None

    def execute(self, jobs: Sequence[RunJob], on_start: OnStart, on_progress: OnProgress) -> Iterator[RunOutcome]:
        queue = list(jobs)
        running: dict[subprocess.Popen[bytes], tuple[RunJob, float, int]] = {}
        waiting: dict[str, RunJob] = {}  # jobs whose folder a live trainer of a killed driver holds
        orphans: dict[str, int | None] = {}  # run key -> the pid of that trainer
        try:
            while queue or running or waiting:
                for key, job in list(waiting.items()):
                    if run_dir_holder(job.run_dir) is None:  # that trainer has ended: this job goes next
                        del waiting[key]
                        queue.insert(0, job)
                while queue and len(running) < self.workers:
                    job = queue.pop(0)
                    if job.mode is not None:  # the config refuses it first; a last guard
                        yield RunOutcome(job.key, "failed", None, f"{job.label}: a training mode needs autoscale's "
                                         "trainer, not a command", fatal=True)
                        continue
                    argv = self.argv(job)
                    job.run_dir.mkdir(parents=True, exist_ok=True)
                    lock = claim_run_dir(job.run_dir)
                    if lock is None:
                        waiting[job.key] = job
                        orphans.setdefault(job.key, run_dir_holder(job.run_dir))
                        continue
                    orphan = orphans.pop(job.key, None) if job.key in orphans else False
                    adopted = self._adopted(job, lock)
                    if adopted is not None:
                        yield adopted
                        continue
                    (job.run_dir / "progress.json").unlink(missing_ok=True)
                    (job.run_dir / "mixture.json").write_text(
                        Mixture({d: float(n) for d, n in job.tokens.items()},
                                {"label": job.label, "seed": job.seed, "key": job.key}).to_json() + "\n"
                    )
                    on_start(job)
                    try:
                        proc = self._spawn(argv, job.run_dir, lock)
                    except OSError as exc:
                        os.close(lock)
                        yield RunOutcome(job.key, "failed", None, f"cannot start {argv[0]!r}: {exc.strerror}")
                        continue
                    record_holder(lock, proc.pid)
                    running[proc] = (job, time.perf_counter(), lock)
                    if orphan is not False:
                        self.notes[job.key] = (f"the trainer a killed run left in its folder (pid {orphan}) ended "
                                               "without a result: trained again")
                for proc, (job, t0, lock) in list(running.items()):
                    rc = proc.poll()
                    wall = time.perf_counter() - t0
                    if rc is None:
                        if self.timeout_s is not None and wall > self.timeout_s:
                            _stop(proc)
                            del running[proc]
                            os.close(lock)
                            yield RunOutcome(job.key, "failed", None, f"timed out after {self.timeout_s:g} s", wall)
                        else:
                            progress = read_progress(job)
                            if progress is not None:
                                on_progress(progress)
                        continue
                    del running[proc]
                    os.close(lock)  # the trainer has exited: the folder is free
                    outcome = self._finish(job, rc, wall)
                    note = self.notes.pop(job.key, None)
                    yield outcome if note is None else dataclasses.replace(outcome, note=note)
                time.sleep(POLL_S)
        finally:
            for proc, (_, _, lock) in running.items():
                _stop(proc)
                os.close(lock)

    def _adopted(self, job: RunJob, lock: int) -> RunOutcome | None:
        """The outcome of a trainer that a killed driver left running and that has finished since: its
        metrics.json (the scheduler removes a stale one before every attempt). None: train the run."""
        metrics = finished_metrics(job.run_dir)
        if metrics is None:
            return None
        os.close(lock)
        outcome = outcome_from_metrics(job, metrics, 0.0)
        return dataclasses.replace(outcome, note=ADOPTED)

    def _spawn(self, argv: list[str], run_dir: Path, lock: int) -> subprocess.Popen[bytes]:
        with open(run_dir / "stdout.log", "ab") as out, open(run_dir / "stderr.log", "ab") as err:
            # own session: Ctrl-C in the terminal reaches us, and we stop the trainer's whole group;
            # the locked file goes with it, so the lock lives as long as the trainer does
            return subprocess.Popen(argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, start_new_session=True, pass_fds=(lock,))

    def _finish(self, job: RunJob, rc: int, wall: float) -> RunOutcome:
        from autoscale.train.metrics import read_metrics

        if rc != 0:
            why = f"killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
            tail = _last_line(job.run_dir / "stderr.log")
            return RunOutcome(job.key, "failed", None, f"trainer {why}" + (f": {tail}" if tail else ""), wall)
        try:
            metrics = read_metrics(job.run_dir / "metrics.json")
        except AutoscaleError as exc:
            return RunOutcome(job.key, "failed", None, f"trainer wrote no valid metrics.json: {exc}", wall)
        return outcome_from_metrics(job, metrics, wall)

    def close(self) -> None:
        pass


def check_program(command: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None) -> None:
    """Raise AutoscaleError unless ``command[0]`` is an executable file (a path relative to ``cwd``,
    or a name on PATH); ``{python}`` is this Python."""
    program = command[0].replace("{python}", sys.executable)
    path = (env or os.environ).get("PATH")
    found = (cwd / program) if os.sep in program else shutil.which(program, path=path)
    if found is None or not Path(found).is_file() or not os.access(found, os.X_OK):
        raise AutoscaleError(f"executor.command: program {program!r} not found or not executable (cwd {cwd})")


def _stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the trainer's process group, SIGKILL it after a grace period."""
    for sig, wait in ((signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _last_line(path: Path, limit: int = 200) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""
