"""The router's handlers of what agents, supervisors, admins and its own clock ask of it: one per command.

Each checks what only the caller's request can get wrong (an offer not theirs, an unknown target), then makes one
change through the house (``RoutingService``): the domain decides, the change is written, then applied.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from contracts import Channel
from services.router.adapters import access, customers, state_store
from services.router.adapters.customers import Profile
from services.router.domain.config import AgentConfig, RoutingConfig
from services.router.domain.decide import is_due
from services.router.domain.decisions import (
    Assigned,
    AssignmentCompleted,
    ClockTicked,
    ContactMoved,
    OfferAccepted,
    OfferDeclined,
    PresenceRequested,
)
from services.router.domain.model import Agent, Assignment, ContactRef, Presence
from services.router.exceptions import (
    NotYours,
    UnknownAgent,
    UnknownAssignment,
    UnknownCustomer,
    UnknownOffer,
    WrongState,
)
from services.router.service import RoutingService


@dataclass(frozen=True, slots=True)
class TransferTarget:
    """Where a transfer sends a contact: a queue (the current one when absent), an agent, or both."""

    queue_id: str | None = None
    agent_id: str | None = None
    wait_seconds: float = 120.0  # how long a contact transferred to an agent waits for that agent
    priority: int | None = None
    reason: str | None = None


async def set_presence(service: RoutingService, agent_id: str, presence: Presence) -> None:
    """Set an agent's presence; becoming available takes the best waiting work at once."""
    await service.run(PresenceRequested(agent_id, presence))


async def accept(service: RoutingService, offer_id: UUID, agent_id: str) -> Assignment:
    """``agent_id`` accepts a pending offer made to them: it becomes an assignment."""
    await _require_pending(service, offer_id, agent_id)
    decisions = await service.run(OfferAccepted(offer_id, agent_id))
    assigned = next(d for d in decisions if isinstance(d, Assigned))
    return service.state.assignments[assigned.assignment_id]


async def decline(service: RoutingService, offer_id: UUID, agent_id: str) -> None:
    """``agent_id`` declines a pending offer made to them; the contact goes back to its queue."""
    await _require_pending(service, offer_id, agent_id)
    await service.run(OfferDeclined(offer_id, agent_id))


async def complete(
    service: RoutingService,
    assignment_id: UUID,
    agent_id: str | None,
    *,
    disposition: str | None = None,
    resolved: bool | None = None,
) -> None:
    """Complete an open assignment: as its agent, or (``agent_id`` None) as a supervisor."""
    assignment = service.state.assignments.get(assignment_id)
    acting = agent_id if agent_id is not None else (assignment.agent_id if assignment else "")
    await service.run(AssignmentCompleted(assignment_id, acting, disposition, resolved))


async def transfer(
    service: RoutingService, assignment_id: UUID, agent_id: str | None, target: TransferTarget
) -> ContactRef:
    """Transfer an open assignment to a queue or an agent: the contact waits again, its history kept.

    ``agent_id`` is the transferring agent (None: a supervisor). To an agent, the contact waits for that agent
    for ``target.wait_seconds``, then anyone eligible in the queue takes it.
    """
    assignment = service.state.assignments.get(assignment_id)
    if assignment is None:
        raise UnknownAssignment(f"no open assignment {assignment_id}")
    if agent_id is not None and assignment.agent_id != agent_id:
        raise NotYours(f"assignment {assignment_id} belongs to another agent")
    if target.agent_id is not None and target.agent_id not in service.state.agents:
        raise UnknownAgent(f"no agent {target.agent_id!r}")
    queue_id = target.queue_id or assignment.contact.queue_id
    until = service.clock() + timedelta(seconds=target.wait_seconds) if target.agent_id else None
    reason = target.reason or (f"transferred to {target.agent_id}" if target.agent_id else f"transferred to {queue_id}")
    moved = ContactMoved(
        assignment.contact.id,
        queue_id,
        reason,
        priority=target.priority,
        agent_id=agent_id,
        preferred_agent=target.agent_id,
        prefer_until=until,
    )
    await service.run(moved)
    return _where(service, assignment.contact.id)


async def move(
    service: RoutingService, contact_id: UUID, queue_id: str, reason: str, priority: int | None = None
) -> ContactRef:
    """Move a waiting or assigned contact to ``queue_id`` (a supervisor)."""
    await service.run(ContactMoved(contact_id, queue_id, reason, priority=priority))
    return _where(service, contact_id)


