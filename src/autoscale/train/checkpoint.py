"""Checkpoints: everything needed to continue a run exactly where it stopped.

One file, ``run_dir/checkpoint.pt``, replaced atomically (written to a temporary name in the same
folder, flushed to disk, then ``os.replace``d), so a run killed at any instant leaves either the
previous checkpoint or the new one, never a torn file. It holds the model and optimizer states, the
optimizer step (which fixes the LR schedule, the sampler position and the masked-LM masks), the RNG
states, the evaluation curve so far, and a fingerprint of the run's inputs so that a checkpoint is
never resumed into a different run.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoscale.atomic import atomic_open
from autoscale.errors import AutoscaleError

CHECKPOINT = "checkpoint.pt"
FORMAT = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (torch-serialisable) to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        torch.save({"format": FORMAT, **state}, f)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The saved state, or None if there is no checkpoint."""
    if not path.exists():
        return None
    try:
        # Our own file, but it holds plain containers and tensors only: refuse arbitrary objects.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise AutoscaleError(f"checkpoint {path} is unreadable ({type(exc).__name__}); delete it to restart") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise AutoscaleError(f"checkpoint {path} has an unknown format; delete it to restart")
    return state


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states (CUDA too when present)."""
    state: dict[str, Any] = {
        "python": list(_tuples_to_lists(random.getstate())),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_lists_to_tuples(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state() -> list[Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]


# weights_only loading accepts lists, not the nested tuples of random.getstate().
def _tuples_to_lists(x: Any) -> Any:
    return [_tuples_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _lists_to_tuples(x: Any) -> Any:
    return tuple(_lists_to_tuples(v) for v in x) if isinstance(x, list) else x
