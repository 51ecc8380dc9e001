"""Real processes: a run killed with SIGKILL resumes to the same result, and data parallelism over 2
CPU processes (torchrun, gloo) follows the same loss curve as 1 process with the same global batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from autoscale.train import read_metrics, train_run
from autoscale.train.checkpoint import CHECKPOINT, load_checkpoint
from train_fixtures import DOMAINS, tiny_config, uniform

pytest_plugins = ["train_fixtures"]  # the session-wide fixture_store

# DDP vs one process: every evaluation and training loss of the curve agrees within this many nats.
# The two differ only in floating-point summation order (in practice they come out identical).
DDP_TOLERANCE = 1e-5


def _write_inputs(tmp_path, config, mix):
    cfg = tmp_path / "proxy.yaml"
    cfg.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    mixture = tmp_path / "mixture.json"
    mixture.write_text(json.dumps({"tokens": mix}))
    return cfg, mixture


def _env():
    env = dict(os.environ)
    env["PYTHONWARNINGS"] = "ignore"
    return env


def test_sigkilled_run_resumes_to_identical_metrics(fixture_store, tmp_path):
    config = tiny_config(fixture_store, eval={"points": 6})
    mix = uniform(12_000)
    cfg, mixture = _write_inputs(tmp_path, config, mix)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoscale", "train", "--mixture", str(mixture), "--config", str(cfg),
         "--out", str(killed), "--quiet"],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not (killed / CHECKPOINT).exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint within 60 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (killed / "metrics.json").exists()
    stopped_at = load_checkpoint(killed / CHECKPOINT)["step"]

    steps = []
    resumed = train_run(fixture_store, mix, config, killed, progress=lambda step, *_: steps.append(step))
    assert 0 < stopped_at < resumed.extra["steps"]
    assert steps[0] == stopped_at + 1  # it continued from the checkpoint, it did not start over

    uninterrupted = train_run(fixture_store, mix, config, tmp_path / "whole")
    assert resumed.final == uninterrupted.final
    assert resumed.curve == uninterrupted.curve
    assert resumed.tokens_per_domain == uninterrupted.tokens_per_domain


def test_ddp_two_processes_match_one_process_with_the_same_global_batch(fixture_store, tmp_path):
    mix = uniform(8_000)
    # Global batch 8 sequences: 2 processes x 4, versus 1 process x 4 x 2 accumulation steps.
    two = tiny_config(fixture_store, train={"batch_size": 4})
    cfg, mixture = _write_inputs(tmp_path, two, mix)
    out = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "autoscale", "train", "--mixture", str(mixture), "--config", str(cfg), "--out", str(out),
         "--quiet"],
        env=_env(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[:4000]  # the failing rank speaks first
    ddp = read_metrics(out / "metrics.json")
    assert ddp.extra["world_size"] == 2

    one = train_run(fixture_store, mix, tiny_config(train={"batch_size": 4, "grad_accum": 2}), tmp_path / "one")
    assert one.extra["world_size"] == 1
    assert ddp.extra["global_batch_tokens"] == one.extra["global_batch_tokens"] == 8 * 64
    assert ddp.tokens_per_domain == one.tokens_per_domain
    assert [p.step for p in ddp.curve] == [p.step for p in one.curve]
    for p, q in zip(ddp.curve, one.curve, strict=True):
        for d in DOMAINS:
            assert p.eval[d].loss == pytest.approx(q.eval[d].loss, abs=DDP_TOLERANCE)
        if q.train_loss is not None:
            assert p.train_loss == pytest.approx(q.train_loss, abs=DDP_TOLERANCE)
    # And the run learned something, so the comparison is not between two untrained models.
    assert ddp.final["web"].loss < ddp.curve[0].eval["web"].loss - 0.3
