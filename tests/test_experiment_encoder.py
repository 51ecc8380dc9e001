"""`autoscale run` end to end with a masked-LM (BERT-style encoder) proxy, the paper's second setting:
the same pipeline as the decoder's (tests/test_experiment_pipeline.py), with ``proxy.model.kind:
encoder``: DDO at two small budgets, the extrapolated target and its validation against uniform.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from autoscale.experiment.runstore import STORE_FILE, RunStore
from cli_helpers import run_cli

CORPUS = Path(__file__).parent / "fixtures" / "corpus"
DOMAINS = ["web", "code", "books"]
BUDGETS = [8000, 16000]
TARGET = 32000


@pytest.mark.timeout(300)  # about 10 s on 2 idle cores
def test_encoder_proxy_runs_the_whole_pipeline(tmp_path):
    config = {
        "seed": 0,
        "data": {"store": str(tmp_path / "store"), "sources": str(CORPUS), "domains": DOMAINS,
                 "vocab_size": 512, "val_tokens": 2048},
        "proxy": {
            "model": {"kind": "encoder", "n_layer": 1, "d_model": 32, "n_head": 2, "seq_len": 32},
            "train": {"batch_size": 8, "lr": 1.0e-2, "warmup": 0.1, "threads": 1},
            "eval": {"points": 4, "max_tokens": 1024},
        },
        "ddo": {"budgets": BUDGETS},
        "target": {"budget": TARGET, "validate": True, "compare": ["uniform"]},
        "executor": {"kind": "inline"},
    }
    path = tmp_path / "encoder.yaml"
    path.write_text(yaml.safe_dump(config))

    assert run_cli("run", str(path), "--quiet") == 0
    out = tmp_path / "encoder"

    for budget in BUDGETS:
        ddo = json.loads((out / f"autoscale_{budget}.json").read_text())
        assert list(ddo["mixture"]["weights"]) == DOMAINS
        assert sum(ddo["mixture"]["weights"].values()) == pytest.approx(1.0)
        assert set(ddo["fits"]) == set(DOMAINS)
    target = json.loads((out / "autoscale_target.json").read_text())
    assert target["mixture"]["budget"] == pytest.approx(TARGET)
    validation = json.loads((out / "validation.json").read_text())
    assert set(validation["runs"]) == {"predicted", "uniform"}
    assert {s["baseline"] for s in validation["speedups"]} == {"uniform"}

    # Every run (7 per DDO budget, 2 validations) trained the masked-LM objective and reports
    # masked-LM losses on every domain's held-out text, lower at the end than before training.
    with RunStore(out / STORE_FILE, readonly=True) as store:
        runs = list(store.runs())
    assert len(runs) == 2 * 7 + 2
    for run in runs:
        assert run.status == "completed"
        assert run.metrics["objective"] == "masked"
        final, start = run.metrics["final"], run.metrics["curve"][0]["eval"]
        assert set(final) == set(DOMAINS)
        assert all(final[d]["loss"] < start[d]["loss"] for d in DOMAINS)
