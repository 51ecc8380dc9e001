"""`autoscale train`: train one proxy model on a mixture and write RUN_DIR/metrics.json.

    autoscale train --mixture mixture.json --budget 2e5 --out runs/base --config proxy.yaml

Data parallel on N processes (gloo on CPU, NCCL on GPUs):

    torchrun --nproc_per_node N -m autoscale train --mixture ... --out ...
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from autoscale.cli.common import parse_tokens, read_mixture
from autoscale.errors import AutoscaleError
from autoscale.train.config import ProxyConfig


@click.command()
@click.option("--mixture", "mixture_path", type=click.Path(dir_okay=False), required=True,
              help="Mixture JSON ({'tokens': {domain: tokens}}); only its weights are used with --budget.")
@click.option("--budget", default=None, help="Total training tokens (e.g. 2e5, 200k); default: the mixture's.")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True,
              help="Run folder: metrics.json and checkpoint.pt go here; an interrupted run resumes.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Proxy config YAML (store, model, train, eval); default settings without it.")
@click.option("--store", "store_path", type=click.Path(file_okay=False), default=None,
              help="Token store folder (overrides the config's 'store').")
@click.option("--seed", type=int, default=None, help="Override train.seed.")
@click.option("--device", default=None, help="Override train.device (auto, cpu, cuda, cuda:N).")
@click.option("--quiet", is_flag=True, help="No progress bar, no summary.")
def train(mixture_path, budget, out, config_path, store_path, seed, device, quiet):
    """Train one proxy model on a mixture and write OUT/metrics.json."""
    mixture = read_mixture(mixture_path)
    if budget is not None:
        mixture = mixture.scaled_to(parse_tokens(budget))
    config = ProxyConfig.from_yaml(config_path) if config_path else ProxyConfig()
    overrides = {k: v for k, v in (("seed", seed), ("device", device)) if v is not None}
    if overrides:
        config = config.replace(train=overrides)
    store = Path(store_path) if store_path else config.store
    if store is None:
        raise AutoscaleError("no token store: give --store or 'store' in the --config file")

    from autoscale.train.loop import train_run  # torch: imported only once the inputs are valid

    rank0 = os.environ.get("RANK", "0") == "0"
    show = rank0 and not quiet
    if show and sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                   TimeRemainingColumn())
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task("train", total=None, rate="")

            def progress(step: int, total: int, tokens: int, rate: float) -> None:
                bar.update(task, completed=step, total=total, rate=f"{rate:,.0f} tok/s")

            metrics = train_run(store, mixture.tokens, config, out, progress=progress)
    else:
        metrics = train_run(store, mixture.tokens, config, out)
    if not metrics.usable:
        raise AutoscaleError(f"training diverged at step {metrics.diverged_at_step} (see {out}/metrics.json)")
    if not show:
        return
    click.echo(f"{metrics.status}: {out}/metrics.json  ({metrics.params:,} params, "
               f"{sum(metrics.tokens_per_domain.values()):,} tokens, {metrics.tokens_per_s or 0:,.0f} tok/s)")
    for domain, e in metrics.final.items():
        click.echo(f"  {domain:<16} loss {e.loss:.4f}  perplexity {e.perplexity:.2f}")


@click.command("eval")
@click.argument("run_dir", type=click.Path(file_okay=False), required=False)
@click.option("--tasks", required=True, help="Comma-separated lm-eval tasks: autoscale's local ones (autoscale_wordcloze), "
              "your own (--include-path) or standard tasks whose datasets are in the Hugging Face cache.")
@click.option("--include-path", type=click.Path(), default=None,
              help="A folder of your own lm-eval task YAMLs (lm-eval's --include_path).")
@click.option("--hf-model", type=click.Path(), default=None,
              help="Score a Hugging Face causal LM folder (save_pretrained, with its tokenizer) instead of a run.")
@click.option("--num-fewshot", type=click.IntRange(min=0), default=0, show_default=True, help="Few-shot examples.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Score only the first N documents per task.")
@click.option("--store", "store_path", type=click.Path(file_okay=False), default=None,
              help="The run's token store (its tokenizer); default: the experiment's, for a run inside one.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def evaluate(run_dir, tasks, include_path, hf_model, num_fewshot, limit, store_path, as_json):
    """Score a finished run's kept weights (RUN_DIR), or a Hugging Face model folder (--hf-model), on
    downstream tasks through lm-evaluation-harness (cached in the folder's downstream/, keyed by the
    weights, the tasks' definitions, the few-shot count, the limit and the harness version)."""
    import json

    from autoscale.train.downstream import evaluate_hf_model, evaluate_run

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if (run_dir is None) == (hf_model is None):
        raise click.UsageError("give a run folder (RUN_DIR) or --hf-model DIR: one of the two")
    if hf_model is not None:
        if store_path is not None:
            raise click.UsageError("--store is for a run of autoscale's trainer: an --hf-model folder has its tokenizer")
        if not Path(hf_model).is_dir():
            raise AutoscaleError(f"model folder {hf_model!r} does not exist")
        result = evaluate_hf_model(hf_model, names, num_fewshot=num_fewshot, limit=limit, include_path=include_path)
    else:
        from autoscale.data.store import TokenStore

        run = Path(run_dir)
        if not run.is_dir():
            raise AutoscaleError(f"run folder {run_dir!r} does not exist")
        store = TokenStore.open(store_path or _experiment_store(run))
        result = evaluate_run(run, store, names, num_fewshot=num_fewshot, limit=limit, include_path=include_path)
    if "note" in result:
        click.echo(f"note: {result['note']}", err=True)
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    for name, r in result["tasks"].items():
        stderr = "" if r["stderr"] is None else f" +- {r['stderr']:.3f}"
        click.echo(f"{name}: {r['metric']} {r['value']:.3f}{stderr}")
    click.echo(f"average: {result['average']:.3f}{' (cached)' if result['cached'] else ''}")


def _experiment_store(run: Path) -> str:
    """The token store of the experiment a run folder belongs to (DIR/runs/<key>/)."""
    from autoscale.experiment.folder import ExperimentFolder

    folder = ExperimentFolder(run.resolve().parent.parent)
    record = folder.read_json(folder.experiment)
    store = ((record or {}).get("config") or {}).get("data", {}).get("store")
    if record is None:
        raise AutoscaleError(f"{run} is not inside an experiment folder: give its token store with --store")
    if not store:  # an experiment of the user's trainer: its runs hold no weights of ours
        raise AutoscaleError(f"{run} is a run of your own trainer (an experiment without a token store): score the "
                             "model it saved with --hf-model DIR")
    return str(store)


@click.command()
@click.argument("run", metavar="RUN_DIR", type=click.Path(exists=True))
def check(run: str) -> None:
    """Validate RUN_DIR/metrics.json (or a metrics.json file) as an experiment reads it: each problem
    on a line of its own, exit status 2 when there is one. Run it on your trainer's output before an
    experiment depends on it; the contract is docs/schema/metrics.schema.json."""
    from autoscale.train.metrics import check_metrics

    path = Path(run) / "metrics.json" if Path(run).is_dir() else Path(run)
    metrics, problems = check_metrics(path)
    if metrics is None:
        for problem in problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(2)
    domains = ", ".join(metrics.final)
    curve = f"a curve of {len(metrics.curve)} points" if metrics.curve else "no curve (no speed-ups from it)"
    click.echo(f"ok: {path}: {metrics.status}, final on {domains}; {curve}")
