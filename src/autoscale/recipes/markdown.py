"""The Markdown records of the benchmarks (`autoscale bench`, `autoscale bench --methods`), written
from their results (`recipes.bench.BenchResult`, `recipes.methods_bench.MethodsResult`); the plans
and runs that produce those results stay in their own modules."""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autoscale.baselines import llama_style
from autoscale.experiment.records import ValidationRecord, dump
from autoscale.gain import Gain
from autoscale.recipes.bench import PAPER_HELD_OUT_L1, BenchResult, mixture_of_search
from autoscale.recipes.demo import DemoPlan
from autoscale.recipes.methods_bench import MethodsResult
from autoscale.tokens import format_tokens


def _shown_path(path: Path) -> str:
    """``path`` relative to the current folder when it lies below it (BENCHMARKS.md is shared)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _ci(g: Gain | None) -> str:
    if g is None:
        return "-"
    ci = "" if g.interval is None else f" [{g.interval[0]:+.1%}, {g.interval[1]:+.1%}]"
    return f"{g.mean:+.1%}{ci}"


BASELINE_NAMES = {"ddo": "DDO {n2} reused", "llama-style": "LLaMA-style", "oracle": "oracle (DDO at the target)"}


def _evaluated(p: DemoPlan) -> str:
    """What each evaluation reads: the whole validation split, or its first ``eval.max_tokens``."""
    cap = p.eval.get("max_tokens")
    if cap is None or cap >= p.val_tokens:
        return f"the whole validation split ({p.val_tokens:,} tokens per domain)"
    return f"the first {cap:,} of the {p.val_tokens:,} validation tokens per domain"


def record_markdown(result: BenchResult, command: str) -> str:
    """The BENCHMARKS.md section: command, machine, design, the verdicts, the mixtures, a reading."""
    plan, p, doms = result.plan, result.plan.proxy, list(result.domains)
    m = result.machine
    n2 = format_tokens(p.budgets[1])

    def name(base: str) -> str:
        return BASELINE_NAMES.get(base, base).format(n2=n2)

    pairs = plan.searches * len(result.seeds)
    lines = [
        "## AutoScale on the demo corpus (benchmark of record)",
        "",
        f"Command: `{command}` (from the repository root; writes `bench/results/record.md`).  ",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores; Python {m.get('python')}, torch {m.get('torch', '?')}; "
        f"{m.get('platform')}.  ",
        f"Date: {datetime.date.today().isoformat()}; wall time of this invocation {result.wall_time_s / 60:.1f} min "
        f"(runs finished earlier in `{_shown_path(result.directory)}/` are reused, not retrained).",
        "",
        "**Goal, stated before the run:** the predicted mixture beats uniform and the reused DDO mixture at the "
        "target with 95% intervals above zero, reaches at least 75% of the oracle's gain over uniform, and the "
        "held-out L1 is at most 0.15.",
        "",
        f"**Design** (chosen from the signal-to-noise study above before this record ran): {len(doms)} domains "
        f"({', '.join(doms)}) of the demo corpus; proxy decoder, {p.model['n_layer']} layers, d_model "
        f"{p.model['d_model']}, seq_len {p.model['seq_len']}, byte-level tokens"
        + (f", {format_tokens(result.params)} parameters" if result.params else "")
        + f"; noise-aware DDO at {format_tokens(p.budgets[0])} and {n2} tokens, uniform base, amounts x0.2/x1/x3, "
        f"{p.replicates} coupled replicates, whole-seed bootstrap; target {format_tokens(p.target)} tokens "
        f"({p.target / p.budgets[1]:g} x N2); {plan.searches} searches with disjoint seeds "
        + ", ".join(f"{plan.search_seed(i)}-{plan.search_seed(i) + p.replicates - 1}" for i in range(plan.searches))
        + f"; oracle: DDO at the target with {plan.oracle_replicates} replicate{'s' if plan.oracle_replicates > 1 else ''}; validation seeds "
        f"{', '.join(map(str, result.seeds))} for every mixture; evaluation on {_evaluated(p)}; "
        "objective: mean validation perplexity over the domains; "
        f"max_epochs {p.max_epochs:g}.",
        "",
        "### Gain of the predicted mixture at the target",
        "",
        f"Gain = 1 - perplexity(predicted) / perplexity(baseline), over {pairs} (search, validation seed) pairs; "
        "95% t interval over the pairs (a baseline's run of one seed is shared by the searches, so the pairs "
        "are not fully independent). Verdict: win if the interval lies above 0, loss if below, else not "
        "distinguishable. Speed-up in tokens: where the predicted curve reaches the baseline's final value.",
        "",
        "| baseline | final perplexity per seed | gain of predicted (95% CI) | verdict | mean gain per search | "
        "speed-up of predicted |",
        "|---|---|---|---|---|---|",
    ]
    for base, g in result.gains.items():
        per_seed = ", ".join(f"{v:.3f}" for _, v in sorted(result.finals.get(base, {}).items()))
        if base == "ddo":
            per_seed = "per search, see below"
        per = ", ".join(f"{v:+.1%}" for v in result.search_gains.get(base, ()))
        lines.append(f"| {name(base)} | {per_seed} | {_ci(g)} | **{g.verdict}** | {per} | "
                     f"{result.speedups[base].describe()} |")
    pred_cells = []
    for i in range(plan.searches):
        f = result.finals.get(mixture_of_search("predicted", i), {})
        pred_cells.append(f"search {i + 1}: " + ", ".join(f"{v:.3f}" for _, v in sorted(f.items())))
    lines += ["", f"Predicted mixtures' final perplexity per seed: {'; '.join(pred_cells)}.", ""]
    frac = result.oracle_fraction
    og = result.oracle_gain
    h = result.held_out
    held_ci = "" if h.interval is None else f" (95% bootstrap interval {h.interval[0]:.3f} to {h.interval[1]:.3f})"
    lines += [
        "### Against the oracle, held-out budget, cost",
        "",
        f"- Oracle's gain over uniform: {_ci(og)} ({og.verdict if og else 'no runs'}). Predicted mixtures' gain "
        f"over uniform as a fraction of it: **{'n/a (the oracle does not gain over uniform)' if frac is None else f'{frac:.0%}'}**"
        + (" (the oracle's own gain is not distinguishable from noise: the ratio means little)."
           if frac is not None and og is not None and og.verdict != "win" else "."),
        f"- Held-out budget: DDO run directly at {format_tokens(h.budget)} tokens vs the law's interpolation there "
        f"from search 1's optima: **L1 {h.l1:.3f}**{held_ci}; the authors' check: {PAPER_HELD_OUT_L1}.",
        f"- Search cost: one search's DDO runs trained {format_tokens(result.search_tokens)} tokens = "
        f"**{result.search_cost:.1f}x** one target run; the whole benchmark about "
        f"{format_tokens(plan.training_tokens())} tokens.",
        "",
        "### Mixtures (weights)",
        "",
        "| mixture | tokens | " + " | ".join(doms) + " |",
        "|---|---|" + "---|" * len(doms),
    ]

    def row(label: str, budget: float, w: Mapping[str, float]) -> None:
        lines.append(f"| {label} | {format_tokens(budget)} | " + " | ".join(f"{w.get(d, 0):.3f}" for d in doms) + " |")

    for i in range(plan.searches):
        for b, w in result.ddo.get(i, {}).items():
            row(f"search {i + 1}: DDO", b, w)
        row(f"**search {i + 1}: predicted**", p.target, result.predicted.get(i, {}))
    row("oracle: DDO at the target", p.target, result.oracle)
    row("held-out DDO", h.budget, h.measured)
    row("law at the held-out budget", h.budget, h.predicted)
    row("natural", p.target, result.natural)
    row("LLaMA-style", p.target, llama_style(doms))
    lines += ["", availability(result), ""]
    lines += [
        "### Reading",
        "",
    ]
    lines += [f"- {line}" for line in reading(result)]
    lines += ["", f"Experiment folders: `{_shown_path(result.directory)}/` (search-1 holds the validation).", ""]
    return "\n".join(lines)


def availability(result: BenchResult) -> str:
    """What natural availability changes here: the natural shares, and whether any cap binds."""
    p, unique = result.plan.proxy, result.unique_tokens
    if not unique:
        return "Natural availability: unknown (no token store)."
    mixtures = {"natural": result.natural, "oracle": result.oracle, "LLaMA-style": llama_style(result.domains)}
    mixtures.update({f"search {i + 1} predicted": w for i, w in result.predicted.items()})
    name, domain, share = max(((n, d, w.get(d, 0.0)) for n, w in mixtures.items() for d in result.domains),
                              key=lambda t: t[2] * p.target / unique[t[1]])
    epochs = share * p.target / unique[domain]
    text = ("Natural availability: the demo corpus keeps each source's real size, so the domains hold "
            + ", ".join(f"{d} {format_tokens(n)}" for d, n in unique.items())
            + " unique training tokens and natural (" + ", ".join(f"{d} {w:.2f}" for d, w in result.natural.items())
            + (") differs from uniform." if max(abs(w - 1 / len(result.natural)) for w in result.natural.values()) > 0.02
               else ") is close to uniform.")
            + f" The largest repetition any validated mixture asks for at the target is "
            f"{name}'s {domain}: {epochs:.2f} epochs")
    if p.max_epochs is None:
        return text + " (no cap set)."
    binds = epochs > p.max_epochs
    return text + (f", above the cap of max_epochs {p.max_epochs:g}: the cap binds." if binds else
                   f", below the cap of max_epochs {p.max_epochs:g}: at this target no cap binds, and availability "
                   "changes the benchmark only through the natural baseline.")


def reading(result: BenchResult) -> list[str]:
    """Plain sentences: each verdict, the goal met or not, and what the numbers do not show."""
    n2 = format_tokens(result.plan.proxy.budgets[1])
    out = []
    for base, g in result.gains.items():
        label = BASELINE_NAMES.get(base, base).format(n2=n2)
        figure = f"gain {_ci(g)} over {g.seeds} (search, seed) pairs"
        if g.verdict == "win":
            out.append(f"The predicted mixture beats {label}: {figure}.")
        elif g.verdict == "loss":
            out.append(f"The predicted mixture loses to {label}: {figure}.")
        else:
            out.append(f"Against {label} the difference is not distinguishable from noise: {figure}.")
    wins = all(result.gains.get(b) is not None and result.gains[b].verdict == "win" for b in ("uniform", "ddo"))
    frac = result.oracle_fraction
    goal = (wins and frac is not None and frac >= 0.75 and result.held_out.l1 <= 0.15)
    out.append("Goal met." if goal else
               "Goal not met: " + "; ".join(filter(None, [
                   None if wins else "the predicted mixture does not beat both uniform and the reused DDO mixture "
                                     "with intervals above zero",
                   None if frac is not None and frac >= 0.75 else
                   f"it reaches {'no' if frac is None else f'{frac:.0%} of the'} oracle's gain (goal 75%)",
                   None if result.held_out.l1 <= 0.15 else f"held-out L1 {result.held_out.l1:.2f} > 0.15",
               ])) + ".")
    og = result.oracle_gain
    if og is not None and og.verdict != "win":
        out.append("Even DDO run at the target does not beat uniform distinguishably here: on this corpus and at this "
                   "scale the headroom any mixture has over uniform is within the noise, so no method can show a "
                   "win; a larger proxy and target (GPU) would be needed to test the paper's claim.")
        needed = pairs_needed(result.gains.get("uniform"), og.mean)
        if needed is not None:
            out.append(f"Resolving a gain the size of the oracle's ({og.mean:+.1%}) against the spread of one pair's "
                       f"gain over uniform (SD {pair_sd(result.gains['uniform']):.1%}) would take about {needed} "
                       "(search, seed) pairs at this scale. The paper's effects (38% fewer tokens than uniform) were "
                       "measured with a 774M-parameter model at 10B tokens, 3-4 orders of magnitude beyond this proxy "
                       "and target.")
    return out


def pair_sd(g: Gain) -> float:
    """The SD of one pair's gain, recovered from the t interval of the mean."""
    from scipy import stats

    assert g.interval is not None
    return (g.interval[1] - g.mean) / float(stats.t.ppf(0.975, g.seeds - 1)) * math.sqrt(g.seeds)


