"""Write a mixture in the config formats that pre-training stacks read, and read it back.

Formats (all carry weights that sum to 1; ``paths`` maps a domain to its data location and defaults
to the domain name):

- ``megatron``: Megatron-LM ``--data-path`` weight/prefix pairs, one pair per line, so that
  ``--data-path $(cat mix.txt)`` works. Megatron normalises the weights itself; we write them
  normalised anyway.
- ``olmo-core``: a YAML ``SourceMixtureDatasetConfig`` (``source_list.sources[*]`` with
  ``source_name``, ``target_ratio``, ``paths``, ``max_repetition_ratio``; ``requested_tokens`` = the
  mixture's budget; ``global_batch_size`` in tokens).
- ``hf``: JSON with the ``probabilities`` list for ``datasets.interleave_datasets``, in the order of
  ``datasets`` (paths or names), plus ``seed`` and ``stopping_strategy``.
- ``yaml`` / ``json``: the mixture's own form (tokens, weights, budget, metadata).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import yaml

from autoscale.errors import AutoscaleError
from autoscale.mixture import Mixture

FORMATS = ("megatron", "olmo-core", "hf", "yaml", "json")

#: OLMo-core wants the global batch in tokens; 4M tokens is the usual pre-training choice.
DEFAULT_GLOBAL_BATCH_TOKENS = 4 * 1024 * 1024


def _paths_for(mixture: Mixture, paths: Mapping[str, str] | None) -> dict[str, str]:
    paths = dict(paths or {})
    unknown = [d for d in paths if d not in mixture.tokens]
    if unknown:
        raise AutoscaleError(f"--paths names unknown domain {unknown[0]!r} (domains: {', '.join(mixture.domains)})")
    return {d: paths.get(d, d) for d in mixture.domains}


def export_mixture(
    mixture: Mixture,
    fmt: str,
    paths: Mapping[str, str] | None = None,
    *,
    max_epochs: float | None = None,
    global_batch_tokens: int = DEFAULT_GLOBAL_BATCH_TOKENS,
    seed: int = 0,
) -> str:
    """Render ``mixture`` as the text of a ``fmt`` config (see module docstring)."""
    if fmt not in FORMATS:
        raise AutoscaleError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    where = _paths_for(mixture, paths)
    weights = mixture.weights
    if fmt == "megatron":
        for d, p in where.items():
            if not p or any(c.isspace() for c in p):
                raise AutoscaleError(f"Megatron data prefix for {d!r} must be non-empty without spaces, got {p!r}")
        return "".join(f"{weights[d]!r} {where[d]}\n" for d in mixture.domains)
    if fmt == "olmo-core":
        repetition = 1.0 if max_epochs is None else max(1.0, float(max_epochs))
        config = {
            "source_list": {
                "sources": [
                    {
                        "source_name": d,
                        "target_ratio": weights[d],
                        "paths": [where[d]],
                        "max_repetition_ratio": repetition,
                    }
                    for d in mixture.domains
                ]
            },
            "requested_tokens": int(round(mixture.budget)),
            "global_batch_size": int(global_batch_tokens),
        }
        return yaml.safe_dump(config, sort_keys=False)
    if fmt == "hf":
        config = {
            "datasets": [where[d] for d in mixture.domains],
            "probabilities": [weights[d] for d in mixture.domains],
            "seed": seed,
            "stopping_strategy": "all_exhausted",
            "budget_tokens": mixture.budget,
        }
        return json.dumps(config, indent=2) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(json.loads(mixture.to_json()), sort_keys=False)
    return mixture.to_json() + "\n"


def read_export(text: str, fmt: str, budget: float | None = None) -> tuple[Mixture, dict[str, str]]:
    """Parse text written by :func:`export_mixture` back into (mixture, paths).

    Megatron files carry no budget and no domain names: the path is the name, and ``budget``
    (default 1.0, i.e. tokens = weights) scales the weights to tokens.
    """
    if fmt not in FORMATS:
        raise AutoscaleError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    try:
        if fmt == "megatron":
            fields = text.split()
            if not fields or len(fields) % 2:
                raise AutoscaleError("Megatron data path must be weight/prefix pairs")
            pairs = [(fields[i + 1], float(fields[i])) for i in range(0, len(fields), 2)]
            weights = dict(pairs)
            return Mixture.from_weights(weights, budget or 1.0), {p: p for p in weights}
        if fmt == "olmo-core":
            config = yaml.safe_load(text)
            sources = config["source_list"]["sources"]
            weights = {s["source_name"]: float(s["target_ratio"]) for s in sources}
            paths = {s["source_name"]: s["paths"][0] for s in sources}
            return Mixture.from_weights(weights, budget or float(config["requested_tokens"])), paths
        if fmt == "hf":
            config = json.loads(text)
            names, probs = config["datasets"], [float(p) for p in config["probabilities"]]
            if len(names) != len(probs):
                raise AutoscaleError("hf export: 'datasets' and 'probabilities' differ in length")
            weights = dict(zip(names, probs, strict=True))
            total = budget or float(config.get("budget_tokens") or 1.0)
            return Mixture.from_weights(weights, total), {n: n for n in names}
        data = yaml.safe_load(text) if fmt == "yaml" else json.loads(text)
        mixture = Mixture.from_dict(data)
        return (mixture.scaled_to(budget) if budget else mixture), {d: d for d in mixture.domains}
    except (KeyError, TypeError, ValueError, IndexError, yaml.YAMLError) as exc:
        raise AutoscaleError(f"cannot read {fmt} mixture: {type(exc).__name__}: {exc}".splitlines()[0]) from None

