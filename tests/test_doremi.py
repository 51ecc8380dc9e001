"""DoReMi: its update against a step computed by hand; on the fixture corpus, alpha moves towards the
domain with the largest excess loss; a run killed with SIGKILL resumes to identical weights."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from autoscale.laws.doremi import excess_losses, update_weights
from autoscale.train import read_metrics
from autoscale.train.checkpoint import CHECKPOINT, load_checkpoint
from train_fixtures import DOMAINS, tiny_config, uniform

pytest_plugins = ["train_fixtures"]  # the session-wide fixture_store


def test_excess_losses_clip_at_zero_and_average_per_domain_over_scored_tokens():
    proxy = np.array([[3.0, 1.0, 2.0], [2.0, 2.0, 2.0], [5.0, 0.5, 9.0]])
    ref = np.array([[2.0, 2.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    scored = np.array([[True, True, True], [True, True, False], [True, True, True]])
    domain = np.array([0, 0, 2])  # domain 1 has no sequence in the batch
    # domain 0: tokens (3-2)+, (1-2)+ = 0, (2-1)+, (2-1)+, (2-1)+ over 5 scored tokens -> 4/5
    # domain 2: (5-1), (0.5-1)+ = 0, (9-1) over 3 tokens -> 12/3
    np.testing.assert_allclose(excess_losses(proxy, ref, domain, scored, 3), [0.8, 0.0, 4.0])


def test_update_weights_is_the_exponentiated_gradient_step_then_smoothing():
    alpha = np.array([0.5, 0.3, 0.2])
    excess = np.array([0.8, 0.0, 4.0])
    raised = alpha * np.exp(1.0 * excess)  # eta = 1
    expected = 0.99 * raised / raised.sum() + 0.01 / 3  # c = 0.01
    got = update_weights(alpha, excess, eta=1.0, smoothing=0.01)
    np.testing.assert_allclose(got, expected)
    assert got.sum() == pytest.approx(1.0) and got[2] > alpha[2] and got[1] < alpha[1]
    # by hand: raised = [0.5 e^0.8, 0.3, 0.2 e^4] = [1.11277, 0.3, 10.91963], sum 12.33240;
    # 0.99 x raised / sum + 0.00333 = [0.09266, 0.02742, 0.87992]
    np.testing.assert_allclose(got, [0.0927, 0.0274, 0.8799], atol=1e-4)
    # huge excesses do not overflow
    assert np.isfinite(update_weights(alpha, np.array([1e4, 0.0, 2e4]))).all()


def _doremi(store, tokens, run_dir, **train):
    from autoscale.train import train_run

    return train_run(store, tokens, tiny_config(train={"checkpoint_every": 5, **train}, eval={"points": 2}),
                     run_dir, mode={"kind": "doremi"})


def test_on_the_fixture_corpus_alpha_moves_towards_the_largest_excess_loss(fixture_store, tmp_path):
    metrics = _doremi(fixture_store, uniform(6_000), tmp_path)
    report = metrics.extra["doremi"]
    weights, excess = report["weights"], report["mean_excess"]
    k = len(DOMAINS)
    assert sum(weights.values()) == pytest.approx(1.0) and report["steps"] == metrics.extra["steps"]
    top = max(excess, key=excess.get)
    assert max(weights, key=weights.get) == top and weights[top] > 1.2 / k  # moved off uniform, towards it
    assert min(weights, key=weights.get) == min(excess, key=excess.get)
    # phase 1 is an ordinary run on the same mixture, kept in reference/ with its weights
    reference = read_metrics(tmp_path / "reference" / "metrics.json")
    assert reference.status == "completed" and (tmp_path / "reference" / CHECKPOINT).exists()
    assert metrics.final != reference.final  # the proxy is another model, trained on the weighted loss


def test_a_killed_doremi_run_resumes_to_identical_weights(fixture_store, tmp_path):
    tokens = uniform(6_000)
    killed = tmp_path / "killed"
    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
              "from train_fixtures import tiny_config\n"
              "from autoscale.train import train_run\n"
              f"train_run({str(fixture_store.path)!r}, {tokens!r}, tiny_config(train={{'checkpoint_every': 5}}, "
              f"eval={{'points': 2}}), {str(killed)!r}, mode={{'kind': 'doremi'}})\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while load_checkpoint(killed / CHECKPOINT) is None or load_checkpoint(killed / CHECKPOINT)["step"] < 5:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no proxy checkpoint within 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL and not (killed / "metrics.json").exists()
    stopped = load_checkpoint(killed / CHECKPOINT)
    assert len(stopped["doremi"]["history"]) == stopped["step"]  # alpha's history is in the checkpoint
    resumed = _doremi(fixture_store, tokens, killed)
    whole = _doremi(fixture_store, tokens, tmp_path / "whole")
    assert stopped["step"] < resumed.extra["steps"]
    assert resumed.extra["doremi"] == whole.extra["doremi"]
    assert resumed.final == whole.final


def test_doremi_refuses_an_unknown_mode(fixture_store, tmp_path):
    from autoscale.errors import AutoscaleError
    from autoscale.train import train_run

    with pytest.raises(AutoscaleError, match="unknown training mode"):
        train_run(fixture_store, uniform(6_000), tiny_config(), tmp_path, mode={"kind": "doremi", "step": 2})
