"""Per-contact facts in PostgreSQL (``escalation.contact_facts``, ``escalation.contact_messages``).

Keyed by the router's contact id. The router opens a contact with the id of the conversation's first
``ContactEvent`` and appends later messages to the open contact of the same conversation key; this module does
the same, so both topics land on one row whichever arrives first. Every write happens in the caller's
transaction: a message is applied once because its event id is the primary key of ``contact_messages``, and a
routing event once because it is stored in ``routing_events`` first, keyed by its event id.

A contact whose routing event closing it has not arrived yet still takes a new message of its conversation
(the topics are not ordered with each other); the router may already have opened a new contact for it.
"""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import ContactEvent, ContactEventKind, RoutingEvent, RoutingEventType
from services.escalation.adapters.orm import contact_facts, contact_messages, routing_events
from services.escalation.domain.triggers import CLOSED, ContactFacts, Message

MESSAGES_KEPT = 100
"""The newest customer messages the engine looks at; older ones were evaluated when they arrived."""

_STATUS: dict[RoutingEventType, str] = {
    RoutingEventType.QUEUED: "waiting",
    RoutingEventType.REQUEUED: "waiting",
    RoutingEventType.DECLINED: "waiting",
    RoutingEventType.OFFER_TIMED_OUT: "waiting",
    RoutingEventType.TRANSFERRED: "waiting",
    RoutingEventType.ACCEPTED: "assigned",
    RoutingEventType.ASSIGNED: "assigned",
    RoutingEventType.COMPLETED: "resolved",
    RoutingEventType.ABANDONED: "abandoned",
    RoutingEventType.CLOSED: "closed",
}


def clock_start(event: ContactEvent) -> datetime:
    """When a customer message starts or restarts a clock: when kefu received it.

    Never ``occurred_at``: that is the platform's or the sender's claim (an e-mail's ``Date`` header, a phone's
    clock), hours early or late, kept on the router's record of the message for display.
    """
    return event.received_at


def customer_key(event: ContactEvent | RoutingEvent) -> str | None:
    """Who the customer is, as precisely as the event says: the router's record, else the platform's ids."""
    if isinstance(event, RoutingEvent):
        return None if event.customer_id is None else f"customer:{event.customer_id}"
    if event.customer.external_id:
        return f"ext:{event.customer.external_id}"
    return f"{event.channel.value}:{event.customer.platform_id}"


async def apply_message(conn: AsyncConnection, event: ContactEvent) -> uuid.UUID | None:
    """Record a customer message on its contact; the contact id, or None when already applied or nothing to do."""
    open_contact = await conn.execute(
        select(contact_facts.c.contact_id)
        .where(contact_facts.c.conversation_key == event.conversation_key, contact_facts.c.status.not_in(CLOSED))
        .order_by(contact_facts.c.queued_at.desc())
        .limit(1)
    )
    contact_id = open_contact.scalar()
    if event.kind is ContactEventKind.ABANDONED:
        # the router says so too (an ``abandoned`` routing event); only the dedup matters here
        return None
    if contact_id is None:
        contact_id = event.event_id
        await _ensure(conn, contact_id, event.conversation_key, clock_start(event), customer_key(event))
    else:
        # the router's ``queued`` came first: it queued the contact (after a backlog, maybe long) after kefu had it
        started = func.least(contact_facts.c.queued_at, clock_start(event))
        await conn.execute(
            update(contact_facts).where(contact_facts.c.contact_id == contact_id).values(queued_at=started)
        )
    added = await conn.execute(
        insert(contact_messages)
        .values(event_id=event.event_id, contact_id=contact_id, at=clock_start(event), text=event.message.text)
        .on_conflict_do_nothing()
        .returning(contact_messages.c.event_id)
    )
    return contact_id if added.first() is not None else None


