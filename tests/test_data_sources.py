"""User corpora: .txt, .jsonl(.gz), .parquet, directories, globs; bad input is counted or refused."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from autoscale.data import DomainSource, TokenStore, prepare_store
from autoscale.data.sources import ReadStats, hash_inputs, iter_documents, mask_emails, resolve_inputs
from autoscale.errors import AutoscaleError

FIXTURE = Path(__file__).parent / "fixtures" / "corpus"


def fixture_texts(domain: str) -> list[str]:
    return [json.loads(line)["text"] for line in (FIXTURE / f"{domain}.jsonl").read_text().splitlines()]


def read(domain_source: DomainSource) -> tuple[list[str], ReadStats]:
    stats = ReadStats()
    inputs = resolve_inputs("d", domain_source, stats)
    return list(iter_documents(inputs, stats, text_field=domain_source.text_field)), stats


def test_a_directory_of_text_files_gives_one_document_per_file(tmp_path):
    texts = fixture_texts("news")[:4]
    (tmp_path / "sub").mkdir()
    for i, t in enumerate(texts):
        (tmp_path / ("sub" if i % 2 else ".") / f"{i}.txt").write_text(t)
    (tmp_path / "notes.md").write_text("ignored")
    docs, stats = read(DomainSource((str(tmp_path),)))
    assert sorted(docs) == sorted(texts)
    assert stats.files == 4 and stats.skipped_files == [str(tmp_path / "notes.md")]


def test_text_files_split_at_end_of_text_lines_and_long_files_at_paragraphs(tmp_path):
    (tmp_path / "a.txt").write_text("first doc\n<|endoftext|>\nsecond doc\n")
    big = "\n\n".join(f"paragraph {i} " + "word " * 200 for i in range(200))  # ~200 KB
    (tmp_path / "b.txt").write_text(big)
    docs, _ = read(DomainSource((str(tmp_path / "*.txt"),)))
    assert docs[:2] == ["first doc\n", "second doc\n"]
    assert len(docs) > 3 and all(len(d) < 80_000 for d in docs[2:])
    assert "".join(docs[2:]) == big


def test_jsonl_gz_with_a_custom_text_field(tmp_path):
    texts = fixture_texts("books")[:3]
    with gzip.open(tmp_path / "part.jsonl.gz", "wt") as fh:
        for t in texts:
            fh.write(json.dumps({"content": t, "id": 1}) + "\n")
    docs, stats = read(DomainSource((str(tmp_path / "part.jsonl.gz"),), text_field="content"))
    assert docs == texts and stats.skipped_records == 0


def test_parquet_text_column(tmp_path):
    texts = fixture_texts("code")[:5]
    pq.write_table(pa.table({"body": texts, "n": list(range(5))}), tmp_path / "c.parquet")
    docs, _ = read(DomainSource((str(tmp_path / "c.parquet"),), text_field="body"))
    assert docs == texts
    with pytest.raises(AutoscaleError, match="no column 'text'"):
        read(DomainSource((str(tmp_path / "c.parquet"),)))


def test_bad_jsonl_lines_are_skipped_counted_and_reported(tmp_path):
    good = fixture_texts("web")
    lines = [json.dumps({"text": t}) for t in good]
    lines[2:2] = [
        "{not json",
        json.dumps({"body": "no text field"}),
        json.dumps([1, 2]),
        json.dumps({"text": 5}),
    ]
    (tmp_path / "web.jsonl").write_text("\n".join(lines) + "\n")
    docs, stats = read(DomainSource((str(tmp_path / "web.jsonl"),)))
    assert docs == good and stats.skipped_records == 4
    store = prepare_store({"web": tmp_path / "web.jsonl"}, tmp_path / "s", vocab_size=300, val_tokens=2048)
    assert store.stats()[0].skipped_records == 4
    assert store.problems() == ["domain 'web': 4 records skipped (not JSON or no text field)"]


def test_a_jsonl_file_with_no_usable_line_is_an_empty_domain(tmp_path):
    (tmp_path / "bad.jsonl").write_text("{oops\n" + json.dumps({"body": "x"}) + "\n")
    with pytest.raises(AutoscaleError, match=r"'qa' is empty.*2 records skipped"):
        prepare_store({"qa": tmp_path / "bad.jsonl"}, tmp_path / "s", vocab_size=300)


def test_undecodable_bytes_are_replaced_counted_and_reported(tmp_path):
    texts = fixture_texts("encyclopedia")
    for i, t in enumerate(texts):
        data = t.encode()
        if i == 3:
            data = data[:50] + b"\xff\xfe" + data[50:] + b"\xc3"  # two bad bytes, one cut sequence
        (tmp_path / f"{i:02d}.txt").write_bytes(data)
    docs, stats = read(DomainSource((str(tmp_path),)))
    assert stats.decode_errors == 3
    assert docs[3].count("\ufffd") >= 2 and docs[3].startswith(texts[3][:50])
    store = prepare_store({"enc": tmp_path}, tmp_path.parent / "s", vocab_size=300, val_tokens=2048)
    assert store.problems() == ["domain 'enc': 3 undecodable bytes replaced by U+FFFD"]


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (["nowhere/at/all.txt"], "path not found"),
        (["*.nothing"], "matches no"),
        (["data.csv"], "unsupported file"),
        (["emptydir"], "holds no .txt"),
    ],
)
def test_unusable_paths_are_refused(tmp_path, monkeypatch, paths, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("a,b\n")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(AutoscaleError, match=message):
        resolve_inputs("d", DomainSource(tuple(paths)))


def test_hugging_face_datasets_are_read_when_the_optional_package_is_there(tmp_path):
    texts = fixture_texts("news")[:3]
    saved = tmp_path / "ds"
    try:
        import datasets
    except ImportError:
        saved.mkdir()
        (saved / "dataset_dict.json").write_text('{"splits": ["train"]}')
        with pytest.raises(AutoscaleError, match="optional 'datasets' package"):
            read(DomainSource((str(saved),)))
        with pytest.raises(AutoscaleError, match="optional 'datasets' package"):
            read(DomainSource(("hf:wikitext:train",)))
    else:
        datasets.Dataset.from_dict({"text": texts}).save_to_disk(str(saved))
        assert read(DomainSource((str(saved),)))[0] == texts
        assert read(DomainSource((f"hf:{saved}",)))[0] == texts
        with pytest.raises(AutoscaleError, match=r"hf:.*has no column 'content' \(columns: \['text'\]\)"):
            read(DomainSource((f"hf:{saved}",), text_field="content"))


@pytest.mark.parametrize("layout", ["save_to_disk", "parquet files"])
def test_a_changed_hugging_face_dataset_is_tokenised_again(tmp_path, layout, monkeypatch):
    import datasets

    folder = tmp_path / "news"
    cache = tmp_path / "hf-cache"  # the user's datasets cache: a local folder leaves nothing in it
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    temp = tmp_path / "tmp"  # ours is a temporary folder, removed after reading; one a killed read left goes too
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (temp / f"autoscale-hf-{int(dead.stdout)}-x" / "lock").mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))

    def save(docs: list[str]) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        ds = datasets.Dataset.from_dict({"text": docs})
        if layout == "save_to_disk":
            ds.save_to_disk(str(folder))  # read with load_from_disk
        else:
            folder.mkdir()
            ds.to_parquet(str(folder / "train.parquet"))  # read with load_dataset(folder)

    tokenizer = prepare_store({"web": FIXTURE / "web.jsonl"}, tmp_path / "t", vocab_size=300, val_tokens=1024)
    sources = {"web": FIXTURE / "web.jsonl", "news": f"hf:{folder}"}

    def prepare() -> tuple[TokenStore, list[str]]:
        lines: list[str] = []
        out = tmp_path / "store"
        store = prepare_store(
            sources, out, tokenizer=tokenizer.tokenizer_path, val_tokens=1024, progress=lines.append
        )
        return store, lines

    texts = fixture_texts("news")
    save(texts)
    prepare()
    _, lines = prepare()
    assert "news: unchanged, reused" in lines
    save(texts[:-1] + ["A later address to the Congress, sent after the first prepare. " * 30])
    store, lines = prepare()
    assert "news: unchanged, reused" not in lines and "web: unchanged, reused" in lines
    news = store.tokenizer().decode(store.train_tokens("news").tolist() + store.val_tokens("news").tolist())
    assert "sent after the first prepare" in news
    assert not cache.exists() or not any(cache.iterdir())
    assert not any(temp.iterdir())


def test_a_hub_dataset_is_fingerprinted_by_its_revision(monkeypatch):
    import datasets

    revision = {"hash": "0123abc"}  # the commit `datasets` resolves for the dataset

    class Builder:
        @property
        def hash(self) -> str:
            return revision["hash"]

    monkeypatch.setattr(datasets, "load_dataset_builder", lambda name: Builder())
    inputs = ["hf:someone/corpus:train"]
    first = hash_inputs(inputs, "text")
    assert hash_inputs(inputs, "text") == first
    revision["hash"] = "4567def"  # a new commit on the hub
    assert hash_inputs(inputs, "text") != first

    def offline(name: str):
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset_builder", offline)
    with pytest.raises(AutoscaleError, match="cannot tell which revision.*Couldn't reach 'someone/corpus'"):
        hash_inputs(inputs, "text")


def test_bad_domain_names_and_sources(tmp_path):
    with pytest.raises(AutoscaleError, match="bad domain name"):
        prepare_store({"../up": FIXTURE / "web.jsonl"}, tmp_path / "s")
    with pytest.raises(AutoscaleError, match="no domains"):
        prepare_store({}, tmp_path / "s")
    with pytest.raises(AutoscaleError, match="path or a non-empty list"):
        prepare_store({"web": 3}, tmp_path / "s")


def test_email_addresses_are_masked():
    text = "Write to jane.doe+list@mail.example.org or <bob@ilug.ie>; not to @handles or a@b."
    assert mask_emails(text) == "Write to [email] or <[email]>; not to @handles or a@b."
