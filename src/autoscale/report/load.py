"""Read an experiment directory (layout and file names: `autoscale.experiment.folder`) into `ReportData`.

Works on a partial experiment too: the DDO stages written so far are shown, and the target and
validation parts appear once their files exist. Validation curves of several seeds are averaged
point by point (every seed of a mixture is evaluated at the same token counts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from autoscale.domains import check_domain_names
from autoscale.errors import AutoscaleError
from autoscale.experiment.folder import ExperimentFolder
from autoscale.experiment.records import (
    USER_DATA,
    ConfigPart,
    DDORecord,
    ExperimentRecord,
    MethodRecord,
    SearchRecord,
    SummaryRecord,
    ValidationRecord,
    dump,
)
from autoscale.methods import DEFAULT_METHODS, METHODS
from autoscale.mixture import Mixture
from autoscale.report.results import (
    CurveFit,
    MethodSummary,
    RecordedSpeedUp,
    ReportData,
    ValidationCurve,
    WeightsAtBudget,
)
from autoscale.speedup import SpeedUp, curve_tokens
from autoscale.tokens import format_tokens


@contextmanager
def _malformed(path: Path):
    """Deeper shape problems of ``path`` (beyond :func:`check_shape`) as one line naming the file."""
    try:
        yield
    except AutoscaleError as exc:
        raise AutoscaleError(f"{str(path)!r}: {exc}") from None
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise AutoscaleError(f"{str(path)!r}: malformed ({type(exc).__name__}: {exc})".splitlines()[0]) from None


def _base_tokens(folder: ExperimentFolder, method: str, budget: float,
                 domains: tuple[str, ...]) -> dict[str, float] | None:
    """The base run's tokens per domain at one DDO budget, from its runs table (None if unknown)."""
    table = folder.read_table(folder.existing(method, "table", budget))
    if table is None or "base" not in table.runs:
        return None
    row = table.tokens[list(table.runs).index("base")]
    return {d: float(row[list(table.domains).index(d)]) for d in domains if d in table.domains}


def _fits(record: DDORecord, label: str, base: Mapping[str, float] | None) -> dict[str, CurveFit]:
    tokens = record.mixture.tokens
    out = {}
    for d, f in record.fits.items():
        optimum = None
        if base and base.get(d) and d in tokens:
            optimum = float(tokens[d]) / base[d]  # the allocation's amount, relative to the base run
        out[d] = CurveFit(label, float(f.a), float(f.b), float(f.c), tuple(map(float, f.x)), tuple(map(float, f.y)),
                          optimum, base_tokens=(base or {}).get(d) or None, r2=None if f.r2 is None else float(f.r2),
                          residuals=tuple(map(float, f.residuals or ())))
    return out


def _curves(validation: ValidationRecord) -> tuple[tuple[ValidationCurve, ...], list[str]]:
    """One curve per validated mixture (the mean over its seeds) and notes about what is missing."""
    curves, notes = [], []
    for name, entries in validation.runs.items():
        done = [e for e in entries if e.curve and e.status == "completed"]
        if not done:
            notes.append(f"validation of {name!r}: no completed run with a curve")
            continue
        grid = done[0].curve
        assert grid is not None
        mixture = validation.mixtures.get(name)
        # x: tokens trained at each evaluation (validation.json of older versions may hold steps
        # only: scaled to the tokens trained, as the pipeline does for a trainer that reports no tokens)
        xs = curve_tokens({"curve": [{"step": st, "tokens": t} for st, t in
                                     zip(grid.step, grid.tokens or [0] * len(grid.step), strict=True)],
                           "tokens_per_domain": done[0].tokens_per_domain},
                          budget=None if mixture is None else mixture.budget)
        same = [e for e in done if e.curve and len(e.curve.objective) == len(grid.objective)]
        ys = np.array([e.curve.objective for e in same if e.curve], dtype=float)
        y = ys.mean(axis=0)
        spread = (tuple(map(float, ys.min(axis=0))), tuple(map(float, ys.max(axis=0)))) if len(ys) > 1 else ()
        finals = [e.final_objective for e in same if e.final_objective is not None]
        final = float(np.mean(finals)) if finals else float(y[-1])
        seed = same[0].seed if len(same) == 1 else None
        # per validation domain, final perplexity: the mean over the seeds that report it
        per_domain = [e.final_perplexity for e in same if e.final_perplexity]
        domains = list(dict.fromkeys(d for f in per_domain for d in f))
        domain_finals = {d: float(np.mean([f[d] for f in per_domain if d in f])) for d in domains}
        curves.append(ValidationCurve(name, tuple(map(float, xs)), tuple(map(float, y)), final,
                                      {} if mixture is None else mixture.weights, seed, domain_finals, spread))
        if len(same) > 1:
            notes.append(f"validation curve of {name!r}: mean over {len(same)} seeds")
    return tuple(curves), notes


