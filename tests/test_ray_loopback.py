"""Ray for real: the local cluster `autoscale run` starts listens on loopback only, and a two-node
cluster (two `ray start` on this machine, standing in for two machines) runs an experiment
through `executor.address`.

Both tests run `autoscale run` in a child process, as a user would, and watch the Ray processes
while the runs train: their listening TCP sockets (from /proc/net/tcp and tcp6) and which node's
workers are training. Linux only (they read /proc).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from autoscale.data.store import prepare_store
from autoscale.experiment.runstore import STORE_FILE, RunStore

pytest.importorskip("ray")
pytestmark = [pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc (Linux)"),
              pytest.mark.timeout(600),
              # never beside another Ray cluster of this suite (test_experiment_pipeline's; tests/conftest.py)
              pytest.mark.xdist_group("ray")]

CORPUS = Path(__file__).parent / "fixtures" / "corpus"
BIN = Path(sys.executable).parent
DOMAINS = ["web", "code"]
TASK_TITLE = "ray::_ray_train"  # the title Ray gives a worker process while it runs our task
RUN_TIMEOUT_S = 240


# --- processes and sockets, from /proc --------------------------------------------------------

def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name, in parentheses, may hold spaces
            children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def _address(hex_ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_ip)  # host byte order per 32-bit word (little-endian here)
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(raw)
    if ip.version == 6 and ip.ipv4_mapped:  # an IPv6 socket bound to an IPv4 address: ::ffff:a.b.c.d
        return ip.ipv4_mapped
    return ip


def listening(pids: list[int]) -> list[tuple[int, str, ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
    """(pid, process title, address, port) of every TCP socket in LISTEN state that ``pids`` hold."""
    owner: dict[str, int] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                owner[target[8:-1]] = pid
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in owner:  # 0A: LISTEN
                hex_ip, hex_port = fields[1].split(":")
                pid = owner[fields[9]]
                found.append((pid, title(pid), _address(hex_ip), int(hex_port, 16)))
    return found


def kill_tree(root: int) -> None:
    """SIGKILL ``root`` and its descendants (the processes this test started), by id."""
    for pid in reversed(process_tree(root)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def watch(proc: subprocess.Popen, look: Callable[[], None], timeout_s: float) -> int:
    """Call ``look`` every 0.2 s until ``proc`` exits; its exit status (killed after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    try:
        while proc.poll() is None:
            if time.monotonic() > deadline:
                pytest.fail(f"still running after {timeout_s} s: {proc.args}")
            look()
            time.sleep(0.2)
        return proc.returncode
    finally:
        kill_tree(proc.pid)
        proc.wait()


# --- a tiny experiment ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ray_store") / "store"
    prepare_store({d: CORPUS / f"{d}.jsonl" for d in DOMAINS}, out, vocab_size=512, val_tokens=1024)
    return out


def write_config(path: Path, store: Path, executor: dict) -> Path:
    """Two budgets of 5 DDO runs each on a 1-layer proxy: under a second a run once a worker is up."""
    path.write_text(yaml.safe_dump({
        "seed": 0,
        "data": {"store": str(store), "domains": DOMAINS},
        "proxy": {
            "model": {"n_layer": 1, "d_model": 32, "n_head": 2, "seq_len": 32},
            "train": {"batch_size": 8, "lr": 1.0e-2, "warmup": 0.1, "threads": 1},
            "eval": {"points": 3, "max_tokens": 512},
        },
        "ddo": {"budgets": [4000, 8000]},
        "target": {"budget": 16000},
        "executor": executor,
    }))
    return path


def autoscale_run(config: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`autoscale run CONFIG` in a child process; its output goes to CONFIG's name + .log."""
    with open(config.with_suffix(".log"), "w") as log:
        return subprocess.Popen([str(BIN / "autoscale"), "run", str(config), "--quiet"], cwd=config.parent,
                                env=env, stdout=log, stderr=subprocess.STDOUT)


def finished_runs(directory: Path) -> list:
    with RunStore(directory / STORE_FILE, readonly=True) as runs:
        return list(runs.runs())


# --- the local cluster ------------------------------------------------------------------------

def test_the_local_cluster_listens_on_loopback_only(store, tmp_path):
    """Every socket the Ray processes listen on during a run (GCS, raylet, object manager, agents,
    the workers' and the driver's gRPC servers) is on 127.0.0.0/8, none on 0.0.0.0, :: or the
    machine's own addresses."""
    config = write_config(tmp_path / "local.yaml", store, {"kind": "ray", "workers": 2, "num_cpus": 1})
    proc = autoscale_run(config)
    seen: dict[tuple[str, str, int], int] = {}
    trained = set()

    def look() -> None:
        tree = process_tree(proc.pid)
        trained.update(pid for pid in tree if title(pid) == TASK_TITLE)
        for pid, name, ip, port in listening(tree):
            seen[(name, str(ip), port)] = pid

    rc = watch(proc, look, RUN_TIMEOUT_S)
    assert rc == 0, config.with_suffix(".log").read_text()
    assert len(trained) >= 2  # two workers trained while we looked...
    assert len({pid for pid in seen.values()}) >= 4  # ...and the driver, GCS, raylet and workers listened
    outside = sorted(f"{name} on {ip if ':' not in ip else f'[{ip}]'}:{port}" for (name, ip, port) in seen
                     if not ipaddress.ip_address(ip).is_loopback)
    assert outside == [], "Ray listens outside loopback:\n" + "\n".join(outside)
    assert len(finished_runs(tmp_path / "local")) == 10


# --- two nodes on this machine ----------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def two_nodes(tmp_path) -> Iterator[tuple[str, dict[str, str], subprocess.Popen, subprocess.Popen]]:
    """A head and a second node, each `ray start --block` with 1 CPU and a 100 MB object store.

    Yields (address, env, head, worker). Both are stopped by id afterwards, whatever happened
    (not `ray stop`, which stops every Ray process on the machine). For the nodes of a cluster,
    Ray on Linux replaces `--node-ip-address 127.0.0.1` with the machine's own address
    (ray-project/ray#26293, #59110), so unlike autoscale's local cluster these two may listen
    beyond loopback; the cluster's own token (``RAY_AUTH_MODE=token``) keeps it to this test.
    """
    port = free_port()
    address = f"127.0.0.1:{port}"
    # a short folder: Ray puts Unix sockets in it, and their paths are limited to ~107 characters
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--num-gpus", "0",
              "--object-store-memory", "100000000", "--disable-usage-stats"]
    nodes: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> subprocess.Popen:
        with open(tmp_path / f"{name}.log", "w") as log:
            nodes.append(subprocess.Popen([str(BIN / "ray"), "start", *args, *common], env=env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
        return nodes[-1]

    try:
        head = start("head", "--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir", temp)
        wait_for_nodes(address, env, nodes, tmp_path)
        worker = start("worker", "--address", address)
        wait_for_nodes(address, env, nodes, tmp_path)
        yield address, env, head, worker
    finally:
        for node in reversed(nodes):
            node.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes
        for node in reversed(nodes):
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            kill_tree(node.pid)
            node.wait()
        shutil.rmtree(temp, ignore_errors=True)


def wait_for_nodes(address: str, env: dict[str, str], nodes: list[subprocess.Popen], logs: Path,
                   timeout_s: float = 90) -> None:
    """Wait until the cluster at ``address`` has as many live nodes as ``nodes`` were started."""
    count = len(nodes)
    script = (
        "import sys, time, ray\n"
        f"ray.init(address={address!r}, log_to_driver=False, configure_logging=False)\n"
        f"deadline = time.monotonic() + {timeout_s}\n"
        f"while sum(n['Alive'] for n in ray.nodes()) < {count}:\n"
        "    if time.monotonic() > deadline:\n"
        "        sys.exit(1)\n"
        "    time.sleep(0.5)\n"
    )
    deadline = time.monotonic() + timeout_s
    while True:  # the head may not take connections yet
        try:
            done = subprocess.run([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            done = None
        if done is not None and done.returncode == 0:
            return
        if time.monotonic() > deadline or any(node.poll() is not None for node in nodes):
            node_logs = "\n".join(p.read_text()[-2000:] for p in sorted(logs.glob("*.log")))
            pytest.fail(f"no {count} live Ray nodes at {address}:\n{done.stdout[-2000:] if done else ''}\n"
                        f"{node_logs}")
        time.sleep(1)


def test_two_nodes_on_this_machine_run_an_experiment_through_executor_address(store, tmp_path, two_nodes):
    address, env, head, worker = two_nodes
    config = write_config(tmp_path / "cluster.yaml", store,
                          {"kind": "ray", "address": address, "workers": 2, "num_cpus": 1})
    proc = autoscale_run(config, env)
    trained = {"head": set(), "worker": set()}

    def look() -> None:
        for name, node in (("head", head), ("worker", worker)):
            trained[name].update(pid for pid in process_tree(node.pid) if title(pid) == TASK_TITLE)

    rc = watch(proc, look, RUN_TIMEOUT_S)
    assert rc == 0, config.with_suffix(".log").read_text()
    # each node has 1 CPU and each run asks for 1: two at once means one on each machine
    assert trained["head"] and trained["worker"], trained
    runs = finished_runs(tmp_path / "cluster")
    assert len(runs) == 10
    assert all(r.status == "completed" and r.attempts == 1 for r in runs)
    assert (tmp_path / "cluster" / "autoscale_target.json").exists()
