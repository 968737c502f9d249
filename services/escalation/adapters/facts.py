"""Per-contact facts in PostgreSQL (``escalation.contact_facts``, ``escalation.contact_messages``).

Keyed by the router's contact id. The router opens a contact with the id of the conversation's first
``ContactEvent`` and appends later messages to the open contact of the same conversation key; this module does
the same, so both topics land on one row whichever arrives first. Every write happens in the caller's
transaction: a message is applied once because its event id is the primary key of ``contact_messages``, and a
routing event once because it is stored in ``routing_events`` first, keyed by its event id. The contact's row is
changed in the transaction's ``Ledger`` (locked, written back before the commit).

A contact whose routing event closing it has not arrived yet still takes a new message of its conversation
(the topics are not ordered with each other); the router may already have opened a new contact for it.
"""

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import ContactEvent, ContactEventKind, RoutingEvent, RoutingEventType
from services.escalation.adapters.ledger import Ledger
from services.escalation.adapters.orm import contact_messages, routing_events
from services.escalation.adapters.unnest import arrays, unnested
from services.escalation.domain.triggers import Message

# built once: a statement built per call costs more than its round trip (issue 12)
_MESSAGE = unnested(
    "messages", {name: contact_messages.c[name].type for name in ("event_id", "contact_id", "at", "text")}
)
_STORE_MESSAGES = (
    insert(contact_messages)
    .from_select(list(_MESSAGE.c.keys()), select(*_MESSAGE.c))
    .on_conflict_do_nothing()
    .returning(contact_messages.c.event_id)
)
_STORE_ROUTING = insert(routing_events).on_conflict_do_nothing().returning(routing_events.c.event_id)
_LATEST_ASSIGNED = (  # the contact's latest ``assigned`` routing events seen here, latest first
    select(routing_events.c.agent_id, routing_events.c.event_id, routing_events.c.payload)
    .where(
        routing_events.c.contact_id == bindparam("contact_id"),
        routing_events.c.type == RoutingEventType.ASSIGNED.value,
    )
    .order_by(routing_events.c.occurred_at.desc(), routing_events.c.received_at.desc())
    .limit(bindparam("count"))
)

ENDS = frozenset({RoutingEventType.COMPLETED, RoutingEventType.ABANDONED, RoutingEventType.CLOSED})
"""The routing events that end a contact (its status becomes one of ``triggers.CLOSED``)."""
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


async def store_messages(
    conn: AsyncConnection, ledger: Ledger, events: Sequence[ContactEvent]
) -> set[uuid.UUID] | None:
    """Store the messages of ``events``, a fetch the ledger preloaded, before they apply, and create the contacts
    their conversations' first messages open: a statement each (issue 12: one of each a message). The ids of the
    messages stored now (the others are redeliveries), or None, nothing written, when which contact a message joins
    is not known before the records before it apply (a conversation with two open contacts, whose order a message
    may change, or a first message whose contact exists, closed): then each is stored as it applies.

    A message joins its conversation's open contact, else opens one with its own id, as ``apply_message`` decides.
    """
    joins: dict[str, uuid.UUID] = {}
    opened: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for event in events:
        if event.kind is ContactEventKind.ABANDONED:
            continue  # not stored (``apply_message``)
        key = event.conversation_key
        if key not in joins:
            held = ledger.open_contacts(key)
            if held is None or len(held) > 1 or (not held and not ledger.absent(event.event_id)):
                return None
            joins[key] = held[0] if held else event.event_id
            if not held:
                opened.append(_opened(event))
        rows.append(_message_row(event, joins[key]))
    await ledger.create_all(opened)
    return set(await store_rows(conn, rows)) if rows else set()


async def apply_message(
    conn: AsyncConnection, ledger: Ledger, event: ContactEvent, stored: set[uuid.UUID] | None = None
) -> uuid.UUID | None:
    """Record a customer message on its contact; the contact id, or None when already applied or nothing to do.
    ``stored``: the batch stored its messages (``store_messages``), these ids now."""
    contact_id = await ledger.open_contact(event.conversation_key)
    if event.kind is ContactEventKind.ABANDONED:
        # the router says so too (an ``abandoned`` routing event); only the dedup matters here
        return None
    if contact_id is None:
        contact_id = event.event_id
        await ledger.ensure(contact_id, event.conversation_key, clock_start(event), customer_key(event))
    else:
        # the router's ``queued`` came first: it queued the contact (after a backlog, maybe long) after kefu had it
        row = await ledger.get(contact_id)
        if row is not None:
            ledger.change(row, queued_at=min(row.queued_at, clock_start(event)))
    if stored is not None:
        if event.event_id not in stored:
            return None  # a redelivery, applied before (or earlier in the batch)
        stored.discard(event.event_id)
    elif not await store_rows(conn, [_message_row(event, contact_id)]):
        return None
    await ledger.add_message(contact_id, Message(event.message.text, clock_start(event)))
    return contact_id


