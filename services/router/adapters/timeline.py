"""A contact's timeline for the agent desktop: who the customer is, every message, and every routing step."""

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.router.adapters import history
from services.router.adapters.orm import contacts, messages


async def contact_view(conn: AsyncConnection, contact_id: uuid.UUID) -> dict[str, Any] | None:
    """A contact and its messages, oldest first."""
    row = (await conn.execute(select(contacts).where(contacts.c.id == contact_id))).mappings().first()
    if row is None:
        return None
    written = await conn.execute(
        select(messages.c.id, messages.c.text, messages.c.attachments, messages.c.metadata, messages.c.occurred_at)
        .where(messages.c.contact_id == contact_id)
        .order_by(messages.c.occurred_at, messages.c.received_at)
    )
    routing = await history.of_contact(conn, contact_id)
    return {
        "contact_id": str(row["id"]),
        "conversation_key": row["conversation_key"],
        "channel": row["channel"],
        "account_id": row["account_id"],
        "customer_id": str(row["customer_id"]) if row["customer_id"] else None,
        "customer_platform_id": row["customer_platform_id"],
        "customer_name": row["customer_name"],
        "queue_id": row["queue_id"],
        "priority": row["priority"],
        "status": row["status"],
        "enqueued_at": row["enqueued_at"].isoformat(),
        "closed_at": row["closed_at"].isoformat() if row["closed_at"] else None,
        "events": routing,
        "messages": [
            {
                "message_id": str(m.id),
                "text": m.text,
                "attachments": m.attachments,
                "metadata": m.metadata,
                "occurred_at": m.occurred_at.isoformat(),
            }
            for m in written
        ],
    }
