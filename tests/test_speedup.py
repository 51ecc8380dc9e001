"""The paper's speed-up, in training tokens, on smoothed curves, and the objective it is measured in."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from autoscale.errors import AutoscaleError
from autoscale.report.load import load_experiment
from autoscale.speedup import Objective, curve_tokens, smooth, speedup
from cli_helpers import run_cli

TOKENS = np.arange(0, 101, 10.0) * 1000  # evaluations every 10k training tokens, the first before training


def realistic_curve() -> tuple[np.ndarray, np.ndarray]:
    """A validation perplexity curve as the trainer reports it: about the vocabulary size (257) before
    training, then a power law falling to its final value."""
    x = np.linspace(0, 1e6, 11)
    y = np.concatenate([[257.0], 6.0 + 60.0 * (x[1:] / 1e5) ** -0.6])
    return x, y


def old_ema_from_step0(values, weight):
    """The smoothing this project used before: a debiased EMA over every point, step 0 included."""
    out, acc = [], 0.0
    for t, v in enumerate(values, start=1):
        acc = weight * acc + (1 - weight) * v
        out.append(acc / (1 - weight**t))
    return np.array(out)


def test_the_smoothed_line_sits_on_the_points_and_ends_at_the_measured_final():
    x, y = realistic_curve()
    trained = slice(1, None)
    old = old_ema_from_step0(y, 0.6)
    new = smooth(x, y, 0.6)
    gap = lambda line: float(np.max(np.abs(line[trained] / y[trained] - 1)))  # noqa: E731
    # the old EMA drags the step-0 perplexity into the whole curve: lines far above the points
    assert gap(old) > 0.05 and old[-1] / y[-1] - 1 > 0.01
    assert gap(new) < 0.01
    assert new[-1] == pytest.approx(y[-1], rel=0.002)
    assert new[0] == y[0]  # the evaluation before training is kept as measured


def test_smoothing_keeps_power_laws_ignores_step0_and_reduces_noise():
    x = TOKENS
    law = 3.0 + 0.0 * x
    law[1:] = 50.0 * (x[1:] / 1e4) ** -0.4
    assert smooth(x, law, 0.8).tolist() == pytest.approx(law.tolist(), rel=1e-9)  # no lag on a power law
    other_start = law.copy()
    other_start[0] = 1e4
    assert smooth(x, other_start, 0.8)[1:].tolist() == pytest.approx(smooth(x, law, 0.8)[1:].tolist())
    noisy = law * (1 + 0.03 * np.random.default_rng(0).standard_normal(x.size))
    err = lambda v: float(np.sqrt(np.mean((v[1:] / law[1:] - 1) ** 2)))  # noqa: E731
    assert err(smooth(x, noisy, 0.7)) < 0.7 * err(noisy)
    assert smooth(x, [3.0, 1.0, 2.0] + [1.0] * 8, 0.0).tolist()[:3] == [3.0, 1.0, 2.0]  # 0: as measured
    with pytest.raises(AutoscaleError):
        smooth(x, law, 1.0)


def test_a_method_twice_as_fast_saves_half_the_tokens():
    baseline = 10.0 / (1 + TOKENS / 1000)  # final value after 100k tokens
    method = 10.0 / (1 + 2 * TOKENS / 1000)  # the same curve, twice as fast: reaches it after 50k tokens
    result = speedup((TOKENS, method), (TOKENS, baseline), smoothing=0.0, names=("predicted", "uniform"))
    assert result.tokens_to_reach == pytest.approx(50_000, rel=0.02)  # linear interpolation between points
    assert result.speedup == pytest.approx(0.5, rel=0.02)
    assert (result.method, result.baseline, result.baseline_tokens) == ("predicted", "uniform", 100_000)


def test_smoothing_both_curves_alike_keeps_equal_curves_equal():
    noisy = 3.0 + 1.0 / (1 + TOKENS / 1000) + 0.01 * np.sin(TOKENS)
    result = speedup((TOKENS, noisy), (TOKENS, noisy), smoothing=0.6)
    assert result.speedup == pytest.approx(0.0, abs=1e-12)
    assert "0.6^k" in result.smoothing


def test_a_slower_method_never_reaches_and_says_so():
    result = speedup((TOKENS, 5.0 / (1 + TOKENS) + 0.1), (TOKENS, 5.0 / (1 + TOKENS)), smoothing=0.5)
    assert result.speedup is None and result.tokens_to_reach is None
    assert result.method_final > result.baseline_final


def test_objective_is_the_weighted_mean_of_the_domains_metric():
    evals = {"web": {"loss": 1.0, "perplexity": 2.0}, "code": {"loss": 2.0, "perplexity": 6.0}}
    assert Objective().of(evals) == pytest.approx(4.0)
    assert Objective("loss", {"web": 3, "code": 1}).of(evals) == pytest.approx(1.25)
    assert Objective("perplexity").of({"web": {"loss": 0.0}}) == pytest.approx(1.0)  # exp(loss)
    with pytest.raises(AutoscaleError, match="no perplexity for domain"):
        Objective("perplexity", {"books": 1}).of(evals)
    curve = {"curve": [{"step": 0, "tokens": 0, "eval": evals}, {"step": 5, "tokens": 640, "eval": evals}]}
    tokens, values = Objective().curve(curve)
    assert tokens.tolist() == [0.0, 640.0] and values.tolist() == pytest.approx([4.0, 4.0])


def test_a_curve_without_tokens_is_scaled_to_the_tokens_trained():
    steps_only = {"curve": [{"step": 0}, {"step": 5}, {"step": 10}], "tokens_per_domain": {"web": 600, "code": 400}}
    assert curve_tokens(steps_only).tolist() == [0.0, 500.0, 1000.0]
    assert curve_tokens({"curve": steps_only["curve"]}, budget=2000).tolist() == [0.0, 1000.0, 2000.0]
    with pytest.raises(AutoscaleError, match="no training tokens"):
        curve_tokens({"curve": steps_only["curve"]})


# --- the pipeline and the report agree, in tokens -----------------------------------------------------

DOMAINS = ["web", "code", "books"]
TARGET = 400_000

# A stand-in trainer whose validation perplexity is a known function of each domain's tokens. The
# uniform mixture trains with 4x the tokens per step of the others (gradient accumulation, more ranks):
# its curve has a quarter of the steps for the same tokens, so steps and tokens disagree between mixtures.
TRAINER = r'''
import json, os, sys
from pathlib import Path

mixture_json, run_dir, label = sys.argv[1:4]
tokens = json.loads(Path(mixture_json).read_text())["tokens"]
total = sum(tokens.values())
per_step = 4096 if label == "validate: uniform" else 1024
steps = max(8, round(total / per_step))
amplitude = {"web": 40.0, "code": 80.0, "books": 20.0}

def evals(share):
    return {d: {"perplexity": 4.0 + amplitude[d] * (max(n * share, 1.0) / 1e4) ** -0.5} for d, n in tokens.items()}

curve = [{"step": 0, "tokens": 0, "eval": {d: {"perplexity": 300.0} for d in tokens}}]
for k in range(1, 9):
    s = round(steps * k / 8)
    curve.append({"step": s, "tokens": round(total * s / steps), "eval": evals(s / steps)})
metrics = {"schema_version": 1, "status": "completed", "final": curve[-1]["eval"], "curve": curve,
           "tokens_per_domain": {d: round(n) for d, n in tokens.items()}}
tmp = Path(run_dir, ".metrics.tmp")
tmp.write_text(json.dumps(metrics))
os.replace(tmp, Path(run_dir, "metrics.json"))
'''


def test_run_and_report_give_the_same_speedup_in_tokens_when_steps_hold_different_tokens(tmp_path):
    (tmp_path / "trainer.py").write_text(TRAINER)
    config = {
        "data": {"domains": DOMAINS, "fingerprint": "known-curves"},
        "ddo": {"budgets": [25_000, 100_000]},
        "target": {"budget": TARGET, "validate": True, "compare": ["uniform"], "smoothing": 0.6},
        "executor": {"kind": "command", "workers": 2, "trainer_id": "known-curves-v1",
                     "command": [sys.executable, "trainer.py", "{mixture_json}", "{run_dir}", "{label}"]},
    }
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(config))
    assert run_cli("run", str(tmp_path / "experiment.yaml"), "--quiet") == 0

    out = tmp_path / "experiment"
    validation = json.loads((out / "validation.json").read_text())
    metrics = {n: json.loads((Path(runs[0]["run_dir"]) / "metrics.json").read_text())
               for n, runs in validation["runs"].items()}
    objective = Objective()
    steps = {n: np.array([p["step"] for p in m["curve"]], dtype=float) for n, m in metrics.items()}
    assert steps["uniform"][-1] * 3.5 < steps["predicted"][-1]  # same tokens, a quarter of the steps
    curves = {n: objective.curve(m) for n, m in metrics.items()}
    in_tokens = speedup(curves["predicted"], curves["uniform"], smoothing=0.6).speedup
    in_steps = speedup((steps["predicted"], curves["predicted"][1]), (steps["uniform"], curves["uniform"][1]),
                       smoothing=0.6).speedup
    assert in_tokens is not None and 0 < in_tokens < 0.5  # the predicted mixture is better...
    assert in_steps is None or in_steps < -1  # ...which steps would hide

    [pipeline] = validation["speedups"]
    assert pipeline["speedup"] == pytest.approx(in_tokens, rel=1e-9)
    assert pipeline["baseline_tokens"] == pytest.approx(TARGET, rel=0.01)
    [report] = load_experiment(out).speedups  # the record's, not recomputed
    assert report.mean == pytest.approx(in_tokens, rel=1e-9)
    assert [u.speedup for _, u in report.seeds] == [pipeline["speedup"]]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["validation"]["speedup_mean"]["uniform"] == pytest.approx(in_tokens, rel=1e-9)

    # the per-domain finals are kept, per run and as the mean over seeds
    finals = {d: v["perplexity"] for d, v in metrics["uniform"]["final"].items()}
    assert validation["runs"]["uniform"][0]["final_perplexity"] == pytest.approx(finals)
    assert validation["final_perplexity"]["uniform"] == pytest.approx(finals)
    uniform = next(c for c in load_experiment(out).validation if c.name == "uniform")
    assert uniform.domain_finals == pytest.approx(finals)
