"""Exact KKT allocation speed: m domains with floors and caps, solved by `autoscale.ddo.allocate`.

    .venv/bin/python bench/allocation.py            # m = 10, 100, 1,000, 10,000, 100,000

Each instance draws a_i in [-0.1, 5], b_i in [0.2, 3], floors in [0, 0.5] and caps 0.1-3 above
them, with a budget (0.9 m) that leaves thousands of domains at a floor and at a cap. The time is
the best of several solves (other processes may share the machine); the KKT residual is the
largest relative spread of the free domains' marginal gains, and the budget residual the relative
miss of sum n = total. Goal: m = 10,000 in under 0.1 s. Writes bench/results/allocation.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from _common import machine, write_section

from autoscale.ddo.allocate import allocate

RESULTS = Path(__file__).resolve().parent / "results" / "allocation.md"
GOAL_M, GOAL_S = 10_000, 0.1


def instance(m: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(-0.1, 5.0, m), rng.uniform(0.2, 3.0, m)
    lo = rng.uniform(0.0, 0.5, m)
    hi = lo + rng.uniform(0.1, 3.0, m)
    return a, b, 0.9 * m, lo, hi


def measure(m: int, repeats: int) -> dict:
    a, b, total, lo, hi = instance(m)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        alloc = allocate(a, b, total, lo, hi)
        best = min(best, time.perf_counter() - t0)
    free = ~(alloc.at_floor | alloc.at_cap)
    gain = b[free] * (alloc.n[free] + a[free]) ** (-b[free] - 1)
    return {
        "m": m, "seconds": best, "floor": int(alloc.at_floor.sum()), "cap": int(alloc.at_cap.sum()),
        "kkt": float(np.max(np.abs(gain / alloc.lam - 1))) if free.any() else 0.0,
        "budget": abs(float(alloc.n.sum()) - total) / total,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100,1000,10000,100000", help="comma-separated m")
    ap.add_argument("--repeats", type=int, default=7, help="solves per size (best kept)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    rows = []
    for m in (int(s) for s in args.sizes.split(",")):
        row = measure(m, args.repeats)
        rows.append(row)
        print(f"m={m:>7,}  {row['seconds'] * 1e3:8.2f} ms  floor {row['floor']:>6,}  cap {row['cap']:>6,}  "
              f"KKT {row['kkt']:.1e}  budget {row['budget']:.1e}", flush=True)

    command = ".venv/bin/python bench/allocation.py " + " ".join(sys.argv[1:] if argv is None else argv)
    md = [
        "## Allocation: exact KKT with floors and caps",
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {machine('numpy', 'scipy')}",
        "",
        "Random instances: a in [-0.1, 5], b in [0.2, 3], floors in [0, 0.5], caps 0.1-3 above them, "
        f"budget 0.9 m; best of {args.repeats} solves.",
        "",
        "| domains m | time | at floor | at cap | KKT residual | budget residual |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(f"| {r['m']:,} | {r['seconds'] * 1e3:.2f} ms | {r['floor']:,} | {r['cap']:,} | "
                  f"{r['kkt']:.1e} | {r['budget']:.1e} |")
    goal = next((r for r in rows if r["m"] == GOAL_M), None)
    if goal:
        md += ["", f"Goal (m = {GOAL_M:,} with floors and caps in < {GOAL_S} s): "
               f"{'met' if goal['seconds'] < GOAL_S else 'NOT met'} ({goal['seconds'] * 1e3:.2f} ms)."]
    text = "\n".join(md) + "\n"
    write_section(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
