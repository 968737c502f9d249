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
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from contracts import Channel
from services.router.domain.decisions import (
    Abandoned,
    Assigned,
    AssignmentCompleted,
    ClockTicked,
    Closed,
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
    OfferOutcome,
    PresenceRequested,
    PresenceSet,
    Requeued,
    TimersFired,
)
from services.router.domain.index import RoutingIndex
from services.router.domain.keys import ContactEntry
from services.router.domain.model import (
    EPOCH,
    Agent,
    Assignment,
    ContactRef,
    Offer,
    Presence,
    Queue,
    RoutingPolicy,
    RoutingState,
    WaitingContact,
)
from services.router.exceptions import (
    NotYours,
    UnknownAgent,
    UnknownAssignment,
    UnknownContact,
    UnknownOffer,
    UnknownQueue,
)


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
            plan.arrive(contact)
        case PresenceRequested(agent_id=agent_id, presence=presence):
            agent = _agent(state, agent_id)
            plan.set_presence(agent, presence)
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
            plan.tick()
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
            plan.complete(assignment, event.disposition, event.resolved)
            plan.fill_agent(agent_id)
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
            waiting = state.waiting[contact.id]
            waiting.offer_id = decision.offer_id
            waiting.offers_made += 1
            offer = state.offers[decision.offer_id] = Offer(decision.offer_id, contact, agent_id, decision.expires_at)
            agent = state.agents[agent_id]
            agent.load[contact.channel] += 1
            agent.last_offered_at = decision.at
            index.contact_reserved(contact)
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
    if decision.outcome is OfferOutcome.ACCEPTED:
        agent.missed = 0
        return
    if decision.outcome is OfferOutcome.EXPIRED:
        agent.missed += 1
    waiting = state.waiting[contact.id]
    waiting.offer_id = None
    waiting.declined_by[agent_id] = decision.at
    index.contact_released(contact)
    index.contact_turned_down(waiting.ref, decision.at)
    _release(agent, contact.channel, decision.at)
    index.agent_freed(agent)


