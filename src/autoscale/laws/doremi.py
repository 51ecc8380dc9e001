"""DoReMi's domain-weight update (Xie et al., arXiv 2305.10429, algorithm 1), pure numpy.

At each step of the proxy run, for each domain i with tokens in the batch:

    lambda_i = sum over its scored tokens of max(loss_proxy - loss_reference, 0) / (its scored tokens)

(domains absent from the batch get lambda_i = 0), then exponentiated-gradient ascent and smoothing
towards uniform:

    alpha' = alpha * exp(eta * lambda);   alpha = (1 - c) * alpha' / sum(alpha') + c / k

The proxy minimises sum_i alpha_i * (mean token loss of domain i in the batch), and DoReMi's
mixture is the mean of alpha over the steps. The paper's settings: eta = 1, c = 1e-3.
"""

from __future__ import annotations

import numpy as np

ETA = 1.0
SMOOTHING = 1e-3


def excess_losses(proxy: np.ndarray, reference: np.ndarray, domain: np.ndarray, scored: np.ndarray, k: int) -> np.ndarray:
    """``[k]`` per-domain mean clipped excess loss of one batch.

    ``proxy``/``reference``: ``[n, T]`` token losses; ``domain``: ``[n]`` domain index of each sequence;
    ``scored``: ``[n, T]`` boolean, the tokens that count.
    """
    excess = np.where(scored, np.maximum(proxy - reference, 0.0), 0.0).sum(axis=1)
    tokens = scored.sum(axis=1)
    total = np.bincount(domain, weights=excess, minlength=k)
    count = np.bincount(domain, weights=tokens, minlength=k)
    return np.divide(total, count, out=np.zeros(k), where=count > 0)


def update_weights(alpha: np.ndarray, excess: np.ndarray, eta: float = ETA, smoothing: float = SMOOTHING) -> np.ndarray:
    """One exponentiated-gradient step on the domain weights, then smoothing towards uniform."""
    logits = np.log(alpha) + eta * excess
    raised = np.exp(logits - logits.max())  # the same ratios as alpha * exp(eta * excess), no overflow
    return (1.0 - smoothing) * raised / raised.sum() + smoothing / alpha.size
