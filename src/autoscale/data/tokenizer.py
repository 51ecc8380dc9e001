"""Tokenizer: a byte-level BPE trained on a balanced sample of all domains, or a local one.

Training is deterministic (same sample, same vocab size -> the same ``tokenizer.json`` bytes).
Every document is followed by the end-of-text token ``<|endoftext|>``; a trained tokenizer gives
it id 0. A loaded tokenizer must have an end-of-text token: ``<|endoftext|>``, or the ``eos_token``
of an HF ``tokenizer_config.json``, or one of ``</s>``, ``<eos>``, ``[SEP]``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from autoscale.errors import AutoscaleError

EOT = "<|endoftext|>"
_FALLBACK_EOS = ("</s>", "<eos>", "[SEP]", "<|end_of_text|>")
MIN_VOCAB = 257  # 256 byte symbols + end-of-text


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8192, min_frequency: int = 2) -> Tokenizer:
    """Train a byte-level BPE on `texts` (an already balanced sample); `<|endoftext|>` gets id 0."""
    if not isinstance(vocab_size, int) or vocab_size < MIN_VOCAB:
        raise AutoscaleError(f"vocab_size must be an integer >= {MIN_VOCAB}, got {vocab_size!r}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a ``tokenizer.json`` file, or an HF tokenizer directory (``tokenizer.json`` or
    ``vocab.json`` + ``merges.txt``)."""
    p = Path(path).expanduser()
    if p.is_dir():
        if (p / "tokenizer.json").is_file():
            p = p / "tokenizer.json"
        elif (p / "vocab.json").is_file() and (p / "merges.txt").is_file():
            try:
                model = models.BPE.from_file(str(p / "vocab.json"), str(p / "merges.txt"))
            except Exception as exc:  # tokenizers raises plain Exception subclasses
                raise AutoscaleError(f"cannot read tokenizer files in {p}: {exc}") from exc
            tok = Tokenizer(model)
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            return tok
        else:
            raise AutoscaleError(
                f"tokenizer directory {p} has no tokenizer.json (nor vocab.json + merges.txt)"
            )
    if not p.is_file():
        raise AutoscaleError(f"tokenizer not found: {p}")
    try:
        tok = Tokenizer.from_file(str(p))
    except Exception as exc:
        raise AutoscaleError(f"cannot read tokenizer {p}: {exc}") from exc
    return tok


def _eos_from_config(path: Path) -> str | None:
    cfg = (path if path.is_dir() else path.parent) / "tokenizer_config.json"
    if not cfg.is_file():
        return None
    try:
        eos = json.loads(cfg.read_text(encoding="utf-8")).get("eos_token")
    except (ValueError, OSError):
        return None
    if isinstance(eos, dict):
        eos = eos.get("content")
    return eos if isinstance(eos, str) else None


def eot_token(tok: Tokenizer, source: str | Path | None = None) -> tuple[str, int]:
    """The end-of-text token separating documents, as (text, id).

    `source` is where a loaded tokenizer came from: an HF ``tokenizer_config.json`` beside it may
    name its ``eos_token``.
    """
    config_eos = _eos_from_config(Path(source).expanduser()) if source is not None else None
    for candidate in (EOT, config_eos, *_FALLBACK_EOS):
        if candidate:
            tid = tok.token_to_id(candidate)
            if tid is not None:
                return candidate, tid
    raise AutoscaleError(f"the tokenizer has no end-of-text token ({EOT}, </s>, <eos> or [SEP])")


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab <= 65536), else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


def encode_documents(tok: Tokenizer, docs: Sequence[str]) -> list[list[int]]:
    """Token ids of each document (no special tokens added); parallel inside `tokenizers`."""
    return [enc.ids for enc in tok.encode_batch_fast(list(docs), add_special_tokens=False)]
