"""The JSON Schemas in docs/schema/ are the typed records' (regenerate with `autoscale schema`), and
the files real runs write meet them: metrics.json of our trainer and of the stand-in trainer, and
every record of an experiment folder, current or written before typed records."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from autoscale.experiment.folder import ExperimentFolder
from autoscale.experiment.records import (
    SCHEMA_VERSION,
    DDORecord,
    MethodRecord,
    SummaryRecord,
    ValidationRecord,
    schemas,
)
from autoscale.train.metrics import read_metrics

ROOT = Path(__file__).parent.parent
SCHEMA = ROOT / "docs" / "schema"
FIXTURES = Path(__file__).parent / "fixtures"


def test_the_committed_schemas_are_the_records(tmp_path):
    written = subprocess.run([sys.executable, "-m", "autoscale", "schema", "--out", str(tmp_path)],
                             capture_output=True, text=True)
    assert written.returncode == 0, written.stderr
    fresh = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert set(fresh) == set(schemas()) and len(fresh) == 7
    committed = {p.name: p.read_text() for p in SCHEMA.glob("*.schema.json")}
    stale = sorted(n for n in fresh if committed.get(n) != fresh[n])
    assert not stale and set(committed) == set(fresh), f"stale: {stale}; run `autoscale schema --out docs/schema`"


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((SCHEMA / name).read_text()))


def test_metrics_json_of_real_runs_meets_the_contract_and_bad_ones_do_not():
    check = validator("metrics.schema.json")
    files = sorted((FIXTURES / "old-experiment" / "runs").glob("*/metrics.json"))
    assert len(files) == 20
    for path in files:
        data = json.loads(path.read_text())
        check.validate(data)
        read_metrics(path)  # the reader agrees
    good = json.loads(files[0].read_text())
    for bad in ({**good, "status": "done"}, {**good, "schema_version": 2}, {k: v for k, v in good.items() if k != "final"},
                {**good, "curve": [{"step": -1, "tokens": 0, "eval": {}}]}, {**good, "final": {"web": {"loss": -1.0}}}):
        assert not check.is_valid(bad), bad


def test_the_stand_in_trainer_writes_metrics_that_meet_the_contract(tmp_path):
    trainer, mixture = FIXTURES / "simworld_trainer.py", tmp_path / "mixture.json"
    mixture.write_text(json.dumps({"tokens": {"a": 1e6, "b": 2e6, "c": 1e6}}))
    proc = subprocess.run([sys.executable, str(trainer), "--world-seed", "1", "--domains", "a,b,c",
                           "--mixture", str(mixture), "--seed", "0", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    validator("metrics.schema.json").validate(json.loads((tmp_path / "metrics.json").read_text()))


def test_an_old_folder_reads_as_the_current_records(tmp_path):
    folder = ExperimentFolder(tmp_path / "old")
    shutil.copytree(FIXTURES / "old-experiment", folder.path)
    summary = folder.read_record(folder.summary, SummaryRecord)
    assert summary is not None and summary.schema_version == SCHEMA_VERSION  # read in today's layout
    entry = summary.methods["autoscale"]
    assert [s.budget for s in entry.searched] == [12000.0, 24000.0] and entry.target is not None
    assert entry.target.weights == entry.weights and entry.target.held == {"code": pytest.approx(1 / 3)}
    assert [b for b, _ in folder.search_records("autoscale")] == [12000, 24000]
    for _, path in folder.search_records("autoscale"):
        assert path.name.startswith("ddo_") and isinstance(folder.read_record(path, DDORecord), DDORecord)
    assert folder.existing("autoscale", "result").name == "target.json"
    assert folder.read_record(folder.existing("autoscale", "result"), MethodRecord).mixture.weights == entry.weights
    validation = folder.read_record(folder.validation, ValidationRecord)
    assert validation is not None and set(validation.runs) == {"predicted", "uniform", "ddo"}
    assert sorted(p.name for p in folder.path.iterdir()) == sorted(p.name for p in (FIXTURES / "old-experiment").iterdir())


def test_records_an_experiment_writes_meet_their_schemas(tmp_path):
    from cli_helpers import run_cli, tiny_experiment

    assert run_cli("run", str(tiny_experiment(tmp_path, "tiny")), "--quiet") == 0
    folder = tmp_path / "tiny"
    checks = {"summary.json": "summary.schema.json", "validation.json": "validation.schema.json",
              "experiment.json": "experiment.schema.json", "autoscale_target.json": "method-target.schema.json",
              "autoscale_4000000.json": "ddo-record.schema.json"}
    for name, schema in checks.items():
        data = json.loads((folder / name).read_text())
        assert data["schema_version"] == SCHEMA_VERSION, name
        validator(schema).validate(data)
    assert not validator("ddo-record.schema.json").is_valid({"schema_version": 2, "budget": 1, "mixture": {}})
