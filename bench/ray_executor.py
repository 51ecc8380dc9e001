"""Benchmark: the Ray executor with 2 workers vs 1 on independent proxy runs (goal: >= 1.7x).

    .venv/bin/python bench/ray_executor.py            # 4 runs, L2 d64 T64 BPE-512 proxy, 1 thread per run

Builds a token store from the fixture corpus, then trains the same set of independent runs (other
seeds, same budget) twice through `RayExecutor` on a private local cluster: with 1 worker, then with
2 (each run a task with num_cpus=1 and 1 torch thread). Timed: from the first submission to the last
result, after a warm-up that starts the workers and imports torch in them; Ray start-up is reported
apart. Prints a markdown section and writes it to bench/results/ray_executor.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from _common import machine, write_section

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "corpus"
RESULTS = ROOT / "bench" / "results" / "ray_executor.md"
DOMAINS = ("web", "code", "books")


def timed_pass(store, proxy, workers: int, runs: int, budget: int, root: Path) -> dict:
    """Start a local cluster of ``workers`` slots, warm it up, then time ``runs`` independent runs."""
    import ray

    from autoscale.experiment.executors import RunJob
    from autoscale.experiment.executors.ray import RayExecutor

    t0 = time.perf_counter()
    executor = RayExecutor(store.path, proxy, workers=workers, num_cpus=1)
    started = time.perf_counter() - t0
    try:
        def jobs(tag: str, n: int, tokens: int) -> list[RunJob]:
            share = {d: tokens // len(DOMAINS) for d in DOMAINS}
            return [RunJob(f"{tag}{i}", f"{tag} {i}", share, i, root / f"w{workers}-{tag}{i}") for i in range(n)]

        def noop(*_):
            return None

        list(executor.execute(jobs("warmup", workers, 2048), noop, noop))  # workers up, torch imported
        t1 = time.perf_counter()
        outcomes = list(executor.execute(jobs("run", runs, budget), noop, noop))
        wall = time.perf_counter() - t1
    finally:
        executor.close()
    assert not ray.is_initialized()
    failed = [o.error for o in outcomes if o.status != "completed"]
    if failed:
        raise SystemExit(f"a benchmark run failed: {failed[0]}")
    tokens = sum(sum(o.metrics["tokens_per_domain"].values()) for o in outcomes)
    return {"workers": workers, "wall": wall, "start": started, "tokens": tokens,
            "per_run": sorted(o.wall_time_s for o in outcomes)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4, help="independent runs per pass (default 4)")
    parser.add_argument("--budget", type=int, default=120_000, help="training tokens per run (default 120000)")
    args = parser.parse_args(argv)

    from autoscale.data import prepare_store
    from autoscale.train.config import ProxyConfig

    proxy = ProxyConfig.from_dict({
        "model": {"n_layer": 2, "d_model": 64, "n_head": 2, "seq_len": 64},
        "train": {"batch_size": 8, "lr": 3e-3},
        "eval": {"points": 2, "max_tokens": 2048},
    })
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        root = Path(tmp)
        store = prepare_store({d: FIXTURE / f"{d}.jsonl" for d in DOMAINS}, root / "store", vocab_size=512,
                              val_tokens=2048)
        one = timed_pass(store, proxy, 1, args.runs, args.budget, root)
        two = timed_pass(store, proxy, 2, args.runs, args.budget, root)
    load_after = os.getloadavg()
    speedup = one["wall"] / two["wall"]

    command = " ".join([".venv/bin/python", "bench/ray_executor.py", *map(shlex.quote, argv or sys.argv[1:])])
    rows = "\n".join(
        f"| {p['workers']} | {p['wall']:.1f} | {p['tokens'] / p['wall']:,.0f} | "
        f"{', '.join(f'{w:.1f}' for w in p['per_run'])} | {p['start']:.1f} |"
        for p in (one, two)
    )
    text = f"""## Ray executor: 2 workers vs 1 on independent runs

Command: `{command}`
Machine: {machine('torch', 'ray')}
Load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; after: {', '.join(f'{x:.2f}' for x in load_after)}

{args.runs} independent runs of {args.budget:,} tokens each (seeds 0..{args.runs - 1}, uniform over {', '.join(DOMAINS)}),
proxy L2 d64 h2 T64, BPE vocabulary 512, batch 8; each run is a Ray task with num_cpus=1 and 1 torch thread.
Timed from the first submission to the last result, after a warm-up (workers started, torch imported).

| workers | wall (s) | aggregate tokens/s | per-run wall (s) | Ray start (s) |
|---|---|---|---|---|
{rows}

**Speed-up of 2 workers over 1: {speedup:.2f}x** (goal >= 1.7x).
"""
    write_section(RESULTS, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
