"""`autoscale run` and `autoscale status`: the end-to-end experiment and a look at its store.

The pipeline reports progress as events; this module alone renders them (on a terminal, rich: one
bar per stage, one per running run with tokens/s and ETA; otherwise one plain line per finished run,
for CI logs) and prints results.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from autoscale.cli.common import plain_console
from autoscale.errors import AutoscaleError
from autoscale.tokens import format_tokens


@click.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Experiment directory (default: the config's `output`, or <config stem>/ beside it).")
@click.option("--quiet", is_flag=True, help="No progress display; print the results only.")
@click.option("--retrain-unkept", is_flag=True,
              help="With target.downstream: train again the validation runs that kept no weights.")
def run(config_path: str, out: str | None, quiet: bool, retrain_unkept: bool) -> None:
    """Run the AutoScale experiment CONFIG end to end: DDO at each budget, the extrapolated mixture
    at the target, and (if configured) validation runs with speed-ups. Resumable: rerun the same
    command after a crash or Ctrl-C, and no finished run is trained again."""
    from autoscale.experiment.config import load_config
    from autoscale.experiment.pipeline import run_experiment

    config = load_config(config_path)
    if out is not None:
        config = config.model_copy(update={"output": Path(out).resolve()})
    result = run_with_progress(lambda reporter: run_experiment(config, reporter, retrain_unkept), quiet,
                               f"autoscale run {config_path}")
    _print_result(result)


def run_with_progress(job: Any, quiet: bool, command: str) -> Any:
    """Run ``job(reporter)`` showing progress on stderr: the live display on a terminal; one line per
    finished run when stdout or stderr is not a terminal (CI logs, pipes, files); failures only
    with ``quiet``.

    Ctrl-C and SIGTERM stop cleanly: running runs are marked interrupted and the process exits
    with status 130, telling how to resume (``command``).
    """
    err = plain_console(stderr=True)
    if quiet:
        reporter: Any = _QuietReporter()
    elif err.is_terminal and sys.stdout.isatty():
        reporter = _RichReporter(err)
    else:
        reporter = _LineReporter()
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        with reporter:
            return job(reporter)
    except KeyboardInterrupt:
        click.echo(f"interrupted: running runs are marked interrupted; rerun `{command}` to resume", err=True)
        # SystemExit, not click's Exit: with standalone_mode=False click would turn Exit into a return value
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # same clean stop as Ctrl-C


def _print_result(result: Any) -> None:
    """Each method's mixtures (its search optima with intervals, then its mixture at the target),
    search compute, held domains, and the validation's speed-ups and gains, from summary.json's record."""
    console = plain_console()
    summary = result.summary
    domains = list(result.target.domains)
    table = Table(title=f"Mixtures (weights) - {result.directory}")
    table.add_column("mixture")
    table.add_column("tokens", justify="right")
    for d in domains:
        table.add_column(d, justify="right")

    def interval_row(intervals: Any) -> None:
        if intervals:
            table.add_row("  95% interval", "", *(f"{intervals[d][0]:.3f}-{intervals[d][1]:.3f}" for d in domains))

    for name, entry in summary.methods.items():
        for searched in entry.searched:
            table.add_row("search", format_tokens(searched.budget),
                          *(f"{searched.weights[d]:.3f}" for d in domains))
            interval_row(searched.intervals)
        m = result.mixtures[name]
        table.add_row(entry.mixture, format_tokens(m.budget), *(f"{m.weights[d]:.3f}" for d in domains), style="bold")
        interval_row(entry.target.intervals if entry.target else {})
    console.print(table)
    if len(summary.methods) > 1:
        console.print("search compute (a run two designs share is trained once, charged to both):")
        for name, e in summary.methods.items():
            console.print(f"  {name}: {e.search_runs} runs, {e.search_tokens:.4g} tokens "
                          f"({e.search_vs_target:.1f} x one target run; {e.shared_tokens:.4g} shared)")
    for name, e in summary.methods.items():
        if e.target and e.target.held:
            from autoscale.ddo.fit import HELD_AT_BASE

            console.print(f"{name}: held at their base share: {', '.join(e.target.held)}")
            # each one's own reason, as its search found it (non-monotone, no effect above the noise...)
            for s in e.searched:
                for w in s.warnings:
                    if HELD_AT_BASE in w:
                        console.print(f"  at {format_tokens(s.budget)}: {w}", soft_wrap=True)
    validation = summary.validation
    if validation is None:
        return
    featured = next(iter(summary.methods.values())).mixture
    means = validation.speedup_means or {featured: validation.speedup_mean}
    for of, by_baseline in means.items():
        if by_baseline:
            console.print(f"speed-up of the {of} mixture (smoothing: {validation.smoothing}):")
        for baseline, value in by_baseline.items():
            console.print(f"  over {baseline}: {'not reached' if value is None else f'{value:+.1%}'}")
        for g in validation.gains:
            if (g.of or featured) != of:
                continue
            ci = "" if g.interval is None else f" [{g.interval[0]:+.1%}, {g.interval[1]:+.1%}]"
            console.print(f"  gain in the final objective over {g.baseline}: {g.mean:+.1%}{ci} "
                          f"({g.seeds} seed{'s' * (g.seeds != 1)}): {g.verdict}")
    for problem in validation.problems:
        console.print(f"validation: {problem}", style="red")


class _QuietReporter:
    """Only failures, one plain line each."""

    def __enter__(self) -> _QuietReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __call__(self, event: Any) -> None:
        from autoscale.experiment.scheduler import RunFinished

        if isinstance(event, RunFinished) and event.status != "completed":
            click.echo(f"{event.label}: {event.error}" + (" (will retry)" if event.retry else ""), err=True)


class _LineReporter:
    """Plain lines for logs: each stage's start, each finished run, failures and notes (stderr).

    ``[3/7] ddo 1000000: web-x0.2 completed in 0.4s``: the count is the stage's finished runs
    (reused ones included) out of the runs it uses.
    """

    def __init__(self) -> None:
        self.done: dict[str, list[int]] = {}  # stage -> [done, total] runs
        self.started: dict[str, float] = {}  # run key -> when it started (if the executor gives no time)

    def __enter__(self) -> _LineReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __call__(self, event: Any) -> None:
        from autoscale.experiment.scheduler import Note, RunFinished, RunStarted, StageStarted

        if isinstance(event, StageStarted):
            self.done[event.stage] = [event.done, event.runs]
            reused = f", {event.done} already finished" if event.done else ""
            click.echo(f"{event.stage}: {event.runs} runs{reused}", err=True)
        elif isinstance(event, RunStarted):
            self.started[event.key] = time.monotonic()
        elif isinstance(event, RunFinished):
            started = self.started.pop(event.key, None)
            took = event.wall_time_s if event.wall_time_s else (
                None if started is None else time.monotonic() - started)
            counts = self.done.setdefault(event.stage, [0, 0])
            if event.status == "completed":
                counts[0] += 1
                when = "" if took is None else f" in {took:.1f}s"
                click.echo(f"[{counts[0]}/{counts[1]}] {event.label} completed{when}", err=True)
            else:
                retry = " (will retry)" if event.retry else ""
                click.echo(f"[{counts[0]}/{counts[1]}] {event.label} failed: {event.error}{retry}", err=True)
        elif isinstance(event, Note):
            click.echo(event.text, err=True)


class _RichReporter:
    """One bar per stage (runs), one per running run (tokens, tokens/s, ETA), notes as lines."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=False, refresh_per_second=4,
        )
        self.stages: dict[str, TaskID] = {}
        self.done: dict[str, list[int]] = {}  # stage -> [done, total] runs
        self.runs: dict[str, TaskID] = {}
        self.started = False  # the display starts with the first stage: bad input prints nothing else

    def __enter__(self) -> _RichReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.progress.stop()

    def __call__(self, event: Any) -> None:
        from autoscale.experiment.executors import RunProgress
        from autoscale.experiment.scheduler import Note, RunFinished, RunStarted, StageStarted

        p = self.progress
        if isinstance(event, StageStarted) and not self.started:
            p.start()
            self.started = True
        if isinstance(event, StageStarted):
            task = self.stages.get(event.stage)
            if task is None:
                task = p.add_task(f"[bold]{escape(event.stage)}", total=event.runs, count="", rate="")
                self.stages[event.stage] = task
            self.done[event.stage] = [event.done, event.runs]
            p.update(task, total=event.runs, completed=event.done, count=f"{event.done}/{event.runs} runs")
        elif isinstance(event, RunStarted):
            old = self.runs.pop(event.key, None)
            if old is not None:
                p.remove_task(old)
            name = event.label.split(": ", 1)[-1]
            attempt = f" (attempt {event.attempt})" if event.attempt > 1 else ""
            self.runs[event.key] = p.add_task(f"  {escape(name)}{attempt}", total=event.tokens, count="", rate="")
        elif isinstance(event, RunProgress):
            task = self.runs.get(event.key)
            if task is not None:
                rate = "" if event.tokens_per_s is None else f"{event.tokens_per_s:,.0f} tok/s"
                p.update(task, completed=event.tokens, count=f"{event.tokens:,} tok", rate=rate)
        elif isinstance(event, RunFinished):
            task = self.runs.pop(event.key, None)
            if task is not None:
                p.remove_task(task)
            if event.status == "completed":
                stage = self.stages.get(event.stage)
                if stage is not None:
                    counts = self.done[event.stage]
                    counts[0] += 1
                    p.update(stage, completed=counts[0], count=f"{counts[0]}/{counts[1]} runs")
            else:
                retry = " (will retry)" if event.retry else ""
                p.console.print(f"{event.label} failed: {event.error}{retry}", style="red")
        elif isinstance(event, Note):
            p.console.print(event.text, style="dim")


