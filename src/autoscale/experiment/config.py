"""ExperimentConfig: one YAML file that defines a whole AutoScale experiment.

Validated with pydantic v2 (unknown keys are errors). Every problem becomes one ``AutoscaleError``
line naming the key and the value. Relative paths are relative to the config file. Example::

    name: tiny                     # default: the config file's stem
    seed: 0                        # seed of every proxy run (validation runs: target.seeds)
    output: runs/tiny              # experiment directory; default: <config stem>/ beside the file
    data:
      store: store                 # token store (`autoscale data ...`)
      sources: corpus              # optional: (re)build the store from this corpus folder, one
                                   #   file or folder per domain (incremental: unchanged domains stay)
      vocab_size: 2048             # with sources: BPE vocabulary; val_tokens: validation tokens per domain
      text_fields: {web: content}  # with sources: a domain's JSON key / parquet column (default: text)
      domains: [web, code, books]  # optional: subset and order of the store's domains (the training
                                   #   domains; a store domain left out can still be a validation
                                   #   domain that objective.weights names: a held-out target)
      # validation: [pile_cc]      # without a store: validation-only domains the user's trainer reports
    proxy:                         # trainer settings (autoscale.train.ProxyConfig, without `store`)
      model: {n_layer: 2, d_model: 64, n_head: 2, seq_len: 64}
      train: {batch_size: 8, lr: 3.0e-3}
      eval: {points: 8, max_tokens: 4096}
    methods: [autoscale, regmix, dml, doremi, mixture-law]  # mixing methods (autoscale.methods);
                                   #   default [autoscale]. Each
                                   #   has its section below, required when it runs, refused when not
    ddo:                           # AutoScale's settings
      design: 2                    # version of the search design (default 1): the defaults of ratios and
                                   #   replicates (methods/autoscale.py DESIGNS); 2: x0.1 and x5, 4 replicates
      budgets: [1.0e5, 1.6e6]      # tokens, two or more, increasing (design 2 was measured 16x apart)
      ratios: [0.1, 5.0]           # perturbation amounts relative to the base run (design 1: 0.2, 3)
      base: uniform                # uniform | natural | {domain: weight}
      min_ratio: 0.2               # floor on each domain, relative to the base amount
      max_epochs: 4                # cap: epochs x unique tokens (a number or {domain: epochs})
      replicates: 4                # seeds per design point (seed, seed+1, ...): measures the noise (design 1: 1)
      bootstrap: 0                 # resamples of whole seeds for intervals (needs replicates >= 2)
      eval_points: 1               # DDO runs: the final evaluation only (and step 0, as every curve)
    regmix:                        # RegMix's (methods/regmix.py): random mixtures at one budget
      budget: 4.0e5                #   tokens of each search run
      runs: 48                     #   mixtures trained (default 16 m; at least 4 m + 4)
      prior: natural               #   natural (token shares; default with a store) | uniform
      candidates: 100000           #   random mixtures the regressor scores; the top_k best averaged
      top_k: 100
      floor: null                  #   least weight of the chosen mixture (default 0.2 / m)
      max_epochs: 4                #   caps, as ddo.max_epochs; eval_points, temperature, min_weight too
    dml:                           # Data Mixing Laws' (methods/dml.py): budget, runs (default 4 m + 4;
      budget: 4.0e5                #   at least m + 2) and the other settings of regmix but the search's
    doremi:                        # DoReMi's (methods/doremi.py): one run in our trainer's DoReMi mode
      budget: 4.0e5                #   tokens of the reference run and of the proxy run
      base: uniform                #   the reference's mixture and the proxy's batches; eta 1, smoothing 1e-3
    mixture_law:                   # the optimal-mixture law's (methods/mixture_law.py)
      budgets: [1.0e5, 2.0e5, 4.0e5]   # 3 or more spanning 4x; runs (default 4 m + 4) mixtures at each
    objective:
      metric: perplexity           # perplexity | loss, per validation domain
      weights: null                # {domain: weight}; null: unweighted mean (the paper's)
    target:
      budget: 1.28e7               # tokens; null: AutoScale's rule N2^2 / N1 (only with autoscale alone)
      offsets: false               # true: apply the law to tokens + DDO offsets (see extrapolate.py)
      validate: true               # train the predicted mixture and the comparisons at the target
      compare: [uniform, natural, ddo]   # baselines (autoscale.baselines): uniform, natural, ddo (with
                                         #   autoscale), llama-style; default the first three
      mixtures: {llama: {web: 0.7, code: 0.1, books: 0.2}}   # named custom weights, also compared
      seeds: [0]
      smoothing: 0.6               # curve smoothing: neighbours k evaluations away weigh w^k (0: none)
      downstream: {tasks: [autoscale_wordcloze], num_fewshot: 0}   # lm-eval on every validation run
    executor:
      kind: inline                 # inline | ray | command
      retries: 1                   # extra attempts for a failed or diverged run
      # ray:     workers, num_cpus, num_gpus (per run), address, dashboard
      # command: command (argument list with {placeholders}), cwd, env, workers, timeout_s, trainer_id

Domain names (``data.domains`` and the keys of every weights mapping) follow ``autoscale.domains``:
no ``,`` or ``=``, no surrounding spaces, at most 100 characters.

Units: budgets are absolute tokens (token counts may be written as on the command line: ``2M``,
``1.2B``, ``16k``); ratios and ``min_ratio`` are amounts relative to the base run's
per-domain tokens; mixture entries under ``base``/``mixtures``/``objective.weights`` are weights
(normalised to sum to 1).
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from autoscale.baselines import BASELINES, DEFAULT_COMPARE
from autoscale.errors import AutoscaleError
from autoscale.methods import DEFAULT_METHODS, METHODS
from autoscale.methods.autoscale import DDOConfig  # noqa: F401  (AutoScale's section, importable from here)
from autoscale.settings import Strict as _Strict
from autoscale.settings import Tokens
from autoscale.settings import check_names as _check_names
from autoscale.settings import check_weights as _check_weights
from autoscale.train.config import ProxyConfig, WholeTokens
from autoscale.yamlfile import read_yaml

#: names a user mixture may not take: the baselines' and the methods' own mixtures
RESERVED_NAMES = (*BASELINES, *(m.mixture for m in METHODS.values()), *METHODS)
# What a command template may refer to; `tokens` and `weights` are indexed by domain: {tokens[web]}.
PLACEHOLDERS = (
    "run_dir", "mixture_json", "budget", "seed", "key", "label", "store", "domains", "tokens", "weights", "python",
)


class DataConfig(_Strict):
    """Where the training and validation tokens come from."""

    store: Path | None = Field(None, description="token store directory")
    sources: Path | None = Field(None, description="corpus folder (one file or folder per domain) to build the store from")
    vocab_size: int | None = Field(None, ge=16, description="with sources: tokenizer vocabulary to train")
    val_tokens: WholeTokens | None = Field(None, ge=1, description="with sources: validation tokens per domain")
    text_fields: dict[str, str] | None = Field(
        None, description="with sources: {domain: JSON key / parquet or dataset column}; default 'text'"
    )
    domains: list[str] | None = Field(None, min_length=1, description="subset and order of the domains")
    fingerprint: str = Field("", description="identifies the data when there is no store (command executor)")
    validation: list[str] = Field(
        default_factory=list, description="without a store: validation-only domains the user's trainer reports "
        "(objective.weights may name them: a held-out target domain); with a store, its untrained domains are")

    @field_validator("domains", "validation")
    @classmethod
    def _unique(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"domains must be unique, got {v}")
        _check_names(v or ())
        return v

    @field_validator("text_fields")
    @classmethod
    def _fields(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        empty = [d for d, f in (v or {}).items() if not f.strip()]
        if empty:
            raise ValueError(f"text_fields: domain {empty[0]!r} has an empty field name")
        return v


class ObjectiveConfig(_Strict):
    """What the fit minimises: a weighted mean over validation domains of ``metric``."""

    metric: Literal["perplexity", "loss"] = "perplexity"
    weights: dict[str, float] | None = None

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        return _check_weights(v)


class DownstreamConfig(_Strict):
    """Downstream evaluation of every validation run through lm-evaluation-harness (`autoscale eval`)."""

    tasks: list[str] = Field(min_length=1, description="autoscale's local tasks or cached standard lm-eval tasks")
    num_fewshot: int = Field(0, ge=0)
    limit: int | None = Field(None, ge=1, description="score only the first N documents of each task")
    include_path: Path | None = Field(None, description="a folder of your own lm-eval task YAMLs (lm-eval's "
                                      "--include_path); relative to the config file")


class TargetConfig(_Strict):
    """The large budget to predict for, and the optional validation runs there."""

    budget: Tokens | None = Field(None, gt=0, description="tokens; null: the paper's N2^2/N1 rule")
    offsets: bool = Field(False, description="apply the law to tokens + the DDO offsets a_i (not the paper's)")
    validate_: bool = Field(False, alias="validate")
    compare: list[str] | None = Field(
        None, description="baselines (autoscale.baselines); default uniform, natural and ddo (ddo with AutoScale)")
    mixtures: dict[str, dict[str, float]] = Field(default_factory=dict, description="name -> weights")
    seeds: list[int] | None = Field(None, min_length=1)
    smoothing: float = Field(0.6, ge=0, lt=1, description="curve smoothing weight: neighbours k evaluations away weigh w^k")
    downstream: DownstreamConfig | None = Field(None, description="lm-eval tasks for every validation run")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("mixtures")
    @classmethod
    def _mixtures(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for name, weights in v.items():
            if name in RESERVED_NAMES:
                raise ValueError(f"mixture name {name!r} is reserved; choose another")
            _check_weights(weights, f"mixtures.{name}")
        return v

    @field_validator("compare")
    @classmethod
    def _compare(cls, v: list[str] | None) -> list[str] | None:
        return v if v is None else _known(v, BASELINES, "baseline")


class ExecutorConfig(_Strict):
    """How runs are executed. ``num_cpus``/``num_gpus`` are per run (Ray task resources; torch
    threads in a Ray task = ``num_cpus``). ``workers``: runs at once (Ray local cluster size,
    parallel commands)."""

    kind: Literal["inline", "ray", "command"] = "inline"
    retries: int = Field(1, ge=0, description="extra attempts for a failed or diverged run")
    workers: int | None = Field(None, ge=1)
    num_cpus: float = Field(1, gt=0)
    num_gpus: float = Field(0, ge=0)
    address: str | None = Field(None, description="ray: an existing cluster; default: a local one")
    dashboard: bool = Field(False, description="ray: start the dashboard (on 127.0.0.1)")
    command: list[str] | None = Field(None, min_length=1, description="argument list, no shell")
    cwd: Path | None = Field(None, description="command: working directory; default: the config's folder")
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: float | None = Field(None, gt=0)
    trainer_id: str = Field("", description="command: part of every run key; change it with your trainer")

    @model_validator(mode="after")
    def _kind(self) -> ExecutorConfig:
        if self.kind == "command":
            if not self.command:
                raise ValueError("executor.command (an argument list) is required when kind is 'command'")
            for arg in self.command:
                _check_placeholders(arg)
        elif self.command is not None:
            raise ValueError(f"executor.command is only used with kind 'command', not {self.kind!r}")
        if self.cwd is not None and self.kind != "command":
            raise ValueError(f"executor.cwd is only used with kind 'command', not {self.kind!r}")
        if self.address is not None and self.kind != "ray":
            raise ValueError(f"executor.address is only used with kind 'ray', not {self.kind!r}")
        if self.kind != "ray":
            given = [k for k in ("num_cpus", "num_gpus", "dashboard") if k in self.model_fields_set]
            if given:
                raise ValueError(f"executor.{given[0]} is only used with kind 'ray' (inline runs: proxy.train)")
        if self.workers is not None and self.kind == "inline":
            raise ValueError("executor.workers is for kinds 'ray' and 'command'; inline runs one at a time")
        return self


def _known(names: list[str], known: Any, what: str) -> list[str]:
    """``names`` when each is one of ``known`` and none repeats (ValueError: pydantic reports it)."""
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown {what} {unknown[0]!r} (known: {', '.join(known)})")
    if len(set(names)) != len(names):
        raise ValueError(f"lists a {what} twice: {names}")
    return names


def _check_placeholders(arg: str) -> None:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(arg) if f is not None]
    except ValueError as exc:
        raise ValueError(f"executor.command argument {arg!r}: {exc} (write {{{{ and }}}} for braces)") from None
    for f in fields:
        root = f.split("[", 1)[0]
        if root not in PLACEHOLDERS or "." in f:
            raise ValueError(
                f"executor.command argument {arg!r}: unknown placeholder {{{f}}} "
                f"(known: {', '.join(PLACEHOLDERS)})"
            )


class _Experiment(_Strict):
    """The settings common to every method; `ExperimentConfig` adds each method's section."""

    name: str | None = None
    seed: int = Field(0, ge=0)
    output: Path | None = None
    data: DataConfig
    proxy: ProxyConfig = ProxyConfig()
    methods: list[str] = Field(list(DEFAULT_METHODS), min_length=1, description="mixing methods to run and compare")
    objective: ObjectiveConfig = ObjectiveConfig()
    target: TargetConfig = TargetConfig()
    executor: ExecutorConfig = ExecutorConfig()

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        return _known(v, METHODS, "method")

    @model_validator(mode="after")
    def _consistent(self) -> _Experiment:
        if self.proxy.store is not None:
            raise ValueError("proxy.store: give the store once, as data.store")
        if "seed" in self.proxy.train.model_fields_set:
            raise ValueError("proxy.train.seed: give the seed once, as the top-level 'seed'")
        if self.executor.kind != "command" and self.data.store is None:
            raise ValueError(f"data.store is required with executor kind {self.executor.kind!r}")
        if self.data.store is None and self.data.domains is None:
            raise ValueError("data.domains is required when there is no data.store")
        if self.data.sources is not None and self.data.store is None:
            raise ValueError("data.sources needs data.store (where to build the store)")
        if self.data.sources is None and (self.data.vocab_size or self.data.val_tokens):
            raise ValueError("data.vocab_size and data.val_tokens only apply with data.sources")
        if self.data.sources is None and self.data.text_fields:
            raise ValueError("data.text_fields only apply with data.sources")
        for method in METHODS.values():
            given = method.section in self.model_fields_set and getattr(self, method.section) is not None
            if given and method.name not in self.methods:
                raise ValueError(f"{method.section}: settings of method {method.name!r}, which is not in methods "
                                 f"({', '.join(self.methods)})")
            if method.name in self.methods and getattr(self, method.section) is None:
                raise ValueError(f"missing required setting {method.section!r} (the settings of method {method.name!r})")
        if self.target.downstream is not None:
            if self.executor.kind == "command":
                raise ValueError("target.downstream evaluates the weights autoscale's trainer keeps, not executor "
                                 "kind 'command': score the models your trainer saves with "
                                 "`autoscale eval --hf-model DIR --tasks ...`")
            if not self.target.validate_:
                raise ValueError("target.downstream evaluates the validation runs: set target.validate: true")
        others = [m for m in self.methods if not METHODS[m].default_target]
        if others and self.target.budget is None:
            chooses = [m.name for m in METHODS.values() if m.default_target]
            raise ValueError(f"target.budget is required with method {others[0]!r} "
                             f"(only {' and '.join(chooses) or 'none'} can choose the target)")
        for name in self.target.compare or ():
            if name in BASELINES and BASELINES[name].weights is None and name not in self.offered:
                by = [m.name for m in METHODS.values() if name in m.offers]
                raise ValueError(f"target.compare: {name!r} ({BASELINES[name].description}) needs "
                                 f"{' or '.join(by) or 'a method that offers it'} among the methods")
        for name, settings in self.method_settings.items():
            if METHODS[name].own_trainer and self.executor.kind == "command":
                raise ValueError(f"method {name!r} needs autoscale's trainer (executor kind inline or ray), "
                                 "not executor kind 'command'")
            largest = max(METHODS[name].search_budgets(settings))
            if self.target.budget is not None and self.target.budget <= largest:
                section = METHODS[name].section
                raise ValueError(f"target.budget ({self.target.budget:g}) must exceed the largest {section} budget "
                                 f"({largest:g})")
            if getattr(settings, "eval_points", None) is not None and self.executor.kind == "command":
                raise ValueError(f"{METHODS[name].section}.eval_points applies to autoscale's trainer, "
                                 "not executor kind 'command'")
        if self.data.store is None:
            if "natural" in self.bases or (self.target.validate_ and "natural" in self.comparisons):
                hint = ("; with your own trainer, compare without it (target.compare: [uniform, ddo]) or give a "
                        "store of your corpus (`autoscale data prepare`) as data.store") if self.executor.kind == "command" else ""
                raise ValueError(f"the 'natural' mixture needs data.store (the store's token shares){hint}")
            for name, settings in self.method_settings.items():
                if getattr(settings, "max_epochs", None) is not None:
                    raise ValueError(f"{METHODS[name].section}.max_epochs needs data.store (unique tokens per domain)")
        return self

    @property
    def method_settings(self) -> dict[str, Any]:
        """Selected method -> its settings, in the order of ``methods``."""
        return {name: getattr(self, METHODS[name].section) for name in self.methods}

    @property
    def bases(self) -> list[Any]:
        """The ``base:`` settings of the selected methods that have one."""
        return [s.base for s in self.method_settings.values() if getattr(s, "base", None) is not None]

    @property
    def offered(self) -> set[str]:
        """The baselines the selected methods offer (`Method.offers`)."""
        return {b for m in self.methods for b in METHODS[m].offers}

    @property
    def comparisons(self) -> list[str]:
        """The baselines validated beside the methods' mixtures (``target.compare`` or the default)."""
        if self.target.compare is not None:
            return list(self.target.compare)
        return [b for b in DEFAULT_COMPARE if BASELINES[b].weights is not None or b in self.offered]

    @property
    def seeds(self) -> list[int]:
        """Seeds of the validation runs at the target."""
        return self.target.seeds if self.target.seeds is not None else [self.seed]

    def check_domains(self, domains: tuple[str, ...], evaluated: Sequence[str] | None = None) -> None:
        """Raise AutoscaleError if a domain named in the config is not among the training ``domains``;
        ``objective.weights`` may also name validation-only domains among ``evaluated`` (the domains
        our trainer evaluates; None: those of ``data.validation``, which the user's trainer reports)."""
        if evaluated is not None and self.data.validation:
            raise AutoscaleError("data.validation is for the user's trainer without a store; a store's untrained "
                                 "domains are validation domains already")
        evaluated = tuple(self.data.validation) if evaluated is None else evaluated
        stray = [d for d in self.objective.weights or {} if d not in domains and d not in evaluated]
        if stray:
            raise AutoscaleError(f"objective.weights: unknown domain {stray[0]!r} (training domains: {', '.join(domains)}"
                                 + (f"; validation-only: {', '.join(evaluated)})" if evaluated else ")"))
        named: list[tuple[str, dict[str, Any]]] = []
        for name, settings in self.method_settings.items():
            section = METHODS[name].section
            for key in ("base", "max_epochs"):
                if isinstance(getattr(settings, key, None), dict):
                    named.append((f"{section}.{key}", getattr(settings, key)))
        named += [(f"target.mixtures.{n}", w) for n, w in self.target.mixtures.items()]
        for where, mapping in named:
            unknown = [d for d in mapping if d not in domains]
            if unknown:
                raise AutoscaleError(
                    f"{where}: unknown domain {unknown[0]!r} (domains: {', '.join(domains)})"
                )
        for where, mapping in named:
            missing = [d for d in domains if mapping.get(d, 0) <= 0] if where.endswith(".base") else []
            if missing:
                raise AutoscaleError(f"{where}: domain {missing[0]!r} needs a positive weight")


