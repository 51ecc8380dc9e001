"""The run store: one SQLite file (WAL mode) per experiment directory, the memory of every run.

Each run is keyed by a content hash of everything that determines its result (``RunSpec``): the
data (the token store's manifest hash), the trainer settings, the tokens per domain and the seed.
So a run already finished is never trained again, and a config edited after some runs finished
reuses every run whose spec did not change. A run may serve several places of an experiment
(``uses``: stage + label), e.g. the same mixture compared at the target under two names.

Run status: ``pending`` (known, never started), ``running``, ``completed``, ``failed`` (its
last attempt crashed, diverged or wrote no valid metrics; ``error`` says which), ``interrupted``
(Ctrl-C or a killed driver; resumes from its checkpoint). Only the driver process writes;
``autoscale status`` may read at any time (WAL), and creates no files in the folder when no run is
active (``RunStore(readonly=True)``).
``attempts`` counts every start of training, all invocations together; ``attempt_log`` has one
row per start with its outcome.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoscale.errors import AutoscaleError
from autoscale.experiment.folder import LOCK as LOCK_FILE
from autoscale.experiment.folder import STORE as STORE_FILE

SCHEMA_VERSION = 1
STATUSES = ("pending", "running", "completed", "failed", "interrupted")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    spec TEXT NOT NULL,              -- RunSpec as JSON
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    metrics TEXT,                    -- metrics.json content (final, curve, tokens_per_domain...)
    error TEXT,                      -- last error, one line
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    wall_time_s REAL,
    tokens_per_s REAL
);
CREATE TABLE IF NOT EXISTS uses (
    stage TEXT NOT NULL, label TEXT NOT NULL, key TEXT NOT NULL REFERENCES runs(key),
    PRIMARY KEY (stage, label)
);
CREATE TABLE IF NOT EXISTS attempt_log (
    key TEXT NOT NULL, n INTEGER NOT NULL, started_at REAL NOT NULL, finished_at REAL,
    status TEXT NOT NULL, error TEXT, PRIMARY KEY (key, n)
);
CREATE TABLE IF NOT EXISTS stages (
    name TEXT PRIMARY KEY, position INTEGER NOT NULL, status TEXT NOT NULL,
    started_at REAL, finished_at REAL, detail TEXT
);
"""


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run's result; its hash is the run's key.

    Args:
        data: identifies the training and validation data (the token store's manifest hash).
        trainer: the trainer settings that change what a run computes (JSON-able).
        tokens: (domain, tokens) pairs in domain order: absolute training tokens requested.
        seed: the run's seed.
    """

    data: str
    trainer: Mapping[str, Any]
    tokens: tuple[tuple[str, int], ...]
    seed: int

    @property
    def key(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def budget(self) -> int:
        return sum(n for _, n in self.tokens)

    def to_dict(self) -> dict[str, Any]:
        # tokens as a list of pairs: domain order may matter to a sampler, so it is part of the key
        return {"data": self.data, "trainer": dict(self.trainer), "tokens": [list(t) for t in self.tokens],
                "seed": self.seed}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunSpec:
        return cls(d["data"], d["trainer"], tuple((str(a), int(b)) for a, b in d["tokens"]), int(d["seed"]))


@dataclass(frozen=True)
class RunRecord:
    """One row of the store. ``metrics`` is the run's metrics.json as a dict (None until it ends)."""

    key: str
    spec: RunSpec
    status: str
    attempts: int
    metrics: Mapping[str, Any] | None
    error: str | None
    started_at: float | None
    finished_at: float | None
    wall_time_s: float | None
    tokens_per_s: float | None
    uses: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class StageRecord:
    name: str
    status: str  # pending | running | completed | failed | interrupted
    started_at: float | None
    finished_at: float | None
    detail: str | None


class RunStore:
    """The SQLite run store of one experiment directory. Use as a context manager or ``close()``.

    ``readonly=True`` reads without creating files; ``immutable`` tells whether it reads the main
    file alone (no -wal file: no run is writing) rather than through the WAL.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly and not self.path.exists():
            raise AutoscaleError(f"{self.path.parent} has no run store ({STORE_FILE}); is it an experiment directory?")
        # A reader writes nothing into the folder. No -wal file means no run is writing (or the last
        # one closed cleanly, folding the WAL in): the main file is everything, so it is opened
        # immutable, which creates no -wal/-shm files. With a -wal file (a run is active, or was
        # killed) it reads through the WAL, as SQLite's readers do (``mode=ro``).
        self.immutable = readonly and not self.path.with_name(self.path.name + "-wal").exists()
        try:
            if readonly:
                uri = f"file:{urllib.parse.quote(str(self.path.absolute()))}?mode=ro"
                uri += "&immutable=1" if self.immutable else ""
                self._db = sqlite3.connect(uri, uri=True, timeout=10, isolation_level=None)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                # NORMAL is durable across a killed process (not a power cut), which is what resuming needs.
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
            self._check_version(readonly)
        except sqlite3.DatabaseError as exc:
            raise AutoscaleError(f"{self.path} is not a readable run store: {exc}") from None

    def _check_version(self, readonly: bool) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None and not readonly:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif row is not None and int(row[0]) != SCHEMA_VERSION:
            raise AutoscaleError(f"{self.path}: run store schema {row[0]} is not supported (expected {SCHEMA_VERSION})")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- runs -------------------------------------------------------------------------------------

    def register(self, spec: RunSpec, stage: str, label: str) -> RunRecord:
        """Record that ``stage``/``label`` uses the run ``spec`` (new runs start ``pending``)."""
        key = spec.key
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO runs (key, spec, status, created_at) VALUES (?, ?, 'pending', ?)",
                (key, json.dumps(spec.to_dict()), time.time()),
            )
            db.execute("INSERT OR REPLACE INTO uses VALUES (?, ?, ?)", (stage, label, key))
        return self.get(key)  # type: ignore[return-value]

    def forget_uses(self, stage: str, keep: set[str]) -> None:
        """Drop ``stage``'s labels other than ``keep`` (a re-planned stage); the runs stay."""
        with self._tx() as db:
            for (label,) in db.execute("SELECT label FROM uses WHERE stage=?", (stage,)).fetchall():
                if label not in keep:
                    db.execute("DELETE FROM uses WHERE stage=? AND label=?", (stage, label))

    def get(self, key: str) -> RunRecord | None:
        rows = self._select("WHERE r.key=?", (key,))
        return rows[0] if rows else None

    def runs(self, stage: str | None = None) -> list[RunRecord]:
        """All runs (in creation order), or those a stage uses (in label registration order)."""
        if stage is None:
            return self._select("", ())
        keys = [k for (k,) in self._db.execute("SELECT key FROM uses WHERE stage=? ORDER BY rowid", (stage,))]
        by_key = {r.key: r for r in self._select("WHERE r.key IN (SELECT key FROM uses WHERE stage=?)", (stage,))}
        return [by_key[k] for k in dict.fromkeys(keys)]

    def labels(self, stage: str) -> dict[str, str]:
        """label -> run key, for one stage, in registration order."""
        rows = self._db.execute("SELECT label, key FROM uses WHERE stage=? ORDER BY rowid", (stage,))
        return dict(rows.fetchall())

    def _select(self, where: str, args: tuple[Any, ...]) -> list[RunRecord]:
        rows = self._db.execute(
            "SELECT r.key, r.spec, r.status, r.attempts, r.metrics, r.error, r.started_at, r.finished_at,"
            f" r.wall_time_s, r.tokens_per_s FROM runs r {where} ORDER BY r.created_at, r.rowid",
            args,
        ).fetchall()
        uses: dict[str, list[tuple[str, str]]] = {}
        for stage, label, key in self._db.execute("SELECT stage, label, key FROM uses ORDER BY rowid"):
            uses.setdefault(key, []).append((stage, label))
        return [
            RunRecord(
                key=r[0], spec=RunSpec.from_dict(json.loads(r[1])), status=r[2], attempts=r[3],
                metrics=None if r[4] is None else json.loads(r[4]), error=r[5], started_at=r[6],
                finished_at=r[7], wall_time_s=r[8], tokens_per_s=r[9], uses=tuple(uses.get(r[0], ())),
            )
            for r in rows
        ]

    def mark_started(self, key: str) -> int:
        """A training attempt of ``key`` begins; returns its attempt number (1-based, all time)."""
        now = time.time()
        with self._tx() as db:
            (n,) = db.execute("SELECT attempts FROM runs WHERE key=?", (key,)).fetchone()
            n += 1
            db.execute(
                "UPDATE runs SET status='running', attempts=?, started_at=?, finished_at=NULL, error=NULL"
                " WHERE key=?", (n, now, key),
            )
            db.execute("INSERT OR REPLACE INTO attempt_log VALUES (?, ?, ?, NULL, 'running', NULL)", (key, n, now))
        return n

    def mark_finished(
        self, key: str, status: str, *, metrics: Mapping[str, Any] | None = None, error: str | None = None,
        wall_time_s: float | None = None,
    ) -> None:
        """Record the end of the current attempt (``completed`` or ``failed``)."""
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        now = time.time()
        tps = None if metrics is None else metrics.get("tokens_per_s")
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status=?, metrics=?, error=?, finished_at=?, wall_time_s=?, tokens_per_s=?"
                " WHERE key=?",
                (status, None if metrics is None else json.dumps(metrics), error, now, wall_time_s, tps, key),
            )
            db.execute(
                "UPDATE attempt_log SET finished_at=?, status=?, error=? WHERE key=? AND status='running'",
                (now, status, error, key),
            )

    def adopt(self, key: str, metrics: Mapping[str, Any]) -> None:
        """Record a result found on disk (finished before a crash could record it): no new attempt."""
        self.mark_finished(key, "completed", metrics=metrics, wall_time_s=metrics.get("wall_time_s"))

    def interrupt_running(self, reason: str = "interrupted") -> list[str]:
        """Mark every ``running`` run ``interrupted`` (after Ctrl-C, or a driver that was killed)."""
        with self._tx() as db:
            keys = [k for (k,) in db.execute("SELECT key FROM runs WHERE status='running'")]
            now = time.time()
            db.execute("UPDATE runs SET status='interrupted', error=?, finished_at=? WHERE status='running'",
                       (reason, now))
            db.execute("UPDATE attempt_log SET status='interrupted', error=?, finished_at=? WHERE status='running'",
                       (reason, now))
            db.execute("UPDATE stages SET status='interrupted' WHERE status='running'")
        return keys

    def attempt_log(self, key: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT n, started_at, finished_at, status, error FROM attempt_log WHERE key=? ORDER BY n", (key,)
        )
        return [dict(zip(("n", "started_at", "finished_at", "status", "error"), r, strict=True)) for r in rows]

    # --- stages -----------------------------------------------------------------------------------

    def set_stage(self, name: str, status: str, detail: str | None = None) -> None:
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT position, started_at FROM stages WHERE name=?", (name,)).fetchone()
            if row is None:
                (pos,) = db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM stages").fetchone()
                db.execute("INSERT INTO stages VALUES (?, ?, ?, ?, NULL, ?)", (name, pos, status, now, detail))
            else:
                started = now if status == "running" else row[1]
                finished = None if status == "running" else now
                db.execute(
                    "UPDATE stages SET status=?, started_at=?, finished_at=?, detail=? WHERE name=?",
                    (status, started, finished, detail, name),
                )

    def stages(self) -> list[StageRecord]:
        rows = self._db.execute("SELECT name, status, started_at, finished_at, detail FROM stages ORDER BY position")
        return [StageRecord(*r) for r in rows]


@contextlib.contextmanager
def experiment_lock(directory: Path) -> Iterator[None]:
    """Hold the experiment directory for one ``autoscale run``; a second one gets a clear error.

    An advisory ``flock``: the kernel releases it when the holder dies, even by ``kill -9``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text().strip() or "?"
            raise AutoscaleError(f"another `autoscale run` (pid {holder}) is using {directory}") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)


def lock_holder(directory: Path) -> int | None:
    """The pid of the `autoscale run` holding ``directory``, or None if none does."""
    path = directory / LOCK_FILE
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = path.read_text().strip()
        return int(text) if text.isdigit() else -1
    finally:
        os.close(fd)
    return None
