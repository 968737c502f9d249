"""Reads and writes the router's tables; turns decisions into rows and outbox events."""

import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import Channel, ContactEvent, RoutingCommand, RoutingEvent, RoutingEventType
from services.router.adapters import history
from services.router.adapters.orm import (
    agents,
    applied_events,
    assignments,
    contacts,
    messages,
    offers,
)
from services.router.domain.config import AgentConfig
from services.router.domain.decisions import (
    Abandoned,
    Assigned,
    Closed,
    Completed,
    Decision,
    Enqueued,
    OfferClosed,
    Offered,
    OfferOutcome,
    PresenceSet,
    Requeued,
)
from services.router.domain.model import (
    Agent,
    Assignment,
    ContactRef,
    Offer,
    Presence,
    Queue,
    RoutingState,
    WaitingContact,
)
from services.router.domain.preconditions import Refusal

OPEN_STATUSES = ("queued", "offered", "assigned")

_CLOSED_EVENT = {
    OfferOutcome.ACCEPTED: RoutingEventType.ACCEPTED,
    OfferOutcome.DECLINED: RoutingEventType.DECLINED,
    OfferOutcome.EXPIRED: RoutingEventType.OFFER_TIMED_OUT,
}


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


async def upsert_agents(conn: AsyncConnection, configured: list[AgentConfig], now: datetime) -> None:
    """Create or update the configured agents; presence of existing agents is kept."""
    for agent in configured:
        values: dict[str, Any] = {
            "id": agent.id,
            "name": agent.name,
            "groups": agent.groups,
            "skills": agent.skills,
            "capacity": {str(ch): n for ch, n in agent.capacity.items()},
            "shift": agent.shift.model_dump(mode="json") if agent.shift is not None else None,
            "phone_exclusive": agent.phone_exclusive,
            "wrap_up_seconds": agent.wrap_up_seconds,
            "max_missed_offers": agent.max_missed_offers,
        }
        statement = insert(agents).values(
            **values, presence=agent.initial_presence.value, presence_since=now, idle_since=now
        )
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[agents.c.id],
                set_={k: statement.excluded[k] for k in values if k != "id"},
            )
        )


async def load_state(conn: AsyncConnection, queues: dict[str, Queue], default_queue: str) -> RoutingState:
    """Rebuild the in-memory state from the durable truth."""
    state = RoutingState(queues=queues)
    for row in (await conn.execute(select(agents))).mappings():
        state.agents[row["id"]] = Agent(
            id=row["id"],
            name=row["name"],
            groups=tuple(row["groups"]),
            skills=dict(row["skills"]),
            capacity={Channel(ch): n for ch, n in row["capacity"].items()},
            presence=Presence(row["presence"]),
            idle_since=row["idle_since"],
            load=Counter(),
            phone_exclusive=row["phone_exclusive"],
            wrap_up=timedelta(seconds=row["wrap_up_seconds"]),
            max_missed=row["max_missed_offers"],
            missed=row["missed_offers"],
            busy_until=row["busy_until"],
        )
    refs: dict[uuid.UUID, ContactRef] = {}
    for row in (await conn.execute(select(contacts).where(contacts.c.status.in_(OPEN_STATUSES)))).mappings():
        refs[row["id"]] = _ref(row, row["queue_id"] if row["queue_id"] in queues else default_queue)
        if row["status"] != "assigned":
            state.waiting[row["id"]] = WaitingContact(refs[row["id"]])
    offers_made: Counter[uuid.UUID] = Counter()
    offer_rows = await conn.execute(
        select(
            offers.c.id,
            offers.c.contact_id,
            offers.c.agent_id,
            offers.c.status,
            offers.c.created_at,
            offers.c.expires_at,
            offers.c.closed_at,
        ).where(offers.c.contact_id.in_(list(refs)))
    )
    for offer_row in offer_rows:
        offers_made[offer_row.contact_id] += 1
        waiting = state.waiting.get(offer_row.contact_id)
        if waiting is None:
            continue
        if offer_row.status == "pending":
            waiting.offer_id = offer_row.id
            state.offers[offer_row.id] = Offer(offer_row.id, waiting.ref, offer_row.agent_id, offer_row.expires_at)
            state.agents[offer_row.agent_id].load[waiting.ref.channel] += 1
        elif offer_row.status != OfferOutcome.ACCEPTED and offer_row.created_at >= waiting.ref.entered:
            # in this queue (a move starts afresh): the agent's last decline starts its wait to be offered it again
            closed = offer_row.closed_at or offer_row.expires_at
            waiting.declined_by[offer_row.agent_id] = max(closed, waiting.declined_by.get(offer_row.agent_id, closed))
    for contact_id, waiting in state.waiting.items():
        waiting.offers_made = offers_made[contact_id]
    active = await conn.execute(
        select(assignments.c.id, assignments.c.contact_id, assignments.c.agent_id).where(
            assignments.c.status == "active"
        )
    )
    for active_row in active:
        ref = refs[active_row.contact_id]
        made = offers_made[ref.id]
        state.assignments[active_row.id] = Assignment(active_row.id, ref, active_row.agent_id, made)
        state.agents[active_row.agent_id].load[ref.channel] += 1
    return state


