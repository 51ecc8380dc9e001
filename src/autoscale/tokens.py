"""Token counts as people write them: ``250000``, ``2.5e5``, ``250_000``, ``16k``, ``4M``, ``1.2B``, ``1T``.

Every command-line option and config setting that is a number of tokens goes through
:func:`parse_tokens`, so they all take the same suffixes. Pure: no I/O.
"""

from __future__ import annotations

import math
from decimal import Decimal

from autoscale.errors import AutoscaleError

#: Token-count suffixes, case-insensitive, in powers of 1000 (G is B, as in "giga").
TOKEN_SUFFIXES = {"k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}


def parse_tokens(text: str, option: str = "--budget", *, whole: bool = False) -> float:
    """A positive, finite token count, as every token-count option takes it.

    ``250000``, ``2.5e5``, ``250_000``, ``250k``, ``4M``, ``1.2B``, ``1T``: suffixes k = 10^3,
    M = 10^6, B (or G) = 10^9, T = 10^12, any case. Decimal arithmetic, so ``4.1M`` is exactly
    4100000. ``whole``: the count must be a whole number, returned as an int.
    """
    raw = str(text).strip().replace("_", "")
    scale = TOKEN_SUFFIXES.get(raw[-1:].lower(), 1) if raw else 1
    number = raw[:-1] if raw[-1:].lower() in TOKEN_SUFFIXES else raw
    try:
        exact = Decimal(number) * scale
        value = float(exact)
    except (ArithmeticError, ValueError):
        raise AutoscaleError(f"{option}: expected a number of tokens like 2e5 or 200k, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise AutoscaleError(f"{option}: must be a positive, finite number of tokens, got {text!r}")
    if whole:
        if exact != exact.to_integral_value():
            raise AutoscaleError(f"{option}: must be a whole number of tokens, got {text!r}")
        return int(exact)
    return value


def token_setting(value: object, *, whole: bool = False) -> object:
    """A config setting that is a token count: a string is parsed like an option (``16k``, ``4M``),
    anything else is returned for the config's own type check. Raises ValueError (what pydantic
    validators raise) with the problem."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):  # YAML's .inf, or 1e400: refused before anything trains
            raise ValueError(f"must be a finite number of tokens, got {value!r}")
        return value
    if not isinstance(value, str):
        return value
    try:
        return parse_tokens(value, "tokens", whole=whole)
    except AutoscaleError as exc:
        raise ValueError(str(exc).removeprefix("tokens: ")) from None


def format_tokens(n: float | None, digits: int = 3) -> str:
    """A token count as people write it, ``digits`` significant: 40k, 1.23M, 3B; "-" when unknown."""
    if n is None or not math.isfinite(n):
        return "-"
    n = float(f"{n:.{digits}g}")  # 999,999 prints as 1M, not 1e+03k
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.{digits}g}{unit}"
    return f"{n:.{digits}g}"


def budget_name(budget: float) -> str:
    """A budget as it appears in stage and file names: the integer token count."""
    return str(int(round(budget)))
