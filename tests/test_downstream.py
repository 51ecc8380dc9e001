"""Downstream evaluation through the real lm-evaluation-harness: a tiny decoder trained on the fixture
corpus beats a randomly initialised one of the same shape on autoscale's local task by more than the
harness's stderr; the second evaluation is served from the cache; bad input is one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lm_eval  # noqa: F401  (the `eval` extra: `make test` installs it; a missing one fails here)
import pytest
import torch
import yaml

from autoscale.data import prepare_store
from autoscale.errors import AutoscaleError
from autoscale.train import train_run
from autoscale.train.checkpoint import CHECKPOINT, save_checkpoint
from autoscale.train.config import ProxyConfig
from autoscale.train.downstream import evaluate_run
from autoscale.train.models import build_model
from cli_helpers import run_cli

CORPUS = Path(__file__).parent / "fixtures" / "corpus"
DOMAINS = ("web", "news", "code", "books", "encyclopedia")
TASK = "autoscale_wordcloze"


def _config(kind: str = "decoder", keep: bool = True) -> ProxyConfig:
    return ProxyConfig.from_dict({
        "model": {"kind": kind, "n_layer": 2, "d_model": 64, "n_head": 2, "seq_len": 64},
        "train": {"batch_size": 8, "lr": 3e-3, "threads": 1, "seed": 0, "keep_checkpoint": keep},
        "eval": {"points": 1, "max_tokens": 1024},
    })


# its tests share `runs`: built once, on one worker (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("test_downstream")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A byte-level store (a scrambled word has the same number of tokens as the word: an untrained
    model cannot tell them apart), a trained run and a random one of the same shape."""
    root = tmp_path_factory.mktemp("downstream")
    store = prepare_store({d: CORPUS / f"{d}.jsonl" for d in DOMAINS}, root / "store", vocab_size=257,
                          val_tokens=2048)
    train_run(store, {d: 40_000.0 for d in DOMAINS}, _config(), root / "trained")
    torch.manual_seed(0)
    config = _config().model
    model = build_model(config, store.vocab_size)
    save_checkpoint(root / "random" / CHECKPOINT, {"fingerprint": "random-init", "model": model.state_dict(),
                                                   "model_config": config.model_dump(mode="json"),
                                                   "vocab_size": store.vocab_size})
    return root, store


def test_a_trained_decoder_beats_a_random_one_by_more_than_the_stderr_and_is_cached(runs):
    root, store = runs
    trained = evaluate_run(root / "trained", store, [TASK])
    random = evaluate_run(root / "random", store, [TASK])
    t, r = trained["tasks"][TASK], random["tasks"][TASK]
    assert t["metric"] == "acc" and not trained["cached"]
    assert t["value"] - r["value"] > max(t["stderr"], r["stderr"]), (t, r)
    again = evaluate_run(root / "trained", store, [TASK])
    assert again["cached"] and again["tasks"] == trained["tasks"]
    assert len(list((root / "trained" / "downstream").glob("*.json"))) == 1
    limited = evaluate_run(root / "trained", store, [TASK], limit=10)  # another request, another entry
    assert not limited["cached"] and len(list((root / "trained" / "downstream").glob("*.json"))) == 2


def test_the_command_prints_the_scores(runs, capsys):
    root, store = runs
    assert run_cli("eval", str(root / "trained"), "--store", str(store.path), "--tasks", TASK) == 0
    out = capsys.readouterr().out
    assert f"{TASK}: acc 0." in out and "(cached)" in out


def test_bad_input_is_one_line_and_exit_2(runs, tmp_path, capsys):
    root, store = runs
    train_run(store, {d: 4_000.0 for d in DOMAINS}, _config(keep=False), tmp_path / "unkept")
    train_run(store, {d: 4_000.0 for d in DOMAINS}, _config("encoder"), tmp_path / "encoder")
    cases = {
        "unknown task": ([str(root / "trained"), "--tasks", "no_such_task"], "unknown task 'no_such_task'"),
        "no kept weights": ([str(tmp_path / "unkept"), "--tasks", TASK], "kept no weights"),
        "an encoder": ([str(tmp_path / "encoder"), "--tasks", TASK], "causal models only"),
        "no store": ([str(root / "trained"), "--tasks", TASK], "give its token store with --store"),
    }
    for case, (args, message) in cases.items():
        store_args = [] if case == "no store" else ["--store", str(store.path)]
        assert run_cli("eval", *args, *store_args) == 2, case
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, (case, err)


