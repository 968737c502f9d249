"""The rows of a routing transaction that none of its statements reads back, written together just before it
commits: customers' messages, routing events (outbox and history) and desktop notices (the feed).

A fetch of contacts writes them for all its records at once, in one statement (``WRITE``): each table's rows from
arrays (``unnest``), the tables as data-modifying CTEs, the feed's ids returned. One round trip and one execute
whatever the number of rows, where an executemany a table was an execute a row in PostgreSQL (issue 12); plain SQL,
prepared once per connection. Rows are written in the order they were added in (``WITH ORDINALITY ... ORDER BY``),
so the outbox keeps a contact's events in the order decided, and the feed an agent's items in id order. A row that
fails here fails the transaction without saying which record it came from; the consumer then applies the records one
by one (``kefu.consume``), where it is that record's own failure.
"""

import json
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import ROUTING_EVENTS, ContactEvent, RoutingEvent
from kefu.outbox import ADD as ADD_TO_OUTBOX
from services.router.adapters.feed import FeedItem, Notice
from services.router.adapters.orm import agent_feed, messages, outbox, routing_history

WRITE = (  # the tables' names need no quoting
    f"WITH message_rows AS (INSERT INTO {messages.fullname} "  # noqa: S608  # the ORM's table names, no values
    "(id, contact_id, text, attachments, metadata, occurred_at, received_at) "
    "SELECT id, contact_id, text, attachments::jsonb, metadata::jsonb, occurred_at, received_at "
    "FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[]) "
    "AS m(id, contact_id, text, attachments, metadata, occurred_at, received_at)), "
    # the routing events once, for both tables: the outbox (keyed by contact) and the history
    "events AS (SELECT $8::text AS topic, contact_id::text AS key, payload, contact_id, type, occurred_at, n "
    "FROM unnest($9::uuid[], $10::text[], $11::timestamptz[], $12::text[]) WITH ORDINALITY "
    "AS e(contact_id, type, occurred_at, payload, n)), "
    f"published AS ({ADD_TO_OUTBOX.format(table=outbox.fullname, rows='events')}), "
    f"history AS (INSERT INTO {routing_history.fullname} (contact_id, type, occurred_at, payload) "
    "SELECT contact_id, type, occurred_at, payload FROM events ORDER BY n) "
    f"INSERT INTO {agent_feed.fullname} (agent_id, name, payload) SELECT agent_id, name, payload::jsonb "
    "FROM unnest($13::text[], $14::text[], $15::text[]) WITH ORDINALITY AS f(agent_id, name, payload, n) "
    "ORDER BY n RETURNING id"
)


class LateWrites:
    """What a change writes last (``of``: those of several); ``written``: the feed items with their ids, once
    ``flush`` has run."""

    def __init__(self) -> None:
        self.messages: list[tuple[Any, ...]] = []
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
        attachments = json.dumps([a.model_dump(mode="json") for a in event.message.attachments])
        message = event.message.text, attachments, json.dumps(event.metadata), event.occurred_at, event.received_at
        self.messages.append((event.event_id, contact_id, *message))

    async def flush(self, conn: AsyncConnection) -> None:
        """Write what was added since the last flush, in ``conn``'s transaction (nothing to write: no statement)."""
        if not (self.messages or self.events or self.notices):
            return
        events, notices = self.events, self.notices
        rows = (
            *_columns(self.messages, 7),
            ROUTING_EVENTS,
            [e.contact_id for e in events],
            [e.type.value for e in events],
            [e.occurred_at for e in events],
            [e.model_dump_json() for e in events],
            [n.agent_id for n in notices],
            [n.name for n in notices],
            [json.dumps(n.payload) for n in notices],
        )
        ids = sorted((await conn.exec_driver_sql(WRITE, rows)).scalars())  # in the notices' order (ORDER BY n)
        self.written += [FeedItem(i, n.agent_id, n.name, n.payload) for i, n in zip(ids, notices, strict=True)]
        self.messages, self.events, self.notices = [], [], []


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """``rows`` as ``width`` arrays, a column each."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]
