"""What the catalog knows: the names a query may mention (for binding and completion)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..catalog.selection_vocabulary import catalog_names


@dataclass(frozen=True)
class Vocabulary:
    has_versions: bool
    models: frozenset[str] = frozenset()
    layer_names: frozenset[str] = frozenset()
    ops: frozenset[str] = frozenset()
    hparam_keys: frozenset[str] = frozenset()
    metric_names: frozenset[str] = frozenset()
    saved: dict = field(default_factory=dict)      # saved query name -> text

    @staticmethod
    def load(con) -> "Vocabulary":
        """The names in the catalog ``con`` reads (a connection of a read or write scope)."""
        n = catalog_names(con)
        return Vocabulary(has_versions=n.has_versions, models=n.models, layer_names=n.layer_names, ops=n.ops,
                          hparam_keys=n.hparam_keys, metric_names=n.metric_names, saved=n.saved)

    @staticmethod
    def empty() -> "Vocabulary":
        return Vocabulary(has_versions=False)
