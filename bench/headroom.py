"""Headroom at the target: how much the best mixture a DDO search can find AT the target beats uniform,
per candidate objective, measured before any mixing method runs (the benchmark of record, version 2,
chooses its objective and budgets from this table).

    .venv/bin/python bench/headroom.py                  # resumable; rerun the same command after a stop
    .venv/bin/python bench/headroom.py --report-only    # tabulate what has finished
    .venv/bin/python bench/headroom.py --dir DIR        # another workspace (default ~/autoscale-headroom)

Design (fixed here, before any run; nothing below depends on any method's result):
- The demo corpus (`autoscale data fetch-demo`), all 7 domains, byte-level tokens, the proxy the
  signal-to-noise study chose (bytes L2 d64, batch 8 x 128, lr 3e-3 cosine), coupled sampler.
- Target N3 = 8.19M tokens: 8x the larger search budget (1.024M) the record would search at.
- Corpora (`CORPORA`): ``full`` (every domain as fetched) and ``small-targets`` (web, code and qa cut
  to 1 MB of text, about 1M byte tokens each, so that a target weighting them repeats them at N3,
  the others as fetched: the case where the optimum should move towards the auxiliary sources).
- Objectives (`OBJECTIVES`), each as a user would set ``objective.weights``: ``all-7`` (equal weight
  on every domain, the paper's) and ``web-code-qa`` (equal weight on web, code and qa; the other
  four domains are auxiliary sources). ``all-7`` on the full corpus, ``web-code-qa`` on both.
- The oracle: the DDO design (uniform base, x0.2 and x3 of each domain) trained at N3 with 2
  replicates (seeds 0, 1), fitted per objective, its optimum at N3 (floors 0.2/m, caps 4 epochs).
  Two fits: ``noise-aware`` (the replicates as they are: domains whose effects do not stand out are
  held at the base share, as the record's oracle was) and ``plain`` (each design point the mean of
  its replicates, one run per point: only the monotonicity rule holds a domain). Holding is a
  safety rule of a search, and can pin an oracle to uniform; the plain fit says what the mixture
  could win. One set of runs per corpus serves every objective on it.
- Headroom: the oracle mixture and uniform trained at N3 with validation seeds 100, 101, 102; the
  gain 1 - objective(oracle, s) / objective(uniform, s) per seed, mean and t 95% interval.
Cost: per corpus 2 x (2m + 2.2) = 32.4 target runs for the oracle, plus 3 uniform runs and 3 per
distinct oracle mixture: at most 47 runs of 8.19M tokens for the full corpus, 41 for small-targets
(about 3.5 hours on 2 cores at ~60k tokens/s; resumable across sessions).

Writes bench/results/headroom.md.
"""

from __future__ import annotations

import argparse
import datetime
import time
from pathlib import Path

import numpy as np
from _common import bench_command, machine, write_section

from autoscale.data import TokenStore, prepare_store
from autoscale.data.demo import default_data_dir, fetch_demo
from autoscale.ddo.fit import fit_ddo
from autoscale.ddo.plan import plan_ddo
from autoscale.ddo.runs import RunsTable
from autoscale.gain import paired_gain
from autoscale.recipes.demo import slice_corpus
from autoscale.train import ProxyConfig, train_run

RESULTS = Path(__file__).resolve().parent / "results" / "headroom.md"
DOMAINS = ("web", "news", "code", "books", "encyclopedia", "technical", "qa")
TARGET = 8_192_000
ORACLE_SEEDS = (0, 1)
VALIDATION_SEEDS = (100, 101, 102)
MAX_EPOCHS = 4.0
VAL_TOKENS = 16_384
MODEL = {"kind": "decoder", "n_layer": 2, "d_model": 64, "n_head": 2, "seq_len": 128}
TRAIN = {"batch_size": 8, "lr": 3.0e-3, "warmup": 0.05, "schedule": "cosine", "threads": 2, "device": "cpu"}
#: corpus name -> MB of text kept per domain (None: as fetched)
CORPORA = {"full": {}, "small-targets": {"web": 1.0, "code": 1.0, "qa": 1.0}}
#: objective name -> (corpora it is measured on, objective.weights)
OBJECTIVES = {
    "all-7": (("full",), {d: 1.0 for d in DOMAINS}),
    "web-code-qa": (("full", "small-targets"), {"web": 1.0, "code": 1.0, "qa": 1.0}),
}


def proxy(seed: int) -> ProxyConfig:
    return ProxyConfig.from_dict({"model": MODEL, "train": {**TRAIN, "seed": seed},
                                  "eval": {"points": 1, "max_tokens": None}})


def corpus(out: Path, name: str, say) -> Path:
    """The corpus folder of ``name``: the demo corpus with its cuts."""
    demo = fetch_demo(default_data_dir() / "demo", progress=say)
    folder = out / "corpus" / name
    for d in DOMAINS:  # each domain cut to its MB, or copied whole (1e6 MB)
        slice_corpus(demo.dir, folder, [d], CORPORA[name].get(d, 1e6))
    return folder


def run(store, tokens, seed: int, run_dir: Path, say, train: bool) -> dict | None:
    """Per-domain final perplexity of one run (trained unless ``train`` is False and it is missing)."""
    from autoscale.train.metrics import read_metrics

    if (run_dir / "metrics.json").exists():
        final = read_metrics(run_dir / "metrics.json").final
    elif not train:
        return None
    else:
        metrics = train_run(store, tokens, proxy(seed), run_dir)
        if metrics.status != "completed":
            raise SystemExit(f"{run_dir}: run {metrics.status}")
        say(f"{run_dir.relative_to(run_dir.parents[2])}: {metrics.wall_time_s:.0f} s")
        final = metrics.final
    return {d: final[d].perplexity for d in DOMAINS}


