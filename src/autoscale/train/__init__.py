"""Proxy training: models (decoder, encoder, Hugging Face), loop, evaluation, checkpoints.

The only package that imports torch, and only in ``models``, ``loop``, ``evaluate`` and
``checkpoint``. Importing ``autoscale.train`` itself is cheap: ``train_run`` is loaded on first use.

    from autoscale.train import ProxyConfig, train_run
    metrics = train_run("store/", {"web": 2e5, "code": 1e5}, ProxyConfig(), "runs/base")
    metrics.final["web"].perplexity
"""

from __future__ import annotations

from typing import Any

from autoscale.train.config import ProxyConfig
from autoscale.train.metrics import RunMetrics, read_metrics, write_metrics

__all__ = ["ProxyConfig", "RunMetrics", "read_metrics", "write_metrics", "train_run"]


def __getattr__(name: str) -> Any:
    if name == "train_run":
        from autoscale.train.loop import train_run

        return train_run
    raise AttributeError(f"module 'autoscale.train' has no attribute {name!r}")
