"""The router's decision core: ``decide(state, event, now) -> decisions`` and ``apply``.

Pure: no I/O, no clock, no randomness; ``decide`` never changes ``state``. It plans on an overlay
of the changes its own earlier decisions make, so one event may chain (a decline frees the agent
and re-offers the contact) and every decision sees the ones before it. ``apply`` then makes the
decisions true in ``state``, after the caller has persisted them.

Policy (the routing-engine issue widens it): a contact goes to the longest-idle available agent
with a free slot on its channel and every skill its queue requires, most proficient first among
equals; a freed agent takes the highest-priority, then oldest, contact it may serve.
"""

import uuid
from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from contracts import Channel
from services.router.domain.decisions import (
    Abandoned,
    Assigned,
    AssignmentCompleted,
    ClockTicked,
    Completed,
    ContactAbandoned,
    ContactArrived,
    Decision,
    Enqueued,
    Event,
    OfferAccepted,
    OfferClosed,
    OfferDeclined,
    Offered,
    OfferOutcome,
    PresenceRequested,
    PresenceSet,
)
from services.router.domain.model import (
    Agent,
    Assignment,
    ContactRef,
    Offer,
    Presence,
    RoutingState,
    WaitingContact,
)
from services.router.exceptions import NotYours, UnknownAgent, UnknownAssignment, UnknownOffer


def offer_id_for(contact_id: UUID, attempt: int) -> UUID:
    """The id of the ``attempt``-th offer of a contact: deterministic, so ``decide`` stays pure."""
    return uuid.uuid5(contact_id, f"offer:{attempt}")


def assignment_id_for(offer_id: UUID) -> UUID:
    """The id of the assignment an accepted offer becomes."""
    return uuid.uuid5(offer_id, "assignment")


def decide(state: RoutingState, event: Event, now: datetime) -> list[Decision]:
    """Return what the router does about ``event`` at ``now``, without changing ``state``."""
    plan = _Plan(state, now)
    match event:
        case ContactArrived(contact=contact):
            plan.route_waiting(plan.enqueue(contact))
        case PresenceRequested(agent_id=agent_id, presence=presence):
            plan.set_presence(_agent(state, agent_id), presence)
            if presence is Presence.AVAILABLE:
                plan.fill_agent(agent_id)
        case OfferAccepted(offer_id=offer_id, agent_id=agent_id):
            offer = _own_offer(state, offer_id, agent_id)
            plan.close_offer(offer, OfferOutcome.ACCEPTED)
            plan.assign(offer)
        case OfferDeclined(offer_id=offer_id, agent_id=agent_id):
            offer = _own_offer(state, offer_id, agent_id)
            plan.close_offer(offer, OfferOutcome.DECLINED)
            plan.route_contact(offer.contact.id)
            plan.fill_agent(agent_id)
        case ClockTicked():
            expired = [state.offers[offer_id] for offer_id in state.index().expiring(now)]
            for offer in expired:
                plan.close_offer(offer, OfferOutcome.EXPIRED)
            for offer in expired:
                plan.route_contact(offer.contact.id)
                plan.fill_agent(offer.agent_id)
        case ContactAbandoned(contact_id=contact_id):
            waiting = state.waiting.get(contact_id)
            if waiting is None:
                return []  # assigned already, or gone: the agent's work decides
            pending = state.offers.get(waiting.offer_id) if waiting.offer_id else None
            if pending is not None:
                plan.close_offer(pending, OfferOutcome.REVOKED)
            plan.abandon(waiting.ref)
            if pending is not None:
                plan.fill_agent(pending.agent_id)
        case AssignmentCompleted(assignment_id=assignment_id, agent_id=agent_id):
            assignment = state.assignments.get(assignment_id)
            if assignment is None:
                raise UnknownAssignment(f"no open assignment {assignment_id}")
            if assignment.agent_id != agent_id:
                raise NotYours(f"assignment {assignment_id} belongs to another agent")
            plan.complete(assignment.id, assignment.contact, agent_id)
            plan.fill_agent(agent_id)
    return plan.decisions


