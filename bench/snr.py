"""Signal-to-noise study: which proxy setting gives DDO the most signal per CPU-minute.

    .venv/bin/python bench/snr.py                 # resumable; rerun the same command after a stop
    .venv/bin/python bench/snr.py --dir DIR       # another workspace (default ./autoscale-bench-snr)

Design (fixed here, before any run; it compares proxy settings, not mixtures): the demo corpus,
all 7 domains, uniform base. Per proxy setting (`SETTINGS`) and budget (`BUDGETS`): the base run and
the DDO perturbations x0.2 and x3 of `PERTURBED`, with seeds `SEEDS`, coupled sampler (the default:
each seed's runs share initialisation and data order). DDO runs need only their final evaluation
(``eval.points`` 1) on the whole validation split (`VAL_TOKENS` per domain). Objective: mean over the
7 domains of validation perplexity.

Per setting and budget it reports: the run-to-run noise (SD over seeds of the base objective,
relative to its mean), each perturbation's paired effect d = obj(p, s) / obj(base, s) - 1 (mean and
SD over seeds), the pooled SD of d, the signal-to-noise ratio |mean d| / SD(d) (median over
perturbations), and the CPU time of one seed's runs. The figure of merit is **squared SNR per
CPU-minute**: with K replicates the t statistic of an effect is sqrt(K) |d| / SD, so (|d| / SD)^2 per
minute of one replicate is the evidence a CPU-minute buys; the benchmark's design takes the best.
CPU time is the process's CPU seconds (user + system, both torch threads), measured per run.

Writes bench/results/snr.md.
"""

from __future__ import annotations

import argparse
import datetime
import resource
import time
from pathlib import Path

import numpy as np
from _common import (
    STUDY_CORPUS_MB,
    bench_command,
    ddo_run_names,
    ddo_run_tokens,
    demo_workspace,
    machine,
    write_section,
)

from autoscale.data import prepare_store
from autoscale.train import ProxyConfig, train_run

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "snr.md"

DOMAINS = ("web", "news", "code", "books", "encyclopedia", "technical", "qa")
PERTURBED = ("code", "books")
RATIOS = (0.2, 3.0)
SEEDS = (0, 1, 2)
BUDGETS = (256_000, 1_024_000)
VAL_TOKENS = 32_768  # validation split per domain; evaluated whole
CORPUS = None  # --corpus: another folder of <domain>.jsonl (bench/gpu.sh)
THREADS = 2
_TRAIN = {"batch_size": 8, "lr": 3.0e-3, "warmup": 0.05, "schedule": "cosine"}
#: name -> (vocabulary, model); bytes as in the demo, then two BPE settings closer to a real proxy
SETTINGS = {
    "bytes L2 d64": (257, {"kind": "decoder", "n_layer": 2, "d_model": 64, "n_head": 2, "seq_len": 128}),
    "bpe2k L3 d96": (2048, {"kind": "decoder", "n_layer": 3, "d_model": 96, "n_head": 3, "seq_len": 128}),
    "bpe4k L4 d128": (4096, {"kind": "decoder", "n_layer": 4, "d_model": 128, "n_head": 4, "seq_len": 128}),
}


def run_names() -> list[str]:
    return ddo_run_names(PERTURBED, RATIOS)


def mixture(name: str, budget: float) -> dict[str, float]:
    return ddo_run_tokens(name, DOMAINS, budget)


def proxy(model: dict, seed: int, device: str = "cpu") -> ProxyConfig:
    return ProxyConfig.from_dict({
        "model": model,
        "train": {**_TRAIN, "seed": seed, "threads": THREADS, "device": device},
        "eval": {"points": 1, "max_tokens": None},
    })


