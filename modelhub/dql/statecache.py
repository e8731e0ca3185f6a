"""What DQL derives from one state of the catalog, kept per process and keyed by the catalog's
generation token (:mod:`modelhub.catalog.generation`): the vocabulary a statement is bound
against and the bound plans. A token names one committed state, so an entry never goes
stale: a commit brings a new token, and the next statement loads afresh. Bounded (LRU),
since a long-lived process sees many states.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

V = TypeVar("V")


class StateCache(Generic[V]):
    """A bounded LRU map; ``get_or_make`` builds a missing value once."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: "OrderedDict[Hashable, V]" = OrderedDict()

    def get_or_make(self, key: Hashable, make: Callable[[], V]) -> V:
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = make()
        self._entries[key] = value
        if len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self._entries.clear()


#: generation -> Vocabulary (a handful of states at a time is plenty: usually only the newest is read)
VOCABULARIES: StateCache = StateCache(4)
#: (generation, statement text) -> bound plan
PLANS: StateCache = StateCache(256)


def clear_state_caches() -> None:
    VOCABULARIES.clear()
    PLANS.clear()
