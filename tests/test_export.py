"""Exports to trainer configs, each read back to the same weights."""

import json

import numpy as np
import pytest
import yaml

from autoscale.cli import main
from autoscale.data.store import prepare_store
from autoscale.errors import AutoscaleError
from autoscale.export import FORMATS, export_mixture, hf_probabilities, read_export
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


@pytest.mark.filterwarnings("ignore")  # megatron.core's import: "Apex is not installed", deprecations
def test_megatron_core_reads_the_file_as_megatron_lm_reads_its_data_path():
    # Megatron-LM splits `--data-path` (or the file of `--data-args-path`) on whitespace, parses it with
    # megatron.core's get_blend_from_list, and its dataset builder normalises the weights
    from megatron.core.datasets.utils import get_blend_from_list, normalize

    prefixes, weights = get_blend_from_list(export_mixture(MIX, "megatron", PATHS).split())
    assert prefixes == [PATHS.get(d, d) for d in MIX.domains]
    assert normalize(weights) == pytest.approx([MIX.weights[d] for d in MIX.domains], abs=1e-12)


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


def _refused(tmp_path, capsys, src, *args) -> str:
    """Run export to --out; assert exit 2, one error line, nothing written; return the line."""
    out = tmp_path / "out.txt"
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(src), "--out", str(out), *args])
    captured = capsys.readouterr()
    assert exit_.value.code == 2 and captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]  # no output, no temporary
    return captured.err


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_refuses_a_mixture_whose_total_overflows(tmp_path, capsys, fmt):
    # each count is finite, their sum is not: olmo-core crashed, hf and json wrote Infinity, megatron 0.0 weights
    src = tmp_path / "mix.json"
    src.write_text('{"tokens": {"web": 1e308, "code": 1e308}}')
    assert "a mixture's total must be finite" in _refused(tmp_path, capsys, src, "--format", fmt)


@pytest.mark.parametrize("value, message", [
    ("-5", "must be a positive, finite number of tokens"), ("0", "must be a positive, finite number of tokens"),
    ("inf", "must be a positive, finite number of tokens"), ("nan", "must be a positive, finite number of tokens"),
    ("1.5", "must be a whole number of tokens"), ("4q", "expected a number of tokens"),
])
def test_cli_refuses_a_bad_global_batch(tmp_path, capsys, value, message):
    src = tmp_path / "mix.json"
    src.write_text(MIX.to_json())
    err = _refused(tmp_path, capsys, src, "--format", "olmo-core", f"--global-batch-tokens={value}")
    assert f"--global-batch-tokens: {message}" in err


@pytest.mark.parametrize("batch", [-5, 0, 1.5, float("inf"), float("nan"), True, "4M"])
def test_export_refuses_a_bad_global_batch(batch):
    with pytest.raises(AutoscaleError, match="global batch must be a positive whole number of tokens"):
        export_mixture(MIX, "olmo-core", global_batch_tokens=batch)


# --- hf: per-example probabilities that realise token shares ---------------------------------------

HF_WEIGHTS = {"short": 0.5, "medium": 0.3, "long": 0.2}
HF_MEAN_TOKENS = {"short": 10, "medium": 50, "long": 200}


