"""`autoscale bench`: the benchmark of record, designed by the signal-to-noise study (bench/snr.py).

The question: does the mixture AutoScale predicts beat the obvious ones at the target, by more
than the noise, and how close does it get to the best this method family can find there? The
method's uncertainty lies in its search as much as in the validation run, so the whole method is
repeated. Every part is an ordinary experiment (one folder each, one run store each); rerunning
the command resumes and never retrains a finished run.

1. **Searches** ``search-1`` .. ``search-S``: noise-aware DDO (K replicates, coupled runs) at N1 and
   N2 and the AutoScale law to the target N3, each with its own disjoint set of seeds
   (search i: seeds (i-1)K .. iK-1).
2. **Oracle** (``oracle``): DDO with ``oracle_replicates`` replicates run directly at N3, fitted
   on the N3 runs alone: the best mixture this method family finds with training at the target.
   (The pipeline wants two budgets; its N1 runs are only the price of that.)
3. **Validation** at N3 (in ``search-1``), every mixture with the same validation seeds: each
   search's predicted mixture and its N2 DDO optimum reused as is, uniform, natural (the corpus's
   token shares), the LLaMA-style mixture and the oracle.
4. **Held-out budget** (``heldout``): DDO at N_mid = sqrt(N1 N2) with search 1's seeds, against the
   law's interpolation there from search 1's optima; L1 distance of the weights with a bootstrap
   interval (the k-th whole-seed bootstrap draw of one against the k-th of the other).

Figures (`BenchResult`): the gain of the predicted mixtures over each baseline,
g = 1 - objective(predicted_i, s) / objective(baseline, s) over all (search i, validation seed s)
pairs (the reused DDO baseline is search i's own), mean and t 95% interval over the pairs; the
speed-up in tokens per pair where the predicted curve reaches the baseline's final value ("not
reached" otherwise, never averaged away); the fraction of the oracle's gain over uniform that the
predicted mixtures reach; the held-out L1; the search cost (one search's DDO tokens / one target run).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autoscale.ddo.plan import design_tokens
from autoscale.errors import AutoscaleError
from autoscale.experiment.folder import METRICS, ExperimentFolder
from autoscale.experiment.records import DDORecord, ExperimentRecord, ValidationRecord, dump
from autoscale.gain import Gain, paired_gain
from autoscale.recipes.demo import (
    _BYTES_L2,
    DEFAULT,
    QUICK,
    DemoPlan,
    demo_config,
    open_workspace,
    write_config,
)
from autoscale.tokens import budget_name, format_tokens

#: The authors' held-out check (METHOD.md; L1 distance of weights at a budget between the two).
PAPER_HELD_OUT_L1 = 0.053
#: The paper's headline speed-ups at the target (GPT-2 Large, ~10B tokens).
AUTOSCALE = "autoscale"  # the method the benchmark measures
PAPER_SPEEDUP = {"uniform": 0.38, "llama-style": 0.28}


@dataclass(frozen=True)
class BenchPlan:
    """The benchmark's design: ``proxy`` (model, budgets, replicates K, validation seeds, corpus)
    plus ``searches`` repeats of the whole method and the oracle's replicates at the target."""

    proxy: DemoPlan
    searches: int = 3
    oracle_replicates: int = 2
    law_starts: int = 8  # random starts of each target's fit of the mixture law (`autoscale bench --methods`)
    law_fit_steps: int = 4000  # and the least-squares evaluations of each start

    def search_seed(self, i: int) -> int:
        """First seed of search ``i`` (0-based); its seeds are this .. this + K - 1."""
        return i * self.proxy.replicates

    @property
    def held_out_budget(self) -> float:
        return held_out_budget(self.proxy.budgets)

    def training_tokens(self) -> float:
        """About what the whole benchmark trains (runs shared between parts counted once)."""
        p, m = self.proxy, len(self.proxy.domains)
        design = design_tokens(m)
        searches = self.searches * p.replicates * design * sum(p.budgets)
        oracle = self.oracle_replicates * design * (p.budgets[0] + p.target)
        held = p.replicates * design * (p.budgets[0] + self.held_out_budget)
        validation = (2 * self.searches + 4) * len(p.seeds) * p.target
        return searches + oracle + held + validation


