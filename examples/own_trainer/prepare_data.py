"""Write the example's three domains as plain text files, from what every Python installation holds.

    data/code.txt    Python source: the standard library's top-level modules
    data/prose.txt   English prose: the Python documentation's topic pages (``pydoc_data``)
    data/names.txt   a list: Unicode code points and their names

Your trainer reads your own data instead; nothing here is part of the contract with autoscale.
"""

from __future__ import annotations

import argparse
import pydoc_data.topics
import sysconfig
import unicodedata
from pathlib import Path


def code(size: int) -> str:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return _first(size, (p.read_text(encoding="utf-8", errors="replace") for p in sorted(stdlib.glob("*.py"))))


def prose(size: int) -> str:
    topics = pydoc_data.topics.topics
    return _first(size, (topics[name] for name in sorted(topics)))


def names(size: int) -> str:
    return _first(size, (f"U+{c:04X} {unicodedata.name(chr(c))}\n" for c in range(0x20, 0x30000)
                         if unicodedata.name(chr(c), "")))


def _first(size: int, texts) -> str:
    """The first ``size`` characters of the texts, joined."""
    out, total = [], 0
    for text in texts:
        out.append(text)
        total += len(text)
        if total >= size:
            break
    return "".join(out)[:size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    parser.add_argument("--chars", type=int, default=200_000, help="characters per domain")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for domain in (code, prose, names):
        path = args.out / f"{domain.__name__}.txt"
        path.write_text(domain(args.chars), encoding="utf-8")
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
