"""Exports to trainer configs, each read back to the same weights."""

import json

import pytest
import yaml

from autoscale.cli import main
from autoscale.export import FORMATS, export_mixture, read_export
from autoscale.mixture import Mixture

MIX = Mixture({"common_crawl": 2.32e9, "github": 0.286e9, "books": 1.819e9, "wiki": 1.684e9})
PATHS = {"common_crawl": "/data/cc_text_document", "wiki": "/data/wiki_text_document"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips_weights(fmt):
    text = export_mixture(MIX, fmt, PATHS)
    back, paths = read_export(text, fmt, budget=MIX.budget)
    assert list(back.weights.values()) == pytest.approx(list(MIX.weights.values()), abs=1e-12)
    assert back.budget == pytest.approx(MIX.budget)
    if fmt in ("olmo-core",):
        assert paths["common_crawl"] == "/data/cc_text_document"
        assert paths["github"] == "github"  # default location is the domain name


def test_megatron_is_weight_prefix_pairs():
    lines = export_mixture(MIX, "megatron", PATHS).splitlines()
    assert len(lines) == 4
    weight, prefix = lines[0].split()
    assert prefix == "/data/cc_text_document"
    assert float(weight) == pytest.approx(MIX.weights["common_crawl"])
    assert sum(float(line.split()[0]) for line in lines) == pytest.approx(1.0)


def test_olmo_core_source_mixture_fields():
    config = yaml.safe_load(export_mixture(MIX, "olmo-core", max_epochs=3))
    sources = config["source_list"]["sources"]
    assert [s["source_name"] for s in sources] == list(MIX.domains)
    assert sum(s["target_ratio"] for s in sources) == pytest.approx(1.0)
    assert {s["max_repetition_ratio"] for s in sources} == {3.0}
    assert config["requested_tokens"] == round(MIX.budget)


def test_hf_probabilities_follow_dataset_order():
    config = json.loads(export_mixture(MIX, "hf"))
    assert config["datasets"] == list(MIX.domains)
    assert config["probabilities"] == pytest.approx([MIX.weights[d] for d in MIX.domains])


def test_cli_writes_file(tmp_path, capsys):
    src = tmp_path / "mix.json"
    src.write_text(MIX.to_json())
    out = tmp_path / "mix.yaml"
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(src), "--format", "olmo-core", "--paths", "wiki=/w", "--out", str(out)])
    assert exit_.value.code == 0
    back, paths = read_export(out.read_text(), "olmo-core")
    assert paths["wiki"] == "/w"
    assert back.weights == pytest.approx(MIX.weights)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--paths", "nosuch=/x"], "unknown name 'nosuch'"),
        (["--paths", "wiki=/a,wiki=/b"], "given twice"),
        (["--paths", "wiki"], "expected name=value"),
    ],
)
def test_cli_bad_paths(tmp_path, capsys, args, message):
    src = tmp_path / "mix.json"
    src.write_text(MIX.to_json())
    out = tmp_path / "out.txt"
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(src), "--format", "megatron", "--out", str(out), *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("content, message", [("{", "malformed JSON"), ('{"weights": {}}', "no 'tokens'"), ("", "empty")])
def test_cli_bad_mixture_file(tmp_path, capsys, content, message):
    src = tmp_path / "mix.json"
    src.write_text(content)
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(src), "--format", "json"])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
