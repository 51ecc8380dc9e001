"""Building blocks of validated settings (pydantic v2), shared by the experiment config and the
mixing methods' own sections: strict models, token counts as written, weights and domain names.

A validator raises ``ValueError``; the config turns pydantic's report into one AutoscaleError line.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

from autoscale.domains import domain_name_problem
from autoscale.tokens import token_setting

#: a number of tokens, also written like an option: 2.0e6, 2M, 1.2B (autoscale.tokens)
Tokens = Annotated[float, BeforeValidator(token_setting)]


class Strict(BaseModel):
    """Unknown keys are errors; values are frozen once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def check_weights(value: dict[str, float] | None, what: str = "") -> dict[str, float] | None:
    """A mapping of domain -> weight: names valid, weights finite and >= 0, not all 0."""
    prefix = f"{what}: " if what else ""
    if value is None:
        return None
    if not value:
        raise ValueError(f"{prefix}weights must name at least one domain")
    check_names(value, prefix)
    for name, w in value.items():
        if not w >= 0 or w == float("inf"):
            raise ValueError(f"{prefix}weight of {name!r} must be a finite number >= 0, got {w!r}")
    if sum(value.values()) <= 0:
        raise ValueError(f"{prefix}weights must not all be 0")
    return value


def check_names(names: Any, prefix: str = "") -> None:
    """Domain names follow the one rule of ``autoscale.domains``."""
    for name in names:
        problem = domain_name_problem(name)
        if problem is not None:
            raise ValueError(f"{prefix}domain name {name!r} {problem}")


def check_epochs(epochs: float | dict[str, float] | None) -> float | dict[str, float] | None:
    """``max_epochs``: one positive finite number or one per domain (or None: no cap)."""
    values = epochs.values() if isinstance(epochs, dict) else ([] if epochs is None else [epochs])
    check_names(epochs if isinstance(epochs, dict) else ())
    if any(not (e > 0 and e != float("inf")) for e in values):
        raise ValueError(f"max_epochs must be positive and finite, got {epochs}")
    return epochs


def check_base(base: str | dict[str, float]) -> str | dict[str, float]:
    """A ``base:`` mixture: uniform, natural, or valid weights."""
    return check_weights(base) if isinstance(base, dict) else base  # type: ignore[return-value]