def study(out: Path, source: Path, say, train: bool = True, device: str = "cpu") -> dict:
    """obj[setting][budget][seed][run] and wall[setting][budget] (CPU seconds of training, all seeds).

    ``train=False`` only reads the runs already finished; a setting and budget with any run missing
    is left out (a partial table while the study is still running).
    """
    from autoscale.train.metrics import read_metrics

    obj: dict = {}
    wall: dict = {}
    for setting, (vocab, model) in SETTINGS.items():
        if not train:
            for budget in BUDGETS:
                dirs = {(seed, name): out / "runs" / setting.replace(" ", "_") / str(budget) / f"seed{seed}" / name
                        for seed in SEEDS for name in run_names()}
                if not all((d / "cpu_seconds.txt").exists() for d in dirs.values()):
                    continue
                cell = obj.setdefault(setting, {}).setdefault(budget, {})
                wall.setdefault(setting, {})[budget] = sum(float((d / "cpu_seconds.txt").read_text())
                                                          for d in dirs.values())
                for (seed, name), d in dirs.items():
                    final = read_metrics(d / "metrics.json").final
                    cell.setdefault(seed, {})[name] = float(np.mean([final[x].perplexity for x in DOMAINS]))
            continue
        store = prepare_store({d: source / f"{d}.jsonl" for d in DOMAINS}, out / f"store-{vocab}",
                              vocab_size=vocab, val_tokens=VAL_TOKENS, progress=say)
        for budget in BUDGETS:
            cell = obj.setdefault(setting, {}).setdefault(budget, {})
            wall.setdefault(setting, {})[budget] = 0.0
            for seed in SEEDS:
                for name in run_names():
                    run_dir = out / "runs" / setting.replace(" ", "_") / str(budget) / f"seed{seed}" / name
                    fresh = not (run_dir / "metrics.json").exists()
                    cpu0 = _cpu_seconds()
                    metrics = train_run(store, mixture(name, budget), proxy(model, seed, device), run_dir)
                    if metrics.status != "completed":
                        raise SystemExit(f"{run_dir}: run {metrics.status}")
                    if fresh:  # CPU seconds (all threads): unlike wall time, not inflated by other processes
                        (run_dir / "cpu_seconds.txt").write_text(f"{_cpu_seconds() - cpu0:.3f}\n")
                    value = float(np.mean([metrics.final[d].perplexity for d in DOMAINS]))
                    cell.setdefault(seed, {})[name] = value
                    wall[setting][budget] += float((run_dir / "cpu_seconds.txt").read_text())
                    if fresh:
                        say(f"{setting} {budget:,} seed {seed} {name}: {value:.4f} ({metrics.wall_time_s:.1f} s)")
    return {"obj": obj, "wall": wall}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def summarise(cell: dict, wall_s: float) -> dict:
    base = np.array([cell[s]["base"] for s in SEEDS])
    d = np.array([[cell[s][p] / cell[s]["base"] - 1 for s in SEEDS] for p in run_names()[1:]])
    sd = d.std(axis=1, ddof=1)
    pooled = float(np.sqrt(np.mean(sd**2)))
    snr = np.abs(d.mean(axis=1)) / pooled
    minutes = wall_s / 60 / len(SEEDS)  # one replicate of the 5 runs
    return {"noise": float(base.std(ddof=1) / base.mean()), "base": float(base.mean()), "d": d,
            "pooled": pooled, "snr": float(np.median(snr)), "minutes": minutes,
            "merit": float(np.median(snr) ** 2 / minutes)}


