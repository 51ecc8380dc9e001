"""The simulated world's stand-in trainer called in this process, for tests whose subject is not the
command executor.

``simworld_in_process()`` (a context manager; conftest.py's ``simworld_in_process`` fixture for one
test) makes the command executor call ``main`` of tests/fixtures/simworld_trainer.py in this process
for each run whose command is ``python .../simworld_trainer.py ...``, instead of starting a Python
process per run (interpreter and numpy start-up, a few tenths of a second each). Everything else is
the command executor's own: the placeholders, mixture.json, stdout.log and stderr.log, the
validation of metrics.json, the failure messages; the config, hence every run key, is unchanged and
the numbers are the same function of the tokens. Runs with ``--sleep`` (progress, kill and timeout
tests) and any other command still start a process.

PYTEST_DONT_REWRITE (no asserts here)
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import traceback
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

from autoscale.experiment.executors import command

TRAINER = (Path(__file__).parent / "fixtures" / "simworld_trainer.py").resolve()


@cache
def _trainer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("simworld_trainer", TRAINER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _in_process(argv: list[str]) -> bool:
    """``argv`` runs the stand-in trainer without ``--sleep`` (a run that takes no time)."""
    if len(argv) < 2 or not argv[1].endswith("simworld_trainer.py") or Path(argv[1]).resolve() != TRAINER:
        return False
    if "--sleep" in argv[2:-1]:
        try:
            return float(argv[argv.index("--sleep", 2) + 1]) <= 0
        except ValueError:
            return False
    return True


class _Finished:
    """What ``_spawn`` returns for a run done in this process: a finished process's ``poll``."""

    def __init__(self, returncode: int) -> None:
        self.returncode = returncode
        self.pid = os.getpid()  # the run was trained by this process

    def poll(self) -> int:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        return self.returncode


class InProcessSimworld(command.CommandExecutor):
    """The command executor, with the stand-in trainer's runs called in this process."""

    def _spawn(self, argv: list[str], run_dir: Path, lock: int):  # type: ignore[override]
        if not _in_process(argv):
            return super()._spawn(argv, run_dir, lock)
        (run_dir / "stdout.log").touch()  # the trainer prints nothing on stdout
        with open(run_dir / "stderr.log", "a") as err, contextlib.redirect_stderr(err):
            try:
                rc = _trainer().main(argv[2:])
            except SystemExit as exc:  # argparse's usage errors: exit status 2
                rc = exc.code if isinstance(exc.code, int) else 1
            except Exception:  # what an uncaught exception does to a process: a traceback, status 1
                traceback.print_exc(file=err)
                rc = 1
        return _Finished(rc)


@contextlib.contextmanager
def simworld_in_process() -> Iterator[None]:
    """Within: the command executor calls the stand-in trainer in this process (module docstring)."""
    real_stop = command._stop
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(command, "CommandExecutor", InProcessSimworld)
        # a run done in this process has no process group to stop
        mp.setattr(command, "_stop", lambda proc: None if isinstance(proc, _Finished) else real_stop(proc))
        yield
