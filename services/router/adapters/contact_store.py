"""A contact's arrival: each inbound event applied once, the open contact of a conversation, its row and its
messages."""

import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import ContactEvent
from services.router.adapters.orm import applied_events, contacts, messages
from services.router.domain.model import ContactRef

OPEN_STATUSES = ("queued", "offered", "assigned")


async def mark_applied(conn: AsyncConnection, event_id: uuid.UUID, topic: str) -> bool:
    """Record that ``event_id`` is applied; False if it already was (a duplicate)."""
    result = await conn.execute(
        insert(applied_events)
        .values(event_id=event_id, topic=topic)
        .on_conflict_do_nothing()
        .returning(applied_events.c.event_id)
    )
    return result.first() is not None


async def open_contact_for(conn: AsyncConnection, conversation_key: str) -> tuple[uuid.UUID, str] | None:
    """The open contact of a conversation, with its status, if there is one."""
    row = (
        await conn.execute(
            select(contacts.c.id, contacts.c.status).where(
                contacts.c.conversation_key == conversation_key, contacts.c.status.in_(OPEN_STATUSES)
            )
        )
    ).first()
    return (row.id, row.status) if row else None


async def insert_contact(conn: AsyncConnection, ref: ContactRef, event: ContactEvent, customer_id: uuid.UUID) -> None:
    """Create the contact row for the first message of a conversation."""
    await conn.execute(
        insert(contacts).values(
            id=ref.id,
            conversation_key=ref.conversation_key,
            channel=ref.channel.value,
            account_id=event.account_id,
            customer_platform_id=event.customer.platform_id,
            customer_id=customer_id,
            customer_name=event.customer.display_name,
            queue_id=ref.queue_id,
            priority=ref.priority,
            status="queued",
            enqueued_at=ref.enqueued_at,
            preferred_agent=ref.preferred_agent,
            prefer_until=ref.prefer_until,
            tier=ref.tier,
            owning_tam=ref.owning_tam,
            category=ref.category,
        )
    )


async def insert_message(conn: AsyncConnection, contact_id: uuid.UUID, event: ContactEvent) -> None:
    """Append a message to a contact."""
    await conn.execute(
        insert(messages).values(
            id=event.event_id,
            contact_id=contact_id,
            text=event.message.text,
            attachments=[a.model_dump(mode="json") for a in event.message.attachments],
            metadata=event.metadata,
            occurred_at=event.occurred_at,
            received_at=event.received_at,
        )
    )
