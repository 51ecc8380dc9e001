"""Files autoscale leaves behind: shareable permissions, no leftovers of killed writers, and a
`status` that reads an experiment folder without writing into it."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from autoscale.atomic import atomic_dir, atomic_open, remove_leftovers, write_text_atomic
from autoscale.data import prepare_store
from autoscale.experiment.runstore import STORE_FILE, RunSpec, RunStore
from autoscale.experiment.status import experiment_status
from autoscale.train.metrics import RunMetrics, write_metrics
from cli_helpers import run_cli
from simworld_inprocess import simworld_in_process

FIXTURE = Path(__file__).parent / "fixtures" / "corpus"
TRAINER = Path(__file__).parent / "fixtures" / "simworld_trainer.py"
SOURCES = {d: FIXTURE / f"{d}.jsonl" for d in ("web", "code")}
SRC = str(Path(__file__).resolve().parent.parent / "src")


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def listing(directory: Path) -> dict[str, tuple[int, int]]:
    """Every name under ``directory`` with its size and mtime (ns)."""
    out = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            st = os.lstat(Path(root) / name)
            out[str((Path(root) / name).relative_to(directory))] = (st.st_size, st.st_mtime_ns)
    return out


def start(script: str) -> subprocess.Popen:
    """Run a Python snippet in a child process; it prints one line once it is where the test wants it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": SRC},
    )
    line = proc.stdout.readline()
    assert line.strip() == "ready", (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


def kill_9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)


# --- permissions -------------------------------------------------------------------------------------


def test_atomic_writes_follow_the_umask_like_open_and_mkdir(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "shared.json", "{}\n")
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "inside.txt").write_text("x")
        os.umask(0o077)
        write_text_atomic(tmp_path / "private.json", "{}\n")
    finally:
        os.umask(old)
    assert mode(tmp_path / "shared.json") == 0o644
    assert mode(tmp_path / "folder") == 0o755
    assert mode(tmp_path / "private.json") == 0o600  # the umask decides, not a fixed mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "private.json", "shared.json"]


# its tests share `experiment`: built once, on one worker (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("test_files")


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    """A finished two-budget experiment (the simulated world's trainer), run under umask 022."""
    root = tmp_path_factory.mktemp("files")
    config = {
        "data": {"domains": ["web", "code", "books"], "fingerprint": "simworld-3"},
        "ddo": {"budgets": [1_000_000, 4_000_000]},
        "target": {"budget": 16_000_000},
        "executor": {
            "kind": "command",
            "command": [sys.executable, str(TRAINER), "--world-seed", "3", "--mixture", "{mixture_json}",
                        "--seed", "{seed}", "--out", "{run_dir}"],
            "workers": 2, "trainer_id": "simworld-v1",
        },
    }
    (root / "exp.yaml").write_text(yaml.safe_dump(config))
    old = os.umask(0o022)
    try:
        with simworld_in_process():
            assert run_cli("run", str(root / "exp.yaml"), "--quiet") == 0
        assert run_cli("report", str(root / "exp"), "--out", str(root / "report")) == 0
        mixture = json.loads((root / "exp" / "autoscale_target.json").read_text())["mixture"]
        (root / "mixture.json").write_text(json.dumps(mixture))
        assert run_cli("export", str(root / "mixture.json"), "--format", "megatron",
                       "--out", str(root / "megatron.txt")) == 0
    finally:
        os.umask(old)
    return root


def test_what_a_run_report_and_export_write_is_readable_by_others(experiment):
    files = [experiment / "report" / "report.html", experiment / "megatron.txt",
             experiment / "exp" / "autoscale_target.json", experiment / "exp" / "autoscale_runs_1000000.csv",
             experiment / "exp" / "autoscale_4000000.json", experiment / "exp" / "experiment.json"]
    assert {str(f.relative_to(experiment)): oct(mode(f)) for f in files} == {
        str(f.relative_to(experiment)): oct(0o644) for f in files}
    assert mode(experiment / "report") == mode(experiment / "exp") == 0o755


def test_metrics_and_store_files_are_readable_by_others(tmp_path, umask_022):
    metrics = RunMetrics.from_dict({"schema_version": 1, "status": "completed",
                                    "final": {"web": {"loss": 3.0, "perplexity": 20.1}}})
    path = write_metrics(metrics, tmp_path / "run" / "metrics.json")
    assert mode(path) == 0o644
    store = prepare_store(SOURCES, tmp_path / "store", vocab_size=512, val_tokens=2048)
    written = [p for p in store.path.rglob("*")]
    assert {p.name for p in written} >= {"manifest.json", "tokenizer.json", "train.bin", "val.bin"}
    assert {str(p.relative_to(tmp_path)): oct(mode(p)) for p in written} == {
        str(p.relative_to(tmp_path)): oct(0o755 if p.is_dir() else 0o644) for p in written}
    assert mode(store.path) == 0o755


# --- leftovers of killed writers ---------------------------------------------------------------------

SLOW_PREPARE = """
    import sys, time
    import autoscale.data.store as store
    real = store._tokenise_domain
    def slow(*args, **kwargs):  # the first domain is written to the temporary folder, then we hang
        entry = real(*args, **kwargs)
        print("ready", flush=True)
        time.sleep(120)
        return entry
    store._tokenise_domain = slow
    store.prepare_store({SOURCES}, {OUT!r}, vocab_size=512, val_tokens=2048, workers=1)
"""


