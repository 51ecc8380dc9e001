"""The typed records of an experiment folder: what the pipeline writes, and what the report, `status`,
the CLI and the recipes read (pydantic; their JSON Schemas are in docs/schema/, `schemas()`).

Files and their records (names: `autoscale.experiment.folder`)::

    experiment.json          ExperimentRecord: the resolved config of the last run, domains, data, objective
    <method>_<budget>.json   SearchRecord (DDORecord when it holds DDO fits)
    <method>_target.json     MethodRecord: the method's mixture at the target
    validation.json          ValidationRecord: per mixture and seed, final objective, curve; speed-ups,
                             gains; downstream scores
    summary.json             SummaryRecord: every method's entry (`MethodEntry`), validation summary

Every file carries ``schema_version`` (``SCHEMA_VERSION``; a file without it was written before
records were typed and is read through `autoscale.experiment.legacy`). A record keeps fields it does
not declare (a method's own diagnostics; fields of a newer autoscale) and writes its fields in the
order they were given, so that typing a record never reshuffles a file.

Units: tokens are absolute counts; weights sum to 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationError,
    WrapValidator,
    model_serializer,
    model_validator,
)

from autoscale.errors import AutoscaleError

SCHEMA_VERSION = 2  # 1: the files of autoscale before typed records (no schema_version field)
# a number as written: an integer stays an integer (a record never rewrites 1000000 as 1000000.0)
Num = Annotated[float, WrapValidator(lambda v, check: v if type(v) is int else check(v)), PlainSerializer(lambda v: v)]


class Part(BaseModel):
    """A JSON object of a record: declared fields typed, other fields kept, the writer's key order kept."""

    model_config = ConfigDict(extra="allow")
    _order: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _remember_order(cls, data: Any, handler: Any) -> Any:
        part = handler(data)
        if isinstance(data, dict):
            part._order = tuple(data)
        return part

    @model_serializer(mode="wrap")
    def _in_given_order(self, handler: Any) -> dict[str, Any]:
        out = handler(self)
        rank = {k: i for i, k in enumerate(self._order)}
        return dict(sorted(out.items(), key=lambda kv: rank.get(kv[0], len(rank))))


class Record(Part):
    """A whole file."""

    schema_version: int = SCHEMA_VERSION


class MixtureRecord(Part):
    """A mixture (`autoscale.mixture.Mixture.to_dict`): tokens per domain, weights, budget; metadata beside."""

    tokens: dict[str, Num]
    weights: dict[str, Num] = Field(default_factory=dict)
    budget: Num | None = None


class GainRecord(Part):
    """A paired gain (`autoscale.gain.Gain.to_dict`) of mixture ``of`` over ``baseline``."""

    of: str | None = None  # absent in records older than several methods: the first method's mixture
    baseline: str
    mean: Num
    interval: list[Num] | None = None
    seeds: int
    verdict: str
    level: Num | None = None


class SpeedUpRecord(Part):
    """One seed's speed-up (`autoscale.speedup.SpeedUp`) of ``method`` over ``baseline``, in training tokens."""

    method: str
    baseline: str
    speedup: Num | None
    tokens_to_reach: Num | None
    baseline_tokens: Num
    baseline_final: Num
    method_final: Num
    smoothing: str
    seed: int = 0


# --- experiment.json -----------------------------------------------------------------------------


class SearchSettings(Part):
    """A search section of the config as the report reads it (DDO's: its budgets and ratios)."""

    budgets: list[Num] = Field(default_factory=list)
    ratios: list[Num] = Field(default_factory=list)


class ConfigPart(Part):
    """The resolved config of the last `autoscale run` (`autoscale.experiment.config`), the parts
    read back typed; the rest as written."""

    name: str | None = None
    methods: list[str] | None = None
    proxy: dict[str, Any] | None = None
    ddo: SearchSettings | None = None
    executor: dict[str, Any] | None = None


#: ``ExperimentRecord.data`` without a token store: this prefix, then the config's ``data.fingerprint``
USER_DATA = "user:"


class ExperimentRecord(Record):
    """experiment.json: the resolved config, the domains, the data's identity (the store's manifest
    hash, or ``USER_DATA`` + the fingerprint), the caps, the objective."""

    config: ConfigPart
    domains: list[str]
    objective: str | None = None
    data: str | None = None
    unique_tokens: dict[str, Num] | None = None
    caps: dict[str, Num] | None = None


# --- a method's own files ------------------------------------------------------------------------


