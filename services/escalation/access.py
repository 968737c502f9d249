"""What ``kefu.auth``'s rules need to know here: who holds a contact (from the routing events this service has
seen) and who belongs to a target's group (the agents of the configuration file's routing section)."""

import uuid
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import RoutingEventType
from services.escalation.adapters.orm import cases, contact_facts, routing_events
from services.escalation.domain.policy import EscalationPolicy


class CaseAccess:
    """The members of each escalation target: the agents of its group (and fallback group)."""

    def __init__(self, policy: EscalationPolicy, group_members: Mapping[str, frozenset[str]]) -> None:
        self._members = {
            name: frozenset().union(
                *(group_members.get(g, frozenset()) for g in (target.group, target.fallback_group) if g)
            )
            for name, target in policy.targets.items()
        }

    def members(self, target: str) -> frozenset[str]:
        """The agents who acknowledge and resolve ``target``'s cases."""
        return self._members.get(target, frozenset())

    def targets_of(self, agent_id: str) -> list[str]:
        """The targets whose cases ``agent_id`` may see and act on."""
        return sorted(name for name, members in self._members.items() if agent_id in members)


async def holder(conn: AsyncConnection, contact_id: uuid.UUID) -> str | None:
    """The agent the contact is assigned to now, as the routing events seen here tell; None when not assigned."""
    status = (
        await conn.execute(select(contact_facts.c.status).where(contact_facts.c.contact_id == contact_id))
    ).scalar_one_or_none()
    if status != "assigned":
        return None
    latest = await conn.execute(
        select(routing_events.c.agent_id)
        .where(routing_events.c.contact_id == contact_id, routing_events.c.type == RoutingEventType.ASSIGNED.value)
        .order_by(routing_events.c.occurred_at.desc(), routing_events.c.received_at.desc())
        .limit(1)
    )
    agent: str | None = latest.scalar_one_or_none()
    return agent


async def locked_target(conn: AsyncConnection, case_id: uuid.UUID) -> str | None:
    """The case's target, its row locked until the transaction ends (a climb cannot change it meanwhile)."""
    found = await conn.execute(select(cases.c.target).where(cases.c.id == case_id).with_for_update())
    target: str | None = found.scalar_one_or_none()
    return target
