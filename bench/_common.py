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


def bench_command(script: str) -> str:
    """The command line that ran this bench, as typed from the repository root (with the
    ``OMP_WAIT_POLICY`` setting when given: it keeps torch fast on a shared machine)."""
    import shlex
    import sys

    root = Path(__file__).resolve().parent.parent
    exe = Path(sys.executable)
    python = str(exe.relative_to(root)) if exe.is_relative_to(root) else exe.name
    env = [f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY",) if k in os.environ]
    return " ".join(shlex.quote(a) for a in [*env, python, script, *sys.argv[1:]])


#: The studies (coupling, snr) ran on the demo corpus as it was then, every domain cut to 5 MB; they
#: keep that corpus, in its own cache folder, so that their stores and runs stay valid.
STUDY_CORPUS_MB = 5.0


def demo_workspace(directory: str, domains, say) -> tuple[Path, Path]:
    """The bench folder (created) and the 5 MB-per-domain demo corpus, which must hold ``domains``."""
    from autoscale.data.demo import default_data_dir, fetch_demo

    out = Path(directory).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    corpus = fetch_demo(default_data_dir() / "demo-5mb", max_mb_per_domain=STUDY_CORPUS_MB, progress=say)
    missing = [d for d in domains if d not in corpus.domains]
    if missing:
        raise SystemExit(f"the demo corpus lacks {', '.join(missing)}")
    return out, corpus.dir
