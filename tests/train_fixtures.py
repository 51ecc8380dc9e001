"""Shared pieces of the trainer tests: a real token store built from the committed fixture corpus
(five domains of public-domain / permissive text), and tiny proxy configs.

A test module loads the fixtures with ``pytest_plugins = ["train_fixtures"]`` and imports the
helpers. The store is built once per test session (BPE vocabulary 512, 4,096 validation tokens per
domain).

PYTEST_DONT_REWRITE (no asserts here; the test modules import this file before pytest loads it
as a plugin, which would otherwise warn that it cannot rewrite it)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autoscale.data.store import TokenStore, prepare_store
from autoscale.train.config import ProxyConfig

CORPUS = Path(__file__).parent / "fixtures" / "corpus"
DOMAINS = ("web", "news", "code", "books", "encyclopedia")


@pytest.fixture(scope="session")
def fixture_store(tmp_path_factory: pytest.TempPathFactory) -> TokenStore:
    out = tmp_path_factory.mktemp("train_store") / "store"
    return prepare_store({d: CORPUS / f"{d}.jsonl" for d in DOMAINS}, out, vocab_size=512, val_tokens=4096)


def tiny_config(store: TokenStore | Path | None = None, **sections: dict[str, Any]) -> ProxyConfig:
    """A 2-layer, 64-wide proxy on 64-token sequences; ``sections`` override fields per section."""
    base: dict[str, Any] = {
        "model": {"kind": "decoder", "n_layer": 2, "d_model": 64, "n_head": 2, "seq_len": 64},
        "train": {"batch_size": 8, "lr": 3e-3, "threads": 1, "seed": 0},
        "eval": {"points": 4, "max_tokens": 2048},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    if store is not None:
        base["store"] = str(getattr(store, "path", store))
    return ProxyConfig.from_dict(base)


def uniform(tokens_per_domain: float) -> dict[str, float]:
    """The same number of training tokens for every fixture domain."""
    return {d: float(tokens_per_domain) for d in DOMAINS}
