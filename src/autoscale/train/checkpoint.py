"""Checkpoints: everything needed to continue a run exactly where it stopped.

One file, ``run_dir/checkpoint.pt``, replaced atomically (written to a temporary name in the same
folder, flushed to disk, then ``os.replace``d), so a run killed at any instant leaves either the
previous checkpoint or the new one, never a torn file. It holds the model and optimizer states, the
optimizer step (which fixes the LR schedule, the sampler position and the masked-LM masks), the RNG
states, the evaluation curve so far, and a fingerprint of the run's inputs so that a checkpoint is
never resumed into a different run.

The file carries its own content hash (``content_sha256``: every tensor's dtype, shape and bytes and
every other value, in key order), checked on load: a damaged checkpoint is one error, never a model
silently resumed or scored. A separate hash file would race with the atomic replace. Checkpoints
written before the hash load unchecked, with a note on stderr.
"""

from __future__ import annotations

import hashlib
import pickle
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoscale.atomic import atomic_open
from autoscale.errors import AutoscaleError

CHECKPOINT = "checkpoint.pt"
FORMAT = 1
HASH = "content_sha256"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (torch-serialisable) and its content hash to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, **state}
    payload[HASH] = content_hash(payload)
    with atomic_open(path, "wb") as f:
        torch.save(payload, f)


def content_hash(state: Any) -> str:
    """SHA-256 of a checkpoint's content: tensors by dtype, shape and bytes, containers in key order."""
    h = hashlib.sha256()
    _feed(h, state)
    return h.hexdigest()


def _feed(h: Any, x: Any) -> None:
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(x.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    elif isinstance(x, dict):
        h.update(b"{")
        for key in sorted(x, key=repr):
            h.update(repr(key).encode() + b":")
            _feed(h, x[key])
        h.update(b"}")
    elif isinstance(x, (list, tuple)):  # a tuple may come back a list: the same content
        h.update(b"[")
        for v in x:
            _feed(h, v)
            h.update(b",")
        h.update(b"]")
    else:
        h.update(repr(x).encode())


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
    stored = state.pop(HASH, None)
    if stored is None:
        print(f"note: checkpoint {path} was written before checkpoints carried a content hash; loaded unchecked",
              file=sys.stderr)
    elif stored != content_hash(state):
        raise AutoscaleError(f"checkpoint {path} is damaged (its content does not match its hash); delete it to "
                             "train the run again")
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
