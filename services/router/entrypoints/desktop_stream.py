"""The agent desktop's event stream: every event has an id, a reconnecting desktop resumes from its Last-Event-ID.

A desktop that connects without an id (or whose id cannot be resumed from: ``feed.reset``) gets the agent's pending
offers as of the feed's newest id, then what follows. One that reconnects with an id gets the agent's feed items
after it from PostgreSQL, then what follows. Live items come from the in-process fan-out, subscribed to *before*
the table is read: an item committed meanwhile arrives both ways, and the live copy is dropped by its id.
"""

from collections import Counter
from collections.abc import AsyncGenerator
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sse_starlette import EventSourceResponse, JSONServerSentEvent, ServerSentEvent
from starlette.types import Receive, Scope, Send

from kefu.ops import ApiError
from kefu.outage import unavailable
from services.router import queries
from services.router.adapters import feed_store
from services.router.adapters.feed import AgentFeed, FeedItem
from services.router.domain.model import RoutingState
from services.router.service import RoutingService

RETRY_MILLISECONDS = 2000  # how long a disconnected desktop waits before it reconnects


class StreamSlots:
    """The event streams each agent has open on this process: at most ``limit`` each (a desktop per device)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    def take(self, agent_id: str) -> None:
        """Hold one of ``agent_id``'s slots, or refuse with 429."""
        if self._open[agent_id] >= self.limit:
            raise ApiError(
                429,
                "too_many_streams",
                f"agent {agent_id!r} already has {self.limit} event streams open; close one to open another",
                headers={"Retry-After": str(RETRY_MILLISECONDS // 1000)},
            )
        self._open[agent_id] += 1

    def give_back(self, agent_id: str) -> None:
        self._open[agent_id] -= 1
        if self._open[agent_id] <= 0:
            del self._open[agent_id]


class AgentStream(EventSourceResponse):
    """An agent's event stream, holding one of the agent's slots from its creation until it has ended."""

    def __init__(self, content: Any, *, slots: StreamSlots, agent_id: str, **options: Any) -> None:
        super().__init__(content, **options)
        slots.take(agent_id)
        self._slots, self._agent_id = slots, agent_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._slots.give_back(self._agent_id)


def heartbeat() -> ServerSentEvent:
    """A comment line: keeps proxies from closing an idle stream, and desktops ignore it."""
    return ServerSentEvent(comment="keep-alive")


async def events(
    agent_id: str, after: int | None, *, service: RoutingService, feed: AgentFeed, engine: AsyncEngine
) -> AsyncGenerator[ServerSentEvent, None]:
    """The agent's events after id ``after`` (None: from now, with the pending offers), then live, for ever."""
    with feed.subscribe(agent_id) as live:
        yield ServerSentEvent(retry=RETRY_MILLISECONDS)
        resumed = await _resumed(agent_id, after, service=service, feed=feed, engine=engine)
        if resumed is None:
            return
        sent, opening = resumed
        for event in opening:
            yield event
        while True:
            item = await live.get()
            if item is None:  # this desktop fell behind the fan-out: catch up from the table
                resumed = await _resumed(agent_id, sent, service=service, feed=feed, engine=engine)
                if resumed is None:
                    return
                sent, missed = resumed
                for event in missed:
                    yield event
            elif item.id > sent:  # not one already replayed
                yield _event(item)
                sent = item.id


async def _resumed(
    agent_id: str, after: int | None, *, service: RoutingService, feed: AgentFeed, engine: AsyncEngine
) -> tuple[int, list[ServerSentEvent]] | None:
    """``_resume``, or None when the database cannot be reached: the stream ends (its answer already began, so no
    503), and the desktop reconnects after ``retry`` with its Last-Event-ID; the outage is logged by the engine."""
    try:
        return await _resume(agent_id, after, service=service, feed=feed, engine=engine)
    except SQLAlchemyError as exc:
        if unavailable(exc) is None:
            raise
        return None


async def _resume(
    agent_id: str, after: int | None, *, service: RoutingService, feed: AgentFeed, engine: AsyncEngine
) -> tuple[int, list[ServerSentEvent]]:
    """The events from ``after`` on (None: start afresh) and the id of the last one."""
    reset = None
    if after is not None:
        async with engine.connect() as conn:
            missed = await feed_store.since(conn, agent_id, after)
        if not isinstance(missed, feed_store.Reset):
            return (missed[-1].id if missed else after), [_event(item) for item in missed]
        reset = missed
    async with service.settled() as state:  # no batch under way: its offers are not shown before they commit
        return _start(agent_id, state, feed, reset)


def _start(
    agent_id: str, state: RoutingState, feed: AgentFeed, reset: feed_store.Reset | None
) -> tuple[int, list[ServerSentEvent]]:
    """Start (or start over) as of the feed's newest id: the pending offers of now, all carrying that id.

    No await here: the offers and the newest id are read at one instant, as the service publishes a commit at
    once.
    """
    cursor = feed.last_id
    # an event without data dispatches nothing, but sets the desktop's Last-Event-ID
    start = [ServerSentEvent(id=str(cursor))]
    if reset is not None:
        reread = [f"/v1/agents/{agent_id}/offers", f"/v1/agents/{agent_id}/assignments"]
        start.append(JSONServerSentEvent({"reason": reset.value, "reread": reread}, event="feed.reset", id=str(cursor)))
    offers = queries.pending_offers(state, agent_id)
    start += [JSONServerSentEvent(offer, event="offer.created", id=str(cursor)) for offer in offers]
    return cursor, start


def _event(item: FeedItem) -> ServerSentEvent:
    return JSONServerSentEvent(item.payload, event=item.name, id=str(item.id))