def pairs_needed(g: Gain | None, effect: float) -> int | None:
    """Pairs for a 95% interval of half-width ``|effect|`` (normal approximation), given ``g``'s spread."""
    if g is None or g.interval is None or g.seeds < 2 or effect == 0:
        return None
    return math.ceil((1.96 * pair_sd(g) / abs(effect)) ** 2)


def _gain(g: Mapping[str, Any] | None) -> str:
    if not g:
        return "-"
    ci = "" if g.get("interval") is None else f" [{g['interval'][0]:+.1%}, {g['interval'][1]:+.1%}]"
    return f"{g['mean']:+.1%}{ci} {g['verdict']}"


def methods_markdown(result: MethodsResult, command: str) -> str:
    """The BENCHMARKS.md section: the design, per method its search compute and its gains with
    intervals over every baseline, the mixtures, and how to read them."""
    p = result.plan.proxy
    s, v = result.summary, result.validation
    methods = s.methods
    gains = {(g.of, g.baseline): dump(g) for g in v.gains}
    finals = s.validation.final_objective if s.validation else {}
    means = s.validation.speedup_means if s.validation else {}
    today = datetime.date.today().isoformat()
    lines = [
        "## Mixing methods compared at the target (`autoscale bench --methods`)",
        "",
        f"Command: `{command}`. Date: {today}; wall time of this invocation {result.wall_time_s / 60:.1f} min "
        "(runs finished earlier are reused, not retrained). "
        f"Machine: {result.machine.get('cpu')}, {result.machine.get('cores')} cores, torch {result.machine.get('torch')}.",
        "",
        f"Design (`autoscale.recipes.methods_bench`, fixed before any result): the benchmark of record's first "
        f"search: domains {', '.join(result.domains)}, the {p.model.get('n_layer')}-layer {p.model.get('d_model')}-wide "
        f"byte-level proxy, AutoScale's noise-aware DDO at {format_tokens(p.budgets[0])} and "
        f"{format_tokens(p.budgets[1])} tokens with {p.replicates} replicates (seeds 0-{p.replicates - 1}), the "
        f"target {format_tokens(p.target)}; RegMix and DML search at {format_tokens(p.budgets[1])} tokens "
        "(RegMix's run count chosen to cost about what AutoScale's search costs; DML's default 4m + 4 runs are "
        "RegMix's first, trained once); DoReMi at the same budget (eta 1, smoothing 1e-3; a reference and a proxy "
        f"run, so twice the budget); the mixture law on 4m + 4 mixtures at {format_tokens(p.budgets[0])}, "
        f"{format_tokens(math.sqrt(p.budgets[0] * p.budgets[1]))} and {format_tokens(p.budgets[1])} tokens "
        "(at the largest, RegMix's first runs). Floors 0.2/m, caps 4 epochs. Validation at the target with seeds "
        f"{', '.join(map(str, p.seeds))} for every mixture. Gains are 1 - objective(method) / objective(baseline) "
        "per validation seed, mean and t 95% interval over the seeds. Each method searched once: the intervals "
        "hold the validation noise, not the search's.",
        "",
        "| method | search runs | search tokens | x one target run | shared tokens | final mean ppl | "
        "gain over uniform | over natural | over LLaMA-style | over DDO reused | speed-up over uniform |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in methods.items():
        mix = e.mixture
        final = finals.get(mix) or []
        final_text = "-" if not final else f"{sum(final) / len(final):.3f}"
        up = (means.get(mix) or {}).get("uniform")
        lines.append(
            f"| {name} | {e.search_runs} | {format_tokens(e.search_tokens)} | {e.search_vs_target:.1f} | "
            f"{format_tokens(e.shared_tokens)} | {final_text} | {_gain(gains.get((mix, 'uniform')))} | "
            f"{_gain(gains.get((mix, 'natural')))} | {_gain(gains.get((mix, 'llama-style')))} | "
            f"{_gain(gains.get((mix, 'ddo')))} | {'not reached' if up is None else f'{up:+.1%}'} |")
    compute = s.search_compute
    if compute:
        lines += ["", f"Search compute charged to the methods: {format_tokens(compute['charged_tokens'])} tokens; "
                      f"trained: {format_tokens(compute['trained_tokens'])} (the shared runs once)."]
    lines += ["", "Mixtures at the target (weights):", "",
              "| mixture | " + " | ".join(result.domains) + " | final mean ppl (per seed) |",
              "|---|" + "---|" * len(result.domains) + "---|"]
    for name, mixture in v.mixtures.items():
        final = ", ".join(f"{x:.3f}" for x in finals.get(name) or [] if x is not None)
        lines.append(f"| {name} | " + " | ".join(f"{mixture.weights[d]:.3f}" for d in result.domains)
                     + f" | {final} |")
    regmix, dml = result.records.get("regmix") or {}, result.records.get("dml") or {}
    lines += ["", "Diagnostics of the fits on the search runs:", ""]
    if regmix:
        lines.append(f"- RegMix: regressor settings chosen by 5-fold cross-validation {regmix.get('regressor')}, "
                     f"out-of-fold Spearman {regmix.get('cv_spearman', float('nan')):.2f} over "
                     f"{len(regmix.get('objective') or [])} runs; predicted objective of its mixture "
                     f"{regmix.get('predicted_objective', float('nan')):.3f} at the search budget, best search run "
                     f"{regmix.get('best_run_objective', float('nan')):.3f}.")
        lines += [f"  - warning: {w}" for w in regmix.get("warnings") or []]
    if dml:
        r2 = ", ".join(f"{d} {v:.2f}" for d, v in ((dml.get("law") or {}).get("r2") or {}).items())
        lines.append(f"- Data Mixing Laws: R^2 of the law per domain {r2}; predicted objective of its mixture "
                     f"{dml.get('predicted_objective', float('nan')):.3f} at the search budget, best search run "
                     f"{dml.get('best_run_objective', float('nan')):.3f}.")
    doremi, law = result.records.get("doremi") or {}, result.records.get("mixture-law") or {}
    if doremi:
        learnt = ", ".join(f"{d} {w:.3f}" for d, w in (doremi.get("learnt") or {}).items())
        excess = ", ".join(f"{d} {w:.3f}" for d, w in (doremi.get("mean_excess") or {}).items())
        lines.append(f"- DoReMi: mean weights over {doremi.get('steps')} proxy steps {learnt} (before floors and "
                     f"caps); mean excess loss per domain (nats) {excess}.")
    if law:
        lines.append(f"- Mixture law: fitted on {len(law.get('tokens') or [])} runs at "
                     f"{', '.join(format_tokens(b) for b in law.get('budgets') or [])} tokens, mean relative "
                     f"error of the fit {law.get('fit_relative_error', float('nan')):.2%}.")
        held = held_out_error(law, v)
        if held is not None:
            lines.append(f"  - its loss predictions at the target ({format_tokens(p.target)} tokens, 4x past its "
                         f"largest budget) for the {held[1]} validated mixtures: mean relative error {held[0]:.2%} "
                         f"(per validation domain and mixture, against the mean over seeds).")
    lines += ["", "Reading (generated from the numbers above):", ""]
    for name, e in methods.items():
        g = gains.get((e.mixture, "uniform"))
        if g is not None:
            lines.append(f"- {name} over uniform: {_gain(g)} ({g['seeds']} seeds).")
    lines.append("")
    return "\n".join(lines)


def held_out_error(record: Mapping[str, Any], validation: ValidationRecord) -> tuple[float, int] | None:
    """The mixture law's loss predictions at the target against the validation runs' final losses:
    (mean relative error over mixtures and validation domains, number of mixtures)."""
    import numpy as np

    from autoscale.laws.optimal_mixture import MixtureLaw

    law = record.get("law") or {}
    domains = list(law.get("domains") or [])
    if not domains:
        return None
    fitted = MixtureLaw(np.array(law["params"], dtype=float), len(domains))
    errors, count = [], 0
    for name, runs in validation.runs.items():
        finals = [r.final_perplexity for r in runs if r.final_perplexity]
        mixture = validation.mixtures.get(name)
        if not finals or mixture is None or mixture.budget is None:
            continue
        h = np.array([float(mixture.weights[d]) for d in domains])
        measured = np.log([np.mean([f[d] for f in finals]) for d in domains])
        predicted = fitted.losses(float(mixture.budget), h)
        errors.extend(np.abs(predicted - measured) / measured)
        count += 1
    return (float(np.mean(errors)), count) if errors else None
