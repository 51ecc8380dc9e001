"""The command executor: a user's own trainer driven through the whole pipeline.

The stand-in trainer below is a separate program that trains a real (if simple) language model on
the mixture's real tokens: a bigram model with add-k smoothing, evaluated on each domain's fixed
validation split. It reads `{mixture_json}` and writes `{run_dir}/metrics.json` like any external
trainer would. A `break.txt` file beside the config makes chosen runs misbehave (the fault).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from autoscale.data import prepare_store
from autoscale.experiment.runstore import STORE_FILE, RunStore
from cli_helpers import run_cli

CORPUS = Path(__file__).parent / "fixtures" / "corpus"
DOMAINS = ["web", "code", "books"]

TRAINER = r'''
"""Stand-in external trainer: a bigram LM on the mixture's tokens. argv: store mixture_json run_dir seed label"""
import json, os, sys
from pathlib import Path
import numpy as np
from autoscale.data import MixtureSampler, TokenStore

store_path, mixture_json, run_dir, seed, label = sys.argv[1:6]
faults = Path("break.txt")
fault = dict(line.split("=", 1) for line in faults.read_text().splitlines() if line) if faults.exists() else {}
if fault.get(label) == "malformed":
    Path(run_dir, "metrics.json").write_text('{"schema_version": 1, "status": "completed", "final": ')
    sys.exit(0)
if fault.get(label) == "crash":
    print("CUDA out of memory (pretend)", file=sys.stderr)
    sys.exit(3)

store = TokenStore.open(store_path, verify=False)
tokens = json.loads(Path(mixture_json).read_text())["tokens"]
sampler = MixtureSampler(store, tokens, seq_len=32, seed=int(seed))
V = store.vocab_size
counts = np.zeros((V, V))

def evaluate():
    probs = (counts + 0.05) / (counts + 0.05).sum(axis=1, keepdims=True)
    out = {}
    for d in store.domains:
        v = np.asarray(store.val_tokens(d), dtype=np.int64)
        loss = float(-np.log(probs[v[:-1], v[1:]]).mean())
        out[d] = {"loss": loss, "perplexity": float(np.exp(loss))}
    return out

batches = list(sampler.batches(8))
points = {round(len(batches) * k / 5) for k in range(1, 6)}
curve, seen = [{"step": 0, "tokens": 0, "eval": evaluate()}], 0
for step, batch in enumerate(batches, 1):
    np.add.at(counts, (batch[:, :-1].ravel(), batch[:, 1:].ravel()), 1)
    seen += batch[:, :-1].size
    if step in points:
        curve.append({"step": step, "tokens": seen, "eval": evaluate()})
metrics = {"schema_version": 1, "status": "completed", "final": curve[-1]["eval"], "curve": curve,
           "tokens_per_domain": sampler.tokens_trained}
