"""`autoscale data prepare|stats|fetch-demo` through the CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoscale.cli import main
from autoscale.data import TokenStore

FIXTURE = Path(__file__).parent / "fixtures" / "corpus"


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
