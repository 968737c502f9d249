"""A contact's arrival: each inbound event applied once, and the contact's row (written with the decisions on its
arrival: ``repository.persist``; its messages are late writes: ``late_writes``; the open contact of a conversation
is memory's: ``services.router.conversations``)."""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import ContactEvent
from services.router.adapters.orm import applied_events
from services.router.domain.model import ContactRef

OPEN_STATUSES = ("queued", "offered", "assigned")

# the ids as one array: the same text, prepared once, whatever their number (a VALUES list a row was a statement of
# its own for each count)
MARK_APPLIED = (
    f"INSERT INTO {applied_events.fullname} (event_id, topic) "  # noqa: S608  # the ORM's table name, no values
    "SELECT event_id, $2::text FROM unnest($1::uuid[]) AS e(event_id) ON CONFLICT DO NOTHING RETURNING event_id"
)


async def mark_applied(conn: AsyncConnection, event_id: uuid.UUID, topic: str) -> bool:
    """Record that ``event_id`` is applied; False if it already was (a duplicate)."""
    return event_id in await mark_all_applied(conn, [event_id], topic)


async def mark_all_applied(conn: AsyncConnection, event_ids: Sequence[uuid.UUID], topic: str) -> set[uuid.UUID]:
    """Record ``event_ids`` applied, in one statement; the ids that were not applied before (the rest, duplicates).
    For a transaction whose records stand or fall together: a record's own step would roll back alone."""
    if not event_ids:
        return set()
    return set((await conn.exec_driver_sql(MARK_APPLIED, (list(dict.fromkeys(event_ids)), topic))).scalars())


def opening(ref: ContactRef, event: ContactEvent) -> dict[str, Any]:
    """The contact row of a conversation's first message, but for its status: ``repository.persist`` writes it
    with the decisions on its arrival (queued, or offered at once)."""
    return {
        "id": ref.id,
        "conversation_key": ref.conversation_key,
        "channel": ref.channel.value,
        "account_id": event.account_id,
        "customer_platform_id": event.customer.platform_id,
        "customer_id": ref.customer_id,
        "customer_name": event.customer.display_name,
        "queue_id": ref.queue_id,
        "priority": ref.priority,
        "enqueued_at": ref.enqueued_at,
        "preferred_agent": ref.preferred_agent,
        "prefer_until": ref.prefer_until,
        "tier": ref.tier,
        "owning_tam": ref.owning_tam,
        "category": ref.category,
    }
