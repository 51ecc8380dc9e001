"""The runs table: what each DDO run trained on and how it scored.

CSV form, one row per training run::

    run,tokens.<domain>,...,eval.<name>,...
    base,171428571,171428571,...,38.44,6.81,...

``tokens.<domain>`` columns hold the tokens (absolute counts) that run trained on from each domain;
``eval.<name>`` columns hold one validation number per held-out set (perplexity or loss: the caller
decides, lower is better). An empty eval cell means "not measured yet" (a freshly planned table);
every other cell must be a finite number, and each run's tokens a finite total. Domain and eval
names follow ``autoscale.domains`` (no ``,`` or ``=``, no surrounding spaces...).

Replicates: an optional integer ``seed`` column names each run's seed. With it, the runs of one seed
form one replicate of the whole design (base and perturbations trained together, ideally coupled:
same initialisation and data order), so effects are paired within a seed and the bootstrap
resamples whole seeds; two rows with the same tokens and the same seed are a duplicate and an
error. Without it, rows with the same tokens are unpaired replicates (e.g. other seeds).

Parsing and formatting are pure (`parse_csv`, `format_csv`); `read_csv`/`to_csv` are the thin file
edges.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from autoscale.atomic import atomic_open
from autoscale.domains import check_domain_names
from autoscale.errors import AutoscaleError

TOKENS_PREFIX = "tokens."
EVAL_PREFIX = "eval."


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.array(array, dtype=float)  # a private copy
    array.setflags(write=False)
    return array


def _check_names(names: Sequence[str], what: str) -> tuple[str, ...]:
    # eval names follow the domain rule too: they default to the domains and are assigned to (name=w)
    return check_domain_names(names, what)


@dataclass(frozen=True, eq=False)
class RunsTable:
    """Runs of a DDO design and their evaluations.

    Args:
        runs: run names, one per row (replicates may share a name).
        domains: training domain names (order is the mixture order).
        tokens: ``[n_runs, m]`` tokens (absolute counts, >= 0) each run trained on per domain.
        eval_names: validation set names.
        evals: ``[n_runs, k]`` validation numbers (lower is better); NaN = not measured yet.
        seeds: ``[n_runs]`` integer seed of each run, or None (no ``seed`` column).
    """

    runs: tuple[str, ...]
    domains: tuple[str, ...]
    tokens: np.ndarray
    eval_names: tuple[str, ...]
    evals: np.ndarray
    seeds: np.ndarray | None = None

    def __post_init__(self) -> None:
        runs = tuple(self.runs)
        for name in runs:
            if not isinstance(name, str) or not name.strip():
                raise AutoscaleError(f"run names must be non-empty strings, got {name!r}")
        domains = _check_names(self.domains, "domain")
        if not domains:
            raise AutoscaleError("runs table has no tokens.<domain> columns")
        eval_names = _check_names(self.eval_names, "eval")
        tokens = np.asarray(self.tokens, dtype=float)
        evals = np.asarray(self.evals, dtype=float)
        if tokens.shape != (len(runs), len(domains)):
            raise AutoscaleError(f"tokens must have shape (runs, domains) = {(len(runs), len(domains))}, got {tokens.shape}")
        if evals.size == 0 and len(runs) * len(eval_names) == 0:
            evals = evals.reshape(len(runs), len(eval_names))
        if evals.shape != (len(runs), len(eval_names)):
            raise AutoscaleError(f"evals must have shape (runs, evals) = {(len(runs), len(eval_names))}, got {evals.shape}")
        for i, run in enumerate(runs):
            for j, domain in enumerate(domains):
                v = tokens[i, j]
                if not math.isfinite(v):
                    raise AutoscaleError(f"run {run!r}: tokens.{domain} must be finite, got {v!r}")
                if v < 0:
                    raise AutoscaleError(f"run {run!r}: tokens.{domain} is negative ({v:g})")
            for j, name in enumerate(eval_names):
                if math.isinf(evals[i, j]):
                    raise AutoscaleError(f"run {run!r}: eval.{name} is infinite")
            if not math.isfinite(sum(tokens[i].tolist())):  # each run trains on a mixture: finite total
                raise AutoscaleError(f"run {run!r}: its tokens overflow when summed; a mixture's total must be finite")
        if self.seeds is not None:
            object.__setattr__(self, "seeds", _check_seeds(self.seeds, runs, tokens))
        object.__setattr__(self, "runs", runs)
        object.__setattr__(self, "domains", domains)
        object.__setattr__(self, "eval_names", eval_names)
        object.__setattr__(self, "tokens", _readonly(tokens))
        object.__setattr__(self, "evals", _readonly(evals))

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    @property
    def replicates(self) -> int:
        """Runs per design point (the smallest count over distinct token vectors)."""
        _, counts = np.unique(self.tokens, axis=0, return_counts=True)
        return int(counts.min())

    @property
    def filled(self) -> bool:
        """True when every eval cell holds a number."""
        return bool(self.evals.size) and not np.isnan(self.evals).any()

    def with_evals(self, evals: np.ndarray) -> RunsTable:
        """The same runs with eval cells ``evals`` (``[n_runs, k]``), e.g. once the runs are trained."""
        return replace(self, evals=np.asarray(evals, dtype=float))

    def objective(self, eval_weights: Mapping[str, float] | None = None) -> np.ndarray:
        """Each run's objective: the mean of its eval values, or their weighted mean.

        Args:
            eval_weights: eval name -> weight (>= 0); names left out weigh 0. None: plain mean.
        Returns:
            ``[n_runs]`` objective values, in the eval columns' units.
        """
        if not self.eval_names:
            raise AutoscaleError("runs table has no eval.<name> columns to score runs by")
        if eval_weights is None:
            w = np.ones(len(self.eval_names))
        else:
            w = np.zeros(len(self.eval_names))
            for name, value in eval_weights.items():
                if name not in self.eval_names:
                    raise AutoscaleError(
                        f"eval_weights names unknown eval {name!r} (known: {', '.join(self.eval_names)})"
                    )
                value = float(value)
                if not math.isfinite(value) or value < 0:
                    raise AutoscaleError(f"eval_weights: weight of {name!r} must be finite and >= 0, got {value!r}")
                w[self.eval_names.index(name)] = value
            if w.sum() <= 0:
                raise AutoscaleError("eval_weights: at least one weight must be positive")
        used = w > 0
        missing = np.isnan(self.evals[:, used])
        if missing.any():
            i, j = np.argwhere(missing)[0]
            name = np.asarray(self.eval_names)[used][j]
            raise AutoscaleError(f"run {self.runs[i]!r} has no value for eval.{name} (fill in the runs table first)")
        return self.evals[:, used] @ (w[used] / w[used].sum())

    # -- CSV --------------------------------------------------------------------------------------

    @classmethod
    def parse_csv(cls, text: str, source: str = "runs table") -> RunsTable:
        """Parse the CSV form (see the module docstring). ``source`` names the input in errors."""
        if not text.strip():
            raise AutoscaleError(f"{source} is empty")
        try:
            rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
        except csv.Error as exc:
            raise AutoscaleError(f"{source}: not valid CSV ({exc})") from None
        rows = [(line, row) for line, row in enumerate(rows, 1) if any(cell.strip() for cell in row)]
        if not rows:
            raise AutoscaleError(f"{source} is empty")
        (_, header), body = rows[0], rows[1:]
        header = [h.strip() for h in header]
        run_col, seed_col, token_cols, eval_cols = None, None, [], []
        for j, name in enumerate(header):
            if name == "run":
                if run_col is not None:
                    raise AutoscaleError(f"{source}: column 'run' appears twice")
                run_col = j
            elif name == "seed":
                if seed_col is not None:
                    raise AutoscaleError(f"{source}: column 'seed' appears twice")
                seed_col = j
            elif name.startswith(TOKENS_PREFIX):
                token_cols.append((j, name[len(TOKENS_PREFIX):].strip()))
            elif name.startswith(EVAL_PREFIX):
                eval_cols.append((j, name[len(EVAL_PREFIX):].strip()))
            else:
                raise AutoscaleError(
                    f"{source}: unknown column {name!r} (expected run, seed, tokens.<domain>, eval.<name>)"
                )
        if run_col is None:
            raise AutoscaleError(f"{source}: no 'run' column")
        if not token_cols:
            raise AutoscaleError(f"{source}: no tokens.<domain> columns")
        if not body:
            raise AutoscaleError(f"{source} has a header but no runs")
        runs, seeds, tokens, evals = [], [], [], []
        for line, row in body:
            if len(row) != len(header):
                raise AutoscaleError(f"{source}, line {line}: {len(row)} cells, the header has {len(header)}")
            run = row[run_col].strip()
            if not run:
                raise AutoscaleError(f"{source}, line {line}: empty run name")
            where = f"{source}, run {run!r} (line {line})"
            runs.append(run)
            if seed_col is not None:
                seeds.append(_integer(row[seed_col], f"{where}: seed"))
            tokens.append([_number(row[j], f"{where}: tokens.{d}", allow_empty=False) for j, d in token_cols])
            evals.append([_number(row[j], f"{where}: eval.{e}", allow_empty=True) for j, e in eval_cols])
        try:
            return cls(tuple(runs), tuple(d for _, d in token_cols), np.array(tokens),
                       tuple(e for _, e in eval_cols), np.array(evals).reshape(len(runs), len(eval_cols)),
                       None if seed_col is None else np.array(seeds, dtype=np.int64))
        except AutoscaleError as exc:
            raise AutoscaleError(f"{source}: {exc}") from None

    def format_csv(self) -> str:
        """The CSV form; integral token counts are written without a decimal point."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        seed = [] if self.seeds is None else ["seed"]
        writer.writerow(["run", *seed, *(TOKENS_PREFIX + d for d in self.domains),
                         *(EVAL_PREFIX + e for e in self.eval_names)])
        for i, run in enumerate(self.runs):
            seed = [] if self.seeds is None else [str(int(self.seeds[i]))]
            writer.writerow([run, *seed, *(_format(v) for v in self.tokens[i]), *(_format(v) for v in self.evals[i])])
        return out.getvalue()

    @classmethod
    def read_csv(cls, path: str | os.PathLike[str]) -> RunsTable:
        """Read a runs table CSV file (UTF-8)."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise AutoscaleError(f"cannot read runs table {str(p)!r}: {reason}") from None
        return cls.parse_csv(text, f"runs table {str(p)!r}")

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the CSV form atomically (temporary file in the same folder, then rename)."""
        p = Path(path)
        try:
            with atomic_open(p, "w", newline="") as fh:
                fh.write(self.format_csv())
        except OSError as exc:
            raise AutoscaleError(f"cannot write runs table {str(p)!r}: {exc.strerror}") from None


