"""Routing events: what the router tells the other services (``kefu.routing.events.v1``, through the outbox) and
keeps as each contact's routing history, both written in the transaction of the decision (``late_writes``).

The history has a table of its own: the outbox is a queue that the relay prunes once published, so a contact's
timeline cannot be read from it.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import RoutingEvent, RoutingEventType
from services.router.adapters.orm import routing_history
from services.router.domain.model import ContactRef


def event(
    kind: RoutingEventType,
    contact: ContactRef,
    at: datetime,
    *,
    agent_id: str | None = None,
    offer_id: uuid.UUID | None = None,
    assignment_id: uuid.UUID | None = None,
    reason: str | None = None,
    command_id: uuid.UUID | None = None,
) -> RoutingEvent:
    """One step of ``contact``'s routing, carrying what consumers route and escalate on (queue, priority, tier…)."""
    return RoutingEvent(
        event_id=uuid.uuid4(),
        type=kind,
        occurred_at=at,
        contact_id=contact.id,
        conversation_key=contact.conversation_key,
        channel=contact.channel,
        queue_id=contact.queue_id,
        agent_id=agent_id,
        offer_id=offer_id,
        assignment_id=assignment_id,
        priority=contact.priority,
        reason=reason,
        customer_id=contact.customer_id,
        customer_tier=contact.tier,
        owning_tam=contact.owning_tam,
        category=contact.category,
        command_id=command_id,
    )


async def of_contact(conn: AsyncConnection, contact_id: uuid.UUID) -> list[dict[str, Any]]:
    """The contact's routing events in the order they were decided, as JSON (absent fields left out)."""
    payloads = await conn.execute(
        select(routing_history.c.payload)
        .where(routing_history.c.contact_id == contact_id)
        .order_by(routing_history.c.id)
    )
    return [RoutingEvent.model_validate_json(p).model_dump(mode="json", exclude_none=True) for p in payloads.scalars()]
