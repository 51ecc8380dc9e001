"""Reading a YAML config file with one-line errors (the experiment and proxy configs share it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from autoscale.errors import AutoscaleError


def read_yaml(path: Path, what: str) -> Any:
    """The parsed YAML of ``path``; ``what`` names the file in every error (e.g. "proxy config x.yaml")."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AutoscaleError(f"{what} does not exist") from None
    except IsADirectoryError:
        raise AutoscaleError(f"{what} is a directory, expected a YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AutoscaleError(f"{what} cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise AutoscaleError(f"{what}: malformed YAML{where}") from None