#: The record, as bench/snr.py chose it: bytes, 2 layers 64 wide (the most signal per CPU-minute),
#: DDO at 256k and 1.02M tokens with 3 replicates (the study's 256k effects need 2-3 to stand out),
#: 3 domains (larger effects per perturbation, cheaper designs), target 4.1M = 4 N2. Version 1 of the
#: record: it keeps its 3 domains and plain-mean objective while the demo moved to 7 domains.
RECORD = BenchPlan(
    proxy=dataclasses.replace(
        DEFAULT, name="bench", domains=("web", "code", "books"), objective=None,
        budgets=(256_000, 1_024_000), target=4_096_000,
        eval={"points": 10, "max_tokens": None}, val_tokens=32_768, replicates=3, seeds=(100, 101, 102), workers=2,
    ),
)

#: The same design at test size (a couple of minutes).
QUICK_BENCH = BenchPlan(
    proxy=dataclasses.replace(QUICK, name="bench-quick", domains=("web", "code", "books"), objective=None,
                              budgets=(1_500, 6_000), target=24_000,
                              model={**_BYTES_L2, "seq_len": 32}, eval={"points": 4, "max_tokens": 1024},
                              seeds=(100, 101), bootstrap=25),
    searches=2,
    oracle_replicates=1,  # the path, not the oracle's noise: a sixth of this plan's training
    # each start of the law's fit costs seconds; the quick run checks the path, not the fit
    law_starts=1,
    law_fit_steps=500,
)


@dataclass(frozen=True)
class HeldOut:
    """DDO run directly at ``budget`` (tokens) vs the law's prediction there (weights, sum 1);
    ``interval``: 95% bootstrap interval of the L1 distance (None without draws)."""

    budget: float
    measured: Mapping[str, float]
    predicted: Mapping[str, float]
    interval: tuple[float, float] | None = None

    @property
    def l1(self) -> float:
        return float(sum(abs(self.measured[d] - self.predicted[d]) for d in self.measured))


@dataclass(frozen=True)
class PairedSpeedUps:
    """Speed-ups of the predicted mixtures over one baseline, one per (search, seed) pair; None:
    the predicted curve never reaches the baseline's final value."""

    baseline: str
    values: tuple[float | None, ...]

    @property
    def reached(self) -> int:
        return sum(v is not None for v in self.values)

    def describe(self) -> str:
        n, got = len(self.values), [v for v in self.values if v is not None]
        if not got:
            return f"not reached in any of {n} pairs"
        median = float(np.median(got))
        if len(got) == n:
            return f"reached in all {n} pairs, median {median:+.1%} (range {min(got):+.1%} to {max(got):+.1%})"
        return f"reached in {len(got)} of {n} pairs (median of those {median:+.1%}); not reached in {n - len(got)}"


@dataclass(frozen=True)
class BenchResult:
    """What the benchmark measured. Tokens are absolute counts; weights sum to 1; objectives are the
    mean validation perplexity over the domains (lower is better).

    ``finals``: mixture -> validation seed -> final objective (mixtures of search i > 1 are
    ``predicted-i`` and ``ddo-i``); ``gains``/``speedups``: baseline -> over all (search, seed) pairs.
    """

    plan: BenchPlan
    domains: tuple[str, ...]
    seeds: tuple[int, ...]
    predicted: Mapping[int, Mapping[str, float]]  # search -> weights at the target
    ddo: Mapping[int, Mapping[float, Mapping[str, float]]]  # search -> budget -> weights
    oracle: Mapping[str, float]
    natural: Mapping[str, float]
    finals: Mapping[str, Mapping[int, float]]
    gains: Mapping[str, Gain]
    search_gains: Mapping[str, tuple[float, ...]]  # baseline -> mean gain of each search
    speedups: Mapping[str, PairedSpeedUps]
    oracle_gain: Gain | None  # the oracle over uniform
    held_out: HeldOut
    search_tokens: float  # one search: all its DDO runs at both budgets
    unique_tokens: Mapping[str, int]
    wall_time_s: float
    directory: Path
    machine: Mapping[str, str]
    params: int | None = None

    @property
    def search_cost(self) -> float:
        """Proxy tokens of one whole DDO search per token of one target run."""
        return self.search_tokens / self.plan.proxy.target

    @property
    def oracle_fraction(self) -> float | None:
        """Mean gain of the predicted mixtures over uniform / the oracle's (None: no oracle gain)."""
        g = self.gains.get("uniform")
        if g is None or self.oracle_gain is None or self.oracle_gain.mean <= 0:
            return None
        return g.mean / self.oracle_gain.mean


