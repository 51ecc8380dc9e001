"""Experiment folders written before typed records (schema 1), read as the current layout.

Then AutoScale's files had names of their own (``runs_<budget>.csv``, ``ddo_<budget>.json``,
``target.json``; every other method's were ``<method>_...`` as now) and summary.json held its
results at the top level (``ddo``, ``target``) beside the other methods' ``methods``. This module is
the one place that knows: the folder reads a method's file under its old name when only that exists
(`old_artefact`, `old_budget_files`), the summary's reader moves AutoScale's results under
``methods`` (`summary`), and `autoscale run` in an old folder renames the old files (`upgrade`) before
it writes new records. Reading never writes into the folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from autoscale.tokens import budget_name

METHOD = "autoscale"  # the one method whose files had names of their own
_NAMES = {"table": "runs_{}.csv", "record": "ddo_{}.json", "result": "target.json"}
_PATTERNS = {"table": r"^runs_(\d+)\.csv$", "record": r"^ddo_(\d+)\.json$"}


def old_artefact(folder: Path, method: str, kind: str, budget: float | None = None) -> Path | None:
    """The name an old folder gave a method's artefact (None: the method's names have not changed)."""
    if method != METHOD:
        return None
    return folder / _NAMES[kind].format("" if budget is None else budget_name(budget))


def old_budget_files(folder: Path, method: str, kind: str) -> Iterator[tuple[int, Path]]:
    """(budget, path) of a method's per-budget files under their old names."""
    if method != METHOD or not folder.is_dir():
        return
    for p in folder.iterdir():
        if m := re.match(_PATTERNS[kind], p.name):
            yield int(m.group(1)), p


def summary(data: Any) -> Any:
    """An old summary.json's data in the current layout: AutoScale's ``ddo`` and ``target`` under
    ``methods.autoscale`` as ``searched`` and ``target``. Current data is returned as is."""
    if not isinstance(data, dict) or "schema_version" in data or not ({"ddo", "target"} & set(data)):
        return data
    data = dict(data)
    searched, target = data.pop("ddo", None), data.pop("target", None)
    methods = dict(data.get("methods") or {})
    if METHOD in methods and isinstance(methods[METHOD], dict):
        methods[METHOD] = {**methods[METHOD], "searched": searched or [], "target": target}
    data["methods"] = methods
    return data


def upgrade(folder: Path) -> list[tuple[Path, Path]]:
    """Rename an old folder's AutoScale files to their current names (an existing current file is
    kept and the old one left); returns the (old, new) renames made."""
    from autoscale.experiment.folder import ExperimentFolder

    current = ExperimentFolder(folder)
    moves = [(p, current.artefact(METHOD, kind, budget))
             for kind in _PATTERNS for budget, p in old_budget_files(folder, METHOD, kind)]
    result = old_artefact(folder, METHOD, "result")
    if result is not None and result.exists():
        moves.append((result, current.artefact(METHOD, "result")))
    done = []
    for old, new in moves:
        if not new.exists():
            old.rename(new)
            done.append((old, new))
    return done