def apply(state: RoutingState, decisions: Iterable[Decision]) -> None:
    """Make ``decisions`` true in ``state`` and in its indexes."""
    index = state.index()
    for decision in decisions:
        if isinstance(decision, Offered):
            contact, agent_id = decision.contact, decision.agent_id
            waiting = state.waiting[contact.id]
            waiting.offer_id = decision.offer_id
            waiting.offers_made += 1
            offer = state.offers[decision.offer_id] = Offer(decision.offer_id, contact, agent_id, decision.expires_at)
            agent = state.agents[agent_id]
            agent.load[contact.channel] += 1
            index.contact_reserved(contact)
            index.offer_added(offer)
            index.agent_busier(agent, contact.channel)
        elif isinstance(decision, Enqueued):
            contact = decision.contact
            waiting = state.waiting[contact.id] = WaitingContact(contact)
            index.contact_added(waiting)
        elif isinstance(decision, OfferClosed):
            contact, agent_id = decision.contact, decision.agent_id
            del state.offers[decision.offer_id]
            index.offer_removed(decision.offer_id)
            if decision.outcome is not OfferOutcome.ACCEPTED:
                waiting = state.waiting[contact.id]
                waiting.offer_id = None
                waiting.declined_by.add(agent_id)
                index.contact_released(contact)
                _release(state.agents[agent_id], contact.channel, decision.at)
                index.agent_freed(state.agents[agent_id])
        elif isinstance(decision, Assigned):
            contact = decision.contact
            del state.waiting[contact.id]
            index.contact_removed(contact)
            state.assignments[decision.assignment_id] = Assignment(decision.assignment_id, contact, decision.agent_id)
        elif isinstance(decision, Completed):
            del state.assignments[decision.assignment_id]
            agent = state.agents[decision.agent_id]
            _release(agent, decision.contact.channel, decision.at)
            index.agent_freed(agent)
        elif isinstance(decision, Abandoned):
            del state.waiting[decision.contact.id]
            index.contact_removed(decision.contact)
        elif isinstance(decision, PresenceSet):
            agent, presence = state.agents[decision.agent_id], decision.presence
            if presence is Presence.AVAILABLE and agent.presence is not Presence.AVAILABLE:
                agent.idle_since = decision.at
            if presence is not agent.presence:
                agent.presence = presence
                index.agent_freed(agent)
    index.synced()


def _release(agent: Agent, channel: Channel, at: datetime) -> None:
    # idle time counts from the agent's last finished or released work (longest-idle policy)
    agent.load[channel] -= 1
    agent.idle_since = at


def _agent(state: RoutingState, agent_id: str) -> Agent:
    agent = state.agents.get(agent_id)
    if agent is None:
        raise UnknownAgent(f"no agent {agent_id!r}")
    return agent


def _own_offer(state: RoutingState, offer_id: UUID, agent_id: str) -> Offer:
    offer = state.offers.get(offer_id)
    if offer is None:
        raise UnknownOffer(f"no pending offer {offer_id}")
    if offer.agent_id != agent_id:
        raise NotYours(f"offer {offer_id} was made to another agent")
    return offer