def test_the_next_prepare_removes_what_a_killed_one_left(tmp_path):
    out = tmp_path / "store"
    sources = {d: str(p) for d, p in SOURCES.items()}
    proc = start(SLOW_PREPARE.replace("{SOURCES}", repr(sources)).replace("{OUT!r}", repr(str(out))))
    kill_9(proc)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert any(n.startswith(".store.tmp-") for n in left), left
    building = next(tmp_path.glob(".store.tmp-*"))
    assert (building / "domains" / "web" / "train.bin").stat().st_size > 0  # a real, partial copy

    store = prepare_store(SOURCES, out, vocab_size=512, val_tokens=2048)
    assert store.domains == ("web", "code")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


KILLED_WRITE = """
    import time
    from autoscale.atomic import atomic_open
    with atomic_open({PATH!r}) as fh:
        fh.write("half of a file")
        fh.flush()
        print("ready", flush=True)
        time.sleep(120)
"""


def test_the_next_write_removes_a_killed_writes_temporary_file(tmp_path):
    target = tmp_path / "target.json"
    kill_9(start(KILLED_WRITE.replace("{PATH!r}", repr(str(target)))))
    (tmp_path / ".target.json.k3_x9abc.tmp").write_text("left by an older autoscale (mkstemp's names)")
    (tmp_path / ".other.json.123-0badf00d.tmp").write_text("another target's: not ours to judge here")
    assert len(list(tmp_path.glob(".target.json.*.tmp"))) == 2 and not target.exists()

    write_text_atomic(target, "{}\n")
    assert target.read_text() == "{}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.123-0badf00d.tmp", "target.json"]


LIVE_WRITE = """
    import sys
    from autoscale.atomic import atomic_open
    with atomic_open({PATH!r}) as fh:
        fh.write("theirs")
        print("ready", flush=True)
        sys.stdin.readline()
"""

LIVE_BUILD = """
    import sys
    from autoscale.atomic import atomic_dir
    with atomic_dir({PATH!r}) as tmp:
        (tmp / "data.bin").write_bytes(b"x" * 1000)
        print("ready", flush=True)
        sys.stdin.readline()
"""


def test_a_live_writers_temporary_names_are_never_removed(tmp_path):
    target, folder = tmp_path / "target.json", tmp_path / "store"
    writer = start(LIVE_WRITE.replace("{PATH!r}", repr(str(target))))
    builder = start(LIVE_BUILD.replace("{PATH!r}", repr(str(folder))))
    try:
        theirs = sorted(p.name for p in tmp_path.iterdir())
        assert len(theirs) == 3  # .target.json.<pid>-<hex>.tmp, .store.tmp-<pid>-<hex>, .store.lock-<...>
        write_text_atomic(target, "mine")  # a concurrent write of the same target
        assert remove_leftovers(folder) == [] and remove_leftovers(target) == []
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*theirs, "target.json"])
    finally:
        writer.communicate("go\n", timeout=30)
        builder.communicate("go\n", timeout=30)
    assert writer.returncode == builder.returncode == 0
    assert target.read_text() == "theirs" and (folder / "data.bin").stat().st_size == 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store", "target.json"]


def test_a_failed_write_leaves_the_old_file_and_nothing_else(tmp_path):
    target = tmp_path / "target.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write("new")
            raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "store"):
            raise RuntimeError("bad input")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target.json"] and target.read_text() == "old"


# --- `autoscale status` reads without writing ---------------------------------------------------------


def test_status_leaves_a_finished_experiment_untouched(experiment, capsys):
    directory = experiment / "exp"
    before = listing(directory)
    assert not any(name.endswith(("-wal", "-shm")) for name in before)
    assert run_cli("status", str(directory)) == 0
    assert "no `autoscale run` active" in " ".join(capsys.readouterr().out.split())  # wherever the path wraps it
    assert run_cli("status", str(directory), "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["running_pid"] is None and info["totals"] == {"completed": 14}
    assert listing(directory) == before


ACTIVE_RUN = """
    import sys
    from pathlib import Path
    from autoscale.experiment.runstore import STORE_FILE, RunSpec, RunStore, experiment_lock
    directory = Path({DIR!r})
    spec = RunSpec("data", {}, (("web", 4000), ("code", 800)), 0)
    with experiment_lock(directory), RunStore(directory / STORE_FILE) as store:
        store.register(spec, "ddo 4800", "base")
        store.mark_started(spec.key)
        print("ready", flush=True)
        sys.stdin.readline()
"""


def test_status_during_an_active_run_sees_its_latest_writes(tmp_path):
    RunStore(tmp_path / STORE_FILE).close()  # an experiment whose earlier run closed cleanly
    assert sorted(p.name for p in tmp_path.iterdir()) == [STORE_FILE]
    run = start(ACTIVE_RUN.replace("{DIR!r}", repr(str(tmp_path))))
    try:
        assert (tmp_path / f"{STORE_FILE}-wal").exists()  # the run's writes are in the WAL so far
        info = experiment_status(tmp_path)
        assert info["running_pid"] == run.pid
        assert [(r["stage"], r["status"]) for r in info["runs"]] == [("ddo 4800", "running")]
    finally:
        run.communicate("done\n", timeout=30)
    # the run closed cleanly: the WAL is folded in and status again reads the main file only
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", STORE_FILE]
    info = experiment_status(tmp_path)
    assert info["running_pid"] is None and info["runs"][0]["status"] == "interrupted"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", STORE_FILE]


def test_status_after_a_killed_run_reads_what_is_still_in_the_wal(tmp_path):
    run = start(ACTIVE_RUN.replace("{DIR!r}", repr(str(tmp_path))))
    kill_9(run)
    assert (tmp_path / f"{STORE_FILE}-wal").exists()
    info = experiment_status(tmp_path)
    assert info["running_pid"] is None and [r["status"] for r in info["runs"]] == ["interrupted"]
    with RunStore(tmp_path / STORE_FILE, readonly=True) as store:
        assert not store.immutable and store.get(RunSpec("data", {}, (("web", 4000), ("code", 800)), 0).key)