def _advice_table(ddo: list[dict[str, Any]]) -> Table:
    """Per DDO budget and domain: weight (interval), held, replicates needed for 3 SE and their tokens."""
    table = Table(title="DDO noise and design advice (replicates for the largest effect to stand 3 SE from zero)")
    for col in ("budget", "domain", "weight", "held", "replicates needed", "tokens"):
        table.add_column(col, justify="left" if col in ("domain", "held") else "right")
    for d in ddo:
        per = (d["cost"] or {}).get("per_domain") or {}
        for domain, w in d["weights"].items():
            interval = d["intervals"].get(domain)
            weight = f"{w:.3f}" + ("" if not interval else f" ({interval[0]:.3f}-{interval[1]:.3f})")
            need = d["needed"].get(domain)
            table.add_row(f"{d['budget']:.4g}", domain, weight, "held" if domain in d["held"] else "",
                          "-" if need is None else str(need), "-" if per.get(domain) is None else f"{per[domain]:.4g}")
    return table


@click.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(directory: str, as_json: bool) -> None:
    """Show what the experiment in DIRECTORY has done, is running, and what failed."""
    from autoscale.experiment.status import experiment_status

    info = experiment_status(Path(directory))
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    console = plain_console()
    holder = info["running_pid"]
    console.print(Text.assemble((info["directory"], "bold"), ": " + (
        f"`autoscale run` active (pid {holder})" if holder else "no `autoscale run` active")))
    stages = Table(title="stages")
    for col in ("stage", "status", "runs", "seeds", "detail"):
        stages.add_column(col)
    for s in info["stages"]:
        counts = ", ".join(f"{n} {k}" for k, n in s["runs"].items())
        stages.add_row(s["name"], s["status"], counts, str(s["seeds"]), s["detail"] or "")
    console.print(stages)
    if info["ddo"]:
        console.print(_advice_table(info["ddo"]))
        for d in info["ddo"]:
            gain, se = d["predicted_gain"], d["predicted_gain_se"]
            if gain is not None:
                unc = "unknown" if se is None else f"{se:.2%}"
                console.print(f"DDO {d['budget']:.4g}: predicted gain over the base mixture {gain:.2%} "
                              f"(uncertainty {unc}); {d['replicates']} replicate(s), noise "
                              + ("unknown" if d["noise"] is None else f"{d['noise']:.2%}"))
    for name, r in (info.get("downstream") or {}).items():
        scores = ", ".join(f"{t} {v['value']:.3f}" for t, v in r["tasks"].items())
        console.print(f"downstream {name}: average {r['average']:.3f} ({scores}; {r.get('seeds', 1)} seed(s))")
    runs = Table(title="runs")
    for col in ("run", "status", "tries", "tokens", "tok/s", "wall", "error"):
        runs.add_column(col, overflow="fold", no_wrap=col in ("status", "tries", "tokens", "tok/s", "wall"))
    for r in info["runs"]:
        wall = "" if r["wall_time_s"] is None else f"{r['wall_time_s']:.1f}s"
        rate = "" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:,.0f}"
        runs.add_row(f"{r['stage']}: {r['label']}", r["status"], str(r["attempts"]), f"{r['tokens']:,}", rate, wall,
                     r["error"] or "")
    console.print(runs)
    totals = ", ".join(f"{n} {k}" for k, n in info["totals"].items()) or "no runs yet"
    console.print(f"runs: {totals}")
    if info["totals"].get("failed"):
        console.print("failed runs are tried again by the next `autoscale run`")



