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
import numpy as np

from autoscale.cli.common import (
    parse_assignments,
    parse_tokens,
    plain_console,
    read_mixture,
    read_text,
    write_atomic,
)
from autoscale.cli.methods_table import PREDICTED, SearchOptions, search_options, table_method
from autoscale.errors import AutoscaleError
from autoscale.tokens import format_tokens


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
    console = plain_console(soft_wrap=False)
    if not console.is_terminal:
        console.width = 140  # pipes and captured output: no cramped columns
    return console


def fmt_tokens(n: float) -> str:
    """Token counts in these tables: 1.2B, 171.4M, 12.3k (4 significant digits)."""
    return format_tokens(n, digits=4)


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
@click.option("--method", default="ddo", show_default=True,
              help="Whose design: ddo (base + perturbations), or a random-mixture method's: regmix, dml, mixture-law.")
@click.option("--domains", default=None, help="Training domains, comma-separated (default: the --base mixture's).")
@click.option("--budget", default=None, help="Tokens of the base run, e.g. 1.2e9 or 1.2B (default: the --base budget); "
                                             "regmix and dml: tokens of each run.")
@click.option("--budgets", default=None, help="mixture-law: the budgets, comma-separated (3 or more spanning 4x).")
@click.option("--runs", type=click.IntRange(min=1), default=None,
              help="regmix, dml, mixture-law: mixtures (default: the method's, e.g. 16m for regmix).")
@click.option("--base", "base_path", type=click.Path(dir_okay=False), default=None,
              help="ddo: base mixture JSON (default: uniform over the domains).")
@click.option("--ratios", default=None, help="ddo: multipliers of one domain's base tokens, one run each per domain "
                                             "(default 0.2,3).")
@click.option("--eval-names", default=None, help="Validation sets, comma-separated (default: one per domain).")
@click.option("--replicates", type=int, default=None,
              help="ddo: train the whole design K times, with seeds --seed .. --seed+K-1 (the seed column).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the design (the first replicate's).")
