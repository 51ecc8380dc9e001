"""`autoscale run` end to end on the fixture corpus with a tiny real proxy: the DDO mixtures, the
predicted target mixture and speed-ups; resuming after `kill -9` and Ctrl-C; a config changed after
runs finished; Ray with 2 local workers against the in-process executor; retries.

One uninterrupted in-process experiment (`reference`) is shared: the other tests run the same DDO
runs elsewhere and compare with it, so every comparison is against real numbers, not constants.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from autoscale.ddo.runs import RunsTable
from autoscale.experiment.runstore import STORE_FILE, RunStore
from autoscale.experiment.status import experiment_status
from cli_helpers import run_cli

CORPUS = Path(__file__).parent / "fixtures" / "corpus"
AUTOSCALE = Path(sys.executable).parent / "autoscale"
DOMAINS = ["web", "code", "books"]
BUDGETS = [12000, 24000]
TARGET = 48000
# 1 torch thread everywhere: the Ray tasks use 1 thread each, and threads change float rounding.
PROXY = {
    "model": {"n_layer": 1, "d_model": 32, "n_head": 2, "seq_len": 32},
    "train": {"batch_size": 8, "lr": 1.0e-2, "warmup": 0.1, "threads": 1},
    "eval": {"points": 4, "max_tokens": 1024},
}
CODE_HEAVY = {"web": 0.05, "code": 0.9, "books": 0.05}


def write_config(path: Path, store: Path, **sections) -> Path:
    config = {
        "seed": 0,
        "data": {"store": str(store), "domains": DOMAINS},
        "proxy": PROXY,
        "ddo": {"budgets": BUDGETS},
        "target": {"budget": TARGET},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    path.write_text(yaml.safe_dump(config))
    return path


def read_json(path: Path):
    return json.loads(path.read_text())


def runs_by_key(directory: Path):
    with RunStore(directory / STORE_FILE, readonly=True) as store:
        return {r.key: r for r in store.runs()}


def ddo_keys(directory: Path) -> set[str]:
    keys = set()
    for b in BUDGETS:
        keys |= set(read_json(directory / f"autoscale_{b}.json")["runs"].values())
    return keys


# its tests share `reference`, and its Ray test must not overlap test_ray_loopback's clusters (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted in-process experiment, from the corpus to the validation runs."""
    root = tmp_path_factory.mktemp("reference")
    config = write_config(
        root / "reference.yaml", root / "store",
        data={"sources": str(CORPUS), "vocab_size": 512, "val_tokens": 2048},
        target={"validate": True, "compare": ["uniform", "natural", "ddo"], "mixtures": {"code_heavy": CODE_HEAVY}},
    )
    assert run_cli("run", str(config), "--quiet") == 0
    return root / "reference"