def machine_facts() -> dict[str, str]:
    """CPU model, cores, Python and torch versions: enough to compare benchmark numbers."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    facts = {"cpu": cpu, "cores": str(os.cpu_count()), "python": sys.version.split()[0],
             "platform": platform.platform(terse=True)}
    try:
        import torch

        facts["torch"] = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return facts


def held_out_budget(budgets: Sequence[float]) -> float:
    """The geometric middle of the two DDO budgets, in whole tokens."""
    return float(round(math.sqrt(budgets[0] * budgets[1])))


def open_bench_workspace(
    directory: str | os.PathLike, plan: BenchPlan, corpus: str | os.PathLike | None, say: Callable[[str], None] | None,
) -> tuple[Path, Path, tuple[str, ...], Callable[[str], None]]:
    """The benchmark's workspace (`autoscale.recipes.demo.open_workspace`), Ray checked first when
    the plan trains runs in parallel."""
    if plan.proxy.workers > 1:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise AutoscaleError("the benchmark trains 2 runs at once on Ray: pip install 'autoscale[ray]'") from None
    return open_workspace(directory, plan.proxy, corpus, say, "benchmark")


def run_bench(
    directory: str | os.PathLike,
    *,
    plan: BenchPlan = RECORD,
    corpus: str | os.PathLike | None = None,
    reporter: Callable[[Any], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> BenchResult:
    """Run (or resume) the benchmark in ``directory`` and return its numbers."""
    from autoscale.experiment.pipeline import run_experiment

    started = time.perf_counter()
    p = plan.proxy
    out, source, domains, note = open_bench_workspace(directory, plan, corpus, say)
    note(f"benchmark: {plan.searches} searches x {p.replicates} replicates, oracle, validation with seeds "
         f"{', '.join(map(str, p.seeds))}; about {format_tokens(plan.training_tokens())} training tokens")

    def experiment(name: str, **options: Any):
        config = write_config(out, f"{name}.yaml", demo_config(p, source, domains, output=name, **options))
        return config, run_experiment(config, reporter)

    # 1. the searches after the first (search 1 runs with the validation, in its own folder)
    searches: dict[int, Any] = {}
    for i in range(1, plan.searches):
        note(f"search {i + 1} of {plan.searches}: DDO with seeds {plan.search_seed(i)}..")
        searches[i] = experiment(f"search-{i + 1}", seed=plan.search_seed(i), validate=False)[1]
    # 2. the oracle: DDO at the target itself, fitted on the target's runs alone
    note(f"oracle: DDO at the target ({format_tokens(p.target)} tokens), {plan.oracle_replicates} replicates")
    oracle_config, oracle_run = experiment(
        "oracle", budgets=(p.budgets[0], p.target), target=4 * p.target, replicates=plan.oracle_replicates,
        validate=False)
    oracle = _oracle_fit(oracle_config, Path(oracle_run.directory), p.target)
    # 3. search 1 and the validation of every mixture at the target
    extra = {"oracle": oracle.mixture.weights}
    for i, r in searches.items():
        extra[mixture_of_search("predicted", i)] = r.target.weights
        extra[mixture_of_search("ddo", i)] = list(r.searched[AUTOSCALE].values())[-1].weights
    note("search 1 and the validation at the target")
    _, first = experiment("search-1", seed=plan.search_seed(0), mixtures=extra)
    searches[0] = first
    # 4. the held-out budget, with search 1's seeds
    mid = plan.held_out_budget
    note(f"held-out check: DDO at {format_tokens(mid)} tokens")
    experiment("heldout", seed=plan.search_seed(0), budgets=(p.budgets[0], mid), validate=False)
    held = _held_out(out / "search-1", out / "heldout", p.budgets, mid)

    search1 = ExperimentFolder(out / "search-1")
    validation = search1.read_record(search1.validation, ValidationRecord)
    record = search1.read_record(search1.experiment, ExperimentRecord)
    if validation is None or record is None:
        raise AutoscaleError(f"{str(search1.path)!r}: the validation at the target has not finished")
    finals, curves = _finals_and_curves(validation)
    gains, per_search, ups = compare(finals, curves, plan.searches, validation.smoothing_weight)
    oracle_gain = paired_gain("uniform", finals.get("oracle", {}), finals.get("uniform", {}))
    return BenchResult(
        plan=plan, domains=tuple(domains), seeds=tuple(p.seeds),
        predicted={i: r.target.weights for i, r in sorted(searches.items())},
        ddo={i: {b: m.weights for b, m in r.searched[AUTOSCALE].items()} for i, r in sorted(searches.items())},
        oracle=oracle.mixture.weights, natural=_shares(record.unique_tokens or {}),
        finals=finals, gains=gains, search_gains=per_search, speedups=ups, oracle_gain=oracle_gain,
        held_out=held, search_tokens=_ddo_tokens(search1, p.budgets),
        unique_tokens=record.unique_tokens or {}, wall_time_s=time.perf_counter() - started,
        directory=out, machine=machine_facts(), params=_params(validation),
    )


def _oracle_fit(config: Any, folder: Path, budget: float) -> Any:
    """DDO fitted on the runs at ``budget`` alone, with the experiment's own options."""
    from autoscale.ddo.fit import fit_ddo

    table = ExperimentFolder(folder).read_table(ExperimentFolder(folder).existing(AUTOSCALE, "table", budget))
    return fit_ddo(table, min_ratio=config.ddo.min_ratio, max_tokens=_caps(folder),
                   bootstrap=config.ddo.bootstrap, seed=config.seed)


