"""Values one process makes once and shares with every caller: a page's client, models, duplicate scans and
counts, which no visitor may make twice (Streamlit lets any visitor clear its own caches)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Shared(Generic[T]):
    """Values by key: each made once (callers that ask for a key being made wait for it, one making at a time),
    the last `kept` made kept; `on_drop` releases a value that goes (a client's connections)."""

    def __init__(self, kept: int, on_drop: Callable[[T], None] | None = None) -> None:
        self.kept = kept
        self.on_drop = on_drop
        self.done: OrderedDict[Hashable, T] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Hashable) -> T | None:
        return self.done.get(key)

    def make(self, key: Hashable, make: Callable[[], T]) -> T:
        """The value kept for `key`, or make() (once, whoever else asks meanwhile)."""
        if (found := self.done.get(key)) is not None:
            return found
        with self.lock:
            if (found := self.done.get(key)) is not None:
                return found
            value = make()
            self.done[key] = value
            while len(self.done) > self.kept:
                self._dropped(self.done.popitem(last=False)[1])
            return value

    def drop(self, key: Hashable) -> None:
        """Forget `key` (released): the next caller makes it afresh."""
        with self.lock:
            if (value := self.done.pop(key, None)) is not None:
                self._dropped(value)

    def _dropped(self, value: T) -> None:
        if self.on_drop is not None:
            self.on_drop(value)

    def clear(self) -> None:
        """Forget every value (released)."""
        for key in list(self.done):
            self.drop(key)
