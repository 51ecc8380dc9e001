"""Trainer throughput: tokens/s and achieved FLOP/s as a fraction of this machine's matmul peak.

    .venv/bin/python bench/trainer.py                      # CPU, fp32, 2 threads (make bench)
    .venv/bin/python bench/trainer.py --device cuda        # GPU: bf16 autocast, adds a ~124M decoder

The peak is measured in the same run: the best FLOP/s of large square ``torch.matmul`` calls (fp32 on
CPU; bf16 on CUDA), before and between the models. Each model trains with autoscale's own step (``autoscale.train.loop``: micro-batch,
loss, backward, clipping, fused AdamW) on random token ids, for the built-in decoder and for Hugging
Face GPT-2 of the same shape (same loss code and optimizer). The best of several timing windows is
kept, because other processes may share the machine.

FLOPs per trained token = 6 * N_nonembed + 6 * V * d (LM head) + 12 * L * d * T (attention scores
and weighted values, forward + backward, no causal discount); N_nonembed excludes the token and
position embeddings. Writes bench/results/trainer.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from _common import cpu_name, write_section

from autoscale.train.config import ModelConfig, ProxyConfig, TrainConfig
from autoscale.train.loop import Runtime, make_optimizer, train_step
from autoscale.train.models import build_model, count_params

RESULTS = Path(__file__).resolve().parent / "results" / "trainer.md"


@dataclass(frozen=True)
class Shape:
    n_layer: int
    d_model: int
    n_head: int
    seq_len: int
    vocab: int
    batch: int
    label: str = ""

    def flops_per_token(self, non_embedding_params: int) -> float:
        L, d, T, V = self.n_layer, self.d_model, self.seq_len, self.vocab
        return 6 * non_embedding_params + 6 * V * d + 12 * L * d * T

    def name(self) -> str:
        return f"L{self.n_layer} d{self.d_model} h{self.n_head} T{self.seq_len} V{self.vocab} B{self.batch}"


_M, _T = ModelConfig(), TrainConfig()  # the default proxy (ProxyConfig()) is the "demo-sized" decoder
DEFAULT = Shape(_M.n_layer, _M.d_model, _M.n_head, _M.seq_len, 2048, _T.batch_size, "default proxy, BPE 2k")
CPU_SHAPES = [
    Shape(2, 64, 2, 64, 512, 8, "tiny (test-sized)"),
    DEFAULT,
    Shape(_M.n_layer, _M.d_model, _M.n_head, _M.seq_len, 256, _T.batch_size, "default proxy, bytes"),
    Shape(6, 256, 4, 256, 2048, 8, "larger proxy"),
]
GPU_SHAPES = [
    Shape(_M.n_layer, _M.d_model, _M.n_head, _M.seq_len, 2048, 64, "default proxy, B=64"),
    Shape(12, 768, 12, 1024, 50304, 16, "GPT-2 small (124M)"),
]


def matmul_peak(device: torch.device, dtype: torch.dtype, sizes: tuple[int, ...], repeats: int) -> float:
    """Best FLOP/s of n x n x n matmuls (2 n^3 FLOPs each)."""
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(2):
            torch.matmul(a, b)
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            reps = 10 if device.type == "cuda" else 1
            for _ in range(reps):
                torch.matmul(a, b)
            _sync(device)
            best = max(best, reps * 2 * n**3 / (time.perf_counter() - t0))
    return best


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "n/a"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def hf_gpt2_config(shape: Shape) -> dict:
    return {"model_type": "gpt2", "n_layer": shape.n_layer, "n_embd": shape.d_model, "n_head": shape.n_head,
            "n_positions": shape.seq_len, "vocab_size": shape.vocab}


class Trainee:
    """One model with its optimizer and a fixed random batch, ready to time autoscale's train step."""

    def __init__(self, shape: Shape, kind: str, rt: Runtime, compile_: bool):
        model_cfg = {"kind": "decoder", "n_layer": shape.n_layer, "d_model": shape.d_model,
                     "n_head": shape.n_head, "seq_len": shape.seq_len}
        if kind == "hf":
            model_cfg = {"kind": "hf", "seq_len": shape.seq_len, "hf_config": hf_gpt2_config(shape)}
        self.config = ProxyConfig.from_dict({"model": model_cfg, "train": {"batch_size": shape.batch}})
        torch.manual_seed(0)
        self.raw = build_model(ModelConfig(**model_cfg), shape.vocab).to(rt.device)
        self.optimizer = make_optimizer(self.raw, self.config.train, rt.device)
        self.model = torch.compile(self.raw) if compile_ else self.raw
        self.seqs = np.random.default_rng(0).integers(0, shape.vocab, (shape.batch, shape.seq_len + 1))
        self.shape, self.rt, self.best = shape, rt, 0.0
        for _ in range(3):  # warm-up: allocator, kernels, compilation
            self.step()

    def step(self) -> None:
        train_step(self.model, self.optimizer, self.seqs, 0, "causal", self.shape.vocab, self.config, self.rt)

    def window(self, seconds: float) -> None:
        """Train for about ``seconds``; keep the best tokens/s seen."""
        _sync(self.rt.device)
        t0, n = time.perf_counter(), 0
        while True:
            self.step()
            n += 1
            _sync(self.rt.device)
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds and n >= 2:
                break
        self.best = max(self.best, n * self.shape.batch * self.shape.seq_len / elapsed)

    def result(self) -> dict:
        nonembed = count_params(self.raw, non_embedding=True)
        return {"tokens_per_s": self.best, "flops": self.shape.flops_per_token(nonembed) * self.best,
                "params": count_params(self.raw), "nonembed": nonembed}