def averaged(table: RunsTable) -> RunsTable:
    """One row per design point: the mean of its replicates' evaluations, no seed column."""
    names = list(dict.fromkeys(table.runs))
    rows = [[i for i, r in enumerate(table.runs) if r == n] for n in names]
    return RunsTable(tuple(names), table.domains, table.tokens[[r[0] for r in rows]], table.eval_names,
                     np.array([table.evals[r].mean(axis=0) for r in rows]))


def objective(evals: dict, weights: dict) -> float:
    return float(sum(w * evals[d] for d, w in weights.items()) / sum(weights.values()))


def study(out: Path, say, train: bool = True) -> list[dict]:
    rows = []
    for name in CORPORA:
        if train:
            folder = corpus(out, name, say)
            store = prepare_store({d: folder / f"{d}.jsonl" for d in DOMAINS}, out / f"store-{name}",
                                  vocab_size=257, val_tokens=VAL_TOKENS, progress=say)
        elif (out / f"store-{name}").exists():
            store = TokenStore.open(out / f"store-{name}")
        else:
            continue
        plan = plan_ddo(DOMAINS, budget=TARGET, replicates=len(ORACLE_SEEDS), seed=ORACLE_SEEDS[0])
        evals = []
        for i, (label, seed) in enumerate(zip(plan.runs, plan.seeds, strict=True)):
            tokens = dict(zip(DOMAINS, map(float, plan.tokens[i]), strict=True))
            evals.append(run(store, tokens, int(seed), out / "runs" / name / "oracle" / f"{label}-seed{seed}", say, train))
        if any(e is None for e in evals):
            continue
        table = RunsTable(plan.runs, DOMAINS, plan.tokens, DOMAINS,
                          np.array([[e[d] for d in DOMAINS] for e in evals]), plan.seeds)
        uniform = {d: TARGET / len(DOMAINS) for d in DOMAINS}
        base = {s: run(store, uniform, s, out / "runs" / name / "uniform" / f"seed{s}", say, train)
                for s in VALIDATION_SEEDS}
        caps = {d: MAX_EPOCHS * store.unique_train_tokens(d) for d in DOMAINS}
        mean = averaged(table)
        for obj, (corpora, weights) in OBJECTIVES.items():
            if name not in corpora:
                continue
            for kind, fitted in (("noise-aware", table), ("plain", mean)):
                fit = fit_ddo(fitted, min_ratio=0.2, max_tokens=caps, eval_weights=weights)
                oracle = {d: float(fit.mixture.weights[d]) * TARGET for d in DOMAINS}
                tag = "-".join(f"{round(w / TARGET, 4):g}" for w in oracle.values())  # one run per mixture
                tried = {s: run(store, oracle, s, out / "runs" / name / f"mix-{tag}" / f"seed{s}", say, train)
                         for s in VALIDATION_SEEDS}
                if any(v is None for v in (*tried.values(), *base.values())):
                    continue
                gain = paired_gain("uniform", {s: objective(v, weights) for s, v in tried.items()},
                                   {s: objective(v, weights) for s, v in base.items()})
                rows.append({"corpus": name, "objective": obj, "fit": kind, "gain": gain, "held": sorted(fit.held),
                             "oracle": {d: t / TARGET for d, t in oracle.items()}})
    return rows


def report(rows: list[dict], command: str, elapsed: float) -> str:
    lines = [
        "## Headroom at the target (`bench/headroom.py`)", "",
        f"Command: `{command}`  ", f"Machine: {machine('torch', 'numpy')}  ",
        f"Date: {datetime.date.today().isoformat()}; this invocation {elapsed / 60:.1f} min.", "",
        f"Design (module docstring, fixed before any run): demo corpus, {len(DOMAINS)} domains, bytes L2 d64 proxy; "
        f"oracle = DDO at the target {TARGET:,} tokens with replicates {ORACLE_SEEDS}, fitted per objective; "
        f"oracle vs uniform at the target with seeds {VALIDATION_SEEDS}; gain = 1 - objective(oracle) / "
        "objective(uniform) per seed, mean and t 95% interval.", "",
        "| corpus | objective | fit | oracle weights | held | gain over uniform [95% CI] | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        g = r["gain"]
        ci = f"{g.mean:+.2%} [{g.interval[0]:+.2%}, {g.interval[1]:+.2%}]" if g.interval else f"{g.mean:+.2%}"
        weights = ", ".join(f"{d} {w:.3f}" for d, w in r["oracle"].items())
        lines.append(f"| {r['corpus']} | {r['objective']} | {r['fit']} | {weights} | {', '.join(r['held']) or '-'} | {ci} | "
                     f"{g.verdict} |")
    done = {(r["corpus"], r["objective"]) for r in rows if r["fit"] == "plain"}
    todo = [f"{o} on {c}" for o, (cs, _) in OBJECTIVES.items() for c in cs if (c, o) not in done]
    if todo:
        lines += ["", f"**Partial table:** not yet finished: {', '.join(todo)}. No design is chosen from a partial table."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=str(Path.home() / "autoscale-headroom"), help="workspace (resumable)")
    parser.add_argument("--report-only", action="store_true", help="train nothing: tabulate what has finished")
    args = parser.parse_args()
    started = time.perf_counter()
    out = Path(args.dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = study(out, lambda msg: print(msg, flush=True), train=not args.report_only)
    write_section(RESULTS, report(rows, bench_command("bench/headroom.py"), time.perf_counter() - started))


if __name__ == "__main__":
    main()
