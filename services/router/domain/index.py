"""Indexes over a ``RoutingState``, so that each decision costs O(log n) instead of a scan: per (queue, channel),
free waiting contacts by priority then age and available agents with a free slot by idle time then proficiency;
pending offers by deadline. Derived from the state, kept current by ``apply``, rebuilt when the state changed
behind its back (see ``RoutingState.index``).
"""

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from contracts import Channel
from services.router.domain.entities import (
    EPOCH,
    Agent,
    ContactRef,
    Offer,
    Presence,
    Queue,
    RoutingPolicy,
    WaitingContact,
)
from services.router.domain.heap import LazyHeap


class IndexedState(Protocol):
    """What the indexes read of a ``RoutingState``, which builds them (``model``): this module cannot import it."""

    @property
    def queues(self) -> dict[str, Queue]: ...
    @property
    def agents(self) -> dict[str, Agent]: ...
    @property
    def waiting(self) -> dict[UUID, WaitingContact]: ...
    @property
    def offers(self) -> dict[UUID, Offer]: ...


def fingerprint(state: IndexedState) -> tuple[int, int, int, int, int]:
    """Cheap evidence that someone added or removed entries without ``apply`` (e.g. a rebuild)."""
    return id(state.queues), len(state.queues), len(state.agents), len(state.waiting), len(state.offers)


# (rank by the queue's policy, two parts — see ``Agent.rank``; agent order, version, agent id): smallest first
AgentEntry = tuple[Any, Any, int, int, str]
# (-priority, enqueued_at, arrival order, contact id): highest priority, then oldest, first. In a queue with aging the
# first item is aging × minutes since EPOCH at enqueue − priority, which orders its contacts alike at any time.
ContactEntry = tuple[float, datetime, int, UUID]
# (expires_at, offer order, offer id): soonest deadline first
ExpiryEntry = tuple[datetime, int, UUID]
# (due, sequence, contact id, when it entered its queue): a bullseye step, an overflow, a preference or the wait after
# an agent turned it down ends
ContactTimer = tuple[datetime, int, UUID, datetime]
# (busy_until, agent id): wrap-up ends
WrapUpEntry = tuple[datetime, str]