tmp = Path(run_dir, ".metrics.tmp")
tmp.write_text(json.dumps(metrics))
os.replace(tmp, Path(run_dir, "metrics.json"))
'''


# its tests share `store`: built once, on one worker (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("test_experiment_command")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("command") / "store"
    prepare_store({d: CORPUS / f"{d}.jsonl" for d in DOMAINS}, path, vocab_size=300, val_tokens=2048)
    return path


def setup_experiment(root: Path, store: Path, faults: dict[str, str], **ddo) -> Path:
    (root / "trainer.py").write_text(TRAINER)
    (root / "break.txt").write_text("".join(f"{label}={mode}\n" for label, mode in faults.items()))
    config = {
        "data": {"store": str(store)},
        "ddo": {"budgets": [8000, 16000], **ddo},
        "target": {"budget": 32000, "validate": True, "compare": ["uniform"]},
        "executor": {
            "kind": "command",
            "command": [sys.executable, "trainer.py", "{store}", "{mixture_json}", "{run_dir}", "{seed}", "{label}"],
            "workers": 2,
            "retries": 1,
            "trainer_id": "bigram-v1",
        },
    }
    path = root / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_external_trainer_through_the_pipeline_with_one_malformed_metrics_json(store, tmp_path, capsys):
    # Three ratios give each domain 4 points, so the fit can go on without one of them.
    broken = "ddo 8000: web-x0.5"
    # web may repeat at most 0.05 epochs: a cap the target mixture must respect
    config = setup_experiment(tmp_path, store, {broken: "malformed"}, ratios=[0.2, 0.5, 3.0],
                              max_epochs={"web": 0.05})
    assert run_cli("run", str(config), "--quiet") == 0
    err = capsys.readouterr().err
    assert f"{broken}: trainer wrote no valid metrics.json" in err and "malformed JSON" in err

    directory = tmp_path / "experiment"
    with RunStore(directory / STORE_FILE, readonly=True) as runs:
        failed = [r for r in runs.runs() if r.status != "completed"]
        assert [u for r in failed for u in r.uses] == [("ddo 8000", "web-x0.5")]
        assert failed[0].status == "failed" and failed[0].attempts == 2  # 1 retry, then recorded
        assert "metrics.json" in failed[0].error
        assert all(r.attempts == 1 for r in runs.runs() if r.status == "completed")
        assert len(runs.runs()) == 2 * 10 + 2  # 1 + 3x3 runs per budget; predicted and uniform
    ddo = json.loads((directory / "autoscale_8000.json").read_text())
    assert list(ddo["failed"]) == ["web-x0.5"] and len(ddo["runs"]) == 10
    assert len((directory / "autoscale_runs_8000.csv").read_text().splitlines()) == 1 + 9
    validation = json.loads((directory / "validation.json").read_text())
    assert [s["baseline"] for s in validation["speedups"]] == ["uniform"]
    target = json.loads((directory / "autoscale_target.json").read_text())
    assert target["mixture"]["budget"] == pytest.approx(32000)
    cap = json.loads((directory / "experiment.json").read_text())["caps"]["web"]
    assert target["bounded"] == {"web": "cap"} and target["mixture"]["tokens"]["web"] == pytest.approx(cap)

    assert run_cli("status", str(directory)) == 0
    out = capsys.readouterr().out
    assert "failed" in out and "web-x0.5" in out
    # the report's settings describe the trainer that ran: the command and its id, not our proxy
    assert run_cli("report", str(directory)) == 0
    page = (directory / "report" / "report.html").read_text()
    assert "your command: " in page and "trainer.py {store} {mixture_json}" in page and "bigram-v1" in page
    assert "proxy model" not in page

    # The user fixes the trainer and reruns: the failed run is trained again and the fit uses it;
    # the new DDO optimum moves the target, so the predicted mixture gets a new validation run.
    with RunStore(directory / STORE_FILE, readonly=True) as runs:
        before = {r.key: r for r in runs.runs()}
    (tmp_path / "break.txt").write_text("")
    assert run_cli("run", str(config), "--quiet") == 0
    with RunStore(directory / STORE_FILE, readonly=True) as runs:
        after = {r.key: r for r in runs.runs()}
        assert all(r.status == "completed" for r in after.values())
        assert after[failed[0].key].attempts == 3
        assert all(after[k].attempts == 1 for k, r in before.items() if r.status == "completed")
        assert [after[k].uses for k in set(after) - set(before)] == [(("validate", "predicted"),)]
    assert len((directory / "autoscale_runs_8000.csv").read_text().splitlines()) == 1 + 10


def test_a_domain_left_with_two_points_is_one_clear_error(store, tmp_path, capsys):
    config = setup_experiment(tmp_path, store, {"ddo 8000: code-x3": "crash"})
    assert run_cli("run", str(config), "--quiet") == 2
    err = capsys.readouterr().err.strip().splitlines()
    message = err[-1]
    assert message.startswith("error: DDO at 8000 tokens: domain(s) code keep fewer than 3 completed runs")
    assert "failed: 1 run: trainer exited with status 3: CUDA out of memory (pretend) (code-x3)" in message
    with RunStore(tmp_path / "experiment" / STORE_FILE, readonly=True) as runs:
        statuses = sorted(r.status for r in runs.runs())
    assert statuses == ["completed"] * 6 + ["failed"]  # nothing else lost


def test_a_missing_trainer_program_is_a_config_error(store, tmp_path, capsys):
    config = setup_experiment(tmp_path, store, {})
    data = yaml.safe_load(config.read_text())
    data["executor"]["command"] = ["./no-such-trainer", "{run_dir}"]
    config.write_text(yaml.safe_dump(data))
    assert run_cli("run", str(config)) == 2
    assert "program './no-such-trainer' not found" in capsys.readouterr().err


def test_a_killed_driver_leaves_one_trainer_per_run_folder_and_a_rerun_adopts_it(tmp_path):
    """kill -9 of `autoscale run` while its trainers run: they run on to their end (their own
    sessions), and a rerun started at once waits for each, adopts its result, and says so. Exactly
    one trainer ever writes each run folder, and the results equal an uninterrupted run's."""
    import json
    import os
    import signal
    import subprocess
    import time

    import yaml

    from cli_helpers import tiny_experiment

    path = tiny_experiment(tmp_path, "orphans")
    config = yaml.safe_load(path.read_text())
    config["executor"]["command"] += ["--sleep", "2", "--log-pid"]
    config["target"] = {"budget": 16_000_000}  # the search is enough to show it
    path.write_text(yaml.safe_dump(config))
    folder = tmp_path / "orphans"
    cmd = [sys.executable, "-m", "autoscale", "run", str(path), "--quiet"]
    driver = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(list(folder.glob("runs/*/trainers.log"))) < 2:  # two trainers started (workers: 2)
        assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()
        time.sleep(0.05)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    orphaned = [p.parent for p in folder.glob("runs/*/trainers.log") if not (p.parent / "metrics.json").exists()]
    assert orphaned  # trainers still running, the driver gone
    rerun = subprocess.run(cmd[:-1], capture_output=True, text=True, timeout=300)  # not --quiet: the notes
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # adopted by the executor once the orphan released its folder (the usual case), or found finished
    # on disk by the scheduler when the orphan ended before the rerun reached it: either way, not retrained
    assert "adopted" in rerun.stderr or "found finished on disk" in rerun.stderr
    for log in folder.glob("runs/*/trainers.log"):
        assert len(log.read_text().split()) == 1, f"two trainers wrote {log.parent.name}"
    reference = tmp_path / "reference.yaml"
    config["executor"]["command"] = [a for a in config["executor"]["command"] if a not in ("--sleep", "2", "--log-pid")]
    reference.write_text(yaml.safe_dump(config))
    assert subprocess.run(cmd[:3] + ["run", str(reference), "--quiet"], capture_output=True).returncode == 0
    ours, theirs = (json.loads((tmp_path / name / "autoscale_target.json").read_text())["mixture"]
                    for name in ("orphans", "reference"))
    assert ours == theirs


# Autoscale's own trainer (the inline and Ray executors) keeps the same rule: a Ray worker of a
# killed driver may still be training in the folder when the rerun reaches the run.
HOLDER = r'''
import fcntl, os, shutil, sys, time
run_dir, metrics = sys.argv[1], sys.argv[2]
fd = os.open(os.path.join(run_dir, ".trainer.lock"), os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"{os.getpid()}\n".encode())  # what the driver records for its trainer
print("held", flush=True)
time.sleep(1.5)
if metrics:
    shutil.copy(metrics, os.path.join(run_dir, "metrics.json"))
