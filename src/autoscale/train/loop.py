"""train_run: train one proxy model on a mixture and write its metrics.json.

What one run does, in order:
1. Open the store, build the exact-quota ``MixtureSampler`` for ``tokens`` (in the order that
   ``train.sampler`` names) and size the run: one optimizer step trains
   ``G = batch_size * grad_accum * world_size`` sequences of ``seq_len`` tokens, and the run takes
   ``ceil(sequences / G)`` steps, so every requested sequence is trained (the last step may be
   smaller) and ``tokens_per_domain`` is exact.
2. Seed everything, build the model, AdamW (weight decay on matrices only, not on norms, biases),
   and an LR schedule (linear warmup, then cosine or linear decay) sized to this run's steps.
3. Train, evaluating every domain's validation loss at ``eval.points`` evenly spaced steps plus the
   start, checkpointing after each evaluation. A NaN/inf loss stops the run as ``diverged``.
4. Write ``metrics.json`` (schema in ``autoscale.train.metrics``) atomically and return it.

The loss of a step is the sum of token losses over the whole global batch divided by its number of
scored tokens; each micro-batch contributes its share. So gradient accumulation and any number of
data-parallel processes give the same step as one process with the same global batch, up to
floating-point summation order.

Data parallelism: launch with ``torchrun --nproc_per_node N -m autoscale train ...``; every process
reads the same global batch from the sampler and takes its own micro-batches (gloo on CPU, NCCL on
CUDA). Only rank 0 writes files; every rank returns the same metrics.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from autoscale.data.sampler import SAMPLER_VERSION, MixtureSampler, validation_batches
from autoscale.data.store import TokenStore
from autoscale.errors import AutoscaleError
from autoscale.train.checkpoint import CHECKPOINT, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from autoscale.train.config import ProxyConfig, TrainConfig
from autoscale.train.evaluate import build_eval_set, evaluate, split_sequences, train_mask_rng
from autoscale.train.metrics import CurvePoint, DomainEval, RunMetrics, read_metrics, write_metrics
from autoscale.train.models import IGNORE, build_model, count_params, hf_objective

METRICS = "metrics.json"

# progress(step, total_steps, tokens_seen, tokens_per_s): called on rank 0 after every step.
Progress = Callable[[int, int, int, float], None]


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Learning rate of optimizer step ``step`` (0-based) in a run of ``total`` steps."""
    warmup = round(cfg.warmup * total)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    floor = cfg.lr * cfg.min_lr_ratio
    frac = (step - warmup) / max(1, total - warmup)
    if cfg.schedule == "cosine":
        return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * frac))
    if cfg.schedule == "linear":
        return cfg.lr - (cfg.lr - floor) * frac
    return cfg.lr


def eval_steps(total: int, points: int) -> list[int]:
    """Steps after which to evaluate: 0, ``points`` evenly spaced ones, and always ``total``."""
    return sorted({round(total * k / points) for k in range(points + 1)})


@dataclass(frozen=True)
class Runtime:
    """Where this process trains: device, data-parallel rank/world, mixed precision."""

    device: torch.device
    rank: int = 0
    world: int = 1
    bf16: bool = False
    owns_group: bool = False

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)


def setup_runtime(cfg: TrainConfig) -> Runtime:
    """Pick the device and join the torchrun process group when WORLD_SIZE > 1."""
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise AutoscaleError(f"train.device is {cfg.device!r} but no CUDA device is available")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want.startswith("cuda") else "gloo")
        owns = True
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    if want == "cuda" and world > 1:
        want = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    device = torch.device(want)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 leftovers (norms, loss) on tensor cores
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    return Runtime(device=device, rank=rank, world=world, bf16=bf16, owns_group=owns)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; weight decay only on matrices (linear weights, embeddings), never on norms and biases."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)