@click.command()
@click.option("--out", type=click.Path(file_okay=False), default="docs/schema", show_default=True,
              help="Folder for the <file>.schema.json files.")
def schema(out: str) -> None:
    """Write the JSON Schemas of metrics.json (what your trainer writes for `executor: command`) and of
    the files `autoscale run` writes (experiment.json, summary.json, validation.json, each method's
    records): the typed records of `autoscale.experiment.records`."""
    from autoscale.atomic import write_text_atomic
    from autoscale.experiment.records import schemas

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in schemas().items():
        write_text_atomic(folder / name, json.dumps(content, indent=2, sort_keys=True) + "\n")
        click.echo(str(folder / name))


@click.command()
@click.argument("path", default="experiment.yaml", type=click.Path(dir_okay=False))
@click.option("--command", "own", is_flag=True, help="Your own trainer, run once per run (default: autoscale's).")
def init(path: str, own: bool) -> None:
    """Write a commented starter experiment to PATH (default experiment.yaml): autoscale's trainer on
    your corpus, or with --command your own trainer. An existing file is left alone."""
    from autoscale.atomic import write_text_atomic
    from autoscale.recipes.starter import STARTERS

    out = Path(path)
    if out.exists():
        raise AutoscaleError(f"{path} exists: give another path (it is left as it is)")
    if not out.parent.is_dir():
        raise AutoscaleError(f"{path}: folder {str(out.parent)!r} does not exist")
    write_text_atomic(out, STARTERS["command" if own else "ours"])
    click.echo(f"wrote {path}: edit it, then `autoscale run {path}`")