def load_experiment(directory: str | Path) -> ReportData:
    """Everything the report shows, from the files of an experiment directory (typed records,
    `autoscale.experiment.records`; a folder of an older autoscale is read in the current layout)."""
    out = Path(directory)
    folder = ExperimentFolder(out)
    if not out.is_dir():
        raise AutoscaleError(f"experiment directory {str(out)!r} does not exist")
    # every file is read as its record first: a malformed one is one line naming it, not a traceback
    experiment = folder.read_record(folder.experiment, ExperimentRecord)
    if experiment is not None:
        with _malformed(folder.experiment):
            check_domain_names(experiment.domains)
    summary = folder.read_record(folder.summary, SummaryRecord)
    config = experiment.config if experiment is not None else ConfigPart()
    methods = _methods_shown(folder, config, summary)
    if not methods:
        raise AutoscaleError(
            f"{str(out)!r} holds no results (<method>_<budget>.json or <method>_target.json): "
            "run `autoscale run CONFIG` first"
        )
    domains = tuple(experiment.domains if experiment else summary.domains if summary else ())
    mixtures: list[WeightsAtBudget] = []
    fits: dict[str, dict[str, CurveFit]] = {}
    noise: dict[str, Any] = {}
    notes: list[str] = []
    for method in methods:
        for budget, path in folder.search_records(method):
            record = folder.read_record(path, SearchRecord)
            if not isinstance(record, DDORecord):
                continue  # the report draws DDO's fits; other search records are the method's own
            with _malformed(path):
                weights = Mixture.from_dict(dump(record.mixture), "'mixture'").weights
                if not domains:
                    domains = tuple(weights)
                label = format_tokens(budget)
                mixtures.append(WeightsAtBudget("DDO", float(budget), weights, intervals=_intervals(record.intervals),
                                                held=tuple(record.held)))
                if record.noise is not None:
                    noise[label] = record.noise
                fits[label] = _fits(record, label, _base_tokens(folder, method, budget, domains))
                notes += [f"DDO at {label}: {w}" for w in record.warnings]
                notes += [f"DDO at {label}: {d} at its {bound}" for d, bound in record.bounded.items()]
        path = folder.existing(method, "result")
        result = folder.read_record(path, MethodRecord)
        if result is not None:
            with _malformed(path):
                mix = Mixture.from_dict(dump(result.mixture), "'mixture'")
                mixtures.append(WeightsAtBudget(_mixture_name(method, summary), mix.budget, mix.weights,
                                                measured=False, intervals=_intervals(result.intervals),
                                                held=tuple(result.held)))
                notes += [f"{method}: {w}" for w in result.warnings]
    featured = _mixture_name(methods[0], summary)
    validation = folder.read_record(folder.validation, ValidationRecord)
    curves, more = _curves(validation) if validation is not None else ((), [])
    notes += more + [f"validation: {p}" for p in (validation.problems if validation else [])]
    return ReportData(
        title=f"AutoScale report: {config.name or (summary.name if summary else None) or out.name}",
        domains=domains,
        mixtures=tuple(mixtures),
        fits=fits,
        validation=curves,
        featured=featured,
        objective_label=str((validation.objective if validation else None)
                            or (experiment.objective if experiment else None) or "validation objective"),
        notes=tuple(notes),
        facts=_facts(config, experiment, summary, validation),
        smoothing=float(validation.smoothing_weight) if validation else 0.0,
        noise=noise,
        gains={g.baseline: dump(g) for g in (validation.gains if validation else []) if (g.of or featured) == featured},
        methods=_methods(summary) if summary is not None and len(summary.methods) > 1 else (),
        downstream={n: dump(s) for n, s in validation.downstream.mixtures.items()}
        if validation is not None and validation.downstream is not None else {},
        speedups=_speedups(validation, featured) if validation is not None else (),
    )


