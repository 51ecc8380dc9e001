"""Coupled runs: how much the coupled sampler narrows the seed-to-seed spread of paired DDO differences.

    .venv/bin/python bench/coupling.py                  # 112 real runs on the demo corpus, resumable
    .venv/bin/python bench/coupling.py --dir DIR        # another workspace (default ./autoscale-bench-coupling)

Design (fixed here, before any run): the demo corpus (`autoscale demo`'s cache) restricted to
`DOMAINS`, byte-level tokens (vocabulary 257, as the demo) in a store with `VAL_TOKENS` validation
tokens per domain; the demo's proxy (``DEFAULT.model``, ``DEFAULT.train``; 2 torch threads, CPU).
Per seed 0..7 and sampler order (coupled, shuffled): a uniform base of `BASE_TOKENS` training
tokens and the DDO perturbations x0.2 and x3 of each domain (the others unchanged): 7 runs, 112 in
all. Only the final evaluation counts (``eval.points`` 1, `EVAL_TOKENS` validation tokens per
domain); a run's objective is the mean over the 3 domains of its validation perplexity.

For seed s and perturbation p, the paired relative difference is d = obj(p, s) / obj(base, s) - 1.
Its spread: the SD over seeds of d per perturbation, pooled over the 6 perturbations as the root
mean square of the SDs. "Independent" pairs each shuffled perturbed run of seed s with the shuffled
base of seed (s + 1) % 8 (another seed: what unpaired runs would give; no extra training). The
interval on the coupled / shuffled ratio is a 95% percentile bootstrap over seeds (resampled with
replacement, the same seeds for both orders, `BOOTSTRAP` draws, fixed rng seed).

Runs go to DIR/runs/<order>/seed<s>/<run>; a finished run (its metrics.json) is never retrained, so
an interrupted bench resumes by running the same command. Writes bench/results/coupling.md.
On a machine shared with other busy processes, ``OMP_WAIT_POLICY=PASSIVE`` keeps torch's two
threads from spinning against them (tens of times faster there; the same numbers, the thread count
being unchanged); the command line in the results shows it when set.
"""

from __future__ import annotations

import argparse
import datetime
import time
from pathlib import Path

import numpy as np
from _common import bench_command, ddo_run_names, ddo_run_tokens, demo_workspace, machine, write_section

from autoscale.data import prepare_store
from autoscale.recipes.demo import DEFAULT
from autoscale.train import ProxyConfig, train_run

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "coupling.md"

DOMAINS = ("web", "code", "books")
BASE_TOKENS = 256_000  # training tokens of the uniform base run
RATIOS = (0.2, 3.0)
SEEDS = tuple(range(8))
ORDERS = ("coupled", "shuffled")
EVAL_TOKENS = 16_384  # validation tokens per domain, final evaluation only
VAL_TOKENS = 16_384  # the store's validation split per domain (whole documents, at least this)
THREADS = 2
BOOTSTRAP = 2000
BOOTSTRAP_SEED = 0


def run_names() -> list[str]:
    return ddo_run_names(DOMAINS, RATIOS)


def mixture(name: str) -> dict[str, float]:
    return ddo_run_tokens(name, DOMAINS, BASE_TOKENS)


def proxy(order: str, seed: int) -> ProxyConfig:
    return ProxyConfig.from_dict({
        "model": dict(DEFAULT.model),
        "train": {**DEFAULT.train, "seed": seed, "sampler": order, "threads": THREADS, "device": "cpu"},
        "eval": {"points": 1, "max_tokens": EVAL_TOKENS, "domains": list(DOMAINS)},
    })


def objective(metrics) -> float:
    return float(np.mean([metrics.final[d].perplexity for d in DOMAINS]))


