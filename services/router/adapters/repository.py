"""Turns decisions into rows, in the deciding transaction, and into routing events, which the caller writes with the
transaction's other late rows (``late_writes``: the outbox and the history, all at once before the commit).

The statements are built once, with their cache keys: a call only binds its values. An UPDATE without ``values``
sets the columns its parameters name besides ``b_id``, the row's id.
"""

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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
_OPENED = insert(contacts)  # the row of a contact arriving (contact_store.opening)
_OPENED_OFFERED = insert(contacts).values(status="offered").add_cte(_offer_made.cte("offer_made"))  # at once
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
# an offer accepted and its assignment: the agent's, the offer's, the assignment's and the contact's rows
_ACCEPTED_ASSIGNED = (
    _CLOSED_OFFER[OfferOutcome.ACCEPTED]
    .add_cte(_assignment_made.cte("assignment_made"))
    .add_cte(update(contacts).where(contacts.c.id == bindparam("s_contact")).values(status="assigned").cte("assigned"))
)
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


@dataclass(frozen=True, slots=True)
class _Opened:
    """A contact's arrival: its row (``contact_store.opening``), written with its offer when it is offered at once."""

    row: Mapping[str, Any]
    offered: Offered | None


@dataclass(frozen=True, slots=True)
class _Accepted:
    """An offer accepted, and the assignment made of it."""

    closed: OfferClosed
    assigned: Assigned


async def persist(
    conn: AsyncConnection, decisions: list[Decision], opened: Mapping[str, Any] | None = None
) -> list[RoutingEvent]:
    """Write the rows of ``decisions`` in the caller's transaction (``opened``: the row of the contact they open,
    written before its first change); return their routing events, to announce. A decision is written alone, but
    for two pairs that follow each other as one event decides them (``_together``), one statement each pair: a new
    contact and its offer, an accepted offer and its assignment."""
    events: list[RoutingEvent] = []
    for decision in _together(decisions, opened):
        match decision:
            case Enqueued(contact=contact):
                events.append(history.event(RoutingEventType.QUEUED, contact, contact.enqueued_at))
            case Offered():
                await conn.execute(_OFFERED, {**_offer(decision), "b_id": decision.contact.id})
                events.append(_offered(decision))
            case _Opened(row=row, offered=None):
                await conn.execute(_OPENED, {**row, "status": "queued"})
            case _Opened(row=row, offered=Offered() as offered):
                await conn.execute(_OPENED_OFFERED, {**row, **_offer(offered)})
                events.append(_offered(offered))
            case OfferClosed():
                events += await _offer_closed(conn, decision)
            case Assigned():
                await conn.execute(_ASSIGNED, {**_assignment(decision), "b_id": decision.contact.id})
                events.append(_assigned(decision))
            case _Accepted(closed=closed, assigned=assigned):
                await conn.execute(_ACCEPTED_ASSIGNED, {**_closing(closed), **_assignment(assigned)})
                events += [_closed_event(closed), _assigned(assigned)]
            case Completed():
                events.append(await _completed(conn, decision))
            case Abandoned(contact=contact, at=at):
                await _contact_status(conn, contact.id, "abandoned", closed_at=at)
                events.append(history.event(RoutingEventType.ABANDONED, contact, at, reason="the customer left"))
            case PresenceSet(agent_id=agent_id, presence=presence, at=at, until=until):
                await _presence(conn, agent_id, presence, at, until)
            case Requeued():
                events.append(await _requeued(conn, decision))
            case Closed(contact=contact, reason=reason, at=at):
                await _contact_status(conn, contact.id, "closed", closed_at=at)
                events.append(history.event(RoutingEventType.CLOSED, contact, at, reason=reason))
    return events


def _together(decisions: list[Decision], opened: Mapping[str, Any] | None) -> Iterator[Decision | _Opened | _Accepted]:
    """``decisions`` in their order, with ``opened``'s row before its contact's first change (after its
    ``Enqueued``, which writes no row, together with its ``Offered`` when that follows), and an accepted offer
    together with the assignment made of it."""
    at = 0
    if opened is not None:
        offered = _offered_at_once(decisions, opened["id"])
        if offered is not None:
            yield decisions[0]
            at = 2
        yield _Opened(opened, offered)
    while at < len(decisions):
        decision, after = decisions[at], decisions[at + 1] if at + 1 < len(decisions) else None
        match decision, after:
            case OfferClosed(outcome=OfferOutcome.ACCEPTED, offer_id=offer_id), Assigned() if (
                after.offer_id == offer_id
            ):
                yield _Accepted(decision, after)
                at += 2
            case _:
                yield decision
                at += 1


def _offered_at_once(decisions: list[Decision], contact_id: uuid.UUID) -> Offered | None:
    """The offer of a contact that arrives (``Enqueued``) and is offered at once, if so."""
    match decisions[:2]:
        case [Enqueued(contact=contact), Offered() as offered] if contact.id == contact_id == offered.contact.id:
            return offered
    return None


def _offer(made: Offered) -> dict[str, Any]:
    """The parameters of the offer's row (``_offer_made``)."""
    ids = {"o_id": made.offer_id, "o_contact": made.contact.id, "o_agent": made.agent_id}
    return ids | {"o_at": made.at, "o_expires": made.expires_at}


def _offered(decision: Offered) -> RoutingEvent:
    return history.event(
        RoutingEventType.OFFERED, decision.contact, decision.at, agent_id=decision.agent_id, offer_id=decision.offer_id
    )


def _assignment(made: Assigned) -> dict[str, Any]:
    """The parameters of the assignment's row (``_assignment_made``)."""
    ids = {"s_id": made.assignment_id, "s_contact": made.contact.id, "s_offer": made.offer_id}
    return ids | {"s_agent": made.agent_id, "s_at": made.at}


def _assigned(decision: Assigned) -> RoutingEvent:
    return history.event(
        RoutingEventType.ASSIGNED,
        decision.contact,
        decision.at,
        agent_id=decision.agent_id,
        offer_id=decision.offer_id,
        assignment_id=decision.assignment_id,
    )


async def _requeued(conn: AsyncConnection, decision: Requeued) -> RoutingEvent:
    new = decision.new
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
    return history.event(RoutingEventType.REQUEUED, new, decision.at, reason=decision.reason)


async def _offer_closed(conn: AsyncConnection, decision: OfferClosed) -> list[RoutingEvent]:
    """An offer closed: accepted (the agent's missed offers start again), or declined, expired or revoked (the
    contact waits again and the agent's slot is free)."""
    await conn.execute(_CLOSED_OFFER[decision.outcome], _closing(decision))
    # a revoked offer is told by the Abandoned event that follows
    return [_closed_event(decision)] if decision.outcome in _CLOSED_EVENT else []


def _closing(decision: OfferClosed) -> dict[str, Any]:
    """The parameters of the offer's closing (``_CLOSED_OFFER``)."""
    outcome, at = decision.outcome, decision.at
    values: dict[str, Any] = {
        "b_id": decision.agent_id,
        "o_id": decision.offer_id,
        "o_status": outcome.value,
        "o_at": at,
    }
    if outcome is not OfferOutcome.ACCEPTED:
        values |= {"c_id": decision.contact.id, "a_idle": at}
    return values


def _closed_event(decision: OfferClosed) -> RoutingEvent:
    return history.event(
        _CLOSED_EVENT[decision.outcome],
        decision.contact,
        decision.at,
        agent_id=decision.agent_id,
        offer_id=decision.offer_id,
    )


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
