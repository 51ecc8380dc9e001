"""The baseline mixtures every method is validated against, in one registry.

A baseline is named in ``target.compare``; each says what it is (`Baseline.description`, shown in
the report) and gives weights over the experiment's domains. User mixtures (``target.mixtures``)
are baselines too, under their own names. A baseline without weights here is offered by a method
(`Method.offers`: ``ddo``, AutoScale's DDO optimum of its largest budget reused as is at the
target) and exists only when that method runs.

Pure: no files; weights sum to 1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from autoscale.errors import AutoscaleError

#: The LLaMA-1 pre-training mixture (Touvron et al. 2023, table 1), source -> weight (sampling
#: proportion of tokens).
LLAMA_WEIGHTS = {
    "common_crawl": 0.67, "c4": 0.15, "github": 0.045, "wikipedia": 0.045, "books": 0.045,
    "arxiv": 0.025, "stackexchange": 0.02,
}

#: Which demo domain receives each LLaMA source's weight. The whole mapping:
#:
#: ===============  ======  ============  ======================================================
#: LLaMA source     weight  demo domain   why
#: ===============  ======  ============  ======================================================
#: CommonCrawl      0.67    web           web text
#: C4               0.15    web           also web text: CommonCrawl filtered to clean English
#: GitHub           0.045   code
#: Wikipedia        0.045   encyclopedia
#: Books            0.045   books
#: ArXiv            0.025   technical
#: StackExchange    0.02    qa
#: (none)           0       news          State of the Union addresses: LLaMA has no such source
#: ===============  ======  ============  ======================================================
#:
#: So the LLaMA-style mixture is web-heavy (0.82 on web with all 7 domains) and puts nothing on
#: news. A domain outside this table gets 0; the weights are renormalised over the domains
#: present (web, news, code, books: web 0.82/0.91 = 0.90).
LLAMA_TO_DEMO = {
    "common_crawl": "web", "c4": "web", "github": "code", "wikipedia": "encyclopedia",
    "books": "books", "arxiv": "technical", "stackexchange": "qa",
}

#: How the report names each LLaMA source.
LLAMA_SOURCE_NAMES = {
    "common_crawl": "CommonCrawl", "c4": "C4", "github": "GitHub", "wikipedia": "Wikipedia",
    "books": "Books", "arxiv": "ArXiv", "stackexchange": "StackExchange",
}


def llama_style(domains: Sequence[str]) -> dict[str, float]:
    """The LLaMA-1 weights mapped onto ``domains`` by `LLAMA_TO_DEMO` (sources sharing a domain
    add up; a domain no source maps to gets 0), renormalised over the domains present."""
    weights = dict.fromkeys(domains, 0.0)
    for source, w in LLAMA_WEIGHTS.items():
        if LLAMA_TO_DEMO[source] in weights:
            weights[LLAMA_TO_DEMO[source]] += w
    total = sum(weights.values())
    if total <= 0:
        raise AutoscaleError(f"no domain among {', '.join(domains)} has a LLaMA-mixture counterpart "
                             f"(llama-style knows: {', '.join(sorted(set(LLAMA_TO_DEMO.values())))})")
    return {d: w / total for d, w in weights.items()}


def llama_mapping(domains: Sequence[str]) -> str:
    """One line for the report: which LLaMA source went to which of ``domains``, with what weight."""
    by_domain: dict[str, list[str]] = {}
    for source, w in LLAMA_WEIGHTS.items():
        by_domain.setdefault(LLAMA_TO_DEMO[source], []).append(f"{LLAMA_SOURCE_NAMES[source]} {w:g}")
    weights = llama_style(domains)
    parts = [f"{' + '.join(by_domain[d])} -> {d}" if d in by_domain else f"no LLaMA source -> {d}"
             for d in domains]
    dropped = [f"{LLAMA_SOURCE_NAMES[s]} {w:g}" for s, w in LLAMA_WEIGHTS.items() if LLAMA_TO_DEMO[s] not in weights]
    text = "LLaMA-1 weights (Touvron et al. 2023): " + "; ".join(parts)
    if dropped:
        text += f"; not in this run: {', '.join(dropped)}"
    return text + "; renormalised: " + ", ".join(f"{d} {w:.3f}" for d, w in weights.items())


@dataclass(frozen=True)
class Baseline:
    """A named baseline: ``weights(domains, natural)`` (``natural``: unique tokens per domain, None
    without a token store), None when a method offers it (`Method.offers`); ``needs``: "store"
    when it requires a token store."""

    name: str
    description: str
    weights: Callable[[Sequence[str], Mapping[str, float] | None], dict[str, float]] | None
    needs: str | None = None


def _natural(domains: Sequence[str], natural: Mapping[str, float] | None) -> dict[str, float]:
    assert natural is not None  # the config validator guarantees a store
    return {d: float(natural[d]) for d in domains}


BASELINES: dict[str, Baseline] = {b.name: b for b in (
    Baseline("uniform", "the same weight on every domain", lambda domains, _n: {d: 1.0 for d in domains}),
    Baseline("natural", "the corpus's own token shares (unique training tokens per domain)", _natural, "store"),
    Baseline("ddo", "AutoScale's DDO optimum of its largest search budget, reused as is at the target", None),
    Baseline("llama-style", "the LLaMA-1 pre-training weights mapped onto the domains (LLAMA_TO_DEMO)",
             lambda domains, _n: llama_style(domains)),
)}

#: the comparisons validated when target.compare is not given (one a method offers only when it runs)
DEFAULT_COMPARE = ("uniform", "natural", "ddo")