def train_all(store, runs: Path, say) -> tuple[dict, dict, int]:
    """obj[order][seed][run]; timing (wall time summed over all runs, their tokens/s); runs trained now."""
    obj: dict = {o: {s: {} for s in SEEDS} for o in ORDERS}
    wall, rates, fresh, total = 0.0, [], 0, len(ORDERS) * len(SEEDS) * len(run_names())
    for seed in SEEDS:  # seeds outermost: an interrupted bench already has whole seeds of both orders
        for order in ORDERS:
            for name in run_names():
                run_dir = runs / order / f"seed{seed}" / name
                done = (run_dir / "metrics.json").exists()
                t0 = time.perf_counter()
                metrics = train_run(store, mixture(name), proxy(order, seed), run_dir)
                if metrics.status != "completed":
                    raise SystemExit(f"{run_dir}: run {metrics.status}")
                obj[order][seed][name] = objective(metrics)
                wall += float(metrics.wall_time_s or 0.0)
                rates.append(float(metrics.tokens_per_s or 0.0))
                if not done:
                    fresh += 1
                    n = sum(len(v) for o in obj.values() for v in o.values())
                    say(f"[{n}/{total}] {order} seed {seed} {name}: objective {obj[order][seed][name]:.4f} "
                        f"({time.perf_counter() - t0:.1f} s)")
    tokens = len(SEEDS) * len(ORDERS) * sum(sum(mixture(n).values()) for n in run_names())
    return obj, {"wall": wall, "rate": float(np.median(rates)), "best": max(rates), "tokens": tokens}, fresh


def differences(obj: dict, order: str, base_seed=lambda s: s) -> np.ndarray:
    """d[p, s] = obj(p, s) / obj(base, base_seed(s)) - 1 for the perturbations p (rows) and seeds."""
    perturbed = run_names()[1:]
    return np.array([[obj[order][s][p] / obj[order][base_seed(s)]["base"] - 1 for s in SEEDS] for p in perturbed])


def pooled_sd(d: np.ndarray) -> float:
    """Root mean square over perturbations of the SD over seeds (columns)."""
    return float(np.sqrt(np.mean(np.var(d, axis=1, ddof=1))))


