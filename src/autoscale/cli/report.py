"""`autoscale report`, `autoscale demo` and `autoscale bench`: the visual report, the one-command
demo on the embedded corpus, and the benchmark of record."""

from __future__ import annotations

from pathlib import Path

import click

from autoscale.cli.experiment import run_with_progress


@click.command()
@click.argument("experiment_dir", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for report.html and the PNGs (default: EXPERIMENT_DIR/report).")
def report(experiment_dir: str, out: str | None) -> None:
    """Write PNG plots and one self-contained HTML page (plots embedded, tables of mixtures and
    validation results) for the experiment in EXPERIMENT_DIR (written by `autoscale run`)."""
    from autoscale.report.html import write_report
    from autoscale.report.load import load_experiment

    data = load_experiment(experiment_dir)
    files = write_report(data, out or Path(experiment_dir) / "report")
    click.echo(str(files.html))


@click.command()
@click.option("--quick", is_flag=True,
              help="4 domains, small budgets and a 2-layer proxy: a few minutes instead of ~20.")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="Where the demo writes its experiment (default: ./autoscale-demo, or ./autoscale-demo-quick).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every proxy run.")
@click.option("--corpus", type=click.Path(file_okay=False), default=None,
              help="Use this corpus folder (<domain>.jsonl files) instead of fetching the demo corpus.")
@click.option("--quiet", is_flag=True, help="No progress display; print the results only.")
def demo(quick: bool, directory: str | None, seed: int, corpus: str | None, quiet: bool) -> None:
    """Run AutoScale end to end on the embedded demo corpus: DDO at two small budgets, the
    extrapolated mixture at a 4x larger target, validation there against uniform, natural,
    the reused DDO mixture and a LLaMA-style mixture, and the report. Resumable: rerun the same
    command after an interruption."""
    from autoscale.cli.common import plain_console
    from autoscale.recipes.demo import demo_table, run_demo

    err = plain_console(stderr=True)
    default = "autoscale-demo-quick" if quick else "autoscale-demo"
    result = run_with_progress(
        lambda reporter: run_demo(
            Path(directory or default), quick=quick, seed=seed, corpus=corpus, reporter=reporter,
            say=lambda msg: err.print(msg, style="dim"),
        ),
        quiet, f"autoscale demo{' --quick' if quick else ''}",
    )
    plain_console(width=_width()).print(demo_table(result))


@click.command()
@click.option("--quick", is_flag=True, help="The same design at test size (a few minutes).")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="Benchmark folder (default: ./autoscale-bench, or ./autoscale-bench-quick).")
@click.option("--corpus", type=click.Path(file_okay=False), default=None,
              help="Use this corpus folder instead of fetching the demo corpus.")
@click.option("--methods", "methods", is_flag=True,
              help="Compare AutoScale, RegMix and Data Mixing Laws at the target instead (reuses the first search).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Markdown section for BENCHMARKS.md [default: bench/results/record.md, or methods.md].")
@click.option("--quiet", is_flag=True, help="No progress display.")
def bench(quick: bool, directory: str | None, corpus: str | None, methods: bool, out: str | None, quiet: bool) -> None:
    """Benchmark of record: repeated noise-aware searches, an oracle (DDO at the target) and the
    validation of every mixture with several seeds; gains with 95% intervals and verdicts, the
    fraction of the oracle's gain, the held-out-budget L1 and the search cost. With --methods:
    AutoScale, RegMix and Data Mixing Laws on the same runs, seeds and validation. Resumable: rerun
    the same command after an interruption."""
    from autoscale.cli.common import plain_console, write_atomic
    from autoscale.recipes.bench import QUICK_BENCH, RECORD, run_bench
    from autoscale.recipes.markdown import methods_markdown, record_markdown
    from autoscale.recipes.methods_bench import run_methods_bench

    err = plain_console(stderr=True)
    default = "autoscale-bench-quick" if quick else "autoscale-bench"
    command = ("autoscale bench" + (" --quick" if quick else "") + (" --methods" if methods else "")
               + (f" --dir {directory}" if directory else "") + (f" --corpus {corpus}" if corpus else ""))
    runner, render = (run_methods_bench, methods_markdown) if methods else (run_bench, record_markdown)
    result = run_with_progress(
        lambda reporter: runner(
            Path(directory or default), plan=QUICK_BENCH if quick else RECORD, corpus=corpus, reporter=reporter,
            say=lambda msg: err.print(msg, style="dim"),
        ),
        quiet, command,
    )
    out = out or f"bench/results/{'methods' if methods else 'record'}.md"
    text = render(result, command)
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out_path, text)
    click.echo(text)
    click.echo(f"written: {out_path}")


def _width() -> int | None:
    """The terminal's width, or 200 columns when printing to a file or pipe (rich's default, 80,
    would wrap the table)."""
    import sys

    return None if sys.stdout.isatty() else 200