def report(result: dict, command: str, elapsed: float, partial: bool = False) -> str:
    lines = [
        "## Signal-to-noise study (`bench/snr.py`)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine('torch', 'numpy')}  ",
        f"Date: {datetime.date.today().isoformat()}; this invocation {elapsed / 60:.1f} min.",
        "",
        (f"Corpus `{CORPUS}`" if CORPUS else
         f"Demo corpus as it was when the study ran (every domain cut to {STUDY_CORPUS_MB:g} MB: `bench/_common.py`)") + ", "
        f"{len(DOMAINS)} domains, uniform base; perturbations x{RATIOS[0]:g} and x{RATIOS[1]:g} of "
        f"{' and '.join(PERTURBED)}; seeds {', '.join(map(str, SEEDS))}, coupled sampler; batch "
        f"{_TRAIN['batch_size']} x 128, lr {_TRAIN['lr']:g} cosine; final evaluation on the whole validation split "
        f"({VAL_TOKENS:,} tokens per domain); objective = mean validation perplexity over the {len(DOMAINS)} domains; "
        f"{THREADS} torch threads. d = obj(p, s) / obj(base, s) - 1 (paired within a seed). SNR = |mean d| / pooled "
        "SD of d (median over the 4 perturbations). CPU = process CPU seconds of training (both threads), "
        "which other processes on the machine do not inflate. Merit = SNR^2 per CPU-minute of one replicate "
        "(5 runs).",
        "",
        "| setting | budget | base ppl | noise (SD/mean of base) | pooled SD of d | "
        + " | ".join(f"mean d {p.replace('_', ' ')}" for p in run_names()[1:])
        + " | median SNR | CPU min / replicate | merit |",
        "|---|---|---|---|---|" + "---|" * (len(run_names()) - 1) + "---|---|---|",
    ]
    best = None
    for setting, by_budget in result["obj"].items():
        for budget, cell in by_budget.items():
            s = summarise(cell, result["wall"][setting][budget])
            effects = " | ".join(f"{row.mean():+.4f} ± {row.std(ddof=1):.4f}" for row in s["d"])
            lines.append(f"| {setting} | {budget:,} | {s['base']:.3f} | {s['noise']:.2%} | {s['pooled']:.4f} | "
                         f"{effects} | {s['snr']:.1f} | {s['minutes']:.2f} | {s['merit']:.1f} |")
            if best is None or s["merit"] > best[2]:
                best = (setting, budget, s["merit"])
    assert best is not None
    if partial:
        missing = [f"{s} at {b:,}" for s in SETTINGS for b in BUDGETS if b not in result["obj"].get(s, {})]
        lines += ["", f"**Partial table:** the study is still running; not yet finished: {', '.join(missing)}. "
                  "No design is chosen from a partial table.", ""]
    else:
        lines += ["", f"Most signal per CPU-minute: **{best[0]} at {best[1]:,} tokens** (merit {best[2]:.1f}).", ""]
    return "\n".join(lines)


def main() -> None:
    global SETTINGS, BUDGETS, SEEDS, DOMAINS, VAL_TOKENS, CORPUS  # one row elsewhere narrows the study's design
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=str(ROOT / "autoscale-bench-snr"), help="workspace (resumable)")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: tabulate the settings and budgets whose runs are all finished")
    # one row elsewhere (bench/gpu.sh): a setting, budgets, seeds, a device and a corpus folder of its own
    parser.add_argument("--setting", choices=list(SETTINGS), help="only this proxy setting")
    parser.add_argument("--budgets", help="comma-separated budgets in tokens instead of the study's")
    parser.add_argument("--seeds", help="comma-separated seeds instead of the study's")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (bf16 autocast on cuda)")
    parser.add_argument("--batch-size", type=int, help="sequences per step instead of the study's")
    parser.add_argument("--corpus", help="a folder of <domain>.jsonl (its domains) instead of the 5 MB demo corpus")
    parser.add_argument("--val-tokens", type=int, help="validation tokens per domain instead of the study's")
    parser.add_argument("--out", default=str(RESULTS), help="the markdown section to write")
    args = parser.parse_args()
    command = bench_command("bench/snr.py")
    started = time.perf_counter()

    def say(msg: str) -> None:
        print(msg, flush=True)

    if args.setting:
        SETTINGS = {args.setting: SETTINGS[args.setting]}
    if args.budgets:
        BUDGETS = tuple(int(float(b)) for b in args.budgets.split(","))
    if args.seeds:
        SEEDS = tuple(int(s) for s in args.seeds.split(","))
    if args.batch_size:
        _TRAIN["batch_size"] = args.batch_size
    if args.val_tokens:
        VAL_TOKENS = args.val_tokens
    if args.corpus:
        out, source = Path(args.dir).resolve(), Path(args.corpus).resolve()
        DOMAINS = tuple(sorted(p.name.removesuffix(".jsonl") for p in source.glob("*.jsonl")))
        CORPUS = args.corpus
        out.mkdir(parents=True, exist_ok=True)
    else:
        out, source = demo_workspace(args.dir, DOMAINS, say)
    result = study(out, source, say, train=not args.report_only, device=args.device)
    if not result["obj"]:
        raise SystemExit("no setting has all its runs finished yet")
    partial = sum(len(b) for b in result["obj"].values()) < len(SETTINGS) * len(BUDGETS)
    write_section(Path(args.out), report(result, command, time.perf_counter() - started, partial))


if __name__ == "__main__":
    main()