@search_options
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the CSV here instead of stdout.")
def plan(method, domains, budget, budgets, runs, base_path, ratios, eval_names, replicates, seed, out, **search):
    """Write the runs table of a design to fill in, then run `autoscale fit` on it.

    ddo (default): the base run, then for each ratio and domain a run with only that domain's tokens
    scaled (the others held fixed). regmix, dml, mixture-law: the random mixtures `autoscale run`
    would train for --seed and the same settings (--set key=value for any other setting of the
    method's config section), at --budget or, for the mixture law, at each of --budgets.
    """
    method, options = table_method(method), SearchOptions(**search)
    names = _names(eval_names, "--eval-names") if eval_names else ()
    if method != "ddo":
        _refuse({"--base": base_path, "--ratios": ratios, "--replicates": replicates}, method)
        table = _random_design(method, domains, budget, budgets, runs, names, seed, options)
    else:
        _refuse({"--budgets": budgets, "--runs": runs, **dict.fromkeys(options.given(), True)}, method)
        from autoscale.ddo.plan import plan_ddo

        replicates = 1 if replicates is None else replicates
        table = plan_ddo(
            _names(domains, "--domains") if domains else None,
            budget=parse_tokens(budget, "--budget") if budget is not None else None,
            base=read_mixture(base_path) if base_path else None,
            ratios=_ratios(ratios or "0.2,3"),
            eval_names=names,
            replicates=replicates,
            seed=seed,
        )
    if not out:
        click.echo(table.format_csv(), nl=False)
        return
    table.to_csv(out)
    if method == "ddo":
        m, r = len(table.domains), (table.n_runs // replicates - 1) // len(table.domains)
        reps = f" x {replicates} seeds" if replicates > 1 else ""
        click.echo(f"wrote {table.n_runs} runs ((base + {m} domains x {r} ratios){reps}) to {out}")
    else:
        click.echo(f"wrote {table.n_runs} runs ({method}'s random mixtures, seed {seed}) to {out}")


def _refuse(given: dict, method: str) -> None:
    """One error line for an option that ``method`` does not take."""
    for option, value in given.items():
        if value not in (None, (), False):
            raise AutoscaleError(f"{option} does not apply to --method {method}")


def _random_design(method, domains, budget, budgets, runs, eval_names, seed, options):
    from autoscale.cli import methods_table as mt

    if domains is None:
        raise AutoscaleError(f"--method {method} needs --domains")
    names = _names(domains, "--domains")
    section = options.section()
    if method == "mixture-law":
        if budget is not None:
            raise AutoscaleError("--method mixture-law takes --budgets (3 or more), not --budget")
        if budgets is None:
            raise AutoscaleError("--method mixture-law needs --budgets, e.g. 1M,2M,4M")
        section["budgets"] = [parse_tokens(b, "--budgets") for b in _names(budgets, "--budgets")]
    else:
        if budgets is not None:
            raise AutoscaleError(f"--method {method} takes --budget, not --budgets")
        if budget is None:
            raise AutoscaleError(f"--method {method} needs --budget (tokens of each run)")
        section["budget"] = parse_tokens(budget, "--budget")
    if runs is not None:
        section["runs"] = runs
    settings = mt.validated(method, section)
    ctx = mt.context(names, settings, options, seed=seed)
    return mt.design_table(method, settings, ctx, eval_names or ctx.domains)


# -- fit -------------------------------------------------------------------------------------------


@click.command()
@click.argument("runs_csv")
@click.option("--method", default="ddo", show_default=True,
              help="The method to fit: ddo (a base run and its perturbations), regmix, dml or mixture-law.")
@click.option("--metric", type=click.Choice(["perplexity", "loss"]), default="perplexity", show_default=True,
              help="What the eval.* columns hold.")
@click.option("--min-ratio", type=float, default=None,
              help="ddo: floor per domain, this multiple of its base share of the budget (default 0.2, as published).")
@click.option("--budget", default=None, help="Tokens to allocate (default: ddo, the base run's total; otherwise the "
                                             "table's largest budget). mixture-law: where its optimum is taken.")
@click.option("--max-tokens", multiple=True,
              help="Caps in tokens: d=N,... (e.g. unique tokens x allowed epochs).")
@click.option("--eval-weights", default=None, help="Objective = weighted mean of eval columns: name=w,...")
@click.option("--bootstrap", type=click.IntRange(min=0), default=None,
              help="ddo: resample replicate runs this many times for an interval per weight (needs replicates).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap, or of the method's search.")
@search_options
@click.option("--score", "score_path", type=click.Path(dir_okay=False), default=None,
              help="Score the mixtures of this CSV (tokens.<domain> columns) with the fitted model.")
@click.option("--scores", "scores_path", type=click.Path(dir_okay=False), default=None,
              help="Write the --score table here (default: stdout, instead of the mixture).")
@click.option("--json", "as_json", is_flag=True, help="Print only the mixture JSON to stdout.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the mixture JSON here.")
def fit(runs_csv, method, metric, min_ratio, budget, max_tokens, eval_weights, bootstrap, seed, score_path,
        scores_path, as_json, out, **search):
    """Fit a method to a filled runs table and print its mixture.

    ddo (default): y = (x + a)^(-b) + c per domain, x a domain's tokens over the base run's, y the
    objective (mean of the eval columns) over the base run's; three amounts per domain are
    interpolated exactly, more are fitted by least squares; the allocation is the exact KKT optimum
    with floors (--min-ratio) and caps (--max-tokens). --bootstrap needs replicate rows (same tokens,
    other seeds). regmix, dml, mixture-law: the method's own fit and search, as `autoscale run` does
    them, on the table's rows (a run's weights are its tokens over its total).

    --score scores other mixtures with the fit: the input table plus a `predicted` column (the
    objective) and, where the method models each validation set, `predicted.<eval>` columns (ddo: an
    `outside` column names amounts beyond what the fit saw). Without --scores the scores go to stdout
    instead of the mixture (write it with --out).
    """
    from autoscale.ddo.runs import RunsTable

    method, options = table_method(method), SearchOptions(**search)
    for path, option in ((out, "--out"), (scores_path, "--scores")):
        _check_folder(path, option)
    if scores_path and not score_path:
        raise AutoscaleError("--scores needs --score (the mixtures to score)")
    table = RunsTable.read_csv(runs_csv)
    caps = _assignments(max_tokens, "--max-tokens", _tokens_option("--max-tokens"), table.domains)
    weights = _assignments((eval_weights,), "--eval-weights", float, table.eval_names) or None
    target = parse_tokens(budget, "--budget") if budget is not None else None
    if method == "ddo":
        _refuse(dict.fromkeys(options.given(), True), method)
        from autoscale.ddo.fit import fit_ddo

        result = fit_ddo(table, min_ratio=0.2 if min_ratio is None else min_ratio, budget=target, max_tokens=caps,
                         eval_weights=weights, bootstrap=bootstrap or 0, seed=seed)
        mixture, warnings, show = result.mixture, result.warnings, lambda: _print_fit(result)
        scorer = _ddo_scorer(result)
    else:
        _refuse({"--min-ratio": min_ratio, "--bootstrap": bootstrap}, method)
        mixture, warnings, show, scorer = _fit_random(table, method, metric, caps, weights, target, seed, options)
    scores = None
    if score_path:
        from autoscale.cli.methods_table import read_mixtures, scores_csv

        mixtures = read_mixtures(read_text(score_path, "mixtures"), table.domains, f"mixtures {score_path!r}")
        scores = scores_csv(mixtures, scorer(mixtures.tokens))
    if scores is not None and not scores_path:
        if out:
            write_atomic(out, mixture.to_json() + "\n")
        click.echo(scores, nl=False)
        return
    _emit(mixture, warnings, as_json, out, show)
    if scores is not None:
        write_atomic(scores_path, scores)
        if not as_json:
            click.echo(f"wrote {scores_path}")


def _check_folder(path: str | None, option: str) -> None:
    from pathlib import Path

    if path and not Path(path).resolve().parent.is_dir():
        raise AutoscaleError(f"{option}: folder {str(Path(path).parent)!r} does not exist")


def _ddo_scorer(result):
    def scorer(tokens):
        values, outside = result.score(tokens)
        return {PREDICTED: values, "outside": ["; ".join(o) for o in outside]}

    return scorer


def _fit_random(table, method, metric, caps, eval_weights, target, seed, options):
    """A random-mixture method fitted on ``table``: (mixture, warnings, printer, scorer)."""
    from autoscale.cli import methods_table as mt
    from autoscale.methods import random_search as rs
    from autoscale.mixture import Mixture

    budgets = rs.table_budgets(table)
    algorithm = mt.method_of(method)
    settings = mt.validated(method, algorithm.table_settings(options.section(), budgets))
    ctx = mt.context(table.domains, settings, options, seed=seed, metric=metric, eval_weights=eval_weights,
                     validation=table.eval_names, target=target or budgets[-1], max_tokens=caps)
    fitted = rs.fit_table(algorithm, settings, ctx, table)
    objective = table.objective(eval_weights)
    best = int(np.argmin(objective))
    diagnostics = {k: v for k, v in fitted.record.items() if k not in ("weights", "objective", "tokens", "warnings")}
    metadata = {"method": method, "metric": metric, **diagnostics, "best_run": table.runs[best],
                "best_run_objective": float(objective[best]), **fitted.extra}
    if fitted.warnings:
        metadata["warnings"] = list(fitted.warnings)
    mixture = Mixture.from_weights(dict(zip(table.domains, map(float, fitted.weights), strict=True)), ctx.target,
                                   metadata)

    def scorer(tokens):
        totals = tokens.sum(axis=1)
        values, per_eval = fitted.score(tokens / totals[:, None], totals)
        columns = {PREDICTED: values}
        if per_eval is not None:
            columns |= {f"{PREDICTED}.{e}": per_eval[:, j] for j, e in enumerate(ctx.eval_domains)}
        return columns

    return mixture, list(fitted.warnings), lambda: _print_random(mixture, fitted, metadata), scorer


def _print_random(mixture, fitted, metadata) -> None:
    from rich.table import Table

    method = metadata["method"]
    table = Table(title=f"{method} mixture at {fmt_tokens(mixture.budget)} tokens")
    for name in ("domain", "weight", "tokens"):
        table.add_column(name, justify="left" if name == "domain" else "right")
    for d, w in mixture.weights.items():
        table.add_row(d, f"{w:.4f}", fmt_tokens(mixture.tokens[d]))
    _console().print(table)
    click.echo(f"predicted {metadata['metric']} {fitted.predicted:.4f}; best run in the table: "
               f"{metadata['best_run']} ({metadata['best_run_objective']:.4f})")
    if "cv_spearman" in metadata:
        params = ", ".join(f"{k} {v}" for k, v in metadata["regressor"].items())
        click.echo(f"regressor: 5-fold Spearman {metadata['cv_spearman']:.3f} on the table's runs ({params})")
    r2 = metadata.get("r2") or (metadata.get("law") or {}).get("r2")
    if r2:
        click.echo("R² per validation set: " + ", ".join(f"{e} {v:.3f}" for e, v in r2.items()))
    for line in fitted.warnings:
        click.echo(f"warning: {line}")


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
        text = f"x{e.ratio:.2g} {e.mean:+.1%}"  # the planned x0.2, not x0.202 (a whole-batch rounding)
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
    if any(d is not None for d in draws):
        arrays = [_draws(d, mx, p) for d, mx, p in zip(draws, loaded, mixtures, strict=True)]
        if len({len(a) for a in arrays}) > 1:
            counts = ", ".join(f"{p} {len(a)}" for p, a in zip(mixtures, arrays, strict=True))
            raise AutoscaleError(f"bootstrap draws pair only when every input was fitted with the same --bootstrap "
                                 f"and --seed; draws per input: {counts}")
        values, intervals = extrapolate_draws(loaded, arrays, **options)
        mixture = Mixture(mixture.tokens, dict(mixture.metadata) | {
            "intervals": {d: list(v) for d, v in intervals.items()}, "bootstrap_draws": values.round(8).tolist()})
    _emit(mixture, result.warnings, as_json, out, lambda: _print_predict(result, loaded, intervals))


def _draws(rows, mixture, path: str):
    from autoscale.ddo.fit import draws_from_rows

    if rows is None:
        raise AutoscaleError(f"mixture {path!r} has no bootstrap_draws while another input has: fit every budget "
                             "with the same --bootstrap and --seed (paired draws), or none")
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

