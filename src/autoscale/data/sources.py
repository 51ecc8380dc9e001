"""Reading a domain's documents from user corpora, streamed (a corpus is never loaded whole).

A domain is one or more *sources*: a file, a directory (searched recursively) or a glob pattern.
Formats are chosen by file name:

- ``.txt`` / ``.text``: plain UTF-8 text. A line holding only ``<|endoftext|>`` separates
  documents; otherwise a file is one document, cut at blank lines into pieces of about
  ``max_doc_chars`` characters (64 Ki by default) so that a single large file still gives
  whole-document validation splits.
- ``.jsonl`` / ``.jsonl.gz``: one JSON object per line; the document is the string under
  ``text_field`` (default ``"text"``). Lines that are not JSON objects or lack a string in that
  field are skipped and counted.
- ``.parquet``: the string column ``text_field`` (read in batches with pyarrow).
- A Hugging Face dataset saved with ``save_to_disk`` (a directory holding ``dataset_dict.json``
  or ``state.json``), or ``hf:NAME[:SPLIT]``: NAME is a local ``save_to_disk`` folder, a local
  data folder for ``datasets.load_dataset``, or a hub dataset. These need the optional
  ``datasets`` package and say so when it is missing; a dataset without the text column is an error.

`hash_inputs` fingerprints a domain by content, so that a changed input is re-tokenised: local
files (an ``hf:`` local path included) by their bytes, a hub dataset by its revision (the commit
``datasets`` resolves; offline, the one in its cache), never by a name alone.

Undecodable bytes are replaced by U+FFFD and counted; e-mail addresses are not touched here
(the demo corpus masks them when it is built, see `mask_emails`).
"""

from __future__ import annotations

import codecs
import glob
import gzip
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autoscale.domains import check_domain_name as core_check_domain_name
from autoscale.errors import AutoscaleError
from autoscale.scratch import scratch_folder

EOT_TEXT = "<|endoftext|>"
TEXT_SUFFIXES = (".txt", ".text")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
PARQUET_SUFFIXES = (".parquet",)
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES
HF_PREFIX = "hf:"
DOMAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
EMAIL_MASK = "[email]"

HF_SCRATCH = "autoscale-hf-"  # temporary datasets caches while a local hf: folder is read


def mask_emails(text: str) -> str:
    """Replace every e-mail address in `text` with ``[email]`` (the demo mail corpus holds real ones)."""
    return _EMAIL.sub(EMAIL_MASK, text)


def check_domain_name(name: str) -> str:
    """Return `name` if it is a usable store domain name, else raise.

    The rule for every domain name (``autoscale.domains``) and, on top of it, a stricter one because
    the store keeps each domain in a folder of that name: letters, digits, ``_ . -``.
    """
    core_check_domain_name(name)
    if not isinstance(name, str) or not DOMAIN_NAME.match(name):
        raise AutoscaleError(
            f"bad domain name {name!r}: use letters, digits, '_', '.', '-' (not starting with '.')"
        )
    return name


# Counting decode errors: a codec error handler that replaces like "replace" and counts the bytes
# it replaced, per thread (domains are tokenised in parallel threads).
_decode_state = threading.local()