def _caps(folder: Path) -> dict[str, float] | None:
    record = ExperimentFolder(folder).read_record(ExperimentFolder(folder).experiment, ExperimentRecord)
    return None if record is None or record.caps is None else dict(record.caps)


def _held_out(search: Path, heldout: Path, budgets: Sequence[float], mid: float) -> HeldOut:
    """The law's interpolation at ``mid`` from ``search``'s optima vs DDO run at ``mid``."""
    from autoscale.ddo.fit import draws_from_rows
    from autoscale.extrapolate import extrapolate, extrapolate_draws, held_weights
    from autoscale.mixture import Mixture

    def ddo(folder: Path, budget: float) -> tuple[Mixture, np.ndarray | None]:
        experiment = ExperimentFolder(folder)
        data = experiment.read_record(experiment.existing(AUTOSCALE, "record", budget), DDORecord)
        if data is None:
            raise AutoscaleError(f"{str(folder)!r} has no DDO record at {budget_name(budget)} tokens")
        mixture = Mixture.from_dict(dump(data.mixture))
        raw = (data.model_extra or {}).get("bootstrap_draws")
        return mixture, (draws_from_rows(raw, len(mixture.domains)) if raw else None)

    (m1, d1), (m2, d2) = ddo(search, budgets[0]), ddo(search, budgets[1])
    measured, measured_draws = ddo(heldout, mid)
    options = dict(target=mid, max_tokens=_caps(search), hold=held_weights([m1, m2]))
    predicted = extrapolate([m1, m2], **options).mixture
    interval = None
    if d1 is not None and d2 is not None and measured_draws is not None:
        law, _ = extrapolate_draws([m1, m2], [d1, d2], **options)
        n = min(len(law), len(measured_draws))
        l1 = np.abs(law[:n] - measured_draws[:n]).sum(axis=1)
        l1 = l1[np.isfinite(l1)]
        if l1.size >= 10:
            interval = (float(np.percentile(l1, 2.5)), float(np.percentile(l1, 97.5)))
    return HeldOut(mid, measured.weights, predicted.weights, interval)


