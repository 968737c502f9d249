"""Turns decisions into rows, in the deciding transaction, and into routing events, which the caller writes with the
transaction's other late rows (``late_writes``: the outbox and the history, all at once before the commit).

The statements are built once, with their cache keys: a call only binds its values. An UPDATE without ``values``
sets the columns its parameters name besides ``b_id``, the row's id.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import RoutingCommand, RoutingEvent, RoutingEventType
from services.router.adapters import history
from services.router.adapters.orm import agents, assignments, contacts, offers
from services.router.adapters.state_store import contact_ref
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
from services.router.domain.model import Presence
from services.router.domain.preconditions import Refusal

_INSERT_OFFER = insert(offers)
_INSERT_ASSIGNMENT = insert(assignments)
_CONTACT = update(contacts).where(contacts.c.id == bindparam("b_id"))
_OFFER = update(offers).where(offers.c.id == bindparam("b_id"))
_ASSIGNMENT = update(assignments).where(assignments.c.id == bindparam("b_id"))
_AGENT = update(agents).where(agents.c.id == bindparam("b_id"))
_AGENT_BECOMES_AVAILABLE = _AGENT.where(agents.c.presence != Presence.AVAILABLE.value)
_AGENT_MISSED = _AGENT.values(missed_offers=agents.c.missed_offers + 1)

_CLOSED_EVENT = {
    OfferOutcome.ACCEPTED: RoutingEventType.ACCEPTED,
    OfferOutcome.DECLINED: RoutingEventType.DECLINED,
    OfferOutcome.EXPIRED: RoutingEventType.OFFER_TIMED_OUT,
}


async def persist(conn: AsyncConnection, decisions: list[Decision]) -> list[RoutingEvent]:
    """Write the rows of ``decisions`` in the caller's transaction; return their routing events, to announce."""
    events: list[RoutingEvent] = []
    for decision in decisions:
        match decision:
            case Enqueued(contact=contact):
                events.append(history.event(RoutingEventType.QUEUED, contact, contact.enqueued_at))
            case Offered(offer_id=offer_id, contact=contact, agent_id=agent_id, at=at, expires_at=expires_at):
                offer = {"id": offer_id, "contact_id": contact.id, "agent_id": agent_id, "status": "pending"}
                await conn.execute(_INSERT_OFFER, {**offer, "created_at": at, "expires_at": expires_at})
                await _contact_status(conn, contact.id, "offered")
                events.append(
                    history.event(RoutingEventType.OFFERED, contact, at, agent_id=agent_id, offer_id=offer_id)
                )
            case OfferClosed():
                events += await _offer_closed(conn, decision)
            case Assigned(assignment_id=assignment_id, offer_id=offer_id, contact=contact, agent_id=agent_id, at=at):
                assignment = {"id": assignment_id, "contact_id": contact.id, "agent_id": agent_id}
                await conn.execute(
                    _INSERT_ASSIGNMENT, {**assignment, "offer_id": offer_id, "status": "active", "assigned_at": at}
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
            case Completed():
                events.append(await _completed(conn, decision))
            case Abandoned(contact=contact, at=at):
                await _contact_status(conn, contact.id, "abandoned", closed_at=at)
                events.append(history.event(RoutingEventType.ABANDONED, contact, at, reason="the customer left"))
            case PresenceSet(agent_id=agent_id, presence=presence, at=at, until=until):
                await _presence(conn, agent_id, presence, at, until)
            case Requeued(new=new, reason=reason, at=at):
                await conn.execute(
                    _CONTACT,
                    {
                        "b_id": new.id,
                        "status": "queued",
                        "queue_id": new.queue_id,
                        "priority": new.priority,
                        "queued_at": new.queued_at,
                        "preferred_agent": new.preferred_agent,
                        "prefer_until": new.prefer_until,
                    },
                )
                events.append(history.event(RoutingEventType.REQUEUED, new, at, reason=reason))
            case Closed(contact=contact, reason=reason, at=at):
                await _contact_status(conn, contact.id, "closed", closed_at=at)
                events.append(history.event(RoutingEventType.CLOSED, contact, at, reason=reason))
    return events


async def _offer_closed(conn: AsyncConnection, decision: OfferClosed) -> list[RoutingEvent]:
    """An offer closed: accepted (the agent's missed offers start again), or declined, expired or revoked (the
    contact waits again and the agent's slot is free)."""
    offer_id, contact, agent_id, outcome, at = (
        decision.offer_id,
        decision.contact,
        decision.agent_id,
        decision.outcome,
        decision.at,
    )
    await conn.execute(_OFFER, {"b_id": offer_id, "status": outcome.value, "closed_at": at})
    if outcome is OfferOutcome.ACCEPTED:
        await conn.execute(_AGENT, {"b_id": agent_id, "missed_offers": 0})
    elif outcome is OfferOutcome.EXPIRED:
        await conn.execute(_AGENT_MISSED, {"b_id": agent_id})
    if outcome is not OfferOutcome.ACCEPTED:
        await _contact_status(conn, contact.id, "queued")
        await _agent_idle(conn, agent_id, at)
    if outcome not in _CLOSED_EVENT:  # a revoked offer is told by the Abandoned event that follows
        return []
    return [history.event(_CLOSED_EVENT[outcome], contact, at, agent_id=agent_id, offer_id=offer_id)]


async def _completed(conn: AsyncConnection, decision: Completed) -> RoutingEvent:
    """An assignment ended: completed (the contact closes) or transferred (``Requeued`` follows: it waits again)."""
    contact, agent_id, at = decision.contact, decision.agent_id, decision.at
    await conn.execute(
        _ASSIGNMENT,
        {
            "b_id": decision.assignment_id,
            "status": "transferred" if decision.transferred else "completed",
            "completed_at": at,
            "disposition": decision.disposition,
            "resolved": decision.resolved,
        },
    )
    if not decision.transferred:
        await _contact_status(conn, contact.id, "completed", closed_at=at)
    await _agent_idle(conn, agent_id, at)
    kind = RoutingEventType.TRANSFERRED if decision.transferred else RoutingEventType.COMPLETED
    return history.event(
        kind, contact, at, agent_id=agent_id, assignment_id=decision.assignment_id, reason=decision.disposition
    )


async def refuse_command(
    conn: AsyncConnection, command: RoutingCommand, refused: Refusal, at: datetime
) -> list[RoutingEvent]:
    """A refused routing command's ``command_refused`` routing event (to announce: through the outbox), saying why.

    A contact no longer open is read from its row; one the router never had (its first message not consumed yet)
    has no event to carry the refusal, only the caller's log line.
    """
    contact = refused.contact
    if contact is None:
        row = (await conn.execute(select(contacts).where(contacts.c.id == command.contact_id))).mappings().first()
        if row is None:
            return []
        contact = contact_ref(row, row["queue_id"])
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
    return [event]


async def _presence(
    conn: AsyncConnection, agent_id: str, presence: Presence, at: datetime, until: datetime | None
) -> None:
    values: dict[str, Any] = {"b_id": agent_id, "presence": presence.value, "presence_since": at, "busy_until": until}
    if presence is Presence.AVAILABLE:
        # becoming available starts an idle period (and forgets missed offers); staying available does not
        await conn.execute(_AGENT_BECOMES_AVAILABLE, {**values, "idle_since": at, "missed_offers": 0})
    else:
        await conn.execute(_AGENT, values)


async def _contact_status(
    conn: AsyncConnection, contact_id: uuid.UUID, status: str, *, closed_at: datetime | None = None
) -> None:
    values: dict[str, Any] = {"b_id": contact_id, "status": status}
    if closed_at is not None:
        values["closed_at"] = closed_at
    await conn.execute(_CONTACT, values)


async def _agent_idle(conn: AsyncConnection, agent_id: str, at: datetime) -> None:
    await conn.execute(_AGENT, {"b_id": agent_id, "idle_since": at})