def _presence_set(state: RoutingState, index: RoutingIndex, decision: PresenceSet) -> None:
    agent, presence = state.agents[decision.agent_id], decision.presence
    if presence is Presence.AVAILABLE and agent.presence is not Presence.AVAILABLE:
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
        "_missed",
        "_moved",
        "_new",
        "_offers_made",
        "_open",
        "_presence",
        "_queued",
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
        self._new: dict[UUID, WaitingContact] = {}  # enqueued or moved by this plan
        self._freed: dict[UUID, WaitingContact] = {}  # reserved in state, free again in the plan
        self._moved: set[UUID] = set()  # their entries in the state's index are stale
        self._reserved: dict[UUID, bool] = {}
        self._declined: dict[UUID, set[str]] = {}
        self._offers_made: dict[UUID, int] = {}
        self._load: dict[tuple[str, Channel], int] = {}
        self._presence: dict[str, Presence] = {}
        self._missed: dict[str, int] = {}
        self._queued: dict[str, int] = {}  # queue -> contacts the plan added (or removed, negative)
        self._open: dict[str, bool] = {}
        # agents whose load or presence the plan changed: they may be missing from the index (busy or away
        # in the state) though they have a free slot in the plan, so readers look at them by hand
        self._touched: dict[str, Agent] = {}

    # -- reading through the overlay --

    def _is_free(self, contact: WaitingContact) -> bool:
        if not self._reserved:  # most events reserve nothing before they look: spare hashing the id
            return contact.offer_id is None
        return not self._reserved.get(contact.ref.id, contact.offer_id is not None)

    def _has_declined(self, contact: WaitingContact, agent_id: str) -> bool:
        """Whether the agent turned the contact down too recently to be offered it now (see ``reoffer_after``)."""
        if self._declined and agent_id in self._declined.get(contact.ref.id, ()):
            return self.state.queues[contact.ref.queue_id].reoffer_after > _NO_TIME  # turned down in this plan: now
        if not contact.declined_by:
            return False
        return contact.turned_down(agent_id, self.now, self.state.queues[contact.ref.queue_id].reoffer_after)

    def _ever_declined(self, contact: WaitingContact, agent_id: str) -> bool:
        """Whether the agent turned the contact down in this queue at all: it is then the contact's last choice."""
        if agent_id in contact.declined_by:
            return True
        return bool(self._declined) and agent_id in self._declined.get(contact.ref.id, ())

    def _prefers(self, contact: WaitingContact) -> bool:
        """Whether the contact still waits for its preferred agent (who has not turned it down)."""
        ref = contact.ref
        preferred = ref.preferred_agent
        if preferred is None or ref.prefer_until is None or self.now >= ref.prefer_until:
            return False
        return not self._ever_declined(contact, preferred)

    def _may_take(self, contact: WaitingContact, agent_id: str, queue_id: str) -> bool:
        """Whether ``agent_id`` (eligible for the queue at some step) may be offered ``contact`` now."""
        ref = contact.ref
        if ref.preferred_agent is None and not contact.declined_by and not self._declined and not self.index.agent_step:
            return True  # the common case, in a few attribute reads
        if self._has_declined(contact, agent_id):
            return False
        if ref.preferred_agent is not None and ref.preferred_agent != agent_id and self._prefers(contact):
            return False
        step = self.index.agent_step.get((agent_id, queue_id), 0)
        # an agent of a later bullseye step takes only contacts that have waited that long
        return not step or self.now - ref.entered >= self.state.queues[queue_id].bullseye[step - 1].after

    def _used(self, agent: Agent, channel: Channel) -> int:
        return agent.load[channel] + self._load.get((agent.id, channel), 0)

    def _presence_of(self, agent: Agent) -> Presence:
        return self._presence.get(agent.id, agent.presence)

    def _free_slots(self, agent: Agent, channel: Channel) -> int:
        if self._presence.get(agent.id, agent.presence) is not Presence.AVAILABLE:
            return 0
        free = agent.capacity.get(channel, 0) - agent.load[channel] - self._load.get((agent.id, channel), 0)
        if free > 0 and agent.phone_exclusive:
            used = {ch: self._used(agent, ch) for ch in (*agent.capacity, *agent.load)}
            if agent.blocked(channel, used):
                return 0
        return free

    def _rank(self, queue: Queue, agent: Agent, proficiency: int) -> tuple[Any, Any]:
        if queue.policy is RoutingPolicy.LONGEST_IDLE:
            return agent.idle_since, -proficiency
        if queue.policy is RoutingPolicy.LEAST_OCCUPIED:
            return agent.rank(queue, proficiency, {ch: self._used(agent, ch) for ch in agent.capacity})
        if queue.policy is RoutingPolicy.ROUND_ROBIN and self._offers_made_to(agent.id):
            return self.now, agent.idle_since
        return agent.rank(queue, proficiency)

    def _offers_made_to(self, agent_id: str) -> bool:
        return any(isinstance(d, Offered) and d.agent_id == agent_id for d in self.decisions)

    def _is_open(self, queue: Queue) -> bool:
        if queue.hours is None:
            return True
        known = self._open.get(queue.id)
        if known is None:
            known = self._open[queue.id] = queue.hours.is_open(self.now)
        return known

    def _waiting_in(self, queue_id: str) -> int:
        return self.index.waiting_in.get(queue_id, 0) + self._queued.get(queue_id, 0)

    def _contact(self, contact_id: UUID) -> WaitingContact:
        return self._new.get(contact_id) or self.state.waiting[contact_id]

    def _contact_order(self, contact: WaitingContact) -> int:
        order = None if contact.ref.id in self._moved else self.index.contact_order.get(contact.ref.id)
        if order is None:  # enqueued by this plan: after every contact in the state, as ``apply`` will put it
            order = self.index.next_contact_order + list(self._new).index(contact.ref.id)
        return order

    def _queue_order(self, contact_id: UUID) -> tuple[int, datetime, int]:
        ref = self._contact(contact_id).ref
        return -ref.priority, ref.enqueued_at, self.index.contact_order.get(contact_id, self.index.next_contact_order)

    def _touch(self, agent: Agent) -> None:
        self._touched[agent.id] = agent

    def _stale(self, contact_id: UUID) -> bool:
        """Whether the index's entry for a free contact is used up in the plan (reserved, gone or moved)."""
        reserved, moved = self._reserved, self._moved
        return bool(reserved and reserved.get(contact_id, False)) or bool(moved and contact_id in moved)

    # -- planning --

    def arrive(self, contact: ContactRef) -> None:
        """A new contact: into its queue (or, after hours or over the queue's length, its overflow), then routed."""
        queue = self.state.queues[contact.queue_id]
        if not self._is_open(queue):
            if queue.after_hours == "close":
                self.decisions.append(Closed(contact, queue.close_message or "closed", self.now))
                return
            waiting = self.enqueue(contact)
            if queue.after_hours == "overflow" and queue.overflow_to is not None:
                self.route_waiting(self.move(waiting, queue.overflow_to, "after hours"))
            return  # hold until open
        limit = queue.overflow_when_waiting_over
        crowded = limit is not None and queue.overflow_to is not None and self._waiting_in(queue.id) > limit
        waiting = self.enqueue(contact)
        if crowded and queue.overflow_to is not None:
            waiting = self.move(waiting, queue.overflow_to, f"overflow: more than {limit} waiting in {queue.id}")
        self.route_waiting(waiting)

    def enqueue(self, contact: ContactRef) -> WaitingContact:
        waiting = self._new[contact.id] = WaitingContact(contact)
        self._queued[contact.queue_id] = self._queued.get(contact.queue_id, 0) + 1
        self.decisions.append(Enqueued(contact))
        return waiting

    def move(
        self,
        contact: WaitingContact,
        queue_id: str,
        reason: str,
        *,
        priority: int | None = None,
        preferred_agent: str | None = None,
        prefer_until: datetime | None = None,
        offers_made: int | None = None,
        exclude: frozenset[str] = frozenset(),
    ) -> WaitingContact:
        """Requeue a free waiting contact (or, with ``offers_made``, one taken from its assignment) in ``queue_id``."""
        old = contact.ref
        new = replace(
            old,
            queue_id=queue_id,
            priority=old.priority if priority is None else priority,
            queued_at=self.now,
            preferred_agent=preferred_agent,
            prefer_until=prefer_until,
        )
        if offers_made is None:  # a waiting contact: it leaves its queue
            offers_made = contact.offers_made + self._offers_made.get(old.id, 0)
            self._queued[old.queue_id] = self._queued.get(old.queue_id, 0) - 1
            self._moved.add(old.id)
        self._queued[queue_id] = self._queued.get(queue_id, 0) + 1
        self._offers_made.pop(old.id, None)
        self._freed.pop(old.id, None)
        self._declined.pop(old.id, None)
        self._reserved[old.id] = False
        self.decisions.append(Requeued(old, new, reason, self.now, offers_made, exclude))
        moved = WaitingContact(new, offers_made=offers_made, declined_by=dict.fromkeys(exclude, self.now))
        self._new.pop(old.id, None)
        self._new[old.id] = moved
        return moved

    def move_contact(self, event: ContactMoved) -> None:
        """Move a waiting contact, or transfer an assigned one, to another queue."""
        if event.queue_id not in self.state.queues:
            raise UnknownQueue(f"no queue {event.queue_id!r}")
        waiting = self.state.waiting.get(event.contact_id)
        options = {
            "priority": event.priority,
            "preferred_agent": event.preferred_agent,
            "prefer_until": event.prefer_until,
        }
        if waiting is not None:
            if event.agent_id is not None:
                raise NotYours(f"contact {event.contact_id} is waiting: only a supervisor moves it")
            pending = self.state.offers.get(waiting.offer_id) if waiting.offer_id else None
            if pending is not None:
                self.close_offer(pending, OfferOutcome.REVOKED)
            self.route_waiting(self.move(waiting, event.queue_id, event.reason, **options))  # type: ignore[arg-type]
            if pending is not None:
                self.fill_agent(pending.agent_id)
            return
        assignment = next((a for a in self.state.assignments.values() if a.contact.id == event.contact_id), None)
        if assignment is None:
            raise UnknownContact(f"contact {event.contact_id} is neither waiting nor assigned")
        if event.agent_id is not None and assignment.agent_id != event.agent_id:
            raise NotYours(f"contact {event.contact_id} is assigned to another agent")
        self.complete(assignment, "transferred", None, transferred=True)
        moved = self.move(
            WaitingContact(assignment.contact),
            event.queue_id,
            event.reason,
            offers_made=assignment.offers_made,
            exclude=frozenset({assignment.agent_id}),
            **options,  # type: ignore[arg-type]
        )
        self.route_waiting(moved)
        self.fill_agent(assignment.agent_id)

    def set_presence(
        self, agent: Agent, presence: Presence, *, until: datetime | None = None, reason: str | None = None
    ) -> None:
        self._presence[agent.id] = presence
        self._touch(agent)
        self.decisions.append(PresenceSet(agent.id, presence, self.now, until, reason))

    def close_offer(self, offer: Offer, outcome: OfferOutcome) -> None:
        self.decisions.append(OfferClosed(offer.id, offer.contact, offer.agent_id, outcome, self.now))
        if outcome is not OfferOutcome.ACCEPTED:
            contact_id, agent_id = offer.contact.id, offer.agent_id
            self._reserved[contact_id] = False
            self._freed[contact_id] = self.state.waiting[contact_id]
            self._declined.setdefault(contact_id, set()).add(agent_id)
            key = (agent_id, offer.contact.channel)
            self._load[key] = self._load.get(key, 0) - 1
            agent = self.state.agents[agent_id]
            self._touch(agent)
            if outcome is OfferOutcome.EXPIRED and agent.max_missed is not None:
                missed = self._missed[agent_id] = self._missed.get(agent_id, agent.missed) + 1
                if missed >= agent.max_missed and self._presence_of(agent) is Presence.AVAILABLE:
                    self.set_presence(agent, Presence.AWAY, reason=f"let {missed} offers in a row expire")

    def assign(self, offer: Offer) -> None:
        assignment_id = assignment_id_for(offer.id)
        self.decisions.append(Assigned(assignment_id, offer.id, offer.contact, offer.agent_id, self.now))

    def abandon(self, contact: ContactRef) -> None:
        self.decisions.append(Abandoned(contact, self.now))
        self._reserved[contact.id] = True  # gone: nobody may be offered it any more

    def complete(
        self, assignment: Assignment, disposition: str | None, resolved: bool | None, *, transferred: bool = False
    ) -> None:
        contact, agent_id = assignment.contact, assignment.agent_id
        self.decisions.append(Completed(assignment.id, contact, agent_id, self.now, disposition, resolved, transferred))
        key = (agent_id, contact.channel)
        self._load[key] = self._load.get(key, 0) - 1
        agent = self.state.agents[agent_id]
        self._touch(agent)
        if agent.wrap_up and self._presence_of(agent) in (Presence.AVAILABLE, Presence.WRAP_UP):
            self.set_presence(agent, Presence.WRAP_UP, until=self.now + agent.wrap_up)

    def offer(self, contact: WaitingContact, agent: Agent) -> None:
        ref = contact.ref
        made = self._offers_made.get(ref.id, 0)
        queue = self.state.queues[ref.queue_id]
        offer_id = offer_id_for(ref.id, contact.offers_made + made)
        expires_at = self.now + queue.timeout_for(ref.channel)
        self.decisions.append(Offered(offer_id, ref, agent.id, self.now, expires_at))
        self._offers_made[ref.id] = made + 1
        self._reserved[ref.id] = True
        key = (agent.id, ref.channel)
        self._load[key] = self._load.get(key, 0) + 1
        self._touch(agent)
        if queue.auto_accept:  # assigned at once: no offer to accept
            offer = Offer(offer_id, ref, agent.id, expires_at)
            self.close_offer(offer, OfferOutcome.ACCEPTED)
            self.assign(offer)

    def tick(self) -> None:
        """Time passed: offers expire, wrap-ups end, queues open or close, bullseye steps, overflows and
        preferences come due."""
        state, index = self.state, self.index
        expired = [state.offers[offer_id] for offer_id in index.expiring(self.now)]
        for offer in expired:
            self.close_offer(offer, OfferOutcome.EXPIRED)
        for offer in expired:
            self.route_contact(offer.contact.id)
            self.fill_agent(offer.agent_id)
        for agent_id in list(index.wrap_ups_due(self.now)):
            self.set_presence(state.agents[agent_id], Presence.AVAILABLE)
            self.fill_agent(agent_id)
        for queue in state.queues.values():
            if queue.hours is not None and state.hours_open.get(queue.id) != self._is_open(queue):
                self._hours_changed(queue)
        due = sorted(index.contacts_due(self.now), key=self._queue_order)
        for contact_id in due:  # in their queues' order: the most urgent first, when several come due at once
            if contact_id in state.waiting or contact_id in self._new:
                self.route_waiting(self._contact(contact_id))
        if due:
            self.decisions.append(TimersFired(self.now))

    def _hours_changed(self, queue: Queue) -> None:
        is_open = self._is_open(queue)
        self.decisions.append(HoursChanged(queue.id, is_open, self.now))
        if is_open:  # held contacts: the agents who may serve the queue take them, best first
            agents: dict[str, None] = {}
            for channel in queue.channels:
                for step in range(len(queue.bullseye) + 1):
                    for entry in self.index.agents_for(queue.id, channel, step):
                        if self.index.agent_version.get(entry[4]) == entry[3]:
                            agents[entry[4]] = None
            for agent_id in agents:
                self.fill_agent(agent_id)
        elif queue.after_hours == "overflow" and queue.overflow_to is not None:
            free = self.index.free
            held = [
                self.state.waiting[entry[3]]
                for channel in queue.channels
                for entry in self.index.contacts_for(queue.id, channel)
                if free.get(entry[3]) is entry and not self._stale(entry[3])
            ]
            for contact in held:
                self.route_waiting(self.move(contact, queue.overflow_to, "after hours"))

    def route_contact(self, contact_id: UUID) -> None:
        """Offer the contact to the best eligible agent, if there is one."""
        self.route_waiting(self._contact(contact_id))

    def route_waiting(self, contact: WaitingContact) -> None:
        if not self._is_free(contact):
            return  # taken meanwhile: an expiry in the same tick let a freed agent pick it up first
        ref = contact.ref
        queue = self.state.queues[ref.queue_id]
        if queue.hours is not None and not self._is_open(queue):
            return  # held until the queue opens
        waited = self.now - ref.entered
        if queue.overflow_after is not None and queue.overflow_to is not None and waited >= queue.overflow_after:
            seconds = queue.overflow_after.total_seconds()
            self.route_waiting(self.move(contact, queue.overflow_to, f"overflow: waited {seconds:g} s in {queue.id}"))
            return
        if ref.preferred_agent is not None and self._prefers(contact):
            self._route_to_preferred(contact, queue, ref.preferred_agent)
            return
        queue_id, channel = ref.queue_id, ref.channel
        agents, versions, touched = self.state.agents, self.index.agent_version, self._touched
        # keys lead with whether the agent ever turned the contact down: those come after everyone else
        best: tuple[tuple[Any, ...], Agent] | None = None
        turned_down = bool(contact.declined_by) or bool(self._declined and ref.id in self._declined)
        last_step = queue.step_after(waited) if queue.bullseye else 0
        for step in range(last_step + 1):
            heap = self.index.agent_heap(queue_id, channel, step)
            if heap is None or not heap.items:
                continue
            for first, second, order, version, agent_id in heap:
                if best is not None and (False, first, second, order) >= best[0]:
                    break
                if versions[agent_id] != version or agent_id in touched:
                    continue  # superseded by a newer entry of the same agent, or looked at by hand below
                agent = agents[agent_id]
                if self._free_slots(agent, channel) > 0 and not self._has_declined(contact, agent_id):
                    last = turned_down and self._ever_declined(contact, agent_id)
                    if best is None or (last, first, second, order) < best[0]:
                        best = ((last, first, second, order), agent)
                    if not last:
                        break
        if touched:
            # agents the plan freed or made busier, ordered like the index: the best usable one that may take it
            eligible, agent_order, steps = self.index.eligible, self.index.agent_order, self.index.agent_step
            for agent_id, agent in touched.items():
                proficiency = eligible[agent_id].get(queue_id)
                if proficiency is None or self._free_slots(agent, channel) <= 0:
                    continue
                if (steps and steps.get((agent_id, queue_id), 0) > last_step) or self._has_declined(contact, agent_id):
                    continue
                last = turned_down and self._ever_declined(contact, agent_id)
                key = (last, *self._rank(queue, agent, proficiency), agent_order[agent_id])
                if best is None or key < best[0]:
                    best = (key, agent)
        if best is not None:
            self.offer(contact, best[1])

    def _route_to_preferred(self, contact: WaitingContact, queue: Queue, agent_id: str) -> None:
        # the contact waits for this agent alone until its preference ends (a timer re-routes it then)
        agent = self.state.agents.get(agent_id)
        if agent is None or queue.id not in self.index.eligible.get(agent_id, {}):
            return
        if self._free_slots(agent, contact.ref.channel) > 0 and self._may_take(contact, agent_id, queue.id):
            self.offer(contact, agent)

    def fill_agent(self, agent_id: str) -> None:
        """Offer the agent the best contacts it may serve, while it has free slots."""
        agent = self.state.agents[agent_id]
        queues = self.index.eligible[agent_id]
        all_queues, contact_heap, timed = self.state.queues, self.index.contact_heap, self.index.timed_queues
        waiting, free = self.state.waiting, self.index.free
        while True:
            best_key: tuple[Any, ...] | None = None
            best: WaitingContact | None = None
            for channel in agent.capacity:
                if self._free_slots(agent, channel) <= 0:
                    continue
                for queue_id in queues:
                    heap = contact_heap(queue_id, channel)
                    if heap is None or not heap.items:
                        continue
                    aging = 0.0
                    if queue_id in timed:  # with business hours or aging: look closer
                        queue = all_queues[queue_id]
                        if queue.hours is not None and not self._is_open(queue):
                            continue
                        aging = queue.aging_per_minute
                    if not aging:
                        # a 4-tuple entry compares with a 3-tuple key as its first three items would (orders are unique)
                        top = heap.items[0]
                        if best_key is not None and top >= best_key:
                            continue  # this queue has nothing better than the best so far
                        contact_id = top[3]
                        if free.get(contact_id) is top and not self._stale(contact_id):
                            contact = waiting[contact_id]
                            if self._may_take(contact, agent_id, queue_id):
                                best_key, best = (top[0], top[1], top[2]), contact
                                continue
                    for entry in heap:  # walk on in order
                        key = entry if not aging else self._aged(aging, entry)
                        if best_key is not None and key >= best_key:
                            break
                        contact_id = entry[3]
                        if free.get(contact_id) is not entry or self._stale(contact_id):
                            continue
                        contact = waiting[contact_id]
                        if self._may_take(contact, agent_id, queue_id):
                            best_key, best = (key[0], key[1], key[2]), contact
                            break
            # contacts the plan enqueued, moved or freed are not in the index yet
            if self._new or self._freed:
                for contact in (*self._new.values(), *self._freed.values()):
                    ref = contact.ref
                    if ref.queue_id not in queues or not self._is_free(contact):
                        continue
                    queue = all_queues[ref.queue_id]
                    if self._free_slots(agent, ref.channel) <= 0 or not self._may_take(contact, agent_id, ref.queue_id):
                        continue
                    if queue.hours is not None and not self._is_open(queue):
                        continue
                    priority = queue.effective_priority(ref, self.now)
                    first = -_round(priority) if queue.aging_per_minute else -priority
                    new_key = (first, ref.enqueued_at, self._contact_order(contact))
                    if best_key is None or new_key < best_key:
                        best_key, best = new_key, contact
            if best is None:
                return
            self.offer(best, agent)

    def _aged(self, aging: float, entry: ContactEntry) -> tuple[float, datetime, int]:
        # the entry's first item is aging × minutes(enqueued) − priority: −(effective priority now) is that less
        # aging × minutes(now); rounded so that equal priorities in different queues compare equal
        now_minutes = (self.now - EPOCH).total_seconds() / 60
        return _round(entry[0] - aging * now_minutes), entry[1], entry[2]


_NO_TIME = timedelta(0)


def _round(value: float) -> float:
    return round(value, 6)
