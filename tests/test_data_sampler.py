"""Mixture sampler: exact quotas, even repetition, determinism, resume, coupled runs; fixed validation
batches."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscale.data import MixtureSampler, RepetitionWarning, prepare_store, validation_batches
from autoscale.data.sampler import ORDERS
from autoscale.errors import AutoscaleError
from autoscale.mixture import Mixture

FIXTURE = Path(__file__).parent / "fixtures" / "corpus"
DOMAINS = ("web", "news", "code", "books", "encyclopedia")
SEQ = 64


# its tests share `store`: built once, on one worker (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("test_data_sampler")


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


@pytest.mark.parametrize("order", ORDERS)
def test_each_domain_gets_exactly_round_tokens_over_seq_len(store, order):
    tokens = {"web": 10_000, "news": 3_200.0, "code": 31, "books": 25_000}
    sampler = MixtureSampler(store, tokens, seq_len=SEQ, seed=0, order=order)
    assert sampler.counts == {d: round(t / SEQ) for d, t in tokens.items()}
    assert sampler.tokens_trained == {d: c * SEQ for d, c in sampler.counts.items()}
    rows = all_rows(sampler, batch_size=7)
    assert rows.shape == (len(sampler), SEQ + 1) and rows.dtype == np.int64
    order = sampler.domain_order()
    assert {d: order.count(d) for d in tokens} == sampler.counts
    for row, domain in zip(rows[::25], order[::25], strict=True):
        window_of(store, domain, row)  # every sequence is a real window of its own domain
    assert len(set(order[:40])) > 1  # domains are interleaved, not served in blocks


@pytest.mark.parametrize("order", ORDERS)
def test_a_repeated_domain_uses_every_window_once_before_any_repeat(store, order):
    n_windows = (store.unique_train_tokens("code") - 1) // SEQ
    count = int(2.5 * n_windows)
    sampler = MixtureSampler(store, {"code": count * SEQ, "web": 20 * SEQ}, seq_len=SEQ, seed=3, order=order)
    code = np.array(sampler.domain_order()) == "code"
    ids = [window_of(store, "code", row) for row in all_rows(sampler, batch_size=64)[code]]
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


@pytest.mark.parametrize("order", ORDERS)
def test_same_seed_same_stream_other_seed_other_stream(store, order):
    tokens = Mixture({"web": 8000, "news": 8000, "encyclopedia": 4000}).tokens
    a = all_rows(MixtureSampler(store, tokens, SEQ, seed=7, order=order))
    b = all_rows(MixtureSampler(store, tokens, SEQ, seed=7, order=order))
    c = all_rows(MixtureSampler(store, tokens, SEQ, seed=8, order=order))
    assert np.array_equal(a, b)
    assert a.shape == c.shape and not np.array_equal(a, c)


def test_the_orders_differ_and_an_unknown_order_is_refused(store):
    tokens = {"web": 8000, "news": 8000}
    coupled = MixtureSampler(store, tokens, SEQ, seed=0)
    assert coupled.order == "coupled"  # the default
    shuffled = MixtureSampler(store, tokens, SEQ, seed=0, order="shuffled")
    assert coupled.counts == shuffled.counts and coupled.domain_order() != shuffled.domain_order()
    with pytest.raises(AutoscaleError, match="sampler order must be one of 'coupled', 'shuffled', got 'random'"):
        MixtureSampler(store, tokens, SEQ, seed=0, order="random")


def placement(sampler: MixtureSampler, domain: str) -> tuple[np.ndarray, np.ndarray]:
    """The domain's sequences in run order and their relative positions (index / run length)."""
    where = np.flatnonzero(np.array(sampler.domain_order()) == domain)
    return all_rows(sampler, batch_size=256)[where], where / len(sampler)


def test_coupled_runs_keep_an_unchanged_domain_in_place_when_another_changes(store):
    # A DDO pair: "web" at 0.2x and at 3x the base; "news" and "books" unchanged (1000 sequences
    # of 16 tokens each, fewer than their ~3400 windows, as is web's 3000).
    seq, base = 16, 1000 * 16
    small = {"web": 0.2 * base, "news": base, "books": base}
    large = {"web": 3 * base, "news": base, "books": base}

    def shifts(order: str) -> tuple[bool, np.ndarray]:
        a = MixtureSampler(store, small, seq, seed=5, order=order)
        b = MixtureSampler(store, large, seq, seed=5, order=order)
        moved = []
        for d in ("news", "books"):
            (rows_a, pos_a), (rows_b, pos_b) = placement(a, d), placement(b, d)
            assert np.array_equal(rows_a, rows_b)  # the same windows, in the same order
            moved.append(np.abs(pos_a - pos_b))
        # The run without web: identical when coupled (the unchanged domains keep their keys).
        rest_a, rest_b = ([d for d in s.domain_order() if d != "web"] for s in (a, b))
        return rest_a == rest_b, np.concatenate(moved)

    same_rest, coupled = shifts("coupled")
    assert same_rest
    # A sequence with key u sits at u plus the share-weighted sum of each domain's error in counting
    # its keys below u. The first c golden-ratio keys miss any interval's share by less than
    # (1 + ln c) / c, so between the runs the shift is under sum_d |share_a(d) - share_b(d)| * that,
    # plus rounding: 2 * 0.255 * 0.0079 + 0.091 * 0.032 + 0.6 * 0.0030 = 0.0087 < 0.01 here.
    assert coupled.max() < 0.01
    same_rest, shuffled = shifts("shuffled")
    # Shuffled: a domain's j-th sequence sits near j / count in both runs, but the two shuffles are
    # independent, so it is off by ~sqrt(count) positions in each (SD ~0.018 of the run at j =
    # count / 2 here), and the rest of the run is reordered.
    assert not same_rest
    assert shuffled.max() > 0.01 and coupled.mean() < shuffled.mean() / 10


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=st.integers(0, 200),
    batch_size=st.integers(1, 9),
    web=st.integers(0, 30_000),
    books=st.integers(1_000, 200_000),
    order=st.sampled_from(ORDERS),
)
def test_resume_from_any_position_continues_the_same_stream(store, start, batch_size, web, books, order):
    tokens = {"web": web, "books": books}
    sampler = MixtureSampler(store, tokens, SEQ, seed=1, order=order)
    start = min(start, len(sampler))
    full = all_rows(sampler, batch_size=5)
    resumed = list(MixtureSampler(store, tokens, SEQ, seed=1, order=order).batches(batch_size, start=start))
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
