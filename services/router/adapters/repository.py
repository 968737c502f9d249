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

_CONTACT = update(contacts).where(contacts.c.id == bindparam("b_id"))
_AGENT = update(agents).where(agents.c.id == bindparam("b_id"))
_AGENT_BECOMES_AVAILABLE = _AGENT.where(agents.c.presence != Presence.AVAILABLE.value)

# A decision's rows in one statement: the rows of other tables as data-modifying CTEs (one round trip, not two or
# three; each table's row once, so their order within the statement does not matter).
_offer_made = insert(offers).values(
    id=bindparam("o_id"),
    contact_id=bindparam("o_contact"),
    agent_id=bindparam("o_agent"),
    status="pending",
    created_at=bindparam("o_at"),
    expires_at=bindparam("o_expires"),
)
_OFFERED = _CONTACT.values(status="offered").add_cte(_offer_made.cte("offer_made"))
_assignment_made = insert(assignments).values(
    id=bindparam("s_id"),
    contact_id=bindparam("s_contact"),
    agent_id=bindparam("s_agent"),
    offer_id=bindparam("s_offer"),
    status="active",
    assigned_at=bindparam("s_at"),
)
_ASSIGNED = _CONTACT.values(status="assigned").add_cte(_assignment_made.cte("assignment_made"))
_offer_ends = (
    update(offers)
    .where(offers.c.id == bindparam("o_id"))
    .values(status=bindparam("o_status"), closed_at=bindparam("o_at"))
    .cte("offer_closed")
)
_contact_waits = update(contacts).where(contacts.c.id == bindparam("c_id")).values(status="queued").cte("waits")
_CLOSED_OFFER = {  # the agent's row, with the offer's (and unless accepted, the contact's: it waits again)
    OfferOutcome.ACCEPTED: _AGENT.values(missed_offers=0).add_cte(_offer_ends),
    OfferOutcome.EXPIRED: _AGENT.values(missed_offers=agents.c.missed_offers + 1, idle_since=bindparam("a_idle"))
    .add_cte(_offer_ends)
    .add_cte(_contact_waits),
    OfferOutcome.DECLINED: _AGENT.values(idle_since=bindparam("a_idle")).add_cte(_offer_ends).add_cte(_contact_waits),
    OfferOutcome.REVOKED: _AGENT.values(idle_since=bindparam("a_idle")).add_cte(_offer_ends).add_cte(_contact_waits),
}
_assignment_ended = (
    update(assignments)
    .where(assignments.c.id == bindparam("s_id"))
    .values(
        status=bindparam("s_status"),
        completed_at=bindparam("s_at"),
        disposition=bindparam("s_disposition"),
        resolved=bindparam("s_resolved"),
    )
    .cte("assignment_ended")
)
_contact_completed = (
    update(contacts)
    .where(contacts.c.id == bindparam("c_id"))
    .values(status="completed", closed_at=bindparam("c_closed"))
    .cte("contact_completed")
)
_agent_idle = _AGENT.values(idle_since=bindparam("a_idle")).add_cte(_assignment_ended)
_ENDED = {False: _agent_idle.add_cte(_contact_completed), True: _agent_idle}  # by transferred

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
                offer = {"o_id": offer_id, "o_contact": contact.id, "o_agent": agent_id, "o_at": at}
                await conn.execute(_OFFERED, {**offer, "o_expires": expires_at, "b_id": contact.id})
                events.append(
                    history.event(RoutingEventType.OFFERED, contact, at, agent_id=agent_id, offer_id=offer_id)
                )
            case OfferClosed():
                events += await _offer_closed(conn, decision)
            case Assigned(assignment_id=assignment_id, offer_id=offer_id, contact=contact, agent_id=agent_id, at=at):
                assignment = {"s_id": assignment_id, "s_contact": contact.id, "s_agent": agent_id, "s_offer": offer_id}
                await conn.execute(_ASSIGNED, {**assignment, "s_at": at, "b_id": contact.id})
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
    values: dict[str, Any] = {"b_id": agent_id, "o_id": offer_id, "o_status": outcome.value, "o_at": at}
    if outcome is not OfferOutcome.ACCEPTED:
        values |= {"c_id": contact.id, "a_idle": at}
    await conn.execute(_CLOSED_OFFER[outcome], values)
    if outcome not in _CLOSED_EVENT:  # a revoked offer is told by the Abandoned event that follows
        return []
    return [history.event(_CLOSED_EVENT[outcome], contact, at, agent_id=agent_id, offer_id=offer_id)]


async def _completed(conn: AsyncConnection, decision: Completed) -> RoutingEvent:
    """An assignment ended: completed (the contact closes) or transferred (``Requeued`` follows: it waits again)."""
    contact, agent_id, at = decision.contact, decision.agent_id, decision.at
    values: dict[str, Any] = {
        "b_id": agent_id,
        "a_idle": at,
        "s_id": decision.assignment_id,
        "s_status": "transferred" if decision.transferred else "completed",
        "s_at": at,
        "s_disposition": decision.disposition,
        "s_resolved": decision.resolved,
    }
    if not decision.transferred:
        values |= {"c_id": contact.id, "c_closed": at}
    await conn.execute(_ENDED[decision.transferred], values)
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
