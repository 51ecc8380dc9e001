"""`autoscale demo`: AutoScale end to end on the embedded demo corpus, with a tiny decoder proxy.

What it does, in order (every step resumable; rerun the same command after an interruption):

1. The corpus: the demo corpus (`autoscale.data.fetch_demo`, cached after the first call) or a
   folder of ``<domain>.jsonl`` files given with ``--corpus``. ``--quick`` takes the first ~1 MB
   of whole documents of each domain, so tokenising is quick too.
2. ``DIR/demo.yaml``: an ordinary experiment config (`autoscale run DIR/demo.yaml` runs the same
   thing): the benchmark's proxy and noise-aware design at a quarter of its budgets, on all 7
   domains, with an objective that weights web, code and Q&A (the other four are auxiliary sources).
   Noise-aware DDO (2 coupled replicates, whole-seed bootstrap) at two budgets N1 < N2 = 4 N1,
   the target N3 = 4 N2 (the paper's N2^2/N1), and validation at N3 with 3 seeds of the
   predicted mixture against uniform, natural (the corpus's token shares), the DDO mixture of N2
   reused as is, and a web-heavy LLaMA-style mixture (`autoscale.baselines.llama_style`; the mapping of
   LLaMA's sources onto the demo's domains is in `LLAMA_TO_DEMO` there and in the report). Every gain has a
   95% interval over the seeds and a verdict (win / loss / not distinguishable).
3. The pipeline (`autoscale.experiment.pipeline`) into ``DIR/experiment``; the token store goes to
   ``DIR/store``.
4. The report (``DIR/report/report.html``).

Sizing (`DEFAULT`, `QUICK`): byte-level tokens (vocabulary 257), 2 layers 64 wide: the setting
with the most signal per CPU-minute in the signal-to-noise study (bench/snr.py). Costs follow
K (2m + 2.2) (N1 + N2) + 5 S N3 training tokens (K replicates, m domains, S validation seeds),
at ~60-100k tokens/s on 2 CPU cores. DEFAULT: m = 7, K = 2, S = 3, N1 = 128k -> about 51M tokens.
QUICK: N1 = 4k, N3 = 2 N2 = 32k, S = 2 -> about 1M tokens, evaluated on 1024 validation tokens per domain.

Each domain of the demo corpus keeps its real size (5.7-19 MB of text), so "natural" (the corpus's
token shares) differs from uniform, and ``max_epochs`` 4 caps a small domain where a large target
would repeat it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from autoscale.atomic import write_text_atomic
from autoscale.baselines import llama_mapping
from autoscale.ddo.plan import design_tokens
from autoscale.errors import AutoscaleError
from autoscale.tokens import format_tokens

COMPARISON_NAMES = {"ddo": "DDO {n2} reused", "llama-style": "llama-style"}


def with_llama_mapping(data: Any, domains: Sequence[str]) -> Any:
    """``data`` (a `ReportData`) with the LLaMA-style mapping among its facts."""
    import dataclasses

    return dataclasses.replace(data, facts={**data.facts, "llama-style mixture": llama_mapping(domains)})


@dataclass(frozen=True)
class DemoPlan:
    """One demo (or benchmark) setting. Budgets are training tokens; ``slice_mb`` (10^6 bytes of
    UTF-8 text per domain) cuts the corpus to its first whole documents, None keeps it whole.

    ``replicates``: seeds per DDO design point (noise-aware DDO); ``seeds``: validation seeds at the
    target; ``ddo_eval_points``: evaluation points of a DDO run (1: only the final evaluation, which
    is all the fit reads); ``max_epochs``: availability cap per domain (epochs of its unique
    tokens); ``workers``: runs at once (1: inline; more: a local Ray cluster, 1 thread per run).
    """

    name: str
    domains: tuple[str, ...]
    budgets: tuple[float, float]
    target: float
    model: Mapping[str, Any]
    train: Mapping[str, Any]
    eval: Mapping[str, Any]
    vocab_size: int = 257  # bytes + end-of-text
    val_tokens: int = 8192
    slice_mb: float | None = None
    smoothing: float = 0.3
    replicates: int = 1
    seeds: tuple[int, ...] = (0,)
    ddo_eval_points: int | None = 1
    max_epochs: float | None = 4.0
    bootstrap: int = 0
    workers: int = 1
    objective: Mapping[str, float] | None = None  # objective.weights (None: the plain mean over the domains)

    def training_tokens(self, validations: int = 5) -> float:
        """Tokens the whole plan trains: DDO runs at both budgets plus the validation runs."""
        m = len(self.domains)
        return self.replicates * design_tokens(m) * sum(self.budgets) + validations * len(self.seeds) * self.target


_TRAIN = {"batch_size": 8, "lr": 3.0e-3, "warmup": 0.05, "schedule": "cosine"}
_BYTES_L2 = {"kind": "decoder", "n_layer": 2, "d_model": 64, "n_head": 2, "seq_len": 128}

#: All 7 demo domains; the objective weights what the model is for (web, code and Q&A, equally) and
#: the other four are auxiliary sources: the kind of objective a user sets, where an equal weight on
#: every training domain leaves the mixture little to win at this scale. The proxy and the noise-aware
#: design (2 replicates, 3 validation seeds so that every gain has an interval) are the benchmark's.
DEMO_DOMAINS = ("web", "news", "code", "books", "encyclopedia", "technical", "qa")
DEMO_OBJECTIVE = {"web": 1.0, "code": 1.0, "qa": 1.0}
DEFAULT = DemoPlan(
    name="demo",
    domains=DEMO_DOMAINS,
    objective=DEMO_OBJECTIVE,
    budgets=(128_000, 512_000),
    target=2_048_000,
    model=_BYTES_L2,
    train=_TRAIN,
    eval={"points": 8, "max_tokens": None},
    val_tokens=16_384,
    replicates=2,
    seeds=(0, 1, 2),
    bootstrap=200,
)

QUICK = DemoPlan(
    name="demo-quick",
    domains=DEMO_DOMAINS,
    objective=DEMO_OBJECTIVE,
    budgets=(4_000, 16_000),
    target=32_000,  # 2 N2, not the paper's N2^2 / N1: the validation is half of this plan's cost
    model={**_BYTES_L2, "seq_len": 64},
    train={**_TRAIN, "batch_size": 16},  # fewer, larger steps: ~1.2x the tokens per second of batch 8 here
    eval={"points": 4, "max_tokens": 1024},  # whole validation documents would cost more than training
    val_tokens=2048,
    slice_mb=1.0,
    replicates=2,
    seeds=(0, 1),
    bootstrap=20,  # the least a 95% interval takes (BOOTSTRAP_RANGE)
)


def corpus_domains(folder: Path) -> list[str]:
    """Domains of a corpus folder: its ``<domain>.jsonl`` files."""
    if not folder.is_dir():
        raise AutoscaleError(f"corpus folder {str(folder)!r} does not exist")
    return sorted(p.name[: -len(".jsonl")] for p in folder.glob("*.jsonl"))


def slice_corpus(source: Path, out: Path, domains: Sequence[str], max_mb: float) -> Path:
    """Copy the first whole documents of each domain, up to ``max_mb`` MB of text, into ``out``.

    Deterministic (file order), so a rerun gives the same files and the store is reused.
    """
    out.mkdir(parents=True, exist_ok=True)
    limit = int(max_mb * 1_000_000)
    for d in domains:
        kept, size = [], 0
        with open(source / f"{d}.jsonl", encoding="utf-8") as fh:
            for line in fh:
                try:
                    text = json.loads(line).get("text", "")
                except ValueError:
                    continue
                n = len(text.encode("utf-8"))
                if kept and size + n > limit:
                    break
                kept.append(line if line.endswith("\n") else line + "\n")
                size += n
        target = out / f"{d}.jsonl"
        text = "".join(kept)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            write_text_atomic(target, text)
    return out


def open_workspace(
    directory: str | os.PathLike,
    plan: DemoPlan,
    corpus: str | os.PathLike | None,
    say: Callable[[str], None] | None,
    what: str,
) -> tuple[Path, Path, tuple[str, ...], Callable[[str], None]]:
    """The (created) folder, the corpus and its domains, and the message sink of a demo or bench
    run of ``plan`` in ``directory``."""
    note = say or (lambda _msg: None)
    out = Path(directory).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise AutoscaleError(f"{what} folder {str(out)!r} is a file")
    if out.exists() and not os.access(out, os.W_OK | os.X_OK):
        raise AutoscaleError(f"cannot write in the {what} folder {str(out)!r}: permission denied")
    source, domains = find_corpus(plan, corpus, note)  # a refused corpus leaves no folder behind
    try:
        out.mkdir(parents=True, exist_ok=True)
        if plan.slice_mb is not None:
            source = slice_corpus(source, out / "corpus", domains, plan.slice_mb)
    except OSError as exc:
        raise AutoscaleError(f"cannot write in the {what} folder {str(out)!r}: {exc.strerror or exc}") from None
    return out, source, domains, note


def find_corpus(
    plan: DemoPlan, corpus: str | os.PathLike | None, say: Callable[[str], None]
) -> tuple[Path, tuple[str, ...]]:
    """The corpus folder (the demo corpus, built or cached, or ``corpus``) and the domains of the
    plan it holds; nothing is written in the workspace."""
    if corpus is None:
        from autoscale.data.demo import fetch_demo

        try:
            built = fetch_demo(progress=say)
        except AutoscaleError as exc:
            raise AutoscaleError(f"{exc} (or give a corpus folder with --corpus)") from None
        say(f"demo corpus: {built.dir} ({'cached' if built.cached else 'built'}, {len(built.domains)} domains)")
        source = built.dir
    else:
        source = Path(corpus).expanduser().resolve()
    present = corpus_domains(source)
    domains = tuple(d for d in plan.domains if d in present)
    if len(domains) < 3:
        raise AutoscaleError(
            f"corpus {str(source)!r} has {len(domains)} of the demo's domains ({', '.join(plan.domains)}); need 3"
        )
    return source, domains


def demo_config(
    plan: DemoPlan, corpus: Path, domains: Sequence[str], *, seed: int = 0, seeds: Sequence[int] | None = None,
    validate: bool = True, budgets: Sequence[float] | None = None, output: str = "experiment",
    replicates: int | None = None, target: float | None = None, mixtures: Mapping[str, Mapping[str, float]] = (),
) -> dict[str, Any]:
    """The experiment config (YAML mapping) of ``plan``; paths other than ``corpus`` are
    relative to the folder the YAML is written to. Keyword arguments override the plan."""
    threads = max(1, min(2, os.cpu_count() or 1))
    ddo: dict[str, Any] = {"budgets": [float(b) for b in (budgets or plan.budgets)], "ratios": [0.2, 3.0],
                           "min_ratio": 0.2, "replicates": replicates or plan.replicates}
    if ddo["replicates"] > 1 and plan.bootstrap:
        ddo["bootstrap"] = plan.bootstrap
    if plan.ddo_eval_points is not None:
        ddo["eval_points"] = plan.ddo_eval_points
    if plan.max_epochs is not None:
        ddo["max_epochs"] = plan.max_epochs
    executor: dict[str, Any] = {"kind": "inline", "retries": 1}
    if plan.workers > 1:
        executor = {"kind": "ray", "retries": 1, "workers": plan.workers, "num_cpus": 1}
    return {
        "name": plan.name,
        "seed": seed,
        "output": output,
        "data": {"store": "store", "sources": str(corpus), "domains": list(domains),
                 "vocab_size": plan.vocab_size, "val_tokens": plan.val_tokens},
        "proxy": {"model": dict(plan.model), "train": {**plan.train, "threads": threads}, "eval": dict(plan.eval)},
        "ddo": ddo,
        "objective": {"metric": "perplexity", **({"weights": dict(plan.objective)} if plan.objective else {})},
        "target": {
            "budget": float(target or plan.target), "validate": validate,
            "compare": ["uniform", "natural", "ddo", "llama-style"],
            "mixtures": {k: dict(v) for k, v in dict(mixtures).items()},
            "seeds": list(seeds) if seeds else [seed + s for s in plan.seeds],
            "smoothing": plan.smoothing,
        },
        "executor": executor,
    }


@dataclass(frozen=True)
class DemoResult:
    """What the demo produced: the folder, the experiment's result, the report and the wall time."""

    directory: Path
    plan: DemoPlan
    experiment: Any  # autoscale.experiment.pipeline.ExperimentResult
    report: Any  # autoscale.report.results.ReportData
    report_html: Path
    wall_time_s: float
    domains: tuple[str, ...] = field(default_factory=tuple)


