"""How the suite stays inside its time (`make test`: at most 10 minutes on 2 cores, install included).

The pattern for an end-to-end test (follow it in new ones):

- An end-to-end path is trained once per test run: a module- or session-scoped fixture trains it
  (``quick_demo`` in test_demo.py, ``reference`` in test_experiment_pipeline.py), and each claim
  about it is a separate test that asserts on that fixture's output. Never train the same path
  again in another test to check one more thing.
- Mark a test that trains for more than a minute ``@pytest.mark.slow``: slow tests start first.
- The suite runs on 2 workers (pytest-xdist, ``-n 2 --dist loadgroup``; see the Makefile). Tests
  that share such a fixture carry the same ``@pytest.mark.xdist_group("<name>")`` (a module-level
  ``pytestmark`` when every test of the module shares it), so that one worker trains it once; the
  other worker takes other tests meanwhile. Tests that use one machine-wide resource (a Ray
  cluster) share a group too, so that they never overlap.
- In the simulated world (tests/simworld.py), where the command executor is not what the test is
  about, run the stand-in trainer in-process: the ``simworld_in_process`` fixture, or
  ``with simworld_in_process():`` around the run in a shared fixture (tests/simworld_inprocess.py).
  Tests of the command executor itself (processes, progress, kill, timeouts) keep real processes.
- Each pytest worker computes with one torch thread (two workers on two cores), set here;
  children inherit ``OMP_NUM_THREADS=1`` and ``OMP_THREAD_LIMIT=1`` (which caps a config's
  ``proxy.train.threads`` too).
- Signals: a test that interrupts a child sets the child's SIGINT disposition itself
  (``preexec_fn`` resetting it to SIG_DFL), since a shell that starts pytest in the background
  leaves SIGINT ignored in every child.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per worker: two workers on two cores, not four threads fighting for them. Busy
    # BLAS threads on a busy machine make the many small scipy fits of the method tests crawl.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"  # for children, and for libraries not loaded yet
    # and a cap for children whose config asks for more (the demo's proxy.train.threads is
    # min(2, cores)): threads change no run key and no number a test compares across thread counts
    os.environ["OMP_THREAD_LIMIT"] = "1"
    import threadpoolctl
    import torch

    threadpoolctl.threadpool_limits(1)  # for libraries already loaded (numpy's BLAS, OpenMP)
    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def nothing_left_outside() -> Iterator[None]:
    """After every test of a worker, kills and errors included: no temporary folder of ours (a
    scoring's tasks, a local dataset's cache) that a dead process left, and nothing new in the user's Hugging Face datasets cache (the README
    lists where a run may write outside its experiment folder)."""
    import tempfile
    from pathlib import Path

    from autoscale.data.sources import HF_SCRATCH
    from autoscale.scratch import stale
    from autoscale.train.downstream import TASKS_PREFIX

    cache = Path(os.environ.get("HF_DATASETS_CACHE") or Path.home() / ".cache" / "huggingface" / "datasets")

    def cached() -> set[Path]:
        return set(cache.rglob("*")) if cache.is_dir() else set()

    before = cached()
    yield
    temp = Path(tempfile.gettempdir())
    left = [p.name for prefix in (TASKS_PREFIX, HF_SCRATCH) for p in stale(prefix)]
    assert not left, f"temporary folders of dead processes left in {temp}: {left}"
    assert cached() <= before, f"new files in the user's datasets cache: {sorted(map(str, cached() - before))[:3]}"


@pytest.fixture
def simworld_in_process() -> Iterator[None]:
    """The simulated world's stand-in trainer runs in this process (tests/simworld_inprocess.py)."""
    from simworld_inprocess import simworld_in_process as in_process

    with in_process():
        yield


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first; then ``xdist_group`` made to work.

    ``--dist loadgroup`` on pytest >= 9.2 with pytest-xdist 3.8: xdist marks a grouped test by
    appending ``@<group>`` to ``item._nodeid``, which pytest 9.2 no longer reads (a node's id is
    ``item._id``), so every group is silently spread over the workers and its fixture trained on
    each. Append the suffix where xdist's did not take; a no-op where it did."""
    # the longest tests first (make test passes --no-loadscope-reorder): the two workers start on
    # them and the short ones fill in around them, instead of one long test running on its own at the end
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    if not (os.environ.get("PYTEST_XDIST_WORKER") and getattr(config.option, "loadgroup", False)):
        return
    for item in items:
        groups = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                         for m in item.iter_markers("xdist_group")})
        if not groups or "@" in item.nodeid or not hasattr(item, "_id"):
            continue
        from _pytest.nodeid import NodeId

        item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(groups)}")
