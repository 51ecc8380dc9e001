"""Mixture sampler: exact quotas, even repetition, determinism, resume; fixed validation batches."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscale.data import MixtureSampler, RepetitionWarning, prepare_store, validation_batches
from autoscale.errors import AutoscaleError
from autoscale.mixture import Mixture

FIXTURE = Path(__file__).parent / "fixtures" / "corpus"
DOMAINS = ("web", "news", "code", "books", "encyclopedia")
SEQ = 64


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    sources = {d: FIXTURE / f"{d}.jsonl" for d in DOMAINS}
    return prepare_store(sources, tmp_path_factory.mktemp("s") / "store", vocab_size=512, val_tokens=4096)


def all_rows(sampler: MixtureSampler, batch_size: int = 16, start: int = 0) -> np.ndarray:
    return np.concatenate(list(sampler.batches(batch_size, start=start)))


def window_of(store, domain: str, row: np.ndarray, seq_len: int = SEQ) -> int:
    """Index of the training window of `domain` that `row` is (fails if it is none)."""
    train = np.asarray(store.train_tokens(domain), dtype=np.int64)
    n = (train.shape[0] - 1) // seq_len
    windows = np.lib.stride_tricks.sliding_window_view(train, seq_len + 1)[::seq_len][:n]
    hits = np.flatnonzero((windows == row).all(axis=1))
    assert hits.size >= 1, f"row is not a training window of {domain}"
    return int(hits[0])


def test_each_domain_gets_exactly_round_tokens_over_seq_len(store):
    tokens = {"web": 10_000, "news": 3_200.0, "code": 31, "books": 25_000}
    sampler = MixtureSampler(store, tokens, seq_len=SEQ, seed=0)
    assert sampler.counts == {d: round(t / SEQ) for d, t in tokens.items()}
    assert sampler.tokens_trained == {d: c * SEQ for d, c in sampler.counts.items()}
    rows = all_rows(sampler, batch_size=7)
    assert rows.shape == (len(sampler), SEQ + 1) and rows.dtype == np.int64
    order = sampler.domain_order()
    assert {d: order.count(d) for d in tokens} == sampler.counts
    for row, domain in zip(rows[::25], order[::25], strict=True):
        window_of(store, domain, row)  # every sequence is a real window of its own domain
    assert len(set(order[:40])) > 1  # domains are interleaved, not served in blocks


def test_a_repeated_domain_uses_every_window_once_before_any_repeat(store):
    n_windows = (store.unique_train_tokens("code") - 1) // SEQ
    count = int(2.5 * n_windows)
    sampler = MixtureSampler(store, {"code": count * SEQ}, seq_len=SEQ, seed=3)
    ids = [window_of(store, "code", row) for row in all_rows(sampler, batch_size=64)]
    assert sorted(ids[:n_windows]) == list(range(n_windows))
    assert sorted(ids[n_windows : 2 * n_windows]) == list(range(n_windows))
    assert ids[:n_windows] != ids[n_windows : 2 * n_windows]  # each epoch has its own order
    assert len(set(ids[2 * n_windows :])) == count - 2 * n_windows


def test_epochs_are_reported_and_warned_past_the_limit(store):
    unique = store.unique_train_tokens("books")
    tokens = {"books": 3 * unique, "web": 1000}
    with pytest.warns(RepetitionWarning, match="'books' is repeated 3.00 times"):
        sampler = MixtureSampler(store, tokens, seq_len=SEQ, seed=0, max_epochs=2)
    assert sampler.epochs["books"] == pytest.approx(3.0, abs=SEQ / unique)
    assert len(sampler.warnings) == 1 and "books" in sampler.warnings[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = MixtureSampler(store, tokens, seq_len=SEQ, seed=0, max_epochs=3)
        unlimited = MixtureSampler(store, tokens, seq_len=SEQ, seed=0)
    assert quiet.warnings == [] and unlimited.warnings == []


def test_same_seed_same_stream_other_seed_other_stream(store):
    tokens = Mixture({"web": 8000, "news": 8000, "encyclopedia": 4000}).tokens
    a = all_rows(MixtureSampler(store, tokens, SEQ, seed=7))
    b = all_rows(MixtureSampler(store, tokens, SEQ, seed=7))
    c = all_rows(MixtureSampler(store, tokens, SEQ, seed=8))
    assert np.array_equal(a, b)
    assert a.shape == c.shape and not np.array_equal(a, c)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=st.integers(0, 200),
    batch_size=st.integers(1, 9),
    web=st.integers(0, 30_000),
    books=st.integers(1_000, 200_000),
)
def test_resume_from_any_position_continues_the_same_stream(store, start, batch_size, web, books):
    tokens = {"web": web, "books": books}
    sampler = MixtureSampler(store, tokens, SEQ, seed=1)
    start = min(start, len(sampler))
    full = all_rows(sampler, batch_size=5)
    resumed = list(MixtureSampler(store, tokens, SEQ, seed=1).batches(batch_size, start=start))
    assert all(b.shape[0] == batch_size for b in resumed[:-1])
    tail = np.concatenate(resumed) if resumed else np.empty((0, SEQ + 1), dtype=np.int64)
    assert np.array_equal(tail, full[start:])


def test_validation_batches_come_from_the_fixed_split_only(store):
    val = np.asarray(store.val_tokens("news"), dtype=np.int64)
    batches = list(validation_batches(store, "news", SEQ, batch_size=8))
    rows = np.concatenate(batches)
    assert rows.shape == ((val.shape[0] - 1) // SEQ, SEQ + 1)
    for k, row in enumerate(rows):
        assert np.array_equal(row, val[k * SEQ : k * SEQ + SEQ + 1])
    capped = np.concatenate(list(validation_batches(store, "news", SEQ, batch_size=8, max_tokens=10 * SEQ)))
    assert np.array_equal(capped, rows[:10])


def test_validation_split_does_not_move_with_the_set_of_domains(store, tmp_path):
    # The split of a domain is seeded by its name: adding or dropping domains leaves it alone,
    # so every mixture over any subset of domains is scored on the same text.
    pair = prepare_store(
        {d: FIXTURE / f"{d}.jsonl" for d in ("code", "web")},
        tmp_path / "pair",
        tokenizer=store.tokenizer_path,
        val_tokens=4096,
    )
    assert pair.domains == ("code", "web")
    for d in pair.domains:
        a = list(validation_batches(pair, d, SEQ, 4))
        b = list(validation_batches(store, d, SEQ, 4))
        assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    ("tokens", "seq_len", "message"),
    [
        ({"wiki": 100}, SEQ, "not in the store: wiki"),
        ({"web": 10}, SEQ, "no sequence"),
        ({"web": -5}, SEQ, ">= 0"),
        ({"web": 1e9}, 10**6, "fewer than one sequence"),
        ({"web": 100}, 0, "seq_len must be a positive integer"),
    ],
)
def test_impossible_mixtures_are_refused(store, tokens, seq_len, message):
    with pytest.raises(AutoscaleError, match=message):
        MixtureSampler(store, tokens, seq_len=seq_len, seed=0)


def test_bad_batch_arguments(store):
    sampler = MixtureSampler(store, {"web": 6400}, SEQ, seed=0)
    with pytest.raises(AutoscaleError, match="start must be"):
        next(sampler.batches(4, start=len(sampler) + 1))
    assert list(sampler.batches(4, start=len(sampler))) == []
    with pytest.raises(AutoscaleError, match="fewer than one sequence"):
        next(validation_batches(store, "web", 10**6, 4))
