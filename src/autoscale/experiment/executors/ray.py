"""The Ray executor: each run a Ray task, on a local cluster or an existing one.

Local (no ``address``): ``ray.init`` starts a private cluster sized to ``workers * num_cpus`` CPUs
on 127.0.0.1: every Ray server (GCS, raylet, object manager, agents, the workers' and the driver's
gRPC servers, the dashboard when asked) listens on loopback only; driver log forwarding is off so
the progress display stays readable. Existing cluster: ``address`` (``auto``, ``host:port`` or
``ray://host:10001``), started by you with ``ray start`` on the interfaces you choose; the run
directories must then be on a filesystem the workers share, or interrupted runs restart from
scratch (finished ones still come back through Ray).

Each task asks for ``num_cpus``/``num_gpus`` and trains with ``num_cpus`` torch threads, so tasks
do not oversubscribe the cores. At most ``workers`` tasks are in flight, so the run store's
``running`` means running, not queued.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from autoscale.errors import AutoscaleError
from autoscale.experiment.executors import (
    OnProgress,
    OnStart,
    RunJob,
    RunOutcome,
    RunProgress,
    one_line,
    read_progress,
    write_progress,
)
from autoscale.train.config import ProxyConfig

POLL_S = 0.25  # how often the driver looks at finished tasks and progress files
PROGRESS_EVERY_S = 1.0  # how often a task writes its progress file
LOOPBACK = "127.0.0.1"


def _ray_train(job: RunJob, store_path: str, proxy: dict[str, Any], threads: int) -> RunOutcome:
    """Body of one Ray task (module level, so Ray pickles it by reference)."""
    from autoscale.experiment.executors.inline import train_job

    config = ProxyConfig.model_validate(proxy).replace(train={"threads": threads})
    last = [0.0]

    def on_progress(p: RunProgress) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            write_progress(job.run_dir, p)

    return train_job(job, store_path, config, on_progress)


def _init_on_loopback(ray: Any, **options: Any) -> None:
    """``ray.init`` of a local cluster whose node address is 127.0.0.1; AutoscaleError if Ray put it
    elsewhere (then nothing is left running).

    Ray binds its servers to loopback only when the node address is 127.0.0.1, but on Linux it
    replaces that address with the machine's own (the one other nodes would reach) unless
    multi-node clusters are off, which is what ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` means. Ray
    reads that variable once, at import, so its flag is turned off here for this call only.
    """
    try:
        from ray._private import ray_constants  # private, hence the check below
    except ImportError:
        ray_constants = None
    saved = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    if saved is not None:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:  # "local": a new cluster, never one found through RAY_ADDRESS or an earlier `ray start`
        ray.init(address="local", _node_ip_address=LOOPBACK, **options)
    finally:
        if saved is not None:
            ray_constants.ENABLE_RAY_CLUSTER = saved
    node = ray.util.get_node_ip_address()
    if node != LOOPBACK:
        ray.shutdown()
        raise AutoscaleError(f"Ray put its servers on {node}, not {LOOPBACK}, so they would be reachable from "
                             "other machines; start a cluster yourself (ray start) and give executor.address")


class RayExecutor:
    """Runs on Ray; see the module docstring."""

    name = "ray"

    def __init__(
        self, store_path: Path | None, proxy: ProxyConfig, *, workers: int | None = None, num_cpus: float = 1,
        num_gpus: float = 0, address: str | None = None, dashboard: bool = False,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise AutoscaleError("executor kind 'ray' needs Ray: pip install 'autoscale[ray]'") from None
        if store_path is None:
            raise AutoscaleError("the ray executor needs data.store")
        self._ray = ray
        self.store_path = str(store_path)
        self.proxy = proxy.model_dump(mode="json")
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.threads = max(1, int(num_cpus))
        self._owns = False
        if not ray.is_initialized():
            common = {"include_dashboard": dashboard, "log_to_driver": False, "configure_logging": False}
            try:
                if address:
                    ray.init(address=address, **common)
                else:
                    slots = workers or max(1, int((os.cpu_count() or 1) // num_cpus))
                    _init_on_loopback(ray, num_cpus=math.ceil(slots * num_cpus), num_gpus=None if num_gpus else 0,
                                      dashboard_host=LOOPBACK, **common)
            except Exception as exc:  # connection refused, bad address...
                where = address or "a local cluster"
                raise AutoscaleError(f"cannot start Ray on {where}: {one_line(exc)}") from None
            self._owns = True
        cpus = float(ray.cluster_resources().get("CPU", 1))
        self.slots = workers or max(1, int(cpus // num_cpus))

    def execute(self, jobs: Sequence[RunJob], on_start: OnStart, on_progress: OnProgress) -> Iterator[RunOutcome]:
        ray = self._ray
        task = ray.remote(_ray_train).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=0)
        queue = list(jobs)
        inflight: dict[Any, tuple[RunJob, float]] = {}
        try:
            while queue or inflight:
                while queue and len(inflight) < self.slots:
                    job = queue.pop(0)
                    job.run_dir.mkdir(parents=True, exist_ok=True)
                    (job.run_dir / "progress.json").unlink(missing_ok=True)
                    on_start(job)
                    ref = task.remote(job, self.store_path, self.proxy, self.threads)
                    inflight[ref] = (job, time.perf_counter())
                done, _ = ray.wait(list(inflight), num_returns=1, timeout=POLL_S)
                for job, _ in inflight.values():
                    progress = read_progress(job)
                    if progress is not None:
                        on_progress(progress)
                for ref in done:
                    job, t0 = inflight.pop(ref)
                    yield self._result(ref, job, time.perf_counter() - t0)
        finally:
            for ref in inflight:
                ray.cancel(ref, force=True)  # the checkpoint stays: the run resumes next time

    def _result(self, ref: Any, job: RunJob, wall: float) -> RunOutcome:
        try:
            outcome: RunOutcome = self._ray.get(ref)
        except self._ray.exceptions.RayTaskError as exc:
            return RunOutcome(job.key, "failed", None, one_line(exc.cause or exc), wall)
        except Exception as exc:  # the worker died (OOM, killed), the node left...
            return RunOutcome(job.key, "failed", None, f"Ray task lost: {one_line(exc)}", wall)
        if outcome.metrics is not None and not (job.run_dir / "metrics.json").exists():
            # a worker without our filesystem: keep the result here too
            from autoscale.train.metrics import RunMetrics, write_metrics

            write_metrics(RunMetrics.from_dict(outcome.metrics), job.run_dir / "metrics.json")
        return outcome

    def close(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
