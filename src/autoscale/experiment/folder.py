"""The experiment folder: the one place that names its files, and reads and writes them.

Layout (`autoscale run` writes it; the report, the bench, `autoscale status` read it)::

    DIR/experiment.json          the resolved config of the last `autoscale run`, with the domains,
                                 the data identity, the caps and the objective used
    DIR/runs.sqlite              the run store (SQLite, WAL; -wal/-shm beside it while open)
    DIR/.lock                    held (flock) while an `autoscale run` works here; holds its pid
    DIR/runs/<key16>/            one folder per run (first 16 hex digits of its key):
                                 metrics.json, checkpoint.pt while unfinished, mixture.json and
                                 stdout.log/stderr.log (command executor), progress.json
    DIR/runs_<budget>.csv        AutoScale: the DDO runs table at <budget> tokens (completed runs;
                                 tokens actually trained; eval.<domain> = its final validation metric)
    DIR/ddo_<budget>.json        AutoScale: the DDO result at <budget> (fits, allocation, noise...)
    DIR/target.json              AutoScale: the extrapolated mixture at the target
    DIR/<method>_runs_<budget>.csv, DIR/<method>_<budget>.json, DIR/<method>_target.json
                                 the same three for every other method (regmix, dml, ...): its search
                                 runs, its fit at the search budget, its mixture at the target
    DIR/validation.json          per validated mixture and seed: run key, run dir, tokens, final
                                 objective and perplexities, curve; speed-ups in training tokens; gains
    DIR/summary.json             the numbers of the report: domains, every method's mixtures and
                                 search compute, validation, run counts, timings

The files describe the last `autoscale run`: those of methods or budgets no longer configured are
removed (`remove_stale`). ``<budget>`` is the integer token count.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from autoscale.atomic import write_text_atomic
from autoscale.errors import AutoscaleError
from autoscale.tokens import budget_name

EXPERIMENT = "experiment.json"
SUMMARY = "summary.json"
VALIDATION = "validation.json"
STORE = "runs.sqlite"
LOCK = ".lock"
RUNS = "runs"
METRICS = "metrics.json"
CHECKPOINT = "checkpoint.pt"  # a run's checkpoint; kept after the run when its weights are wanted
AUTOSCALE = "autoscale"  # its files keep their historic names: runs_<b>.csv, ddo_<b>.json, target.json


class ExperimentFolder:
    """Paths of an experiment folder's artefacts, and their atomic reads and writes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # --- names ------------------------------------------------------------------------------------

    @property
    def experiment(self) -> Path:
        return self.path / EXPERIMENT

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    @property
    def validation(self) -> Path:
        return self.path / VALIDATION

    @property
    def store(self) -> Path:
        return self.path / STORE

    @property
    def lock(self) -> Path:
        return self.path / LOCK

    def run_dir(self, key: str) -> Path:
        return self.path / RUNS / key[:16]

    def runs_table(self, method: str, budget: float) -> Path:
        """A method's search runs at ``budget`` as a runs table (CSV)."""
        prefix = "" if method == AUTOSCALE else f"{method}_"
        return self.path / f"{prefix}runs_{budget_name(budget)}.csv"

    def search_record(self, method: str, budget: float) -> Path:
        """A method's fit at one search budget (JSON)."""
        prefix = "ddo" if method == AUTOSCALE else method
        return self.path / f"{prefix}_{budget_name(budget)}.json"

    def method_result(self, method: str) -> Path:
        """A method's mixture at the target (JSON)."""
        return self.path / ("target.json" if method == AUTOSCALE else f"{method}_target.json")

    def artefact(self, method: str, kind: str, budget: float | None = None) -> Path:
        """Where a method's artefact of ``kind`` goes: "table" and "record" (per search budget), "result"."""
        if kind == "result":
            return self.method_result(method)
        if budget is None:
            raise ValueError(f"a {kind} artefact needs its budget")
        return self.runs_table(method, budget) if kind == "table" else self.search_record(method, budget)

    def search_records(self, method: str) -> list[tuple[int, Path]]:
        """(budget, path) of a method's search records present, by increasing budget."""
        return sorted(self._budget_files(method, "record"))

    def _budget_files(self, method: str, kind: str) -> Iterable[tuple[int, Path]]:
        pattern = {
            "record": rf"^{'ddo' if method == AUTOSCALE else re.escape(method)}_(\d+)\.json$",
            "table": rf"^{'' if method == AUTOSCALE else re.escape(method) + '_'}runs_(\d+)\.csv$",
        }[kind]
        if not self.path.is_dir():
            return
        for p in self.path.iterdir():
            if m := re.match(pattern, p.name):
                yield int(m.group(1)), p

    def remove_stale(self, current: Mapping[str, Iterable[float]], known: Iterable[str]) -> None:
        """Remove the files of ``known`` methods not in ``current`` (method -> search budgets), and
        of budgets a current method no longer searches: the folder shows one experiment."""
        for method in known:
            keep = {int(budget_name(b)) for b in current.get(method, ())}
            for kind in ("record", "table"):
                for budget, path in list(self._budget_files(method, kind)):
                    if budget not in keep:
                        path.unlink()
            if method not in current:
                self.method_result(method).unlink(missing_ok=True)

    # --- reading and writing ----------------------------------------------------------------------

    def read_json(self, path: Path) -> Any:
        """The JSON in ``path`` (None when there is no such file); one line when it is unreadable."""
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise AutoscaleError(f"cannot read {str(path)!r}: {exc}") from None

    def write_json(self, path: Path, data: Any) -> None:
        """Atomic: a temporary file beside ``path``, then rename (a reader never sees half a file)."""
        write_text_atomic(path, json.dumps(plain(data), indent=2, allow_nan=False) + "\n")

    def read_table(self, path: Path) -> Any:
        """The runs table in ``path`` (an `autoscale.ddo.runs.RunsTable`), None when absent."""
        from autoscale.ddo.runs import RunsTable

        return RunsTable.read_csv(path) if path.exists() else None


def plain(value: Any) -> Any:
    """JSON-able: numpy to Python, mappings and sequences walked, NaN/inf to null."""
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
