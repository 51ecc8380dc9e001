"""Benchmark: mixture-sampler throughput (goal > 1M tokens/s), optionally demo corpus build times.

    .venv/bin/python bench/sampler.py                # sampler on a store built from the fixture corpus
    .venv/bin/python bench/sampler.py --with-demo    # also: fetch-demo fresh + cached, prepare (network)

Prints a markdown section and writes it to bench/results/sampler.md.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine

from autoscale.data import MixtureSampler, TokenStore, prepare_store

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "corpus"
RESULTS = ROOT / "bench" / "results" / "sampler.md"


def _python() -> str:
    exe = Path(sys.executable)
    return str(exe.relative_to(ROOT)) if exe.is_relative_to(ROOT) else exe.name


def sampler_throughput(store: TokenStore, seq_len: int, batch_size: int, tokens_per_domain: float) -> dict:
    """Best of 3 passes over a uniform mixture; tokens/s counts the seq_len predicted tokens per row."""
    best = None
    for _ in range(3):
        t0 = time.perf_counter()
        sampler = MixtureSampler(store, {d: tokens_per_domain for d in store.domains}, seq_len, seed=0)
        t1 = time.perf_counter()
        n = sum(batch.shape[0] for batch in sampler.batches(batch_size)) * seq_len
        t2 = time.perf_counter()
        run = {
            "seq_len": seq_len,
            "batch": batch_size,
            "tokens": n,
            "init_s": t1 - t0,
            "tok_s": n / (t2 - t1),
        }
        best = run if best is None or run["tok_s"] > best["tok_s"] else best
    return best


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--with-demo", action="store_true", help="also time fetch-demo and prepare (downloads)"
    )
    args = parser.parse_args()
    lines = [
        "## Data: mixture sampler and demo corpus",
        "",
        f"Command: `{' '.join(shlex.quote(a) for a in [_python(), 'bench/sampler.py', *sys.argv[1:]])}`  ",
        f"Machine: {machine('numpy')}",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = []
        store = prepare_store(
            {p.stem: p for p in sorted(FIXTURE.glob("*.jsonl"))}, tmp / "fixture", vocab_size=512
        )
        rows += [
            ("fixture (5 domains, vocab 512)", sampler_throughput(store, s, 32, 2e6)) for s in (128, 512)
        ]
        if args.with_demo:
            cli = str(Path(sys.executable).with_name("autoscale"))
            demo = tmp / "demo"
            fresh = timed([cli, "data", "fetch-demo", "--dir", str(demo)])
            cached = timed([cli, "data", "fetch-demo", "--dir", str(demo)])
            prep = timed([cli, "data", "prepare", str(tmp / "demo-store"), "--demo", "--demo-dir", str(demo)])
            lines += [
                "| step | command | wall time |",
                "|---|---|---|",
                f"| fetch-demo, fresh (downloads included) | `autoscale data fetch-demo --dir DIR` | {fresh:.1f} s (goal < 180 s) |",
                f"| fetch-demo, cached | same again | {cached:.2f} s (goal < 2 s) |",
                f"| prepare: BPE 8192 + 7-domain store, 2 workers | `autoscale data prepare STORE --demo --demo-dir DIR` | {prep:.1f} s (goal < 120 s) |",
                "",
            ]
            store = TokenStore.open(tmp / "demo-store")
            rows += [
                ("demo (7 domains, vocab 8192)", sampler_throughput(store, s, 32, 4e6)) for s in (128, 512)
            ]
        lines += [
            "| store | seq_len | batch | tokens | sampler setup | throughput (goal > 1M tokens/s) |",
            "|---|---|---|---|---|---|",
        ]
        for name, r in rows:
            lines.append(
                f"| {name} | {r['seq_len']} | {r['batch']} | {r['tokens']:,} | {r['init_s'] * 1e3:.1f} ms "
                f"| {r['tok_s'] / 1e6:.1f}M tokens/s |"
            )
        del store
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