def _check_seeds(seeds, runs: tuple[str, ...], tokens: np.ndarray) -> np.ndarray:
    """Integer seeds, one per run; a (tokens, seed) pair may appear once."""
    values = np.asarray(seeds)
    if values.shape != (len(runs),):
        raise AutoscaleError(f"seeds must have one entry per run ({len(runs)}), got shape {values.shape}")
    out = []
    for run, v in zip(runs, values.tolist(), strict=True):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not float(v).is_integer():
            raise AutoscaleError(f"run {run!r}: seed must be an integer, got {v!r}")
        out.append(int(v))
    seen: dict[tuple, str] = {}
    for run, row, seed in zip(runs, tokens.tolist(), out, strict=True):
        key = (tuple(row), seed)
        if key in seen:
            raise AutoscaleError(
                f"runs {seen[key]!r} and {run!r} have the same tokens and the same seed {seed}: a duplicate, "
                "not a replicate (replicates differ in seed)"
            )
        seen[key] = run
    array = np.array(out, dtype=np.int64)
    array.setflags(write=False)
    return array


def _integer(cell: str, where: str) -> int:
    cell = cell.strip()
    if not cell:
        raise AutoscaleError(f"{where} is empty")
    try:
        value = int(cell)
    except ValueError:
        raise AutoscaleError(f"{where} is not an integer: {cell!r}") from None
    if not -(2**63) <= value < 2**63:  # seeds are stored as 64-bit integers
        raise AutoscaleError(f"{where} is out of range (a seed fits in 64 bits): {cell!r}")
    return value


def _number(cell: str, where: str, allow_empty: bool) -> float:
    cell = cell.strip()
    if not cell:
        if allow_empty:
            return math.nan
        raise AutoscaleError(f"{where} is empty")
    try:
        value = float(cell)
    except ValueError:
        raise AutoscaleError(f"{where} is not a number: {cell!r}") from None
    if math.isnan(value):
        raise AutoscaleError(f"{where} is NaN")
    if math.isinf(value):
        raise AutoscaleError(f"{where} is infinite")
    return value


def _format(value: float) -> str:
    if math.isnan(value):
        return ""
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(float(value))
