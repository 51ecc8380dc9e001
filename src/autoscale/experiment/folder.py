"""The experiment folder: the one place that names its files, and reads and writes them.

Layout (`autoscale run` writes it; the report, the bench, `autoscale status` read it)::

    DIR/experiment.json          the resolved config of the last `autoscale run`, with the domains,
                                 the data identity, the caps and the objective used
    DIR/runs.sqlite              the run store (SQLite, WAL; -wal/-shm beside it while open)
    DIR/.lock                    held (flock) while an `autoscale run` works here; holds its pid
    DIR/runs/<key16>/            one folder per run (first 16 hex digits of its key):
                                 metrics.json, checkpoint.pt while unfinished, mixture.json and
                                 stdout.log/stderr.log (command executor), progress.json
    DIR/<method>_runs_<budget>.csv  a method's search runs at <budget> tokens as a runs table (completed
                                 runs; tokens actually trained; eval.<domain> = its final validation
                                 metric); AutoScale's: its DDO runs at each DDO budget
    DIR/<method>_<budget>.json   its fit at that search budget (AutoScale: the DDO record: fits,
                                 allocation, noise...)
    DIR/<method>_target.json     its mixture at the target (AutoScale: the extrapolated mixture)
    DIR/validation.json          per validated mixture and seed: run key, run dir, tokens, final
                                 objective and perplexities, curve; speed-ups in training tokens; gains
    DIR/summary.json             the numbers of the report: domains, every method's entry (mixture,
                                 search compute, what it says of its search and target), validation,
                                 run counts, timings

The JSON files are typed records (`autoscale.experiment.records`). The files describe the last
`autoscale run`: those of methods or budgets no longer configured are removed (`remove_stale`).
``<budget>`` is the integer token count. A folder written before typed records is read through
`autoscale.experiment.legacy` (its AutoScale files had other names).
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
from autoscale.experiment import legacy, records
from autoscale.tokens import budget_name

EXPERIMENT = "experiment.json"
SUMMARY = "summary.json"
VALIDATION = "validation.json"
STORE = "runs.sqlite"
LOCK = ".lock"
RUNS = "runs"
METRICS = "metrics.json"
CHECKPOINT = "checkpoint.pt"  # a run's checkpoint; kept after the run when its weights are wanted


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
        return self.path / f"{method}_runs_{budget_name(budget)}.csv"

    def search_record(self, method: str, budget: float) -> Path:
        """A method's fit at one search budget (JSON)."""
        return self.path / f"{method}_{budget_name(budget)}.json"

    def method_result(self, method: str) -> Path:
        """A method's mixture at the target (JSON)."""
        return self.path / f"{method}_target.json"

    def artefact(self, method: str, kind: str, budget: float | None = None) -> Path:
        """Where a method's artefact of ``kind`` goes: "table" and "record" (per search budget), "result"."""
        if kind == "result":
            return self.method_result(method)
        if budget is None:
            raise ValueError(f"a {kind} artefact needs its budget")
        return self.runs_table(method, budget) if kind == "table" else self.search_record(method, budget)

    def existing(self, method: str, kind: str, budget: float | None = None) -> Path:
        """Where to read a method's artefact: its name, or the name an older autoscale gave it when
        only that file exists (`autoscale.experiment.legacy`)."""
        path = self.artefact(method, kind, budget)
        old = legacy.old_artefact(self.path, method, kind, budget)
        return old if old is not None and old.exists() and not path.exists() else path

    def search_records(self, method: str) -> list[tuple[int, Path]]:
        """(budget, path) of a method's search records present, by increasing budget (under an
        older autoscale's names where only those exist)."""
        found = dict(legacy.old_budget_files(self.path, method, "record"))
        found.update(self._budget_files(method, "record"))
        return sorted(found.items())

    def _budget_files(self, method: str, kind: str) -> Iterable[tuple[int, Path]]:
        pattern = {
            "record": rf"^{re.escape(method)}_(\d+)\.json$",
            "table": rf"^{re.escape(method)}_runs_(\d+)\.csv$",
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

    def write_record(self, path: Path, kind: type[records.R], data: Any) -> records.R:
        """``data`` checked as a ``kind`` record, then written (atomically); returns the record."""
        record = records.parse(kind, plain(data), f"writing {path.name}")
        self.write_json(path, records.dump(record))
        return record

    def read_record(self, path: Path, kind: type[records.R]) -> records.R | None:
        """The ``kind`` record in ``path`` (None when there is no such file); one line naming the
        file when it is unreadable or not a ``kind``. summary.json of an older autoscale is read in
        the current layout (`autoscale.experiment.legacy`)."""
        data = self.read_json(path)
        if data is None:
            return None
        if kind is records.SummaryRecord:
            data = legacy.summary(data)
        return records.parse(kind, data, repr(str(path)))

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