def write_config(directory: Path, name: str, config: Mapping[str, Any]):
    """Write ``directory/name`` (YAML) and load it back validated, as `autoscale run` would."""
    from autoscale.experiment.config import load_config

    path = directory / name
    write_text_atomic(path, "# written by `autoscale demo`; `autoscale run` this file to rerun it\n"
                  + yaml.safe_dump(dict(config), sort_keys=False))
    return load_config(path)


def run_demo(
    directory: str | os.PathLike,
    *,
    quick: bool = False,
    seed: int = 0,
    corpus: str | os.PathLike | None = None,
    reporter: Callable[[Any], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run (or resume) the demo in ``directory``; returns its results with the report written."""
    from autoscale.experiment.pipeline import run_experiment
    from autoscale.report.html import write_report
    from autoscale.report.load import load_experiment

    started = time.perf_counter()
    plan = QUICK if quick else DEFAULT
    out, source, domains, note = open_workspace(directory, plan, corpus, say, "demo")
    note(f"{plan.name}: {len(domains)} domains, DDO at {', '.join(format_tokens(b) for b in plan.budgets)} tokens, "
         f"target {format_tokens(plan.target)}; about {format_tokens(plan.training_tokens())} training tokens")
    config = write_config(out, "demo.yaml", demo_config(plan, source, domains, seed=seed))
    result = run_experiment(config, reporter)
    data = with_llama_mapping(load_experiment(result.directory), domains)
    files = write_report(data, out / "report")
    return DemoResult(out, plan, result, data, files.html, time.perf_counter() - started, domains)


def display_name(name: str, plan: DemoPlan) -> str:
    return COMPARISON_NAMES.get(name, name).format(n2=format_tokens(plan.budgets[-1]))


def gain_text(g: Mapping[str, Any] | None) -> str:
    """The verdict cell: gain in the final objective with its 95% interval over seeds."""
    if not g:
        return "-"
    ci = "" if g.get("interval") is None else f" [{g['interval'][0]:+.1%}, {g['interval'][1]:+.1%}]"
    return f"{g['mean']:+.1%}{ci}: {g['verdict']}"


def demo_table(result: DemoResult):
    """A rich table: the DDO mixtures, the predicted one and every validated mixture (weights),
    each validated mixture's final objective and the predicted mixture's speed-up over it."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    data = result.report
    domains = list(data.domains)
    table = Table(title=f"AutoScale demo ({result.plan.name}): mixtures (weights) and validation at "
                        f"{format_tokens(result.plan.target)} tokens", title_justify="left")
    table.add_column("mixture")
    table.add_column("tokens", justify="right")
    for d in domains:
        table.add_column(d, justify="right")
    table.add_column("final objective", justify="right")
    table.add_column("speed-up of predicted", justify="right")
    table.add_column("gain of predicted (95% CI): verdict", justify="right")
    for p in sorted((p for p in data.mixtures if p.measured), key=lambda p: p.budget):
        table.add_row(f"DDO at {format_tokens(p.budget)}", format_tokens(p.budget),
                      *(f"{p.weights.get(d, 0):.3f}" for d in domains), "", "", "")
    ups = {u.baseline: u for u in data.speedups}
    for curve in data.validation:
        is_pred = curve.name == data.featured
        if is_pred:
            up = "-"
        else:
            u = ups.get(curve.name)
            up = "-" if u is None else "not reached" if u.mean is None else f"{u.mean:+.1%}"
        table.add_row(display_name(curve.name, result.plan), format_tokens(curve.tokens[-1]),
                      *(f"{curve.weights.get(d, 0):.3f}" for d in domains), f"{curve.final:.3f}", up,
                      "-" if is_pred else gain_text(data.gains.get(curve.name)),
                      style="bold" if is_pred else None)
    if not data.validation:
        target = next((p for p in data.mixtures if not p.measured), None)
        if target is not None:
            table.add_row("predicted", format_tokens(target.budget),
                          *(f"{target.weights.get(d, 0):.3f}" for d in domains), "", "", "", style="bold")
    lines = [f"report: {result.report_html}",
             f"wall time: {result.wall_time_s:.0f} s; experiment: {result.experiment.directory}"]
    return Group(table, Text("\n".join(lines)))