def experiment_model() -> type[_Experiment]:
    """The whole experiment's model: the common settings plus one optional section per method of
    the registry as it is now (``ddo:`` for AutoScale, ...), required when the method is selected.
    See the module docstring."""
    return _experiment_model(tuple(METHODS))


@functools.cache
def _experiment_model(names: tuple[str, ...]) -> type[_Experiment]:
    sections = {METHODS[n].section: (METHODS[n].Settings | None, None) for n in names}
    return create_model("ExperimentConfig", __base__=_Experiment, __module__=__name__, **sections)  # type: ignore[call-overload]


#: The experiment's model for the built-in methods (`experiment_model` follows `register`).
ExperimentConfig = experiment_model()


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment YAML file; relative paths become relative to its folder."""
    path = Path(path)
    data = read_yaml(path, f"experiment config {str(path)!r}")
    config = config_from_dict(data, f"experiment config {str(path)!r}")
    return resolve_paths(config, path)


def config_from_dict(data: Any, what: str = "experiment config") -> ExperimentConfig:
    if not isinstance(data, dict):
        raise AutoscaleError(f"{what}: expected a mapping of settings, got {type(data).__name__}")
    try:
        return experiment_model().model_validate(data)
    except ValidationError as exc:
        raise AutoscaleError(f"{what}: {_one_line(exc)}") from None


def settings_from_dict(model: type[BaseModel], data: dict[str, Any], section: str) -> Any:
    """One method's settings section validated alone (the table route's options), errors in one line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise AutoscaleError(f"{section} settings: {_one_line(exc)}") from None


