"""Token store: per-domain token arrays on disk, a fixed validation split, and a verified manifest.

Layout of a store directory::

    STORE/manifest.json              counts, sha256 of every file, settings, manifest_hash
    STORE/tokenizer.json             the tokenizer every array was made with
    STORE/domains/<domain>/train.bin training token ids (raw uint16, or uint32 for vocab > 65536)
    STORE/domains/<domain>/val.bin   validation token ids: whole documents, disjoint from train

Each document is followed by the end-of-text token. The validation split of a domain is a set of
whole documents picked by a seeded permutation until it holds at least ``val_tokens`` tokens
(absolute count, default 16,384); it depends only on the domain's text, the tokenizer and the seed,
never on a mixture. A domain must keep at least as many training tokens as its validation split.

`prepare_store` builds a store into a temporary sibling directory (``.STORE.tmp-<pid>-<hex>``) and
renames it into place, so a failure never leaves a half-written store, and the next prepare of the
same store removes what a killed one left (`autoscale.atomic.atomic_dir`). It is incremental: a
domain whose inputs (by content hash), tokenizer and settings are unchanged is linked from the
previous store, not re-tokenised.
`TokenStore.open` checks sizes and sha256 hashes, so a truncated or edited store is an error
(rebuild it with `prepare_store` / ``autoscale data prepare``, which redoes the damaged domains).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from autoscale.atomic import atomic_dir
from autoscale.data.sources import (
    DomainSource,
    ReadStats,
    coerce_sources,
    hash_inputs,
    iter_documents,
    resolve_inputs,
)
from autoscale.data.tokenizer import (
    encode_documents,
    eot_token,
    load_tokenizer,
    token_dtype,
    train_tokenizer,
)
from autoscale.errors import AutoscaleError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

FORMAT = "autoscale.token-store"
VERSION = 1
DEFAULT_VAL_TOKENS = 16384
DEFAULT_VOCAB_SIZE = 8192
TOKENIZER_SAMPLE_BYTES = 3_000_000  # per domain: the tokenizer sees at most this much of each
MAX_DOC_CHARS = 65536
_ENCODE_BATCH_CHARS = 2_000_000


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canonical(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def compute_manifest_hash(manifest: Mapping) -> str:
    """Content hash of the data a manifest describes (token files, tokenizer, dtype): the run key part
    that identifies the data. Paths, timings and read statistics are not part of it."""
    core = {
        "format": FORMAT,
        "version": manifest["version"],
        "dtype": manifest["dtype"],
        "vocab_size": manifest["tokenizer"]["vocab_size"],
        "eot_id": manifest["tokenizer"]["eot_id"],
        "tokenizer": manifest["tokenizer"]["sha256"],
        "domains": {d: {s: e[s]["sha256"] for s in ("train", "val")} for d, e in manifest["domains"].items()},
    }
    return hashlib.sha256(_canonical(core).encode()).hexdigest()


def _domain_seed(seed: int, domain: str, purpose: int) -> np.random.Generator:
    # crc32 of the name: a domain's split does not move when other domains are added or reordered
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(domain.encode()), purpose]))


@dataclass(frozen=True)
class DomainStats:
    """What a store holds for one domain. Token counts are absolute tokens."""

    domain: str
    documents: int
    train_documents: int
    val_documents: int
    unique_train_tokens: int
    val_tokens: int
    bytes: int  # UTF-8 bytes of all kept documents (train + validation)
    bytes_per_token: float  # excluding end-of-text tokens
    decode_errors: int
    skipped_records: int
    empty_documents: int
    skipped_files: int


class TokenStore:
    """A verified, read-only token store. Use `TokenStore.open(path)` (or `prepare_store`)."""

    def __init__(self, path: Path, manifest: dict) -> None:
        self.path = path
        self.manifest = manifest
        self.domains: tuple[str, ...] = tuple(manifest["domains"])
        self.vocab_size: int = int(manifest["tokenizer"]["vocab_size"])
        self.eot_id: int = int(manifest["tokenizer"]["eot_id"])
        self.dtype = np.dtype(manifest["dtype"])
        self.manifest_hash: str = manifest["manifest_hash"]
        self._arrays: dict[tuple[str, str], np.ndarray] = {}

    @classmethod
    def open(cls, path: str | Path, *, verify: bool = True) -> TokenStore:
        """Open the store at `path`, checking every file's size and (with `verify`) its sha256.

        Raises AutoscaleError naming the first problem: no store, truncated or tampered file,
        edited manifest. ``verify=False`` checks sizes only (for very large stores).
        """
        root = Path(path).expanduser()
        manifest = _read_manifest(root)
        if manifest is None:
            raise AutoscaleError(f"no token store at {root} (build one with `autoscale data prepare`)")
        problem = _check_store(root, manifest, hashes=verify)
        if problem:
            raise AutoscaleError(f"token store {root}: {problem}; rebuild it with `autoscale data prepare`")
        return cls(root, manifest)

    @property
    def tokenizer_path(self) -> Path:
        return self.path / self.manifest["tokenizer"]["file"]

    def tokenizer(self):
        """The `tokenizers.Tokenizer` the store was made with (to decode ids back to text)."""
        return load_tokenizer(self.tokenizer_path)

    def _entry(self, domain: str) -> dict:
        try:
            return self.manifest["domains"][domain]
        except KeyError:
            raise AutoscaleError(
                f"domain {domain!r} is not in the store (domains: {', '.join(self.domains)})"
            ) from None

    def _array(self, domain: str, split: str) -> np.ndarray:
        key = (domain, split)
        if key not in self._arrays:
            entry = self._entry(domain)[split]
            self._arrays[key] = np.memmap(
                self.path / entry["file"], dtype=self.dtype, mode="r", shape=(int(entry["tokens"]),)
            )
        return self._arrays[key]

    def train_tokens(self, domain: str) -> np.ndarray:
        """1-D read-only memmap of the domain's training token ids (documents separated by eot)."""
        return self._array(domain, "train")

    def val_tokens(self, domain: str) -> np.ndarray:
        """1-D read-only memmap of the domain's validation ids: whole documents, disjoint from train."""
        return self._array(domain, "val")

    def unique_train_tokens(self, domain: str) -> int:
        """Training tokens available in the domain (absolute count, one epoch)."""
        return int(self._entry(domain)["train"]["tokens"])

    def stats(self) -> tuple[DomainStats, ...]:
        """Per-domain counts, in store order."""
        out = []
        for d in self.domains:
            e = self._entry(d)
            docs = int(e["documents"])
            tokens = int(e["train"]["tokens"]) + int(e["val"]["tokens"])
            out.append(
                DomainStats(
                    domain=d,
                    documents=docs,
                    train_documents=int(e["train"]["documents"]),
                    val_documents=int(e["val"]["documents"]),
                    unique_train_tokens=int(e["train"]["tokens"]),
                    val_tokens=int(e["val"]["tokens"]),
                    bytes=int(e["bytes"]),
                    bytes_per_token=int(e["bytes"]) / max(1, tokens - docs),
                    decode_errors=int(e["decode_errors"]),
                    skipped_records=int(e["skipped_records"]),
                    empty_documents=int(e["empty_documents"]),
                    skipped_files=int(e["skipped_files"]),
                )
            )
        return tuple(out)

    def problems(self) -> list[str]:
        """One line per input problem met while reading (replaced bytes, skipped lines or files)."""
        out = []
        for s in self.stats():
            if s.decode_errors:
                out.append(f"domain {s.domain!r}: {s.decode_errors} undecodable bytes replaced by U+FFFD")
            if s.skipped_records:
                out.append(
                    f"domain {s.domain!r}: {s.skipped_records} records skipped (not JSON or no text field)"
                )
            if s.skipped_files:
                out.append(f"domain {s.domain!r}: {s.skipped_files} files of unsupported type ignored")
        return out

    def __repr__(self) -> str:
        return f"TokenStore({str(self.path)!r}, domains={self.domains}, vocab_size={self.vocab_size})"


