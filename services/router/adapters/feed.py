"""Per-agent event feeds for the agent desktop's Server-Sent Events stream (in process)."""

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

FeedItem = tuple[str, dict[str, Any]]


class AgentFeed:
    """Fan-out of routing news to the desktops an agent has open."""

    def __init__(self, *, backlog: int = 256) -> None:
        self._backlog = backlog
        self._subscribers: defaultdict[str, set[asyncio.Queue[FeedItem]]] = defaultdict(set)

    @contextlib.contextmanager
    def subscribe(self, agent_id: str) -> Iterator["asyncio.Queue[FeedItem]"]:
        queue: asyncio.Queue[FeedItem] = asyncio.Queue(self._backlog)
        self._subscribers[agent_id].add(queue)
        try:
            yield queue
        finally:
            self._subscribers[agent_id].discard(queue)
            if not self._subscribers[agent_id]:
                del self._subscribers[agent_id]

    def publish(self, agent_id: str, name: str, payload: dict[str, Any]) -> None:
        for queue in self._subscribers.get(agent_id, ()):
            try:
                queue.put_nowait((name, payload))
            except asyncio.QueueFull:
                # a stalled desktop must not hold up routing; it re-reads GET /offers on reconnect
                log.warning("feed of agent %s is full; dropping %s", agent_id, name)
