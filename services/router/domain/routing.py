"""Which decisions each event makes: the routing policy, on top of the plan's decisions (``plan``).

A contact goes to the agent its queue's policy ranks first of those who may take it (skills at the bullseye step it
has reached, group, a free slot on its channel, not turned it down too recently); a freed agent takes the most urgent
contact it may serve. Around that: business hours, overflow by wait or by length, sticky routing to a preferred agent,
wrap-up, and what time passing brings (``tick``).
"""

from uuid import UUID

from services.router.domain.decisions import (
    ACCEPTED,
    DECLINED,
    EXPIRED,
    REVOKED,
    AssignmentCompleted,
    Closed,
    ContactMoved,
    HoursChanged,
    OfferAccepted,
    OfferDeclined,
    PresenceRequested,
    TimersFired,
)
from services.router.domain.entities import AVAILABLE, ContactRef, Offer, Queue, WaitingContact
from services.router.domain.plan import Plan
from services.router.exceptions import (
    NotYours,
    UnknownAgent,
    UnknownAssignment,
    UnknownContact,
    UnknownOffer,
    UnknownQueue,
)


class RoutingPlan(Plan):
    """The plan for one event (the top layer: ``decide`` makes one per event and calls one of the event methods)."""

    __slots__ = ()

    # -- events --

    def arrive(self, contact: ContactRef) -> None:
        """A new contact: into its queue (or, after hours or over the queue's length, its overflow), then routed."""
        queue = self.state.queues[contact.queue_id]
        if queue.hours is not None and not self._is_open(queue):  # no call for a queue without hours
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

    def request_presence(self, event: PresenceRequested) -> None:
        """The agent asks to be ``presence``: available, it is offered work at once."""
        agent = self.state.agents.get(event.agent_id)
        if agent is None:
            raise UnknownAgent(f"no agent {event.agent_id!r}")
        self.set_presence(agent, event.presence)
        if event.presence is AVAILABLE:
            self.fill_agent(event.agent_id)

    def accept(self, event: OfferAccepted) -> None:
        """The agent took the offer: the contact is assigned to it."""
        offer = self._own_offer(event.offer_id, event.agent_id)
        self.close_offer(offer, ACCEPTED)
        self.assign(offer)

    def decline(self, event: OfferDeclined) -> None:
        """The agent turned the offer down: the contact goes to someone else, the agent takes other work."""
        offer = self._own_offer(event.offer_id, event.agent_id)
        self.close_offer(offer, DECLINED)
        self.route_contact(offer.contact.id)
        self.fill_agent(event.agent_id)

    def _own_offer(self, offer_id: UUID, agent_id: str) -> Offer:
        """The pending offer the event names, if it was made to the agent who answers it."""
        offer = self.state.offers.get(offer_id)
        if offer is None:
            raise UnknownOffer(f"no pending offer {offer_id}")
        if offer.agent_id != agent_id:
            raise NotYours(f"offer {offer_id} was made to another agent")
        return offer

    def abandon_waiting(self, contact_id: UUID) -> None:
        """The customer left before being served: an offer of the contact is revoked, freeing its agent."""
        waiting = self.state.waiting.get(contact_id)
        if waiting is None:
            return  # assigned already, or gone: the agent's work decides
        pending = self._revoke_pending(waiting)
        self.abandon(waiting.ref)
        if pending is not None:
            self.fill_agent(pending.agent_id)

    def finish(self, event: AssignmentCompleted) -> None:
        """The agent completed the assignment: its slot is free (after wrap-up, if it has one)."""
        assignment = self.state.assignments.get(event.assignment_id)
        if assignment is None:
            raise UnknownAssignment(f"no open assignment {event.assignment_id}")
        if assignment.agent_id != event.agent_id:
            raise NotYours(f"assignment {event.assignment_id} belongs to another agent")
        self.complete(assignment, event.disposition, event.resolved)
        self.fill_agent(event.agent_id)

    def move_contact(self, event: ContactMoved) -> None:
        """Move a waiting contact, or transfer an assigned one, to another queue."""
        if event.queue_id not in self.state.queues:
            raise UnknownQueue(f"no queue {event.queue_id!r}")
        waiting = self.state.waiting.get(event.contact_id)
        if waiting is None:
            self._transfer(event)
            return
        if event.agent_id is not None:
            raise NotYours(f"contact {event.contact_id} is waiting: only a supervisor moves it")
        pending = self._revoke_pending(waiting)
        self.route_waiting(self._move_as_asked(waiting, event))
        if pending is not None:
            self.fill_agent(pending.agent_id)

    def _transfer(self, event: ContactMoved) -> None:
        # the assignment ends and the contact waits in the new queue, not to be offered to the same agent again
        assignment = next((a for a in self.state.assignments.values() if a.contact.id == event.contact_id), None)
        if assignment is None:
            raise UnknownContact(f"contact {event.contact_id} is neither waiting nor assigned")
        if event.agent_id is not None and assignment.agent_id != event.agent_id:
            raise NotYours(f"contact {event.contact_id} is assigned to another agent")
        self.complete(assignment, "transferred", None, transferred=True)
        contact = WaitingContact(assignment.contact)
        exclude = frozenset({assignment.agent_id})
        self.route_waiting(self._move_as_asked(contact, event, offers_made=assignment.offers_made, exclude=exclude))
        self.fill_agent(assignment.agent_id)

    def _move_as_asked(
        self,
        contact: WaitingContact,
        event: ContactMoved,
        *,
        offers_made: int | None = None,
        exclude: frozenset[str] = frozenset(),
    ) -> WaitingContact:
        """Requeue the contact as the event asks: its queue, and the priority and preference it names."""
        return self.move(
            contact,
            event.queue_id,
            event.reason,
            priority=event.priority,
            preferred_agent=event.preferred_agent,
            prefer_until=event.prefer_until,
            offers_made=offers_made,
            exclude=exclude,
        )

    def _revoke_pending(self, waiting: WaitingContact) -> Offer | None:
        """Revoke the offer that reserves the contact, if one does; it is returned, so its agent can be refilled."""
        pending = self.state.offers.get(waiting.offer_id) if waiting.offer_id else None
        if pending is not None:
            self.close_offer(pending, REVOKED)
        return pending

    # -- time passing --

    def tick(self) -> None:
        """Time passed: offers expire, wrap-ups end, queues open or close, bullseye steps, overflows and
        preferences come due."""
        state, index = self.state, self.index
        expired = [state.offers[offer_id] for offer_id in index.expiring(self.now)]
        for offer in expired:
            self.close_offer(offer, EXPIRED)
        for offer in expired:
            self.route_contact(offer.contact.id)
            self.fill_agent(offer.agent_id)
        for agent_id in list(index.wrap_ups_due(self.now)):
            self.set_presence(state.agents[agent_id], AVAILABLE)
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
        """The queue opened (its held contacts are offered) or closed (they overflow, if it says so)."""
        is_open = self._is_open(queue)
        self.decisions.append(HoursChanged(queue.id, is_open, self.now))
        if is_open:  # held contacts: the agents who may serve the queue take them, best first
            for agent_id in self._serving(queue):
                self.fill_agent(agent_id)
        elif queue.after_hours == "overflow" and queue.overflow_to is not None:
            for contact in self._held(queue):
                self.route_waiting(self.move(contact, queue.overflow_to, "after hours"))

    def _serving(self, queue: Queue) -> list[str]:
        # the agents of the queue's heaps, every channel and bullseye step, in the heaps' order
        agents: dict[str, None] = {}
        versions = self.index.agent_version
        for channel in queue.channels:
            for step in range(len(queue.bullseye) + 1):
                for _, _, _, version, agent_id in self.index.agents_for(queue.id, channel, step):
                    if versions.get(agent_id) == version:
                        agents[agent_id] = None
        return list(agents)

    def _held(self, queue: Queue) -> list[WaitingContact]:
        # the free contacts of the queue, every channel, in the heaps' order
        free = self.index.free
        return [
            entry.waiting
            for channel in queue.channels
            for entry in self.index.contacts_for(queue.id, channel)
            if free.get(entry.key) is entry and not self._stale(entry.key)
        ]

    # -- routing --

    def route_contact(self, contact_id: UUID) -> None:
        """Offer the contact to the best eligible agent, if there is one."""
        self.route_waiting(self._contact(contact_id))

    def route_waiting(self, contact: WaitingContact) -> None:
        """Offer the contact, as the plan has it, to the best agent who may take it, unless it is to wait on."""
        if not self._is_free(contact):
            return  # taken meanwhile: an expiry in the same tick let a freed agent pick it up first
        ref = contact.ref
        queue = self.state.queues[ref.queue_id]
        if queue.hours is not None and not self._is_open(queue):
            return  # held until the queue opens
        waited = self.now - (ref.queued_at or ref.enqueued_at)  # ``ref.entered``, without the property's call
        if queue.overflow_after is not None and queue.overflow_to is not None and waited >= queue.overflow_after:
            seconds = queue.overflow_after.total_seconds()
            self.route_waiting(self.move(contact, queue.overflow_to, f"overflow: waited {seconds:g} s in {queue.id}"))
            return
        if ref.preferred_agent is not None and self._prefers(contact):
            self._route_to_preferred(contact, queue, ref.preferred_agent)
            return
        agent = self.best_agent(contact, queue, waited)
        if agent is not None:
            self.offer(contact, agent)

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
        while (contact := self.best_contact(agent)) is not None:
            self.offer(contact, agent)
