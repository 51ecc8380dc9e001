"""The table route of the random-mixture methods (RegMix, Data Mixing Laws, the mixture law):
`autoscale plan --method X` writes the design the pipeline would train, `autoscale fit --method X`
fits a filled table and `--score` scores other mixtures with the fit. The fit and the design are
the methods' own (`autoscale.methods.random_search`): this module only turns options and files
into their settings, context and tables.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click
import numpy as np

from autoscale.errors import AutoscaleError

#: the methods of the table route besides DDO
TABLE_METHODS = ("regmix", "dml", "mixture-law")
#: ``--score``'s column of the fit's objective (and its prefix for each validation set)
PREDICTED = "predicted"


def table_method(name: str) -> str:
    """``--method``: ddo or one of `TABLE_METHODS`, or one error line."""
    if name in ("ddo", *TABLE_METHODS):
        return name
    from autoscale.methods import METHODS

    why = " (it trains its own runs: use `autoscale run`)" if name in METHODS else ""
    raise AutoscaleError(f"--method: unknown method {name!r}{why}; one of ddo, {', '.join(TABLE_METHODS)}")


def search_options(command):
    """The options of a random-mixture method's section, shared by `plan` and `fit`."""
    for option in reversed((
        click.option("--prior", type=click.Choice(["uniform", "natural"]), default=None,
                     help="Centre of the random mixtures: uniform, or natural (the --store's token shares). "
                          "Default: natural with --store, else uniform."),
        click.option("--temperature", type=float, default=None, help="prior ** temperature (default 0.5)."),
        click.option("--min-weight", type=float, default=None, help="Sampled weights below this are 0 (default 1e-3)."),
        click.option("--floor", type=float, default=None,
                     help="Least weight of the chosen mixture (default 0.2/m; 0 is what RegMix and DML publish)."),
        click.option("--max-epochs", type=float, default=None,
                     help="Cap each domain at this many epochs of its unique tokens (needs --store)."),
        click.option("--store", "store_path", type=click.Path(file_okay=False), default=None,
                     help="Token store: its unique tokens give the natural prior and the --max-epochs caps."),
        click.option("--set", "assignments", multiple=True,
                     help="Any other setting of the method's config section: key=value (e.g. top_k=128)."),
    )):
        command = option(command)
    return command


@dataclass(frozen=True)
class SearchOptions:
    """What `search_options` collected."""

    prior: str | None = None
    temperature: float | None = None
    min_weight: float | None = None
    floor: float | None = None
    max_epochs: float | None = None
    store_path: str | None = None
    assignments: tuple[str, ...] = ()

    def given(self) -> list[str]:
        """The options given on the command line (as their flags)."""
        names = ("prior", "temperature", "min_weight", "floor", "max_epochs", "store_path", "assignments")
        return ["--" + n.removesuffix("_path").replace("assignments", "set").replace("_", "-")
                for n in names if getattr(self, n) not in (None, ())]

    def section(self) -> dict[str, Any]:
        """The settings these options give, as the method's config section would hold them."""
        import yaml

        out: dict[str, Any] = {k: v for k, v in (("prior", self.prior), ("temperature", self.temperature),
                                                  ("min_weight", self.min_weight), ("floor", self.floor),
                                                  ("max_epochs", self.max_epochs)) if v is not None}
        for item in self.assignments:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise AutoscaleError(f"--set: expected key=value, got {item!r}")
            out[key.strip()] = yaml.safe_load(value) if value.strip() else None
        return out


def method_of(name: str):
    from autoscale.methods import METHODS

    return METHODS[name]


def validated(name: str, section: Mapping[str, Any]):
    """The method's settings from ``section``, or one error line naming the bad setting."""
    from autoscale.experiment.config import settings_from_dict

    method = method_of(name)
    return settings_from_dict(method.Settings, dict(section), method.section)


def store_tokens(store_path: str | None, domains: Sequence[str]) -> dict[str, float] | None:
    """Unique training tokens per domain of a token store (None without one)."""
    if store_path is None:
        return None
    from autoscale.data import TokenStore

    store = TokenStore.open(store_path)
    unknown = [d for d in domains if d not in store.domains]
    if unknown:
        raise AutoscaleError(f"--store: domain {unknown[0]!r} is not in the store (domains: {', '.join(store.domains)})")
    return {d: float(store.unique_train_tokens(d)) for d in domains}