def test_a_damaged_checkpoint_or_cached_score_is_one_line_or_scored_again(runs, tmp_path, capsys):
    """Damaged model settings in a kept checkpoint: one line, nothing cached. A damaged cached score:
    scored again, and said so."""
    from autoscale.train.checkpoint import load_checkpoint

    root, store = runs
    state = load_checkpoint(root / "random" / CHECKPOINT)
    for case, change in (("a bad n_layer", {"n_layer": "x"}), ("a changed d_model", {"d_model": 32}),
                         ("no vocab_size", None)):
        run = tmp_path / case.replace(" ", "_")
        damaged = dict(state)
        if change is None:
            damaged.pop("vocab_size")
        else:
            damaged["model_config"] = {**state["model_config"], **change}
        save_checkpoint(run / CHECKPOINT, damaged)
        assert run_cli("eval", str(run), "--store", str(store.path), "--tasks", TASK) == 2, case
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "checkpoint" in err, (case, err)
        assert not (run / "downstream").exists(), case
    # 16 bytes changed in every tensor, the file still a valid torch file: its hash no longer matches
    flipped = tmp_path / "flipped"
    flipped.mkdir()
    raw = torch.load(root / "trained" / CHECKPOINT, map_location="cpu", weights_only=True)
    for t in raw["model"].values():
        t.view(-1)[:4] += 1.0
    torch.save(raw, flipped / CHECKPOINT)
    assert run_cli("eval", str(flipped), "--store", str(store.path), "--tasks", TASK) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "is damaged" in err and "\n" not in err, err
    assert not (flipped / "downstream").exists()  # no cached score
    with pytest.raises(AutoscaleError, match="is damaged"):  # nor is a run resumed from it
        train_run(store, {d: 40_000.0 for d in DOMAINS}, _config(), flipped)
    # a checkpoint written before the hash still loads, with a note
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    torch.save({k: v for k, v in state.items()}, legacy / CHECKPOINT)
    assert load_checkpoint(legacy / CHECKPOINT)["fingerprint"] == state["fingerprint"]
    assert "loaded unchecked" in capsys.readouterr().err
    first = evaluate_run(root / "random", store, [TASK], limit=5)
    cached = root / "random" / "downstream" / f"{first['key']}.json"
    cached.write_text("{not json")
    again = evaluate_run(root / "random", store, [TASK], limit=5)
    assert not again["cached"] and "damaged" in again["note"] and again["tasks"] == first["tasks"]
    assert evaluate_run(root / "random", store, [TASK], limit=5)["cached"]  # repaired


def test_an_unknown_task_in_the_config_is_refused_before_anything_trains(tmp_path, capsys):
    import yaml

    for tasks in (["no_such_task"], [""]):
        config = {
            "data": {"store": str(tmp_path / "store"), "sources": str(CORPUS), "domains": ["web", "code", "books"],
                     "vocab_size": 257, "val_tokens": 2048},
            "ddo": {"budgets": [6000, 12000]},
            "target": {"budget": 24000, "validate": True, "downstream": {"tasks": tasks}},
        }
        path = tmp_path / "down.yaml"
        path.write_text(yaml.safe_dump(config))
        assert run_cli("run", str(path), "--quiet") == 2, tasks
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and ("unknown task" in err or "non-empty" in err), err
        assert not list((tmp_path / "down").glob("runs/*")), tasks


def test_scoring_leaves_nothing_outside_the_run_folder(runs, tmp_path):
    """Our tasks' processed data and lock files stay in a temporary folder of ours, removed at exit;
    one a killed scoring left behind (its pid dead) is swept by the next."""
    import os

    root, store = runs
    home, temp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    temp.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = temp / f"autoscale-tasks-{int(dead.stdout)}-x"
    (stale / "datasets").mkdir(parents=True)
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(temp), "XDG_CACHE_HOME": str(home / ".cache")}
    env.pop("HF_HOME", None)
    env.pop("HF_DATASETS_CACHE", None)
    done = subprocess.run([sys.executable, "-m", "autoscale", "eval", str(root / "random"), "--store", str(store.path),
                           "--tasks", TASK, "--limit", "7"], env=env, capture_output=True, text=True, cwd=temp)
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(home.rglob("*")) == [] and list(temp.rglob("*")) == []
    assert "fatal" not in done.stderr  # lm-eval's `git describe` outside a repository (cwd: not one)


