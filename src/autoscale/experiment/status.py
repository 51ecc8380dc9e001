"""`autoscale status`: what an experiment folder holds, read without writing into it.

The run store (`autoscale.experiment.runstore`) is the memory of the runs; this module only reads
it, with the stage records and the JSON files the pipeline wrote, into plain JSON-able values.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from autoscale.errors import AutoscaleError
from autoscale.experiment.runstore import STORE_FILE, RunRecord, RunStore, StageRecord, lock_holder


def experiment_status(directory: Path) -> dict[str, Any]:
    """What an experiment directory holds, as plain JSON-able values (for `autoscale status`).

    Returns ``directory``, ``running_pid`` (the active `autoscale run`, or None), ``stages`` (name,
    status, detail, run counts by status), ``runs`` (one row per stage use: stage, label, key,
    status, attempts, tokens, tokens_per_s, wall_time_s, error) and ``totals`` (distinct runs by
    status). A run left ``running`` by a driver that is gone shows as ``interrupted``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise AutoscaleError(f"{directory} is not a directory")
    holder = lock_holder(directory)
    records, stages = _read_store(directory / STORE_FILE)
    by_key = {r.key: r for r in records}

    def shown(status: str) -> str:
        return "interrupted" if status == "running" and holder is None else status

    rows, per_stage, seeds = [], {}, {}
    for r in records:
        for stage, label in r.uses:
            seeds.setdefault(stage, set()).add(r.spec.seed)
            rows.append({
                "stage": stage, "label": label, "key": r.key, "status": shown(r.status), "attempts": r.attempts,
                "tokens": r.spec.budget, "tokens_per_s": r.tokens_per_s, "wall_time_s": r.wall_time_s,
                "error": r.error,
            })
            counts = per_stage.setdefault(stage, {})
            counts[shown(r.status)] = counts.get(shown(r.status), 0) + 1
    order = {s.name: i for i, s in enumerate(stages)}
    rows.sort(key=lambda row: (order.get(row["stage"], len(order)), row["stage"]))
    totals: dict[str, int] = {}
    for key in {row["key"] for row in rows}:
        status = shown(by_key[key].status)
        totals[status] = totals.get(status, 0) + 1
    return {
        "directory": str(directory),
        "running_pid": holder,
        "stages": [
            {"name": s.name, "status": s.status if holder or s.status != "running" else "interrupted",
             "detail": s.detail, "started_at": s.started_at, "finished_at": s.finished_at,
             "runs": per_stage.get(s.name, {}), "seeds": len(seeds.get(s.name, ()))}
            for s in stages
        ],
        "runs": rows,
        "totals": dict(sorted(totals.items())),
        "ddo": _ddo_summaries(directory),
        "downstream": _downstream(directory),
    }


def _read_store(path: Path) -> tuple[list[RunRecord], list[StageRecord]]:
    """All runs and stages, read without writing into the folder (see ``RunStore``).

    An immutable read assumes the main file does not change while it reads; a run that starts at
    that moment and folds its WAL into the file would break that, so the read is redone if the file
    changed under it.
    """
    def state() -> tuple[int, int, int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    for attempt in range(3):
        before = state()
        try:
            with RunStore(path, readonly=True) as store:
                records, stages = store.runs(), store.stages()
                immutable = store.immutable
        except sqlite3.DatabaseError as exc:  # a torn immutable read: read again
            if attempt == 2:
                raise AutoscaleError(f"{path} is not a readable run store: {exc}") from None
            continue
        if not immutable or state() == before:
            break
    return records, stages


def _ddo_summaries(directory: Path) -> list[dict[str, Any]]:
    """Noise, held domains and design advice of each finished DDO budget: every search record that
    is a DDO record, of the configured methods and the registry's."""
    from autoscale.experiment.folder import ExperimentFolder
    from autoscale.experiment.records import DDORecord, ExperimentRecord, SearchRecord
    from autoscale.methods import METHODS

    folder = ExperimentFolder(directory)
    try:
        experiment = folder.read_record(folder.experiment, ExperimentRecord)
    except AutoscaleError:
        experiment = None  # being written: status shows what it can
    configured = (experiment.config.methods or []) if experiment is not None else []
    out = []
    for method in dict.fromkeys([*configured, *METHODS]):
        for _, path in folder.search_records(method):
            try:
                record = folder.read_record(path, SearchRecord)
            except AutoscaleError:
                continue  # being written, or not ours: status shows what it can
            if not isinstance(record, DDORecord):
                continue
            noise = record.noise or {}
            out.append({
                "method": method, "budget": float(record.budget), "file": path.name,
                "replicates": noise.get("replicates", 1), "noise": noise.get("noise"), "held": record.held or {},
                "needed": noise.get("needed") or {}, "cost": noise.get("cost") or {},
                "predicted_gain": record.predicted_gain, "predicted_gain_se": record.predicted_gain_se,
                "intervals": record.intervals, "weights": record.mixture.weights,
            })
    return sorted(out, key=lambda d: (d["method"], d["budget"]))


def _downstream(directory: Path) -> dict[str, Any]:
    """Downstream scores per validated mixture (validation.json), when evaluated."""
    from autoscale.experiment.folder import ExperimentFolder
    from autoscale.experiment.records import ValidationRecord, dump

    folder = ExperimentFolder(directory)
    try:
        record = folder.read_record(folder.validation, ValidationRecord)
    except AutoscaleError:
        return {}  # being written: status shows what it can
    if record is None or record.downstream is None:
        return {}
    return {name: dump(scores) for name, scores in record.downstream.mixtures.items()}
