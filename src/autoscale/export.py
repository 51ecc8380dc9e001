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
  ``datasets`` (paths or names), plus ``seed``, ``stopping_strategy``, the mixture's
  ``token_weights``, the ``mean_doc_tokens`` used (or null) and a ``note`` saying which of the
  two cases below the file is.
- ``yaml`` / ``json``: the mixture's own form (tokens, weights, budget, metadata).

Megatron and OLMo-core sample fixed-length sequences, so their weights are token shares as they
stand. ``interleave_datasets`` draws one *example* (document) at a time: with probabilities p_i and
mean document lengths L_i (tokens), domain i gets the token share p_i L_i / sum_j p_j L_j. To
realise the token weights w_i we write p_i = (w_i / L_i) / sum_j (w_j / L_j) (:func:`hf_probabilities`),
given L_i from a token store or by hand (``doc_tokens``). Without them the probabilities are the
weights themselves, which equal token shares only when every domain's documents have the same
mean length; the ``note`` says so. Only ratios of the L_i matter, so a store made with another
tokenizer than the trainer's is a fair estimate.

``stopping_strategy`` (default ``first_exhausted``, the library's own default): both strategies draw
with the same probabilities, so both keep the shares; they differ in where the stream ends.
``first_exhausted`` stops when the first dataset runs out (no example is repeated; the stream may be
shorter than the budget). ``all_exhausted`` oversamples: exhausted datasets start over until every
dataset has been seen whole, so small datasets are repeated (several epochs) and the stream can be
much longer than the budget.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import yaml

from autoscale.errors import AutoscaleError
from autoscale.mixture import Mixture

FORMATS = ("megatron", "olmo-core", "hf", "yaml", "json")

#: ``interleave_datasets`` stopping strategies we write (module docstring: what each does to the shares).
STOPPING_STRATEGIES = ("first_exhausted", "all_exhausted")

#: The hf file's ``note`` when the probabilities were not converted (no mean document lengths given).
HF_NOTE_PER_EXAMPLE = (
    "probabilities are per example (document) in interleave_datasets and equal the token weights; "
    "realised token shares match the weights only if every domain's documents have the same mean "
    "length (convert with --store or --doc-tokens)"
)
#: The hf file's ``note`` when the probabilities were converted with mean document lengths.
HF_NOTE_CONVERTED = (
    "probabilities are per example (document) in interleave_datasets: token_weights divided by "
    "mean_doc_tokens, normalised, so that the realised token shares equal token_weights"
)

#: OLMo-core wants the global batch in tokens; 4M tokens is the usual pre-training choice.
DEFAULT_GLOBAL_BATCH_TOKENS = 4 * 1024 * 1024


def _paths_for(mixture: Mixture, paths: Mapping[str, str] | None) -> dict[str, str]:
    paths = dict(paths or {})
    unknown = [d for d in paths if d not in mixture.tokens]
    if unknown:
        raise AutoscaleError(f"--paths names unknown domain {unknown[0]!r} (domains: {', '.join(mixture.domains)})")
    return {d: paths.get(d, d) for d in mixture.domains}


def hf_probabilities(weights: Mapping[str, float], doc_tokens: Mapping[str, float]) -> dict[str, float]:
    """Per-example probabilities for ``interleave_datasets`` that realise token shares ``weights``.

    ``weights``: token shares summing to 1; ``doc_tokens``: mean tokens per document (example) of
    each domain, every domain of ``weights`` present. Returns p_i = (w_i / L_i) / sum_j (w_j / L_j),
    in the order of ``weights``.
    """
    missing = [d for d in weights if d not in doc_tokens]
    if missing:
        raise AutoscaleError(f"mean tokens per document missing for domain {missing[0]!r}")
    per_doc = {}
    for d in weights:
        length = float(doc_tokens[d])
        if not 0 < length < float("inf"):
            raise AutoscaleError(f"mean tokens per document of {d!r} must be a positive number, got {length!r}")
        per_doc[d] = weights[d] / length
    total = sum(per_doc.values())
    return {d: v / total for d, v in per_doc.items()}


def export_mixture(
    mixture: Mixture,
    fmt: str,
    paths: Mapping[str, str] | None = None,
    *,
    max_epochs: float | None = None,
    global_batch_tokens: int = DEFAULT_GLOBAL_BATCH_TOKENS,
    seed: int = 0,
    doc_tokens: Mapping[str, float] | None = None,
    stopping_strategy: str = "first_exhausted",
) -> str:
    """Render ``mixture`` as the text of a ``fmt`` config (see module docstring).

    ``doc_tokens`` (hf only): mean tokens per document of each domain; with it the hf probabilities
    are converted so that the realised *token* shares are the mixture's weights.
    """
    if fmt not in FORMATS:
        raise AutoscaleError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    batch = global_batch_tokens
    if isinstance(batch, bool) or not isinstance(batch, (int, float)) or not 0 < batch < float("inf") \
            or batch != int(batch):
        raise AutoscaleError(f"global batch must be a positive whole number of tokens, got {batch!r}")
    where = _paths_for(mixture, paths)
    weights = mixture.weights
    if fmt == "megatron":
        for d, p in where.items():
            if not p or any(c.isspace() for c in p):
                raise AutoscaleError(f"Megatron data prefix for {d!r} must be non-empty without spaces, got {p!r}")
        return "".join(f"{weights[d]!r} {where[d]}\n" for d in mixture.domains)
    if fmt == "olmo-core":
        repetition = 1.0 if max_epochs is None else float(max_epochs)
        if not (1.0 <= repetition < float("inf")):  # NaN fails too
            raise AutoscaleError(f"max_epochs (OLMo-core's max_repetition_ratio) must be a finite number >= 1, "
                                 f"got {max_epochs!r}")
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
        if stopping_strategy not in STOPPING_STRATEGIES:
            raise AutoscaleError(
                f"unknown stopping strategy {stopping_strategy!r} (choose from {', '.join(STOPPING_STRATEGIES)})"
            )
        probs = weights if doc_tokens is None else hf_probabilities(weights, doc_tokens)
        config = {
            "datasets": [where[d] for d in mixture.domains],
            "probabilities": [probs[d] for d in mixture.domains],
            "seed": seed,
            "stopping_strategy": stopping_strategy,
            "budget_tokens": mixture.budget,
            "token_weights": [weights[d] for d in mixture.domains],
            "mean_doc_tokens": None if doc_tokens is None else [float(doc_tokens[d]) for d in mixture.domains],
            "note": HF_NOTE_PER_EXAMPLE if doc_tokens is None else HF_NOTE_CONVERTED,
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
            # token_weights (written since the conversion) are the mixture; older files: probabilities.
            names = config["datasets"]
            probs = [float(p) for p in config.get("token_weights") or config["probabilities"]]
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

