"""The agent desktop's event stream: every event has an id, a reconnecting desktop resumes from its Last-Event-ID.

A desktop that connects without an id (or whose id cannot be resumed from: ``feed.reset``) gets the agent's pending
offers as of the feed's newest id, then what follows. One that reconnects with an id gets the agent's feed items
after it from PostgreSQL, then what follows. Live items come from the in-process fan-out, subscribed to *before*
the table is read: an item committed meanwhile arrives both ways, and the live copy is dropped by its id.
"""

from collections.abc import AsyncGenerator

from sqlalchemy.ext.asyncio import AsyncEngine
from sse_starlette import JSONServerSentEvent, ServerSentEvent

from services.router.adapters import feed_store
from services.router.adapters.feed import AgentFeed, FeedItem
from services.router.service import RoutingService
from services.router.views import offer_view

RETRY_MILLISECONDS = 2000  # how long a disconnected desktop waits before it reconnects


def heartbeat() -> ServerSentEvent:
    """A comment line: keeps proxies from closing an idle stream, and desktops ignore it."""
    return ServerSentEvent(comment="keep-alive")


async def events(
    agent_id: str, after: int | None, *, service: RoutingService, feed: AgentFeed, engine: AsyncEngine
) -> AsyncGenerator[ServerSentEvent, None]:
    """The agent's events after id ``after`` (None: from now, with the pending offers), then live, for ever."""
    with feed.subscribe(agent_id) as live:
        yield ServerSentEvent(retry=RETRY_MILLISECONDS)
        sent, opening = await _resume(agent_id, after, service=service, feed=feed, engine=engine)
        for event in opening:
            yield event
        while True:
            item = await live.get()
            if item is None:  # this desktop fell behind the fan-out: catch up from the table
                sent, missed = await _resume(agent_id, sent, service=service, feed=feed, engine=engine)
                for event in missed:
                    yield event
            elif item.id > sent:  # not one already replayed
                yield _event(item)
                sent = item.id


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
    return _start(agent_id, service, feed, reset)


def _start(
    agent_id: str, service: RoutingService, feed: AgentFeed, reset: feed_store.Reset | None
) -> tuple[int, list[ServerSentEvent]]:
    """Start (or start over) as of the feed's newest id: the pending offers of now, all carrying that id.

    No await here: the offers and the newest id are read at one instant, as the service applies and publishes a
    commit together.
    """
    cursor = feed.last_id
    # an event without data dispatches nothing, but sets the desktop's Last-Event-ID
    start = [ServerSentEvent(id=str(cursor))]
    if reset is not None:
        reread = [f"/v1/agents/{agent_id}/offers", f"/v1/agents/{agent_id}/assignments"]
        start.append(JSONServerSentEvent({"reason": reset.value, "reread": reread}, event="feed.reset", id=str(cursor)))
    offers = [offer_view(o) for o in service.state.offers.values() if o.agent_id == agent_id]
    start += [JSONServerSentEvent(offer, event="offer.created", id=str(cursor)) for offer in offers]
    return cursor, start


def _event(item: FeedItem) -> ServerSentEvent:
    return JSONServerSentEvent(item.payload, event=item.name, id=str(item.id))