def test_end_to_end_gives_ddo_mixtures_a_target_mixture_and_speedups(reference):
    for budget in BUDGETS:
        ddo = read_json(reference / f"autoscale_{budget}.json")
        weights = ddo["mixture"]["weights"]
        assert list(weights) == DOMAINS
        assert sum(weights.values()) == pytest.approx(1.0)
        assert ddo["mixture"]["budget"] == pytest.approx(budget)
        assert set(ddo["fits"]) == set(DOMAINS) and all(f["b"] > 0 for f in ddo["fits"].values())
        # the runs table holds the tokens each run actually trained and its validation numbers
        table = RunsTable.read_csv(reference / f"autoscale_runs_{budget}.csv")
        assert table.n_runs == 7 and table.filled
        runs = runs_by_key(reference)
        for i, name in enumerate(table.runs):
            trained = runs[ddo["runs"][name]].metrics["tokens_per_domain"]
            assert [trained[d] for d in DOMAINS] == table.tokens[i].tolist()

    target = read_json(reference / "autoscale_target.json")
    assert target["mixture"]["budget"] == pytest.approx(TARGET)
    assert sum(target["mixture"]["weights"].values()) == pytest.approx(1.0)

    validation = read_json(reference / "validation.json")
    assert validation["smoothing"].startswith("local quadratic fit of log objective on log tokens")
    baselines = {s["baseline"]: s for s in validation["speedups"]}
    assert set(baselines) == {"uniform", "natural", "ddo", "code_heavy"}
    for s in baselines.values():
        assert s["baseline_tokens"] == pytest.approx(TARGET, rel=0.05)  # training tokens, not steps
        assert (s["speedup"] is None) == (s["tokens_to_reach"] is None)
    # 90% code starves the other two validation domains: the predicted mixture gets there sooner
    assert 0 < baselines["code_heavy"]["speedup"] < 1
    predicted_curve = validation["runs"]["predicted"][0]["curve"]
    assert len(predicted_curve["step"]) == len(predicted_curve["smoothed"]) >= 3
    # one validation seed: each baseline gets its gain, honestly "not distinguishable" (noise unknown)
    gains = {g["baseline"]: g for g in validation["gains"]}
    assert set(gains) == set(baselines)
    finals = {n: v[0]["final_objective"] for n, v in validation["runs"].items()}
    for name, g in gains.items():
        assert g["mean"] == pytest.approx(1 - finals["predicted"] / finals[name])
        assert g["seeds"] == 1 and g["interval"] is None and g["verdict"] == "not distinguishable"

    summary = read_json(reference / "summary.json")
    assert summary["runs"] == {"completed": 14 + 5}
    assert summary["methods"]["autoscale"]["target"]["weights"] == target["mixture"]["weights"]
    assert all(r.attempts == 1 for r in runs_by_key(reference).values())


