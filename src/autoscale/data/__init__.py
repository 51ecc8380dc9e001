"""Domain data: corpora in, token store out, mixture sequences for training.

- `sources`: reading user corpora (.txt, .jsonl/.jsonl.gz, .parquet, HF datasets), streamed.
- `demo`: the embedded 7-domain demo corpus built from package-registry downloads
  (web, news, code, books, encyclopedia, technical, qa; see `autoscale.data.demo`).
- `tokenizer`: byte-level BPE training / loading; `<|endoftext|>` separates documents.
- `store`: `prepare_store` (corpora -> token store) and `TokenStore` (verified, memory-mapped).
- `sampler`: `MixtureSampler` (exact per-domain quotas; a coupled or shuffled order) and
  `validation_batches` (fixed split).

Default data directory: ``$AUTOSCALE_DATA`` or ``~/.cache/autoscale``.
"""

from autoscale.data.demo import DemoCorpus, default_data_dir, demo_sources, fetch_demo
from autoscale.data.sampler import MixtureSampler, RepetitionWarning, validation_batches
from autoscale.data.sources import DomainSource
from autoscale.data.store import DomainStats, TokenStore, prepare_store

__all__ = [
    "DemoCorpus",
    "DomainSource",
    "DomainStats",
    "MixtureSampler",
    "RepetitionWarning",
    "TokenStore",
    "default_data_dir",
    "demo_sources",
    "fetch_demo",
    "prepare_store",
    "validation_batches",
]
