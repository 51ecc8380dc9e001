"""`autoscale plan`, `fit` and `predict`: the DDO design, its fit, and the AutoScale extrapolation.

    autoscale plan --domains web,code,books --budget 1.2e9 --out runs.csv
    # ... train the runs, fill the eval.* columns ...
    autoscale fit runs.csv --json --out ddo_1.2B.json
    autoscale predict ddo_0.3B.json ddo_1.2B.json --target 10B --out mix_10B.json

Token amounts accept suffixes: 300M, 1.2B (= 1.2e9), 5k. Every output file is written atomically;
bad input is one line on stderr and exit status 2, with nothing written.
"""

from __future__ import annotations

import click

from autoscale.cli.common import parse_assignments, parse_tokens, read_mixture, write_atomic
from autoscale.errors import AutoscaleError


def _tokens_option(option: str):
    return lambda text: parse_tokens(text, option)


def _assignments(values: tuple[str, ...], option: str, cast, known: tuple[str, ...]) -> dict:
    # repeated options and comma lists are the same thing: --max-tokens a=1 --max-tokens b=2
    text = ",".join(v for v in values if v and v.strip())
    return parse_assignments(text or None, option, cast=cast, known=known)


def _names(text: str, option: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise AutoscaleError(f"{option}: empty name in {text!r}")
    return names


def _ratios(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(r) for r in _names(text, "--ratios"))
    except ValueError:
        raise AutoscaleError(f"--ratios: expected numbers like 0.2,3, got {text!r}") from None


def _console():
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console.width = 140  # pipes and captured output: no cramped columns
    return console


def fmt_tokens(n: float) -> str:
    """Human-readable token count: 1.2B, 171.4M, 12.3k."""
    n = float(f"{n:.4g}")  # 999.99 prints as 1k, not 1000
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.4g}{unit}"
    return f"{n:.4g}"


def _emit(mixture, warnings: list[str], as_json: bool, out: str | None, print_table) -> None:
    """Write --out (atomically), then either the bare JSON (warnings to stderr) or the table."""
    text = mixture.to_json() + "\n"
    if out:
        write_atomic(out, text)
    if as_json:
        click.echo(text, nl=False)
        for line in warnings:
            click.echo(f"warning: {line}", err=True)
        return
    print_table()
    if out:
        click.echo(f"wrote {out}")


# -- plan ------------------------------------------------------------------------------------------


@click.command()
@click.option("--domains", default=None, help="Training domains, comma-separated (default: the --base mixture's).")
@click.option("--budget", default=None, help="Tokens of the base run, e.g. 1.2e9 or 1.2B (default: the --base budget).")
@click.option("--base", "base_path", type=click.Path(dir_okay=False), default=None,
              help="Base mixture JSON (default: uniform over the domains).")
@click.option("--ratios", default="0.2,3", show_default=True,
              help="Multipliers of one domain's base tokens, one run each per domain.")
@click.option("--eval-names", default=None, help="Validation sets, comma-separated (default: one per domain).")
@click.option("--replicates", type=int, default=1, show_default=True,
              help="Train the whole design K times, with seeds --seed .. --seed+K-1 (the seed column).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the first replicate.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the CSV here instead of stdout.")