class _Plan:
    """Decisions so far, and the overlay of what they change, read as if already applied.

    The state's indexes reflect the state without the overlay; readers skip index entries the
    overlay has used up, and look at the few contacts and agents the overlay has freed by hand.
    """

    __slots__ = (
        "_declined",
        "_freed",
        "_load",
        "_new",
        "_offers_made",
        "_presence",
        "_reserved",
        "_touched",
        "decisions",
        "index",
        "now",
        "state",
    )

    def __init__(self, state: RoutingState, now: datetime) -> None:
        self.state = state
        self.index = state.index()
        self.now = now
        self.decisions: list[Decision] = []
        self._new: dict[UUID, WaitingContact] = {}
        self._freed: dict[UUID, WaitingContact] = {}  # reserved in state, free again in the plan
        self._reserved: dict[UUID, bool] = {}
        self._declined: dict[UUID, set[str]] = {}
        self._offers_made: dict[UUID, int] = {}
        self._load: dict[tuple[str, Channel], int] = {}
        self._presence: dict[str, Presence] = {}
        # agents whose load or presence the plan changed: they may be missing from the index (busy or away
        # in the state) though they have a free slot in the plan, so readers look at them by hand
        self._touched: dict[str, Agent] = {}

    # -- reading through the overlay --

    def _is_free(self, contact: WaitingContact) -> bool:
        if not self._reserved:  # most events reserve nothing before they look: spare hashing the id
            return contact.offer_id is None
        return not self._reserved.get(contact.ref.id, contact.offer_id is not None)

    def _has_declined(self, contact: WaitingContact, agent_id: str) -> bool:
        if agent_id in contact.declined_by:
            return True
        return bool(self._declined) and agent_id in self._declined.get(contact.ref.id, ())

    def _free_slots(self, agent: Agent, channel: Channel) -> int:
        if self._presence.get(agent.id, agent.presence) is not Presence.AVAILABLE:
            return 0
        used = agent.load[channel] + self._load.get((agent.id, channel), 0)
        return agent.capacity.get(channel, 0) - used

    def _contact(self, contact_id: UUID) -> WaitingContact:
        return self._new.get(contact_id) or self.state.waiting[contact_id]

    def _contact_order(self, contact: WaitingContact) -> int:
        order = self.index.contact_order.get(contact.ref.id)
        if order is None:  # enqueued by this plan: after every contact in the state, as ``apply`` will put it
            order = self.index.next_contact_order + list(self._new).index(contact.ref.id)
        return order

    def _touch(self, agent: Agent) -> None:
        self._touched[agent.id] = agent

    # -- planning --

    def enqueue(self, contact: ContactRef) -> WaitingContact:
        waiting = self._new[contact.id] = WaitingContact(contact)
        self.decisions.append(Enqueued(contact))
        return waiting

    def set_presence(self, agent: Agent, presence: Presence) -> None:
        self._presence[agent.id] = presence
        self._touch(agent)
        self.decisions.append(PresenceSet(agent.id, presence, self.now))

    def close_offer(self, offer: Offer, outcome: OfferOutcome) -> None:
        self.decisions.append(OfferClosed(offer.id, offer.contact, offer.agent_id, outcome, self.now))
        if outcome is not OfferOutcome.ACCEPTED:
            contact_id, agent_id = offer.contact.id, offer.agent_id
            self._reserved[contact_id] = False
            self._freed[contact_id] = self.state.waiting[contact_id]
            self._declined.setdefault(contact_id, set()).add(agent_id)
            key = (agent_id, offer.contact.channel)
            self._load[key] = self._load.get(key, 0) - 1
            self._touch(self.state.agents[agent_id])

    def assign(self, offer: Offer) -> None:
        assignment_id = assignment_id_for(offer.id)
        self.decisions.append(Assigned(assignment_id, offer.id, offer.contact, offer.agent_id, self.now))

    def abandon(self, contact: ContactRef) -> None:
        self.decisions.append(Abandoned(contact, self.now))
        self._reserved[contact.id] = True  # gone: nobody may be offered it any more

    def complete(self, assignment_id: UUID, contact: ContactRef, agent_id: str) -> None:
        self.decisions.append(Completed(assignment_id, contact, agent_id, self.now))
        key = (agent_id, contact.channel)
        self._load[key] = self._load.get(key, 0) - 1
        self._touch(self.state.agents[agent_id])

    def offer(self, contact: WaitingContact, agent: Agent) -> None:
        ref = contact.ref
        made = self._offers_made.get(ref.id, 0)
        queue = self.state.queues[ref.queue_id]
        offer_id = offer_id_for(ref.id, contact.offers_made + made)
        self.decisions.append(Offered(offer_id, ref, agent.id, self.now, self.now + queue.offer_timeout))
        self._offers_made[ref.id] = made + 1
        self._reserved[ref.id] = True
        key = (agent.id, ref.channel)
        self._load[key] = self._load.get(key, 0) + 1
        self._touch(agent)

    def route_contact(self, contact_id: UUID) -> None:
        """Offer the contact to the best eligible agent, if there is one."""
        self.route_waiting(self._contact(contact_id))

    def route_waiting(self, contact: WaitingContact) -> None:
        if not self._is_free(contact):
            return  # taken meanwhile: an expiry in the same tick let a freed agent pick it up first
        ref = contact.ref
        queue_id, channel = ref.queue_id, ref.channel
        agents, versions = self.state.agents, self.index.agent_version
        best: tuple[tuple[datetime, int, int], Agent] | None = None
        heap = self.index.agent_heap(queue_id, channel)
        if heap is not None and heap.items:
            for idle_since, rank, order, version, agent_id in heap:
                if versions[agent_id] != version:
                    continue  # superseded by a newer entry of the same agent
                agent = agents[agent_id]
                if self._free_slots(agent, channel) > 0 and not self._has_declined(contact, agent_id):
                    best = ((idle_since, rank, order), agent)
                    break
        if self._touched:
            # agents the plan freed or made busier, ordered like the index: the best usable one that may take it
            eligible, agent_order = self.index.eligible, self.index.agent_order
            for agent_id, agent in self._touched.items():
                proficiency = eligible[agent_id].get(queue_id)
                if proficiency is None or self._free_slots(agent, channel) <= 0:
                    continue
                if self._has_declined(contact, agent_id):
                    continue
                key = (agent.idle_since, -proficiency, agent_order[agent_id])
                if best is None or key < best[0]:
                    best = (key, agent)
        if best is not None:
            self.offer(contact, best[1])

    def fill_agent(self, agent_id: str) -> None:
        """Offer the agent the best contacts it may serve, while it has free slots."""
        agent = self.state.agents[agent_id]
        queues = self.index.eligible[agent_id]
        contact_heap = self.index.contact_heap
        waiting, free, reserved = self.state.waiting, self.index.free, self._reserved
        while True:
            best_key: tuple[int, datetime, int] | None = None
            best: WaitingContact | None = None
            for channel in agent.capacity:
                if self._free_slots(agent, channel) <= 0:
                    continue
                for queue_id in queues:
                    heap = contact_heap(queue_id, channel)
                    if heap is None or not heap.items:
                        continue
                    # a 4-tuple entry compares with a 3-tuple key as its first three items would (orders are unique)
                    top = heap.items[0]
                    if best_key is not None and top >= best_key:
                        continue  # this queue has nothing better than the best so far
                    contact_id = top[3]
                    if free.get(contact_id) is top and not (reserved and reserved.get(contact_id, False)):
                        contact = waiting[contact_id]
                        if not self._has_declined(contact, agent_id):
                            best_key, best = (top[0], top[1], top[2]), contact
                            continue
                    for entry in heap:  # the top is used up or declined: walk on in order
                        if best_key is not None and entry >= best_key:
                            break
                        contact_id = entry[3]
                        if free.get(contact_id) is not entry or reserved.get(contact_id, False):
                            continue
                        contact = waiting[contact_id]
                        if not self._has_declined(contact, agent_id):
                            best_key, best = (entry[0], entry[1], entry[2]), contact
                            break
            # contacts the plan enqueued or freed are not in the index yet
            if self._new or self._freed:
                for contact in (*self._new.values(), *self._freed.values()):
                    ref = contact.ref
                    if not self._is_free(contact) or self._has_declined(contact, agent_id):
                        continue
                    if self._free_slots(agent, ref.channel) <= 0 or ref.queue_id not in queues:
                        continue
                    key = (-ref.priority, ref.enqueued_at, self._contact_order(contact))
                    if best_key is None or key < best_key:
                        best_key, best = key, contact
            if best is None:
                return
            self.offer(best, agent)
