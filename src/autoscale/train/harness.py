"""lm-evaluation-harness (`lm-eval`) adapter for the causal models autoscale trains.

`ProxyHarnessLM` is a harness ``LM``: log-likelihoods of continuations, rolling log-likelihoods of
whole texts and greedy generation, computed by a run's kept weights with the token store's
tokenizer. A context longer than the model's is cut from the left (the harness's convention), with
one warning per call. Encoders (masked LMs) are refused: the paper evaluates BERT by fine-tuning,
which is out of scope here.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from autoscale.errors import AutoscaleError

try:
    from lm_eval.api.model import LM
except ImportError:  # the optional extra; `require_harness` says so in one line
    LM = object  # type: ignore[assignment,misc]


def kept_weights(run_dir: str | Path) -> dict[str, Any]:
    """The checkpoint a finished run kept (weights and model settings); one line when it kept none."""
    from autoscale.train.checkpoint import CHECKPOINT, load_checkpoint

    state = load_checkpoint(Path(run_dir) / CHECKPOINT)
    if state is None or "model_config" not in state:
        raise AutoscaleError(f"{run_dir} kept no weights to evaluate (no {CHECKPOINT} with its model); "
                             "retrain it with downstream evaluation configured")
    return state


def require_harness() -> None:
    """One line when the ``eval`` extra is missing."""
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise AutoscaleError("downstream evaluation needs lm-eval: pip install 'autoscale[eval]'") from None


class ProxyHarnessLM(LM):  # type: ignore[misc,valid-type]
    """A causal proxy for the harness. ``context``: tokens the model sees at once."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, eot_id: int, context: int, batch_size: int = 16):
        super().__init__()
        self.model, self.tokenizer, self.eot_id, self.context = model.eval(), tokenizer, eot_id, context
        self.batch_size = batch_size

    @classmethod
    def from_run(cls, run_dir: str | Path, store: Any, state: Mapping[str, Any] | None = None) -> ProxyHarnessLM:
        """The model of a finished run whose weights were kept (its checkpoint ``state``, read from
        ``run_dir`` when not given), with ``store``'s tokenizer (a `TokenStore`)."""
        from pydantic import ValidationError

        from autoscale.train.config import ModelConfig
        from autoscale.train.models import build_model, hf_objective

        state = kept_weights(run_dir) if state is None else state
        try:
            config = ModelConfig.model_validate(state["model_config"])
            vocab = int(state["vocab_size"])
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
            problem = f"no {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc).splitlines()[0][:160]
            raise AutoscaleError(f"{run_dir}: the checkpoint's model settings are damaged ({problem}); "
                                 "delete the run folder to train it again") from None
        if hf_objective(config) != "causal":
            raise AutoscaleError(f"{run_dir}: downstream evaluation supports causal models only, not a masked "
                                 f"{config.kind} (the paper fine-tunes encoders, which is out of scope)")
        model = build_model(config, vocab)
        try:
            model.load_state_dict(state["model"])
        except (RuntimeError, KeyError, TypeError) as exc:  # shapes that no longer match the settings
            raise AutoscaleError(f"{run_dir}: the checkpoint's weights do not fit its model settings "
                                 f"({str(exc).splitlines()[0][:160]}); delete the run folder to train it again") from None
        return cls(model, store.tokenizer(), int(store.eot_id), config.context or config.seq_len)

    @classmethod
    def from_hf_folder(cls, folder: str | Path) -> ProxyHarnessLM:
        """A Hugging Face causal LM saved with ``save_pretrained`` (weights, config and a fast
        tokenizer in ``folder``), scored the same way as our runs."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from autoscale.train.models import HFModel

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise AutoscaleError(f"{folder}: not loadable as a causal LM with its tokenizer "
                                 f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
        backend = getattr(tokenizer, "backend_tokenizer", None)
        eot = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.bos_token_id
        if backend is None or eot is None:
            raise AutoscaleError(f"{folder}: its tokenizer needs to be a fast one (tokenizer.json) with an end-of-text "
                                 "(eos) token")
        cfg = model.config
        context = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None) or 2048
        return cls(HFModel(model, "causal", int(cfg.vocab_size)), backend, int(eot), int(context))

    # --- the harness's interface ------------------------------------------------------------------

    def loglikelihood(self, requests: Sequence[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = []
        for request in requests:
            context, continuation = request.args[0], request.args[1]
            ctx = [self.eot_id] + self._encode(context)
            pairs.append((ctx, self._encode(continuation)))
        return self._score(pairs)

    def loglikelihood_rolling(self, requests: Sequence[Any], disable_tqdm: bool = False) -> list[float]:
        out = []
        for request in requests:
            ids = self._encode(request.args[0])
            stream = [self.eot_id] + ids
            # disjoint windows of targets, each scored with as much preceding text as the model sees
            windows = [(stream[:start + 1], ids[start:start + self.context]) for start in range(0, len(ids), self.context)]
            out.append(sum(ll for ll, _ in self._score(windows, warn=False)))
        return out

    def generate_until(self, requests: Sequence[Any], disable_tqdm: bool = False) -> list[str]:
        out = []
        for request in requests:
            context, options = request.args[0], (request.args[1] if len(request.args) > 1 else {}) or {}
            until = options.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            ids = [self.eot_id] + self._encode(context)
            new: list[int] = []
            with torch.no_grad():
                for _ in range(int(options.get("max_gen_toks", 64))):
                    window = (ids + new)[-self.context:]
                    logits = self.model.logits(torch.tensor([window]))[0, -1]
                    token = int(logits.argmax())
                    if token == self.eot_id:
                        break
                    new.append(token)
                    text = self.tokenizer.decode(new)
                    if any(u in text for u in until):
                        break
            text = self.tokenizer.decode(new)
            for u in until:
                text = text.split(u)[0]
            out.append(text)
        return out

    # --- helpers ------------------------------------------------------------------------------------

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids) if text else []

    def _score(self, pairs: Sequence[tuple[list[int], list[int]]], warn: bool = True) -> list[tuple[float, bool]]:
        """(sum of log-probabilities of each continuation, whether greedy decoding gives it)."""
        results: list[tuple[float, bool]] = []
        cut = 0
        for start in range(0, len(pairs), self.batch_size):
            batch = pairs[start:start + self.batch_size]
            rows, spans = [], []
            for ctx, cont in batch:
                tokens = (ctx + cont)[-(self.context + 1):]
                cut += len(ctx) + len(cont) > self.context + 1
                n = min(len(cont), len(tokens) - 1)
                rows.append(tokens)
                spans.append(n)
            width = max(len(r) for r in rows) - 1
            inputs = torch.full((len(rows), width), self.eot_id, dtype=torch.long)
            for i, r in enumerate(rows):
                inputs[i, : len(r) - 1] = torch.tensor(r[:-1])
            with torch.no_grad():
                logprobs = F.log_softmax(self.model.logits(inputs).float(), dim=-1)
            for i, (r, n) in enumerate(zip(rows, spans, strict=True)):
                target = torch.tensor(r[-n:])
                positions = torch.arange(len(r) - 1 - n, len(r) - 1)
                picked = logprobs[i, positions]
                results.append((float(picked.gather(1, target[:, None]).sum()),
                                bool((picked.argmax(dim=-1) == target).all())))
        if cut and warn:
            warnings.warn(f"{cut} request(s) longer than the model's {self.context} tokens: cut from the left",
                          stacklevel=2)
        return results
