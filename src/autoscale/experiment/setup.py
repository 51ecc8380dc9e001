"""An experiment's fixed facts, derived once per invocation from its config and its data: the
domains, the data's identity, the trainer in every run key, caps, the objective (`Setup`); and what
each method sees of them (`context`)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoscale.domains import check_mixture_domains
from autoscale.errors import AutoscaleError
from autoscale.experiment.config import ExperimentConfig
from autoscale.experiment.folder import ExperimentFolder
from autoscale.experiment.records import USER_DATA
from autoscale.methods.base import Context
from autoscale.speedup import Objective


@dataclass(frozen=True)
class Setup:
    """Facts derived once per invocation from the config and the data."""

    domains: tuple[str, ...]
    data_id: str  # the token store's manifest hash (or the user's data fingerprint)
    trainer: Mapping[str, Any]  # trainer settings in every run key
    unique_tokens: Mapping[str, int] | None  # per domain, one epoch (None without a store)
    caps: Mapping[str, Mapping[str, float] | None]  # method -> max tokens per domain (its max_epochs x unique)
    objective: Objective
    store_path: Path | None
    validation: tuple[str, ...] = ()  # validation domains when the objective names some outside training


def setup_experiment(config: ExperimentConfig, say: Callable[[str], None]) -> Setup:
    """Check the config against the data (building the token store when it has sources): the facts of a run."""
    unique: dict[str, int] | None = None
    store_path = config.data.store
    if store_path is not None:
        from autoscale.data import DomainSource, TokenStore, prepare_store

        if config.data.sources is not None:
            selected = config.data.domains
            if selected is not None:  # validation-only domains of the objective are tokenised too, not trained on
                selected = [*selected, *(d for d in config.objective.weights or {} if d not in selected)]
            sources = _corpus_sources(config.data.sources, selected)
            fields = config.data.text_fields or {}
            stray = [d for d in fields if d not in sources]
            if stray:
                raise AutoscaleError(f"data.text_fields: unknown domain {stray[0]!r} (domains: {', '.join(sources)})")
            sources = {d: DomainSource((str(p),), fields.get(d, "text")) for d, p in sources.items()}
            options = {k: v for k, v in (("vocab_size", config.data.vocab_size),
                                         ("val_tokens", config.data.val_tokens)) if v is not None}
            store = prepare_store(sources, store_path, progress=say, **options)
        else:
            store = TokenStore.open(store_path)
        data_id = store.manifest_hash
        domains = tuple(config.data.domains or store.domains)
        unknown = [d for d in domains if d not in store.domains]
        if unknown:
            raise AutoscaleError(f"data.domains: {unknown[0]!r} is not in the store (domains: {', '.join(store.domains)})")
        unique = {d: store.unique_train_tokens(d) for d in domains}
        evaluated: tuple[str, ...] | None = tuple(config.proxy.eval.domains or store.domains)
    else:
        assert config.data.domains is not None  # the config validator guarantees it
        domains = tuple(config.data.domains)
        data_id = USER_DATA + config.data.fingerprint
        evaluated = None
    domains = check_mixture_domains(domains)  # names (a store's or data.domains) and at least 2
    config.check_domains(domains, evaluated)
    caps = {name: epoch_caps(getattr(settings, "max_epochs", None), unique, domains)
            for name, settings in config.method_settings.items()}
    ex = config.executor
    if ex.kind == "command":
        from autoscale.experiment.executors.command import check_program

        assert ex.command is not None  # the config validator guarantees it
        check_program(ex.command, ex.cwd or Path.cwd(), {**os.environ, **ex.env})
        trainer: dict[str, Any] = {"kind": "command", "command": ex.command, "env": ex.env, "id": ex.trainer_id}
    else:
        from autoscale.data.sampler import SAMPLER_VERSION

        # the sampler's version is part of every key: a new sampler never reuses an old run
        trainer = {"kind": "autoscale", "proxy": config.proxy.fingerprint_dict(), "sampler": SAMPLER_VERSION}
    if config.target.downstream is not None:  # tasks that resolve, known before anything trains
        from autoscale.train.downstream import check_tasks
        from autoscale.train.harness import require_harness

        require_harness()
        check_tasks(config.target.downstream.tasks, config.target.downstream.include_path)
    objective = Objective(config.objective.metric, config.objective.weights)
    named = tuple(config.objective.weights or ())
    validation = named if any(d not in domains for d in named) else ()
    return Setup(domains, data_id, trainer, unique, caps, objective, store_path, validation)


def context(config: ExperimentConfig, setup: Setup, folder: ExperimentFolder, name: str) -> Context:
    """The facts method ``name`` sees: its own caps, and the names the folder gives its files."""
    return Context(setup.domains, config.seed, setup.objective, setup.validation, natural=natural(setup),
                   caps=setup.caps.get(name),
                   target=config.target.budget, offsets=config.target.offsets,
                   name_of=lambda kind, budget: folder.artefact(name, kind, budget).name)


def natural(setup: Setup) -> dict[str, float] | None:
    """Unique training tokens per domain (the natural mixture), None without a token store."""
    return None if setup.unique_tokens is None else {d: float(setup.unique_tokens[d]) for d in setup.domains}


def epoch_caps(epochs: float | Mapping[str, float] | None, unique: Mapping[str, int] | None,
          domains: Sequence[str]) -> dict[str, float] | None:
    """Max tokens per domain: ``epochs`` (one number or per domain) x its unique tokens."""
    if epochs is None or unique is None:
        return None
    caps = {d: (epochs.get(d, math.inf) if isinstance(epochs, Mapping) else epochs) * unique[d] for d in domains}
    return {d: c for d, c in caps.items() if math.isfinite(c)}


def _corpus_sources(path: Path, domains: Sequence[str] | None) -> dict[str, Path]:
    """A corpus folder: one data file (``<domain>.jsonl``...) or sub-folder per domain."""
    from autoscale.data.sources import SUPPORTED_SUFFIXES

    if not path.is_dir():
        raise AutoscaleError(f"data.sources {str(path)!r} is not a folder of domains")
    found: dict[str, Path] = {}
    for p in sorted(path.iterdir()):
        suffix = next((s for s in SUPPORTED_SUFFIXES if p.name.lower().endswith(s)), None)
        if p.name.startswith("."):
            continue
        if p.is_dir():
            found[p.name] = p
        elif suffix is not None:
            found[p.name[: -len(suffix)]] = p
    if domains is not None:
        missing = [d for d in domains if d not in found]
        if missing:
            raise AutoscaleError(f"data.sources {str(path)!r} has no domain {missing[0]!r} (found: {', '.join(found)})")
        return {d: found[d] for d in domains}
    if not found:
        raise AutoscaleError(f"data.sources {str(path)!r} holds no domain files or folders")
    return found


def experiment_record(config: ExperimentConfig, setup: Setup) -> dict[str, Any]:
    return {
        "config": json.loads(config.model_dump_json(by_alias=True)),
        "domains": list(setup.domains),
        "data": setup.data_id,
        "unique_tokens": setup.unique_tokens,
        "caps": next(iter(setup.caps.values())),
        "objective": setup.objective.describe(),
        "trainer": setup.trainer,
    }
