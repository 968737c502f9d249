"""The router's read side: what the API, the desktop streams and the shift keeper look at, never changing it.

Live things (agents, offers, assignments, what waits) come from the routing state in memory, read settled (as
committed: ``RoutingService.settled``) where they are shown; history (customers,
timelines, a queue's recent window, configuration versions, shifts) from PostgreSQL.
"""

from typing import Any, NamedTuple
from uuid import UUID

from services.router.adapters import access, config_store, customers, shifts, stats, timeline
from services.router.domain.model import Agent, Assignment, Presence, RoutingState
from services.router.exceptions import UnknownContact, UnknownCustomer, UnknownQueue
from services.router.service import RoutingService
from services.router.views import agent_view, assignment_view, offer_view

DEFAULT_ANSWER_WITHIN_SECONDS = 20


class ShiftedAgent(NamedTuple):
    """An agent with a shift: the shift as stored, and the agent's presence now."""

    shift: dict[str, Any]
    presence: Presence


def agent(service: RoutingService, agent_id: str) -> Agent | None:
    """The agent, for the API's own-agent checks (``entrypoints.deps``)."""
    return service.state.agents.get(agent_id)


def assignment(service: RoutingService, assignment_id: UUID) -> Assignment | None:
    """An open assignment, for the API's own-assignment checks (``entrypoints.deps``)."""
    return service.state.assignments.get(assignment_id)


async def agents(service: RoutingService) -> list[dict[str, Any]]:
    """Every agent with their presence and load, as committed."""
    async with service.settled() as state:
        return [agent_view(a) for a in state.agents.values()]


def pending_offers(state: RoutingState, agent_id: str) -> list[dict[str, Any]]:
    """The agent's pending offers in ``state``. Synchronous: a desktop stream reads them at one instant with the
    feed's id, the state settled."""
    return [offer_view(o) for o in state.offers.values() if o.agent_id == agent_id]


async def offers_of(service: RoutingService, agent_id: str) -> list[dict[str, Any]]:
    """The agent's pending offers, as committed (an offer a batch is still deciding is not shown before it is)."""
    async with service.settled() as state:
        return pending_offers(state, agent_id)


async def assignments_of(service: RoutingService, agent_id: str) -> list[dict[str, Any]]:
    """The agent's open assignments, as committed."""
    async with service.settled() as state:
        return [assignment_view(a) for a in state.assignments.values() if a.agent_id == agent_id]


async def queues_now(service: RoutingService) -> list[dict[str, Any]]:
    """Every queue with what waits in it now, as committed."""
    now = service.clock()
    async with service.settled() as state:
        return [stats.live(state, queue, now) for queue in state.queues.values()]


async def queue_stats(
    service: RoutingService, queue_id: str, *, window_minutes: int, answer_within_seconds: int | None
) -> dict[str, Any]:
    """A queue now and over the last ``window_minutes``, with the estimated wait of a new contact."""
    queue = service.state.queues.get(queue_id)
    if queue is None:
        raise UnknownQueue(f"no queue {queue_id!r}")
    if answer_within_seconds is None:
        answer_within_seconds = round(queue.service_level_seconds or DEFAULT_ANSWER_WITHIN_SECONDS)
    now = service.clock()
    async with service.engine.connect() as conn:
        history = await stats.window(
            conn, queue_id, now=now, minutes=window_minutes, answer_within_seconds=answer_within_seconds
        )
    # What waits now is read after the history, settled: a change commits before it is applied to the state, so
    # the state read first, or while a change is between its commit and its apply, could still show a contact
    # waiting that the history already counts as abandoned or answered (both, once, in the wallboard test under
    # load). Waiting until it is settled waits for every change the history saw to be applied.
    async with service.settled() as state:
        current = stats.live(state, queue, now)
    return {**current, **history, "estimated_wait_seconds": stats.estimated_wait(current, history["aht_seconds"])}


async def customer(service: RoutingService, customer_id: UUID) -> dict[str, Any]:
    """A customer: profile, identities on every channel, and contacts."""
    async with service.engine.connect() as conn:
        return _found(await customers.view(conn, customer_id), UnknownCustomer(f"no customer {customer_id}"))


async def contact(service: RoutingService, contact_id: UUID) -> dict[str, Any]:
    """A contact with its routing history and its messages, oldest first."""
    async with service.engine.connect() as conn:
        return _found(await timeline.contact_view(conn, contact_id), UnknownContact(f"no contact {contact_id}"))


def _found(view: dict[str, Any] | None, missing: Exception) -> dict[str, Any]:
    """``view``, or the caller's 404 when the adapter found nothing."""
    if view is None:
        raise missing
    return view


async def contact_readers(service: RoutingService, contact_id: UUID) -> set[str]:
    """The agents that may read the contact: they hold or held an assignment, or have an open offer, of it."""
    async with service.engine.connect() as conn:
        return await access.contact_readers(conn, contact_id)


async def customer_readers(service: RoutingService, customer_id: UUID) -> set[str]:
    """The agents that may read the customer: readers of any of its contacts."""
    async with service.engine.connect() as conn:
        return await access.customer_readers(conn, customer_id)


async def current_config(service: RoutingService) -> config_store.Version:
    """The routing configuration in force, with its version."""
    async with service.engine.connect() as conn:
        found = await config_store.latest(conn)
    assert found is not None, "start() records the first version"
    return found


async def stored_shifts(service: RoutingService) -> dict[str, dict[str, Any]]:
    """Agent id -> shift (as stored JSON) for every agent with one."""
    async with service.engine.connect() as conn:
        return await shifts.stored(conn)


async def shifted_agents(service: RoutingService) -> dict[str, ShiftedAgent]:
    """Agent id -> shift and presence, for every known agent with a stored shift."""
    stored = await stored_shifts(service)
    known = service.state.agents
    return {a: ShiftedAgent(shift, known[a].presence) for a, shift in stored.items() if a in known}
