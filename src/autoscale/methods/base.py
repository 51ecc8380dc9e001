"""The interface every data-mixing method implements, so that all of them run on one backend.

A method does not train anything and touches no file. Given the experiment's facts (`Context`) and
its own settings, it says which runs to train (`stages`: mixtures at budgets, each with a seed);
the pipeline trains them through whichever executor is configured (our trainer, Ray, the user's
command), reusing any run already in the run store, and hands the finished runs back. The method
turns them into its mixture at the target budget plus its diagnostics (`result`). Artefacts come
back as `Artefact` values; the experiment folder names and writes them.

Units: tokens are absolute counts; weights sum to 1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
from pydantic import BaseModel

from autoscale.ddo.runs import RunsTable
from autoscale.mixture import Mixture
from autoscale.speedup import Objective, metric_value


@dataclass(frozen=True)
class Context:
    """What every method may know about the experiment.

    ``natural``: unique training tokens per domain (None without a token store, e.g. an external
    trainer); ``caps``: the most tokens a domain may receive (max_epochs x unique tokens);
    ``target``: target.budget as configured (None: the method's own default, if it has one);
    ``validation``: the validation domains the objective reads, when they are not the training
    ``domains`` (a held-out target domain; RegMix's 13 validation sets for 17 training domains).
    """

    domains: tuple[str, ...]
    seed: int
    objective: Objective
    validation: tuple[str, ...] = ()
    natural: Mapping[str, float] | None = None
    caps: Mapping[str, float] | None = None
    target: float | None = None
    offsets: bool = False  # target.offsets: AutoScale's law on tokens + the DDO offsets
    # the file name the experiment folder gives an artefact of this method (kind, budget)
    name_of: Callable[[str, float | None], str] = lambda kind, budget: ""

    @property
    def eval_domains(self) -> tuple[str, ...]:
        """The validation domains: ``validation``, or the training domains."""
        return self.validation or self.domains


@dataclass(frozen=True)
class PlannedRun:
    """One training run a method asks for: ``tokens`` per domain (absolute), a seed, and
    optionally fewer evaluation points than the proxy's (a search run needs its final value only).
    ``label`` is unique within its stage; ``row`` names it in a runs table (default: the label).
    A run with a ``mode`` needs autoscale's trainer (the method says so: ``own_trainer``)."""

    label: str
    tokens: Mapping[str, float]
    seed: int
    eval_points: int | None = None
    row: str | None = None
    mode: Mapping[str, Any] | None = None  # a training mode of our trainer (DoReMi's); in the run key
    phases: int = 1  # trainings of ``tokens`` the run makes (DoReMi: the reference, then the proxy)

    @property
    def budget(self) -> float:
        return float(sum(self.tokens.values()))

    @property
    def cost(self) -> float:
        """Training tokens the run costs: its budget times its phases."""
        return self.budget * self.phases


@dataclass(frozen=True)
class Stage:
    """Runs trained together, then checked together (`Method.check`); ``budget``: their budget."""

    name: str
    budget: float
    runs: tuple[PlannedRun, ...]


@dataclass(frozen=True)
class FinishedRun:
    """A planned run after training: ``metrics`` is its metrics.json (completed runs only)."""

    planned: PlannedRun
    key: str
    status: str  # completed | failed
    error: str | None = None
    metrics: Mapping[str, Any] | None = None


def failures(runs: Sequence[FinishedRun], shown: int = 3) -> str:
    """The failed runs as one line, identical errors once with their count: ``12 runs: trainer exited
    with status 1: No module named 'torch' (ddo 1M: base, ddo 1M: web-x0.2, ... and 9 more)``."""
    by_error: dict[str, list[str]] = {}
    for r in runs:
        if r.status != "completed":
            by_error.setdefault(r.error or "no reason given", []).append(r.planned.label)
    parts = []
    for error, labels in by_error.items():
        named = ", ".join(labels[:shown]) + (f", ... and {len(labels) - shown} more" if len(labels) > shown else "")
        parts.append(f"{len(labels)} run{'s' if len(labels) > 1 else ''}: {error} ({named})")
    return "; ".join(parts)


@dataclass(frozen=True)
class Artefact:
    """A file a method produces: ``kind`` table (a RunsTable), record (JSON at ``budget``: at least
    ``budget`` and the ``mixture`` found there, `autoscale.experiment.records.SearchRecord`) or
    result (JSON: the ``mixture`` at the target, `MethodRecord`); the experiment folder names it."""

    kind: Literal["table", "record", "result"]
    data: Any
    budget: float | None = None


@dataclass(frozen=True)
class MethodResult:
    """A method's answer: its ``mixture`` at the target budget, the optima it found on the way
    (``searched``: budget -> mixture), mixtures it offers as baselines (AutoScale: its DDO optimum
    reused), its ``artefacts``, ``summary`` (JSON added to its entry in summary.json:
    `autoscale.experiment.records.MethodEntry`'s ``searched`` (its optimum at each search budget) and
    ``target`` (its mixture at the target with intervals and held domains), or fields of its own) and
    ``notes`` (warnings)."""

    mixture: Mixture
    artefacts: tuple[Artefact, ...] = ()
    searched: Mapping[float, Mixture] = field(default_factory=dict)
    baselines: Mapping[str, Mixture] = field(default_factory=dict)
    summary: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    # stages the result completes: (stage, one-line detail, warnings), in order
    stages: tuple[tuple[str, str, tuple[str, ...]], ...] = ()


class Method(Protocol):
    """A data-mixing method. ``name`` is its entry in the config's ``methods:`` list, ``section``
    the config section holding its ``Settings`` (pydantic; None: the method has no section),
    ``mixture`` the name of its mixture in validation, ``description`` one line for the report.

    Optional attributes, with their defaults here (a method subclasses `Method` to take them):
    ``own_trainer`` (False): its runs need autoscale's trainer (a training mode), not the user's
    command; ``offers`` (()): the baselines of `autoscale.baselines` it offers (its result's
    ``baselines``), validated only when it runs; ``default_target`` (False): it picks the target
    budget itself when ``target.budget`` is not given (its result's mixture sets it)."""

    name: ClassVar[str]
    section: ClassVar[str]
    mixture: ClassVar[str]
    description: ClassVar[str]
    Settings: ClassVar[type[BaseModel]]
    own_trainer: ClassVar[bool] = False
    offers: ClassVar[tuple[str, ...]] = ()
    default_target: ClassVar[bool] = False

    def search_budgets(self, settings: Any) -> Sequence[float]:
        """The budgets its search trains at (the target must exceed them)."""
        ...

    def stages(self, settings: Any, ctx: Context) -> Sequence[Stage]:
        """The runs to train, in order."""
        ...

    def check(self, settings: Any, ctx: Context, stage: Stage, runs: Sequence[FinishedRun]) -> tuple[Artefact, ...]:
        """After one stage: its artefacts, or AutoscaleError when too few runs finished to go on."""
        ...


    def result(self, settings: Any, ctx: Context, runs: Mapping[str, Sequence[FinishedRun]]) -> MethodResult:
        """The mixture at the target from every stage's finished runs (stage name -> runs)."""
        ...


def runs_table(runs: Sequence[FinishedRun], domains: Sequence[str], metric: str,
               eval_domains: Sequence[str] | None = None) -> RunsTable:
    """The completed ``runs`` as a runs table: the tokens each ACTUALLY trained (metrics
    ``tokens_per_domain``: whole sequences; else what was asked for), one eval column per validation
    domain (``eval_domains``, default the training ``domains``: its final validation ``metric``) and
    the seed column."""
    eval_domains = tuple(eval_domains or domains)
    done = [r for r in runs if r.status == "completed" and r.metrics is not None]
    tokens, evals = [], []
    for r in done:
        trained = r.metrics.get("tokens_per_domain") or {}  # type: ignore[union-attr]
        tokens.append([float(trained.get(d, r.planned.tokens[d])) for d in domains])
        evals.append([metric_value(r.metrics["final"][d], metric) for d in eval_domains])  # type: ignore[index]
    return RunsTable(tuple(r.planned.row or r.planned.label for r in done), tuple(domains),
                     np.array(tokens, dtype=float).reshape(len(done), len(domains)), eval_domains,
                     np.array(evals, dtype=float).reshape(len(done), len(eval_domains)),
                     np.array([r.planned.seed for r in done], dtype=np.int64))


def weights_line(mixture: Mixture) -> str:
    """``web 0.500, code 0.300, books 0.200``: a mixture's weights in one line."""
    return ", ".join(f"{d} {w:.3f}" for d, w in mixture.weights.items())


def base_weights(base: str | Mapping[str, float], ctx: Context, section: str) -> dict[str, float]:
    """A ``base:`` setting (uniform | natural | {domain: weight}) as weights over ``ctx.domains``."""
    from autoscale.errors import AutoscaleError

    if base == "uniform":
        return {d: 1.0 for d in ctx.domains}
    if base == "natural":
        if ctx.natural is None:
            raise AutoscaleError(f"{section}.base 'natural' needs data.store (the store's token shares)")
        return {d: float(ctx.natural[d]) for d in ctx.domains}
    assert isinstance(base, Mapping)
    return {d: float(base.get(d, 0.0)) for d in ctx.domains}


def fitted_answer(name: str, mixture: Mixture, ctx: Context, record: Mapping[str, Any], budget: float,
                  stage: str, warnings: Sequence[str] = (), **searched: Any) -> MethodResult:
    """The answer of a method that fits once: its ``record`` at its (largest) search ``budget``, its
    mixture at the target as the result file (with ``searched``: where it searched), and ``stage``
    completed with the mixture's weights and ``warnings``."""
    result = {"mixture": mixture.to_dict(), "target_budget": ctx.target, **searched, "method": name,
              "warnings": list(warnings)}
    return MethodResult(mixture, (Artefact("record", record, budget), Artefact("result", result)), {budget: mixture},
                        stages=((stage, weights_line(mixture), tuple(warnings)),))
