"""Convert RegMix's released runs (github.com/sail-sg/regmix, folder data/) into autoscale runs tables.

    python examples/regmix/convert.py PATH/TO/regmix/data examples/regmix

Each released pair (mixture weights, validation losses) becomes one table: a row per run (``n<index>``),
``tokens.<domain>`` = the released weight x the run's training tokens (1B for the 1M and 60M models,
25B for the 1B models, as the RegMix paper trained them) and ``eval.<set>`` = the released loss.
The released weights are rounded to 3 decimals and are kept as they are.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

TABLES = {  # output name: (mixtures file, losses file, training tokens of each run)
    "train_1m.csv": ("train_mixture_1m.csv", "train_pile_loss_1m.csv", 10**9),
    "heldout_1m.csv": ("test_mixture_1m.csv", "test_pile_loss_1m.csv", 10**9),
    "heldout_60m.csv": ("test_mixture_60m.csv", "test_pile_loss_60m.csv", 10**9),
    "heldout_1b.csv": ("test_mixture_1B.csv", "test_pile_loss_1B.csv", 25 * 10**9),
}


def read(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as fh:
        return {row["index"]: row for row in csv.DictReader(fh)}


def convert(data: Path, out: Path) -> None:
    for name, (mixtures, losses, tokens) in TABLES.items():
        weights, evals = read(data / mixtures), read(data / losses)
        assert weights.keys() == evals.keys(), name
        first = next(iter(weights.values()))
        domains = [c for c in first if c != "index"]
        sets = [c for c in next(iter(evals.values())) if c != "index"]
        with (out / name).open("w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["run", *(f"tokens.{d.removeprefix('train_the_pile_')}" for d in domains),
                             *(f"eval.{s.removeprefix('metric/the_pile_').removesuffix('_val_loss')}" for s in sets)])
            for index, row in weights.items():
                writer.writerow([f"n{index}", *(round(float(row[d]) * tokens) for d in domains),
                                 *(evals[index][s] for s in sets)])


if __name__ == "__main__":
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
