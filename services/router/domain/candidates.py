"""Choosing through the plan's notes: the best agent for a contact, and the best contact for an agent.

Both walk the index's heaps in order and stop at the first candidate that may be offered the contact in the plan;
then they look by hand at what the index cannot know yet: the agents the plan freed or made busier, the contacts it
enqueued, moved or freed. The keys compare as the heaps' orders do, so the answer is the one a scan of the whole
state in its dicts' order would give (``tests/unit/test_decide_index.py`` checks it against such a scan).
"""

from datetime import timedelta
from typing import Any, NamedTuple

from contracts import Channel
from services.router.domain.decisions import Offered
from services.router.domain.entities import (
    EPOCH,
    LEAST_OCCUPIED,
    LONGEST_IDLE,
    ROUND_ROBIN,
    Agent,
    Queue,
    WaitingContact,
)
from services.router.domain.heap import LazyHeap
from services.router.domain.keys import ContactEntry, rounded
from services.router.domain.overlay import Overlay

_tuple_new = tuple.__new__


class _AgentPick(NamedTuple):
    """The best agent for a contact so far, and its key."""

    key: tuple[bool, Any, Any, int]  # whether it ever turned the contact down, its rank by the policy, its order
    agent: Agent


class Candidates(Overlay):
    """The plan's choices of whom to offer what (the layer above ``Overlay``)."""

    __slots__ = ()

    # -- the agent for a contact --

    def best_agent(self, contact: WaitingContact, queue: Queue, waited: timedelta) -> Agent | None:
        """The agent to offer ``contact``, which waited ``waited`` in ``queue``: the first by the queue's policy of
        those who may take it now, those who never turned it down before those who did (their last choice)."""
        ref = contact.ref
        turned_down = bool(contact.declined_by) or bool(self._declined and ref.id in self._declined)
        last_step = queue.step_after(waited) if queue.bullseye else 0
        best = self._best_indexed_agent(contact, ref.channel, turned_down, last_step)
        if self._touched:
            best = self._best_touched_agent(contact, queue, turned_down, last_step, best)
        return best.agent if best is not None else None

    def _best_indexed_agent(
        self, contact: WaitingContact, channel: Channel, turned_down: bool, last_step: int
    ) -> _AgentPick | None:
        # the index's agents of each bullseye step the contact has reached, in the queue's order
        agents, versions, touched = self.state.agents, self.index.agent_version, self._touched
        queue_id = contact.ref.queue_id
        best: _AgentPick | None = None
        for step in range(last_step + 1):
            heap = self.index.agent_heap(queue_id, channel, step)
            if heap is None or not heap.items:
                continue
            for first, second, order, version, agent_id in heap:
                if best is not None and (False, first, second, order) >= best.key:
                    break
                if versions[agent_id] != version or agent_id in touched:
                    continue  # superseded by a newer entry of the same agent, or looked at by hand
                agent = agents[agent_id]
                if self._free_slots(agent, channel) > 0 and not self._has_declined(contact, agent_id):
                    last = turned_down and self._ever_declined(contact, agent_id)
                    if best is None or (last, first, second, order) < best.key:
                        best = _tuple_new(_AgentPick, ((last, first, second, order), agent))  # no Python call
                    if not last:
                        break
        return best

    def _best_touched_agent(
        self, contact: WaitingContact, queue: Queue, turned_down: bool, last_step: int, best: _AgentPick | None
    ) -> _AgentPick | None:
        # agents the plan freed or made busier, ordered like the index: the best usable one that may take it
        queue_id, channel = queue.id, contact.ref.channel
        eligible, agent_order, steps = self.index.eligible, self.index.agent_order, self.index.agent_step
        for agent_id, agent in self._touched.items():
            proficiency = eligible[agent_id].get(queue_id)
            if proficiency is None or self._free_slots(agent, channel) <= 0:
                continue
            if (steps and steps.get((agent_id, queue_id), 0) > last_step) or self._has_declined(contact, agent_id):
                continue
            last = turned_down and self._ever_declined(contact, agent_id)
            key = (last, *self._rank(queue, agent, proficiency), agent_order[agent_id])
            if best is None or key < best.key:
                best = _AgentPick(key, agent)
        return best

    def _rank(self, queue: Queue, agent: Agent, proficiency: int) -> tuple[Any, Any]:
        """The agent's rank by the queue's policy (see ``Agent.rank``), with the load and offers of the plan."""
        if queue.policy is LONGEST_IDLE:
            return agent.idle_since, -proficiency
        if queue.policy is LEAST_OCCUPIED:
            return agent.rank(queue, proficiency, {ch: self._used(agent, ch) for ch in agent.capacity})
        if queue.policy is ROUND_ROBIN and self._offers_made_to(agent.id):
            return self.now, agent.idle_since
        return agent.rank(queue, proficiency)

    def _offers_made_to(self, agent_id: str) -> bool:
        return any(isinstance(d, Offered) and d.agent_id == agent_id for d in self.decisions)

    # -- the contact for an agent --

    def best_contact(self, agent: Agent) -> WaitingContact | None:
        """The contact to offer ``agent`` next: the first, over its queues and channels with a free slot, by priority
        (with aging, where a queue ages) then age then arrival, of those it may take now."""
        queue_ids = self.index.eligible[agent.id]
        best: ContactEntry | None = None  # the key of the best so far: the entry's order decides every tie
        for channel in agent.capacity:
            if self._free_slots(agent, channel) > 0:
                best = self._best_indexed_contact(agent.id, queue_ids, channel, best)
        if self._new or self._freed:
            best = self._best_unindexed_contact(agent, queue_ids, best)
        return best.waiting if best is not None else None  # the state's, or the plan's for one it enqueued or moved

    def _best_indexed_contact(
        self, agent_id: str, queue_ids: dict[str, int], channel: Channel, best: ContactEntry | None
    ) -> ContactEntry | None:
        heaps, all_queues, timed = self.index.contact_heaps(channel), self.state.queues, self.index.timed_queues
        for queue_id in queue_ids:
            heap = heaps.get(queue_id)
            if heap is None or not heap.items:
                continue
            if queue_id in timed:  # with business hours or aging: look closer
                queue = all_queues[queue_id]
                if queue.hours is not None and not self._is_open(queue):
                    continue
                if queue.aging_per_minute:
                    best = self._best_aged(agent_id, queue_id, heap, queue.aging_per_minute, best)
                    continue
            top = heap.items[0]
            if best is not None and top >= best:
                continue  # this queue has nothing better than the best so far
            # the top is taken in the common case, without walking the heap
            best = top if self._takes(agent_id, queue_id, top) else self._walk(agent_id, queue_id, heap, best)
        return best

    def _walk(
        self, agent_id: str, queue_id: str, heap: LazyHeap[ContactEntry], best: ContactEntry | None
    ) -> ContactEntry | None:
        # past a top the agent may not take: the first entry it may, if one is better than the best so far
        for entry in heap:
            if best is not None and entry >= best:
                break
            if self._takes(agent_id, queue_id, entry):
                return entry
        return best

    def _best_aged(
        self, agent_id: str, queue_id: str, heap: LazyHeap[ContactEntry], aging: float, best: ContactEntry | None
    ) -> ContactEntry | None:
        # an entry's rank is aging × minutes(enqueued) − priority: −(effective priority now) is that less
        # aging × minutes(now)
        now_minutes = (self.now - EPOCH).total_seconds() / 60
        shift = aging * now_minutes
        for entry in heap:
            key = ContactEntry(rounded(entry.rank - shift), entry.enqueued_at, entry.order, entry.key, entry.waiting)
            if best is not None and key >= best:
                break
            if self._takes(agent_id, queue_id, entry):
                return key
        return best

    def _takes(self, agent_id: str, queue_id: str, entry: ContactEntry) -> bool:
        """Whether the entry is a free contact's, in the plan too, and the agent may take that contact now."""
        key = entry.key
        if self.index.free.get(key) is not entry:
            return False
        reserved, moved = self._reserved, self._moved  # ``_stale(key)``, inline: a call per entry looked at
        if (reserved and reserved.get(key, False)) or (moved and key in moved):
            return False
        return self._may_take(entry.waiting, agent_id, queue_id)  # live: the state's contact

    def _best_unindexed_contact(
        self, agent: Agent, queue_ids: dict[str, int], best: ContactEntry | None
    ) -> ContactEntry | None:
        # contacts the plan enqueued, moved or freed are not in the index yet
        all_queues = self.state.queues
        for contact in (*self._new.values(), *self._freed.values()):
            ref = contact.ref
            if ref.queue_id not in queue_ids or not self._is_free(contact):
                continue
            queue = all_queues[ref.queue_id]
            if self._free_slots(agent, ref.channel) <= 0 or not self._may_take(contact, agent.id, ref.queue_id):
                continue
            if queue.hours is not None and not self._is_open(queue):
                continue
            priority = queue.effective_priority(ref, self.now)
            rank = -rounded(priority) if queue.aging_per_minute else -priority
            key = ContactEntry(rank, ref.enqueued_at, self._contact_order(contact), ref.id.int, contact)
            if best is None or key < best:
                best = key
        return best
