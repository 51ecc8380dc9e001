"""Training proxies on the real fixture corpus: learning, exact tokens, determinism, divergence,
masked LMs and Hugging Face models. (Resume after SIGKILL and DDP: test_train_resume_ddp.py.)"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from autoscale.data.sampler import SAMPLER_VERSION
from autoscale.errors import AutoscaleError
from autoscale.train import loop, read_metrics, train_run
from autoscale.train.checkpoint import CHECKPOINT, load_checkpoint
from autoscale.train.evaluate import build_eval_set, evaluate
from autoscale.train.loop import eval_steps, lr_at, run_fingerprint
from autoscale.train.models import build_model, count_params
from train_fixtures import DOMAINS, tiny_config, uniform

pytest_plugins = ["train_fixtures"]  # the session-wide fixture_store


def test_decoder_proxy_learns_every_domain(fixture_store, tmp_path):
    seen = []
    metrics = train_run(
        fixture_store, uniform(16_000), tiny_config(), tmp_path, progress=lambda *args: seen.append(args)
    )
    assert metrics.status == "completed" and metrics.usable
    start, end = metrics.curve[0], metrics.curve[-1]
    assert start.step == 0 and start.tokens == 0
    for domain in DOMAINS:
        # Untrained: about ln(V) nats per token; trained: clearly below where it started.
        assert start.eval[domain].loss == pytest.approx(math.log(512), abs=0.1)
        assert end.eval[domain].loss < start.eval[domain].loss - 0.5
        assert metrics.final[domain].perplexity == pytest.approx(math.exp(metrics.final[domain].loss))
    # Exact quotas: round(16000 / 64) = 250 sequences of 64 tokens per domain, all trained.
    assert metrics.tokens_per_domain == {d: 250 * 64 for d in DOMAINS}
    assert end.tokens == 5 * 250 * 64
    assert metrics.extra["steps"] == math.ceil(5 * 250 / 8) == end.step
    assert len(metrics.curve) == 5  # start + eval.points
    assert seen[-1][:3] == (end.step, end.step, end.tokens)
    # The file on disk is the same result, valid under the published schema; no checkpoint left.
    assert read_metrics(tmp_path / "metrics.json") == metrics
    assert not (tmp_path / CHECKPOINT).exists()


def test_same_seed_same_numbers_other_seed_other_numbers(fixture_store, tmp_path):
    mix = uniform(4_000)
    a = train_run(fixture_store, mix, tiny_config(), tmp_path / "a")
    b = train_run(fixture_store, mix, tiny_config(), tmp_path / "b")
    c = train_run(fixture_store, mix, tiny_config(train={"seed": 1}), tmp_path / "c")
    d = train_run(fixture_store, mix, tiny_config(train={"sampler": "shuffled"}), tmp_path / "d")
    assert a.curve == b.curve and a.final == b.final  # bit-identical on CPU
    assert a.final != c.final
    assert a.final != d.final and a.curve[0] == d.curve[0]  # same model, other data order


def test_grad_accumulation_equals_one_big_batch(fixture_store, tmp_path):
    mix = uniform(4_000)
    big = train_run(fixture_store, mix, tiny_config(train={"batch_size": 8}), tmp_path / "big")
    acc = train_run(fixture_store, mix, tiny_config(train={"batch_size": 2, "grad_accum": 4}), tmp_path / "acc")
    for p, q in zip(big.curve, acc.curve, strict=True):
        assert p.step == q.step
        for d in DOMAINS:
            assert q.eval[d].loss == pytest.approx(p.eval[d].loss, abs=1e-5)


def test_finished_run_is_returned_not_retrained_and_other_runs_are_refused(fixture_store, tmp_path):
    mix = uniform(2_000)
    first = train_run(fixture_store, mix, tiny_config(), tmp_path)
    calls = []
    again = train_run(fixture_store, mix, tiny_config(), tmp_path, progress=lambda *a: calls.append(a))
    assert again == first and calls == []
    with pytest.raises(AutoscaleError, match="different run"):
        train_run(fixture_store, mix, tiny_config(train={"lr": 1e-3}), tmp_path)
    with pytest.raises(AutoscaleError, match="different run"):
        train_run(fixture_store, mix, tiny_config(train={"sampler": "shuffled"}), tmp_path)


def test_run_fingerprint_names_the_sampler_order_and_version(monkeypatch):
    # A checkpoint or metrics.json is reused only by the same run: another sampler order, or a
    # sampler that yields other sequences (a new SAMPLER_VERSION), is another run.
    config, mix = tiny_config(), uniform(2_000)
    key = run_fingerprint(config, mix, "store-hash", 8)
    assert run_fingerprint(tiny_config(), mix, "store-hash", 8) == key
    assert run_fingerprint(tiny_config(train={"sampler": "shuffled"}), mix, "store-hash", 8) != key
    monkeypatch.setattr(loop, "SAMPLER_VERSION", SAMPLER_VERSION + 1)
    assert run_fingerprint(config, mix, "store-hash", 8) != key


def test_evaluation_on_chosen_domains(fixture_store, tmp_path):
    config = tiny_config(eval={"domains": ["code", "web"], "points": 1})
    metrics = train_run(fixture_store, {"web": 2_000, "books": 2_000}, config, tmp_path)
    assert list(metrics.final) == ["code", "web"]
    assert metrics.tokens_per_domain == {"web": 31 * 64, "books": 31 * 64}


def test_nan_loss_marks_run_diverged(fixture_store, tmp_path):
    # A learning rate of 1e4 without clipping blows the weights up within a few steps.
    metrics = train_run(fixture_store, uniform(8_000), tiny_config(train={"lr": 1e4, "clip": None}), tmp_path)
    assert metrics.status == "diverged" and not metrics.usable
    assert metrics.diverged_at_step is not None and 1 <= metrics.diverged_at_step < metrics.extra["steps"]
    assert metrics.final == {}
    # tokens_per_domain counts what was trained before the stop, not what was asked for.
    assert sum(metrics.tokens_per_domain.values()) == metrics.diverged_at_step * 8 * 64
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["status"] == "diverged" and on_disk["diverged_at_step"] == metrics.diverged_at_step


def test_masked_lm_learns_and_evaluation_is_repeatable(fixture_store, tmp_path):
    config = tiny_config(model={"kind": "encoder"}, train={"lr": 1e-2, "keep_checkpoint": True})
    metrics = train_run(fixture_store, uniform(16_000), config, tmp_path)
    assert metrics.extra["objective"] == "masked"
    start, end = metrics.curve[0], metrics.curve[-1]
    for domain in DOMAINS:
        assert end.eval[domain].loss < start.eval[domain].loss - 0.3
    assert end.train_loss < metrics.curve[1].train_loss

    # The final model, reloaded from its checkpoint, scores the fixed seeded masks identically
    # every time, and exactly as the run reported.
    state = load_checkpoint(tmp_path / CHECKPOINT)
    assert state["step"] == end.step
    model = build_model(config.model, fixture_store.vocab_size)
    model.load_state_dict(state["model"])
    from autoscale.data.sampler import validation_batches

    batches = {d: list(validation_batches(fixture_store, d, 64, 32, 2048)) for d in DOMAINS}
    eval_set = build_eval_set(batches, "masked", fixture_store.vocab_size, 0.15, seed=0)
    first = evaluate(model, eval_set, torch.device("cpu"))
    second = evaluate(model, build_eval_set(batches, "masked", fixture_store.vocab_size, 0.15, seed=0),
                      torch.device("cpu"))
    assert first == second == dict(metrics.final)
    other_masks = evaluate(model, build_eval_set(batches, "masked", fixture_store.vocab_size, 0.15, seed=1),
                           torch.device("cpu"))
    assert other_masks != first


def test_hugging_face_gpt2_from_config_trains(fixture_store, tmp_path):
    hf = {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 2, "n_positions": 64}
    config = tiny_config(model={"kind": "hf", "hf_config": hf}, eval={"points": 2})
    metrics = train_run(fixture_store, uniform(4_000), config, tmp_path)
    assert metrics.usable and metrics.extra["objective"] == "causal"
    # Same shape as the built-in decoder, so the same parameter count (GPT-2 layout, tied head).
    assert metrics.params == count_params(build_model(tiny_config().model, 512))
    for d in DOMAINS:
        assert metrics.final[d].loss < metrics.curve[0].eval[d].loss - 0.3


def test_hugging_face_bert_masked_lm_from_a_local_config_file(fixture_store, tmp_path):
    config_json = tmp_path / "bert" / "config.json"
    config_json.parent.mkdir()
    config_json.write_text(json.dumps({
        "model_type": "bert", "architectures": ["BertForMaskedLM"], "num_hidden_layers": 2,
        "hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 128, "max_position_embeddings": 64,
    }))
    config = tiny_config(model={"kind": "hf", "hf_config": str(config_json.parent)}, train={"lr": 1e-2},
                         eval={"points": 2})
    metrics = train_run(fixture_store, uniform(4_000), config, tmp_path / "run")
    assert metrics.usable and metrics.extra["objective"] == "masked"
    for d in DOMAINS:
        assert metrics.final[d].loss < metrics.curve[0].eval[d].loss - 0.1


def test_schedule_warms_up_then_decays_to_the_floor():
    config = tiny_config(train={"lr": 1e-3, "warmup": 0.1, "min_lr_ratio": 0.1}).train
    lrs = np.array([lr_at(s, 100, config) for s in range(100)])
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert np.all(np.diff(lrs[:10]) > 0) and np.all(np.diff(lrs[10:]) < 0)
    assert lrs[-1] == pytest.approx(1e-4, rel=0.01)
    linear = tiny_config(train={"schedule": "linear", "warmup": 0.0}).train
    assert lr_at(50, 100, linear) == pytest.approx(3e-3 - 0.5 * (3e-3 - 3e-4))
    assert eval_steps(7, 10) == [0, 1, 2, 3, 4, 5, 6, 7]
    assert eval_steps(100, 4) == [0, 25, 50, 75, 100]


def test_no_weight_decay_on_norms_and_biases():
    from autoscale.train.loop import make_optimizer

    model = build_model(tiny_config().model, 512)
    opt = make_optimizer(model, tiny_config().train, torch.device("cpu"))
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decayed["params"]) and all(p.dim() == 1 for p in plain["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    assert any("ln" in names[id(p)] for p in plain["params"]) and any("bias" in names[id(p)] for p in plain["params"])