def _methods_shown(folder: ExperimentFolder, config: ConfigPart, summary: SummaryRecord | None) -> list[str]:
    """The methods with results in the folder, in the config's order (the first is featured)."""
    configured = config.methods or list(summary.methods if summary else []) or list(DEFAULT_METHODS)
    return [m for m in configured if folder.search_records(m) or folder.existing(m, "result").exists()]


def _mixture_name(method: str, summary: SummaryRecord | None) -> str:
    """The name of a method's mixture in validation: as summary.json records it, else the registry's."""
    if summary is not None and method in summary.methods:
        return summary.methods[method].mixture
    return METHODS[method].mixture if method in METHODS else method


def _speedups(validation: ValidationRecord, featured: str) -> tuple[RecordedSpeedUp, ...]:
    """The featured mixture's speed-ups as the pipeline recorded them: the mean per baseline and
    each seed's."""
    seeds = [(s.seed, SpeedUp(**{k: getattr(s, k) for k in SpeedUp.__dataclass_fields__}))
             for s in validation.speedups if s.method == featured]
    return tuple(RecordedSpeedUp(str(b), None if v is None else float(v),
                                 tuple((seed, u) for seed, u in seeds if u.baseline == b))
                 for b, v in validation.means_of(featured).items())


def _methods(summary: SummaryRecord) -> tuple[MethodSummary, ...]:
    """The methods compared, from summary.json's ``methods``."""
    return tuple(
        MethodSummary(name, e.mixture, e.description, e.search_runs, float(e.search_tokens), float(e.search_vs_target),
                      float(e.shared_tokens), None if e.final_objective is None else float(e.final_objective),
                      None if e.gain_over_uniform is None else dump(e.gain_over_uniform))
        for name, e in summary.methods.items()
    )


def _intervals(raw: Mapping[str, Sequence[float]]) -> dict[str, tuple[float, float]]:
    """domain -> (low, high) from a record's ``intervals``."""
    for d, v in raw.items():
        if len(v) != 2:
            raise AutoscaleError(f"'intervals' of {d!r} must be [low, high], got {list(v)}")
    return {str(d): (float(v[0]), float(v[1])) for d, v in raw.items()}


def _facts(config: ConfigPart, experiment: ExperimentRecord | None, summary: SummaryRecord | None,
           validation: ValidationRecord | None) -> dict[str, str]:
    facts: dict[str, str] = {}
    model = (config.proxy or {}).get("model") or {}
    executor = config.executor or {}
    if executor.get("kind") == "command":  # the user's trainer ran: the proxy settings were never used
        facts["trainer"] = "your command: " + " ".join(map(str, executor.get("command") or []))
        facts["trainer id (in every run key)"] = str(executor.get("trainer_id"))
    elif model:
        facts["proxy model"] = (f"{model.get('kind', 'decoder')}, {model.get('n_layer')} layers, "
                                f"d_model {model.get('d_model')}, {model.get('n_head')} heads, "
                                f"seq_len {model.get('seq_len')}")
    if config.ddo is not None and config.ddo.budgets:
        facts["DDO budgets (tokens)"] = ", ".join(format_tokens(b) for b in config.ddo.budgets)
        facts["perturbation ratios"] = ", ".join(f"{r:g}" for r in config.ddo.ratios)
    featured = summary.featured if summary is not None else None
    if featured is not None:
        facts["target budget (tokens)"] = format_tokens(featured[1].target_budget)
    if experiment is not None and experiment.objective:
        facts["objective"] = experiment.objective
    if validation is not None and validation.seeds:
        facts["validation seeds"] = ", ".join(str(s) for s in validation.seeds)
    if summary is not None and summary.runs:
        facts["runs"] = ", ".join(f"{n} {k}" for k, n in summary.runs.items())
    if summary is not None and summary.wall_time_s is not None:
        facts["wall time of the last `autoscale run`"] = f"{summary.wall_time_s:.0f} s"
    if experiment is not None and experiment.data:
        if experiment.data.startswith(USER_DATA):  # no store: the data as the config names them
            facts["data (data.fingerprint)"] = experiment.data[len(USER_DATA):] or "(none given)"
        else:
            facts["data (store manifest hash)"] = experiment.data[:16]
    return facts
