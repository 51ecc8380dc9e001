"""ProxyConfig: everything that defines one proxy training run except the mixture and its budget.

Torch-free (pydantic only), so the CLI and the experiment layer can validate a config without paying
for a torch import. Read from YAML::

    store: demo/store            # token store directory (the caller may pass a store instead)
    model: {kind: decoder, n_layer: 4, d_model: 128, n_head: 4, seq_len: 128}
    train: {batch_size: 8, grad_accum: 1, lr: 3.0e-3, schedule: cosine, warmup: 0.05, seed: 0}
    eval: {points: 10, max_tokens: 8192}

Units: ``seq_len`` and ``max_tokens`` are tokens; ``batch_size`` is sequences per micro-batch per
process, so one optimizer step trains ``batch_size * grad_accum * world_size * seq_len`` tokens.
``warmup`` is a fraction of the run's own optimizer steps, so the schedule follows the budget.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from autoscale.errors import AutoscaleError
from autoscale.tokens import token_setting
from autoscale.yamlfile import read_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    """The proxy model. ``decoder`` is a causal LM (GPT-style), ``encoder`` a masked LM (BERT-style),
    ``hf`` any Hugging Face ``transformers`` causal or masked LM built from ``hf_config`` (a config
    dict or a local path to a config.json or a directory holding one; never downloaded)."""

    kind: Literal["decoder", "encoder", "hf"] = "decoder"
    n_layer: int = Field(4, ge=1)
    d_model: int = Field(128, ge=1)
    n_head: int = Field(4, ge=1)
    seq_len: int = Field(128, ge=2, description="training and evaluation sequence length, tokens")
    context: int | None = Field(None, ge=2, description="built-in models' positional context; default seq_len")
    hf_config: dict[str, Any] | str | None = None
    objective: Literal["causal", "masked"] | None = Field(
        None, description="for kind hf; default: masked if the config's architectures say ForMaskedLM"
    )
    mask_prob: float = Field(0.15, gt=0, lt=1, description="masked LM: fraction of positions predicted")

    @model_validator(mode="after")
    def _shapes(self) -> ModelConfig:
        if self.kind == "hf":
            if self.hf_config is None:
                raise ValueError("model.hf_config is required when model.kind is 'hf'")
            return self
        if self.hf_config is not None:
            raise ValueError(f"model.hf_config is only used with model.kind 'hf', not {self.kind!r}")
        if self.d_model % self.n_head:
            raise ValueError(
                f"model.d_model ({self.d_model}) must be divisible by model.n_head ({self.n_head})"
            )
        if self.seq_len > self.max_context:
            raise ValueError(f"model.seq_len ({self.seq_len}) exceeds model.context ({self.context})")
        expected = "causal" if self.kind == "decoder" else "masked"
        if self.objective not in (None, expected):
            raise ValueError(f"model.objective {self.objective!r} does not fit model.kind {self.kind!r}")
        return self

    @property
    def max_context(self) -> int:
        return self.context if self.context is not None else self.seq_len


class TrainConfig(_Strict):
    """Optimizer, schedule and run mechanics. Learning rates are absolute; ``warmup`` is a fraction
    of the run's optimizer steps; ``min_lr_ratio`` is the final LR as a fraction of ``lr``.
    ``sampler`` picks the order in which the mixture's sequences are trained: ``coupled`` (default)
    gives each domain's k-th sequence a position in the run that does not depend on the other
    domains' amounts, so runs of one seed that differ in one domain share the rest of their data
    order (common random numbers); ``shuffled`` is the older label shuffle, kept for comparison."""

    batch_size: int = Field(8, ge=1, description="sequences per micro-batch per process")
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(3e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup: float = Field(0.05, ge=0, lt=1, description="fraction of this run's optimizer steps")
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    clip: float | None = Field(1.0, gt=0, description="max global gradient norm; null: no clipping")
    seed: int = Field(0, ge=0)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast on CUDA")
    compile: bool = False
    threads: int | None = Field(None, ge=1, description="torch CPU threads; null: leave torch's setting")
    checkpoint_every: int | None = Field(None, ge=1, description="steps; null: at each evaluation point")
    keep_checkpoint: bool = Field(False, description="keep checkpoint.pt after the run completes")
    max_epochs: float | None = Field(None, gt=0, description="warn when a domain repeats more than this")
    sampler: Literal["coupled", "shuffled"] = Field(
        "coupled",
        description="how domains are interleaved (autoscale.data.sampler): coupled keeps an unchanged "
        "domain's sequences at the same relative positions across runs of one seed whose other domains "
        "differ (less noise in paired DDO differences); shuffled is sampler version 1's label shuffle",
    )


#: a whole number of tokens, also written like an option: 8192, 8k, 1.5M (autoscale.tokens)
WholeTokens = Annotated[int, BeforeValidator(lambda v: token_setting(v, whole=True))]


class EvalConfig(_Strict):
    """Per-domain validation: ``points`` evaluations spread over the run (plus one at the start) on at
    most ``max_tokens`` validation tokens per domain (null: the whole validation split)."""

    points: int = Field(10, ge=1)
    max_tokens: WholeTokens | None = Field(8192, ge=1)
    batch_size: int = Field(32, ge=1, description="sequences per evaluation batch")
    seed: int = Field(0, ge=0, description="masked LM: seed of the fixed evaluation masks")
    domains: tuple[str, ...] | None = Field(None, description="validation domains; null: all of the store's")


class ProxyConfig(_Strict):
    """One proxy run's settings; see the module docstring for the YAML form."""

    store: Path | None = None
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @classmethod
    def from_dict(cls, data: Any, what: str = "proxy config") -> ProxyConfig:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise AutoscaleError(f"{what}: expected a mapping of settings, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise AutoscaleError(f"{what}: {_one_line(exc)}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> ProxyConfig:
        path = Path(path)
        data = read_yaml(path, f"proxy config {path}")
        config = cls.from_dict(data, f"proxy config {path}")
        if config.store is not None and not config.store.is_absolute():
            # A relative store path means relative to the config file, not to the current directory.
            config = config.model_copy(update={"store": (path.parent / config.store)})
        return config

    def replace(self, **sections: Any) -> ProxyConfig:
        """A copy with some fields changed, validated: ``cfg.replace(train={"lr": 1e-3})``."""
        data = self.model_dump(mode="json")
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return ProxyConfig.from_dict(data)

    def fingerprint_dict(self) -> dict[str, Any]:
        """The settings that change what a run computes (not where files live, not threads)."""
        data = self.model_dump(mode="json")
        data.pop("store", None)
        for key in ("threads", "checkpoint_every", "keep_checkpoint", "compile"):
            data["train"].pop(key, None)
        return json.loads(json.dumps(data, sort_keys=True))


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"unknown setting {loc!r}"
    if "input" in err and err["type"] != "value_error" and not isinstance(err["input"], dict):
        return f"{loc}: {msg} (got {err['input']!r})"
    return f"{loc}: {msg}" if loc and not msg.startswith("model.") else msg
