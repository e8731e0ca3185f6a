"""What DQL derives from one state of the catalog, kept per process and keyed by the catalog's
generation token (:mod:`modelhub.catalog.generation`): the vocabulary a statement is bound
against and the bound plans. A token names one committed state, so an entry never goes
stale: a commit brings a new token, and the next statement loads afresh. Bounded (LRU),
since a long-lived process sees many states.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

V = TypeVar("V")


class StateCache(Generic[V]):
    """A bounded LRU map; ``get_or_make`` builds a missing value (outside the lock: two threads
    may both build it, and either result is right)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: "OrderedDict[Hashable, V]" = OrderedDict()
        self._lock = threading.Lock()      # the web UI serves queries from several threads

    def get_or_make(self, key: Hashable, make: Callable[[], V]) -> V:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        value = make()
        with self._lock:
            self._entries[key] = value
            if len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


#: generation -> Vocabulary (a handful of states at a time is plenty: usually only the newest is read)
VOCABULARIES: StateCache = StateCache(4)
#: (generation, statement text) -> bound plan
PLANS: StateCache = StateCache(256)


def clear_state_caches() -> None:
    VOCABULARIES.clear()
    PLANS.clear()
