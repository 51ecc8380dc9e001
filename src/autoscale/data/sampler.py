"""Mixture sampler: exactly round(tokens / seq_len) training sequences per domain, interleaved.

A *sequence* holds ``seq_len + 1`` consecutive token ids of one domain (causal LMs train on
``s[:-1] -> s[1:]``). A domain's training array is cut into fixed windows starting at multiples
of ``seq_len``; there are ``(unique_train_tokens - 1) // seq_len`` of them. The sampler:

- gives domain d exactly ``counts[d] = round(tokens[d] / seq_len)`` sequences (Python's round);
- interleaves all sequences in a seeded random order (each batch mixes domains);
- within a domain, serves every window once, in a seeded permutation, before any repeats
  (epoch e uses its own permutation), so repetition is as even as it can be;
- reports ``epochs[d] = tokens_trained[d] / unique_train_tokens[d]`` and, when ``max_epochs`` is
  given, warns (a `RepetitionWarning`, also listed in ``.warnings``) for each domain asked for more
  sequences than ``round(max_epochs * unique_train_tokens / seq_len)``;
- is a pure function of (store data, tokens, seq_len, seed): ``batches(b, start=k)`` yields the
  same sequences as an uninterrupted run from position k on (checkpoint resume).

`validation_batches` reads only the store's fixed validation split, so it is the same for every
mixture.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Iterator, Mapping

import numpy as np

from autoscale.data.store import TokenStore
from autoscale.errors import AutoscaleError


class RepetitionWarning(UserWarning):
    """A mixture repeats a domain's training tokens more often than `max_epochs` allows."""


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise AutoscaleError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class MixtureSampler:
    """Training sequences for a mixture given in tokens.

    Args:
        store: the token store.
        tokens: domain -> training tokens (absolute counts; a `Mixture` is accepted too). Domains
            of the store left out get no sequences.
        seq_len: tokens a model predicts per sequence (each sequence holds seq_len + 1 ids).
        seed: fixes the interleaving and the per-epoch window orders.
        max_epochs: warn when a domain would be repeated more than this (None: never warn).
    """

    def __init__(
        self,
        store: TokenStore,
        tokens: Mapping[str, float],
        seq_len: int,
        seed: int,
        max_epochs: float | None = None,
    ) -> None:
        tokens = getattr(tokens, "tokens", tokens)  # a Mixture carries its tokens mapping
        if not isinstance(tokens, Mapping) or not tokens:
            raise AutoscaleError("the mixture must map at least one domain to a number of tokens")
        self.store = store
        self.seq_len = _positive_int("seq_len", seq_len)
        self.seed = int(seed)
        self.max_epochs = max_epochs
        self.domains: tuple[str, ...] = tuple(tokens)
        unknown = [d for d in self.domains if d not in store.domains]
        if unknown:
            raise AutoscaleError(
                f"mixture domains not in the store: {', '.join(unknown)} (store has {', '.join(store.domains)})"
            )
        self.counts: dict[str, int] = {}
        for d, t in tokens.items():
            t = float(t)
            if not math.isfinite(t) or t < 0:
                raise AutoscaleError(f"tokens for domain {d!r} must be a finite number >= 0, got {t!r}")
            self.counts[d] = int(round(t / self.seq_len))
        self.tokens_trained: dict[str, int] = {d: c * self.seq_len for d, c in self.counts.items()}
        self._windows = {d: (store.unique_train_tokens(d) - 1) // self.seq_len for d in self.domains}
        for d, c in self.counts.items():
            if c and self._windows[d] == 0:
                raise AutoscaleError(
                    f"domain {d!r} has {store.unique_train_tokens(d)} training tokens: fewer than one "
                    f"sequence of {self.seq_len + 1}"
                )
        self.epochs: dict[str, float] = {
            d: self.tokens_trained[d] / store.unique_train_tokens(d) for d in self.domains
        }
        self.warnings: list[str] = []
        if max_epochs is not None:
            for d in self.domains:
                allowed = round(max_epochs * store.unique_train_tokens(d) / self.seq_len)
                if self.counts[d] > allowed:
                    msg = (
                        f"domain {d!r} is repeated {self.epochs[d]:.2f} times "
                        f"({self.tokens_trained[d]} tokens of {store.unique_train_tokens(d)} unique), "
                        f"more than max_epochs={max_epochs}"
                    )
                    self.warnings.append(msg)
                    warnings.warn(msg, RepetitionWarning, stacklevel=2)
        total = sum(self.counts.values())
        if total == 0:
            raise AutoscaleError(f"the mixture gives no sequence of {self.seq_len} tokens to any domain")
        # Domain label of every sequence position, shuffled once: the interleaving.
        label_dtype = np.uint8 if len(self.domains) < 256 else np.int32
        labels = np.repeat(
            np.arange(len(self.domains), dtype=label_dtype), [self.counts[d] for d in self.domains]
        )
        np.random.default_rng(np.random.SeedSequence([self.seed, 0x5EED])).shuffle(labels)
        self._labels = labels
        self._perms: dict[tuple[int, int], np.ndarray] = {}
        self._arange = np.arange(self.seq_len + 1, dtype=np.int64)

    def __len__(self) -> int:
        return int(self._labels.shape[0])

    def _perm(self, k: int, epoch: int) -> np.ndarray:
        key = (k, epoch)
        if key not in self._perms:
            if len(self._perms) > 4 * len(self.domains):
                self._perms.clear()  # bounded cache: batches move forward through epochs
            d = self.domains[k]
            ss = np.random.SeedSequence([self.seed, zlib.crc32(d.encode()), epoch, 1])
            self._perms[key] = np.random.default_rng(ss).permutation(self._windows[d])
        return self._perms[key]

    def _window_ids(self, k: int, occurrence: np.ndarray) -> np.ndarray:
        """Window index for the domain's `occurrence`-th sequences (0-based, increasing)."""
        w = self._windows[self.domains[k]]
        epoch, within = np.divmod(occurrence, w)
        out = np.empty_like(occurrence)
        for e in np.unique(epoch):
            sel = epoch == e
            out[sel] = self._perm(k, int(e))[within[sel]]
        return out

    def batches(self, batch_size: int, start: int = 0) -> Iterator[np.ndarray]:
        """Yield int64 arrays (B, seq_len + 1) from sequence position `start` to the end.

        Every batch has `batch_size` rows except possibly the last. Resuming with
        ``start = sequences already consumed`` continues the same stream exactly.
        """
        batch_size = _positive_int("batch_size", batch_size)
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or not 0 <= start <= len(self):
            raise AutoscaleError(f"start must be a sequence position in [0, {len(self)}], got {start!r}")
        m = len(self.domains)
        seen = np.bincount(self._labels[:start], minlength=m).astype(np.int64)
        arrays = [self.store.train_tokens(d) for d in self.domains]
        for b0 in range(int(start), len(self), batch_size):
            labels = self._labels[b0 : b0 + batch_size]
            out = np.empty((labels.shape[0], self.seq_len + 1), dtype=np.int64)
            for k in np.unique(labels):
                rows = np.flatnonzero(labels == k)
                occurrence = seen[k] + np.arange(rows.shape[0], dtype=np.int64)
                seen[k] += rows.shape[0]
                starts = self._window_ids(int(k), occurrence) * self.seq_len
                out[rows] = arrays[k][starts[:, None] + self._arange]
            yield out

    def domain_order(self, start: int = 0, stop: int | None = None) -> list[str]:
        """The domain of each sequence position in [start, stop) (for logging and tests)."""
        return [self.domains[k] for k in self._labels[start:stop]]


def validation_batches(
    store: TokenStore, domain: str, seq_len: int, batch_size: int, max_tokens: int | None = None
) -> Iterator[np.ndarray]:
    """Yield int64 arrays (b, seq_len + 1) covering the domain's validation split in order.

    Windows start at multiples of seq_len (consecutive windows share one token, so every token
    but the first is predicted once). `max_tokens` caps the predicted tokens (absolute count) at
    ``max(1, max_tokens // seq_len)`` windows. Depends only on the store, never on a mixture.
    """
    seq_len = _positive_int("seq_len", seq_len)
    batch_size = _positive_int("batch_size", batch_size)
    val = store.val_tokens(domain)
    n = (val.shape[0] - 1) // seq_len
    if n == 0:
        raise AutoscaleError(
            f"domain {domain!r}: validation split has {val.shape[0]} tokens, fewer than one sequence of {seq_len + 1}"
        )
    if max_tokens is not None:
        n = min(n, max(1, _positive_int("max_tokens", max_tokens) // seq_len))
    arange = np.arange(seq_len + 1, dtype=np.int64)
    for b0 in range(0, n, batch_size):
        starts = np.arange(b0, min(n, b0 + batch_size), dtype=np.int64) * seq_len
        yield np.asarray(val[starts[:, None] + arange], dtype=np.int64)
