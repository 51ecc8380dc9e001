"""`ddo.replicates: 3` end to end: run, status, report, and kill -9 in the middle of the replicates.

The trainer is the simulated world's stand-in (tests/fixtures/simworld_trainer.py) behind the command
executor: its validation perplexities are a known function of the tokens plus 3% run noise, so the
pipeline's replicates, paired effects, intervals and resume are tested at the speed of a subprocess
(the shared experiment calls it in-process: tests/simworld_inprocess.py; the kill -9 test starts processes).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from autoscale.ddo.runs import RunsTable
from autoscale.experiment.runstore import STORE_FILE, RunStore
from cli_helpers import run_cli
from simworld_inprocess import simworld_in_process

TRAINER = Path(__file__).parent / "fixtures" / "simworld_trainer.py"
AUTOSCALE = Path(sys.executable).parent / "autoscale"
DOMAINS = ["web", "code", "books"]
BUDGETS = (1_000_000, 4_000_000)


def write_config(root: Path, name: str, sleep: float = 0.0, **ddo) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    config = {
        "data": {"domains": DOMAINS, "fingerprint": "simworld-3"},
        "seed": 10,
        "ddo": {"budgets": list(BUDGETS), "replicates": 3, "bootstrap": 40, **ddo},
        "target": {"budget": 16_000_000},
        "executor": {
            "kind": "command",
            "command": [sys.executable, str(TRAINER), "--world-seed", "3", "--run-noise", "0.03",
                        "--mixture", "{mixture_json}", "--seed", "{seed}", "--out", "{run_dir}",
                        "--sleep", str(sleep)],
            "workers": 2,
            "trainer_id": "simworld-v1",
        },
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# its tests share `finished`: built once, on one worker (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("test_experiment_replicates")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("replicates")
    with simworld_in_process():
        assert run_cli("run", str(write_config(root, "reference")), "--quiet") == 0
    return root / "reference"


def read_json(path: Path):
    return json.loads(path.read_text())


def test_every_design_point_is_trained_with_three_seeds(finished):
    for budget in BUDGETS:
        table = RunsTable.read_csv(finished / f"autoscale_runs_{budget}.csv")
        assert sorted(set(table.seeds.tolist())) == [10, 11, 12]  # seed, seed+1, seed+2
        assert table.n_runs == 3 * 7 and table.replicates == 3
        record = read_json(finished / f"autoscale_{budget}.json")
        assert len(record["runs"]) == 21 and "base seed 11" in record["runs"]
        noise = record["noise"]
        assert noise["replicates"] == 3 and noise["paired"] and 0 < noise["noise"] < 0.1
        assert set(record["intervals"]) == set(DOMAINS) and len(record["bootstrap_draws"]) == 40
        for d in DOMAINS:
            lo, hi = record["intervals"][d]
            assert lo <= record["mixture"]["weights"][d] <= hi or d in record["held"]
    with RunStore(finished / STORE_FILE, readonly=True) as store:
        assert len(store.runs()) == 2 * 21 and all(r.status == "completed" for r in store.runs())


def test_the_target_has_intervals_from_the_paired_draws(finished):
    target = read_json(finished / "autoscale_target.json")
    assert set(target["intervals"]) == set(DOMAINS)
    assert len(target["draws"]) >= 30
    weights = target["mixture"]["weights"]
    inside = [target["intervals"][d][0] - 1e-9 <= weights[d] <= target["intervals"][d][1] + 1e-9 for d in DOMAINS]
    assert sum(inside) >= 2  # a point estimate may sit at an interval's edge, not outside all of them
    summary = read_json(finished / "summary.json")
    assert summary["methods"]["autoscale"]["target"]["intervals"] == target["intervals"]
    assert [d["replicates"] for d in summary["methods"]["autoscale"]["searched"]] == [3, 3]


def test_status_counts_the_replicates_and_gives_design_advice(finished, capsys):
    assert run_cli("status", str(finished)) == 0
    out = capsys.readouterr().out
    assert "DDO noise and design advice" in out and "replicates needed" in out
    assert "predicted gain over the base mixture" in out
    assert run_cli("status", str(finished), "--json") == 0
    info = json.loads(capsys.readouterr().out)
    ddo_stages = [s for s in info["stages"] if s["name"].startswith("ddo")]
    assert [s["seeds"] for s in ddo_stages] == [3, 3]
    assert [d["replicates"] for d in info["ddo"]] == [3, 3]
    for d in info["ddo"]:
        assert set(d["needed"]) == set(DOMAINS)
        assert d["cost"]["design_tokens"] > 0


def test_the_report_shows_intervals_and_the_noise_table(finished, tmp_path, capsys):
    assert run_cli("report", str(finished), "--out", str(tmp_path / "report")) == 0
    page = (tmp_path / "report" / "report.html").read_text()
    assert (tmp_path / "report" / "weight_intervals.png").exists()
    assert page.count('<span class="ci">') >= 3 * 3  # every weight of both DDO budgets and the target
    assert "Noise and signal in the DDO runs" in page and "replicates for 3 SE" in page


def _completed(directory: Path) -> int:
    try:
        with RunStore(directory / STORE_FILE, readonly=True) as store:
            return sum(r.status == "completed" for r in store.runs())
    except Exception:  # not created yet
        return 0


def test_kill_9_mid_replicates_resumes_without_retraining(finished, tmp_path):
    config = write_config(tmp_path, "killed", sleep=0.15)
    directory = tmp_path / "killed"
    proc = subprocess.Popen([str(AUTOSCALE), "run", str(config), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _completed(directory) < 9:  # past the first seed's 7 runs: in the middle of the replicates
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    with RunStore(directory / STORE_FILE, readonly=True) as store:
        done = {r.key for r in store.runs() if r.status == "completed"}
    assert 9 <= len(done) < 42

    assert run_cli("run", str(config), "--quiet") == 0
    with RunStore(directory / STORE_FILE, readonly=True) as store:
        runs = {r.key: r for r in store.runs()}
    assert len(runs) == 42 and all(r.status == "completed" for r in runs.values())
    assert all(runs[k].attempts == 1 for k in done), "a finished run was trained again"
    # its runs have other keys (the command, with --sleep, is in the key) but the world is deterministic
    for budget in BUDGETS:
        a = read_json(directory / f"autoscale_{budget}.json")["mixture"]["weights"]
        b = read_json(finished / f"autoscale_{budget}.json")["mixture"]["weights"]
        assert a == pytest.approx(b, abs=1e-12)
    assert read_json(directory / "autoscale_target.json")["intervals"] == read_json(finished / "autoscale_target.json")["intervals"]


@pytest.mark.parametrize("value, message", [
    (0, "ddo.replicates: Input should be greater than or equal to 1"),
    (1.5, "ddo.replicates: Input should be a valid integer"),
    ("3", "ddo.replicates: Input should be a valid integer"),
])
def test_bad_replicates_are_one_line_errors(tmp_path, capsys, value, message):
    config = write_config(tmp_path, "bad", replicates=value)
    assert run_cli("run", str(config)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "bad").exists()


def test_the_result_names_each_held_domains_own_reason(tmp_path, capsys):
    """With 30% run noise, effects do not stand out: the printed result names each held domain with
    the reason its search gave (not a blanket "not distinguishable from noise")."""
    import yaml

    path = write_config(tmp_path, "noisy")
    config = yaml.safe_load(path.read_text())
    command = config["executor"]["command"]
    command[command.index("--run-noise") + 1] = "0.3"
    path.write_text(yaml.safe_dump(config))
    with simworld_in_process():
        assert run_cli("run", str(path)) == 0
    held = read_json(tmp_path / "noisy" / "summary.json")["methods"]["autoscale"]["target"]["held"]
    assert held, "30% noise holds a domain: the line under test"
    out = capsys.readouterr().out
    assert f"autoscale: held at their base share: {', '.join(held)}" in out
    reasons = [line for line in out.splitlines() if "held at its base share:" in line]
    for d in held:
        assert any(f"'{d}'" in line for line in reasons), (d, reasons)
    assert all(("non-monotone" in r) or ("noise" in r) or ("another budget" in r) for r in reasons), reasons