def _count_and_replace(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _decode_state.bad = getattr(_decode_state, "bad", 0) + (exc.end - exc.start)
    return "\ufffd", exc.end


codecs.register_error("autoscale.count", _count_and_replace)


def decode_counting(data: bytes) -> tuple[str, int]:
    """Decode UTF-8, replacing undecodable bytes by U+FFFD; return (text, bytes replaced)."""
    _decode_state.bad = 0
    text = data.decode("utf-8", errors="autoscale.count")
    return text, _decode_state.bad


@dataclass(frozen=True)
class DomainSource:
    """Where one domain's text comes from.

    Args:
        paths: files, directories or glob patterns (or ``hf:NAME[:SPLIT]``), in order.
        text_field: the JSON key / parquet column / dataset column holding the text.
    """

    paths: tuple[str, ...]
    text_field: str = "text"

    @staticmethod
    def coerce(value: DomainSource | str | os.PathLike | Sequence, text_field: str = "text") -> DomainSource:
        """Accept a DomainSource, one path, or a list of paths."""
        if isinstance(value, DomainSource):
            return value
        if isinstance(value, (str, os.PathLike)):
            return DomainSource((os.fspath(value),), text_field)
        if isinstance(value, Sequence) and value and all(isinstance(v, (str, os.PathLike)) for v in value):
            return DomainSource(tuple(os.fspath(v) for v in value), text_field)
        raise AutoscaleError(f"a domain source must be a path or a non-empty list of paths, got {value!r}")


@dataclass
class ReadStats:
    """Counters filled while a domain is read (mutable on purpose: updated as documents stream)."""

    files: int = 0
    documents: int = 0
    bytes: int = 0  # UTF-8 bytes of the documents kept
    decode_errors: int = 0  # undecodable input bytes replaced by U+FFFD
    skipped_records: int = 0  # .jsonl lines / rows without usable text
    empty_documents: int = 0  # documents holding only whitespace (dropped)
    skipped_files: list[str] = field(default_factory=list)  # unsupported files found in directories

    def to_dict(self) -> dict:
        return {
            "files": self.files,
            "documents": self.documents,
            "bytes": self.bytes,
            "decode_errors": self.decode_errors,
            "skipped_records": self.skipped_records,
            "empty_documents": self.empty_documents,
            "skipped_files": len(self.skipped_files),
        }


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in SUPPORTED_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def _is_hf_disk_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file())


def resolve_inputs(domain: str, source: DomainSource, stats: ReadStats | None = None) -> list[str]:
    """Expand a domain's sources into a sorted, de-duplicated list of inputs (files or HF specs).

    Raises AutoscaleError for a missing path, a file of unknown format, or no usable input at all.
    """
    out: list[str] = []
    for raw in source.paths:
        if raw.startswith(HF_PREFIX):
            name, _ = hf_spec(raw)
            if not name:
                raise AutoscaleError(f"domain {domain!r}: {raw!r} names no dataset (use hf:NAME[:SPLIT])")
            if name.startswith(("/", "./", "../", "~")) and not Path(name).expanduser().exists():
                raise AutoscaleError(f"domain {domain!r}: path not found: {name}")
            out.append(raw)
            continue
        path = Path(raw).expanduser()
        if any(ch in raw for ch in "*?["):
            matches = sorted(glob.glob(os.fspath(path), recursive=True))
            files = [Path(m) for m in matches if Path(m).is_file() and _suffix(Path(m)) in SUPPORTED_SUFFIXES]
            if not files:
                raise AutoscaleError(
                    f"domain {domain!r}: pattern {raw!r} matches no .txt/.jsonl/.parquet file"
                )
            out.extend(os.fspath(f) for f in files)
        elif _is_hf_disk_dataset(path):
            out.append(os.fspath(path))
        elif path.is_dir():
            found = []
            for p in sorted(path.rglob("*")):
                if not p.is_file() or any(part.startswith(".") for part in p.relative_to(path).parts):
                    continue
                if _suffix(p) in SUPPORTED_SUFFIXES:
                    found.append(os.fspath(p))
                elif stats is not None:
                    stats.skipped_files.append(os.fspath(p))
            if not found:
                raise AutoscaleError(f"domain {domain!r}: directory {raw} holds no .txt/.jsonl/.parquet file")
            out.extend(found)
        elif path.is_file():
            if _suffix(path) not in SUPPORTED_SUFFIXES:
                raise AutoscaleError(
                    f"domain {domain!r}: unsupported file {raw} (use .txt, .jsonl, .jsonl.gz or .parquet)"
                )
            out.append(os.fspath(path))
        else:
            raise AutoscaleError(f"domain {domain!r}: path not found: {raw}")
    return list(dict.fromkeys(out))


