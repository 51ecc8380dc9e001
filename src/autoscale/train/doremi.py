"""DoReMi's training mode (Xie et al., arXiv 2305.10429): a proxy trained by group DRO against a
reference model, learning domain weights as it goes (the update itself: `autoscale.laws.doremi`).

`train_run(..., mode={"kind": "doremi", ...})` runs it in two phases in one run folder, each
resumable from its own checkpoint:

1. the reference: an ordinary run on the base mixture in ``RUN_DIR/reference`` (its final weights
   kept in its checkpoint);
2. the proxy: a fresh model on batches of the same base mixture. Each step computes the token losses
   of the proxy and of the frozen reference on the batch, updates alpha (`autoscale.laws.doremi`) and
   minimises sum_i alpha_i x (the proxy's mean token loss on domain i's tokens in the batch).
   alpha and its whole history live in the checkpoint, so a killed run resumes to the same weights.

The mixture is the mean of alpha over the steps (``metrics.json``: ``doremi.weights``). One process
only (no data parallelism).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoscale.errors import AutoscaleError
from autoscale.laws.doremi import ETA, SMOOTHING, excess_losses, update_weights
from autoscale.train.models import IGNORE

REFERENCE = "reference"


@dataclass
class DoReMiState:
    """The proxy phase's state: the frozen reference, alpha over ``domains`` and its history."""

    reference: torch.nn.Module
    domains: tuple[str, ...]
    eta: float = ETA
    smoothing: float = SMOOTHING
    alpha: np.ndarray = field(default_factory=lambda: np.zeros(0))
    history: list[list[float]] = field(default_factory=list)
    excess: list[list[float]] = field(default_factory=list)  # each step's per-domain excess loss

    def __post_init__(self) -> None:
        if self.alpha.size == 0:
            self.alpha = np.full(len(self.domains), 1.0 / len(self.domains))

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha.tolist(), "history": self.history, "excess": self.excess}

    def restore(self, saved: Mapping[str, Any]) -> None:
        self.alpha = np.asarray(saved["alpha"], dtype=float)
        self.history = [list(map(float, h)) for h in saved["history"]]
        self.excess = [list(map(float, h)) for h in saved["excess"]]

    def report(self) -> dict[str, Any]:
        """What metrics.json keeps: the mean weights (DoReMi's answer), the last alpha, the history."""
        mean = np.mean(self.history, axis=0) if self.history else self.alpha
        return {"weights": dict(zip(self.domains, map(float, mean), strict=True)),
                "final_alpha": dict(zip(self.domains, map(float, self.alpha), strict=True)),
                "mean_excess": dict(zip(self.domains, map(float, np.mean(self.excess, axis=0)), strict=True))
                if self.excess else {},
                "history": self.history, "eta": self.eta, "smoothing": self.smoothing, "steps": len(self.history)}


def mode_settings(mode: Mapping[str, Any] | None) -> dict[str, float] | None:
    """The DoReMi settings of a training ``mode`` (None: an ordinary run); one line when malformed."""
    if mode is None:
        return None
    if mode.get("kind") != "doremi" or set(mode) - {"kind", "eta", "smoothing"}:
        raise AutoscaleError(f"unknown training mode {dict(mode)!r} (known: kind doremi, eta, smoothing)")
    eta, smoothing = float(mode.get("eta", ETA)), float(mode.get("smoothing", SMOOTHING))
    if not (eta > 0 and 0 <= smoothing <= 1):
        raise AutoscaleError(f"DoReMi needs eta > 0 and 0 <= smoothing <= 1, got {eta}, {smoothing}")
    return {"eta": eta, "smoothing": smoothing}


def load_reference(model: torch.nn.Module, path: Path) -> torch.nn.Module:
    """The reference phase's final weights in ``model``, frozen."""
    from autoscale.train.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    if state is None:
        raise AutoscaleError(f"DoReMi: the reference run kept no weights at {path}; delete {path.parent} to retrain it")
    model.load_state_dict(state["model"])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def doremi_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: np.ndarray,
    targets: np.ndarray,
    labels: Sequence[int],
    state: DoReMiState,
    batch_size: int,
    device: torch.device,
    clip: float | None,
) -> float:
    """One optimizer step of the proxy on a global batch; alpha is updated first (on this batch's
    excess losses), then the alpha-weighted per-domain loss is minimised. Returns the plain mean
    token loss of the batch (for the training-loss log)."""
    domain = np.asarray(labels, dtype=np.int64)
    scored = targets != IGNORE
    chunks = [slice(a, a + batch_size) for a in range(0, len(inputs), batch_size)]
    losses, reference = [], []
    for chunk in chunks:
        inp = torch.from_numpy(np.ascontiguousarray(inputs[chunk])).to(device)
        tgt = torch.from_numpy(np.ascontiguousarray(targets[chunk])).to(device)
        losses.append(model.token_losses(inp, tgt))
        with torch.no_grad():
            reference.append(state.reference.token_losses(inp, tgt))
    proxy_np = torch.cat([t.detach() for t in losses]).cpu().double().numpy()
    ref_np = torch.cat(reference).cpu().double().numpy()
    k = len(state.domains)
    excess = excess_losses(proxy_np, ref_np, domain, scored, k)
    state.alpha = update_weights(state.alpha, excess, state.eta, state.smoothing)
    state.history.append(state.alpha.tolist())
    state.excess.append(excess.tolist())
    # each sequence's weight: alpha of its domain over that domain's scored tokens in the batch
    count = np.bincount(domain, weights=scored.sum(axis=1), minlength=k)
    per_seq = np.divide(state.alpha, count, out=np.zeros(k), where=count > 0)[domain]
    weights = torch.from_numpy(per_seq).to(device=device, dtype=torch.float32)
    total = sum((t.sum(dim=1) * weights[c]).sum() for t, c in zip(losses, chunks, strict=True))
    total.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(proxy_np.sum() / max(int(scored.sum()), 1))
