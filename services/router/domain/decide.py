"""The router's decision core: ``decide(state, event, now) -> decisions`` and ``apply``.

Pure: no I/O, no clock, no randomness; ``decide`` never changes ``state``. It plans on an overlay
of the changes its own earlier decisions make, so one event may chain (a decline frees the agent
and re-offers the contact) and every decision sees the ones before it. ``apply`` then makes the
decisions true in ``state``, after the caller has persisted them.

The plan is built in layers: ``overlay`` (reading the state through the plan's notes), ``candidates`` (the best
agent for a contact and contact for an agent), ``plan`` (each decision and its notes), ``routing`` (which decisions
each event makes: the policy).
"""

from collections.abc import Iterable
from datetime import datetime

from contracts import Channel
from services.router.domain.decisions import (
    ACCEPTED,
    EXPIRED,
    Abandoned,
    Assigned,
    AssignmentCompleted,
    ClockTicked,
    Completed,
    ContactAbandoned,
    ContactArrived,
    ContactMoved,
    Decision,
    Enqueued,
    Event,
    HoursChanged,
    OfferAccepted,
    OfferClosed,
    OfferDeclined,
    Offered,
    PresenceRequested,
    PresenceSet,
    Requeued,
    TimersFired,
)
from services.router.domain.entities import AVAILABLE, Agent, Assignment, Offer, WaitingContact
from services.router.domain.index import RoutingIndex
from services.router.domain.model import RoutingState
from services.router.domain.routing import RoutingPlan


def decide(state: RoutingState, event: Event, now: datetime) -> list[Decision]:
    """Return what the router does about ``event`` at ``now``, without changing ``state``."""
    plan = RoutingPlan(state, now)
    match event:  # the most frequent first: each case is an isinstance check
        case ContactArrived(contact=contact):
            plan.arrive(contact)
        case OfferAccepted():
            plan.accept(event)
        case AssignmentCompleted():
            plan.finish(event)
        case PresenceRequested():
            plan.request_presence(event)
        case OfferDeclined():
            plan.decline(event)
        case ClockTicked():
            plan.tick()
        case ContactAbandoned(contact_id=contact_id):
            plan.abandon_waiting(contact_id)
        case ContactMoved():
            plan.move_contact(event)
    return plan.decisions


def is_due(state: RoutingState, now: datetime) -> bool:
    """Whether a ``ClockTicked`` at ``now`` has anything to do: an offer, a contact's timer or a wrap-up came due,
    or a queue opened or closed."""
    due = state.index().due()
    if due is not None and due <= now:
        return True
    return any(
        q.hours is not None and q.hours.is_open(now) != state.hours_open.get(q.id) for q in state.queues.values()
    )


def apply(state: RoutingState, decisions: Iterable[Decision]) -> None:
    """Make ``decisions`` true in ``state`` and in its indexes."""
    index = state.index()
    for decision in decisions:
        if isinstance(decision, Offered):
            contact, agent_id = decision.contact, decision.agent_id
            waiting = index.contact_reserved(contact)  # the state's contact, from its live entry: no UUID hash
            waiting.offer_id = decision.offer_id
            waiting.offers_made += 1
            offer = state.offers[decision.offer_id] = Offer(decision.offer_id, contact, agent_id, decision.expires_at)
            agent = state.agents[agent_id]
            agent.load[contact.channel] += 1
            agent.last_offered_at = decision.at
            index.offer_added(offer)
            index.agent_busier(agent, contact.channel)
        elif isinstance(decision, Enqueued):
            contact = decision.contact
            waiting = state.waiting[contact.id] = WaitingContact(contact)
            index.contact_added(waiting)
        elif isinstance(decision, OfferClosed):
            _offer_closed(state, index, decision)
        elif isinstance(decision, Assigned):
            contact = decision.contact
            made = state.waiting.pop(contact.id).offers_made
            index.contact_removed(contact)
            state.assignments[decision.assignment_id] = Assignment(
                decision.assignment_id, contact, decision.agent_id, made
            )
        elif isinstance(decision, Completed):
            del state.assignments[decision.assignment_id]
            agent = state.agents[decision.agent_id]
            _release(agent, decision.contact.channel, decision.at)
            index.agent_freed(agent)
        elif isinstance(decision, Abandoned):
            del state.waiting[decision.contact.id]
            index.contact_removed(decision.contact)
        elif isinstance(decision, PresenceSet):
            _presence_set(state, index, decision)
        elif isinstance(decision, Requeued):
            old, new = decision.old, decision.new
            if state.waiting.pop(old.id, None) is not None:
                index.contact_removed(old)
            waiting = state.waiting[new.id] = WaitingContact(
                new, offers_made=decision.offers_made, declined_by=dict.fromkeys(decision.exclude, decision.at)
            )
            index.contact_added(waiting)
        elif isinstance(decision, HoursChanged):
            state.hours_open[decision.queue_id] = decision.open
        elif isinstance(decision, TimersFired):
            index.timers_fired(decision.at)
        # Closed: the contact never waited, nothing to undo
    index.synced()


def _offer_closed(state: RoutingState, index: RoutingIndex, decision: OfferClosed) -> None:
    contact, agent_id = decision.contact, decision.agent_id
    agent = state.agents[agent_id]
    del state.offers[decision.offer_id]
    index.offer_removed(decision.offer_id)
    if decision.outcome is ACCEPTED:
        agent.missed = 0
        return
    if decision.outcome is EXPIRED:
        agent.missed += 1
    waiting = state.waiting[contact.id]
    waiting.offer_id = None
    waiting.declined_by[agent_id] = decision.at
    index.contact_released(waiting)
    index.contact_turned_down(waiting.ref, decision.at)
    _release(agent, contact.channel, decision.at)
    index.agent_freed(agent)


def _presence_set(state: RoutingState, index: RoutingIndex, decision: PresenceSet) -> None:
    agent, presence = state.agents[decision.agent_id], decision.presence
    if presence is AVAILABLE and agent.presence is not AVAILABLE:
        agent.idle_since = decision.at
        agent.missed = 0
    if presence is not agent.presence or decision.until != agent.busy_until:
        agent.presence, agent.busy_until = presence, decision.until
        index.agent_freed(agent)
        index.agent_wrapping(agent)


def _release(agent: Agent, channel: Channel, at: datetime) -> None:
    # idle time counts from the agent's last finished or released work (longest-idle policy)
    agent.load[channel] -= 1
    agent.idle_since = at
