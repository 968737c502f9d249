"""Each decision the plan makes, and the notes of what it changes (the layer above ``Candidates``).

A method here appends one decision (or a decision and those it entails: an auto-accepted offer is assigned at once,
an agent who let too many offers expire goes away) and notes its effect, so that every later reading of the plan sees
it. Which decisions an event makes is ``routing``'s.
"""

from dataclasses import replace
from datetime import datetime

from services.router.domain.candidates import Candidates
from services.router.domain.decisions import (
    ACCEPTED,
    EXPIRED,
    Abandoned,
    Assigned,
    Completed,
    Enqueued,
    OfferClosed,
    Offered,
    OfferOutcome,
    PresenceSet,
    Requeued,
    assignment_id_for,
    offer_id_for,
)
from services.router.domain.entities import (
    AVAILABLE,
    AWAY,
    WRAP_UP,
    Agent,
    Assignment,
    ContactRef,
    Offer,
    Presence,
    WaitingContact,
)


class Plan(Candidates):
    """Decisions so far, with their notes."""

    __slots__ = ()

    def offer(self, contact: WaitingContact, agent: Agent) -> None:
        """Reserve the contact for the agent until the queue's offer timeout (its id counts the contact's offers)."""
        ref = contact.ref
        key = ref.id.int
        made = self._offers_made.get(key, 0)
        queue = self.state.queues[ref.queue_id]
        offer_id = offer_id_for(ref.id, contact.offers_made + made)
        expires_at = self.now + queue.offer_timeouts.get(ref.channel, queue.offer_timeout)  # ``timeout_for``
        self.decisions.append(Offered(offer_id, ref, agent.id, self.now, expires_at))
        self._offers_made[key] = made + 1
        self._reserved[key] = True
        slot = (agent.id, ref.channel)
        self._load[slot] = self._load.get(slot, 0) + 1
        self._touched[agent.id] = agent  # ``_touch``, inline
        if queue.auto_accept:  # assigned at once: no offer to accept
            offer = Offer(offer_id, ref, agent.id, expires_at)
            self.close_offer(offer, ACCEPTED)
            self.assign(offer)

    def close_offer(self, offer: Offer, outcome: OfferOutcome) -> None:
        """End an offer. Unless accepted, the contact is free again, the agent turned it down (its last choice for a
        while) and has the slot back; an agent who lets ``max_missed`` offers expire in a row goes away."""
        self.decisions.append(OfferClosed(offer.id, offer.contact, offer.agent_id, outcome, self.now))
        if outcome is not ACCEPTED:
            contact_id, agent_id = offer.contact.id, offer.agent_id
            self._reserved[contact_id.int] = False
            self._freed[contact_id] = self.state.waiting[contact_id]
            self._declined.setdefault(contact_id, set()).add(agent_id)
            key = (agent_id, offer.contact.channel)
            self._load[key] = self._load.get(key, 0) - 1
            agent = self.state.agents[agent_id]
            self._touched[agent.id] = agent  # ``_touch``, inline
            if outcome is EXPIRED and agent.max_missed is not None:
                missed = self._missed[agent_id] = self._missed.get(agent_id, agent.missed) + 1
                if missed >= agent.max_missed and self._presence_of(agent) is AVAILABLE:
                    self.set_presence(agent, AWAY, reason=f"let {missed} offers in a row expire")

    def assign(self, offer: Offer) -> None:
        """The accepted offer becomes an assignment (its id follows from the offer's)."""
        assignment_id = assignment_id_for(offer.id)
        self.decisions.append(Assigned(assignment_id, offer.id, offer.contact, offer.agent_id, self.now))

    def complete(
        self, assignment: Assignment, disposition: str | None, resolved: bool | None, *, transferred: bool = False
    ) -> None:
        """The assignment ends: the agent has the slot back, after wrap-up if it has one."""
        contact, agent_id = assignment.contact, assignment.agent_id
        self.decisions.append(Completed(assignment.id, contact, agent_id, self.now, disposition, resolved, transferred))
        key = (agent_id, contact.channel)
        self._load[key] = self._load.get(key, 0) - 1
        agent = self.state.agents[agent_id]
        self._touched[agent.id] = agent  # ``_touch``, inline
        if agent.wrap_up and self._presence_of(agent) in (AVAILABLE, WRAP_UP):
            self.set_presence(agent, WRAP_UP, until=self.now + agent.wrap_up)

    def set_presence(
        self, agent: Agent, presence: Presence, *, until: datetime | None = None, reason: str | None = None
    ) -> None:
        """The agent's presence changes (``until``: the end of wrap-up)."""
        self._presence[agent.id] = presence
        self._touched[agent.id] = agent  # ``_touch``, inline
        self.decisions.append(PresenceSet(agent.id, presence, self.now, until, reason))

    def abandon(self, contact: ContactRef) -> None:
        """The customer left: the contact leaves its queue."""
        self.decisions.append(Abandoned(contact, self.now))
        self._reserved[contact.id.int] = True  # gone: nobody may be offered it any more

    def enqueue(self, contact: ContactRef) -> WaitingContact:
        """The contact waits in its queue (noted by hand: the index has it only once ``apply`` has run)."""
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
            offers_made = contact.offers_made + self._offers_made.get(old.id.int, 0)
            self._queued[old.queue_id] = self._queued.get(old.queue_id, 0) - 1
            self._moved.add(old.id.int)
        self._queued[queue_id] = self._queued.get(queue_id, 0) + 1
        self._offers_made.pop(old.id.int, None)
        self._freed.pop(old.id, None)
        self._declined.pop(old.id, None)
        self._reserved[old.id.int] = False
        self.decisions.append(Requeued(old, new, reason, self.now, offers_made, exclude))
        moved = WaitingContact(new, offers_made=offers_made, declined_by=dict.fromkeys(exclude, self.now))
        self._new.pop(old.id, None)
        self._new[old.id] = moved
        return moved
