"""The rows of a routing transaction that none of its statements reads back, written together just before it
commits: customers' messages, routing events (outbox and history) and desktop notices (the feed).

A fetch of contacts writes them for all its records at once: one executemany a table instead of a statement or
two a record (issue 12). Their order is the order they were added in, so the outbox keeps a contact's events in the
order decided, and the feed an agent's items in id order. A row that fails here fails the transaction without
saying which record it came from; the consumer then applies the records one by one (``kefu.consume``), where it
is that record's own failure.
"""

import uuid
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import ContactEvent, RoutingEvent
from services.router.adapters import contact_store, feed_store, history
from services.router.adapters.feed import FeedItem, Notice


class LateWrites:
    """What a change writes last (``of``: those of several); ``written``: the feed items with their ids, once
    ``flush`` has run."""

    def __init__(self) -> None:
        self.messages: list[dict[str, object]] = []
        self.events: list[RoutingEvent] = []
        self.notices: list[Notice] = []
        self.written: list[FeedItem] = []

    @classmethod
    def of(cls, parts: Iterable["LateWrites"]) -> "LateWrites":
        """The rows of ``parts``, in their order."""
        together = cls()
        for part in parts:
            together.messages += part.messages
            together.events += part.events
            together.notices += part.notices
        return together

    def message(self, contact_id: uuid.UUID, event: ContactEvent) -> None:
        """Append the customer's message in ``event`` to the contact."""
        self.messages.append(contact_store.message_row(contact_id, event))

    async def flush(self, conn: AsyncConnection) -> None:
        """Write what was added since the last flush, in ``conn``'s transaction."""
        if self.messages:
            await conn.execute(contact_store.INSERT_MESSAGES, self.messages)
        await history.announce(conn, self.events)
        self.written += await feed_store.append(conn, self.notices)
        self.messages, self.events, self.notices = [], [], []