def test_status_lists_stages_and_runs(reference, capsys):
    assert run_cli("status", str(reference)) == 0
    out = capsys.readouterr().out
    # the line names the folder, so where it wraps depends on the length of the temporary path
    assert "no `autoscale run` active" in " ".join(out.split())
    for stage in ("ddo 12000", "ddo 24000", "extrapolate", "validate"):
        assert stage in out
    assert "books-x0.2" in out and "failed" not in out
    assert run_cli("status", str(reference), "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["totals"] == {"completed": 19}


def test_rerun_trains_nothing_and_gives_the_same_mixture(reference, tmp_path):
    before = read_json(reference / "autoscale_target.json")["mixture"]
    config = reference.parent / "reference.yaml"
    assert run_cli("run", str(config), "--quiet") == 0
    assert all(r.attempts == 1 for r in runs_by_key(reference).values())
    assert read_json(reference / "autoscale_target.json")["mixture"] == before


def test_changed_config_reuses_every_run_whose_key_is_unchanged(reference, tmp_path):
    # Copy the finished experiment, then change the perturbation ratios: 3 -> 2.
    directory = tmp_path / "changed"
    shutil.copytree(reference, directory, ignore=shutil.ignore_patterns(".lock"))
    (directory / "autoscale_6000.json").write_text("{}")  # as if an earlier config had a 6000-token budget
    config = write_config(tmp_path / "changed.yaml", reference.parent / "store", ddo={"ratios": [0.2, 2.0]})
    assert run_cli("run", str(config), "--quiet") == 0
    # the files describe this config only: no stale budget, no validation of another target
    assert sorted(p.name for p in directory.glob("autoscale_[0-9]*.json")) == ["autoscale_12000.json", "autoscale_24000.json"]
    assert not (directory / "validation.json").exists()
    runs = runs_by_key(directory)
    for budget in BUDGETS:
        old = read_json(reference / f"autoscale_{budget}.json")["runs"]
        new = read_json(directory / f"autoscale_{budget}.json")["runs"]
        assert set(new) == {"base", *(f"{d}-x{r}" for r in ("0.2", "2") for d in DOMAINS)}
        for name in ("base", "web-x0.2", "code-x0.2", "books-x0.2"):
            assert new[name] == old[name]  # same key: reused, not trained again
            assert runs[new[name]].attempts == 1
        assert all(runs[new[f"{d}-x2"]].status == "completed" for d in DOMAINS)
    with RunStore(directory / STORE_FILE, readonly=True) as store:
        assert "web-x3" not in store.labels("ddo 12000")  # the stage now uses the new plan only


def test_ddo_runs_evaluated_once_are_new_runs_and_validation_keeps_its_curves(reference, tmp_path):
    directory = tmp_path / "final-only"
    shutil.copytree(reference, directory, ignore=shutil.ignore_patterns(".lock"))
    config = write_config(tmp_path / "final-only.yaml", reference.parent / "store", ddo={"eval_points": 1},
                          target={"validate": True, "compare": ["uniform"]})
    assert run_cli("run", str(config), "--quiet") == 0
    runs = runs_by_key(directory)
    new, old = ddo_keys(directory), ddo_keys(reference)
    assert not new & old  # another evaluation is another run: no key is shared
    for key in new:
        assert [p["step"] for p in runs[key].metrics["curve"]][:1] == [0]  # every curve starts untrained
        assert len(runs[key].metrics["curve"]) == 2  # then only the final evaluation
    validation = read_json(directory / "validation.json")
    uniform, before = validation["runs"]["uniform"][0], read_json(reference / "validation.json")["runs"]["uniform"][0]
    assert uniform["key"] == before["key"]  # validation runs keep the proxy's evaluation: reused
    assert len(uniform["curve"]["tokens"]) == len(before["curve"]["tokens"]) >= PROXY["eval"]["points"]


def _statuses(directory: Path) -> dict[str, str]:
    try:
        with RunStore(directory / STORE_FILE, readonly=True) as store:
            return {r.key: r.status for r in store.runs()}
    except Exception:  # not created yet
        return {}


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"autoscale run ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "timed out waiting for the experiment to progress"
        time.sleep(0.05)


def _start(cmd: list[str]) -> subprocess.Popen:
    """``autoscale run`` with SIGINT at its default, whatever this suite inherited: a shell that
    starts a job in the background ignores SIGINT, the child would inherit that, and Ctrl-C would
    then do nothing."""
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_kill_9_then_ctrl_c_then_rerun_trains_no_finished_run_again(reference, tmp_path):
    config = write_config(tmp_path / "killed.yaml", reference.parent / "store")
    directory = tmp_path / "killed"
    cmd = [str(AUTOSCALE), "run", str(config), "--quiet"]

    # 1. kill -9 while the first DDO stage trains, after two runs finished
    proc = _start(cmd)
    _wait_for(lambda: list(_statuses(directory).values()).count("completed") >= 2
              and "running" in _statuses(directory).values(), proc)
    proc.kill()
    proc.wait()
    after_kill = _statuses(directory)
    killed = [k for k, s in after_kill.items() if s == "running"]
    # the store still says running (nobody could record otherwise); status shows it as stale
    assert len(killed) <= 1
    info = experiment_status(directory)
    assert info["running_pid"] is None and info["totals"].get("interrupted", 0) == len(killed)

    # 2. Ctrl-C (SIGINT) on the resumed run, after more runs finished: a clean stop
    done_before = list(after_kill.values()).count("completed")
    proc = _start(cmd)
    _wait_for(lambda: list(_statuses(directory).values()).count("completed") >= done_before + 2
              and "running" in _statuses(directory).values(), proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"interrupted" in err and b"Traceback" not in err
    after_int = _statuses(directory)
    assert "running" not in after_int.values()  # the clean stop recorded what it interrupted
    interrupted = set(killed) | {k for k, s in after_int.items() if s == "interrupted"}

    # 3. run to the end
    assert run_cli("run", str(config), "--quiet") == 0
    runs = runs_by_key(directory)
    assert set(runs) == ddo_keys(reference)
    for key, run in runs.items():
        assert run.status == "completed"
        if key in killed:
            assert run.attempts == 2  # resumed once
        elif after_int.get(key) == "completed":
            assert run.attempts == 1, "a finished run was trained again"
        else:
            assert run.attempts <= 1 + (key in interrupted)
    with RunStore(directory / STORE_FILE, readonly=True) as store:
        for key in killed:
            log = store.attempt_log(key)
            assert [a["status"] for a in log] == ["interrupted", "completed"]

    # the same mixtures as the uninterrupted experiment, to the last bit
    for budget in BUDGETS:
        assert read_json(directory / f"autoscale_{budget}.json")["mixture"] == read_json(
            reference / f"autoscale_{budget}.json")["mixture"]
    assert read_json(directory / "autoscale_target.json")["mixture"] == read_json(reference / "autoscale_target.json")["mixture"]


def test_ray_with_two_local_workers_matches_the_inline_executor(reference, tmp_path):
    pytest.importorskip("ray")
    config = write_config(tmp_path / "ray.yaml", reference.parent / "store",
                          executor={"kind": "ray", "workers": 2, "num_cpus": 1})
    assert run_cli("run", str(config), "--quiet") == 0
    directory = tmp_path / "ray"
    inline, on_ray = runs_by_key(reference), runs_by_key(directory)
    assert set(on_ray) == ddo_keys(reference)
    for key, run in on_ray.items():
        assert run.status == "completed" and run.attempts == 1
        assert run.metrics["final"] == inline[key].metrics["final"]
        assert run.metrics["curve"] == inline[key].metrics["curve"]
    for budget in BUDGETS:
        assert read_json(directory / f"autoscale_{budget}.json")["mixture"] == read_json(
            reference / f"autoscale_{budget}.json")["mixture"]
    assert read_json(directory / "autoscale_target.json")["mixture"] == read_json(reference / "autoscale_target.json")["mixture"]
    # two workers really ran at once: some two runs overlap in time
    spans = sorted((r.started_at, r.finished_at) for r in on_ray.values())
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))


