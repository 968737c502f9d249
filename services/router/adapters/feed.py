"""Per-agent event feeds for the agent desktop's Server-Sent Events stream: the in-process fan-out.

Every item is first written to ``router.agent_feed`` (``feed_store``) in the transaction of the routing change that
causes it; its id is the SSE event id. Only after the commit does the service publish it here, to the desktops
connected to this process. A desktop that reconnects, or falls too far behind to be kept in memory, reads what it
missed from the table.
"""

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Notice:
    """Something to tell an agent's desktop: an SSE event name and its JSON payload."""

    agent_id: str
    name: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FeedItem:
    """A notice as written to the feed; ``id`` orders an agent's items and is the SSE event id."""

    id: int
    agent_id: str
    name: str
    payload: dict[str, Any]


class Subscription:
    """One open desktop stream's share of the fan-out."""

    def __init__(self, agent_id: str, size: int) -> None:
        self._agent_id = agent_id
        self._queue: asyncio.Queue[FeedItem] = asyncio.Queue(size)
        self._dropped = False

    def put(self, item: FeedItem) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            # a stalled desktop must not hold up routing; it catches up from the table when it reads again
            if not self._dropped:
                log.warning("feed of agent %s is full; the desktop will catch up from the database", self._agent_id)
            self._dropped = True

    async def get(self) -> FeedItem | None:
        """The next item; None when items were dropped since the last one, to be read from the table instead."""
        if self._dropped:
            self._dropped = False
            while not self._queue.empty():
                self._queue.get_nowait()
            return None
        return await self._queue.get()


class AgentFeed:
    """Fan-out of feed items to the desktops an agent has open on this process."""

    def __init__(self, *, backlog: int = 256) -> None:
        self._backlog = backlog
        self._subscribers: defaultdict[str, set[Subscription]] = defaultdict(set)
        # the newest id published (or found in the table at start): where a new desktop's stream begins
        self.last_id = 0

    @contextlib.contextmanager
    def subscribe(self, agent_id: str) -> Iterator[Subscription]:
        subscription = Subscription(agent_id, self._backlog)
        self._subscribers[agent_id].add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers[agent_id].discard(subscription)
            if not self._subscribers[agent_id]:
                del self._subscribers[agent_id]

    def publish(self, items: Iterable[FeedItem]) -> None:
        """Hand committed items to the agents' open desktops."""
        for item in items:
            self.last_id = max(self.last_id, item.id)
            for subscription in self._subscribers.get(item.agent_id, ()):
                subscription.put(item)
