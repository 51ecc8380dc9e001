"""Read an experiment directory (layout and file names: `autoscale.experiment.folder`) into `ReportData`.

Works on a partial experiment too: the DDO stages written so far are shown, and the target and
validation parts appear once their files exist. Validation curves of several seeds are averaged
point by point (every seed of a mixture is evaluated at the same token counts).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from autoscale.domains import check_domain_names
from autoscale.errors import AutoscaleError
from autoscale.experiment.folder import AUTOSCALE, ExperimentFolder
from autoscale.mixture import Mixture
from autoscale.report.results import (
    CurveFit,
    MethodSummary,
    RecordedSpeedUp,
    ReportData,
    ValidationCurve,
    WeightsAtBudget,
    format_tokens,
)
from autoscale.speedup import SpeedUp, curve_tokens

# -- the shapes of the files the report reads ------------------------------------------------------
# field (dotted for nested objects) -> the JSON type it must have when present and not null

_OBJECT, _LIST, _TEXT, _NUMBER = (dict,), (list,), (str,), (int, float)
_NUMBERS = "a list of numbers"  # a list whose items are all numbers
_TYPE_NAMES = {_OBJECT: "an object", _LIST: "a list", _TEXT: "a string", _NUMBER: "a number",
               (dict, list): "an object or a list"}

EXPERIMENT_FIELDS: dict[str, Any] = {
    "config": _OBJECT, "domains": _LIST, "objective": _TEXT, "data": _TEXT, "config.name": _TEXT,
    "config.proxy": _OBJECT, "config.proxy.model": _OBJECT, "config.ddo": _OBJECT,
    "config.ddo.budgets": _NUMBERS, "config.ddo.ratios": _NUMBERS,
}
SUMMARY_FIELDS: dict[str, Any] = {
    "name": _TEXT, "domains": _LIST, "target": _OBJECT, "target.budget": _NUMBER, "runs": _OBJECT,
    "wall_time_s": _NUMBER,
}
DDO_FIELDS: dict[str, Any] = {
    "mixture": _OBJECT, "fits": _OBJECT, "held": (dict, list), "noise": _OBJECT, "warnings": _LIST,
    "bounded": _OBJECT, "intervals": _OBJECT, "runs": _OBJECT,
}
TARGET_FIELDS: dict[str, Any] = {"mixture": _OBJECT, "held": (dict, list), "intervals": _OBJECT, "warnings": _LIST}
VALIDATION_FIELDS: dict[str, Any] = {
    "runs": _OBJECT, "mixtures": _OBJECT, "problems": _LIST, "seeds": _LIST, "objective": _TEXT,
    "smoothing_weight": _NUMBER,
}


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    for types, name in _TYPE_NAMES.items():
        if isinstance(value, types):
            return name
    return type(value).__name__


def check_shape(data: Any, fields: Mapping[str, Any], required: tuple[str, ...] = (), what: str = "file") -> dict:
    """``data`` as a JSON object whose ``fields`` have their types; raise AutoscaleError naming ``what``.

    ``fields``: field (``a.b`` for a field of an object field) -> a tuple of types or ``_NUMBERS``;
    checked when present and not null. ``required``: fields that must be present and not null.
    """
    if not isinstance(data, dict):
        raise AutoscaleError(f"{what}: expected a JSON object, got {_kind(data)}")
    for field, types in fields.items():
        value: Any = data
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            continue
        if types is _NUMBERS:
            ok = isinstance(value, list) and all(isinstance(v, _NUMBER) and not isinstance(v, bool) for v in value)
        else:
            ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok:
            expected = types if types is _NUMBERS else _TYPE_NAMES.get(types, str(types))
            got = _kind(value)
            if types is _NUMBERS and isinstance(value, list):
                got = "a list holding " + next(_kind(v) for v in value if not isinstance(v, _NUMBER) or
                                               isinstance(v, bool))
            raise AutoscaleError(f"{what}: field {field!r} must be {expected}, got {got}")
    for field in required:
        if data.get(field) is None:
            raise AutoscaleError(f"{what}: missing field {field!r}")
    return data


def _record(path: Path, fields: Mapping[str, Any], required: tuple[str, ...] = ()) -> dict | None:
    """The JSON object in ``path`` checked by :func:`check_shape`; None when there is no such file."""
    if not path.exists():
        return None
    return check_shape(ExperimentFolder(path.parent).read_json(path), fields, required, repr(str(path)))


@contextmanager
def _malformed(path: Path):
    """Deeper shape problems of ``path`` (beyond :func:`check_shape`) as one line naming the file."""
    try:
        yield
    except AutoscaleError as exc:
        raise AutoscaleError(f"{str(path)!r}: {exc}") from None
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise AutoscaleError(f"{str(path)!r}: malformed ({type(exc).__name__}: {exc})".splitlines()[0]) from None


def _base_tokens(folder: ExperimentFolder, budget: float, domains: tuple[str, ...]) -> dict[str, float] | None:
    """The base run's tokens per domain at one DDO budget, from its runs table (None if unknown)."""
    table = folder.read_table(folder.runs_table(AUTOSCALE, budget))
    if table is None or "base" not in table.runs:
        return None
    row = table.tokens[list(table.runs).index("base")]
    return {d: float(row[list(table.domains).index(d)]) for d in domains if d in table.domains}


def _fits(record: Mapping[str, Any], label: str, base: Mapping[str, float] | None) -> dict[str, CurveFit]:
    tokens = record.get("mixture", {}).get("tokens", {})
    out = {}
    for d, f in (record.get("fits") or {}).items():
        try:
            optimum = None
            if base and base.get(d):
                optimum = float(tokens[d]) / base[d]  # the allocation's amount, relative to the base run
            r2 = f.get("r2")
            out[d] = CurveFit(label, float(f["a"]), float(f["b"]), float(f["c"]),
                              tuple(map(float, f["x"])), tuple(map(float, f["y"])), optimum,
                              base_tokens=(base or {}).get(d) or None, r2=None if r2 is None else float(r2),
                              residuals=tuple(map(float, f.get("residuals") or ())))
        except (KeyError, TypeError, ValueError) as exc:
            raise AutoscaleError(f"DDO fit of {d!r} at {label}: malformed record ({exc!r})") from None
    return out


def _curves(validation: Mapping[str, Any]) -> tuple[tuple[ValidationCurve, ...], list[str]]:
    """One curve per validated mixture (the mean over its seeds) and notes about what is missing."""
    curves, notes = [], []
    weights = {n: m.get("weights", {}) for n, m in (validation.get("mixtures") or {}).items()}
    for name, entries in (validation.get("runs") or {}).items():
        done = [e for e in entries if e.get("curve") and e.get("status") == "completed"]
        if not done:
            notes.append(f"validation of {name!r}: no completed run with a curve")
            continue
        grid = done[0]["curve"]
        # x: tokens trained at each evaluation (validation.json of older versions may hold steps
        # only: scaled to the tokens trained, as the pipeline does for a trainer that reports no tokens)
        xs = curve_tokens({"curve": [{"step": st, "tokens": t} for st, t in
                                     zip(grid["step"], grid.get("tokens") or [0] * len(grid["step"]), strict=True)],
                           "tokens_per_domain": done[0].get("tokens_per_domain")},
                          budget=(validation.get("mixtures") or {}).get(name, {}).get("budget"))
        same = [e for e in done if len(e["curve"]["objective"]) == len(grid["objective"])]
        y = np.mean([e["curve"]["objective"] for e in same], axis=0)
        finals = [e["final_objective"] for e in same if e.get("final_objective") is not None]
        final = float(np.mean(finals)) if finals else float(y[-1])
        seed = same[0].get("seed") if len(same) == 1 else None
        # per validation domain, final perplexity: the mean over the seeds that report it
        per_domain = [e["final_perplexity"] for e in same if e.get("final_perplexity")]
        domains = list(dict.fromkeys(d for f in per_domain for d in f))
        domain_finals = {d: float(np.mean([f[d] for f in per_domain if d in f])) for d in domains}
        curves.append(ValidationCurve(name, tuple(map(float, xs)), tuple(map(float, y)), final,
                                      weights.get(name, {}), seed, domain_finals))
        if len(same) > 1:
            notes.append(f"validation curve of {name!r}: mean over {len(same)} seeds")
    return tuple(curves), notes


def load_experiment(directory: str | Path) -> ReportData:
    """Everything the report shows, from the files of an experiment directory."""
    out = Path(directory)
    folder = ExperimentFolder(out)
    if not out.is_dir():
        raise AutoscaleError(f"experiment directory {str(out)!r} does not exist")
    # every file is checked for its shape first: a malformed one is one line naming it, not a traceback
    experiment = _record(folder.experiment, EXPERIMENT_FIELDS, ("config", "domains")) or {}
    if experiment:
        with _malformed(folder.experiment):
            check_domain_names(experiment["domains"])
    summary = _record(folder.summary, SUMMARY_FIELDS) or {}
    config = experiment.get("config") or {}
    methods = [str(m) for m in config.get("methods") or [AUTOSCALE]]
    ddo_files = folder.search_records(AUTOSCALE) if AUTOSCALE in methods else []
    others = [m for m in methods if m != AUTOSCALE and folder.method_result(m).exists()]
    if not ddo_files and not others:
        raise AutoscaleError(
            f"{str(out)!r} holds no results (ddo_<budget>.json or <method>_target.json): "
            "run `autoscale run CONFIG` first"
        )
    domains = tuple(experiment.get("domains") or summary.get("domains") or ())
    mixtures: list[WeightsAtBudget] = []
    fits: dict[str, dict[str, CurveFit]] = {}
    noise: dict[str, Any] = {}
    notes: list[str] = []
    for budget, path in ddo_files:
        record = _record(path, DDO_FIELDS, ("mixture", "fits"))
        assert record is not None  # listed above
        with _malformed(path):
            weights = Mixture.from_dict(record["mixture"], "'mixture'").weights
            if not domains:
                domains = tuple(weights)
            label = format_tokens(budget)
            mixtures.append(WeightsAtBudget("DDO", float(budget), weights, intervals=_intervals(record, path),
                                            held=tuple(record.get("held") or ())))
            if isinstance(record.get("noise"), dict):
                noise[label] = record["noise"]
            fits[label] = _fits(record, label, _base_tokens(folder, budget, domains))
            notes += [f"DDO at {label}: {w}" for w in record.get("warnings") or []]
            for d, bound in (record.get("bounded") or {}).items():
                notes.append(f"DDO at {label}: {d} at its {bound}")
    target_path = folder.method_result(AUTOSCALE)
    target = _record(target_path, TARGET_FIELDS, ("mixture",))
    if target is not None:
        with _malformed(target_path):
            mix = Mixture.from_dict(target["mixture"], "'mixture'")
            mixtures.append(WeightsAtBudget("predicted", mix.budget, mix.weights, measured=False,
                                            intervals=_intervals(target, target_path),
                                            held=tuple(target.get("held") or ())))
            notes += [f"extrapolation: {w}" for w in target.get("warnings") or []]
    for name in others:
        path = folder.method_result(name)
        record = _record(path, TARGET_FIELDS, ("mixture",))
        assert record is not None  # listed above
        with _malformed(path):
            mix = Mixture.from_dict(record["mixture"], "'mixture'")
            mixtures.append(WeightsAtBudget(name, mix.budget, mix.weights, measured=False))
            notes += [f"{name}: {w}" for w in record.get("warnings") or []]
    rows = summary.get("methods") if isinstance(summary.get("methods"), dict) else {}
    predicted = "predicted" if AUTOSCALE in methods else str((rows.get(methods[0]) or {}).get("mixture") or methods[0])
    validation = _record(folder.validation, VALIDATION_FIELDS, ("runs", "mixtures")) or {}
    with _malformed(folder.validation):
        curves, more = _curves(validation)
    notes += more + [f"validation: {p}" for p in validation.get("problems") or []]
    facts = _facts(config, experiment, summary, validation)
    return ReportData(
        title=f"AutoScale report: {config.get('name') or summary.get('name') or out.name}",
        domains=domains,
        mixtures=tuple(mixtures),
        fits=fits,
        validation=curves,
        predicted=predicted,
        objective_label=str(validation.get("objective") or experiment.get("objective") or "validation objective"),
        notes=tuple(notes),
        facts=facts,
        smoothing=float(validation.get("smoothing_weight") or 0.0),
        noise=noise,
        gains={str(g["baseline"]): g for g in validation.get("gains") or []
               if isinstance(g, dict) and "baseline" in g and g.get("of", predicted) == predicted},
        methods=_methods(rows, folder.summary) if len(rows) > 1 else (),
        downstream=dict((validation.get("downstream") or {}).get("mixtures") or {}),
        speedups=_speedups(validation, predicted, folder.validation),
    )


def _speedups(validation: Mapping[str, Any], predicted: str, path: Path) -> tuple[RecordedSpeedUp, ...]:
    """The predicted mixture's speed-ups as the pipeline recorded them: the mean per baseline
    (``speedup_means``; records before several methods: ``speedup_mean``) and each seed's."""
    means = validation.get("speedup_means") or {predicted: validation.get("speedup_mean") or {}}
    with _malformed(path):
        seeds = [(int(s.get("seed", 0)), SpeedUp(**{k: s.get(k) for k in SpeedUp.__dataclass_fields__}))
                 for s in validation.get("speedups") or [] if s.get("method", predicted) == predicted]
        return tuple(RecordedSpeedUp(str(b), None if v is None else float(v),
                                     tuple((seed, u) for seed, u in seeds if u.baseline == b))
                     for b, v in (means.get(predicted) or {}).items())


def _methods(rows: Mapping[str, Any], path: Path) -> tuple[MethodSummary, ...]:
    """The methods compared, from summary.json's ``methods``."""
    with _malformed(path):
        return tuple(
            MethodSummary(str(name), str(e["mixture"]), str(e.get("description") or ""), int(e["search_runs"]),
                          float(e["search_tokens"]), float(e["search_vs_target"]), float(e["shared_tokens"]),
                          None if e.get("final_objective") is None else float(e["final_objective"]),
                          e.get("gain_over_uniform"))
            for name, e in rows.items()
        )


def _intervals(record: Mapping[str, Any], path: Path) -> dict[str, tuple[float, float]]:
    """domain -> (low, high) from a record's ``intervals`` (empty when it has none)."""
    raw = record.get("intervals") or {}
    try:
        return {str(d): (float(v[0]), float(v[1])) for d, v in raw.items()}
    except (AttributeError, TypeError, ValueError, IndexError, KeyError):
        raise AutoscaleError(f"{str(path)!r}: 'intervals' must map domains to [low, high]") from None


def _facts(config: Mapping[str, Any], experiment: Mapping[str, Any], summary: Mapping[str, Any],
           validation: Mapping[str, Any]) -> dict[str, str]:
    facts: dict[str, str] = {}
    model = (config.get("proxy") or {}).get("model") or {}
    if model:
        facts["proxy model"] = (f"{model.get('kind', 'decoder')}, {model.get('n_layer')} layers, "
                                f"d_model {model.get('d_model')}, {model.get('n_head')} heads, "
                                f"seq_len {model.get('seq_len')}")
    ddo = config.get("ddo") or {}
    if ddo.get("budgets"):
        facts["DDO budgets (tokens)"] = ", ".join(format_tokens(b) for b in ddo["budgets"])
        facts["perturbation ratios"] = ", ".join(f"{r:g}" for r in ddo.get("ratios", []))
    if summary.get("target"):
        facts["target budget (tokens)"] = format_tokens(summary["target"]["budget"])
    if experiment.get("objective"):
        facts["objective"] = str(experiment["objective"])
    if validation.get("seeds"):
        facts["validation seeds"] = ", ".join(str(s) for s in validation["seeds"])
    if summary.get("runs"):
        facts["runs"] = ", ".join(f"{n} {k}" for k, n in summary["runs"].items())
    if summary.get("wall_time_s") is not None:
        facts["wall time of the last `autoscale run`"] = f"{summary['wall_time_s']:.0f} s"
    if experiment.get("data"):
        facts["data (store manifest hash)"] = str(experiment["data"])[:16]
    return facts