class SearchRecord(Record):
    """A method's fit at one search budget (``<method>_<budget>.json``): the budget, the mixture it
    found there, the keys of its runs (label -> run key) and warnings; the rest is the method's own."""

    budget: Num
    mixture: MixtureRecord
    runs: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)


class FitRecord(Part):
    """One domain's power law at one budget, in relative amounts x and normalised objectives y."""

    a: Num
    b: Num
    c: Num
    x: list[Num]
    y: list[Num]
    residuals: list[Num] | None = None
    r2: Num | None = None


class DDORecord(SearchRecord):
    """A DDO search record (`autoscale.ddo.record.ddo_record`): per-domain fits, the allocation,
    noise, held domains and intervals, and the keys of its runs."""

    fits: dict[str, FitRecord]
    bounded: dict[str, Any] = Field(default_factory=dict)
    intervals: dict[str, list[Num]] = Field(default_factory=dict)
    held: dict[str, Any] | list[str] = Field(default_factory=dict)
    noise: dict[str, Any] | None = None
    predicted_gain: Num | None = None
    predicted_gain_se: Num | None = None


class MethodRecord(Record):
    """A method's mixture at the target (``<method>_target.json``); ``held`` and ``intervals`` when
    the method gives them, the rest its own diagnostics."""

    mixture: MixtureRecord
    target_budget: Num | None = None
    held: dict[str, Any] | list[str] = Field(default_factory=dict)
    intervals: dict[str, list[Num]] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)


# --- validation.json -----------------------------------------------------------------------------


class CurveRecord(Part):
    """A validation run's evaluations: optimizer step, training tokens, objective, as smoothed."""

    step: list[int]
    tokens: list[Num] | None = None  # absent in records older than curves in tokens
    objective: list[Num]
    smoothed: list[Num] | None = None


class ValidationRun(Part):
    """One validated mixture at one seed."""

    seed: int
    key: str | None = None
    run_dir: str | None = None
    status: str
    error: str | None = None
    final_objective: Num | None = None
    final_perplexity: dict[str, Num] | None = None
    tokens_per_domain: dict[str, Num] | None = None
    curve: CurveRecord | None = None


class TaskScore(Part):
    value: Num
    stderr: Num | None = None


class DownstreamScores(Part):
    """A mixture's downstream scores, the mean over its seeds."""

    tasks: dict[str, TaskScore]
    average: Num
    seeds: int = 1


class DownstreamRecord(Part):
    """lm-evaluation-harness scores of every completed validation run (``target.downstream``)."""

    tasks: list[str]
    num_fewshot: int | None = None
    limit: int | None = None
    runs: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    mixtures: dict[str, DownstreamScores] = Field(default_factory=dict)


class ValidationRecord(Record):
    """validation.json: every validated mixture trained at the target with each seed, each method's
    mixture's speed-ups (per seed, and their mean per baseline) and paired gains over the others."""

    target_budget: Num | None = None
    objective: str | None = None
    smoothing: str | None = None
    smoothing_weight: Num = 0.0
    seeds: list[int] = Field(default_factory=list)
    mixtures: dict[str, MixtureRecord]
    runs: dict[str, list[ValidationRun]]
    speedups: list[SpeedUpRecord] = Field(default_factory=list)
    speedup_mean: dict[str, Num | None] = Field(default_factory=dict)
    speedup_means: dict[str, dict[str, Num | None]] = Field(default_factory=dict)
    final_perplexity: dict[str, dict[str, Num]] = Field(default_factory=dict)
    gains: list[GainRecord] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)
    downstream: DownstreamRecord | None = None

    def means_of(self, mixture: str) -> dict[str, Num | None]:
        """``mixture``'s mean speed-up per baseline (records before several methods: ``speedup_mean``)."""
        return self.speedup_means.get(mixture) or ({} if self.speedup_means else self.speedup_mean)


# --- summary.json --------------------------------------------------------------------------------


class SearchedMixture(Part):
    """A method's optimum at one search budget, with what the search says of it (AutoScale: its DDO
    noise, held domains, intervals and the predicted gain over the base mixture)."""

    budget: Num
    weights: dict[str, Num]
    tokens: dict[str, Num] = Field(default_factory=dict)
    bounded: dict[str, Any] = Field(default_factory=dict)
    held: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    intervals: dict[str, list[Num]] = Field(default_factory=dict)
    replicates: int = 1
    noise: Num | None = None
    predicted_gain: Num | None = None
    predicted_gain_se: Num | None = None


