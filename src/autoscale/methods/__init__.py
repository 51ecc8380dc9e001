"""The data-mixing methods, behind one interface (`autoscale.methods.base.Method`).

``METHODS`` is the registry: the config's ``methods:`` list names its entries, and each entry's
``section`` is the config section of its settings. Adding a method is one module implementing
`Method` plus one line here (docs/DESIGN.md shows one).
"""

from __future__ import annotations

from autoscale.methods.autoscale import AutoScale
from autoscale.methods.base import Method
from autoscale.methods.dml import DataMixingLaws
from autoscale.methods.doremi import DoReMi
from autoscale.methods.mixture_law import MixtureLawMethod
from autoscale.methods.regmix import RegMix

METHODS: dict[str, Method] = {m.name: m for m in (AutoScale(), RegMix(), DataMixingLaws(), DoReMi(), MixtureLawMethod())}
