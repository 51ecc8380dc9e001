"""Token store: building from the fixture corpus, validation split, incremental rebuilds, damage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from autoscale.data import TokenStore, prepare_store
from autoscale.data.tokenizer import token_dtype
from autoscale.errors import AutoscaleError

FIXTURE = Path(__file__).parent / "fixtures" / "corpus"
DOMAINS = ("web", "news", "code", "books", "encyclopedia")
VAL = 4096


def fixture_sources() -> dict[str, Path]:
    return {d: FIXTURE / f"{d}.jsonl" for d in DOMAINS}


def fixture_texts(domain: str) -> list[str]:
    return [json.loads(line)["text"] for line in (FIXTURE / f"{domain}.jsonl").read_text().splitlines()]


def documents(store: TokenStore, tokens: np.ndarray) -> list[str]:
    """Decode an array of ids into its documents (split at the end-of-text token)."""
    tok = store.tokenizer()
    ids = tokens.tolist()
    cuts = [i for i, t in enumerate(ids) if t == store.eot_id]
    starts = [0] + [c + 1 for c in cuts[:-1]]
    assert cuts[-1] == len(ids) - 1, "every document ends with the end-of-text token"
    return [tok.decode(ids[a:b]) for a, b in zip(starts, cuts, strict=True)]


# its tests share `store`: built once, on one worker (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("test_data_store")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> TokenStore:
    return prepare_store(
        fixture_sources(), tmp_path_factory.mktemp("s") / "store", vocab_size=512, val_tokens=VAL
    )


def test_store_holds_every_domain_in_order_with_counts(store):
    assert store.domains == DOMAINS
    assert store.vocab_size == 512 and store.dtype == np.uint16
    manifest = json.loads((store.path / "manifest.json").read_text())
    for s in store.stats():
        entry = manifest["domains"][s.domain]
        assert s.documents == len(fixture_texts(s.domain)) == s.train_documents + s.val_documents
        assert store.train_tokens(s.domain).shape == (s.unique_train_tokens,)
        assert store.val_tokens(s.domain).shape == (entry["val"]["tokens"],)
        assert s.val_tokens >= VAL and s.unique_train_tokens >= s.val_tokens
        assert 1.0 < s.bytes_per_token < 6.0


def test_train_and_validation_partition_the_documents(store):
    for d in DOMAINS:
        train = documents(store, store.train_tokens(d))
        val = documents(store, store.val_tokens(d))
        # byte-level BPE round-trips exactly, so whole documents come back verbatim
        assert sorted(train + val) == sorted(fixture_texts(d))
        assert not set(train) & set(val)


def test_same_inputs_give_the_same_store(store, tmp_path):
    again = prepare_store(fixture_sources(), tmp_path / "again", vocab_size=512, val_tokens=VAL)
    assert again.manifest_hash == store.manifest_hash
    assert again.tokenizer_path.read_bytes() == store.tokenizer_path.read_bytes()
    other_seed = prepare_store(fixture_sources(), tmp_path / "seed1", vocab_size=512, val_tokens=VAL, seed=1)
    assert other_seed.manifest_hash != store.manifest_hash


def test_unchanged_domains_are_not_retokenised(store, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(FIXTURE, corpus)
    sources = {d: corpus / f"{d}.jsonl" for d in DOMAINS}
    out = tmp_path / "store"
    first = prepare_store(sources, out, tokenizer=store.tokenizer_path, val_tokens=VAL)
    stamps = {d: first.manifest["domains"][d]["tokenised_at"] for d in DOMAINS}
    inode = (out / "domains/web/train.bin").stat().st_ino

    with open(corpus / "news.jsonl", "a") as fh:
        fh.write(json.dumps({"text": "A new address to the Congress, added later. " * 40}) + "\n")
    lines = []
    second = prepare_store(
        sources, out, tokenizer=store.tokenizer_path, val_tokens=VAL, progress=lines.append
    )
    assert (out / "domains/web/train.bin").stat().st_ino == inode  # linked from the old store
    assert "web: unchanged, reused" in lines
    assert second.manifest["domains"]["web"]["tokenised_at"] == stamps["web"]
    assert second.stats()[DOMAINS.index("news")].documents == len(fixture_texts("news")) + 1
    assert second.manifest_hash != first.manifest_hash


def test_failed_prepare_leaves_the_previous_store_intact(store, tmp_path):
    out = tmp_path / "store"
    shutil.copytree(store.path, out)
    bad = {**fixture_sources(), "qa": tmp_path / "missing.jsonl"}
    with pytest.raises(AutoscaleError, match="path not found"):
        prepare_store(bad, out, vocab_size=512, val_tokens=VAL)
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"text": "   "}\n')
    with pytest.raises(AutoscaleError, match="'qa' is empty"):
        prepare_store({**fixture_sources(), "qa": empty}, out, vocab_size=512, val_tokens=VAL)
    assert TokenStore.open(out).manifest_hash == store.manifest_hash
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.jsonl", "store"]  # no temp dirs left


def test_domain_too_small_for_its_validation_split(tmp_path):
    small = tmp_path / "small.jsonl"
    small.write_text(json.dumps({"text": "Only one short document here."}) + "\n")
    with pytest.raises(AutoscaleError, match="'tiny' is too small"):
        prepare_store(
            {"web": FIXTURE / "web.jsonl", "tiny": small}, tmp_path / "s", vocab_size=300, val_tokens=VAL
        )


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda p: p.joinpath("domains/code/train.bin").write_bytes(
                p.joinpath("domains/code/train.bin").read_bytes()[:-2]
            ),
            "truncated",
        ),
        (lambda p: _flip_byte(p / "domains/books/val.bin"), "modified"),
        (lambda p: p.joinpath("domains/web/val.bin").unlink(), "missing file"),
        (
            lambda p: _edit_manifest(p, lambda m: m["domains"]["news"]["train"].update(sha256="0" * 64)),
            "modified",
        ),
        (
            lambda p: _edit_manifest(
                p, lambda m: m["domains"]["news"].update(train=m["domains"]["web"]["train"])
            ),
            "edited",
        ),
    ],
)
def test_damaged_store_is_detected_and_rebuilt(store, tmp_path, damage, message):
    out = tmp_path / "store"
    shutil.copytree(store.path, out)
    damage(out)
    with pytest.raises(AutoscaleError, match=message):
        TokenStore.open(out)
    repaired = prepare_store(fixture_sources(), out, vocab_size=512, val_tokens=VAL)
    assert repaired.manifest_hash == store.manifest_hash
    assert TokenStore.open(out).manifest_hash == store.manifest_hash


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[10] ^= 1
    path.write_bytes(bytes(data))


def _edit_manifest(root: Path, edit) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    edit(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_not_a_store(tmp_path):
    with pytest.raises(AutoscaleError, match="no token store"):
        TokenStore.open(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(AutoscaleError, match="not a token store; refusing"):
        prepare_store(fixture_sources(), tmp_path, vocab_size=512)


def test_unknown_domain_names_the_store_domains(store):
    with pytest.raises(AutoscaleError, match="'wiki' is not in the store"):
        store.train_tokens("wiki")


def test_a_local_tokenizer_directory_is_used_as_is(store, tmp_path):
    hf_dir = tmp_path / "tok"
    hf_dir.mkdir()
    shutil.copy(store.tokenizer_path, hf_dir / "tokenizer.json")
    other = prepare_store({"web": FIXTURE / "web.jsonl"}, tmp_path / "s", tokenizer=hf_dir, val_tokens=VAL)
    assert other.manifest["tokenizer"]["origin"] == str(hf_dir)
    assert np.array_equal(other.train_tokens("web"), store.train_tokens("web"))


def test_token_dtype_widens_for_large_vocabularies():
    assert token_dtype(8192) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(100_277) == np.uint32
