"""Small helpers shared by the CLI modules: reading inputs and writing outputs safely."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from autoscale.atomic import write_text_atomic
from autoscale.errors import AutoscaleError
from autoscale.mixture import Mixture
from autoscale.tokens import TOKEN_SUFFIXES, parse_tokens

__all__ = ["TOKEN_SUFFIXES", "experiment_mixture", "parse_assignments", "parse_tokens", "plain_console", "read_mixture",
           "read_text", "write_atomic"]

T = TypeVar("T")


def plain_console(**options):
    """A rich Console that prints every string as text, never as markup: names come from users
    (a mixture called ``mine[/x]`` must print as itself). Styles are given with ``style=``."""
    from rich.console import Console

    return Console(markup=False, highlight=False, **options)


def read_text(path: str | Path, what: str = "file") -> str:
    """Read a UTF-8 text file, or raise AutoscaleError naming it."""
    p = Path(path)
    if not p.exists():
        raise AutoscaleError(f"{what} {str(p)!r} does not exist")
    if p.is_dir():
        raise AutoscaleError(f"{what} {str(p)!r} is a directory, expected a file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AutoscaleError(f"cannot read {what} {str(p)!r}: {exc}") from None
    if not text.strip():
        raise AutoscaleError(f"{what} {str(p)!r} is empty")
    return text


def read_mixture(path: str | Path) -> Mixture:
    """Load a mixture JSON file (only ``tokens`` required), or the mixture a result file of an
    experiment holds under ``mixture`` (``<method>_target.json``, ``<method>_<budget>.json``)."""
    what = f"mixture {str(path)!r}"
    text = read_text(path, "mixture")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None  # from_json below names the problem
    if isinstance(data, dict) and "tokens" not in data and isinstance(data.get("mixture"), dict):
        return Mixture.from_dict(data["mixture"], what)  # a result file of an experiment
    return Mixture.from_json(text, what=what)


def experiment_mixture(folder: str | Path, method: str | None) -> Mixture:
    """A method's mixture at the target in an experiment folder (the first default method's when
    ``method`` is None), read as `read_mixture` reads its result file."""
    from autoscale.experiment.folder import ExperimentFolder
    from autoscale.methods import DEFAULT_METHODS

    name = method or DEFAULT_METHODS[0]
    path = ExperimentFolder(Path(folder)).existing(name, "result")
    if not path.is_file():
        found = sorted(p.name[: -len("_target.json")] for p in Path(folder).glob("*_target.json"))
        raise AutoscaleError(f"{str(folder)!r} holds no mixture of method {name!r} at the target "
                             f"(methods with one: {', '.join(found) or 'none'})")
    return read_mixture(path)


def parse_assignments(
    text: str | None, option: str, cast: Callable[[str], T] = float, known: tuple[str, ...] | None = None
) -> dict[str, T]:
    """Parse ``name=value,name=value`` (as in ``--max-tokens web=1e9,code=2e8``).

    Duplicate names, names outside ``known`` and values ``cast`` rejects are AutoscaleErrors.
    """
    out: dict[str, T] = {}
    if not text:
        return out
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise AutoscaleError(f"{option}: expected name=value, got {item.strip()!r}")
        if name in out:
            raise AutoscaleError(f"{option}: domain {name!r} given twice")
        if known is not None and name not in known:
            raise AutoscaleError(f"{option}: unknown name {name!r} (known: {', '.join(known)})")
        try:
            out[name] = cast(value)
        except ValueError:
            raise AutoscaleError(f"{option}: bad value {value!r} for {name!r}") from None
    return out


def write_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder, then rename."""
    p = Path(path)
    if p.parent and not p.parent.exists():
        raise AutoscaleError(f"output folder {str(p.parent)!r} does not exist")
    write_text_atomic(p, text)
