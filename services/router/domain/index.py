"""Indexes over a ``RoutingState``, so that each decision costs O(log n) instead of a scan: per (queue, channel),
free waiting contacts by priority then age and available agents with a free slot by idle time then proficiency;
pending offers, contacts' timers and wrap-ups by time (``Deadlines``). Derived from the state, kept current by
``apply``, rebuilt when the state changed behind its back (see ``RoutingState.index``).
"""

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping

from contracts import Channel
from services.router.domain.deadlines import Deadlines, IndexedState
from services.router.domain.eligibility import eligibility
from services.router.domain.entities import (
    AVAILABLE,
    LONGEST_IDLE,
    Agent,
    ContactRef,
    WaitingContact,
)
from services.router.domain.heap import LazyHeap
from services.router.domain.keys import AgentEntry, ContactEntry, contact_rank

_tuple_new = tuple.__new__


def fingerprint(state: IndexedState) -> tuple[int, int, int, int, int]:
    """Cheap evidence that someone added or removed entries without ``apply`` (e.g. a rebuild)."""
    return id(state.queues), len(state.queues), len(state.agents), len(state.waiting), len(state.offers)


class RoutingIndex(Deadlines):
    """Ordered views of a ``RoutingState`` for the decision core.

    * per (queue, channel, bullseye step): the agents that are available, have a free slot on that
      channel and first meet the queue's requirement at that step (members of the queue's group, if it
      has one), ordered by the queue's policy (longest idle: idle_since, -proficiency) then agent order;
    * per (queue, channel): the free waiting contacts, ordered by (-priority, enqueued_at, arrival order)
      (priority with aging, where the queue ages);
    * how many contacts wait in each queue, and who may serve which (``eligibility``);
    * the pending offers by deadline, contacts' timers, agents' ends of wrap-up (``Deadlines``).

    The orders end in the position of the agent / contact / offer in the state's dicts, so ties are
    broken exactly as a scan of those dicts would. The hooks (``agent_freed`` …) are called by
    ``apply`` right after it changes the state; readers re-check each entry against the state.
    """

    def __init__(self, state: IndexedState) -> None:
        super().__init__(state)
        found = eligibility(state.queues, state.agents)
        self.eligible = found.eligible  # agent -> queue it may serve -> proficiency
        self.agent_step = found.steps  # (agent, queue) -> bullseye step it qualifies at, if > 0
        self._reorders = found.reorders  # agents whose rank moves with every offer (policy, exclusivity)
        self._servable = found.servable
        self.agent_order: dict[str, int] = {}
        self.agent_version: dict[str, int] = {}
        self._agents: dict[tuple[str, Channel, int], LazyHeap[AgentEntry]] = {}
        # agent -> channel -> the heaps its entries go in, one per queue of ``eligible[agent]``, in its order
        self._heaps_of: dict[str, dict[Channel, list[LazyHeap[AgentEntry]]]] = {}
        self._dirty: dict[str, Agent] = {}  # agents ``apply`` freed: re-entered once, when it is done
        # keyed by the contact's ``UUID.int``: hashing a UUID is a Python call, hashing an int is not
        self.contact_order: dict[int, int] = {}
        self.free: dict[int, ContactEntry] = {}  # a free contact's one live entry
        # channel -> queue -> its heap: a freed agent looks through its queues one channel at a time
        self._contacts: dict[Channel, dict[str, LazyHeap[ContactEntry]]] = {channel: {} for channel in Channel}
        self.waiting_in: dict[str, int] = {}  # queue -> contacts waiting there (free or reserved)
        # queues whose contacts' order or availability depends on the time (aging, business hours)
        self.timed_queues = {q.id for q in state.queues.values() if q.aging_per_minute or q.hours is not None}
        self.next_contact_order = 0
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
        """The heap of agents who may serve ``channel`` contacts of the queue from bullseye step ``step`` on."""
        return self._agents.get((queue_id, channel, step))

    def contact_heaps(self, channel: Channel) -> Mapping[str, LazyHeap[ContactEntry]]:
        """The heaps of free contacts on ``channel``, by queue."""
        return self._contacts[channel]

    def agents_for(self, queue_id: str, channel: Channel, step: int = 0) -> Iterator[AgentEntry]:
        """The entries of ``agent_heap`` in order, dead ones included (readers check them)."""
        heap = self._agents.get((queue_id, channel, step))
        return iter(heap) if heap is not None else iter(())

    def contacts_for(self, queue_id: str, channel: Channel) -> Iterator[ContactEntry]:
        """The entries of the queue's heap of free ``channel`` contacts in order, dead ones included."""
        heap = self._contacts[channel].get(queue_id)
        return iter(heap) if heap is not None else iter(())

    # -- agents --

    def _agent_heap(self, queue_id: str, channel: Channel, step: int) -> LazyHeap[AgentEntry]:
        heap = self._agents.get((queue_id, channel, step))
        if heap is None:
            heap = self._agents[queue_id, channel, step] = LazyHeap(self._agent_live(channel))
        return heap

    def _agent_live(self, channel: Channel) -> Callable[[AgentEntry], bool]:
        state, versions, available = self._state, self.agent_version, AVAILABLE

        def live(entry: AgentEntry) -> bool:
            _, _, _, version, agent_id = entry
            agent = state.agents.get(agent_id)
            return (
                agent is not None
                and versions.get(agent_id) == version
                and agent.presence is available
                and agent.load[channel] < agent.capacity.get(channel, 0)
                and not agent.blocked(channel, agent.load)
            )

        return live

    def _heaps(self, agent_id: str, channel: Channel) -> list[LazyHeap[AgentEntry]]:
        # the agent's heaps on ``channel`` (of its queues, at the bullseye step it qualifies at), found once
        of_agent = self._heaps_of.get(agent_id)
        if of_agent is None:
            of_agent = self._heaps_of[agent_id] = {}
        heaps = of_agent.get(channel)
        if heaps is None:
            steps = self.agent_step
            heaps = of_agent[channel] = [
                self._agent_heap(queue_id, channel, steps.get((agent_id, queue_id), 0) if steps else 0)
                for queue_id in self.eligible[agent_id]
            ]
        return heaps

    def _push_agent(self, agent: Agent) -> None:
        if agent.presence is not AVAILABLE:
            return
        agent_id, load = agent.id, agent.load
        order, version = self.agent_order[agent_id], self.agent_version[agent_id]
        queues, all_queues = self.eligible[agent_id], self._state.queues
        for channel, slots in agent.capacity.items():
            if load[channel] >= slots or agent.blocked(channel, load):
                continue
            for (queue_id, proficiency), heap in zip(queues.items(), self._heaps(agent_id, channel), strict=True):
                queue = all_queues[queue_id]
                if queue.policy is LONGEST_IDLE:  # the common case, without a call
                    first, second = agent.idle_since, -proficiency
                else:
                    first, second = agent.rank(queue, proficiency)
                heap.push((first, second, order, version, agent_id))

    def _settle_agent(self, agent: Agent, channels: Iterable[Channel]) -> None:
        # only the agent's own entries died, and every heap's top was live before: only heaps it tops need settling
        agent_id = agent.id
        for channel in channels:
            for heap in self._heaps(agent_id, channel):
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

    def _reenter_agents(self) -> None:
        # once per ``apply``: an agent freed and given work again in one event is never pushed in between
        for agent in self._dirty.values():
            self.agent_version[agent.id] += 1
            self._settle_agent(agent, agent.capacity)
            self._push_agent(agent)
        self._dirty.clear()

    # -- contacts --

    def _contact_heap(self, ref: ContactRef) -> LazyHeap[ContactEntry]:
        heaps = self._contacts[ref.channel]
        heap = heaps.get(ref.queue_id)
        if heap is None:
            heap = heaps[ref.queue_id] = LazyHeap(self._contact_live)
        return heap

    def _contact_live(self, entry: ContactEntry) -> bool:
        return self.free.get(entry.key) is entry

    def contact_added(self, waiting: WaitingContact) -> None:
        """The contact waits in its queue now (enqueued, moved there, or loaded), after every contact before it."""
        ref = waiting.ref
        self.contact_order[ref.id.int] = self.next_contact_order
        self.next_contact_order += 1
        self.waiting_in[ref.queue_id] = self.waiting_in.get(ref.queue_id, 0) + 1
        if waiting.offer_id is None:
            self.contact_released(waiting)
        queue = self._state.queues.get(ref.queue_id)
        # only a queue with bullseye steps or an overflow by wait, a preference or a turned-down contact sets timers
        if queue is not None and (
            queue.bullseye or queue.overflow_after is not None or ref.prefer_until is not None or waiting.declined_by
        ):
            self.contact_timers(waiting, queue)

    def contact_released(self, waiting: WaitingContact) -> None:
        """The contact is free again, in its original place."""
        ref = waiting.ref
        key = ref.id.int
        queue = self._state.queues.get(ref.queue_id)
        rank = contact_rank(queue, ref) if queue is not None and queue.aging_per_minute else -ref.priority  # inline
        # ``tuple.__new__`` is the named tuple's own ``__new__`` without its Python-level call
        order = self.contact_order[key]
        entry = self.free[key] = _tuple_new(ContactEntry, (rank, ref.enqueued_at, order, key, waiting))
        (self._contacts[ref.channel].get(ref.queue_id) or self._contact_heap(ref)).push(entry)

    def contact_reserved(self, ref: ContactRef) -> WaitingContact:
        """An offer reserves the contact: its entry dies. The contact, as the state holds it, is returned."""
        entry = self.free.pop(ref.id.int)
        self._settle_contact(ref, entry)
        return entry.waiting

    def contact_removed(self, ref: ContactRef) -> None:
        """The contact left its queue (assigned, abandoned or moved)."""
        key = ref.id.int
        entry = self.free.pop(key, None)
        del self.contact_order[key]
        self.waiting_in[ref.queue_id] -= 1
        if entry is not None:  # a reserved contact's entry died when it was reserved
            self._settle_contact(ref, entry)

    def _settle_contact(self, ref: ContactRef, entry: ContactEntry | None) -> None:
        # only ``entry`` died, below a live top unless it is the top
        heap = self._contacts[ref.channel].get(ref.queue_id)
        if heap is not None and heap.items and heap.items[0] is entry:
            heap.settle()

    def synced(self) -> None:
        """``apply`` changed the state and this index alike."""
        if self._dirty:
            self._reenter_agents()
        state = self._state  # ``fingerprint`` inline: this and ``is_current`` run on every event
        queues = state.queues
        self._fingerprint = id(queues), len(queues), len(state.agents), len(state.waiting), len(state.offers)

    def is_current(self) -> bool:
        """Whether the state is still the one this index was built or kept current for (``fingerprint`` inline)."""
        state = self._state
        queues = state.queues
        return self._fingerprint == (id(queues), len(queues), len(state.agents), len(state.waiting), len(state.offers))
