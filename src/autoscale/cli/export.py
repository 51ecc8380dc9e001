"""`autoscale export`: a mixture in the config format of a pre-training stack."""

from __future__ import annotations

import os

import click

from autoscale.cli.common import (
    experiment_mixture,
    parse_assignments,
    parse_tokens,
    read_mixture,
    write_atomic,
)
from autoscale.errors import AutoscaleError
from autoscale.export import (
    DEFAULT_GLOBAL_BATCH_TOKENS,
    FORMATS,
    HF_NOTE_PER_EXAMPLE,
    STOPPING_STRATEGIES,
    export_mixture,
)


def store_doc_tokens(path: str, domains: tuple[str, ...]) -> dict[str, float]:
    """Mean tokens per training document (end-of-text token included) of each domain in the store."""
    from autoscale.data.store import TokenStore

    stats = {s.domain: s for s in TokenStore.open(path, verify=False).stats()}
    missing = [d for d in domains if d not in stats]
    if missing:
        raise AutoscaleError(
            f"--store: domain {missing[0]!r} is not in the token store {path} (store domains: {', '.join(stats)})"
        )
    return {d: stats[d].unique_train_tokens / max(1, stats[d].train_documents) for d in domains}


@click.command()
@click.argument("mixture_json", metavar="MIXTURE", type=click.Path(exists=True))
@click.option("--method", default=None,
              help="With an experiment folder: whose mixture at the target (default: autoscale).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="Target config format.")
@click.option("--paths", default=None, help="Data location per domain: d=PATH,... (default: the domain name).")
@click.option("--max-epochs", type=float, default=None, help="OLMo-core max_repetition_ratio (default 1).")
@click.option(
    "--global-batch-tokens", default=str(DEFAULT_GLOBAL_BATCH_TOKENS), show_default=True,
    help="OLMo-core global_batch_size, in tokens (a whole number; suffixes as in 4M or 4194304).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed written to the hf config.")
@click.option(
    "--store", "store_dir", type=click.Path(file_okay=False), default=None,
    help="hf: turn token weights into per-document probabilities with the mean document length of each "
    "domain in this token store.",
)
@click.option(
    "--doc-tokens", default=None,
    help="hf: the same conversion with mean tokens per document given by hand: d=N,... (e.g. web=850,code=1.2k).",
)
@click.option(
    "--stopping-strategy", type=click.Choice(STOPPING_STRATEGIES), default="first_exhausted", show_default=True,
    help="hf: first_exhausted ends the stream when the first dataset runs out (no repeats); all_exhausted "
    "repeats datasets until every one is seen whole (oversampling). Both keep the shares.",
)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write here instead of stdout.")
def export(mixture_json, method, fmt, paths, max_epochs, global_batch_tokens, seed, store_dir, doc_tokens,
           stopping_strategy, out):
    """Write MIXTURE as Megatron data-path pairs, an OLMo-core source mixture, HF
    interleave_datasets probabilities, or plain YAML/JSON.

    MIXTURE: a mixture JSON (`fit --json`), a result file of an experiment (`<method>_target.json`,
    `<method>_<budget>.json`), or an experiment folder (with --method: that method's mixture at the
    target).

    hf probabilities are per document: give --store or --doc-tokens so that the realised token
    shares are the mixture's weights (otherwise they are right only for equal document lengths)."""
    if os.path.isdir(mixture_json):
        mixture = experiment_mixture(mixture_json, method)
    elif method is not None:
        raise AutoscaleError("--method picks a mixture from an experiment folder; MIXTURE is a file")
    else:
        mixture = read_mixture(mixture_json)
    where = parse_assignments(paths, "--paths", cast=str, known=mixture.domains)
    global_batch_tokens = parse_tokens(global_batch_tokens, "--global-batch-tokens", whole=True)
    if (store_dir or doc_tokens) and fmt != "hf":
        raise AutoscaleError("--store and --doc-tokens apply to --format hf only")
    if store_dir and doc_tokens:
        raise AutoscaleError("give --store or --doc-tokens, not both")
    lengths = None
    if store_dir:
        lengths = store_doc_tokens(store_dir, mixture.domains)
    elif doc_tokens:
        lengths = parse_assignments(
            doc_tokens, "--doc-tokens", cast=lambda v: parse_tokens(v, "--doc-tokens"), known=mixture.domains
        )
        missing = [d for d in mixture.domains if d not in lengths]
        if missing:
            raise AutoscaleError(f"--doc-tokens: no mean length for domain {missing[0]!r} (every domain needs one)")
    text = export_mixture(
        mixture, fmt, where, max_epochs=max_epochs, global_batch_tokens=global_batch_tokens, seed=seed,
        doc_tokens=lengths, stopping_strategy=stopping_strategy,
    )
    if out:
        write_atomic(out, text)
    else:
        click.echo(text, nl=False)
    if fmt == "hf":
        if lengths is None:
            click.echo(f"note: {HF_NOTE_PER_EXAMPLE}", err=True)
        else:
            shown = ", ".join(f"{d}={lengths[d]:.0f}" for d in mixture.domains)
            click.echo(f"note: probabilities converted to per document with mean tokens per document {shown}", err=True)