async def apply_routing(conn: AsyncConnection, event: RoutingEvent) -> bool:
    """Store ``event`` once and fold it into its contact's facts; False, changing nothing, for a redelivery."""
    stored = await conn.execute(
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
    if stored.first() is None:
        return False
    await _ensure(conn, event.contact_id, event.conversation_key, event.occurred_at, customer_key(event))
    values: dict[str, Any] = {"queue": event.queue_id, "status": _STATUS.get(event.type, contact_facts.c.status)}
    if event.type is RoutingEventType.QUEUED:
        values["queued_at"] = func.least(contact_facts.c.queued_at, event.occurred_at)
    if event.type in (RoutingEventType.ACCEPTED, RoutingEventType.ASSIGNED):
        values["first_answered_at"] = func.coalesce(contact_facts.c.first_answered_at, event.occurred_at)
    if event.type is RoutingEventType.TRANSFERRED:
        values["transfers"] = contact_facts.c.transfers + 1
    for column in ("customer_tier", "owning_tam", "category"):
        if (value := getattr(event, column)) is not None:
            values[column.removeprefix("customer_")] = value
    if (key := customer_key(event)) is not None:
        values["customer_key"] = key
    if event.type in (RoutingEventType.COMPLETED, RoutingEventType.ABANDONED, RoutingEventType.CLOSED):
        values.pop("queue")  # the queue it ended in stays the one it waited in
    await conn.execute(
        update(contact_facts)
        .where(contact_facts.c.contact_id == event.contact_id)
        .values(updated_at=func.now(), **values)
    )
    return True


async def load(
    conn: AsyncConnection, contact_id: uuid.UUID, *, customer_contacts_since: datetime | None = None
) -> ContactFacts | None:
    """The contact's facts, its row locked until the transaction ends; None for a contact never seen.

    With ``customer_contacts_since``, also when each of the customer's contacts since then began.
    """
    row = (
        (await conn.execute(select(contact_facts).where(contact_facts.c.contact_id == contact_id).with_for_update()))
        .mappings()
        .first()
    )
    if row is None:
        return None
    recent = (
        select(contact_messages.c.text, contact_messages.c.at, contact_messages.c.from_customer)
        .where(contact_messages.c.contact_id == contact_id)
        .order_by(contact_messages.c.at.desc())
        .limit(MESSAGES_KEPT)
    )
    messages = [Message(r.text, r.at, r.from_customer) for r in reversed((await conn.execute(recent)).all())]
    contacts: Sequence[datetime] = ()
    if customer_contacts_since is not None and row["customer_key"] is not None:
        contacts = (
            (
                await conn.execute(
                    select(contact_facts.c.queued_at).where(
                        contact_facts.c.customer_key == row["customer_key"],
                        contact_facts.c.queued_at >= customer_contacts_since,
                    )
                )
            )
            .scalars()
            .all()
        )
    return ContactFacts(
        contact_id=contact_id,
        queue=row["queue"],
        tier=row["tier"],
        queued_at=row["queued_at"],
        status=row["status"],
        owning_tam=row["owning_tam"],
        category=row["category"],
        messages=messages,
        transfers=row["transfers"],
        first_answered_at=row["first_answered_at"],
        customer_contacts=contacts,
        fired=frozenset(row["fired"]),
    )


async def mark_fired(conn: AsyncConnection, contact_id: uuid.UUID, triggers: Sequence[str]) -> None:
    """Remember that ``triggers`` fired for the contact, so the engine never fires them again."""
    if triggers:
        fired = func.array_cat(contact_facts.c.fired, list(triggers))
        await conn.execute(update(contact_facts).where(contact_facts.c.contact_id == contact_id).values(fired=fired))


async def unmark_fired(conn: AsyncConnection, contact_id: uuid.UUID, trigger: str) -> None:
    """Forget that ``trigger`` fired (its command was refused as stale), so the engine decides it again."""
    fired = func.array_remove(contact_facts.c.fired, trigger)
    await conn.execute(update(contact_facts).where(contact_facts.c.contact_id == contact_id).values(fired=fired))


async def current_assignment(conn: AsyncConnection, contact_id: uuid.UUID) -> uuid.UUID | None:
    """The assignment of the contact's latest ``assigned`` routing event seen here, if any."""
    payload = await _latest_assigned(conn, contact_id, routing_events.c.payload)
    return None if payload is None else RoutingEvent.model_validate_json(payload).assignment_id


async def holder(conn: AsyncConnection, contact_id: uuid.UUID) -> str | None:
    """The agent the contact is assigned to now, as the routing events seen here tell; None when not assigned."""
    status = (
        await conn.execute(select(contact_facts.c.status).where(contact_facts.c.contact_id == contact_id))
    ).scalar_one_or_none()
    if status != "assigned":
        return None
    agent: str | None = await _latest_assigned(conn, contact_id, routing_events.c.agent_id)
    return agent


async def _latest_assigned(conn: AsyncConnection, contact_id: uuid.UUID, column: Any) -> Any:
    """``column`` of the contact's latest ``assigned`` routing event seen here; None without one."""
    latest = await conn.execute(
        select(column)
        .where(routing_events.c.contact_id == contact_id, routing_events.c.type == RoutingEventType.ASSIGNED.value)
        .order_by(routing_events.c.occurred_at.desc(), routing_events.c.received_at.desc())
        .limit(1)
    )
    return latest.scalar_one_or_none()


async def _ensure(
    conn: AsyncConnection, contact_id: uuid.UUID, conversation_key: str, at: datetime, customer: str | None
) -> None:
    await conn.execute(
        insert(contact_facts)
        .values(contact_id=contact_id, conversation_key=conversation_key, queued_at=at, customer_key=customer)
        .on_conflict_do_nothing()
    )


async def latest_of_customer(conn: AsyncConnection, contact_id: uuid.UUID, since: datetime) -> uuid.UUID | None:
    """The customer's latest open contact since ``since`` (the contact itself, or a later one), if it has a key."""
    mine = contact_facts.alias("mine")
    theirs = contact_facts.alias("theirs")
    query = (
        select(theirs.c.contact_id)
        .join(mine, mine.c.customer_key == theirs.c.customer_key)
        .where(
            mine.c.contact_id == contact_id,
            theirs.c.queued_at >= since,
            theirs.c.status.not_in(CLOSED),
        )
        .order_by(theirs.c.queued_at.desc(), theirs.c.contact_id.desc())
        .limit(1)
    )
    return (await conn.execute(query)).scalar_one_or_none()