def _documents(seed: int, tokens_per_domain: int = 600_000):
    """Three in-memory datasets of 600k tokens each whose documents have different token lengths
    (mean 10, 50, 200: 60k, 12k and 3k documents), and each one's measured mean tokens per document."""
    import datasets  # the test extra installs it: the real library, not a stand-in
    rng = np.random.default_rng(seed)
    out, means = {}, {}
    for i, (name, mean) in enumerate(HF_MEAN_TOKENS.items()):
        n_docs = tokens_per_domain // mean
        lengths = rng.integers(mean // 2, mean + mean // 2 + 1, size=n_docs)  # mean `mean` tokens
        out[name] = datasets.Dataset.from_dict({"domain": np.full(n_docs, i), "n_tokens": lengths})
        means[name] = float(lengths.mean())
    return out, means


def _realised_token_shares(config: dict, by_name: dict) -> dict[str, float]:
    """Interleave with the exported config through the real library; each domain's share of tokens."""
    from datasets import interleave_datasets

    stream = interleave_datasets(
        [by_name[p] for p in config["datasets"]],
        probabilities=config["probabilities"],
        seed=config["seed"],
        stopping_strategy=config["stopping_strategy"],
    )
    table = stream.with_format("arrow")[:]  # one Arrow take; row-wise column access is slow
    domain, n_tokens = table.column("domain").to_numpy(), table.column("n_tokens").to_numpy()
    tokens = np.bincount(domain, weights=n_tokens, minlength=3)
    return dict(zip(HF_WEIGHTS, tokens / tokens.sum(), strict=True))


@pytest.mark.parametrize("strategy", ["first_exhausted", "all_exhausted"])
def test_hf_converted_probabilities_realise_token_shares_in_interleave_datasets(strategy):
    by_name, mean_tokens = _documents(seed=1)
    mixture = Mixture.from_weights(HF_WEIGHTS, 1e6)

    converted = json.loads(export_mixture(mixture, "hf", doc_tokens=mean_tokens, stopping_strategy=strategy, seed=3))
    assert converted["stopping_strategy"] == strategy
    assert converted["token_weights"] == pytest.approx(list(HF_WEIGHTS.values()))
    shares = _realised_token_shares(converted, by_name)
    for d, w in HF_WEIGHTS.items():
        assert shares[d] == pytest.approx(w, abs=0.02), (d, shares)

    # The same export without the lengths: probabilities = weights, and the long documents take
    # two thirds of the tokens instead of a fifth.
    plain = json.loads(export_mixture(mixture, "hf", stopping_strategy=strategy, seed=3))
    assert plain["probabilities"] == pytest.approx(list(HF_WEIGHTS.values()))
    assert plain["mean_doc_tokens"] is None and "per example" in plain["note"]
    off = _realised_token_shares(plain, by_name)
    assert off["long"] > 0.6 and off["short"] < 0.1, off


def test_hf_probabilities_are_weight_over_mean_length():
    probs = hf_probabilities({"a": 0.5, "b": 0.5}, {"a": 100, "b": 300})
    assert probs == pytest.approx({"a": 0.75, "b": 0.25})
    with pytest.raises(AutoscaleError, match="missing for domain 'b'"):
        hf_probabilities({"a": 0.5, "b": 0.5}, {"a": 100})
    with pytest.raises(AutoscaleError, match="positive"):
        hf_probabilities({"a": 0.5, "b": 0.5}, {"a": 100, "b": 0})


def test_hf_converted_export_reads_back_the_token_weights():
    text = export_mixture(MIX, "hf", doc_tokens={d: 100.0 * (i + 1) for i, d in enumerate(MIX.domains)})
    back, _ = read_export(text, "hf")
    assert back.weights == pytest.approx(MIX.weights)
    assert back.budget == pytest.approx(MIX.budget)


def test_cli_hf_doc_tokens_by_hand(tmp_path, capsys):
    src = tmp_path / "mix.json"
    src.write_text(Mixture({"web": 1.0, "books": 1.0}).to_json())
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(src), "--format", "hf", "--doc-tokens", "web=500,books=2k",
              "--stopping-strategy", "all_exhausted"])
    assert exit_.value.code == 0
    captured = capsys.readouterr()
    config = json.loads(captured.out)
    assert config["mean_doc_tokens"] == [500.0, 2000.0]
    assert config["probabilities"] == pytest.approx([0.8, 0.2])
    assert config["stopping_strategy"] == "all_exhausted"
    assert "converted" in captured.err and "books=2000" in captured.err


def test_cli_hf_without_lengths_says_probabilities_are_per_example(tmp_path, capsys):
    src = tmp_path / "mix.json"
    src.write_text(MIX.to_json())
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(src), "--format", "hf"])
    assert exit_.value.code == 0
    captured = capsys.readouterr()
    config = json.loads(captured.out)
    assert config["stopping_strategy"] == "first_exhausted"  # the library's default; no oversampling
    assert config["probabilities"] == pytest.approx(list(MIX.weights.values()))
    assert "per example" in captured.err and "same mean length" in captured.err


