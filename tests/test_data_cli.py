"""`autoscale data prepare|stats|fetch-demo` through the CLI entry point."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from autoscale.cli import main
from autoscale.cli.data import _parse_domain
from autoscale.data import TokenStore

FIXTURE = Path(__file__).parent / "fixtures" / "corpus"
TRAINER = Path(__file__).parent / "fixtures" / "simworld_trainer.py"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_prepare_then_stats(tmp_path, capsys):
    store = tmp_path / "store"
    code, out, err = run(
        capsys,
        "data", "prepare", str(store),
        "--domain", f"web={FIXTURE / 'web.jsonl'}",
        "--domain", f"prose={FIXTURE / 'books.jsonl'},{FIXTURE / 'news.jsonl'}",
        "--vocab-size", "400", "--val-tokens", "2048",
    )  # fmt: skip
    assert code == 0, err
    assert "token store ready" in out and "web: 11 documents" in out
    opened = TokenStore.open(store)
    assert opened.domains == ("web", "prose") and opened.vocab_size == 400

    code, out, _ = run(capsys, "data", "stats", str(store))
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert rows["web"][1] == "11" and int(rows["prose"][1]) == 17 + 17
    assert int(rows["web"][2]) == opened.unique_train_tokens("web")

    code, out, _ = run(capsys, "data", "stats", str(store), "--json")
    parsed = json.loads(out)
    assert parsed["manifest_hash"] == opened.manifest_hash
    assert [d["domain"] for d in parsed["domains"]] == ["web", "prose"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "prepare", "{tmp}/s"], "nothing to prepare"),
        (["data", "prepare", "{tmp}/s", "--domain", "web"], "NAME=PATH"),
        (["data", "prepare", "{tmp}/s", "--domain", "web={tmp}/none.txt"], "path not found"),
        (["data", "stats", "{tmp}"], "no token store"),
        (["data", "fetch-demo", "--dir", "{tmp}/d", "--max-mb-per-domain", "0"], "must be positive"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, capsys, args, message):
    code, out, err = run(capsys, *[a.format(tmp=tmp_path) for a in args])
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert "Traceback" not in out + err


def texts(domain: str) -> list[str]:
    return [json.loads(line)["text"] for line in (FIXTURE / f"{domain}.jsonl").read_text().splitlines()]


def test_a_domain_names_its_own_text_field(tmp_path, capsys):
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    web = texts("web")
    for i in range(2):
        pq.write_table(
            pa.table({"content": web[i::2], "url": ["u"] * len(web[i::2])}), crawl / f"{i}.parquet"
        )
    store = tmp_path / "store"
    common = ["--domain", f"books={FIXTURE / 'books.jsonl'}", "--vocab-size", "300", "--val-tokens", "1024"]
    code, _, err = run(
        capsys, "data", "prepare", str(store), "--domain", f"web={crawl}/*.parquet:content", *common
    )
    assert code == 0, err
    manifest = TokenStore.open(store).manifest["domains"]
    assert manifest["web"]["text_field"] == "content" and manifest["web"]["documents"] == len(web)
    assert manifest["books"]["text_field"] == "text"  # the default for a domain without ':FIELD'

    code, out, err = run(
        capsys, "data", "prepare", str(store), "--domain", f"web={crawl}/*.parquet:body", *common
    )
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in out + err
    assert err.startswith("error: parquet file") and "no column 'body' (columns: ['content', 'url'])" in err


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("web=crawl/*.parquet:content", ("web", ["crawl/*.parquet"], "content")),
        ("web=a.jsonl,b.jsonl:body", ("web", ["a.jsonl", "b.jsonl"], "body")),
        ("web=crawl/", ("web", ["crawl/"], None)),
        ("web=data/2024-01-01T10:00/part.jsonl", ("web", ["data/2024-01-01T10:00/part.jsonl"], None)),
        ("web=hf:someone/c4:train", ("web", ["hf:someone/c4:train"], None)),
        ("web=hf:someone/c4:train:content", ("web", ["hf:someone/c4:train"], "content")),
    ],
)
def test_domain_specs_with_and_without_a_text_field(spec, parsed):
    assert _parse_domain(spec) == parsed


def experiment(root: Path, data: dict) -> Path:
    """An experiment on a corpus folder, trained by the simulated world's stand-in trainer."""
    config = {
        "data": {"store": "store", "sources": "corpus", "vocab_size": 300, "val_tokens": 1024, **data},
        "ddo": {"budgets": [8000, 16000]},
        "target": {"budget": 64000, "validate": False},
        "executor": {
            "kind": "command",
            "command": [sys.executable, str(TRAINER), "--world-seed", "3", "--mixture", "{mixture_json}",
                        "--seed", "{seed}", "--out", "{run_dir}", "--domains", "web,code"],
            "trainer_id": "simworld-v1",
        },
    }  # fmt: skip
    path = root / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_experiment_yaml_gives_a_domain_its_text_field(tmp_path, capsys, simworld_in_process):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pq.write_table(pa.table({"content": texts("web")}), corpus / "web.parquet")
    shutil.copy(FIXTURE / "code.jsonl", corpus / "code.jsonl")

    code, _, err = run(
        capsys, "run", str(experiment(tmp_path, {"text_fields": {"web": "content"}})), "--quiet"
    )
    assert code == 0, err
    manifest = TokenStore.open(tmp_path / "store").manifest["domains"]
    assert manifest["web"]["text_field"] == "content" and manifest["web"]["documents"] == len(texts("web"))
    assert manifest["code"]["text_field"] == "text"

    for fields, message in [
        ({"web": "body"}, "no column 'body'"),
        ({"wbe": "content"}, "data.text_fields: unknown domain 'wbe' (domains: code, web)"),
        ({"web": " "}, "empty field name"),
    ]:
        code, out, err = run(capsys, "run", str(experiment(tmp_path, {"text_fields": fields})), "--quiet")
        assert code == 2 and err.count("\n") == 1 and message in err, err