def time_shape(shape: Shape, rt: Runtime, args: argparse.Namespace) -> tuple[dict, dict | None]:
    """Built-in decoder and HF GPT-2 timed in alternating windows, so that load from other processes
    hits both alike; the best window of each counts."""
    nano = Trainee(shape, "decoder", rt, args.compile)
    hf = None if args.no_hf else Trainee(shape, "hf", rt, args.compile)
    for _ in range(args.windows):
        nano.window(args.window)
        if hf is not None:
            hf.window(args.window)
    return nano.result(), None if hf is None else hf.result()


def machine_facts(device: torch.device) -> list[str]:
    facts = [f"CPU: {cpu_name()}, {os.cpu_count()} logical cores; torch threads: {torch.get_num_threads()}",
             f"torch {torch.__version__}, Python {platform.python_version()}, {platform.system()} {platform.release()}"]
    if device.type == "cuda":
        facts.append(f"GPU: {torch.cuda.get_device_name(device)}")
    return facts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    ap.add_argument("--window", type=float, default=1.5, help="seconds per timing window")
    ap.add_argument("--windows", type=int, default=3, help="timing windows per model (best kept)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the models")
    ap.add_argument("--no-hf", action="store_true", help="skip the Hugging Face comparison")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--toy", action="store_true", help="the test-sized shape only, small matmuls (bench/gpu.sh --dry-run)")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
    cuda = device.type == "cuda"
    rt = Runtime(device=device, bf16=cuda)
    peak_dtype = torch.bfloat16 if cuda else torch.float32
    sizes = (256,) if args.toy else (4096, 8192) if cuda else (1024, 2048)
    load_before = _loadavg()
    peak = matmul_peak(device, peak_dtype, sizes, repeats=8)
    shapes = CPU_SHAPES[:1] if args.toy else GPU_SHAPES if cuda else CPU_SHAPES
    precision = "bf16 autocast" if cuda else "fp32"

    rows = []
    for shape in shapes:
        nano, hf = time_shape(shape, rt, args)
        rows.append((shape, nano, hf))
        peak = max(peak, matmul_peak(device, peak_dtype, sizes[-1:], repeats=2))  # between shapes too
        line = f"{shape.name():<34} nano {nano['tokens_per_s']:>10,.0f} tok/s {nano['flops'] / peak:6.1%} of peak"
        if hf:
            line += f" | HF {hf['tokens_per_s']:>10,.0f} tok/s {hf['flops'] / peak:6.1%} | x{nano['tokens_per_s'] / hf['tokens_per_s']:.2f}"
        print(line, flush=True)

    command = "python bench/trainer.py " + " ".join(sys.argv[1:] if argv is None else argv)
    md = [
        "## Trainer throughput",
        "",
        f"Command: `{command.strip()}`",
        "",
        *[f"- {f}" for f in machine_facts(device)],
        f"- Measured {'bf16' if cuda else 'fp32'} matmul peak: **{peak / 1e9:,.1f} GFLOP/s** (best square matmul, same run)",
        f"- Precision: {precision}; torch.compile: {'on' if args.compile else 'off'}; best of {args.windows} windows of "
        f"{args.window} s, built-in and HF alternating",
        f"- Load average (1 min) before / after: {load_before} / {_loadavg()} "
        "(well above 0 means other processes shared the machine: numbers are then low and noisy)",
        "- FLOPs/token = 6·N_nonembed + 6·V·d (LM head) + 12·L·d·T (attention); random token ids; "
        "autoscale's own train step (loss, backward, clip, fused AdamW) for both models",
        "",
        "| model | shape | params (non-emb) | nano tok/s | nano GFLOP/s | nano % peak | HF GPT-2 tok/s | HF % peak | nano / HF |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for shape, nano, hf in rows:
        hf_cells = (f"{hf['tokens_per_s']:,.0f} | {hf['flops'] / peak:.1%} | {nano['tokens_per_s'] / hf['tokens_per_s']:.2f}x"
                    if hf else "- | - | -")
        md.append(
            f"| {shape.label} | {shape.name()} | {nano['params'] / 1e6:.2f}M ({nano['nonembed'] / 1e6:.2f}M) | "
            f"{nano['tokens_per_s']:,.0f} | {nano['flops'] / 1e9:,.1f} | {nano['flops'] / peak:.1%} | {hf_cells} |"
        )
    goal = next((r for r in rows if r[0] == DEFAULT), None)
    if goal and goal[2] and not cuda:
        shape, nano, hf = goal
        ok = nano["flops"] / peak >= 0.5 and nano["tokens_per_s"] >= 1.5 * hf["tokens_per_s"]
        md += ["", f"Goal (default proxy decoder, {shape.name()}: >= 50% of peak and >= 1.5x HF): "
               f"{'met' if ok else 'NOT met'} ({nano['flops'] / peak:.1%} of peak, "
               f"{nano['tokens_per_s'] / hf['tokens_per_s']:.2f}x HF)."]
    text = "\n".join(md) + "\n"
    write_section(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
