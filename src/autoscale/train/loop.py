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
    started = time.perf_counter()
    mcfg, tcfg, ecfg = config.model, config.train, config.eval
    seq_len, vocab = mcfg.seq_len, int(store.vocab_size)
    objective = hf_objective(mcfg)
    eval_domains = ecfg.domains or store.domains

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler = MixtureSampler(store, tokens, seq_len, tcfg.seed, max_epochs=tcfg.max_epochs, order=tcfg.sampler)
    notes = [str(w.message) for w in caught]
    n_seq = len(sampler)
    micro = tcfg.batch_size
    G = micro * tcfg.grad_accum * rt.world
    if n_seq < G:
        raise AutoscaleError(
            f"budget of {sum(tokens.values()):.0f} tokens is smaller than one batch: {n_seq} sequences of "
            f"{seq_len} tokens < {G} (batch_size {micro} x grad_accum {tcfg.grad_accum} x {rt.world} processes)"
        )
    total = math.ceil(n_seq / G)
    evals_at = eval_steps(total, ecfg.points)
    fingerprint = run_fingerprint(config, tokens, store.manifest_hash, G)
    if doremi is not None:  # the same data and model, another computation
        fingerprint = hashlib.sha256(json.dumps([fingerprint, "doremi", dict(doremi)]).encode()).hexdigest()[:16]

    metrics_path, ckpt_path = run_dir / METRICS, run_dir / CHECKPOINT
    if metrics_path.exists():
        done = read_metrics(metrics_path)
        if done.extra.get("fingerprint") == fingerprint:
            return done
        raise AutoscaleError(f"{run_dir} already holds the metrics of a different run; use another output folder")

    # Seed before building the model: the initial weights are part of the run's definition.
    torch.manual_seed(tcfg.seed)
    np.random.seed(tcfg.seed % 2**32)
    random.seed(tcfg.seed)
    raw = build_model(mcfg, vocab).to(rt.device)
    n_params = count_params(raw)
    optimizer = make_optimizer(raw, tcfg, rt.device)
    model: torch.nn.Module = torch.compile(raw) if tcfg.compile else raw
    if rt.world > 1:
        ddp_kwargs = {"device_ids": [rt.device.index]} if rt.device.type == "cuda" else {}
        model = torch.nn.parallel.DistributedDataParallel(model, **ddp_kwargs)

    dro = None
    if doremi is not None:
        from autoscale.train.doremi import REFERENCE, DoReMiState, load_reference

        if rt.world > 1:
            raise AutoscaleError("DoReMi trains in one process: run it without torchrun")
        reference = load_reference(build_model(mcfg, vocab).to(rt.device), run_dir / REFERENCE / CHECKPOINT)
        dro = DoReMiState(reference, tuple(sampler.domains), **doremi)
        domain_index = {d: i for i, d in enumerate(dro.domains)}

    eval_set = build_eval_set(
        {d: list(validation_batches(store, d, seq_len, ecfg.batch_size, ecfg.max_tokens)) for d in eval_domains},
        objective, vocab, mcfg.mask_prob, ecfg.seed,
    )

    # Run state; replaced wholesale by a checkpoint when resuming.
    step, curve, window, train_time, wall_before = 0, [], [0.0, 0], 0.0, 0.0
    state = load_checkpoint(ckpt_path)
    if state is not None:
        if state.get("fingerprint") != fingerprint:
            raise AutoscaleError(f"{ckpt_path} belongs to a different run; use another output folder or delete it")
        raw.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        step, curve, window = state["step"], [_point_from_dict(p) for p in state["curve"]], list(state["window"])
        train_time, wall_before = state["train_time_s"], state["wall_time_s"]
        if dro is not None:
            dro.restore(state["doremi"])

    def tokens_at(s: int) -> int:
        return min(s * G, n_seq) * seq_len

    def checkpoint() -> None:
        if rt.rank != 0:
            return
        save_checkpoint(ckpt_path, {
            "fingerprint": fingerprint, "step": step, "model": raw.state_dict(),
            "model_config": mcfg.model_dump(mode="json"), "vocab_size": vocab,  # to rebuild it for evaluation
            "optimizer": optimizer.state_dict(), "rng": rng_state(),
            "curve": [_point_to_dict(p) for p in curve], "window": window,
            "train_time_s": train_time, "wall_time_s": wall_before + time.perf_counter() - started,
            **({} if dro is None else {"doremi": dro.to_dict()}),
        })

    def record_eval() -> bool:
        """Evaluate at the current step; False if the model produced a non-finite loss."""
        result = evaluate(raw, eval_set, rt.device, rt.autocast, rt.rank, rt.world)
        train_loss = window[0] / window[1] if window[1] else None
        curve.append(CurvePoint(step=step, tokens=tokens_at(step), eval=result, train_loss=train_loss))
        window[:] = [0.0, 0]
        return all(math.isfinite(e.loss) for e in result.values())

    diverged_at: int | None = None
    if step == 0 and not curve:
        record_eval()
    batches = sampler.batches(G, start=step * G)
    model.train()
    segment_start, segment_tokens = time.perf_counter(), 0
    while step < total:
        t0 = time.perf_counter()
        seqs = next(batches)
        lr = lr_at(step, total, tcfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if dro is None:
            loss = train_step(model, optimizer, seqs, step, objective, vocab, config, rt)
        else:
            from autoscale.train.doremi import doremi_step

            rng = train_mask_rng(tcfg.seed, step) if objective == "masked" else None
            inputs, targets = split_sequences(seqs, objective, rng, vocab, config.model.mask_prob)
            labels = [domain_index[d] for d in sampler.domain_order(step * G, step * G + len(seqs))]
            with rt.autocast():
                loss = doremi_step(raw, optimizer, inputs, targets, labels, dro, micro, rt.device, tcfg.clip)
        train_time += time.perf_counter() - t0
        step += 1
        segment_tokens += len(seqs) * seq_len
        if not math.isfinite(loss):
            diverged_at = step
            break
        window[0] += loss
        window[1] += 1
        if step in evals_at:
            if not record_eval():
                diverged_at = step
                break
            checkpoint()
        elif tcfg.checkpoint_every and step % tcfg.checkpoint_every == 0:
            checkpoint()
        if progress is not None and rt.rank == 0:
            rate = segment_tokens / max(time.perf_counter() - segment_start, 1e-9)
            progress(step, total, tokens_at(step), rate)

    trained = {d: int(v) for d, v in sampler.tokens_trained.items()}
    if diverged_at is not None:  # only what was trained before the run stopped
        seen = Counter(sampler.domain_order(0, min(step * G, n_seq)))
        trained = {d: seen.get(d, 0) * seq_len for d in trained}
    status = "completed" if diverged_at is None else "diverged"
    final = dict(curve[-1].eval) if diverged_at is None else {}
    finite_curve = tuple(p for p in curve if all(math.isfinite(e.loss) for e in p.eval.values()))
    metrics = RunMetrics(
        status=status,
        final=final,
        diverged_at_step=diverged_at,
        curve=finite_curve,
        tokens_per_domain=trained,
        mixture=dict(tokens),
        tokens_per_s=tokens_at(step) / train_time if train_time > 0 else None,
        params=n_params,
        wall_time_s=wall_before + time.perf_counter() - started,
        extra={
            "fingerprint": fingerprint,
            "objective": objective,
            "steps": total,
            "global_batch_tokens": G * seq_len,
            "world_size": rt.world,
            "store": store.manifest_hash,
            "epochs": {d: float(v) for d, v in sampler.epochs.items()},
            "warnings": notes,
            **({} if dro is None else {"doremi": dro.report()}),
        },
    )
    if rt.rank == 0:
        write_metrics(metrics, metrics_path)
        if not tcfg.keep_checkpoint:
            ckpt_path.unlink(missing_ok=True)
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