def _finals_and_curves(validation: ValidationRecord) -> tuple[dict[str, dict[int, float]], dict[str, dict[int, Any]]]:
    finals: dict[str, dict[int, float]] = {}
    curves: dict[str, dict[int, Any]] = {}
    for name, entries in validation.runs.items():
        for e in entries:
            if e.final_objective is not None:
                finals.setdefault(name, {})[e.seed] = float(e.final_objective)
            if e.curve:
                curves.setdefault(name, {})[e.seed] = (e.curve.tokens, e.curve.objective)
    return finals, curves


def mixture_of_search(kind: str, i: int) -> str:
    """Validation name of search ``i``'s (0-based) predicted (``kind`` "predicted") or reused DDO mixture."""
    return kind if i == 0 else f"{kind}-{i + 1}"


def compare(
    finals: Mapping[str, Mapping[int, float]], curves: Mapping[str, Mapping[int, Any]], searches: int,
    smoothing: float,
) -> tuple[dict[str, Gain], dict[str, tuple[float, ...]], dict[str, PairedSpeedUps]]:
    """Gains and speed-ups of every search's predicted mixture over every baseline, per
    (search, seed) pair; the "ddo" baseline of search i is its own reused N2 optimum."""
    from autoscale.speedup import speedup

    own = {mixture_of_search(kind, i) for kind in ("predicted", "ddo") for i in range(1, searches)}
    baselines = [n for n in finals if n != "predicted" and n not in own]
    gains: dict[str, Gain] = {}
    per_search: dict[str, tuple[float, ...]] = {}
    ups: dict[str, PairedSpeedUps] = {}
    for base in baselines:
        pred: dict[int, float] = {}  # pair index -> final objective (paired_gain pairs by key)
        other: dict[int, float] = {}
        means, values = [], []
        for i in range(searches):
            p_name = mixture_of_search("predicted", i)
            b_name = mixture_of_search("ddo", i) if base == "ddo" else base
            p_f, b_f = finals.get(p_name, {}), finals.get(b_name, {})
            pairs = sorted(set(p_f) & set(b_f))
            for s in pairs:
                k = len(pred)
                pred[k], other[k] = p_f[s], b_f[s]
                pc, bc = curves.get(p_name, {}).get(s), curves.get(b_name, {}).get(s)
                if pc is not None and bc is not None:
                    values.append(speedup(pc, bc, smoothing=smoothing).speedup)
            if pairs:
                means.append(float(np.mean([1 - p_f[s] / b_f[s] for s in pairs])))
        g = paired_gain(base, pred, other)
        if g is not None:
            gains[base] = g
            per_search[base] = tuple(means)
            ups[base] = PairedSpeedUps(base, tuple(values))
    return gains, per_search, ups


def _shares(unique: Mapping[str, float]) -> dict[str, float]:
    total = float(sum(unique.values())) or 1.0
    return {d: float(n) / total for d, n in unique.items()}


def _params(validation: ValidationRecord) -> int | None:
    """The proxy's parameter count, from one validation run's metrics.json."""
    for runs in validation.runs.values():
        for entry in runs:
            try:
                metrics = json.loads((Path(str(entry.run_dir)) / METRICS).read_text(encoding="utf-8"))
                return int(metrics["params"])
            except (KeyError, OSError, TypeError, ValueError):
                continue
    return None


def _ddo_tokens(experiment: ExperimentFolder, budgets: Sequence[float]) -> float:
    """Training tokens of every DDO run at ``budgets`` (from the runs tables: tokens trained)."""
    return float(sum(experiment.read_table(experiment.existing(AUTOSCALE, "table", b)).tokens.sum() for b in budgets))