class AtTarget(Part):
    """A method's mixture at the target with its intervals, held domains and warnings."""

    budget: Num
    weights: dict[str, Num]
    tokens: dict[str, Num] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    held: dict[str, Any] = Field(default_factory=dict)
    intervals: dict[str, list[Num]] = Field(default_factory=dict)


class MethodEntry(Part):
    """One method in summary.json: its validation mixture's name, its mixture, the compute of its
    search (runs shared with another method's design charged to both; ``shared_tokens`` says how
    much) and, when validated, its final objective and gain over uniform. ``searched`` and
    ``target``: what the method reports of its search budgets and of its mixture at the target."""

    mixture: str
    description: str = ""
    weights: dict[str, Num]
    target_budget: Num
    search_runs: int
    search_tokens: Num
    search_vs_target: Num
    shared_tokens: Num = 0.0
    final_objective: Num | None = None
    gain_over_uniform: GainRecord | None = None
    searched: list[SearchedMixture] = Field(default_factory=list)
    target: AtTarget | None = None


class ValidationSummary(Part):
    smoothing: str | None = None
    speedups: list[SpeedUpRecord] = Field(default_factory=list)
    speedup_mean: dict[str, Num | None] = Field(default_factory=dict)
    speedup_means: dict[str, dict[str, Num | None]] = Field(default_factory=dict)
    final_perplexity: dict[str, dict[str, Num]] = Field(default_factory=dict)
    final_objective: dict[str, list[Num | None]] = Field(default_factory=dict)
    gains: list[GainRecord] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)
    downstream: dict[str, DownstreamScores] | None = None


class SummaryRecord(Record):
    """summary.json: the numbers of the report. ``methods`` in the config's order: the first is the
    one the report and the CLI feature."""

    name: str | None = None
    domains: list[str]
    objective: str | None = None
    data: str | None = None
    methods: dict[str, MethodEntry]
    search_compute: dict[str, Num] = Field(default_factory=dict)
    validation: ValidationSummary | None = None
    runs: dict[str, int] = Field(default_factory=dict)
    wall_time_s: Num | None = None
    executor: str | None = None

    @property
    def featured(self) -> tuple[str, MethodEntry] | None:
        """(name, entry) of the featured method: the first configured."""
        return next(iter(self.methods.items()), None)


# --- reading and writing -------------------------------------------------------------------------

R = TypeVar("R", bound=BaseModel)


def parse(kind: type[R], data: Any, what: str) -> R:
    """``data`` as a ``kind`` record (a SearchRecord holding DDO fits: a DDORecord); AutoscaleError
    naming ``what`` and the first bad field."""
    if kind is SearchRecord and isinstance(data, dict) and "fits" in data:
        kind = DDORecord  # type: ignore[assignment]
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        if not field:
            problem = f"expected a JSON object, got {_json_kind(data)}"
        elif first["type"] == "missing":
            problem = f"missing field {field!r}"
        else:
            expected = first["msg"].replace("Input should be", "must be").split(" or instance of ")[0].split(",")[0]
            problem = f"field {field!r} {expected}, got {_json_kind(first['input'])}"
        raise AutoscaleError(f"{what}: {problem}") from None


def _json_kind(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    names = ((type(None), "null"), (bool, "a boolean"), ((int, float), "a number"), (str, "a string"),
             (list, "a list"), (dict, "an object"))
    return next((name for types, name in names if isinstance(value, types)), type(value).__name__)


def dump(record: Part) -> dict[str, Any]:
    """A record as JSON-able data, ``schema_version`` first (fields never given stay absent)."""
    data = record.model_dump(mode="json", exclude_unset=True)
    if isinstance(record, Record):
        data = {"schema_version": record.schema_version, **data}
    return data


def schemas() -> dict[str, dict[str, Any]]:
    """File name in docs/schema/ -> its JSON Schema: the experiment's records and metrics.json."""
    from autoscale.train.metrics import MetricsFile

    kinds: dict[str, type[BaseModel]] = {
        "metrics.json": MetricsFile, "experiment.json": ExperimentRecord, "summary.json": SummaryRecord, "validation.json": ValidationRecord,
        "method-target.json": MethodRecord, "search-record.json": SearchRecord, "ddo-record.json": DDORecord,
    }
    return {f"{Path(name).stem}.schema.json": kind.model_json_schema() for name, kind in kinds.items()}