'''


def held(run_dir: Path, metrics: Path | None):
    """A process standing for a killed driver's trainer: it holds ``run_dir`` for 1.5 s, then writes
    ``metrics`` there (a finished run) or nothing (one that died), and exits."""
    import subprocess

    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir), str(metrics or "")],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.parametrize("finished", [True, False], ids=["adopts what it finished", "trains when it did not"])
def test_our_trainer_waits_for_a_trainer_left_in_its_folder(store, tmp_path, finished):
    import time

    from autoscale.experiment.executors import ADOPTED, RunJob
    from autoscale.experiment.executors.inline import train_job
    from autoscale.train.config import ProxyConfig

    proxy = ProxyConfig.from_dict({"model": {"n_layer": 1, "d_model": 32, "n_head": 2, "seq_len": 32},
                                   "train": {"batch_size": 8, "threads": 1}, "eval": {"points": 2, "max_tokens": 512}})
    tokens = {"web": 1000, "code": 1000, "books": 1000}
    first = train_job(RunJob("a", "first", tokens, 0, tmp_path / "a"), store, proxy)
    assert first.status == "completed" and first.note is None
    job = RunJob("b", "second", tokens, 0, tmp_path / "b")
    holder = held(job.run_dir, tmp_path / "a" / "metrics.json" if finished else None)
    started = time.perf_counter()
    outcome = train_job(job, store, proxy)
    assert holder.wait() == 0 and time.perf_counter() - started > 1.0  # it waited for the holder to end
    timing = ("tokens_per_s", "wall_time_s")
    assert outcome.status == "completed"
    assert {k: v for k, v in outcome.metrics.items() if k not in timing} == {
        k: v for k, v in first.metrics.items() if k not in timing}  # adopted, or trained the same
    assert outcome.note == (ADOPTED if finished else None)
    # adopted: nothing of a training of its own in the folder (no checkpoint, no log)
    assert sorted(p.name for p in job.run_dir.iterdir()) == (
        [".trainer.lock", "metrics.json"] if finished else sorted(p.name for p in (tmp_path / "a").iterdir()))


@pytest.mark.parametrize("finished", [True, False], ids=["adopts what it finished", "trains when it did not"])
def test_the_command_executor_waits_for_a_trainer_left_in_its_folder(tmp_path, finished):
    """The other side of a killed driver: a trainer it left that ends without a result has its run
    trained again, and the executor says so; one that finished has its result adopted."""
    from autoscale.experiment.executors import ADOPTED, RunJob
    from autoscale.experiment.executors.command import CommandExecutor

    simworld = Path(__file__).parent / "fixtures" / "simworld_trainer.py"
    command = [sys.executable, str(simworld), "--world-seed", "3", "--mixture", "{mixture_json}",
               "--seed", "{seed}", "--out", "{run_dir}"]
    executor = CommandExecutor(command, store_path=None, cwd=tmp_path)
    tokens = {"web": 100000, "code": 100000, "books": 100000}
    [first] = executor.execute([RunJob("a", "first", tokens, 11, tmp_path / "a")], lambda j: None, lambda p: None)
    assert first.status == "completed" and first.note is None
    job = RunJob("b", "second", tokens, 11, tmp_path / "b")
    holder = held(job.run_dir, tmp_path / "a" / "metrics.json" if finished else None)
    [outcome] = executor.execute([job], lambda j: None, lambda p: None)
    assert holder.wait() == 0
    assert outcome.status == "completed" and outcome.metrics["final"] == first.metrics["final"]
    if finished:
        assert outcome.note == ADOPTED and not (job.run_dir / "stdout.log").exists()  # no trainer of ours ran
    else:
        assert outcome.note.startswith(f"the trainer a killed run left in its folder (pid {holder.pid}) ended "
                                       "without a result: trained again")


def test_the_python_placeholder_is_the_python_that_runs_autoscale(tmp_path):
    from autoscale.experiment.executors import RunJob
    from autoscale.experiment.executors.command import CommandExecutor

    simworld = Path(__file__).parent / "fixtures" / "simworld_trainer.py"
    command = ["{python}", str(simworld), "--world-seed", "3", "--mixture", "{mixture_json}", "--seed", "{seed}",
               "--out", "{run_dir}"]
    # a PATH with no python on it: the trainer still runs, under this interpreter
    executor = CommandExecutor(command, store_path=None, cwd=tmp_path, env={"PATH": str(tmp_path)})
    job = RunJob("k", "base", {"web": 100000, "code": 100000, "books": 100000}, 11, tmp_path / "k")
    assert executor.argv(job)[0] == sys.executable
    [outcome] = executor.execute([job], lambda j: None, lambda p: None)
    assert outcome.status == "completed", outcome.error


def test_natural_without_a_store_tells_the_users_trainer_what_to_do(tmp_path, capsys):
    """target.compare defaults to uniform, natural and ddo; natural needs the store's token shares."""
    config = {"data": {"domains": DOMAINS}, "ddo": {"budgets": [8000, 16000]},
              "target": {"budget": 32000, "validate": True},
              "executor": {"kind": "command", "command": ["{python}", "trainer.py", "{run_dir}"]}}
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(config))
    assert run_cli("run", str(path), "--quiet") == 2
    err = capsys.readouterr().err.strip()
    assert "'natural' mixture needs data.store" in err and "target.compare: [uniform, ddo]" in err
    assert "\n" not in err and not (tmp_path / "own").exists()