def context(domains: Sequence[str], settings: Any, options: SearchOptions, *, seed: int, metric: str = "perplexity",
            eval_weights: Mapping[str, float] | None = None, validation: Sequence[str] = (),
            target: float | None = None, max_tokens: Mapping[str, float] | None = None):
    """The `Context` a method sees on the table route: what the pipeline's would hold for the same
    settings and data (natural shares and caps from ``--store``, the objective from the options)."""
    from autoscale.experiment.setup import epoch_caps
    from autoscale.methods.base import Context
    from autoscale.speedup import Objective

    if options.max_epochs is not None and options.store_path is None:
        raise AutoscaleError("--max-epochs needs --store (the unique tokens it multiplies)")
    natural = store_tokens(options.store_path, domains)
    caps = epoch_caps(getattr(settings, "max_epochs", None), natural, domains) or {}
    for d, cap in (max_tokens or {}).items():
        caps[d] = min(cap, caps.get(d, math.inf))
    return Context(tuple(domains), seed, Objective(metric, dict(eval_weights) if eval_weights else None),
                   tuple(validation), natural=natural, caps=caps or None, target=target)


def design_table(name: str, settings: Any, ctx, eval_names: Sequence[str]):
    """The runs table of the method's design for ``ctx.seed``: every run its stages would train, with
    empty eval cells to fill in (a row per run; with several budgets, rows named ``<budget> mix 001``)."""
    from autoscale.ddo.runs import RunsTable
    from autoscale.tokens import budget_name

    stages = method_of(name).stages(settings, ctx)
    rows = [(f"{budget_name(s.budget)} {r.label}" if len(stages) > 1 else (r.row or r.label), r)
            for s in stages for r in s.runs]
    tokens = np.array([[r.tokens[d] for d in ctx.domains] for _, r in rows], dtype=float)
    return RunsTable(tuple(label for label, _ in rows), ctx.domains, tokens, tuple(eval_names),
                     np.full((len(rows), len(eval_names)), np.nan), np.array([r.seed for _, r in rows], dtype=np.int64))


# -- scoring ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MixturesToScore:
    """A CSV of mixtures to score: its header and rows as read, and ``tokens`` ``[K, m]`` in the
    fit's domain order."""

    header: list[str]
    rows: list[list[str]]
    tokens: np.ndarray


def read_mixtures(text: str, domains: Sequence[str], source: str) -> MixturesToScore:
    """Parse a CSV with ``tokens.<domain>`` columns (others are kept as they are): its domains must
    be the fit's, each cell a finite number >= 0, each row's total positive."""
    from autoscale.ddo.runs import TOKENS_PREFIX

    rows = [r for r in csv.reader(io.StringIO(text.lstrip("\ufeff"))) if any(c.strip() for c in r)]
    if not rows:
        raise AutoscaleError(f"{source} is empty")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    columns = {h[len(TOKENS_PREFIX):].strip(): j for j, h in enumerate(header) if h.startswith(TOKENS_PREFIX)}
    if set(columns) != set(domains):
        raise AutoscaleError(f"{source}: its domains ({', '.join(columns) or 'no tokens.<domain> columns'}) are not "
                             f"the fit's ({', '.join(domains)})")
    if not body:
        raise AutoscaleError(f"{source} has a header but no mixtures")
    tokens = np.empty((len(body), len(domains)))
    for i, row in enumerate(body):
        if len(row) != len(header):
            raise AutoscaleError(f"{source}, row {i + 1}: {len(row)} cells, the header has {len(header)}")
        for k, d in enumerate(domains):
            cell = row[columns[d]].strip()
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if not (math.isfinite(value) and value >= 0):
                raise AutoscaleError(f"{source}, row {i + 1}: tokens.{d} must be a finite number >= 0, got {cell!r}")
            tokens[i, k] = value
        if not tokens[i].sum() > 0:
            raise AutoscaleError(f"{source}, row {i + 1}: no tokens")
    return MixturesToScore(header, body, tokens)


def scores_csv(mixtures: MixturesToScore, columns: Mapping[str, Sequence[Any]]) -> str:
    """The input table with ``columns`` (name -> one value per row) appended."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*mixtures.header, *columns])
    for i, row in enumerate(mixtures.rows):
        writer.writerow([*row, *(_cell(values[i]) for values in columns.values())])
    return out.getvalue()


def _cell(value: Any) -> str:
    return f"{value:.8g}" if isinstance(value, (float, np.floating)) else str(value)