def _read_manifest(root: Path) -> dict | None:
    path = root / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise AutoscaleError(f"token store {root}: unreadable manifest.json ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise AutoscaleError(f"{path} is not an autoscale token-store manifest")
    if manifest.get("version") != VERSION:
        raise AutoscaleError(
            f"token store {root}: manifest version {manifest.get('version')!r}, expected {VERSION}"
        )
    return manifest


def _check_file(root: Path, entry: Mapping, itemsize: int, hashes: bool) -> str | None:
    path = root / entry["file"]
    if not path.is_file():
        return f"missing file {entry['file']}"
    expected = int(entry["tokens"]) * itemsize
    size = path.stat().st_size
    if size != expected:
        return f"{entry['file']} has {size} bytes, the manifest says {expected} (truncated or overwritten)"
    if hashes and _sha256_file(path) != entry["sha256"]:
        return f"{entry['file']} does not match its sha256 in the manifest (modified)"
    return None


def _check_store(root: Path, manifest: Mapping, hashes: bool = True) -> str | None:
    """First problem found in a store, or None when it is intact."""
    try:
        itemsize = np.dtype(manifest["dtype"]).itemsize
        tok = manifest["tokenizer"]
        tok_path = root / tok["file"]
        if not tok_path.is_file():
            return f"missing {tok['file']}"
        if hashes and _sha256_file(tok_path) != tok["sha256"]:
            return f"{tok['file']} does not match its sha256 in the manifest (modified)"
        if not manifest["domains"]:
            return "the manifest lists no domains"
        for entry in manifest["domains"].values():
            for split in ("train", "val"):
                problem = _check_file(root, entry[split], itemsize, hashes)
                if problem:
                    return problem
        if compute_manifest_hash(manifest) != manifest["manifest_hash"]:
            return "manifest.json was edited (its manifest_hash does not match its contents)"
    except (KeyError, TypeError, ValueError) as exc:
        return f"malformed manifest ({exc!r})"
    return None


# ----------------------------------------------------------------------------------------------
# Building


@dataclass(frozen=True)
class _DomainPlan:
    domain: str
    source: DomainSource
    inputs: tuple[str, ...]
    inputs_hash: str
    skipped_files: tuple[str, ...]


def _plan_domains(sources: Mapping[str, DomainSource]) -> dict[str, _DomainPlan]:
    plans = {}
    for d, src in sources.items():
        found = ReadStats()
        inputs = resolve_inputs(d, src, found)
        plans[d] = _DomainPlan(
            d, src, tuple(inputs), hash_inputs(inputs, src.text_field), tuple(found.skipped_files)
        )
    return plans


def _empty_domain_error(plan: _DomainPlan, stats: ReadStats) -> AutoscaleError:
    why = []
    if stats.skipped_records:
        why.append(
            f"{stats.skipped_records} records skipped (not JSON or no {plan.source.text_field!r} text)"
        )
    if stats.empty_documents:
        why.append(f"{stats.empty_documents} blank documents")
    detail = f": {'; '.join(why)}" if why else ""
    return AutoscaleError(
        f"domain {plan.domain!r} is empty: no text in {', '.join(plan.source.paths)}{detail}"
    )


def _tokenizer_sample(plan: _DomainPlan, seed: int, cap_bytes: int, max_doc_chars: int) -> list[str]:
    """A seeded sample of whole documents holding about `cap_bytes` UTF-8 bytes of the domain."""
    stats = ReadStats()
    sizes = [
        len(doc.encode("utf-8"))
        for doc in iter_documents(
            plan.inputs, stats, text_field=plan.source.text_field, max_doc_chars=max_doc_chars
        )
    ]
    if not sizes:
        raise _empty_domain_error(plan, stats)
    order = _domain_seed(seed, plan.domain, 1).permutation(len(sizes))
    cum = np.cumsum(np.asarray(sizes, dtype=np.int64)[order])
    keep = set(order[: int(np.searchsorted(cum, cap_bytes)) + 1].tolist())
    docs = iter_documents(
        plan.inputs, ReadStats(), text_field=plan.source.text_field, max_doc_chars=max_doc_chars
    )
    return [doc for i, doc in enumerate(docs) if i in keep]


def _tokenise_domain(
    plan: _DomainPlan,
    tok,
    eot_id: int,
    dtype: np.dtype,
    out_dir: Path,
    val_tokens: int,
    seed: int,
    max_doc_chars: int,
) -> dict:
    """Tokenise one domain into out_dir/{train,val}.bin; return its manifest entry."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = ReadStats(skipped_files=list(plan.skipped_files))
    all_path = out_dir / "all.tmp"
    eot = np.asarray([eot_id], dtype=dtype)
    doc_lens: list[int] = []
    with open(all_path, "wb") as fh:
        batch: list[str] = []
        chars = 0

        def flush() -> None:
            parts = []
            for ids in encode_documents(tok, batch):
                parts.append(np.asarray(ids, dtype=dtype))
                parts.append(eot)
                doc_lens.append(len(ids) + 1)
            if parts:
                np.concatenate(parts).tofile(fh)
            batch.clear()

        for doc in iter_documents(
            plan.inputs, stats, text_field=plan.source.text_field, max_doc_chars=max_doc_chars
        ):
            batch.append(doc)
            chars += len(doc)
            if chars >= _ENCODE_BATCH_CHARS:
                flush()
                chars = 0
        flush()
    if not doc_lens:
        raise _empty_domain_error(plan, stats)

    lens = np.asarray(doc_lens, dtype=np.int64)
    total = int(lens.sum())
    order = _domain_seed(seed, plan.domain, 0).permutation(len(lens))
    cum = np.cumsum(lens[order])
    n_val = int(np.searchsorted(cum, val_tokens)) + 1  # fewest documents reaching val_tokens
    val_total = int(cum[min(n_val, len(cum)) - 1])
    if total < val_tokens or total - val_total < val_total:
        raise AutoscaleError(
            f"domain {plan.domain!r} is too small: {total} tokens in {len(lens)} documents cannot give a "
            f"validation split of {val_tokens} tokens (whole documents) and keep as many for training; "
            f"add text or lower val_tokens"
        )
    is_val = np.zeros(len(lens), dtype=bool)
    is_val[order[:n_val]] = True

    # Copy contiguous runs of documents from the all-documents file into train.bin / val.bin.
    offsets = np.concatenate([[0], np.cumsum(lens)])
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(is_val.astype(np.int8))) + 1, [len(lens)]])
    all_tokens = np.memmap(all_path, dtype=dtype, mode="r", shape=(total,))
    with open(out_dir / "train.bin", "wb") as ftrain, open(out_dir / "val.bin", "wb") as fval:
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            (fval if is_val[a] else ftrain).write(all_tokens[offsets[a] : offsets[b]].tobytes())
    del all_tokens
    all_path.unlink()

    rel = Path("domains") / plan.domain
    return {
        "sources": list(plan.source.paths),
        "text_field": plan.source.text_field,
        "inputs": {"files": len(plan.inputs), "sha256": plan.inputs_hash},
        "tokenised_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **stats.to_dict(),
        "train": {
            "file": str(rel / "train.bin"),
            "tokens": total - val_total,
            "documents": int(len(lens) - n_val),
            "sha256": _sha256_file(out_dir / "train.bin"),
        },
        "val": {
            "file": str(rel / "val.bin"),
            "tokens": val_total,
            "documents": n_val,
            "sha256": _sha256_file(out_dir / "val.bin"),
        },
    }


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # files are never modified in place, so sharing the inode is safe
    except OSError:
        shutil.copy2(src, dst)


def _check_out_dir(out: Path) -> dict | None:
    """The previous manifest at `out` (None if there is none); refuse to replace a non-store."""
    if out.exists() and not out.is_dir():
        raise AutoscaleError(f"store path {out} exists and is not a directory")
    if out.is_dir() and not (out / "manifest.json").exists() and any(out.iterdir()):
        raise AutoscaleError(f"{out} is a non-empty directory but not a token store; refusing to replace it")
    try:
        manifest = _read_manifest(out)
        if manifest is not None and compute_manifest_hash(manifest) != manifest.get("manifest_hash"):
            return None  # an edited manifest cannot be trusted for reuse
        return manifest
    except (AutoscaleError, KeyError, TypeError, ValueError):
        return None  # an unreadable old store is simply rebuilt


def prepare_store(
    sources: Mapping[str, str | os.PathLike | list | DomainSource],
    out_dir: str | os.PathLike,
    *,
    tokenizer: str | os.PathLike | None = None,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    val_tokens: int = DEFAULT_VAL_TOKENS,
    workers: int = 2,
    seed: int = 0,
    text_field: str = "text",
    tokenizer_sample_bytes: int = TOKENIZER_SAMPLE_BYTES,
    max_doc_chars: int = MAX_DOC_CHARS,
    progress: Callable[[str], None] | None = None,
) -> TokenStore:
    """Tokenise domains into a token store at `out_dir` and return it (opened and verified).

    Args:
        sources: domain -> a path, a list of paths (files, directories, globs) or a DomainSource.
            Domain order is kept and becomes the store's order.
        tokenizer: a local ``tokenizer.json`` or HF tokenizer directory; None trains a byte-level
            BPE of `vocab_size` on a balanced sample (up to `tokenizer_sample_bytes` UTF-8 bytes of
            whole documents per domain, seeded).
        val_tokens: validation tokens per domain (absolute count; whole documents, so at least this).
        workers: domains tokenised at once (threads; `tokenizers` also parallelises each batch).
        seed: chooses the validation documents and the tokenizer sample.
        text_field: the JSON key / parquet column with the text (a DomainSource can override it).
        progress: called with one line per finished step (the CLI prints them).

    Unchanged domains (same input bytes, tokenizer and settings) are reused from a previous store
    at `out_dir`. Changing any domain retrains a trained tokenizer and so re-tokenises every
    domain; pass `tokenizer` to keep it fixed.
    """
    say = progress or (lambda _msg: None)
    if not isinstance(val_tokens, int) or isinstance(val_tokens, bool) or val_tokens < 1:
        raise AutoscaleError(f"val_tokens must be a positive integer, got {val_tokens!r}")
    if not isinstance(workers, int) or workers < 1:
        raise AutoscaleError(f"workers must be a positive integer, got {workers!r}")
    out = Path(out_dir).expanduser().resolve()
    plans = _plan_domains(coerce_sources(sources, text_field))
    old = _check_out_dir(out)

    tok, origin, tok_key = _tokenizer(tokenizer, plans, old, out, vocab_size, seed, tokenizer_sample_bytes,
                                      max_doc_chars, workers, say)
    eot_text, eot_id = eot_token(tok, tokenizer)
    tok_text = tok.to_str()
    tok_sha = _sha256_text(tok_text)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    dtype = token_dtype(vocab)
    settings = {"val_tokens": val_tokens, "seed": seed, "max_doc_chars": max_doc_chars}

    out.parent.mkdir(parents=True, exist_ok=True)
    # atomic_dir first removes what an interrupted earlier prepare of `out` left (.STORE.tmp-*)
    with atomic_dir(out) as tmp:
        (tmp / "tokenizer.json").write_text(tok_text, encoding="utf-8")

        def build(plan: _DomainPlan) -> dict:
            key = hashlib.sha256(_canonical({"inputs": plan.inputs_hash, "text_field": plan.source.text_field,
                                             "tokenizer": tok_sha, "dtype": dtype.name, **settings}).encode()).hexdigest()
            reused = _reuse_domain(plan, key, old, dtype, out, tmp)
            if reused is not None:
                say(f"{plan.domain}: unchanged, reused")
                return reused
            t0 = time.perf_counter()
            entry = _tokenise_domain(
                plan, tok, eot_id, dtype, tmp / "domains" / plan.domain, val_tokens, seed, max_doc_chars
            )
            say(
                f"{plan.domain}: {entry['documents']} documents -> {entry['train']['tokens']} train + "
                f"{entry['val']['tokens']} validation tokens in {time.perf_counter() - t0:.1f} s"
            )
            return {**entry, "key": key}

        with ThreadPoolExecutor(max_workers=workers) as pool:
            entries = list(pool.map(build, plans.values()))
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "dtype": dtype.name,
            "tokenizer": {
                "file": "tokenizer.json",
                "sha256": tok_sha,
                "vocab_size": vocab,
                "eot": eot_text,
                "eot_id": eot_id,
                "origin": origin,
                "key": tok_key,
            },
            "settings": settings,
            "domains": dict(zip(plans, entries, strict=True)),
        }
        manifest["manifest_hash"] = compute_manifest_hash(manifest)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return TokenStore.open(out, verify=False)  # just written and hashed


def _tokenizer(given: str | os.PathLike | None, plans: dict[str, _DomainPlan], old: dict | None, out: Path,
               vocab_size: int, seed: int, sample_bytes: int, max_doc_chars: int, workers: int,
               say: Callable[[str], None]) -> tuple[Tokenizer, str, str | None]:
    """The store's tokenizer, its origin and its reuse key: given, reused from the previous store
    (same inputs and settings), or trained."""
    if given is not None:
        return load_tokenizer(given), str(given), None
    key = hashlib.sha256(_canonical({
        "inputs": {d: p.inputs_hash for d, p in plans.items()}, "vocab_size": vocab_size, "seed": seed,
        "sample_bytes": sample_bytes, "max_doc_chars": max_doc_chars,
    }).encode()).hexdigest()
    prev = old["tokenizer"] if old else None
    if prev and prev.get("key") == key and (out / prev["file"]).is_file() \
            and _sha256_file(out / prev["file"]) == prev["sha256"]:
        say("tokenizer: reused (inputs unchanged)")
        return load_tokenizer(out / prev["file"]), "trained", key
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        samples = list(pool.map(lambda p: _tokenizer_sample(p, seed, sample_bytes, max_doc_chars), plans.values()))
    tok = train_tokenizer((doc for sample in samples for doc in sample), vocab_size=vocab_size)
    say(f"tokenizer: trained byte-level BPE, vocab {tok.get_vocab_size()} in {time.perf_counter() - t0:.1f} s")
    return tok, "trained", key


def _reuse_domain(plan: _DomainPlan, key: str, old: dict | None, dtype: np.dtype, out: Path, tmp: Path) -> dict | None:
    """The previous store's entry of an unchanged domain, its files linked into ``tmp``; None when
    the domain changed or its files do not check out."""
    prev = (old or {}).get("domains", {}).get(plan.domain)
    expected = {s: str(Path("domains") / plan.domain / f"{s}.bin") for s in ("train", "val")}
    if not (prev and prev.get("key") == key and old.get("dtype") == dtype.name  # type: ignore[union-attr]
            and all(prev[s].get("file") == expected[s] for s in expected)):
        return None
    if any(_check_file(out, prev[s], dtype.itemsize, True) is not None for s in ("train", "val")):
        return None
    for s in ("train", "val"):
        _link_or_copy(out / prev[s]["file"], tmp / prev[s]["file"])
    return {**prev, "sources": list(plan.source.paths)}