def hf_spec(item: str) -> tuple[str, str | None]:
    """``hf:NAME[:SPLIT]`` -> (NAME, SPLIT or None)."""
    name, _, split = item[len(HF_PREFIX) :].partition(":")
    return name, split or None


def _hash_files(h, path: Path, *, names: bool = False) -> None:
    """Feed the bytes of `path` (a file, or every file under a directory, sorted) into `h`."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if names:  # for a dataset folder a file's name matters too (it can decide its split)
            h.update(f"file {f.relative_to(path) if f != path else f.name}\n".encode())
        with open(f, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
        h.update(b"\x00end\x00")


def _import_datasets(item: str):
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError as exc:
        raise AutoscaleError(
            f"{item}: Hugging Face datasets need the optional 'datasets' package (pip install datasets)"
        ) from exc
    return datasets


def _hub_revision(item: str, name: str) -> str:
    """The revision of hub dataset `name` as ``datasets`` resolves it (the commit; offline, the cached one)."""
    datasets = _import_datasets(item)
    try:
        revision = datasets.load_dataset_builder(name).hash
    except Exception as exc:  # datasets raises many types: not found, offline and not cached, gated
        raise AutoscaleError(f"{item}: cannot tell which revision of the dataset this is: {exc}") from exc
    if not revision:
        raise AutoscaleError(f"{item}: datasets gives no revision for it, so a change could not be seen")
    return str(revision)


def hash_inputs(inputs: Sequence[str], text_field: str) -> str:
    """Content hash of a domain's inputs (file bytes, formats, text field): unchanged => not redone.

    An ``hf:`` input is hashed by its files when NAME is a local path, else by the hub revision.
    """
    h = hashlib.sha256()
    h.update(f"text_field={text_field}\n".encode())
    for item in inputs:
        if item.startswith(HF_PREFIX):
            h.update(f"input {item}\n".encode())
            name, _ = hf_spec(item)
            local = Path(name).expanduser()
            if local.exists():
                _hash_files(h, local, names=True)
            else:
                h.update(f"revision {_hub_revision(item, name)}\n".encode())
            continue
        h.update(f"input {_suffix(Path(item))}\n".encode())
        _hash_files(h, Path(item))
    return h.hexdigest()


def _text_documents(path: Path, stats: ReadStats, max_doc_chars: int) -> Iterator[str]:
    parts: list[str] = []
    size = 0
    with open(path, "rb") as fh:
        for raw in fh:
            line, bad = decode_counting(raw)
            stats.decode_errors += bad
            if line.strip() == EOT_TEXT:
                yield "".join(parts)
                parts, size = [], 0
                continue
            # Cut long text at a paragraph break (or, failing that, any line) once it is big enough.
            if size >= max_doc_chars and (not line.strip() or size >= 4 * max_doc_chars):
                yield "".join(parts)
                parts, size = [], 0
            parts.append(line)
            size += len(line)
    yield "".join(parts)


def _jsonl_documents(path: Path, text_field: str, stats: ReadStats) -> Iterator[str]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            for raw in fh:
                if not raw.strip():
                    continue
                line, bad = decode_counting(raw)
                stats.decode_errors += bad
                try:
                    record = json.loads(line)
                except ValueError:
                    stats.skipped_records += 1
                    continue
                text = record.get(text_field) if isinstance(record, dict) else None
                if not isinstance(text, str):
                    stats.skipped_records += 1
                    continue
                yield text
    except (OSError, EOFError) as exc:  # a damaged .gz
        raise AutoscaleError(f"cannot read {path}: {exc}") from exc


def _parquet_documents(path: Path, text_field: str, stats: ReadStats) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is a declared extra
        raise AutoscaleError(f"reading {path} needs pyarrow: pip install 'autoscale[parquet]'") from exc
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own error types for bad files
        raise AutoscaleError(f"cannot read parquet file {path}: {exc}") from exc
    if text_field not in pf.schema_arrow.names:
        raise AutoscaleError(
            f"parquet file {path} has no column {text_field!r} (columns: {pf.schema_arrow.names})"
        )
    for batch in pf.iter_batches(batch_size=1024, columns=[text_field]):
        for text in batch.column(0).to_pylist():
            if isinstance(text, bytes):
                text, bad = decode_counting(text)
                stats.decode_errors += bad
            if not isinstance(text, str):
                stats.skipped_records += 1
                continue
            yield text


def _from_disk(datasets, item: str, path: Path, split: str | None):
    ds = datasets.load_from_disk(os.fspath(path))
    if isinstance(ds, datasets.DatasetDict):
        if split is not None and split not in ds:
            raise AutoscaleError(f"{item}: no split {split!r} (splits: {', '.join(ds)})")
        ds = ds[split or ("train" if "train" in ds else next(iter(ds)))]
    return ds


def _hf_documents(item: str, text_field: str, stats: ReadStats) -> Iterator[str]:
    datasets = _import_datasets(item)
    if item.startswith(HF_PREFIX) and Path(hf_spec(item)[0]).expanduser().exists():
        # A local data folder: streaming still takes a lock in the datasets cache, so that cache is a
        # temporary folder of ours removed after reading (nothing is left in the user's ~/.cache for it).
        with scratch_folder(HF_SCRATCH) as cache_dir:
            yield from _hf_rows(datasets, item, text_field, stats, str(cache_dir))
    else:
        yield from _hf_rows(datasets, item, text_field, stats, None)


def _hf_rows(datasets, item: str, text_field: str, stats: ReadStats, cache_dir: str | None) -> Iterator[str]:
    try:
        if item.startswith(HF_PREFIX):
            name, split = hf_spec(item)
            local = Path(name).expanduser()
            if _is_hf_disk_dataset(local):
                ds = _from_disk(datasets, item, local, split)
            else:
                source = os.fspath(local) if local.exists() else name
                ds = datasets.load_dataset(source, split=split or "train", streaming=True, cache_dir=cache_dir)
        else:
            ds = _from_disk(datasets, item, Path(item), None)
    except AutoscaleError:
        raise
    except Exception as exc:  # datasets raises many types: not found, offline, bad split
        raise AutoscaleError(f"cannot load the dataset {item}: {exc}") from exc
    columns = ds.column_names  # None for a streamed dataset whose features are not known up front
    if columns is not None and text_field not in columns:
        raise AutoscaleError(f"dataset {item} has no column {text_field!r} (columns: {columns})")
    for row in ds:
        text = row.get(text_field)
        if not isinstance(text, str):
            stats.skipped_records += 1
            continue
        yield text


def iter_documents(
    inputs: Sequence[str], stats: ReadStats, *, text_field: str = "text", max_doc_chars: int = 65536
) -> Iterator[str]:
    """Stream the non-empty documents of `inputs` (from `resolve_inputs`), updating `stats`."""
    for item in inputs:
        stats.files += 1
        path = Path(item)
        if item.startswith(HF_PREFIX) or _is_hf_disk_dataset(path):
            docs = _hf_documents(item, text_field, stats)
        else:
            suffix = _suffix(path)
            if suffix in JSONL_SUFFIXES:
                docs = _jsonl_documents(path, text_field, stats)
            elif suffix in PARQUET_SUFFIXES:
                docs = _parquet_documents(path, text_field, stats)
            else:
                docs = _text_documents(path, stats, max_doc_chars)
        for doc in docs:
            if not doc.strip():
                stats.empty_documents += 1
                continue
            stats.documents += 1
            stats.bytes += len(doc.encode("utf-8"))
            yield doc


def coerce_sources(sources: Mapping[str, object], text_field: str = "text") -> dict[str, DomainSource]:
    """Validate a mapping domain -> path(s) | DomainSource; keeps the caller's domain order."""
    if not isinstance(sources, Mapping) or not sources:
        raise AutoscaleError("no domains given: pass at least one domain -> path")
    return {
        check_domain_name(name): DomainSource.coerce(value, text_field) for name, value in sources.items()
    }