async def _require_pending(service: RoutingService, offer_id: UUID, agent_id: str) -> None:
    """404 for an offer never made to ``agent_id`` (another's looks the same), 409 for one no longer pending."""
    pending = service.state.offers.get(offer_id)
    if pending is not None and pending.agent_id == agent_id:
        return
    async with service.engine.connect() as conn:
        holder = await access.offer_holder(conn, offer_id)
    if holder is None or holder[0] != agent_id:
        raise UnknownOffer(f"no offer {offer_id}")
    raise WrongState(f"offer {offer_id} is no longer pending: it was {holder[1]}")


def _where(service: RoutingService, contact_id: UUID) -> ContactRef:
    """Where a contact moved or transferred now is: waiting, or already assigned again."""
    waiting = service.state.waiting.get(contact_id)
    if waiting is not None:
        return waiting.ref
    return next(a.contact for a in service.state.assignments.values() if a.contact.id == contact_id)


async def tick(service: RoutingService) -> None:
    """Act on whatever came due: offers expire, wrap-ups end, queues open or close, bullseye steps widen,
    overflows and preferences end."""
    if is_due(service.state, service.clock()):
        await service.run(ClockTicked())


async def upsert_agent(service: RoutingService, config: AgentConfig) -> Agent:
    """Create an agent, or update its name, groups, skills and capacity (presence and work are kept)."""
    now = service.clock()
    async with service.change() as change:
        await state_store.upsert_agents(change.conn, [config], now)
        change.then(lambda: _configure(service, config, now))
    agent = service.state.agents[config.id]
    if agent.presence is Presence.AVAILABLE:
        await set_presence(service, agent.id, Presence.AVAILABLE)  # new skills or slots may take waiting work
    return agent


def _configure(service: RoutingService, config: AgentConfig, now: datetime) -> None:
    """The agent in memory as configured: a new one starts in its initial presence, a known one keeps its presence
    and work. Its queues may change, so the state is reindexed."""
    state = service.state
    agent = state.agents.get(config.id)
    if agent is None:
        agent = state.agents[config.id] = Agent(
            id=config.id,
            name=config.name,
            groups=tuple(config.groups),
            skills=dict(config.skills),
            capacity=dict(config.capacity),
            presence=config.initial_presence,
            idle_since=now,
        )
    else:
        agent.name, agent.groups = config.name, tuple(config.groups)
        agent.skills, agent.capacity = dict(config.skills), dict(config.capacity)
    agent.phone_exclusive, agent.max_missed = config.phone_exclusive, config.max_missed_offers
    agent.wrap_up = timedelta(seconds=config.wrap_up_seconds)
    state.reindex()  # which queues the agent may serve has changed


async def apply_config(service: RoutingService, config: RoutingConfig, text: str, applied_by: str) -> int:
    """Make ``config`` the routing configuration, as a new version; return its number. Available agents then take
    what the new queues or skills let them."""
    version = await service.reconfigure(config, text, applied_by)
    for agent in [a for a in service.state.agents.values() if a.presence is Presence.AVAILABLE]:
        await set_presence(service, agent.id, Presence.AVAILABLE)
    return version


async def link_identity(
    service: RoutingService, customer_id: UUID, channel: Channel, platform_id: str
) -> dict[str, Any]:
    """Attach an identity (and whatever its customer had) to ``customer_id``; return the customer."""
    async with service.change() as change:
        if not await customers.exists(change.conn, customer_id):
            raise UnknownCustomer(f"no customer {customer_id}")
        await customers.link(change.conn, customer_id, channel, platform_id)
        found = await customers.view(change.conn, customer_id)
    assert found is not None
    return found


async def set_customer_profile(service: RoutingService, customer_id: UUID, profile: Profile) -> dict[str, Any]:
    """Set a customer's tier and owning TAM (an existing agent); return the customer."""
    if profile.owning_tam is not None and profile.owning_tam not in service.state.agents:
        raise UnknownAgent(f"owning_tam: no agent {profile.owning_tam!r}")
    async with service.engine.begin() as conn:
        if not await customers.set_profile(conn, customer_id, profile):
            raise UnknownCustomer(f"no customer {customer_id}")
        found = await customers.view(conn, customer_id)
    assert found is not None
    return found