class RoutingIndex:
    """Ordered views of a ``RoutingState`` for the decision core.

    * per (queue, channel, bullseye step): the agents that are available, have a free slot on that
      channel and first meet the queue's requirement at that step (members of the queue's group, if it
      has one), ordered by the queue's policy (longest idle: idle_since, -proficiency) then agent order;
    * per (queue, channel): the free waiting contacts, ordered by (-priority, enqueued_at, arrival order)
      (priority with aging, where the queue ages);
    * the pending offers by deadline; contacts' next bullseye step, overflow or end of preference;
      agents' end of wrap-up; how many contacts wait in each queue.

    The orders end in the position of the agent / contact / offer in the state's dicts, so ties are
    broken exactly as a scan of those dicts would. The hooks (``agent_freed`` …) are called by
    ``apply`` right after it changes the state; readers re-check each entry against the state.
    """

    def __init__(self, state: IndexedState) -> None:
        self._state = state
        self.agent_order: dict[str, int] = {}
        self.agent_version: dict[str, int] = {}
        self.eligible: dict[str, dict[str, int]] = {}  # agent -> queue it may serve -> proficiency
        self.agent_step: dict[tuple[str, str], int] = {}  # (agent, queue) -> bullseye step it qualifies at, if > 0
        self._reorders: set[str] = set()  # agents whose rank moves with every offer (policy, exclusivity)
        self._agents: dict[tuple[str, Channel, int], LazyHeap[AgentEntry]] = {}
        self._dirty: dict[str, Agent] = {}  # agents ``apply`` freed: re-entered once, when it is done
        self.contact_order: dict[UUID, int] = {}
        self.free: dict[UUID, ContactEntry] = {}  # a free contact's one live entry
        self._contacts: dict[tuple[str, Channel], LazyHeap[ContactEntry]] = {}
        self.offer_order: dict[UUID, int] = {}
        self._expiry: LazyHeap[ExpiryEntry] = LazyHeap(lambda e: self.offer_order.get(e[2]) == e[1])
        self.waiting_in: dict[str, int] = {}  # queue -> contacts waiting there (free or reserved)
        # queues whose contacts' order or availability depends on the time (aging, business hours)
        self.timed_queues = {q.id for q in state.queues.values() if q.aging_per_minute or q.hours is not None}
        self._timers: LazyHeap[ContactTimer] = LazyHeap(self._timer_live)
        self._timer_seq = 0
        self._wrap_ups: LazyHeap[WrapUpEntry] = LazyHeap(self._wrap_up_live)
        self.next_contact_order = 0
        self._next_offer_order = 0
        self._build_eligibility()
        for order, agent in enumerate(state.agents.values()):
            self.agent_order[agent.id] = order
            self.agent_version[agent.id] = 0
            self._push_agent(agent)
            self.agent_wrapping(agent)
        for waiting in state.waiting.values():
            self.contact_added(waiting)
        for offer in state.offers.values():
            self.offer_added(offer)
        self._fingerprint = fingerprint(state)

    def _build_eligibility(self) -> None:
        agents = self._state.agents
        holders: dict[str, set[str]] = {}
        for agent in agents.values():
            self.eligible[agent.id] = {}
            for skill, level in agent.skills.items():
                if level > 0:
                    holders.setdefault(skill, set()).add(agent.id)
        reordering = {q.id for q in self._state.queues.values() if q.policy in _REORDERING}
        for queue in self._state.queues.values():
            requirements = queue.requirements()
            # only agents holding every skill of the widest requirement can qualify: intersect instead of testing all
            needed = [holders.get(skill, set()) for skill, minimum in requirements[-1].items() if minimum > 0]
            candidates = set.intersection(*needed) if needed else set(agents)
            for agent_id in candidates:
                agent = agents[agent_id]
                if queue.group is not None and queue.group not in agent.groups:
                    continue
                step = next((i for i, need in enumerate(requirements) if agent.proficiency(need) is not None), None)
                if step is None:
                    continue
                # ranked by the queue's own skills, so a step-0 agent's proficiency is the usual sum
                self.eligible[agent_id][queue.id] = sum(agent.skills.get(skill, 0) for skill in queue.skills)
                if step:
                    self.agent_step[agent_id, queue.id] = step
                if queue.id in reordering:
                    self._reorders.add(agent_id)
        self._reorders |= {a.id for a in agents.values() if a.phone_exclusive}
        # (queue, channel) pairs some agent, in any presence, may ever serve: skills at some step, group, a slot
        self._servable = {
            (queue_id, channel)
            for agent_id, queues in self.eligible.items()
            for channel, slots in agents[agent_id].capacity.items()
            if slots > 0
            for queue_id in queues
        }

    # -- reading --

    def can_ever_serve(self, queue_id: str, channel: Channel) -> bool:
        """Whether any agent, in any presence, may ever serve ``channel`` contacts of ``queue_id``."""
        return (queue_id, channel) in self._servable

    def unservable(self) -> Counter[tuple[str, Channel]]:
        """Waiting contacts no agent can ever serve, per (queue, channel)."""
        servable = self._servable
        return Counter(
            (w.ref.queue_id, w.ref.channel)
            for w in self._state.waiting.values()
            if (w.ref.queue_id, w.ref.channel) not in servable
        )

    def agent_heap(self, queue_id: str, channel: Channel, step: int = 0) -> LazyHeap[AgentEntry] | None:
        return self._agents.get((queue_id, channel, step))

    def contact_heap(self, queue_id: str, channel: Channel) -> LazyHeap[ContactEntry] | None:
        return self._contacts.get((queue_id, channel))

    def agents_for(self, queue_id: str, channel: Channel, step: int = 0) -> Iterator[AgentEntry]:
        heap = self._agents.get((queue_id, channel, step))
        return iter(heap) if heap is not None else iter(())

    def contacts_for(self, queue_id: str, channel: Channel) -> Iterator[ContactEntry]:
        heap = self._contacts.get((queue_id, channel))
        return iter(heap) if heap is not None else iter(())

    def expiring(self, now: datetime) -> Iterator[UUID]:
        """Ids of the pending offers due at ``now``, soonest first (ties in the order they were made)."""
        for expires_at, order, offer_id in self._expiry:
            if expires_at > now:
                return
            if self.offer_order.get(offer_id) == order:
                yield offer_id

    def due(self) -> datetime | None:
        """The earliest time something is due: an offer expires, a contact's timer or an agent's wrap-up ends."""
        for heap in (self._expiry, self._timers, self._wrap_ups):
            heap.settle()
        tops = [heap.items[0][0] for heap in (self._expiry, self._timers, self._wrap_ups) if heap.items]
        return min(tops) if tops else None

    def contacts_due(self, now: datetime) -> Iterator[UUID]:
        """Waiting contacts whose timer (bullseye step, overflow, preference, reoffer wait) came due by ``now``."""
        seen: set[UUID] = set()
        for entry in self._timers:
            if entry[0] > now:
                return
            if entry[2] not in seen and self._timer_live(entry):
                seen.add(entry[2])
                yield entry[2]

    def timers_fired(self, at: datetime) -> None:
        """Contacts' timers due by ``at`` were acted on: they go."""
        items = self._timers.items
        while items and items[0][0] <= at:
            heapq.heappop(items)

    def wrap_ups_due(self, now: datetime) -> Iterator[str]:
        """Agents whose wrap-up ended at ``now``."""
        for busy_until, agent_id in self._wrap_ups:
            if busy_until > now:
                return
            if self._wrap_up_live((busy_until, agent_id)):
                yield agent_id

    # -- agents --

    def _agent_heap(self, queue_id: str, channel: Channel, step: int) -> LazyHeap[AgentEntry]:
        heap = self._agents.get((queue_id, channel, step))
        if heap is None:
            heap = self._agents[queue_id, channel, step] = LazyHeap(self._agent_live(channel))
        return heap

    def _agent_live(self, channel: Channel) -> Callable[[AgentEntry], bool]:
        state, versions, available = self._state, self.agent_version, Presence.AVAILABLE

        def live(entry: AgentEntry) -> bool:
            agent = state.agents.get(entry[4])
            return (
                agent is not None
                and versions.get(entry[4]) == entry[3]
                and agent.presence is available
                and agent.load[channel] < agent.capacity.get(channel, 0)
                and not agent.blocked(channel, agent.load)
            )

        return live

    def _push_agent(self, agent: Agent) -> None:
        if agent.presence is not Presence.AVAILABLE:
            return
        agent_id, load = agent.id, agent.load
        order, version = self.agent_order[agent_id], self.agent_version[agent_id]
        queues, steps, all_queues = self.eligible[agent_id], self.agent_step, self._state.queues
        for channel, slots in agent.capacity.items():
            if load[channel] >= slots or agent.blocked(channel, load):
                continue
            for queue_id, proficiency in queues.items():
                queue = all_queues[queue_id]
                if queue.policy is RoutingPolicy.LONGEST_IDLE:  # the common case, without a call
                    first, second = agent.idle_since, -proficiency
                else:
                    first, second = agent.rank(queue, proficiency)
                step = steps.get((agent_id, queue_id), 0) if steps else 0
                self._agent_heap(queue_id, channel, step).push((first, second, order, version, agent_id))

    def _settle_agent(self, agent: Agent, channels: Iterable[Channel]) -> None:
        # only the agent's own entries died, and every heap's top was live before: only heaps it tops need settling
        agent_id, heaps, steps = agent.id, self._agents, self.agent_step
        queues = self.eligible[agent_id]
        for channel in channels:
            for queue_id in queues:
                heap = heaps.get((queue_id, channel, steps.get((agent_id, queue_id), 0) if steps else 0))
                if heap is not None:
                    items = heap.items
                    if items and items[0][4] == agent_id:
                        heap.settle()

    def agent_freed(self, agent: Agent) -> None:
        """The agent's idle time, presence or free slots changed: old entries die, new ones go in at ``synced``."""
        self._dirty[agent.id] = agent

    def agent_busier(self, agent: Agent, channel: Channel) -> None:
        """The agent took a slot on ``channel``; if that was its last, its entries there die."""
        if agent.id in self._reorders:
            self._dirty[agent.id] = agent  # its rank or its other channels changed too: re-enter it
        elif agent.id not in self._dirty and agent.load[channel] >= agent.capacity.get(channel, 0):
            self._settle_agent(agent, (channel,))

    def _wrap_up_live(self, entry: WrapUpEntry) -> bool:
        agent = self._state.agents.get(entry[1])
        return agent is not None and agent.presence is Presence.WRAP_UP and agent.busy_until == entry[0]

    def agent_wrapping(self, agent: Agent) -> None:
        """The agent is in wrap-up until ``busy_until`` (if it is)."""
        if agent.presence is Presence.WRAP_UP and agent.busy_until is not None:
            self._wrap_ups.push((agent.busy_until, agent.id))

    def _reenter_agents(self) -> None:
        # once per ``apply``: an agent freed and given work again in one event is never pushed in between
        for agent in self._dirty.values():
            self.agent_version[agent.id] += 1
            self._settle_agent(agent, agent.capacity)
            self._push_agent(agent)
        self._dirty.clear()

    # -- contacts --

    def _contact_heap(self, ref: ContactRef) -> LazyHeap[ContactEntry]:
        heap = self._contacts.get((ref.queue_id, ref.channel))
        if heap is None:
            heap = self._contacts[ref.queue_id, ref.channel] = LazyHeap(lambda e: self.free.get(e[3]) is e)
        return heap

    def contact_added(self, waiting: WaitingContact) -> None:
        ref = waiting.ref
        self.contact_order[ref.id] = self.next_contact_order
        self.next_contact_order += 1
        self.waiting_in[ref.queue_id] = self.waiting_in.get(ref.queue_id, 0) + 1
        if waiting.offer_id is None:
            self.contact_released(ref)
        queue = self._state.queues.get(ref.queue_id)
        if queue is not None:
            for due in _timers(queue, ref):
                self._push_timer(ref, due)
            for at in waiting.declined_by.values():
                self._push_timer(ref, at + queue.reoffer_after)

    def contact_turned_down(self, ref: ContactRef, at: datetime) -> None:
        """An agent turned the contact down at ``at``: it may be offered to that agent again after the queue's wait."""
        queue = self._state.queues.get(ref.queue_id)
        if queue is not None:
            self._push_timer(ref, at + queue.reoffer_after)

    def _push_timer(self, ref: ContactRef, due: datetime) -> None:
        self._timers.push((due, self._timer_seq, ref.id, ref.entered))
        self._timer_seq += 1

    def contact_released(self, ref: ContactRef) -> None:
        """The contact is free again, in its original place."""
        entry = (
            contact_key(self._state.queues.get(ref.queue_id), ref),
            ref.enqueued_at,
            self.contact_order[ref.id],
            ref.id,
        )
        self.free[ref.id] = entry
        self._contact_heap(ref).push(entry)

    def _entered(self, contact_id: UUID) -> datetime | None:
        waiting = self._state.waiting.get(contact_id)
        return waiting.ref.entered if waiting is not None else None

    def _timer_live(self, entry: ContactTimer) -> bool:
        return entry[3] == self._entered(entry[2])

    def contact_reserved(self, ref: ContactRef) -> None:
        self._settle_contact(ref, self.free.pop(ref.id))

    def contact_removed(self, ref: ContactRef) -> None:
        entry = self.free.pop(ref.id, None)
        del self.contact_order[ref.id]
        self.waiting_in[ref.queue_id] -= 1
        if entry is not None:  # a reserved contact's entry died when it was reserved
            self._settle_contact(ref, entry)

    def _settle_contact(self, ref: ContactRef, entry: ContactEntry | None) -> None:
        # only ``entry`` died, below a live top unless it is the top
        heap = self._contacts.get((ref.queue_id, ref.channel))
        if heap is not None and heap.items and heap.items[0] is entry:
            heap.settle()

    # -- offers --

    def offer_added(self, offer: Offer) -> None:
        self.offer_order[offer.id] = self._next_offer_order
        self._expiry.push((offer.expires_at, self._next_offer_order, offer.id))
        self._next_offer_order += 1

    def offer_removed(self, offer_id: UUID) -> None:
        del self.offer_order[offer_id]
        items = self._expiry.items
        if items and items[0][2] == offer_id:
            self._expiry.settle()

    def synced(self) -> None:
        """``apply`` changed the state and this index alike."""
        if self._dirty:
            self._reenter_agents()
        self._fingerprint = fingerprint(self._state)

    def is_current(self) -> bool:
        """Whether the state is still the one this index was built or kept current for."""
        return self._fingerprint == fingerprint(self._state)


_REORDERING = frozenset({RoutingPolicy.LEAST_OCCUPIED, RoutingPolicy.ROUND_ROBIN})


def contact_key(queue: Queue | None, ref: ContactRef) -> float:
    """The first item of a contact's entry: −priority, or in an aging queue aging × minutes(enqueued) − priority.

    Effective priority at time t is priority + aging × (t − enqueued), so within one queue this orders contacts
    as their effective priority does at every t.
    """
    if queue is None or not queue.aging_per_minute:
        return -ref.priority
    return queue.aging_per_minute * (ref.enqueued_at - EPOCH).total_seconds() / 60 - ref.priority


def _timers(queue: Queue, ref: ContactRef) -> list[datetime]:
    entered = ref.entered
    due = [entered + step.after for step in queue.bullseye]
    if queue.overflow_to is not None and queue.overflow_after is not None:
        due.append(entered + queue.overflow_after)
    if ref.preferred_agent is not None and ref.prefer_until is not None:
        due.append(ref.prefer_until)
    return due
