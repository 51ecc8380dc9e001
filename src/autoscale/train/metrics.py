"""metrics.json: the result of one training run, as written by autoscale or by any external trainer.

Torch-free. Schema version 1 (a JSON object)::

    {
      "schema_version": 1,                       # required, the integer 1
      "status": "completed",                     # required: "completed" or "diverged"
      "diverged_at_step": null,                  # optimizer step whose loss was NaN/inf, else null
      "final": {                                 # required: per validation domain, at the end
        "web": {"loss": 3.1, "perplexity": 22.2} #   loss = token-mean cross-entropy (nats);
      },                                         #   perplexity = exp(loss); give either or both
      "curve": [                                 # optional: evaluations during the run
        {"step": 10, "tokens": 40960,            #   optimizer step, training tokens seen so far
         "eval": {"web": {"loss": 3.4, "perplexity": 30.0}},
         "train_loss": 3.5}                      #   optional: mean training loss since the last point
      ],
      "tokens_per_domain": {"web": 40960},       # optional: tokens actually trained per domain
      "mixture": {"web": 40960.0},               # optional: tokens requested per domain
      "tokens_per_s": 15000.0,                   # optional: training throughput, tokens/s
      "params": 123456,                          # optional: model parameters
      "wall_time_s": 12.3                        # optional: seconds
    }

Rules checked on read (each failure is one ``AutoscaleError`` line naming the key):
- a ``completed`` run has at least one domain in ``final``, every value finite, loss >= 0 and
  perplexity >= 1; a ``diverged`` run may have an empty ``final`` and is never a usable result;
- curve steps and tokens are non-negative integers, in increasing step order;
- other keys are kept untouched in ``RunMetrics.extra`` (autoscale adds e.g. ``epochs``, ``warnings``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from autoscale.atomic import write_text_atomic
from autoscale.errors import AutoscaleError

SCHEMA_VERSION = 1
STATUSES = ("completed", "diverged")
_KNOWN = (
    "schema_version", "status", "diverged_at_step", "final", "curve", "tokens_per_domain", "mixture",
    "tokens_per_s", "params", "wall_time_s",
)


@dataclass(frozen=True)
class DomainEval:
    """Validation result on one domain: token-mean cross-entropy (nats) and its exp."""

    loss: float
    perplexity: float


@dataclass(frozen=True)
class CurvePoint:
    """One evaluation during a run, after ``step`` optimizer steps and ``tokens`` training tokens."""

    step: int
    tokens: int
    eval: Mapping[str, DomainEval]
    train_loss: float | None = None


@dataclass(frozen=True)
class RunMetrics:
    """A run's result. ``usable`` is False for diverged runs: never treat them as a measurement."""

    status: str
    final: Mapping[str, DomainEval]
    diverged_at_step: int | None = None
    curve: tuple[CurvePoint, ...] = ()
    tokens_per_domain: Mapping[str, int] = field(default_factory=dict)
    mixture: Mapping[str, float] = field(default_factory=dict)
    tokens_per_s: float | None = None
    params: int | None = None
    wall_time_s: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.status == "completed"

    @property
    def losses(self) -> dict[str, float]:
        """Final validation loss per domain (nats per token)."""
        return {d: e.loss for d, e in self.final.items()}

    @property
    def perplexities(self) -> dict[str, float]:
        """Final validation perplexity per domain."""
        return {d: e.perplexity for d, e in self.final.items()}

    def to_dict(self) -> dict[str, Any]:
        def evals(m: Mapping[str, DomainEval]) -> dict[str, dict[str, float]]:
            return {d: {"loss": e.loss, "perplexity": e.perplexity} for d, e in m.items()}

        curve = []
        for p in self.curve:
            point: dict[str, Any] = {"step": p.step, "tokens": p.tokens, "eval": evals(p.eval)}
            if p.train_loss is not None:
                point["train_loss"] = p.train_loss
            curve.append(point)
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "status": self.status,
            "diverged_at_step": self.diverged_at_step,
            "final": evals(self.final),
            "curve": curve,
            "tokens_per_domain": dict(self.tokens_per_domain),
            "mixture": dict(self.mixture),
            "tokens_per_s": self.tokens_per_s,
            "params": self.params,
            "wall_time_s": self.wall_time_s,
        }
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out

    def to_json(self) -> str:
        # allow_nan=False: a NaN would make the file unreadable by strict JSON parsers.
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Any, source: str = "metrics.json") -> RunMetrics:
        return _parse(data, source)


