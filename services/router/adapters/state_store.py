"""The routing state's durable truth: agents as configured, and the whole in-memory state rebuilt from the tables
(at start, and when the configuration changes)."""

import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import Channel
from services.router.adapters.contact_store import OPEN_STATUSES
from services.router.adapters.orm import agents, assignments, contacts, offers
from services.router.domain.config import AgentConfig
from services.router.domain.decisions import OfferOutcome
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
        refs[row["id"]] = contact_ref(row, row["queue_id"] if row["queue_id"] in queues else default_queue)
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


def contact_ref(row: Any, queue_id: str) -> ContactRef:
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
