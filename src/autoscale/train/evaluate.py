"""Turning token sequences into (inputs, targets) and measuring per-domain validation loss.

A sequence holds ``seq_len + 1`` tokens. Causal LMs learn ``s[:-1] -> s[1:]``. Masked LMs see
``s[:-1]`` with ``mask_prob`` of positions selected; of those, 80% become [MASK], 10% a random token
and 10% stay unchanged (BERT), and only the selected positions are scored.

Masks are drawn with numpy from explicit seeds, never from a global RNG: training masks from
(seed, step), evaluation masks from (eval seed, domain name, batch index). So the same step gets the
same masks after a resume or on any number of processes, and evaluating the same model twice gives
exactly the same loss; every mixture is evaluated on the same masked text.
"""

from __future__ import annotations

import contextlib
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from autoscale.train.metrics import DomainEval
from autoscale.train.models import IGNORE, ProxyLM, mask_token_id


def mask_tokens(
    tokens: np.ndarray, rng: np.random.Generator, vocab_size: int, mask_prob: float
) -> tuple[np.ndarray, np.ndarray]:
    """BERT masking of (B, T) token ids: returns (inputs, targets), targets ``IGNORE`` where unscored."""
    selected = rng.random(tokens.shape) < mask_prob
    action = rng.random(tokens.shape)
    random_ids = rng.integers(0, vocab_size, size=tokens.shape)
    inputs = tokens.copy()
    inputs[selected & (action < 0.8)] = mask_token_id(vocab_size)
    swap = selected & (action >= 0.8) & (action < 0.9)
    inputs[swap] = random_ids[swap]
    targets = np.where(selected, tokens, IGNORE)
    return inputs, targets


def split_sequences(
    seqs: np.ndarray, objective: str, rng: np.random.Generator | None, vocab_size: int, mask_prob: float
) -> tuple[np.ndarray, np.ndarray]:
    """(B, seq_len + 1) sequences -> (inputs, targets), both (B, seq_len) int64."""
    seqs = np.asarray(seqs, dtype=np.int64)
    if objective == "causal":
        return seqs[:, :-1], seqs[:, 1:]
    assert rng is not None, "masked LMs need a seeded generator"
    return mask_tokens(seqs[:, :-1], rng, vocab_size, mask_prob)


def train_mask_rng(seed: int, step: int) -> np.random.Generator:
    """Masks of optimizer step ``step`` (drawn for the whole global batch, then split)."""
    return np.random.default_rng([seed, 0x4D41534B, step])


def eval_mask_rng(seed: int, domain: str, batch: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(domain.encode()), batch])


@dataclass(frozen=True)
class EvalSet:
    """Fixed validation batches per domain: lists of (inputs, targets) arrays, built once per run."""

    batches: dict[str, list[tuple[np.ndarray, np.ndarray]]]

    def tokens(self, domain: str) -> int:
        return int(sum((t != IGNORE).sum() for _, t in self.batches[domain]))


def build_eval_set(
    batches: dict[str, Sequence[np.ndarray]], objective: str, vocab_size: int, mask_prob: float, seed: int
) -> EvalSet:
    """``batches``: domain -> (b, seq_len + 1) validation arrays from the data layer."""
    out = {}
    for domain, seqs in batches.items():
        out[domain] = [
            split_sequences(s, objective, eval_mask_rng(seed, domain, i), vocab_size, mask_prob)
            for i, s in enumerate(seqs)
        ]
    return EvalSet(out)


@torch.no_grad()
def evaluate(
    model: ProxyLM,
    eval_set: EvalSet,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    rank: int = 0,
    world: int = 1,
) -> dict[str, DomainEval]:
    """Token-mean validation loss (nats) and perplexity per domain.

    With ``world`` > 1 processes each evaluates every ``world``-th batch and the sums are all-reduced,
    so every rank returns the same numbers.
    """
    was_training = model.training
    model.eval()
    domains = list(eval_set.batches)
    sums = torch.zeros(len(domains), 2, dtype=torch.float64)
    for j, domain in enumerate(domains):
        for i, (inputs, targets) in enumerate(eval_set.batches[domain]):
            if i % world != rank:
                continue
            with autocast():
                loss, count = model.losses(
                    torch.from_numpy(inputs).to(device), torch.from_numpy(targets).to(device)
                )
            sums[j, 0] += float(loss)
            sums[j, 1] += float(count)
    if world > 1:
        reduced = sums.to(device)  # NCCL reduces device tensors only
        torch.distributed.all_reduce(reduced)
        sums = reduced.cpu()
    model.train(was_training)
    out = {}
    for j, domain in enumerate(domains):
        loss = float(sums[j, 0] / max(float(sums[j, 1]), 1.0))
        out[domain] = DomainEval(loss=loss, perplexity=math.exp(min(loss, 700.0)))
    return out