def run_fingerprint(config: ProxyConfig, tokens: Mapping[str, float], store_hash: str, global_batch: int) -> str:
    """Identifies what a run computes: a checkpoint or metrics.json is reused only on a match."""
    key = {
        "config": config.fingerprint_dict(),
        "tokens": {d: float(tokens[d]) for d in sorted(tokens)},
        "store": store_hash,
        "global_batch": global_batch,
        "sampler_version": SAMPLER_VERSION,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def train_run(
    store: TokenStore | str | Path,
    tokens: Mapping[str, float],
    config: ProxyConfig,
    run_dir: str | Path,
    progress: Progress | None = None,
    mode: Mapping[str, Any] | None = None,
) -> RunMetrics:
    """Train one proxy on ``tokens`` (domain -> training tokens, absolute counts; a ``Mixture``
    works too) and return its metrics, also written to ``run_dir/metrics.json``.

    Resumes from ``run_dir/checkpoint.pt`` when present; returns the existing metrics.json without
    training when the same run already finished there. A diverged run returns ``status="diverged"``.
    ``mode``: None, or ``{"kind": "doremi", "eta": .., "smoothing": ..}`` for DoReMi's two phases
    (`autoscale.train.doremi`); its metrics.json then holds ``doremi.weights``.
    """
    from autoscale.train.doremi import mode_settings

    doremi = mode_settings(mode)
    if not isinstance(store, TokenStore):
        store = TokenStore.open(store)
    tokens = dict(getattr(tokens, "tokens", tokens))
    if not store.domains:
        raise AutoscaleError(f"token store {store.path} has no domains")
    for what, names in (("mixture domain", tokens), ("eval.domains:", config.eval.domains or ())):
        unknown = [d for d in names if d not in store.domains]
        if unknown:
            raise AutoscaleError(
                f"{what} {unknown[0]!r} is not in the token store (domains: {', '.join(store.domains)})"
            )
    threads = torch.get_num_threads()
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    runtime = setup_runtime(config.train)
    try:
        if doremi is not None:
            from autoscale.train.doremi import REFERENCE

            if runtime.world > 1:
                raise AutoscaleError("DoReMi trains in one process: run it without torchrun")
            reference = _train(store, tokens, config.replace(train={"keep_checkpoint": True}),
                               Path(run_dir) / REFERENCE, progress, runtime)
            if reference.status != "completed":
                raise AutoscaleError(f"DoReMi: the reference run diverged at step {reference.diverged_at_step}")
        metrics = _train(store, tokens, config, Path(run_dir), progress, runtime, doremi)
        if runtime.owns_group:
            # Rank 0 still writes files after the last collective; a rank that tore the group down
            # meanwhile could abort gloo's connections under it (seen as SIGABRT in CI).
            dist.barrier()
        return metrics
    finally:
        torch.set_num_threads(threads)
        if runtime.owns_group:
            dist.destroy_process_group()


def _train(
    store: TokenStore,
    tokens: dict[str, float],
    config: ProxyConfig,
    run_dir: Path,
    progress: Progress | None,
    rt: Runtime,
    doremi: Mapping[str, float] | None = None,
) -> RunMetrics:
    """One run in four steps: size it, return it if it already finished, build (or restore) its
    state, train to the end, write its metrics."""
    run = _Run(store, tokens, config, run_dir, rt, doremi)
    done = run.finished()
    if done is not None:
        return done
    run.build()
    run.restore()
    run.train(progress)
    return run.write()


class _Run:
    """The state of one run between its steps (`_train`): sizing, model and optimizer, progress."""

    def __init__(self, store: TokenStore, tokens: dict[str, float], config: ProxyConfig, run_dir: Path,
                 rt: Runtime, doremi: Mapping[str, float] | None) -> None:
        """Size the run: the sampler, the global batch G, the number of steps, the fingerprint."""
        self.started = time.perf_counter()
        self.store, self.tokens, self.config, self.rt, self.doremi = store, tokens, config, rt, doremi
        mcfg, tcfg = config.model, config.train
        self.seq_len, self.vocab, self.objective = mcfg.seq_len, int(store.vocab_size), hf_objective(mcfg)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.sampler = MixtureSampler(store, tokens, self.seq_len, tcfg.seed, max_epochs=tcfg.max_epochs,
                                          order=tcfg.sampler)
        self.notes = [str(w.message) for w in caught]
        self.n_seq = len(self.sampler)
        self.G = tcfg.batch_size * tcfg.grad_accum * rt.world
        if self.n_seq < self.G:
            raise AutoscaleError(
                f"budget of {sum(tokens.values()):.0f} tokens is smaller than one batch: {self.n_seq} sequences "
                f"of {self.seq_len} tokens < {self.G} (batch_size {tcfg.batch_size} x grad_accum "
                f"{tcfg.grad_accum} x {rt.world} processes)"
            )
        self.total = math.ceil(self.n_seq / self.G)
        self.evals_at = eval_steps(self.total, config.eval.points)
        fingerprint = run_fingerprint(config, tokens, store.manifest_hash, self.G)
        if doremi is not None:  # the same data and model, another computation
            fingerprint = hashlib.sha256(json.dumps([fingerprint, "doremi", dict(doremi)]).encode()).hexdigest()[:16]
        self.fingerprint = fingerprint
        self.metrics_path, self.ckpt_path = run_dir / METRICS, run_dir / CHECKPOINT
        # Progress; replaced wholesale by a checkpoint when resuming.
        self.step, self.curve, self.window, self.train_time, self.wall_before = 0, [], [0.0, 0], 0.0, 0.0
        self.diverged_at: int | None = None

    def finished(self) -> RunMetrics | None:
        """The metrics of this very run when it already finished in this folder."""
        if not self.metrics_path.exists():
            return None
        done = read_metrics(self.metrics_path)
        if done.extra.get("fingerprint") == self.fingerprint:
            return done
        raise AutoscaleError(f"{self.metrics_path.parent} already holds the metrics of a different run; "
                             "use another output folder")

    def build(self) -> None:
        """Model, optimizer, DoReMi's state and the evaluation set, seeded."""
        mcfg, tcfg, ecfg, rt = self.config.model, self.config.train, self.config.eval, self.rt
        # Seed before building the model: the initial weights are part of the run's definition.
        torch.manual_seed(tcfg.seed)
        np.random.seed(tcfg.seed % 2**32)
        random.seed(tcfg.seed)
        self.raw = build_model(mcfg, self.vocab).to(rt.device)
        self.n_params = count_params(self.raw)
        self.optimizer = make_optimizer(self.raw, tcfg, rt.device)
        model: torch.nn.Module = torch.compile(self.raw) if tcfg.compile else self.raw
        if rt.world > 1:
            ddp_kwargs = {"device_ids": [rt.device.index]} if rt.device.type == "cuda" else {}
            model = torch.nn.parallel.DistributedDataParallel(model, **ddp_kwargs)
        self.model = model
        self.dro = None
        if self.doremi is not None:
            from autoscale.train.doremi import REFERENCE, DoReMiState, load_reference

            if rt.world > 1:
                raise AutoscaleError("DoReMi trains in one process: run it without torchrun")
            reference = load_reference(build_model(mcfg, self.vocab).to(rt.device),
                                       self.metrics_path.parent / REFERENCE / CHECKPOINT)
            self.dro = DoReMiState(reference, tuple(self.sampler.domains), **self.doremi)
            self.domain_index = {d: i for i, d in enumerate(self.dro.domains)}
        self.eval_set = build_eval_set(
            {d: list(validation_batches(self.store, d, self.seq_len, ecfg.batch_size, ecfg.max_tokens))
             for d in ecfg.domains or self.store.domains},
            self.objective, self.vocab, mcfg.mask_prob, ecfg.seed,
        )

    def restore(self) -> None:
        """Continue from this run's checkpoint, when it left one."""
        state = load_checkpoint(self.ckpt_path)
        if state is None:
            return
        if state.get("fingerprint") != self.fingerprint:
            raise AutoscaleError(f"{self.ckpt_path} belongs to a different run; use another output folder or delete it")
        self.raw.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        self.step, self.window = state["step"], list(state["window"])
        self.curve = [_point_from_dict(p) for p in state["curve"]]
        self.train_time, self.wall_before = state["train_time_s"], state["wall_time_s"]
        if self.dro is not None:
            self.dro.restore(state["doremi"])

    def tokens_at(self, step: int) -> int:
        return min(step * self.G, self.n_seq) * self.seq_len

    def checkpoint(self) -> None:
        if self.rt.rank != 0:
            return
        save_checkpoint(self.ckpt_path, {
            "fingerprint": self.fingerprint, "step": self.step, "model": self.raw.state_dict(),
            # to rebuild the model for evaluation
            "model_config": self.config.model.model_dump(mode="json"), "vocab_size": self.vocab,
            "optimizer": self.optimizer.state_dict(), "rng": rng_state(),
            "curve": [_point_to_dict(p) for p in self.curve], "window": self.window,
            "train_time_s": self.train_time, "wall_time_s": self.wall_before + time.perf_counter() - self.started,
            **({} if self.dro is None else {"doremi": self.dro.to_dict()}),
        })

    def record_eval(self) -> bool:
        """Evaluate at the current step; False if the model produced a non-finite loss."""
        rt = self.rt
        result = evaluate(self.raw, self.eval_set, rt.device, rt.autocast, rt.rank, rt.world)
        train_loss = self.window[0] / self.window[1] if self.window[1] else None
        self.curve.append(CurvePoint(step=self.step, tokens=self.tokens_at(self.step), eval=result,
                                     train_loss=train_loss))
        self.window[:] = [0.0, 0]
        return all(math.isfinite(e.loss) for e in result.values())

    def optimizer_step(self, seqs: np.ndarray) -> float:
        """One step on the global batch ``seqs`` at the schedule's learning rate; its mean token loss."""
        lr = lr_at(self.step, self.total, self.config.train)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.dro is None:
            return train_step(self.model, self.optimizer, seqs, self.step, self.objective, self.vocab, self.config,
                              self.rt)
        from autoscale.train.doremi import doremi_step

        tcfg = self.config.train
        rng = train_mask_rng(tcfg.seed, self.step) if self.objective == "masked" else None
        inputs, targets = split_sequences(seqs, self.objective, rng, self.vocab, self.config.model.mask_prob)
        start = self.step * self.G
        labels = [self.domain_index[d] for d in self.sampler.domain_order(start, start + len(seqs))]
        with self.rt.autocast():
            return doremi_step(self.raw, self.optimizer, inputs, targets, labels, self.dro, tcfg.batch_size,
                               self.rt.device, tcfg.clip)

    def train(self, progress: Progress | None) -> None:
        """Train to the last step (or the first non-finite loss), evaluating and checkpointing."""
        if self.step == 0 and not self.curve:
            self.record_eval()
        batches = self.sampler.batches(self.G, start=self.step * self.G)
        self.model.train()
        segment_start, segment_tokens = time.perf_counter(), 0
        every = self.config.train.checkpoint_every
        while self.step < self.total:
            t0 = time.perf_counter()
            seqs = next(batches)
            loss = self.optimizer_step(seqs)
            self.train_time += time.perf_counter() - t0
            self.step += 1
            segment_tokens += len(seqs) * self.seq_len
            if not math.isfinite(loss):
                self.diverged_at = self.step
                return
            self.window[0] += loss
            self.window[1] += 1
            if self.step in self.evals_at:
                if not self.record_eval():
                    self.diverged_at = self.step
                    return
                # at the last step only a kept checkpoint is worth its write: metrics.json comes next,
                # and a run killed before it resumes from the previous one to the same numbers
                if self.step < self.total or self.config.train.keep_checkpoint:
                    self.checkpoint()
            elif every and self.step % every == 0:
                self.checkpoint()
            if progress is not None and self.rt.rank == 0:
                rate = segment_tokens / max(time.perf_counter() - segment_start, 1e-9)
                progress(self.step, self.total, self.tokens_at(self.step), rate)

    def write(self) -> RunMetrics:
        """The run's metrics, written (rank 0) to metrics.json; the checkpoint goes unless kept."""
        trained = {d: int(v) for d, v in self.sampler.tokens_trained.items()}
        diverged = self.diverged_at is not None
        if diverged:  # only what was trained before the run stopped
            seen = Counter(self.sampler.domain_order(0, min(self.step * self.G, self.n_seq)))
            trained = {d: seen.get(d, 0) * self.seq_len for d in trained}
        metrics = RunMetrics(
            status="diverged" if diverged else "completed",
            final={} if diverged else dict(self.curve[-1].eval),
            diverged_at_step=self.diverged_at,
            curve=tuple(p for p in self.curve if all(math.isfinite(e.loss) for e in p.eval.values())),
            tokens_per_domain=trained,
            mixture=dict(self.tokens),
            tokens_per_s=self.tokens_at(self.step) / self.train_time if self.train_time > 0 else None,
            params=self.n_params,
            wall_time_s=self.wall_before + time.perf_counter() - self.started,
            extra={
                "fingerprint": self.fingerprint,
                "objective": self.objective,
                "steps": self.total,
                "global_batch_tokens": self.G * self.seq_len,
                "world_size": self.rt.world,
                "store": self.store.manifest_hash,
                "epochs": {d: float(v) for d, v in self.sampler.epochs.items()},
                "warnings": self.notes,
                **({} if self.dro is None else {"doremi": self.dro.report()}),
            },
        )
        if self.rt.rank == 0:
            write_metrics(metrics, self.metrics_path)
            if not self.config.train.keep_checkpoint:
                self.ckpt_path.unlink(missing_ok=True)
        return metrics


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    seqs: np.ndarray,
    step: int,
    objective: str,
    vocab: int,
    config: ProxyConfig,
    rt: Runtime,
) -> float:
    """One optimizer step on a global batch of (g, seq_len + 1) sequences; returns its mean token loss."""
    tcfg = config.train
    rng = train_mask_rng(tcfg.seed, step) if objective == "masked" else None
    inputs, targets = split_sequences(seqs, objective, rng, vocab, config.model.mask_prob)
    scored = max(int((targets != IGNORE).sum()), 1)
    B, accum = tcfg.batch_size, tcfg.grad_accum
    total = torch.zeros((), dtype=torch.float64, device=rt.device)
    for a in range(accum):
        chunk = slice((a * rt.world + rt.rank) * B, (a * rt.world + rt.rank + 1) * B)
        inp, tgt = inputs[chunk], targets[chunk]
        if len(inp) == 0:
            # The last step can leave this rank without rows; a row with no scored tokens keeps
            # every rank's gradient all-reduce in step and adds nothing.
            inp, tgt = inputs[:1], np.full_like(targets[:1], IGNORE)
        sync = rt.world == 1 or a == accum - 1
        ctx = contextlib.nullcontext() if sync else model.no_sync()  # type: ignore[operator]
        with ctx:
            with rt.autocast():
                loss_sum, _ = model(
                    torch.from_numpy(np.ascontiguousarray(inp)).to(rt.device, non_blocking=True),
                    torch.from_numpy(np.ascontiguousarray(tgt)).to(rt.device, non_blocking=True),
                )
            # DDP averages gradients over ranks; scale so the result is the global token mean.
            (loss_sum * (rt.world / scored)).backward()
        total += loss_sum.detach()
    if rt.world > 1:
        dist.all_reduce(total)
    if tcfg.clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(total) / scored


def _point_to_dict(p: CurvePoint) -> dict[str, Any]:
    return {
        "step": p.step, "tokens": p.tokens, "train_loss": p.train_loss,
        "eval": {d: [e.loss, e.perplexity] for d, e in p.eval.items()},
    }


def _point_from_dict(d: dict[str, Any]) -> CurvePoint:
    return CurvePoint(
        step=d["step"], tokens=d["tokens"], train_loss=d["train_loss"],
        eval={k: DomainEval(loss=v[0], perplexity=v[1]) for k, v in d["eval"].items()},
    )
