"""The Mixture value: how many training tokens to take from each domain.

A mixture is an ordered map domain -> tokens (absolute token counts). Weights (fractions summing to
1) and the budget (total tokens) are derived, never stored independently, so they cannot disagree.

JSON form, read and written everywhere::

    {"tokens": {"web": 6.0e8, "code": 2.0e8}, "weights": {"web": 0.75, "code": 0.25},
     "budget": 8.0e8, ...metadata}

Domain names follow ``autoscale.domains`` (no ``,`` or ``=``...); token counts are finite numbers
>= 0 whose total is positive and finite (1e308 + 1e308 is refused, not written as Infinity).
On input only ``tokens`` is required; ``weights`` and ``budget`` are recomputed (a mismatching
``weights``/``budget`` in the input is ignored in favour of ``tokens``). Other keys are kept as
metadata and written back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from autoscale.domains import domain_name_problem
from autoscale.errors import AutoscaleError

_DERIVED = ("tokens", "weights", "budget")


def _check_tokens(tokens: Mapping[str, Any], what: str = "mixture") -> dict[str, float]:
    if not isinstance(tokens, Mapping) or not tokens:
        raise AutoscaleError(f"{what}: 'tokens' must be a non-empty object of domain -> tokens")
    out: dict[str, float] = {}
    for name, value in tokens.items():
        problem = domain_name_problem(name)
        if problem is not None:
            raise AutoscaleError(f"{what}: domain name {name!r} {problem}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AutoscaleError(f"{what}: tokens for domain {name!r} must be a number, got {value!r}")
        v = float(value)
        if not math.isfinite(v):
            raise AutoscaleError(f"{what}: tokens for domain {name!r} must be finite, got {value!r}")
        if v < 0:
            raise AutoscaleError(f"{what}: tokens for domain {name!r} must be >= 0, got {value!r}")
        out[name] = v
    total = sum(out.values())
    if not math.isfinite(total):
        raise AutoscaleError(f"{what}: the total of {', '.join(f'{v:.4g}' for v in out.values())} overflows; "
                             "a mixture's total must be finite")
    if total <= 0:
        raise AutoscaleError(f"{what}: total tokens must be positive")
    return out


@dataclass(frozen=True)
class Mixture:
    """Training tokens per domain, in a fixed domain order.

    Args:
        tokens: domain -> tokens (absolute counts, >= 0, total > 0). Order is preserved.
        metadata: free-form extra fields carried through JSON (fit parameters, budget labels...).
    """

    tokens: Mapping[str, float]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", MappingProxyType(_check_tokens(self.tokens)))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self.tokens)

    @property
    def budget(self) -> float:
        """Total training tokens."""
        return float(sum(self.tokens.values()))

    @property
    def weights(self) -> dict[str, float]:
        """Fraction of the budget per domain (sums to 1)."""
        total = self.budget
        return {d: n / total for d, n in self.tokens.items()}

    @classmethod
    def from_weights(
        cls, weights: Mapping[str, float], budget: float, metadata: Mapping[str, Any] | None = None
    ) -> Mixture:
        """Mixture with ``budget`` total tokens split by ``weights`` (normalised to sum to 1)."""
        w = _check_tokens(weights, "weights")
        if not math.isfinite(budget) or budget <= 0:
            raise AutoscaleError(f"budget must be a positive number of tokens, got {budget!r}")
        total = sum(w.values())
        return cls({d: budget * (v / total) for d, v in w.items()}, metadata or {})  # no overflow near 1e308

    def scaled_to(self, budget: float) -> Mixture:
        """Same weights, ``budget`` total tokens."""
        return Mixture.from_weights(self.weights, budget, self.metadata)

    def with_metadata(self, **extra: Any) -> Mixture:
        return Mixture(self.tokens, {**self.metadata, **extra})

    def to_dict(self) -> dict[str, Any]:
        meta = {k: v for k, v in self.metadata.items() if k not in _DERIVED}
        return {"tokens": dict(self.tokens), "weights": self.weights, "budget": self.budget, **meta}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=_jsonable)

    @classmethod
    def from_dict(cls, data: Any, what: str = "mixture") -> Mixture:
        if not isinstance(data, Mapping):
            raise AutoscaleError(f"{what}: expected a JSON object with a 'tokens' field")
        if "tokens" not in data:
            raise AutoscaleError(f"{what}: JSON has no 'tokens' field")
        meta = {k: v for k, v in data.items() if k not in _DERIVED}
        return cls(_check_tokens(data["tokens"], what), meta)

    @classmethod
    def from_json(cls, text: str, what: str = "mixture") -> Mixture:
        try:
            data = json.loads(text, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            raise AutoscaleError(f"{what}: malformed JSON ({exc.msg} at line {exc.lineno})") from None
        except _DuplicateKey as exc:
            raise AutoscaleError(f"{what}: key {exc.args[0]!r} appears twice in one JSON object") from None
        return cls.from_dict(data, what)


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys silently: a duplicated domain would vanish.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _jsonable(obj: Any) -> Any:
    # numpy scalars/arrays and mapping proxies in metadata
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
