"""Your own trainer for `autoscale run`: a small GPT-2 from scratch on Hugging Face transformers.

autoscale runs it once per proxy run (experiment.yaml, ``executor.kind: command``)::

    {python} train.py --data data --mixture {mixture_json} --seed {seed} --out {run_dir}

It reads the run's mixture (``{"tokens": {domain: tokens}}``), trains on that many tokens of each
domain, evaluates every domain's held-out text along the way, and writes what autoscale reads:

- ``{run_dir}/metrics.json``: the final loss and perplexity per domain (required), the curve (for
  speed-ups) and the tokens trained per domain; ``autoscale check RUN_DIR`` validates one;
- ``{run_dir}/model/``: the model and its tokenizer (``save_pretrained``), for
  ``autoscale eval --hf-model RUN_DIR/model``.

To plug in your own trainer, keep the arguments and the metrics file, and replace the rest: the
data (``read_domain``), the tokenizer, the model and the loop. The same seed and mixture must give
the same numbers: autoscale trains each run once, and compares runs of different mixtures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

EOS = "<|endoftext|>"
HELD_OUT = 2048  # the last tokens of each domain: its validation text, never trained on


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """One token per byte, plus end-of-text: needs no training and no download."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)} | {EOS: len(alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS)


def read_domain(data: Path, domain: str, tokenizer: PreTrainedTokenizerFast) -> tuple[torch.Tensor, torch.Tensor]:
    """A domain's tokens, split into (train, held-out). Here: ``data/<domain>.txt``."""
    path = data / f"{domain}.txt"
    if not path.is_file():
        raise SystemExit(f"{path}: no such file (run prepare_data.py first)")
    ids = torch.tensor(tokenizer(path.read_text(encoding="utf-8"))["input_ids"])
    return ids[:-HELD_OUT], ids[-HELD_OUT:]


def batches(train: dict[str, torch.Tensor], tokens: dict[str, float], seq_len: int, batch: int,
            gen: torch.Generator) -> list[torch.Tensor]:
    """Windows of ``seq_len`` tokens drawn at random from each domain, as many as its share of the
    mixture asks for, shuffled together into batches."""
    windows = []
    for domain, n in tokens.items():
        count = round(n / seq_len)
        starts = torch.randint(0, len(train[domain]) - seq_len, (count,), generator=gen)
        windows += [train[domain][s:s + seq_len] for s in starts.tolist()]
    order = torch.randperm(len(windows), generator=gen).tolist()
    stacked = [windows[i] for i in order]
    return [torch.stack(stacked[i:i + batch]) for i in range(0, len(stacked), batch)]


@torch.no_grad()
def evaluate(model: GPT2LMHeadModel, held_out: dict[str, torch.Tensor], seq_len: int) -> dict[str, dict[str, float]]:
    """Token-mean cross-entropy (nats) and perplexity on each domain's held-out text."""
    model.eval()
    out = {}
    for domain, ids in held_out.items():
        windows = ids[: len(ids) // seq_len * seq_len].view(-1, seq_len)
        loss = float(model(windows, labels=windows).loss)
        out[domain] = {"loss": loss, "perplexity": math.exp(loss)}
    model.train()
    return out


def write_json(path: Path, value: dict) -> None:
    """Write whole or not at all: autoscale may read the file the moment it appears."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description="a small GPT-2 on one mixture; writes OUT/metrics.json")
    parser.add_argument("--mixture", type=Path, required=True, help='JSON: {"tokens": {domain: tokens}}')
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="the run's folder")
    parser.add_argument("--data", type=Path, default=Path("data"), help="folder of <domain>.txt files")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--evals", type=int, default=4, help="evaluations along the way (the curve)")
    args = parser.parse_args()

    started = time.time()
    tokens = json.loads(args.mixture.read_text())["tokens"]
    tokenizer = byte_tokenizer()
    split = {d: read_domain(args.data, d, tokenizer) for d in tokens}
    train, held_out = {d: s[0] for d, s in split.items()}, {d: s[1] for d, s in split.items()}

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = GPT2LMHeadModel(GPT2Config(
        vocab_size=len(tokenizer), n_positions=args.seq_len, n_embd=64, n_layer=2, n_head=2,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id))
    steps = batches(train, tokens, args.seq_len, args.batch, gen)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - 0.9 * s / max(1, len(steps)))
    at = {round(len(steps) * (k + 1) / args.evals) for k in range(args.evals)}

    curve, seen = [{"step": 0, "tokens": 0, "eval": evaluate(model, held_out, args.seq_len)}], 0
    for step, batch in enumerate(steps, start=1):
        loss = model(batch, labels=batch).loss
        if not torch.isfinite(loss):  # autoscale retries a diverged run (executor.retries)
            write_json(args.out / "metrics.json", {"schema_version": 1, "status": "diverged",
                                                   "diverged_at_step": step, "final": {}})
            return
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        seen += batch.numel()
        if step in at:
            curve.append({"step": step, "tokens": seen, "eval": evaluate(model, held_out, args.seq_len)})
            write_json(args.out / "progress.json", {"tokens": seen, "total_tokens": round(sum(tokens.values()))})

    model.save_pretrained(args.out / "model")
    tokenizer.save_pretrained(args.out / "model")
    write_json(args.out / "metrics.json", {
        "schema_version": 1, "status": "completed", "final": curve[-1]["eval"], "curve": curve,
        "tokens_per_domain": {d: round(n / args.seq_len) * args.seq_len for d, n in tokens.items()},
        "params": sum(p.numel() for p in model.parameters()), "wall_time_s": time.time() - started,
    })


if __name__ == "__main__":
    main()
