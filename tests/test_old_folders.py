"""A folder written by an earlier autoscale (tests/fixtures/old-experiment, commit 161279c: AutoScale's
files under their old names, its results at the top of summary.json, no schema_version) still opens
in `report` and `status` without being written to, and a rerun of its config with this code trains
none of its runs again (run keys have not moved) and leaves the folder in today's layout."""

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import yaml

FIXTURES = Path(__file__).parent / "fixtures"


def autoscale(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "autoscale", *args], capture_output=True, text=True, cwd=cwd)


def attempts(folder: Path) -> dict[str, tuple[str, int]]:
    with sqlite3.connect(folder / "runs.sqlite") as db:
        return {key: (status, n) for key, status, n in db.execute("SELECT key, status, attempts FROM runs")}


def test_an_old_folder_opens_and_its_runs_are_never_trained_again(tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(FIXTURES / "old-experiment", folder)
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    status = autoscale("status", str(folder), "--json")
    assert status.returncode == 0, status.stderr[-2000:]
    ddo = json.loads(status.stdout)["ddo"]
    assert [(d["method"], d["file"]) for d in ddo] == [("autoscale", "ddo_12000.json"), ("autoscale", "ddo_24000.json")]
    report = autoscale("report", str(folder), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr[-2000:]
    page = (tmp_path / "report" / "report.html").read_text()
    assert "predicted" in page and "DDO @ 24k" in page  # the extrapolated mixture and the DDO optima
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == files  # reading wrote nothing

    before = attempts(folder)
    mtimes = {p: p.stat().st_mtime_ns for p in folder.glob("runs/*/metrics.json")}
    assert len(before) == len(mtimes) == 20 and {s for s, _ in before.values()} == {"completed"}
    config = {
        "name": "old", "seed": 0,
        "data": {"store": str(tmp_path / "store"), "sources": str(FIXTURES / "corpus"),
                 "domains": ["web", "code", "books"], "vocab_size": 512, "val_tokens": 2048},
        "proxy": {"model": {"n_layer": 1, "d_model": 32, "n_head": 2, "seq_len": 32},
                  "train": {"batch_size": 8, "lr": 1.0e-2, "warmup": 0.1, "threads": 1},
                  "eval": {"points": 4, "max_tokens": 1024}},
        "ddo": {"budgets": [12000, 24000], "max_epochs": 4, "eval_points": 1},
        "target": {"budget": 48000, "validate": True, "seeds": [0, 1], "compare": ["uniform", "ddo"]},
    }
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(config))
    rerun = autoscale("run", str(tmp_path / "old.yaml"), "--quiet")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert attempts(folder) == before  # no run started, none added: every key still matches
    assert {p: p.stat().st_mtime_ns for p in folder.glob("runs/*/metrics.json")} == mtimes
    names = {p.name for p in folder.iterdir()}
    assert {"autoscale_runs_12000.csv", "autoscale_12000.json", "autoscale_target.json"} <= names
    assert not names & {"runs_12000.csv", "ddo_12000.json", "target.json"}
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["schema_version"] == 2 and "ddo" not in summary and "target" not in summary
    assert [s["budget"] for s in summary["methods"]["autoscale"]["searched"]] == [12000.0, 24000.0]