async def persist(conn: AsyncConnection, decisions: list[Decision]) -> None:
    """Write ``decisions`` and their routing events (through the outbox) in the caller's transaction."""
    events: list[RoutingEvent] = []
    for decision in decisions:
        match decision:
            case Enqueued(contact=contact):
                events.append(history.event(RoutingEventType.QUEUED, contact, contact.enqueued_at))
            case Offered(offer_id=offer_id, contact=contact, agent_id=agent_id, at=at, expires_at=expires_at):
                await conn.execute(
                    insert(offers).values(
                        id=offer_id,
                        contact_id=contact.id,
                        agent_id=agent_id,
                        status="pending",
                        created_at=at,
                        expires_at=expires_at,
                    )
                )
                await _contact_status(conn, contact.id, "offered")
                events.append(
                    history.event(RoutingEventType.OFFERED, contact, at, agent_id=agent_id, offer_id=offer_id)
                )
            case OfferClosed(offer_id=offer_id, contact=contact, agent_id=agent_id, outcome=outcome, at=at):
                await conn.execute(
                    update(offers).where(offers.c.id == offer_id).values(status=outcome.value, closed_at=at)
                )
                if outcome is OfferOutcome.ACCEPTED:
                    await conn.execute(update(agents).where(agents.c.id == agent_id).values(missed_offers=0))
                elif outcome is OfferOutcome.EXPIRED:
                    await conn.execute(
                        update(agents).where(agents.c.id == agent_id).values(missed_offers=agents.c.missed_offers + 1)
                    )
                if outcome is not OfferOutcome.ACCEPTED:
                    await _contact_status(conn, contact.id, "queued")
                    await _agent_idle(conn, agent_id, at)
                if outcome in _CLOSED_EVENT:  # a revoked offer is told by the Abandoned event that follows
                    events.append(
                        history.event(_CLOSED_EVENT[outcome], contact, at, agent_id=agent_id, offer_id=offer_id)
                    )
            case Assigned(assignment_id=assignment_id, offer_id=offer_id, contact=contact, agent_id=agent_id, at=at):
                await conn.execute(
                    insert(assignments).values(
                        id=assignment_id,
                        contact_id=contact.id,
                        agent_id=agent_id,
                        offer_id=offer_id,
                        status="active",
                        assigned_at=at,
                    )
                )
                await _contact_status(conn, contact.id, "assigned")
                events.append(
                    history.event(
                        RoutingEventType.ASSIGNED,
                        contact,
                        at,
                        agent_id=agent_id,
                        offer_id=offer_id,
                        assignment_id=assignment_id,
                    )
                )
            case Completed(assignment_id=assignment_id, contact=contact, agent_id=agent_id, at=at):
                await conn.execute(
                    update(assignments)
                    .where(assignments.c.id == assignment_id)
                    .values(
                        status="transferred" if decision.transferred else "completed",
                        completed_at=at,
                        disposition=decision.disposition,
                        resolved=decision.resolved,
                    )
                )
                if not decision.transferred:  # a transferred contact goes on waiting (``Requeued`` follows)
                    await _contact_status(conn, contact.id, "completed", closed_at=at)
                await _agent_idle(conn, agent_id, at)
                kind = RoutingEventType.TRANSFERRED if decision.transferred else RoutingEventType.COMPLETED
                reason = decision.disposition
                events.append(
                    history.event(kind, contact, at, agent_id=agent_id, assignment_id=assignment_id, reason=reason)
                )
            case Abandoned(contact=contact, at=at):
                await _contact_status(conn, contact.id, "abandoned", closed_at=at)
                events.append(history.event(RoutingEventType.ABANDONED, contact, at, reason="the customer left"))
            case PresenceSet(agent_id=agent_id, presence=presence, at=at, until=until):
                await _presence(conn, agent_id, presence, at, until)
            case Requeued(new=new, reason=reason, at=at):
                await conn.execute(
                    update(contacts)
                    .where(contacts.c.id == new.id)
                    .values(
                        status="queued",
                        queue_id=new.queue_id,
                        priority=new.priority,
                        queued_at=new.queued_at,
                        preferred_agent=new.preferred_agent,
                        prefer_until=new.prefer_until,
                    )
                )
                events.append(history.event(RoutingEventType.REQUEUED, new, at, reason=reason))
            case Closed(contact=contact, reason=reason, at=at):
                await _contact_status(conn, contact.id, "closed", closed_at=at)
                events.append(history.event(RoutingEventType.CLOSED, contact, at, reason=reason))
    await history.announce(conn, events)


