"""Domain names: the one rule for a name wherever it enters autoscale.

A domain name travels far: it is a JSON key of every mixture, a CSV column (``tokens.<domain>``), an
item of the CLI's comma lists (``--domains web,code``), the left side of assignments
(``--max-tokens web=1e9``), part of the command executor's placeholders (``{domains}`` joins the names
with commas, ``{tokens[web]}`` indexes by name), a plot label and an HTML cell. So a domain name is

- a string of 1 to ``MAX_LENGTH`` (100) characters, without surrounding whitespace;
- without ``,`` or ``=`` (they separate lists and assignments), ``[`` or ``]`` (placeholder indexing)
  and control characters (newlines, tabs...).

Anything else is allowed: non-ASCII letters, inner spaces, ``/``, ``.``, ``$`` (plots show labels
literally, never as math). A token store keeps each domain in a folder of that name, so store domains
follow a stricter rule on top of this one (``autoscale.data.sources.check_domain_name``).

A mixture needs at least ``MIN_DOMAINS`` (2) domains to be a mixture: DDO, its fit and the experiment
all refuse fewer. Pure: no I/O.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from autoscale.errors import AutoscaleError

MAX_LENGTH = 100
MIN_DOMAINS = 2
#: characters a name may not contain, and why
FORBIDDEN = {
    ",": "it separates names in lists such as --domains web,code and {domains}",
    "=": "it separates name and value in assignments such as --max-tokens web=1e9",
    "[": "placeholders index by name: {tokens[web]}",
    "]": "placeholders index by name: {tokens[web]}",
}
_CONTROL = ("Cc", "Cf", "Zl", "Zp")  # controls, invisible formatting (bidi overrides...), line breaks
_JOINERS = "\u200c\u200d"  # zero-width (non-)joiners are part of how some scripts spell words


def domain_name_problem(name: object) -> str | None:
    """Why ``name`` is not a usable domain name, or None when it is."""
    if not isinstance(name, str):
        return f"must be a string, not {type(name).__name__}"
    if not name:
        return "must not be empty"
    if len(name) > MAX_LENGTH:
        return f"is {len(name)} characters long, more than {MAX_LENGTH}"
    if name != name.strip():
        return "has surrounding whitespace"
    for ch in name:
        if ch in FORBIDDEN:
            return f"contains {ch!r} ({FORBIDDEN[ch]})"
        if unicodedata.category(ch) in _CONTROL and ch not in _JOINERS:
            return f"contains the control character {ch!r}"
    return None


def check_domain_name(name: object, what: str = "domain") -> str:
    """Return ``name`` if it follows the rule above, else raise AutoscaleError naming ``what``."""
    problem = domain_name_problem(name)
    if problem is not None:
        raise AutoscaleError(f"{what} name {name!r} {problem}")
    return name  # type: ignore[return-value]


def check_domain_names(names: Iterable[object], what: str = "domain") -> tuple[str, ...]:
    """Each name checked, no name twice; returns them as a tuple (in their order)."""
    out = tuple(check_domain_name(n, what) for n in names)
    seen: set[str] = set()
    for n in out:
        if n in seen:
            raise AutoscaleError(f"duplicate {what} name {n!r}")
        seen.add(n)
    return out


def check_mixture_domains(names: Iterable[object]) -> tuple[str, ...]:
    """The domains of a mixture to optimise (plan, fit, run): valid, distinct, at least ``MIN_DOMAINS``."""
    out = check_domain_names(names)
    if len(out) < MIN_DOMAINS:
        given = f" ({', '.join(out)})" if out else ""
        raise AutoscaleError(f"a data mixture needs at least {MIN_DOMAINS} domains, got {len(out)}{given}")
    return out
