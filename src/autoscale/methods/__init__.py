"""The data-mixing methods, behind one interface (`autoscale.methods.base.Method`).

``METHODS`` is the registry: the config's ``methods:`` list names its entries, and each entry's
``section`` is the config section of its settings. Adding a method is one module implementing
`Method` plus one line here, or a call of `register` from the user's own code
(docs/examples/add_a_method.py is one, run end to end by the tests).
"""

from __future__ import annotations

from autoscale.methods.autoscale import AutoScale
from autoscale.methods.base import Method
from autoscale.methods.dml import DataMixingLaws
from autoscale.methods.doremi import DoReMi
from autoscale.methods.mixture_law import MixtureLawMethod
from autoscale.methods.regmix import RegMix

METHODS: dict[str, Method] = {m.name: m for m in (AutoScale(), RegMix(), DataMixingLaws(), DoReMi(), MixtureLawMethod())}
#: what a config without ``methods:`` runs (and what folders written before ``methods:`` existed ran)
DEFAULT_METHODS = (AutoScale.name,)


def register(method: Method) -> Method:
    """Add ``method`` to the registry: configs validated from now on take its name in ``methods:``
    and its ``section``. A name or section already taken is refused."""
    from autoscale.errors import AutoscaleError

    for m in METHODS.values():
        if method.name == m.name or method.section == m.section:
            raise AutoscaleError(f"method {method.name!r} (section {method.section!r}) clashes with method "
                                 f"{m.name!r} (section {m.section!r})")
    METHODS[method.name] = method
    return method
