"""`autoscale export`: a mixture in the config format of a pre-training stack."""

from __future__ import annotations

import click

from autoscale.cli.common import parse_assignments, read_mixture, write_atomic
from autoscale.export import DEFAULT_GLOBAL_BATCH_TOKENS, FORMATS, export_mixture


@click.command()
@click.argument("mixture_json", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="Target config format.")
@click.option("--paths", default=None, help="Data location per domain: d=PATH,... (default: the domain name).")
@click.option("--max-epochs", type=float, default=None, help="OLMo-core max_repetition_ratio (default 1).")
@click.option(
    "--global-batch-tokens", type=int, default=DEFAULT_GLOBAL_BATCH_TOKENS, show_default=True,
    help="OLMo-core global_batch_size, in tokens.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed written to the hf config.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write here instead of stdout.")
def export(mixture_json, fmt, paths, max_epochs, global_batch_tokens, seed, out):
    """Write MIXTURE_JSON as Megatron data-path pairs, an OLMo-core source mixture, HF
    interleave_datasets probabilities, or plain YAML/JSON."""
    mixture = read_mixture(mixture_json)
    where = parse_assignments(paths, "--paths", cast=str, known=mixture.domains)
    text = export_mixture(
        mixture, fmt, where, max_epochs=max_epochs, global_batch_tokens=global_batch_tokens, seed=seed
    )
    if out:
        write_atomic(out, text)
    else:
        click.echo(text, nl=False)