def test_a_crashed_and_a_diverged_run_are_retried_then_succeed(reference, tmp_path, monkeypatch):
    import autoscale.train.loop as loop
    from autoscale.train.metrics import RunMetrics, write_metrics

    real = loop.train_run
    calls: dict[str, int] = {}

    def flaky(store, tokens, config, run_dir, progress=None, mode=None):
        # Fault injection: the first attempt of one run crashes, of another one "diverges".
        name = Path(run_dir).name
        calls[name] = calls.get(name, 0) + 1
        first = calls[name] == 1
        if first and (tokens["web"], tokens["code"]) == (12000, 4000):  # ddo 12000: web-x3
            raise RuntimeError("worker lost")
        if first and (tokens["web"], tokens["books"]) == (4000, 12000):  # ddo 12000: books-x3
            metrics = RunMetrics(status="diverged", final={}, diverged_at_step=3)
            write_metrics(metrics, Path(run_dir) / "metrics.json")
            return metrics
        return real(store, tokens, config, run_dir, progress, mode)

    monkeypatch.setattr(loop, "train_run", flaky)
    config = write_config(tmp_path / "retry.yaml", reference.parent / "store", executor={"retries": 1})
    assert run_cli("run", str(config), "--quiet") == 0
    directory = tmp_path / "retry"
    runs = runs_by_key(directory)
    retried = {k: r for k, r in runs.items() if r.attempts == 2}
    assert len(retried) == 2 and all(r.status == "completed" for r in runs.values())
    with RunStore(directory / STORE_FILE, readonly=True) as store:
        errors = sorted(store.attempt_log(k)[0]["error"] for k in retried)
    assert errors == ["RuntimeError: worker lost", "diverged at step 3"]
    # the retried runs trained from scratch give the reference's numbers
    inline = runs_by_key(reference)
    assert all(r.metrics["final"] == inline[k].metrics["final"] for k, r in retried.items())
    assert os.path.exists(directory / "autoscale_target.json")
