"""What every bench script shares: the machine's description and writing its markdown section."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine(*libraries: str) -> str:
    """One line: CPU, cores, OS, Python and the given libraries' versions."""
    import importlib

    versions = [f"{name} {importlib.import_module(name).__version__}" for name in libraries]
    return ", ".join([f"{cpu_name()}, {os.cpu_count()} cores", f"{platform.system()} {platform.release()}",
                      f"Python {platform.python_version()}", *versions])


def write_section(path: Path, text: str) -> None:
    """Write a bench's markdown section (bench/results/<name>.md) and echo it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text)


def ddo_run_names(perturbed, ratios) -> list[str]:
    """The runs of a DDO design, by name: ``base`` then ``<domain>_x<ratio>`` for each perturbation."""
    return ["base"] + [f"{d}_x{r:g}" for d in perturbed for r in ratios]


def ddo_run_tokens(name: str, domains, budget: float) -> dict[str, float]:
    """Training tokens per domain (absolute) of run ``name``: the uniform base of ``budget`` tokens,
    with one domain scaled by the run's ratio."""
    tokens = {d: budget / len(domains) for d in domains}
    if name != "base":
        domain, ratio = name.rsplit("_x", 1)
        tokens[domain] *= float(ratio)
    return tokens
