"""bench/gpu.sh, the accelerator script, checked at toy size on CPU (its --dry-run): every step runs
(trainer throughput, one signal-to-noise row, an AutoScale search and validation) on the fixture
corpus, as text tokenised on the spot as it would be on the device machine, and writes its figures."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_gpu_script_dry_run_runs_every_step(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "GPU_WORK": str(tmp_path / "work"), "PYTHON": sys.executable}
    done = subprocess.run(["bash", "bench/gpu.sh", "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["autoscale.md", "snr.md", "trainer.md"]
    assert "tiny (test-sized)" in (out / "trainer.md").read_text()
    snr = (out / "snr.md").read_text()
    assert "| bytes L2 d64 | 4,000 |" in snr and "tests/fixtures/corpus" in snr
    run = (out / "autoscale.md").read_text()
    assert "gain in the final objective over uniform" in run and "device: cpu" in run
    assert (tmp_path / "work" / "experiment" / "validation.json").exists()
    bad = subprocess.run(["bash", "bench/gpu.sh", "--nope"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr
