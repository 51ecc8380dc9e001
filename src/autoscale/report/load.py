"""Read an experiment directory (layout: `autoscale.experiment.pipeline`) into `ReportData`.

Works on a partial experiment too: the DDO stages written so far are shown, and the target and
validation parts appear once their files exist. Validation curves of several seeds are averaged
point by point (every seed of a mixture is evaluated at the same token counts).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from autoscale.errors import AutoscaleError
from autoscale.report.results import CurveFit, ReportData, ValidationCurve, WeightsAtBudget, format_tokens

_DDO_FILE = re.compile(r"^ddo_(\d+)\.json$")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AutoscaleError(f"cannot read {str(path)!r}: {exc}") from None


def _base_tokens(directory: Path, budget_name: str, domains: tuple[str, ...]) -> dict[str, float] | None:
    """The base run's tokens per domain at one DDO budget, from its runs table (None if unknown)."""
    from autoscale.ddo.runs import RunsTable

    path = directory / f"runs_{budget_name}.csv"
    if not path.exists():
        return None
    table = RunsTable.read_csv(path)
    if "base" not in table.runs:
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
            out[d] = CurveFit(label, float(f["a"]), float(f["b"]), float(f["c"]),
                              tuple(map(float, f["x"])), tuple(map(float, f["y"])), optimum)
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
        # x: tokens trained at each evaluation; a trainer that reports none gets steps instead
        xs = grid.get("tokens") or []
        if not xs or not any(xs):
            xs = grid["step"]
        same = [e for e in done if len(e["curve"]["objective"]) == len(grid["objective"])]
        y = np.mean([e["curve"]["objective"] for e in same], axis=0)
        finals = [e["final_objective"] for e in same if e.get("final_objective") is not None]
        final = float(np.mean(finals)) if finals else float(y[-1])
        seed = same[0].get("seed") if len(same) == 1 else None
        curves.append(ValidationCurve(name, tuple(map(float, xs)), tuple(map(float, y)), final,
                                      weights.get(name, {}), seed))
        if len(same) > 1:
            notes.append(f"validation curve of {name!r}: mean over {len(same)} seeds")
    return tuple(curves), notes


def load_experiment(directory: str | Path) -> ReportData:
    """Everything the report shows, from the files of an experiment directory."""
    out = Path(directory)
    if not out.is_dir():
        raise AutoscaleError(f"experiment directory {str(out)!r} does not exist")
    experiment = _read_json(out / "experiment.json") or {}
    summary = _read_json(out / "summary.json") or {}
    ddo_files = sorted(
        ((int(m.group(1)), p) for p in out.iterdir() if (m := _DDO_FILE.match(p.name))), key=lambda t: t[0]
    )
    if not ddo_files:
        raise AutoscaleError(
            f"{str(out)!r} holds no DDO results (ddo_<budget>.json): run `autoscale run CONFIG` first"
        )
    domains = tuple(experiment.get("domains") or summary.get("domains") or ())
    mixtures: list[WeightsAtBudget] = []
    fits: dict[str, dict[str, CurveFit]] = {}
    noise: dict[str, Any] = {}
    notes: list[str] = []
    for budget, path in ddo_files:
        record = _read_json(path)
        weights = (record.get("mixture") or {}).get("weights") or {}
        if not domains:
            domains = tuple(weights)
        label = format_tokens(budget)
        mixtures.append(WeightsAtBudget("DDO", float(budget), weights, intervals=_intervals(record, path),
                                        held=tuple(record.get("held") or ())))
        if isinstance(record.get("noise"), dict):
            noise[label] = record["noise"]
        fits[label] = _fits(record, label, _base_tokens(out, str(budget), domains))
        notes += [f"DDO at {label}: {w}" for w in record.get("warnings", [])]
        for d, bound in (record.get("bounded") or {}).items():
            notes.append(f"DDO at {label}: {d} at its {bound}")
    target = _read_json(out / "target.json")
    if target is not None:
        mix = target["mixture"]
        mixtures.append(WeightsAtBudget("predicted", float(mix["budget"]), mix["weights"], measured=False,
                                        intervals=_intervals(target, out / "target.json"),
                                        held=tuple(target.get("held") or ())))
        notes += [f"extrapolation: {w}" for w in target.get("warnings", [])]
    validation = _read_json(out / "validation.json") or {}
    curves, more = _curves(validation)
    notes += more + [f"validation: {p}" for p in validation.get("problems", [])]
    config = experiment.get("config") or {}
    facts = _facts(config, experiment, summary, validation)
    return ReportData(
        title=f"AutoScale report: {config.get('name') or summary.get('name') or out.name}",
        domains=domains,
        mixtures=tuple(mixtures),
        fits=fits,
        validation=curves,
        predicted="predicted",
        objective_label=str(validation.get("objective") or experiment.get("objective") or "validation objective"),
        notes=tuple(notes),
        facts=facts,
        smoothing=float(validation.get("smoothing_weight") or 0.0),
        noise=noise,
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