class DomainEvalFile(BaseModel):
    loss: float | None = Field(None, ge=0, description="token-mean cross-entropy, nats")
    perplexity: float | None = Field(None, ge=1, description="exp(loss)")


class CurvePointFile(BaseModel):
    step: int = Field(ge=0, description="optimizer steps so far")
    tokens: int = Field(ge=0, description="training tokens seen so far")
    eval: dict[str, DomainEvalFile] = Field(description="per validation domain")
    train_loss: float | None = Field(None, description="mean training loss since the last point")


class MetricsFile(BaseModel):
    """metrics.json as a trainer must write it (the contract of the module docstring, for its JSON
    Schema in docs/schema/). `read_metrics` checks the same and more (finite values; a completed run
    has at least one domain; increasing steps), each problem as one line."""

    model_config = ConfigDict(extra="allow", title="metrics.json")

    schema_version: Literal[1]
    status: Literal["completed", "diverged"]
    diverged_at_step: int | None = None
    final: dict[str, DomainEvalFile] = Field(description="per validation domain, at the end of training")
    curve: list[CurvePointFile] = Field(default_factory=list, description="evaluations during the run")
    tokens_per_domain: dict[str, int] = Field(default_factory=dict, description="tokens actually trained")
    mixture: dict[str, float] = Field(default_factory=dict, description="tokens requested per domain")
    tokens_per_s: float | None = None
    params: int | None = None
    wall_time_s: float | None = None


def read_metrics(path: str | Path) -> RunMetrics:
    """Read and validate a metrics.json (ours or an external trainer's)."""
    path = Path(path)
    return _parse(_load(path), str(path))


def check_metrics(path: str | Path) -> tuple[RunMetrics | None, list[str]]:
    """A metrics.json read by the same rules as `read_metrics`, but every problem named, in the
    order `read_metrics` meets them: (the metrics, []) when it is valid, else (None, the problems)."""
    path = Path(path)
    problems: list[str] = []
    try:
        metrics = _parse(_load(path), str(path), problems)
    except AutoscaleError as exc:  # unreadable, not JSON, not an object: that one problem is all there is
        return None, [str(exc)]
    return (None, problems) if problems else (metrics, [])


