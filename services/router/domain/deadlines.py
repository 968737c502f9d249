"""What comes due with no event but time passing (``ClockTicked``): offers expire, contacts' timers fire, wrap-ups end.

The part of the index (``RoutingIndex`` builds on it) that orders things by time: three lazy heaps whose entries are
checked against the state when read, so an offer closed, a contact moved or a wrap-up cut short leaves nothing to
remove, only a dead entry behind.
"""

import heapq
from collections.abc import Iterator
from datetime import datetime
from typing import NamedTuple, Protocol, TypeVar
from uuid import UUID

from services.router.domain.entities import WRAP_UP, Agent, ContactRef, Offer, Queue, WaitingContact
from services.router.domain.heap import LazyHeap

_tuple_new = tuple.__new__


class IndexedState(Protocol):
    """What the indexes read of a ``RoutingState``, which builds them (``model``): they cannot import it."""

    @property
    def queues(self) -> dict[str, Queue]: ...
    @property
    def agents(self) -> dict[str, Agent]: ...
    @property
    def waiting(self) -> dict[UUID, WaitingContact]: ...
    @property
    def offers(self) -> dict[UUID, Offer]: ...


class ExpiryEntry(NamedTuple):
    """A pending offer's deadline: the soonest first, ties in the order the offers were made."""

    due: datetime
    order: int  # the offer's place among those made: the entry is live while the offer has it
    offer_id: UUID


class ContactTimer(NamedTuple):
    """When a waiting contact's routing changes by itself: a bullseye step widens its pool, an overflow or the end of
    a preference comes due, or the wait after an agent turned it down ends."""

    due: datetime
    seq: int
    contact_id: UUID
    entered: datetime  # when the contact entered its queue: the timers of a queue it has left are dead


class WrapUpEntry(NamedTuple):
    """The end of an agent's wrap-up."""

    due: datetime
    agent_id: str


class Deadlines:
    """Pending offers by deadline, contacts' timers and agents' ends of wrap-up, each soonest first."""

    def __init__(self, state: IndexedState) -> None:
        self._state = state
        self.offer_order: dict[int, int] = {}  # by the offer's ``UUID.int`` (hashed in C)
        self._next_offer_order = 0
        self._expiry: LazyHeap[ExpiryEntry] = LazyHeap(self._offer_live)
        self._timers: LazyHeap[ContactTimer] = LazyHeap(self._timer_live)
        self._timer_seq = 0
        self._wrap_ups: LazyHeap[WrapUpEntry] = LazyHeap(self._wrap_up_live)

    def due(self) -> datetime | None:
        """The earliest time something is due: an offer expires, a contact's timer or an agent's wrap-up ends."""
        expiry, timers, wrap_ups = self._expiry, self._timers, self._wrap_ups
        for heap in (expiry, timers, wrap_ups):
            heap.settle()
        tops = [heap.items[0].due for heap in (expiry, timers, wrap_ups) if heap.items]
        return min(tops) if tops else None

    # -- offers --

    def offer_added(self, offer: Offer) -> None:
        self.offer_order[offer.id.int] = self._next_offer_order
        # ``tuple.__new__``: the named tuple's own ``__new__`` without its Python-level call (one per offer)
        self._expiry.push(_tuple_new(ExpiryEntry, (offer.expires_at, self._next_offer_order, offer.id)))
        self._next_offer_order += 1

    def offer_removed(self, offer_id: UUID) -> None:
        del self.offer_order[offer_id.int]
        items = self._expiry.items
        if items and items[0].offer_id == offer_id:
            self._expiry.settle()

    def expiring(self, now: datetime) -> Iterator[UUID]:
        """Ids of the pending offers due at ``now``, soonest first (ties in the order they were made)."""
        return (entry.offer_id for entry in _due_by(self._expiry, now))

    def _offer_live(self, entry: ExpiryEntry) -> bool:
        return self.offer_order.get(entry.offer_id.int) == entry.order

    # -- contacts --

    def contact_timers(self, waiting: WaitingContact, queue: Queue) -> None:
        """A contact waits in ``queue`` from now on: its bullseye steps, overflow, preference and reoffer waits."""
        ref = waiting.ref
        entered = ref.queued_at or ref.enqueued_at  # ``ref.entered``, without the property's call
        for step in queue.bullseye:
            self._push_timer(ref, entered + step.after)
        if queue.overflow_to is not None and queue.overflow_after is not None:
            self._push_timer(ref, entered + queue.overflow_after)
        if ref.preferred_agent is not None and ref.prefer_until is not None:
            self._push_timer(ref, ref.prefer_until)
        for at in waiting.declined_by.values():
            self._push_timer(ref, at + queue.reoffer_after)

    def contact_turned_down(self, ref: ContactRef, at: datetime) -> None:
        """An agent turned the contact down at ``at``: it may be offered to that agent again after the queue's wait."""
        queue = self._state.queues.get(ref.queue_id)
        if queue is not None:
            self._push_timer(ref, at + queue.reoffer_after)

    def contacts_due(self, now: datetime) -> Iterator[UUID]:
        """Waiting contacts whose timer (bullseye step, overflow, preference, reoffer wait) came due by ``now``."""
        seen: set[UUID] = set()
        for entry in _due_by(self._timers, now):
            if entry.contact_id not in seen:
                seen.add(entry.contact_id)
                yield entry.contact_id

    def timers_fired(self, at: datetime) -> None:
        """Contacts' timers due by ``at`` were acted on: they go."""
        items = self._timers.items
        while items and items[0].due <= at:
            heapq.heappop(items)

    def _push_timer(self, ref: ContactRef, due: datetime) -> None:
        self._timers.push(ContactTimer(due, self._timer_seq, ref.id, ref.entered))
        self._timer_seq += 1

    def _timer_live(self, entry: ContactTimer) -> bool:
        waiting = self._state.waiting.get(entry.contact_id)
        return waiting is not None and entry.entered == waiting.ref.entered

    # -- agents --

    def agent_wrapping(self, agent: Agent) -> None:
        """The agent is in wrap-up until ``busy_until`` (if it is)."""
        if agent.presence is WRAP_UP and agent.busy_until is not None:
            self._wrap_ups.push(WrapUpEntry(agent.busy_until, agent.id))

    def wrap_ups_due(self, now: datetime) -> Iterator[str]:
        """Agents whose wrap-up ended at ``now``."""
        return (entry.agent_id for entry in _due_by(self._wrap_ups, now))

    def _wrap_up_live(self, entry: WrapUpEntry) -> bool:
        agent = self._state.agents.get(entry.agent_id)
        return agent is not None and agent.presence is WRAP_UP and agent.busy_until == entry.due


Due = TypeVar("Due", ExpiryEntry, ContactTimer, WrapUpEntry)


def _due_by(heap: LazyHeap[Due], now: datetime) -> Iterator[Due]:
    """The live entries of ``heap`` due by ``now``, soonest first, without changing the heap."""
    for entry in heap:
        if entry.due > now:
            return
        if heap.live(entry):
            yield entry
