"""Mixture sampler: exactly round(tokens / seq_len) training sequences per domain, interleaved.

A *sequence* holds ``seq_len + 1`` consecutive token ids of one domain (causal LMs train on
``s[:-1] -> s[1:]``). A domain's training array is cut into fixed windows starting at multiples
of ``seq_len``; there are ``(unique_train_tokens - 1) // seq_len`` of them. The sampler:

- gives domain d exactly ``counts[d] = round(tokens[d] / seq_len)`` sequences (Python's round);
- maps the domain's occurrence k (its k-th sequence, k = 0..count-1) to a window through seeded
  per-epoch permutations: occurrence k is window ``perm_e[k mod windows]`` of epoch
  ``e = k // windows``, whatever the count, so every window is used once before any repeats and
  repetition is as even as it can be;
- interleaves all sequences in a seeded order (each batch mixes domains), one of:

  - ``"coupled"`` (default; common random numbers across runs): occurrence k of domain d gets the
    key ``u_k = frac(s_d + k / golden ratio)`` in [0, 1), with a start ``s_d`` drawn from a stream
    seeded by (seed, domain name); the run is all sequences sorted by key. The first c keys are the
    same whatever the domain's count, and, being a low-discrepancy sequence, spread evenly over
    [0, 1): a fraction u of the run holds u * c of them to within 1 + ln(c) (independent uniform
    keys would be off by ~sqrt(c)). So a domain whose amount is unchanged between two runs of one
    seed (a DDO perturbation of another domain) trains the same windows in the same order, each at
    the same relative position of the run (``u_k``, to within a few sequences) and so at the same
    point of the learning-rate schedule; the changed domain's first sequences keep their places
    too, and every stretch of the run holds each domain in proportion to its count. The paired
    difference of the two runs carries that much less data-order noise. A domain asked for more
    sequences than it has windows is served in key order instead (its j-th sequence in the run is
    occurrence j), so its epochs still come one after the other;
  - ``"shuffled"``: a seeded shuffle of the domain labels; the j-th sequence of a domain in the run
    is its occurrence j. The shuffle depends on every domain's count, so changing one domain moves
    every other domain's sequences. Kept bit-for-bit from sampler version 1 for comparison;

- reports ``epochs[d] = tokens_trained[d] / unique_train_tokens[d]`` and, when ``max_epochs`` is
  given, warns (a `RepetitionWarning`, also listed in ``.warnings``) for each domain asked for more
  sequences than ``round(max_epochs * unique_train_tokens / seq_len)``;
- is a pure function of (store data, tokens, seq_len, seed, order): ``batches(b, start=k)`` yields
  the same sequences as an uninterrupted run from position k on (checkpoint resume).

`SAMPLER_VERSION` identifies what the sampler yields and goes into run keys (the trainer's run
fingerprint), so a checkpoint or metrics.json of an older sampler is never taken for a new run:
any change to the sequences or their order for some (store, tokens, seq_len, seed, order) must
bump it.

`validation_batches` reads only the store's fixed validation split, so it is the same for every
mixture.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Iterator, Mapping
from typing import Literal

import numpy as np

from autoscale.data.store import TokenStore
from autoscale.errors import AutoscaleError

#: Bump whenever what the sampler yields changes (see the module docstring). 2: the "coupled" order.
SAMPLER_VERSION = 2

Order = Literal["coupled", "shuffled"]
ORDERS: tuple[str, ...] = ("coupled", "shuffled")

_KEY_TAG = 0xC0091ED  # separates the coupled keys' streams from the window permutations' streams
# 2^64 / golden ratio (odd): k * _GOLDEN mod 2^64 is frac(k / golden ratio) in 64-bit fixed point,
# exact and the same on every machine, and distinct for distinct k.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


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
        order: how domains are interleaved: ``"coupled"`` (sort by per-sequence keys that do not
            depend on the other domains' counts) or ``"shuffled"`` (version 1's label shuffle);
            see the module docstring.
    """

    def __init__(
        self,
        store: TokenStore,
        tokens: Mapping[str, float],
        seq_len: int,
        seed: int,
        max_epochs: float | None = None,
        order: Order = "coupled",
    ) -> None:
        if order not in ORDERS:
            raise AutoscaleError(f"sampler order must be one of {', '.join(map(repr, ORDERS))}, got {order!r}")
        self.order = order
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
        # Per sequence position: its domain (label) and that domain's occurrence index. Compact
        # dtypes: a billion-token run at seq_len 128 is ~8M positions, ~40 MB here.
        counts = [self.counts[d] for d in self.domains]
        label_dtype = np.uint8 if len(self.domains) < 256 else np.int32
        occ_dtype = np.uint32 if max(counts) < 2**32 else np.int64
        labels = np.repeat(np.arange(len(self.domains), dtype=label_dtype), counts)
        if order == "shuffled":
            np.random.default_rng(np.random.SeedSequence([self.seed, 0x5EED])).shuffle(labels)
            occurrence = _appearance(labels, counts, occ_dtype)
        else:
            keys = np.concatenate([  # uint64 arithmetic wraps: the keys are mod 2^64, i.e. mod 1
                np.arange(c, dtype=np.uint64) * _GOLDEN + self._key_start(d)
                for d, c in zip(self.domains, counts, strict=True)
            ])
            by_key = np.argsort(keys, kind="stable")
            del keys
            labels = labels[by_key]
            occurrence = np.concatenate([np.arange(c, dtype=occ_dtype) for c in counts])[by_key]
            del by_key
            repeated = [k for k, d in enumerate(self.domains) if self.counts[d] > self._windows[d]]
            if repeated:  # served in key order, so that epoch e ends before epoch e + 1 begins
                mask = np.isin(labels, repeated)
                occurrence[mask] = _appearance(labels, counts, occ_dtype)[mask]
        self._labels = labels
        self._occurrence = occurrence
        self._perms: dict[tuple[int, int], np.ndarray] = {}
        self._arange = np.arange(self.seq_len + 1, dtype=np.int64)

    def _key_start(self, domain: str) -> np.uint64:
        ss = np.random.SeedSequence([self.seed, zlib.crc32(domain.encode()), _KEY_TAG])
        return np.random.default_rng(ss).integers(2**64, dtype=np.uint64)

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
        """Window index of each of the domain's `occurrence`s (0-based occurrence indices)."""
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
        arrays = [self.store.train_tokens(d) for d in self.domains]
        for b0 in range(int(start), len(self), batch_size):
            labels = self._labels[b0 : b0 + batch_size]
            occurrence = self._occurrence[b0 : b0 + batch_size].astype(np.int64)
            out = np.empty((labels.shape[0], self.seq_len + 1), dtype=np.int64)
            for k in np.unique(labels):
                rows = np.flatnonzero(labels == k)
                starts = self._window_ids(int(k), occurrence[rows]) * self.seq_len
                out[rows] = arrays[k][starts[:, None] + self._arange]
            yield out

    def domain_order(self, start: int = 0, stop: int | None = None) -> list[str]:
        """The domain of each sequence position in [start, stop) (for logging and tests)."""
        return [self.domains[k] for k in self._labels[start:stop]]


def _appearance(labels: np.ndarray, counts: list[int], dtype: type) -> np.ndarray:
    """For each position, how many earlier positions have the same label (0, 1, 2, ... per label)."""
    out = np.empty(labels.shape[0], dtype=dtype)
    out[np.argsort(labels, kind="stable")] = np.concatenate([np.arange(c, dtype=dtype) for c in counts])
    return out


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
