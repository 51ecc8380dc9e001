"""Every bench script still loads against today's package: a benchmark that runs for hours should not
find a moved name at its first line (bench/record_v2.py once imported format_tokens from where it
no longer lived, and nothing ran it until the record was rerun)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p.name for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_"))

# Each script as `python bench/<name>.py` would load it (bench/ first on the path), without its main().
LOAD = """
import runpy, sys
sys.path.insert(0, "bench")
failed = []
for name in sys.argv[1:]:
    try:
        runpy.run_path("bench/" + name, run_name="bench_load_check")
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_bench_script_loads():
    assert "record_v2.py" in SCRIPTS and "simworld.py" in SCRIPTS  # the glob found the scripts
    done = subprocess.run([sys.executable, "-c", LOAD, *SCRIPTS], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def test_the_record_reads_the_carried_headroom_rows_where_the_study_has_not_finished(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import headroom

    rows = headroom.measured(tmp_path, lambda msg: None, train=False)  # an empty workspace: nothing trained
    assert {(r["corpus"], r["fit"]) for r in rows} >= {("small-targets", "plain"), ("full", "plain")}
    chosen = headroom.choose(rows)
    assert chosen is not None and (chosen["corpus"], chosen["objective"], chosen["fit"]) == ("full", "web-code-qa", "plain")
    assert chosen["weights"] == {"web": 1.0, "code": 1.0, "qa": 1.0} and abs(sum(chosen["oracle"].values()) - 1) < 0.01
    table = headroom.report(rows, "bench/headroom.py --report-only", 0.0)
    assert "| full (carried from 0655a84) | web-code-qa | plain |" in table and "**Partial table:**" not in table
