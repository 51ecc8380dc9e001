"""The command executor: the user's own trainer, one process per run, no shell.

``command`` is an argument list whose items may hold placeholders, filled per run:

=================  ======================================================================
``{run_dir}``      the run's folder; the trainer must write ``{run_dir}/metrics.json``
``{mixture_json}`` ``{run_dir}/mixture.json``: the run's Mixture (tokens, weights, budget)
``{budget}``       total training tokens (an integer)
``{tokens[web]}``  training tokens of domain ``web``; ``{weights[web]}`` its weight
``{seed}``         the run's seed; ``{key}`` its content hash; ``{label}`` its name
``{store}``        the token store's path (empty without one); ``{domains}``: comma-separated
=================  ======================================================================

metrics.json must follow ``autoscale.train.metrics`` (schema version 1: ``schema_version``,
``status``, ``final`` required); it is validated, and an invalid one fails that run with the
validator's one-line message. The process's stdout and stderr go to ``{run_dir}/stdout.log`` and
``stderr.log``. Optional: writing ``{run_dir}/progress.json`` (``{"tokens": n, "total_tokens": N,
"tokens_per_s": r}``) feeds the progress display. Ctrl-C sends SIGTERM to each running trainer's
process group (SIGKILL after 5 s).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from autoscale.errors import AutoscaleError
from autoscale.experiment.executors import (
    OnProgress,
    OnStart,
    RunJob,
    RunOutcome,
    outcome_from_metrics,
    read_progress,
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
        check_program(self.command, cwd, self.env)

    def argv(self, job: RunJob) -> list[str]:
        """The command for ``job``, placeholders filled."""
        total = job.budget or 1
        values = {
            "run_dir": str(job.run_dir), "mixture_json": str(job.run_dir / "mixture.json"),
            "budget": job.budget, "seed": job.seed, "key": job.key, "label": job.label,
            "store": "" if self.store_path is None else str(self.store_path), "domains": ",".join(job.tokens),
            "tokens": dict(job.tokens), "weights": {d: n / total for d, n in job.tokens.items()},
        }
        try:
            return [arg.format_map(values) for arg in self.command]
        except (KeyError, IndexError) as exc:
            raise AutoscaleError(f"executor.command: no domain {exc} for a placeholder") from None

    def execute(self, jobs: Sequence[RunJob], on_start: OnStart, on_progress: OnProgress) -> Iterator[RunOutcome]:
        queue = list(jobs)
        running: dict[subprocess.Popen[bytes], tuple[RunJob, float]] = {}
        try:
            while queue or running:
                while queue and len(running) < self.workers:
                    job = queue.pop(0)
                    if job.mode is not None:  # the config refuses it first; a last guard
                        yield RunOutcome(job.key, "failed", None, f"{job.label}: a training mode needs autoscale's "
                                         "trainer, not a command", fatal=True)
                        continue
                    argv = self.argv(job)
                    job.run_dir.mkdir(parents=True, exist_ok=True)
                    (job.run_dir / "progress.json").unlink(missing_ok=True)
                    (job.run_dir / "mixture.json").write_text(
                        Mixture({d: float(n) for d, n in job.tokens.items()},
                                {"label": job.label, "seed": job.seed, "key": job.key}).to_json() + "\n"
                    )
                    on_start(job)
                    try:
                        proc = self._spawn(argv, job.run_dir)
                    except OSError as exc:
                        yield RunOutcome(job.key, "failed", None, f"cannot start {argv[0]!r}: {exc.strerror}")
                        continue
                    running[proc] = (job, time.perf_counter())
                for proc, (job, t0) in list(running.items()):
                    rc = proc.poll()
                    wall = time.perf_counter() - t0
                    if rc is None:
                        if self.timeout_s is not None and wall > self.timeout_s:
                            _stop(proc)
                            del running[proc]
                            yield RunOutcome(job.key, "failed", None, f"timed out after {self.timeout_s:g} s", wall)
                        else:
                            progress = read_progress(job)
                            if progress is not None:
                                on_progress(progress)
                        continue
                    del running[proc]
                    yield self._finish(job, rc, wall)
                time.sleep(POLL_S)
        finally:
            for proc in running:
                _stop(proc)

    def _spawn(self, argv: list[str], run_dir: Path) -> subprocess.Popen[bytes]:
        with open(run_dir / "stdout.log", "ab") as out, open(run_dir / "stderr.log", "ab") as err:
            # own session: Ctrl-C in the terminal reaches us, and we stop the trainer's whole group
            return subprocess.Popen(argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, start_new_session=True)

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
    or a name on PATH)."""
    program = command[0]
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