def test_cli_hf_mean_lengths_from_a_token_store(tmp_path, capsys):
    # Short documents in one domain, long ones in the other; the store's manifest knows the
    # documents, and the export's mean is the train split's tokens per end-of-text token.
    words = "the quick brown fox jumps over a lazy dog again".split()
    for name, n_words in (("chat", 6), ("essays", 120)):
        lines = [json.dumps({"text": " ".join(words[(i + k) % 10] for k in range(n_words)) + f" {i}"})
                 for i in range(400)]
        (tmp_path / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    store = prepare_store({d: tmp_path / f"{d}.jsonl" for d in ("chat", "essays")}, tmp_path / "store",
                          vocab_size=300, val_tokens=1024)
    src = tmp_path / "mix.json"
    src.write_text(Mixture({"essays": 1.0, "chat": 1.0}).to_json())
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(src), "--format", "hf", "--store", str(store.path)])
    assert exit_.value.code == 0
    config = json.loads(capsys.readouterr().out)
    expected = []
    for d in ("essays", "chat"):
        train = np.asarray(store.train_tokens(d))
        expected.append(len(train) / int(np.sum(train == store.eot_id)))
    assert config["mean_doc_tokens"] == pytest.approx(expected)
    assert expected[0] > 5 * expected[1]
    assert config["probabilities"][1] > 5 * config["probabilities"][0]  # more chat documents for equal tokens


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "megatron", "--doc-tokens", "wiki=100"], "--format hf only"),
        (["--format", "hf", "--doc-tokens", "wiki=100", "--store", "/nowhere"], "not both"),
        (["--format", "hf", "--doc-tokens", "wiki=100"], "no mean length for domain 'common_crawl'"),
        (["--format", "hf", "--doc-tokens", "wiki=-3,github=1,books=1,common_crawl=1"], "positive"),
        (["--format", "hf", "--store", "/nowhere"], "no token store"),
        (["--format", "hf", "--stopping-strategy", "sometimes"], "sometimes"),
    ],
)
def test_cli_hf_bad_conversion_inputs(tmp_path, capsys, args, message):
    src = tmp_path / "mix.json"
    src.write_text(MIX.to_json())
    out = tmp_path / "out.json"
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(src), "--out", str(out), *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert not out.exists()


# -- export reads what autoscale writes ------------------------------------------------------------


@pytest.fixture(scope="module")
def experiment_folder(tmp_path_factory):
    """A finished 3-domain experiment with AutoScale and DML (the simulated world's trainer)."""
    from cli_helpers import run_cli, tiny_experiment
    from simworld_inprocess import simworld_in_process

    root = tmp_path_factory.mktemp("exp")
    path = tiny_experiment(root, "two", methods=["autoscale", "dml"],
                           dml={"budget": 4_000_000, "prior": "uniform", "runs": 5},
                           target={"budget": 16_000_000})
    with simworld_in_process():
        assert run_cli("run", str(path), "--quiet") == 0
    return root / "two"


def _exported(capsys, *args) -> Mixture:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["export", *args, "--format", "megatron"])
    out, err = capsys.readouterr()
    assert exit_.value.code == 0, err
    back, _ = read_export(out, "megatron")
    return back


@pytest.mark.parametrize("source", ["folder", "folder --method dml", "autoscale_target.json", "dml_target.json",
                                    "autoscale_4000000.json", "plain mixture", "old folder", "old target.json"])
def test_export_reads_every_mixture_autoscale_writes(experiment_folder, tmp_path, capsys, source):
    from pathlib import Path

    old = Path(__file__).parent / "fixtures" / "old-experiment"
    folder = experiment_folder
    record = {"folder": "autoscale_target.json", "folder --method dml": "dml_target.json", "old folder": None,
              "old target.json": None, "plain mixture": "autoscale_target.json"}.get(source, source)
    expected = json.loads((folder / record if record else old / "target.json").read_text())["mixture"]["weights"]
    if source == "plain mixture":  # what `fit --json` writes: the mixture itself
        (tmp_path / "mix.json").write_text(json.dumps(json.loads((folder / record).read_text())["mixture"]))
    args = {"folder": [str(folder)], "folder --method dml": [str(folder), "--method", "dml"],
            "plain mixture": [str(tmp_path / "mix.json")], "old folder": [str(old)],
            "old target.json": [str(old / "target.json")]}.get(source, [str(folder / source)])
    back = _exported(capsys, *args)
    assert dict(back.weights) == pytest.approx(expected, abs=1e-12)


def test_export_of_a_folder_names_the_methods_it_holds(experiment_folder, tmp_path, capsys):
    for args, message in [
        ([str(experiment_folder), "--method", "regmix"], "holds no mixture of method 'regmix' at the target "
                                                         "(methods with one: autoscale, dml)"),
        ([str(experiment_folder / "dml_target.json"), "--method", "dml"], "--method picks a mixture from an "
                                                                          "experiment folder"),
        ([str(tmp_path)], "holds no mixture of method 'autoscale' at the target (methods with one: none)"),
    ]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            main(["export", *args, "--format", "megatron"])
        out, err = capsys.readouterr()
        [line] = err.splitlines()
        assert exit_.value.code == 2 and out == "" and line.startswith("error: ") and message in line, err
