"""The run store: content-hash keys, attempts, interruptions, the directory lock."""

from __future__ import annotations

import multiprocessing
import sqlite3

import pytest

from autoscale.errors import AutoscaleError
from autoscale.experiment.runstore import (
    STORE_FILE,
    RunSpec,
    RunStore,
    experiment_lock,
    lock_holder,
)
from autoscale.experiment.status import experiment_status

SPEC = RunSpec("manifest-abc", {"kind": "autoscale", "proxy": {"lr": 0.01}}, (("web", 4000), ("code", 800)), 0)


def test_key_covers_everything_that_determines_a_result():
    assert SPEC.key == RunSpec.from_dict(SPEC.to_dict()).key and len(SPEC.key) == 64
    variants = [
        RunSpec("manifest-xyz", SPEC.trainer, SPEC.tokens, 0),  # other data
        RunSpec(SPEC.data, {"kind": "autoscale", "proxy": {"lr": 0.02}}, SPEC.tokens, 0),  # other trainer
        RunSpec(SPEC.data, SPEC.trainer, (("web", 4000), ("code", 832)), 0),  # other tokens
        RunSpec(SPEC.data, SPEC.trainer, (("code", 800), ("web", 4000)), 0),  # other domain order
        RunSpec(SPEC.data, SPEC.trainer, SPEC.tokens, 1),  # other seed
    ]
    assert len({SPEC.key, *(v.key for v in variants)}) == 6
    assert SPEC.budget == 4800


def test_attempts_uses_and_interruptions(tmp_path):
    with RunStore(tmp_path / STORE_FILE) as store:
        record = store.register(SPEC, "ddo 4800", "base")
        assert record.status == "pending" and record.attempts == 0
        store.register(SPEC, "validate", "uniform")  # one run, two uses
        assert store.get(SPEC.key).uses == (("ddo 4800", "base"), ("validate", "uniform"))
        assert store.labels("ddo 4800") == {"base": SPEC.key}

        assert store.mark_started(SPEC.key) == 1
        assert store.interrupt_running("killed") == [SPEC.key]
        assert store.mark_started(SPEC.key) == 2
        store.mark_finished(SPEC.key, "completed", metrics={"final": {"web": {"loss": 3.0}}, "tokens_per_s": 9.0},
                            wall_time_s=1.5)
        run = store.get(SPEC.key)
        assert (run.status, run.attempts, run.tokens_per_s, run.wall_time_s) == ("completed", 2, 9.0, 1.5)
        assert [a["status"] for a in store.attempt_log(SPEC.key)] == ["interrupted", "completed"]

        store.forget_uses("validate", keep=set())
        assert store.get(SPEC.key).uses == (("ddo 4800", "base"),)
        store.set_stage("ddo 4800", "running")
        store.set_stage("ddo 4800", "completed", "web 0.8, code 0.2")
        assert [(s.name, s.status, s.detail) for s in store.stages()] == [("ddo 4800", "completed", "web 0.8, code 0.2")]

    # a second connection (as `autoscale status` has) sees it all
    info = experiment_status(tmp_path)
    assert info["totals"] == {"completed": 1} and info["runs"][0]["attempts"] == 2


def test_a_run_left_running_by_a_dead_driver_shows_as_interrupted(tmp_path):
    with RunStore(tmp_path / STORE_FILE) as store:
        store.register(SPEC, "ddo 4800", "base")
        store.mark_started(SPEC.key)
    info = experiment_status(tmp_path)
    assert info["running_pid"] is None and info["runs"][0]["status"] == "interrupted"


def test_not_a_store_is_one_clear_error(tmp_path):
    with pytest.raises(AutoscaleError, match="has no run store"):
        RunStore(tmp_path / STORE_FILE, readonly=True)
    (tmp_path / STORE_FILE).write_bytes(b"this is not a database" * 100)
    with pytest.raises(AutoscaleError, match="is not a readable run store"):
        RunStore(tmp_path / STORE_FILE)


def test_schema_from_the_future_is_refused(tmp_path):
    RunStore(tmp_path / STORE_FILE).close()
    db = sqlite3.connect(tmp_path / STORE_FILE)
    db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(AutoscaleError, match="schema 99 is not supported"):
        RunStore(tmp_path / STORE_FILE)


def _hold_lock(directory, ready, release):
    with experiment_lock(directory):
        ready.set()
        release.wait(30)


def test_one_run_per_directory(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path, ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        assert lock_holder(tmp_path) == holder.pid
        with pytest.raises(AutoscaleError, match=f"another `autoscale run` \\(pid {holder.pid}\\) is using"):
            with experiment_lock(tmp_path):
                pass
    finally:
        release.set()
        holder.join(30)
    assert lock_holder(tmp_path) is None
    with experiment_lock(tmp_path):  # free again once the holder is gone
        pass