def bootstrap_ratio(num: np.ndarray, den: np.ndarray) -> tuple[float, float, int]:
    """95% percentile interval of pooled_sd(num) / pooled_sd(den) with seeds (columns) resampled
    together; draws where the denominator is 0 (every seed the same) are dropped and counted."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    n = num.shape[1]
    ratios = []
    for _ in range(BOOTSTRAP):
        idx = rng.integers(0, n, n)
        den_sd = pooled_sd(den[:, idx])
        if den_sd > 0:
            ratios.append(pooled_sd(num[:, idx]) / den_sd)
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(lo), float(hi), BOOTSTRAP - len(ratios)


def report(obj: dict, timing: dict, wall: float, fresh: int, load: tuple[str, str], command: str) -> str:
    d = {o: differences(obj, o) for o in ORDERS}
    d["independent"] = differences(obj, "shuffled", base_seed=lambda s: SEEDS[(SEEDS.index(s) + 1) % len(SEEDS)])
    pooled = {k: pooled_sd(v) for k, v in d.items()}
    ratio = pooled["coupled"] / pooled["shuffled"]
    lo, hi, dropped = bootstrap_ratio(d["coupled"], d["shuffled"])
    ilo, ihi, idropped = bootstrap_ratio(d["coupled"], d["independent"])
    base = {o: np.array([obj[o][s]["base"] for s in SEEDS]) for o in ORDERS}
    m = DEFAULT.model
    lines = [
        "## Coupled runs: spread of paired DDO differences, coupled vs shuffled sampler",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine('torch', 'numpy')}  ",
        f"Date: {datetime.date.today().isoformat()}",
        "",
        f"Design: demo corpus, domains {', '.join(DOMAINS)}; byte-level store (vocabulary {DEFAULT.vocab_size}); "
        f"the demo's proxy (decoder, {m['n_layer']} layers, d_model {m['d_model']}, {m['n_head']} heads, "
        f"seq_len {m['seq_len']}, batch {DEFAULT.train['batch_size']}, lr {DEFAULT.train['lr']:g} "
        f"{DEFAULT.train['schedule']}), {THREADS} torch threads on CPU. Per seed ({len(SEEDS)} seeds) and sampler "
        f"order: a uniform base of {BASE_TOKENS:,} training tokens and x{RATIOS[0]:g}, x{RATIOS[1]:g} of each "
        f"domain ({len(run_names())} runs), {len(run_names()) * len(SEEDS) * len(ORDERS)} runs in all. Objective: mean "
        f"over the {len(DOMAINS)} domains of the final validation perplexity ({EVAL_TOKENS:,} tokens per domain). "
        "Paired difference d = obj(p, s) / obj(base, s) - 1; spread = SD over seeds of d, pooled over the "
        f"{len(run_names()) - 1} perturbations as the RMS of the SDs. Independent: shuffled runs, perturbed seed s "
        f"against base seed s + 1 (mod {len(SEEDS)}). Interval: 95% bootstrap over seeds ({BOOTSTRAP} draws).",
        "",
        "| pairing | pooled SD of d | vs shuffled | vs independent |",
        "|---|---|---|---|",
        f"| coupled (same seed) | {pooled['coupled']:.5f} | {ratio:.2f} [{lo:.2f}, {hi:.2f}] "
        f"| {pooled['coupled'] / pooled['independent']:.2f} [{ilo:.2f}, {ihi:.2f}] |",
        f"| shuffled (same seed) | {pooled['shuffled']:.5f} | 1 | {pooled['shuffled'] / pooled['independent']:.2f} |",
        f"| independent (other seed) | {pooled['independent']:.5f} | | 1 |",
        "",
        "Reading: " + ("the coupled sampler narrows the spread (the interval on coupled / shuffled lies below 1)."
                       if hi < 1 else "no reduction by the coupled sampler is detectable at this number of seeds "
                       "(the interval on coupled / shuffled includes 1).")
        + (" Pairing runs by seed does narrow it (coupled / independent below 1)." if ihi < 1 else ""),
        "",
        "| perturbation | coupled mean d | coupled SD | shuffled mean d | shuffled SD | independent SD |",
        "|---|---|---|---|---|---|",
    ]
    for i, p in enumerate(run_names()[1:]):
        c, s, ind = d["coupled"][i], d["shuffled"][i], d["independent"][i]
        lines.append(f"| {p.replace('_', ' ')} | {c.mean():+.4f} | {c.std(ddof=1):.4f} | {s.mean():+.4f} "
                     f"| {s.std(ddof=1):.4f} | {ind.std(ddof=1):.4f} |")
    lines += [
        "",
        "Base objective over seeds (mean perplexity): " + "; ".join(
            f"{o} {base[o].mean():.3f}, SD {base[o].std(ddof=1):.4f} ({base[o].std(ddof=1) / base[o].mean():.2%})"
            for o in ORDERS) + ".  ",
        f"CPU wall time: {timing['wall'] / 60:.1f} min summed over the runs ({timing['tokens'] / 1e6:.1f}M training "
        f"tokens; run throughput median {timing['rate']:,.0f}, best {timing['best']:,.0f} tokens/s: a wide gap means "
        "other processes shared the machine during some runs; the figures above do not depend on it, CPU training "
        f"being deterministic). This invocation: {fresh} runs trained in {wall / 60:.1f} min"
        + (f", load average (1 min) before / after {load[0]} / {load[1]}." if fresh else ", the others reused.")
        + (f" Bootstrap draws dropped (zero spread): {dropped} / {idropped}." if dropped or idropped else ""),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=str(ROOT / "autoscale-bench-coupling"), help="workspace (resumable)")
    args = parser.parse_args()
    command = bench_command("bench/coupling.py")
    started, load_before = time.perf_counter(), _loadavg()

    def say(msg: str) -> None:
        print(msg, flush=True)

    out, source = demo_workspace(args.dir, DOMAINS, say)
    store = prepare_store({d: source / f"{d}.jsonl" for d in DOMAINS}, out / "store",
                          vocab_size=DEFAULT.vocab_size, val_tokens=VAL_TOKENS, progress=say)
    obj, timing, fresh = train_all(store, out / "runs", say)
    load = (load_before, _loadavg())
    write_section(RESULTS, report(obj, timing, time.perf_counter() - started, fresh, load, command))


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "n/a"


if __name__ == "__main__":
    main()