def test_without_the_extra_it_says_how_to_install_it(runs):
    root, store = runs
    # a fake only to cause the fault: lm_eval made unimportable in a child process
    code = ("import sys; sys.modules['lm_eval'] = None\n"
            "from autoscale.cli import main\n"
            f"main(['eval', {str(root / 'trained')!r}, '--store', {str(store.path)!r}, '--tasks', {TASK!r}])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: downstream evaluation needs lm-eval: pip install 'autoscale[eval]'"


def test_autoscale_run_evaluates_every_validation_run_and_reports_the_table(tmp_path, capsys):
    import json

    import yaml

    config = {
        "seed": 0,
        "data": {"store": str(tmp_path / "store"), "sources": str(CORPUS), "domains": ["web", "code", "books"],
                 "vocab_size": 257, "val_tokens": 2048},
        "proxy": {"model": {"n_layer": 1, "d_model": 32, "n_head": 2, "seq_len": 32},
                  "train": {"batch_size": 8, "lr": 1.0e-2, "warmup": 0.1, "threads": 1},
                  "eval": {"points": 2, "max_tokens": 1024}},
        "ddo": {"budgets": [6000, 12000], "eval_points": 1},
        "target": {"budget": 24000, "validate": True, "compare": ["uniform"]},
    }
    path = tmp_path / "down.yaml"
    path.write_text(yaml.safe_dump(config))
    assert run_cli("run", str(path), "--quiet") == 0  # validated before downstream was configured
    config["target"]["downstream"] = {"tasks": [TASK], "limit": 20}
    path.write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert run_cli("run", str(path), "--quiet") == 2  # those runs kept no weights: named, not retrained
    err = capsys.readouterr().err.strip()
    assert "kept no weights" in err and "--retrain-unkept" in err and "\n" not in err
    assert run_cli("run", str(path), "--quiet", "--retrain-unkept") == 0
    out = tmp_path / "down"
    validation = json.loads((out / "validation.json").read_text())
    scores = validation["downstream"]["mixtures"]
    assert set(scores) == {"predicted", "uniform"} and 0 <= scores["uniform"]["average"] <= 1
    assert set(json.loads((out / "summary.json").read_text())["validation"]["downstream"]) == {"predicted", "uniform"}
    assert run_cli("report", str(out)) == 0
    html = (out / "report" / "report.html").read_text()
    assert "Downstream evaluation" in html and TASK in html
    assert run_cli("status", str(out)) == 0
    assert "downstream uniform: average" in capsys.readouterr().out


def test_rolling_loglikelihood_and_greedy_generation(runs):
    from lm_eval.api.instance import Instance

    from autoscale.train.harness import ProxyHarnessLM

    root, store = runs
    lm = ProxyHarnessLM.from_run(root / "trained", store)
    text = "The children walked to the school and " * 8  # longer than the model's 64 tokens: several windows

    def request(kind, args):
        return Instance(request_type=kind, doc={}, arguments=args, idx=0)

    short = "The children walked to the school."
    # a text within the context: its rolling log-likelihood is that of the whole text after end-of-text
    (rolling,) = lm.loglikelihood_rolling([request("loglikelihood_rolling", (short,))])
    (ll, _), = lm.loglikelihood([request("loglikelihood", ("", short))])
    assert rolling == pytest.approx(ll, rel=1e-5) and rolling < 0
    # a longer one is scored in several windows, every token once; a continuation that long is cut
    (long_rolling,) = lm.loglikelihood_rolling([request("loglikelihood_rolling", (text,))])
    assert len(lm._encode(text)) > 2 * lm.context and long_rolling < 4 * rolling < 0
    with pytest.warns(UserWarning, match="cut from the left"):
        lm.loglikelihood([request("loglikelihood", ("", text))])
    out = lm.generate_until([request("generate_until", ("The children walked to the", {"until": ["\n"],
                                                                                          "max_gen_toks": 12}))])
    assert isinstance(out[0], str) and "\n" not in out[0] and len(lm._encode(out[0])) <= 12


def byte_tokenizer(eos: str = "<|endoftext|>"):
    """A byte-level Hugging Face tokenizer (one token per byte, no merges), built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    vocab[eos] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, bos_token=eos, unk_token=eos)


def own_task(folder: Path, name: str, rows: list[dict]) -> Path:
    """A multiple-choice lm-eval task YAML as a user writes one, over a JSON-lines file beside it;
    the `datasets` library's processed copy goes to ``folder/cache`` (not the user's HF cache)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / f"{name}.yaml").write_text(yaml.safe_dump({
        "task": name, "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}, "cache_dir": str(folder / "cache")},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{question}}",
        "doc_to_choice": "{{choices}}", "doc_to_target": "{{answer}}",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }))
    return data


