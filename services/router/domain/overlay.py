"""The plan's view of the routing state: the state as the decisions made so far in this event leave it.

``decide`` never changes the state, yet one event may chain decisions (a decline frees the agent and re-offers the
contact), each of which must see the ones before it. So each decision is also noted here (a contact reserved, a slot
taken, an agent away…), and the readers below look through these notes to the state. The state's indexes do not see
the notes: readers skip the index entries the notes have used up, and look at the few contacts and agents the notes
have freed by hand.

The plan is one class in layers, each its own module: this one (the notes and reading through them), ``candidates``
(the best agent for a contact, the best contact for an agent), ``plan`` (each decision and its notes) and ``routing``
(which decisions each event makes). One object, so that the hot paths read the notes as plain attributes.
"""

from datetime import datetime, timedelta
from uuid import UUID

from contracts import Channel
from services.router.domain.decisions import Decision
from services.router.domain.entities import AVAILABLE, Agent, Presence, Queue, WaitingContact
from services.router.domain.model import RoutingState

_NO_TIME = timedelta(0)


class Overlay:
    """Decisions so far, and the notes of what they change, read as if already applied."""

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
        # the notes below keyed by contact are keyed by its ``UUID.int``, as the index's are (hashed in C)
        self._moved: set[int] = set()  # their entries in the state's index are stale
        self._reserved: dict[int, bool] = {}  # contact -> offered or gone (True), or free again (False)
        self._declined: dict[UUID, set[str]] = {}  # contact -> agents who turned it down in this plan
        self._offers_made: dict[int, int] = {}  # contact -> offers of it this plan made (for their ids)
        self._load: dict[tuple[str, Channel], int] = {}  # (agent, channel) -> slots taken (or freed, negative)
        self._presence: dict[str, Presence] = {}
        self._missed: dict[str, int] = {}  # agent -> offers let expire in a row, as the plan counts them
        self._queued: dict[str, int] = {}  # queue -> contacts the plan added (or removed, negative)
        self._open: dict[str, bool] = {}  # queue -> open at ``now``: business hours asked once per plan
        # agents whose load or presence the plan changed: they may be missing from the index (busy or away
        # in the state) though they have a free slot in the plan, so readers look at them by hand (``plan`` notes
        # them inline: ``self._touched[agent.id] = agent``)
        self._touched: dict[str, Agent] = {}

    # -- reading through the overlay --

    def _is_free(self, contact: WaitingContact) -> bool:
        """Whether no offer reserves the contact (and it is not gone), in the plan."""
        if not self._reserved:  # most events reserve nothing before they look: spare hashing the id
            return contact.offer_id is None
        return not self._reserved.get(contact.ref.id.int, contact.offer_id is not None)

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
        """Slots the agent has taken on ``channel``, in the plan."""
        return agent.load[channel] + self._load.get((agent.id, channel), 0)

    def _presence_of(self, agent: Agent) -> Presence:
        """The agent's presence, in the plan."""
        return self._presence.get(agent.id, agent.presence)

    def _free_slots(self, agent: Agent, channel: Channel) -> int:
        """How many more contacts on ``channel`` the agent may be offered now (none unless available)."""
        if self._presence.get(agent.id, agent.presence) is not AVAILABLE:
            return 0
        free = agent.capacity.get(channel, 0) - agent.load[channel] - self._load.get((agent.id, channel), 0)
        if free > 0 and agent.phone_exclusive:
            used = {ch: self._used(agent, ch) for ch in (*agent.capacity, *agent.load)}
            if agent.blocked(channel, used):
                return 0
        return free

    def _is_open(self, queue: Queue) -> bool:
        """Whether the queue is within its business hours at ``now`` (a queue without hours always is)."""
        if queue.hours is None:
            return True
        known = self._open.get(queue.id)
        if known is None:
            known = self._open[queue.id] = queue.hours.is_open(self.now)
        return known

    def _waiting_in(self, queue_id: str) -> int:
        """How many contacts wait in the queue, free or reserved, in the plan (for overflow by length)."""
        return self.index.waiting_in.get(queue_id, 0) + self._queued.get(queue_id, 0)

    def _contact(self, contact_id: UUID) -> WaitingContact:
        """A waiting contact as the plan has it: enqueued or moved by the plan, else as in the state."""
        new = self._new  # mostly empty: spare hashing the id
        return (new and new.get(contact_id)) or self.state.waiting[contact_id]

    def _contact_order(self, contact: WaitingContact) -> int:
        """The contact's arrival order, the last tie-break among contacts, as the index has it or will."""
        key = contact.ref.id.int
        order = None if key in self._moved else self.index.contact_order.get(key)
        if order is None:  # enqueued by this plan: after every contact in the state, as ``apply`` will put it
            order = self.index.next_contact_order + list(self._new).index(contact.ref.id)
        return order

    def _queue_order(self, contact_id: UUID) -> tuple[int, datetime, int]:
        """The contact's place in its queue without aging: higher priority, then older, first."""
        ref = self._contact(contact_id).ref
        index = self.index
        return -ref.priority, ref.enqueued_at, index.contact_order.get(contact_id.int, index.next_contact_order)

    def _stale(self, key: int) -> bool:
        """Whether the index's entry for a free contact (``key``: its ``UUID.int``) is used up in the plan (reserved,
        gone or moved)."""
        reserved, moved = self._reserved, self._moved
        return bool(reserved and reserved.get(key, False)) or bool(moved and key in moved)
