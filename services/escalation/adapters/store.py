"""The escalation service's record of every contact's routing history."""

from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts import RoutingEvent
from services.escalation.adapters.orm import routing_events


async def record_routing_event(conn: AsyncConnection, event: RoutingEvent) -> bool:
    """Store ``event`` once, in the caller's transaction; False if it was already stored (a redelivery)."""
    result = await conn.execute(
        insert(routing_events)
        .values(
            event_id=event.event_id,
            type=event.type.value,
            contact_id=event.contact_id,
            agent_id=event.agent_id,
            queue_id=event.queue_id,
            occurred_at=event.occurred_at,
            payload=event.model_dump_json(),
        )
        .on_conflict_do_nothing()
        .returning(routing_events.c.event_id)
    )
    return result.first() is not None


async def routing_history(engine: AsyncEngine, *, contact_id: UUID | None, limit: int) -> list[dict[str, Any]]:
    """Stored routing events, oldest first, optionally of one contact."""
    query = select(routing_events.c.payload).order_by(routing_events.c.occurred_at, routing_events.c.received_at)
    if contact_id is not None:
        query = query.where(routing_events.c.contact_id == contact_id)
    async with engine.connect() as conn:
        rows = (await conn.execute(query.limit(limit))).scalars().all()
    return [RoutingEvent.model_validate_json(row).model_dump(mode="json") for row in rows]
