"""examples/own_trainer, as the README walks through it: a user's own trainer (a small GPT-2 on
Hugging Face transformers, one process per run) through `autoscale run`, then `report`, `export
--format megatron` from the experiment folder, `check` on one of its runs, and `eval --hf-model`
of that run's saved model on the example's own lm-eval task (`--include-path`).

The example is copied to a temporary folder and run there, from its own folder, as the README says.
`make example` runs this test. It is not in `make test`: each of the example's 17 runs is a process
that imports torch and transformers (about 8 s of a core here), about 3.5 core-minutes in all.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autoscale.export import read_export

EXAMPLE = Path(__file__).resolve().parent


def autoscale(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autoscale", *args], cwd=folder, capture_output=True, text=True)


@pytest.mark.slow
def test_the_own_trainer_example_runs_reports_exports_and_scores(tmp_path):
    folder = tmp_path / "own_trainer"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("data", "experiment", ".cache", "__pycache__", "test_example.py"))
    prepared = subprocess.run([sys.executable, "prepare_data.py"], cwd=folder, capture_output=True, text=True)
    assert prepared.returncode == 0, prepared.stderr
    assert sorted(p.name for p in (folder / "data").iterdir()) == ["code.txt", "names.txt", "prose.txt"]

    done = autoscale(folder, "run", "experiment.yaml", "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    experiment = folder / "experiment"
    validation = json.loads((experiment / "validation.json").read_text())
    assert set(validation["runs"]) == {"predicted", "uniform", "ddo"}
    run_dir = Path(validation["runs"]["predicted"][0]["run_dir"])
    # the trainer's own numbers reached the record: a curve with its evaluations, every domain
    assert set(validation["runs"]["predicted"][0]["final_perplexity"]) == {"code", "prose", "names"}
    assert len(validation["runs"]["predicted"][0]["curve"]["step"]) == 5  # step 0 and --evals 4

    checked = autoscale(folder, "check", str(run_dir))
    assert checked.returncode == 0, checked.stderr

    reported = autoscale(folder, "report", "experiment")
    assert reported.returncode == 0, reported.stderr
    page = (experiment / "report" / "report.html").read_text()
    assert "train.py --data data --mixture {mixture_json}" in page and "example-gpt2-v1" in page
    assert "stdlib-chars-200k" in page  # the data, as data.fingerprint names them

    paths = "code=/data/code_text_document,prose=/data/prose_text_document,names=/data/names_text_document"
    exported = autoscale(folder, "export", "experiment", "--format", "megatron", "--paths", paths)
    assert exported.returncode == 0, exported.stderr
    back, _ = read_export(exported.stdout, "megatron")  # weights by prefix, as Megatron reads them
    target = json.loads((experiment / "autoscale_target.json").read_text())["mixture"]["weights"]
    assert back.weights == pytest.approx({f"/data/{d}_text_document": w for d, w in target.items()}, abs=1e-6)

    args = ["eval", "--hf-model", str(run_dir / "model"), "--include-path", "tasks", "--tasks", "example_continuation",
            "--json"]
    scored = autoscale(folder, *args)
    assert scored.returncode == 0, scored.stderr
    result = json.loads(scored.stdout)
    assert result["cached"] is False and 0.0 <= result["tasks"]["example_continuation"]["value"] <= 1.0
    assert scored.stderr == "", scored.stderr  # no progress bars or notes of the libraries