async def store_routing(conn: AsyncConnection, event: RoutingEvent) -> bool:
    """Store ``event`` once; False for a redelivery, applied before."""
    return event.event_id in await store_routings(conn, [event])


async def store_routings(conn: AsyncConnection, events: Sequence[RoutingEvent]) -> set[uuid.UUID]:
    """Store ``events`` once each, in one statement; the ids of those stored now (the others are redeliveries)."""
    first: dict[uuid.UUID, RoutingEvent] = {}
    for event in events:  # a redelivery within the fetch is the same event: its first copy is stored
        first.setdefault(event.event_id, event)
    # in the fetch's order: a contact's events decided at one instant (queued and offered) are read back in the
    # order they were stored in (the history sorts by occurred_at, then received_at: the transaction's start)
    rows = [_routing_row(event) for event in first.values()]
    if not rows:
        return set()
    return set((await conn.execute(_STORE_ROUTING, rows)).scalars())


async def apply_routing(ledger: Ledger, event: RoutingEvent) -> None:
    """Fold ``event``, stored now (``store_routing``), into its contact's facts."""
    row = await ledger.ensure(event.contact_id, event.conversation_key, event.occurred_at, customer_key(event))
    values: dict[str, Any] = {"queue": event.queue_id, "status": _STATUS.get(event.type, row.status)}
    if event.type is RoutingEventType.QUEUED:
        values["queued_at"] = min(row.queued_at, event.occurred_at)
    if event.type in (RoutingEventType.ACCEPTED, RoutingEventType.ASSIGNED):
        values["first_answered_at"] = row.first_answered_at or event.occurred_at
    if event.type is RoutingEventType.TRANSFERRED:
        values["transfers"] = row.transfers + 1
    for column in ("customer_tier", "owning_tam", "category"):
        if (value := getattr(event, column)) is not None:
            values[column.removeprefix("customer_")] = value
    if (key := customer_key(event)) is not None:
        values["customer_key"] = key
    if event.type in ENDS:
        values.pop("queue")  # the queue it ended in stays the one it waited in
    ledger.change(row, touched=True, **values)


async def store_rows(conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[uuid.UUID]:
    """Store messages (``_message_row``) once each, in one statement; the ids of those stored now."""
    return list((await conn.execute(_STORE_MESSAGES, arrays(_MESSAGE, rows))).scalars())


def _message_row(event: ContactEvent, contact_id: uuid.UUID) -> dict[str, Any]:
    return {"event_id": event.event_id, "contact_id": contact_id, "at": clock_start(event), "text": event.message.text}


def _opened(event: ContactEvent) -> dict[str, Any]:
    """The contact a conversation's first message opens (``apply_message``'s ``ensure``)."""
    key = event.conversation_key
    return {
        "contact_id": event.event_id,
        "conversation_key": key,
        "queued_at": clock_start(event),
        "customer_key": customer_key(event),
    }


def _routing_row(event: RoutingEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "type": event.type.value,
        "contact_id": event.contact_id,
        "agent_id": event.agent_id,
        "queue_id": event.queue_id,
        "occurred_at": event.occurred_at,
        "payload": event.model_dump_json(),
    }


async def mark_fired(ledger: Ledger, contact_id: uuid.UUID, triggers: Sequence[str]) -> None:
    """Remember that ``triggers`` fired for the contact, so the engine never fires them again."""
    if triggers and (row := await ledger.get(contact_id)) is not None:
        ledger.change(row, fired=[*row.fired, *triggers])


async def unmark_fired(ledger: Ledger, contact_id: uuid.UUID, trigger: str) -> None:
    """Forget that ``trigger`` fired (its command was refused as stale), so the engine decides it again."""
    if (row := await ledger.get(contact_id)) is not None:
        ledger.change(row, fired=[name for name in row.fired if name != trigger])


async def current_assignment(
    conn: AsyncConnection, contact_id: uuid.UUID, unapplied: Collection[uuid.UUID] = ()
) -> uuid.UUID | None:
    """The assignment of the contact's latest ``assigned`` routing event seen here, if any; ``unapplied`` are stored
    and not applied yet (a batch stores its routing events first): not seen yet."""
    found = await conn.execute(_LATEST_ASSIGNED, {"contact_id": contact_id, "count": len(unapplied) + 1})
    payload = next((row.payload for row in found if row.event_id not in unapplied), None)
    return None if payload is None else RoutingEvent.model_validate_json(payload).assignment_id


async def holder(conn: AsyncConnection, ledger: Ledger, contact_id: uuid.UUID) -> str | None:
    """The agent the contact is assigned to now, as the routing events seen here tell; None when not assigned."""
    row = await ledger.get(contact_id)
    if row is None or row.status != "assigned":
        return None
    agent: str | None = (await conn.execute(_LATEST_ASSIGNED, {"contact_id": contact_id, "count": 1})).scalar()
    return agent
