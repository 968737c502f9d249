"""A binary heap whose entries may die in place: the index's ordered views are built on it."""

import heapq
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

E = TypeVar("E", bound=tuple[Any, ...])


class LazyHeap(Generic[E]):
    """A binary heap that keeps a live entry on top; dead entries below it are skipped by readers.

    Entries die in place (an agent got busy, a contact was offered) because removing one from the
    middle of a heap costs O(n); ``settle`` pops the dead ones that reach the top, and ``push``
    compacts the heap when it has doubled since the last compaction, so dead entries cost O(1)
    amortized and never pile up.
    """

    __slots__ = ("_limit", "items", "live")

    def __init__(self, live: Callable[[E], bool]) -> None:
        self.items: list[E] = []
        self.live = live  # whether an entry still stands for the state (readers skip those that do not)
        self._limit = 64

    def push(self, entry: E) -> None:
        heapq.heappush(self.items, entry)
        if len(self.items) > self._limit:
            self.items = [e for e in self.items if self.live(e)]
            heapq.heapify(self.items)
            self._limit = 2 * len(self.items) + 64

    def settle(self) -> None:
        items = self.items
        while items and not self.live(items[0]):
            heapq.heappop(items)

    def __iter__(self) -> Iterator[E]:
        """Every entry in ascending order, dead ones included, without changing the heap.

        A frontier of the children of what was already yielded: the k smallest cost O(k log k).
        """
        items = self.items
        if not items:
            return
        yield items[0]
        size = len(items)
        frontier: list[tuple[E, int]] = []
        i = 0
        while True:
            for child in (2 * i + 1, 2 * i + 2):
                if child < size:
                    heapq.heappush(frontier, (items[child], child))
            if not frontier:
                return
            entry, i = heapq.heappop(frontier)
            yield entry
