"""The simulated world (tests/simworld.py): a fixture whose true optimal mixture is known.

These tests check the properties other tests rely on: room to beat uniform, an optimum that moves
with the budget and stays inside the simplex, a correct ``optimum``, reproducible noise, and a
stand-in trainer whose metrics.json autoscale accepts.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autoscale.experiment.executors import RunJob
from autoscale.experiment.executors.command import CommandExecutor
from autoscale.mixture import Mixture
from autoscale.train.metrics import RunMetrics, read_metrics
from simworld import HARD_SEARCH, HARD_TARGET, World, make_hard_world, make_world, true_metrics

TRAINER = Path(__file__).parent / "fixtures" / "simworld_trainer.py"
WORLD_SEEDS = range(10)
SMALL, TARGET = 2.56e5, 1.6e7  # a DDO budget and the largest target budget the tests use


def tokens(world: World, weights, budget: float) -> dict[str, float]:
    return {d: float(w) * budget for d, w in zip(world.domains, weights, strict=True)}


def uniform(world: World, budget: float) -> dict[str, float]:
    return {d: budget / len(world.domains) for d in world.domains}


@pytest.mark.parametrize("seed", WORLD_SEEDS)
def test_optimum_beats_uniform_by_five_percent_at_the_target(seed):
    world = make_world(seed)
    assert world.gain(world.optimum(TARGET), TARGET) >= 0.05
    assert world.gain({d: 1.0 for d in world.domains}, TARGET) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("seed", WORLD_SEEDS)
def test_optimum_moves_with_the_budget_and_stays_inside(seed):
    world = make_world(seed)
    small, target = world.optimum(SMALL), world.optimum(TARGET)
    assert sum(abs(small[d] - target[d]) for d in world.domains) >= 0.05
    assert min(small.values()) >= 0.05 and min(target.values()) >= 0.05


@pytest.mark.parametrize("seed", WORLD_SEEDS)
@pytest.mark.parametrize("budget", [SMALL, TARGET])
def test_no_point_of_the_simplex_beats_the_optimum(seed, budget):
    world = make_world(seed)
    best = world.optimum(budget)
    assert sum(best.values()) == pytest.approx(1.0, abs=1e-12)
    best_objective = world.objective({d: w * budget for d, w in best.items()})
    samples = np.random.default_rng(1000 + seed).dirichlet(np.ones(len(world.domains)), size=1000)
    objectives = [world.objective(tokens(world, w, budget)) for w in samples]
    assert min(objectives) >= best_objective
    # and it is the stationary point: at an interior optimum every domain's next token helps equally
    eps = 1e-5 * budget
    at = {d: w * budget for d, w in best.items()}
    marginal = [
        (world.objective({**at, d: at[d] + eps}) - world.objective({**at, d: at[d] - eps})) / (2 * eps)
        for d in world.domains
    ]
    assert max(marginal) - min(marginal) <= 1e-4 * abs(np.mean(marginal))


def test_optimum_is_an_interior_stationary_point_with_more_domains():
    world = make_world(7, domains=("a", "b", "c", "d", "e"))
    for budget in (SMALL, 1.024e6, TARGET):
        best = world.optimum(budget)
        assert min(best.values()) > 0.01
        grad = world._gradient_w(np.array([best[d] for d in world.domains]), budget)
        assert np.ptp(grad) <= 1e-6 * np.abs(grad).mean()


def test_perplexities_follow_the_model():
    world = make_world(0)
    n = uniform(world, 3e6)
    x = np.array(world.transfer) @ np.array([n[d] for d in world.domains]) / world.scale
    expected = np.array(world.floor) + np.array(world.amplitude) * x ** (-np.array(world.exponent))
    assert list(world.perplexities(n).values()) == pytest.approx(expected.tolist(), rel=1e-12)
    assert world.objective(n) == pytest.approx(expected.mean(), rel=1e-12)
    # more tokens of any domain lower every perplexity (positive transfer), most of all its own
    more = world.perplexities({**n, "code": 2 * n["code"]})
    drop = {d: world.perplexities(n)[d] - more[d] for d in world.domains}
    assert all(v > 0 for v in drop.values())
    assert max(drop, key=lambda d: drop[d] / world.perplexities(n)[d]) == "code"


def test_worlds_are_reproducible_and_differ_by_seed():
    assert make_world(3) == make_world(3)
    assert make_world(3) != make_world(4)
    assert all(1.0 in row for row in make_world(3).transfer)


def test_observe_is_deterministic_and_its_noise_has_a_run_and_a_seed_part():
    world = make_world(2)
    a = uniform(world, 1e6)
    b = {**a, "web": 3 * a["web"]}
    assert world.observe(a, 5) == world.perplexities(a)  # no noise: the truth
    assert world.observe(a, 5, run_noise=0.03, seed_noise=0.02) == world.observe(
        a, 5, run_noise=0.03, seed_noise=0.02
    )
    # the run noise is keyed by whole tokens: the same run as the executor passes it (rounded)
    for z, z_rounded in zip(
        world.noise(a, 5), world.noise({d: round(v) for d, v in a.items()}, 5), strict=True
    ):
        np.testing.assert_array_equal(z, z_rounded)

    def log_ratio(tokens, seed, **noise):
        obs, true = world.observe(tokens, seed, **noise), world.perplexities(tokens)
        return np.array([math.log(obs[d] / true[d]) for d in world.domains])

    # seed noise alone: the same factor for every run of a seed, another for another seed
    np.testing.assert_allclose(log_ratio(a, 5, seed_noise=0.1), log_ratio(b, 5, seed_noise=0.1), rtol=1e-12)
    assert not np.allclose(log_ratio(a, 5, seed_noise=0.1), log_ratio(a, 6, seed_noise=0.1))
    # run noise alone: differs between runs of one seed, and between seeds of one run
    assert not np.allclose(log_ratio(a, 5, run_noise=0.1), log_ratio(b, 5, run_noise=0.1))
    assert not np.allclose(log_ratio(a, 5, run_noise=0.1), log_ratio(a, 6, run_noise=0.1))
    # both: the log factor is run_noise * z_run + seed_noise * z_seed
    z_run, z_seed = world.noise(a, 5)
    np.testing.assert_allclose(
        log_ratio(a, 5, run_noise=0.03, seed_noise=0.02), 0.03 * z_run + 0.02 * z_seed, rtol=1e-9
    )


def test_run_noise_has_the_asked_size():
    world = make_world(1)
    rng = np.random.default_rng(0)
    logs = []
    for seed in range(200):
        w = rng.dirichlet(np.ones(3))
        n = tokens(world, w, 1e6)
        obs, true = world.observe(n, seed, run_noise=0.03), world.perplexities(n)
        logs += [math.log(obs[d] / true[d]) for d in world.domains]
    assert np.std(logs) == pytest.approx(0.03, rel=0.15)
    assert abs(np.mean(logs)) < 0.006


def test_bad_input_is_refused():
    world = make_world(0)
    with pytest.raises(ValueError, match="missing"):
        world.perplexities({"web": 1e6, "code": 1e6})
    with pytest.raises(ValueError, match="unknown"):
        world.objective({"web": 1e6, "code": 1e6, "books": 1e6, "math": 1e6})
    with pytest.raises(ValueError, match=">= 0"):
        world.objective({"web": 1e6, "code": -1.0, "books": 1e6})
    with pytest.raises(ValueError, match="seed"):
        world.observe(uniform(world, 1e6), -1)
    with pytest.raises(ValueError, match="budget"):
        world.optimum(0.0)


def test_true_metrics_follow_the_metrics_schema():
    world = make_world(3)
    n = {"web": 120000.4, "code": 80000.0, "books": 56000.0}
    data = true_metrics(world, n, 7, 0.03, 0.01)
    metrics = RunMetrics.from_dict(json.loads(json.dumps(data)))
    assert metrics.usable
    assert metrics.perplexities == world.observe(n, 7, run_noise=0.03, seed_noise=0.01)
    assert all(metrics.final[d].loss == pytest.approx(math.log(metrics.final[d].perplexity)) for d in n)
    assert dict(metrics.tokens_per_domain) == {"web": 120000, "code": 80000, "books": 56000}
    assert dict(metrics.mixture) == n


def run_trainer(tmp_path: Path, mixture: Mixture, *extra: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "mixture.json").write_text(mixture.to_json())
    return subprocess.run(
        [
            sys.executable,
            str(TRAINER),
            "--world-seed",
            "3",
            "--run-noise",
            "0.03",
            "--seed-noise",
            "0.01",
            "--mixture",
            str(tmp_path / "mixture.json"),
            "--seed",
            "4",
            "--out",
            str(tmp_path / "run"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_trainer_writes_the_true_metrics(tmp_path):
    mixture = Mixture({"web": 160000.0, "code": 64000.0, "books": 32000.0}, {"label": "base", "seed": 4})
    done = run_trainer(tmp_path, mixture, "--sleep", "0.2")
    assert done.returncode == 0, done.stderr
    metrics = read_metrics(tmp_path / "run" / "metrics.json")
    expected = RunMetrics.from_dict(true_metrics(make_world(3), mixture.tokens, 4, 0.03, 0.01))
    assert metrics.final == expected.final
    assert metrics.tokens_per_domain == expected.tokens_per_domain
    assert json.loads((tmp_path / "run" / "progress.json").read_text())["total_tokens"] == 256000
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")] == []


def test_trainer_refuses_a_mixture_of_other_domains(tmp_path):
    done = run_trainer(tmp_path, Mixture({"web": 1e5, "math": 1e5}))
    assert done.returncode == 2
    assert "not the world's" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_trainer_runs_under_the_command_executor(tmp_path):
    command = [
        sys.executable,
        str(TRAINER),
        "--world-seed",
        "3",
        "--run-noise",
        "0.03",
        "--mixture",
        "{mixture_json}",
        "--seed",
        "{seed}",
        "--out",
        "{run_dir}",
    ]
    executor = CommandExecutor(command, store_path=None, cwd=tmp_path)
    job = RunJob("k1", "base", {"web": 100000, "code": 100000, "books": 100000}, 11, tmp_path / "runs" / "k1")
    [outcome] = list(executor.execute([job], lambda job: None, lambda progress: None))
    assert outcome.status == "completed", outcome.error
    observed = {d: e["perplexity"] for d, e in outcome.metrics["final"].items()}
    assert observed == make_world(3).observe(job.tokens, 11, run_noise=0.03)


@pytest.mark.parametrize("seed", [0, 1])
def test_hard_worlds_barely_feel_the_mixture_at_the_search_budgets_and_a_lot_at_the_target(seed):
    world = make_hard_world(seed)
    assert world == make_hard_world.__wrapped__(seed) and len(world.domains) == 6  # reproducible, not just cached
    for budget in (*HARD_SEARCH, HARD_TARGET):
        best = world.optimum(budget)
        gain = world.gain(best, budget)
        assert (gain <= 0.02) if budget in HARD_SEARCH else (gain >= 0.04), (budget, gain)
        assert min(best.values()) >= 0.04
    # the optimum moves: it is near uniform below the search budgets and far from it at the target
    assert sum(abs(w - 1 / 6) for w in world.optimum(HARD_TARGET).values()) > 0.3


def test_common_noise_is_one_factor_per_run_shared_by_its_domains():
    world = make_hard_world(0)
    run = {d: 1e6 / 6 for d in world.domains}
    true, observed = world.perplexities(run), world.observe(run, 3, common_noise=0.1)
    factors = {observed[d] / true[d] for d in world.domains}
    assert max(factors) - min(factors) < 1e-12 and abs(math.log(factors.pop())) > 0
    assert world.observe(run, 4, common_noise=0.1) != observed  # another seed, another factor
    # the per-domain draws are those without it: adding the common part leaves z_run as it was
    z_run, _ = world.noise(run, 3)
    both = world.observe(run, 3, run_noise=0.03, common_noise=0.1)
    ratio = np.array([math.log(both[d] / observed[d]) for d in world.domains])
    np.testing.assert_allclose(ratio, 0.03 * z_run, rtol=1e-9, atol=1e-12)
