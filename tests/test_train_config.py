"""Bad input to the trainer: one-line AutoscaleErrors naming the key, never a traceback or a
half-written run folder; and the `autoscale train` command end to end."""

from __future__ import annotations

import json

import pytest
import yaml

from autoscale.cli import main
from autoscale.errors import AutoscaleError
from autoscale.train import ProxyConfig, read_metrics, train_run
from train_fixtures import tiny_config, uniform

pytest_plugins = ["train_fixtures"]  # the session-wide fixture_store


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"model": {"d_model": 100, "n_head": 3}}, r"model.d_model \(100\) must be divisible by model.n_head \(3\)"),
        ({"model": {"seq_len": 256, "context": 128}}, r"model.seq_len \(256\) exceeds model.context \(128\)"),
        ({"model": {"kind": "hf"}}, "model.hf_config is required"),
        ({"model": {"kind": "gpt"}}, "model.kind"),
        ({"model": {"kind": "encoder", "objective": "causal"}}, "does not fit model.kind"),
        ({"train": {"lr": -1}}, "train.lr"),
        ({"train": {"device": "tpu"}}, "train.device"),
        ({"train": {"sampler": "random"}}, "train.sampler"),
        ({"train": {"batch_sise": 8}}, "unknown setting 'train.batch_sise'"),
        ({"eval": {"points": 0}}, "eval.points"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_bad_config_values_are_one_line_errors(settings, message):
    with pytest.raises(AutoscaleError, match=message) as err:
        ProxyConfig.from_dict(settings)
    assert "\n" not in str(err.value)


def test_yaml_config_and_relative_store_path(tmp_path):
    (tmp_path / "proxy.yaml").write_text("store: data/store\nmodel: {n_layer: 2, d_model: 64, n_head: 2}\n")
    config = ProxyConfig.from_yaml(tmp_path / "proxy.yaml")
    assert config.store == tmp_path / "data" / "store" and config.model.n_layer == 2
    assert config.replace(train={"lr": 1e-3}).train.lr == 1e-3 and config.train.lr == 3e-3
    (tmp_path / "bad.yaml").write_text("model: {n_layer: [\n")
    with pytest.raises(AutoscaleError, match="malformed YAML at line"):
        ProxyConfig.from_yaml(tmp_path / "bad.yaml")
    with pytest.raises(AutoscaleError, match="does not exist"):
        ProxyConfig.from_yaml(tmp_path / "missing.yaml")


def test_budget_below_one_global_batch(fixture_store, tmp_path):
    config = tiny_config(train={"batch_size": 8, "grad_accum": 2})
    with pytest.raises(AutoscaleError, match="smaller than one batch") as err:
        train_run(fixture_store, {"web": 64 * 15}, config, tmp_path)  # 15 sequences < 16
    assert "\n" not in str(err.value)
    assert not (tmp_path / "metrics.json").exists()


def test_bad_mixtures_and_stores(fixture_store, tmp_path):
    with pytest.raises(AutoscaleError, match="'wiki' is not in the token store"):
        train_run(fixture_store, {"web": 4000, "wiki": 4000}, tiny_config(), tmp_path / "a")
    with pytest.raises(AutoscaleError, match="eval.domains: 'wiki' is not in the token store"):
        train_run(fixture_store, {"web": 4000}, tiny_config(eval={"domains": ["wiki"]}), tmp_path / "a")
    with pytest.raises(AutoscaleError, match="no sequence"):
        train_run(fixture_store, {"web": 0.0}, tiny_config(), tmp_path / "b")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AutoscaleError, match="no token store"):
        train_run(tmp_path / "empty", {"web": 4000}, tiny_config(), tmp_path / "c")
    assert not any((tmp_path / d).exists() and any((tmp_path / d).iterdir()) for d in "abc")


def test_hf_shapes_are_checked(fixture_store, tmp_path):
    gpt2 = {"model_type": "gpt2", "n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 32}
    with pytest.raises(AutoscaleError, match=r"model.seq_len \(64\) exceeds the HF config's n_positions \(32\)"):
        train_run(fixture_store, uniform(2000), tiny_config(model={"kind": "hf", "hf_config": gpt2}), tmp_path)
    small_vocab = {**gpt2, "n_positions": 64, "vocab_size": 100}
    with pytest.raises(AutoscaleError, match="vocab_size"):
        train_run(fixture_store, uniform(2000), tiny_config(model={"kind": "hf", "hf_config": small_vocab}), tmp_path)
    with pytest.raises(AutoscaleError, match="model_type"):
        train_run(fixture_store, uniform(2000), tiny_config(model={"kind": "hf", "hf_config": {"n_layer": 1}}), tmp_path)
    with pytest.raises(AutoscaleError, match="never downloaded"):
        train_run(fixture_store, uniform(2000), tiny_config(model={"kind": "hf", "hf_config": "gpt2"}), tmp_path)


def test_train_command_end_to_end(fixture_store, tmp_path, capsys):
    config = tmp_path / "proxy.yaml"
    config.write_text(yaml.safe_dump(tiny_config(fixture_store).model_dump(mode="json")))
    mixture = tmp_path / "mixture.json"
    mixture.write_text(json.dumps({"tokens": {"web": 3, "code": 1}}))  # only the weights matter with --budget
    with pytest.raises(SystemExit) as code:
        main(["train", "--mixture", str(mixture), "--budget", "8k", "--config", str(config), "--out", str(tmp_path / "run")])
    assert code.value.code == 0
    out = capsys.readouterr().out
    assert "completed" in out and "web" in out and "code" in out
    metrics = read_metrics(tmp_path / "run" / "metrics.json")
    assert metrics.tokens_per_domain == {"web": 6016, "code": 1984}  # round(6000/64)*64, round(2000/64)*64
    assert set(metrics.final) == {"web", "news", "code", "books", "encyclopedia"}  # every validation domain


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "lots"], "--budget: expected a number of tokens"),
        (["--budget", "-5"], "--budget: must be a positive, finite number"),
        (["--store", "{tmp}/nowhere"], "no token store"),
        ([], "no token store: give --store"),
    ],
)
def test_train_command_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    mixture = tmp_path / "mixture.json"
    mixture.write_text(json.dumps({"tokens": {"web": 4000}}))
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    with pytest.raises(SystemExit) as code:
        main(["train", "--mixture", str(mixture), "--out", str(tmp_path / "run"), *args])
    assert code.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "run" / "metrics.json").exists()