def _load(path: Path) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise AutoscaleError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AutoscaleError(f"{path} cannot be read: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AutoscaleError(f"{path}: malformed JSON ({exc.msg} at line {exc.lineno})") from None


def write_metrics(metrics: RunMetrics, path: str | Path) -> Path:
    """Write metrics.json atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, metrics.to_json() + "\n")
    return path


# --- validation ----------------------------------------------------------------------------------


def _number(value: Any, where: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AutoscaleError(f"{source}: {where} must be a number, got {value!r}")
    return float(value)


def _count(value: Any, where: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 0:
        raise AutoscaleError(f"{source}: {where} must be a non-negative integer, got {value!r}")
    return int(value)


def _domain_eval(value: Any, where: str, source: str) -> DomainEval:
    if not isinstance(value, Mapping) or not ({"loss", "perplexity"} & set(value)):
        raise AutoscaleError(f"{source}: {where} must be an object with 'loss' and/or 'perplexity'")
    loss = _number(value["loss"], f"{where}.loss", source) if "loss" in value else None
    ppl = _number(value["perplexity"], f"{where}.perplexity", source) if "perplexity" in value else None
    if loss is not None and not (math.isfinite(loss) and loss >= 0):
        raise AutoscaleError(f"{source}: {where}.loss must be finite and >= 0, got {value['loss']!r}")
    if ppl is not None and not (math.isfinite(ppl) and ppl >= 1):
        raise AutoscaleError(f"{source}: {where}.perplexity must be finite and >= 1, got {value['perplexity']!r}")
    if loss is None:
        loss = math.log(ppl)  # type: ignore[arg-type]
    if ppl is None:
        ppl = math.exp(min(loss, 700.0))
    return DomainEval(loss=loss, perplexity=ppl)


def _evals_object(value: Any, where: str, source: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise AutoscaleError(f"{source}: {where} must be an object of domain -> {{loss, perplexity}}")
    return value


def _evals(value: Any, where: str, source: str) -> dict[str, DomainEval]:
    return {str(d): _domain_eval(v, f"{where}[{d!r}]", source)
            for d, v in _evals_object(value, where, source).items()}


def _parse(data: Any, source: str, problems: list[str] | None = None) -> RunMetrics:
    """The validated metrics; the first problem raised, or, given ``problems``, every problem
    collected there (each section checked on its own) and a best-effort record returned."""
    if not isinstance(data, Mapping):
        raise AutoscaleError(f"{source}: expected a JSON object")

    def report(message: str) -> None:
        if problems is None:
            raise AutoscaleError(message)
        problems.append(message)

    def check(fn: Any, default: Any = None) -> Any:
        try:
            return fn()
        except AutoscaleError as exc:
            report(str(exc))
            return default

    def required(key: str) -> Any:
        if key not in data:
            raise AutoscaleError(f"{source}: missing required key {key!r}")
        return data[key]

    def version() -> None:
        found = required("schema_version")
        if found != SCHEMA_VERSION or isinstance(found, bool):
            raise AutoscaleError(f"{source}: schema_version {found!r} is not supported (expected {SCHEMA_VERSION})")

    def status_of() -> str:
        found = required("status")
        if found not in STATUSES:
            raise AutoscaleError(f"{source}: status must be one of {', '.join(STATUSES)}, got {found!r}")
        return found

    check(version)
    status = check(status_of, "completed")
    final: dict[str, DomainEval] = {}
    raw_final = check(lambda: _evals_object(required("final"), "final", source))
    for d, v in (raw_final or {}).items():  # each domain on its own: every bad one is named
        found = check(lambda d=d, v=v: _domain_eval(v, f"final[{d!r}]", source))
        if found is not None:
            final[str(d)] = found
    if raw_final is not None and status == "completed" and not raw_final:
        report(f"{source}: a completed run needs at least one domain in 'final'")
    step = data.get("diverged_at_step")
    diverged_at = None if step is None else check(lambda: _count(step, "diverged_at_step", source))

    curve: list[CurvePoint] = []
    raw_curve = data.get("curve") or []
    if not isinstance(raw_curve, list):
        report(f"{source}: curve must be a list of evaluation points")
        raw_curve = []
    for i, point in enumerate(raw_curve):
        where = f"curve[{i}]"
        parsed = check(lambda point=point, where=where: _curve_point(point, where, source))
        if parsed is None:
            continue
        if curve and parsed.step <= curve[-1].step:
            report(f"{source}: {where}.step must be greater than the previous point's step")
        curve.append(parsed)

    def counts(key: str) -> dict[str, int]:
        value = data.get(key) or {}
        if not isinstance(value, Mapping):
            raise AutoscaleError(f"{source}: {key} must be an object of domain -> tokens")
        return {str(d): _count(v, f"{key}[{d!r}]", source) for d, v in value.items()}

    def mixture_of() -> dict[str, float]:
        value = data.get("mixture") or {}
        if not isinstance(value, Mapping):
            raise AutoscaleError(f"{source}: mixture must be an object of domain -> tokens")
        return {str(d): _number(v, f"mixture[{d!r}]", source) for d, v in value.items()}

    def optional(key: str) -> float | None:
        value = data.get(key)
        return None if value is None else _number(value, key, source)

    params = data.get("params")
    return RunMetrics(
        status=status,
        final=final,
        diverged_at_step=diverged_at,
        curve=tuple(curve),
        tokens_per_domain=check(lambda: counts("tokens_per_domain"), {}),
        mixture=check(mixture_of, {}),
        tokens_per_s=check(lambda: optional("tokens_per_s")),
        params=None if params is None else check(lambda: _count(params, "params", source)),
        wall_time_s=check(lambda: optional("wall_time_s")),
        extra={k: v for k, v in data.items() if k not in _KNOWN},
    )


def _curve_point(point: Any, where: str, source: str) -> CurvePoint:
    if not isinstance(point, Mapping) or "step" not in point or "eval" not in point:
        raise AutoscaleError(f"{source}: {where} must be an object with 'step' and 'eval'")
    train_loss = point.get("train_loss")
    return CurvePoint(
        step=_count(point["step"], f"{where}.step", source),
        tokens=_count(point.get("tokens", 0), f"{where}.tokens", source),
        eval=_evals(point["eval"], f"{where}.eval", source),
        train_loss=None if train_loss is None else _number(train_loss, f"{where}.train_loss", source),
    )