def plan(domains, budget, base_path, ratios, eval_names, replicates, seed, out):
    """Write the DDO runs table: the base run, then for each ratio and domain a run with only that
    domain's tokens scaled (the others held fixed). Fill its eval.* columns, then run `autoscale fit`."""
    from autoscale.ddo.plan import plan_ddo

    table = plan_ddo(
        _names(domains, "--domains") if domains else None,
        budget=parse_tokens(budget, "--budget") if budget is not None else None,
        base=read_mixture(base_path) if base_path else None,
        ratios=_ratios(ratios),
        eval_names=_names(eval_names, "--eval-names") if eval_names else (),
        replicates=replicates,
        seed=seed,
    )
    if out:
        table.to_csv(out)
        m, r = len(table.domains), (table.n_runs // replicates - 1) // len(table.domains)
        reps = f" x {replicates} seeds" if replicates > 1 else ""
        click.echo(f"wrote {table.n_runs} runs ((base + {m} domains x {r} ratios){reps}) to {out}")
    else:
        click.echo(table.format_csv(), nl=False)


# -- fit -------------------------------------------------------------------------------------------


@click.command()
@click.argument("runs_csv")
@click.option("--min-ratio", type=float, default=0.2, show_default=True,
              help="Floor per domain: this multiple of its base share of the budget (0.2 as published).")
@click.option("--budget", default=None, help="Tokens to allocate (default: the base run's total).")
@click.option("--max-tokens", multiple=True,
              help="Caps in tokens: d=N,... (e.g. unique tokens x allowed epochs).")
@click.option("--eval-weights", default=None, help="Objective = weighted mean of eval columns: name=w,...")
@click.option("--bootstrap", type=click.IntRange(min=0), default=0,
              help="Resample replicate runs this many times for an interval per weight (needs replicates).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--json", "as_json", is_flag=True, help="Print only the mixture JSON to stdout.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the mixture JSON here.")
def fit(runs_csv, min_ratio, budget, max_tokens, eval_weights, bootstrap, seed, as_json, out):
    """Fit y = (x + a)^(-b) + c per domain to a filled runs table and allocate the budget.

    x is a domain's tokens over the base run's, y the objective (mean of the eval columns) over the
    base run's. Three amounts per domain are interpolated exactly, more are fitted by least squares.
    The allocation is the exact KKT optimum with floors (--min-ratio) and caps (--max-tokens).
    --bootstrap needs replicate rows (same tokens, other seeds) and is an error without them.
    """
    from autoscale.ddo.fit import fit_ddo
    from autoscale.ddo.runs import RunsTable

    table = RunsTable.read_csv(runs_csv)
    result = fit_ddo(
        table,
        min_ratio=min_ratio,
        budget=parse_tokens(budget, "--budget") if budget is not None else None,
        max_tokens=_assignments(max_tokens, "--max-tokens", _tokens_option("--max-tokens"), table.domains),
        eval_weights=_assignments((eval_weights,), "--eval-weights", float, table.eval_names) or None,
        bootstrap=bootstrap,
        seed=seed,
    )
    _emit(result.mixture, result.warnings, as_json, out, lambda: _print_fit(result))


def _print_fit(result) -> None:
    from rich.table import Table

    weights = result.mixture.weights
    noise = result.noise
    with_r2 = any(f.r2 is not None for f in result.fits.values())
    table = Table(title=f"DDO optimum at {fmt_tokens(result.budget)} tokens")
    known = noise is not None and noise.known
    for name in ("domain", "a", "b", "c", *(["R²"] if with_r2 else []), "base tokens", "optimal tokens", "weight",
                 *(["95% interval"] if result.intervals else []), "bound",
                 *(["effects (95% CI)", "replicates for 3 SE"] if known else [])):
        table.add_column(name, justify="left" if name in ("domain", "bound", "effects (95% CI)") else "right")
    for d, f in result.fits.items():
        row = [d, f"{f.a:.5f}", f"{f.b:.5f}", f"{f.c:.5f}"]
        if with_r2:
            row.append("-" if f.r2 is None else f"{f.r2:.4f}")
        row += [fmt_tokens(result.base.tokens[d]), fmt_tokens(result.mixture.tokens[d]), f"{weights[d]:.4f}"]
        if result.intervals:
            lo, hi = result.intervals[d]
            row.append(f"{lo:.4f}-{hi:.4f}")
        row.append("held" if d in result.held else result.bounded.get(d, ""))
        if known:
            row += [effects_line(noise.effects[d]), str(noise.needed.get(d) or "-")]
        table.add_row(*row)
    console = _console()
    console.print(table)
    change = result.predicted_objective / result.base_objective - 1
    click.echo(f"predicted objective {result.predicted_objective:.4f} vs base {result.base_objective:.4f} "
               f"({change:+.2%})")
    if known:  # unknown noise is one of the warnings below
        click.echo(noise_line(noise))
    for line in result.warnings:
        click.echo(f"warning: {line}")


def effects_line(effects) -> str:
    """``x0.2 +3.1% (+1.0..+5.2), x3 -2.0% (...)``: each perturbation's effect on the objective."""
    parts = []
    for e in effects:
        ci = e.interval
        text = f"x{e.ratio:.3g} {e.mean:+.1%}"
        if ci is not None:
            text += f" ({ci[0] * 100:+.1f}..{ci[1] * 100:+.1f})"
        parts.append(text + ("*" if e.significant else ""))
    return ", ".join(parts)


def noise_line(noise) -> str:
    kind = "paired within seeds" if noise.paired else "unpaired"
    return (f"noise: run-to-run SD {noise.noise:.2%} of the objective, {noise.replicates} replicates, effects "
            f"{kind} (* = stands out at 95%)")


# -- predict ---------------------------------------------------------------------------------------


@click.command()
@click.argument("mixtures", nargs=-1, required=True)
@click.option("--target", default=None,
              help="Total tokens wanted, e.g. 10B: solves the law for s (not below the smallest input budget).")
@click.option("--steps", type=int, default=None, help="Apply the paper's rule N = B^2 / A this many times.")
@click.option("--min-weight", type=float, default=None, help="Floor on every weight (only when given).")
@click.option("--max-tokens", multiple=True, help="Caps in tokens at the target: d=N,... (only when given).")
@click.option("--offsets", is_flag=True,
              help="Apply the law to tokens + the DDO offsets a_i x base tokens stored by `fit --json` "
                   "(exact for the (n + a)^(-b) model); default: raw tokens, as in the paper.")
@click.option("--json", "as_json", is_flag=True, help="Print only the mixture JSON to stdout.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the mixture JSON here.")
def predict(mixtures, target, steps, min_weight, max_tokens, offsets, as_json, out):
    """Extrapolate optimal mixtures at two or more budgets (JSON files) to a larger budget.

    Two mixtures A < B: N_i(s) = A_i (B_i / A_i)^s per domain, on token amounts; --steps K is
    s = K + 1 (K = 1 is the paper's B^2 / A); --target T solves sum_i N_i(s) = T. Three or more:
    a least-squares line of log tokens in one shared scale parameter (said in the output). Floors
    and caps re-allocate at the target along the law instead of clipping and renormalising.

    Inputs written by `fit --json` carry what DDO learnt about noise: domains it held at their base
    share stay there at the target, and with `fit --bootstrap` on each input the paired draws are
    extrapolated too, giving a 95% interval per target weight.
    """
    from autoscale.extrapolate import extrapolate, extrapolate_draws, held_weights
    from autoscale.mixture import Mixture

    if len(mixtures) < 2:
        raise AutoscaleError("predict needs at least two mixture files (optimal mixtures at different budgets)")
    loaded = [read_mixture(p) for p in mixtures]
    options = dict(
        target=parse_tokens(target, "--target") if target is not None else None,
        steps=steps,
        min_weight=min_weight,
        max_tokens=_assignments(max_tokens, "--max-tokens", _tokens_option("--max-tokens"), loaded[0].domains),
        offsets=offsets,
        hold=held_weights(loaded),
    )
    result = extrapolate(loaded, **options)
    mixture, intervals = result.mixture, {}
    draws = [mx.metadata.get("bootstrap_draws") for mx in loaded]
    if all(isinstance(d, list) and d for d in draws):
        arrays = [_draws(d, mx, p) for d, mx, p in zip(draws, loaded, mixtures, strict=True)]
        values, intervals = extrapolate_draws(loaded, arrays, **options)
        mixture = Mixture(mixture.tokens, dict(mixture.metadata) | {
            "intervals": {d: list(v) for d, v in intervals.items()}, "bootstrap_draws": values.round(8).tolist()})
    _emit(mixture, result.warnings, as_json, out, lambda: _print_predict(result, loaded, intervals))


def _draws(rows, mixture, path: str):
    from autoscale.ddo.fit import draws_from_rows

    try:
        return draws_from_rows(rows, len(mixture.domains))
    except AutoscaleError as exc:
        raise AutoscaleError(f"mixture {path!r}: {exc}") from None


def _print_predict(result, loaded, intervals) -> None:
    from rich.table import Table

    mixture = result.mixture
    table = Table(title=f"AutoScale mixture at {fmt_tokens(mixture.budget)} tokens (s = {result.s:.4g})")
    table.add_column("domain")
    order = sorted(range(len(loaded)), key=lambda k: loaded[k].budget)
    for k in order:
        table.add_column(f"{fmt_tokens(loaded[k].budget)} tokens", justify="right")
    for name in ("predicted tokens", "weight", *(["95% interval"] if intervals else [])):
        table.add_column(name, justify="right")
    table.add_column("bound")
    for d in mixture.domains:
        interval = [f"{intervals[d][0]:.4f}-{intervals[d][1]:.4f}"] if intervals else []
        bound = "held" if d in result.held else result.bounded.get(d, "")
        table.add_row(d, *(fmt_tokens(loaded[k].tokens[d]) for k in order), fmt_tokens(mixture.tokens[d]),
                      f"{mixture.weights[d]:.4f}", *interval, bound)
    console = _console()
    console.print(table)
    click.echo(f"law: {result.method}")
    for line in result.warnings:
        click.echo(f"warning: {line}")