def test_an_hf_model_folder_is_scored_on_the_users_own_task_and_cached_by_its_content(tmp_path, capsys):
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = byte_tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=1, n_head=2,
                                       eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id))
    model_dir = tmp_path / "my-model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    rows = [{"question": f"{a} plus {b} is", "choices": [f" {a + b}", f" {a + b + 1}"], "answer": 0}
            for a in range(4) for b in range(3)]
    data = own_task(tmp_path / "tasks", "my_sums", rows)

    args = ["eval", "--hf-model", str(model_dir), "--include-path", str(tmp_path / "tasks"), "--tasks", "my_sums",
            "--json"]
    capsys.readouterr()  # what saving the model printed
    assert run_cli(*args) == 0
    captured = capsys.readouterr()
    first = json.loads(captured.out)
    assert first["cached"] is False and 0.0 <= first["tasks"]["my_sums"]["value"] <= 1.0
    # the libraries' progress bars and notes (loading the weights, preparing the data) stay out of our output
    assert captured.err == "", captured.err
    assert first["tasks"]["my_sums"]["metric"] == "acc"
    assert run_cli(*args) == 0
    assert json.loads(capsys.readouterr().out)["cached"] is True
    # the task's content is in the key: an edited task is scored again
    data.write_text(data.read_text() + json.dumps(rows[0]) + "\n")
    assert run_cli(*args) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["cached"] is False and again["key"] != first["key"]

    # one line, exit 2: a task the folder does not define; a folder that is not a model; both sources
    assert run_cli("eval", "--hf-model", str(model_dir), "--include-path", str(tmp_path / "tasks"),
                   "--tasks", "nope_task") == 2
    assert "unknown task 'nope_task'" in capsys.readouterr().err
    assert run_cli("eval", "--hf-model", str(tmp_path / "tasks"), "--tasks", "my_sums",
                   "--include-path", str(tmp_path / "tasks")) == 2
    assert "not a Hugging Face model folder" in capsys.readouterr().err
    assert run_cli("eval", str(tmp_path), "--hf-model", str(model_dir), "--tasks", "my_sums") == 2
    assert "one of the two" in capsys.readouterr().err


def test_the_configs_include_path_is_relative_to_it_and_decides_which_tasks_exist(tmp_path, capsys):
    from autoscale.experiment.config import load_config
    from autoscale.train.downstream import check_tasks, task_identity

    own_task(tmp_path / "exp" / "tasks", "my_sums", [{"question": "1 plus 1 is", "choices": [" 2", " 3"], "answer": 0}])
    base = {"data": {"store": str(tmp_path / "store"), "sources": str(CORPUS), "domains": ["web", "code", "books"]},
            "ddo": {"budgets": [6000, 12000]},
            "target": {"budget": 24000, "validate": True,
                       "downstream": {"tasks": ["my_sums", TASK], "include_path": "tasks"}}}
    path = tmp_path / "exp" / "down.yaml"
    path.write_text(yaml.safe_dump(base))
    cfg = load_config(path).target.downstream
    assert cfg.include_path == tmp_path / "exp" / "tasks"
    check_tasks(cfg.tasks, cfg.include_path)  # both known: ours, and the folder's
    identity = task_identity(cfg.tasks, cfg.include_path)
    assert identity["my_sums"].startswith("include:") and identity[TASK] == task_identity([TASK])[TASK]
    with pytest.raises(AutoscaleError, match=r"unknown task 'zz_no_such_task_q' \(.*task YAMLs under .*tasks"):
        check_tasks(["zz_no_such_task_q"], cfg.include_path)
    # the user's own trainer keeps no weights of ours: refused, and the line says what to do instead
    command = {**base, "data": {"domains": ["web", "code", "books"]},
               "executor": {"kind": "command", "command": ["{python}", "train.py", "{run_dir}"]}}
    path.write_text(yaml.safe_dump(command))
    assert run_cli("run", str(path), "--quiet") == 2
    err = capsys.readouterr().err
    assert "autoscale eval --hf-model DIR" in err and "\n" not in err.strip()


def test_a_run_of_the_users_own_trainer_is_pointed_to_hf_model(tmp_path, capsys):
    """A command-executor experiment has no token store: `eval RUN_DIR` says to score the saved model."""
    run = tmp_path / "exp" / "runs" / "0123456789abcdef"
    run.mkdir(parents=True)
    (tmp_path / "exp" / "experiment.json").write_text(json.dumps(
        {"config": {"data": {"store": None, "domains": ["web", "code"]}, "executor": {"kind": "command"}}}))
    assert run_cli("eval", str(run), "--tasks", TASK) == 2
    err = capsys.readouterr().err
    assert "run of your own trainer" in err and "--hf-model DIR" in err and "\n" not in err.strip()
    assert run_cli("eval", str(tmp_path), "--tasks", TASK) == 2
    assert "is not inside an experiment folder" in capsys.readouterr().err