def resolve_paths(config: ExperimentConfig, path: Path) -> ExperimentConfig:
    """Make data paths and the output directory absolute, relative to the config file ``path``."""
    base = path.resolve().parent

    def absolute(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else base / p)

    data = config.data.model_copy(
        update={"store": absolute(config.data.store), "sources": absolute(config.data.sources)}
    )
    output = absolute(config.output) or base / path.stem
    target = config.target
    if target.downstream is not None and target.downstream.include_path is not None:
        downstream = target.downstream.model_copy(update={"include_path": absolute(target.downstream.include_path)})
        target = target.model_copy(update={"downstream": downstream})
    executor = config.executor
    if executor.kind == "command":
        executor = executor.model_copy(update={"cwd": absolute(executor.cwd) or base})
    return config.model_copy(
        update={"data": data, "output": output, "executor": executor, "target": target, "name": config.name or path.stem}
    )


_UNION_TAG = re.compile(r"^(literal\[.*\]|dict\[.*\]|list\[.*\]|float|int|str|function-.*)$")


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    # drop pydantic's union-member tags ("literal['uniform','natural']", "dict[str,float]", "float")
    loc = ".".join(str(p) for p in err["loc"] if not _UNION_TAG.match(str(p)))
    loc = loc.replace("validate_", "validate")
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"unknown setting {loc!r}"
    if err["type"] == "missing":
        return f"missing required setting {loc!r}"
    if "input" in err and err["type"] != "value_error" and not isinstance(err["input"], dict):
        return f"{loc}: {msg} (got {err['input']!r})"
    return f"{loc}: {msg}" if loc and not msg.startswith(("executor.", "proxy.", "data.", "target.")) else msg