def _ref(row: Any, queue_id: str) -> ContactRef:
    return ContactRef(
        row["id"],
        row["conversation_key"],
        Channel(row["channel"]),
        queue_id,
        row["priority"],
        row["enqueued_at"],
        preferred_agent=row["preferred_agent"],
        prefer_until=row["prefer_until"],
        customer_id=row["customer_id"],
        tier=row["tier"],
        owning_tam=row["owning_tam"],
        category=row["category"],
        queued_at=row["queued_at"],
    )


async def refuse_command(conn: AsyncConnection, command: RoutingCommand, refused: Refusal, at: datetime) -> None:
    """Record a refused routing command: a ``command_refused`` routing event, through the outbox, saying why.

    A contact no longer open is read from its row; one the router never had (its first message not consumed yet)
    has no event to carry the refusal, only the caller's log line.
    """
    contact = refused.contact
    if contact is None:
        row = (await conn.execute(select(contacts).where(contacts.c.id == command.contact_id))).mappings().first()
        if row is None:
            return
        contact = _ref(row, row["queue_id"])
    assignment = refused.assignment
    event = history.event(
        RoutingEventType.COMMAND_REFUSED,
        contact,
        at,
        agent_id=assignment.agent_id if assignment is not None else None,
        assignment_id=assignment.id if assignment is not None else None,
        reason=refused.reason[:1024],
        command_id=command.command_id,
    )
    await history.announce(conn, [event])


async def _presence(
    conn: AsyncConnection, agent_id: str, presence: Presence, at: datetime, until: datetime | None
) -> None:
    values: dict[str, Any] = {"presence": presence.value, "presence_since": at, "busy_until": until}
    statement = update(agents).where(agents.c.id == agent_id)
    if presence is Presence.AVAILABLE:
        # becoming available starts an idle period (and forgets missed offers); staying available does not
        await conn.execute(
            statement.where(agents.c.presence != Presence.AVAILABLE.value).values(
                **values, idle_since=at, missed_offers=0
            )
        )
    else:
        await conn.execute(statement.values(**values))


async def _contact_status(
    conn: AsyncConnection, contact_id: uuid.UUID, status: str, *, closed_at: datetime | None = None
) -> None:
    values: dict[str, Any] = {"status": status}
    if closed_at is not None:
        values["closed_at"] = closed_at
    await conn.execute(update(contacts).where(contacts.c.id == contact_id).values(**values))


async def _agent_idle(conn: AsyncConnection, agent_id: str, at: datetime) -> None:
    await conn.execute(update(agents).where(agents.c.id == agent_id).values(idle_since=at))
