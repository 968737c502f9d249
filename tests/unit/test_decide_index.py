"""The indexed decision core against a reference that scans everything, and the indexes themselves.

``reference_decide`` is ``decide`` as first written (linear scans, no index). The indexed ``decide``
must make exactly the same decisions, ties included, over any history.
"""

import random
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import Channel
from services.router.domain.decide import apply, decide
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
    TimersFired,
    assignment_id_for,
    offer_id_for,
)
from services.router.domain.heap import LazyHeap
from services.router.domain.model import (
    Agent,
    ContactRef,
    Offer,
    Presence,
    Queue,
    RoutingState,
    WaitingContact,
)
from tests.unit.histories import event_on_existing

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
SKILLS = ["presales", "returns", "repair"]
CHANNELS = [Channel.WEBCHAT, Channel.PHONE, Channel.EMAIL]
AGENTS = [f"a{n}" for n in range(6)]


def _queues() -> dict[str, Queue]:
    timeout = timedelta(seconds=30)
    return {
        "presales": Queue("presales", "Presales", frozenset(Channel), {"presales": 1}, 10, timeout),
        "returns": Queue("returns", "Returns", frozenset(Channel), {"returns": 3}, 20, timeout),
        "repair": Queue("repair", "Repair", frozenset(Channel), {"repair": 2, "returns": 1}, 10, timedelta(seconds=10)),
        "anyone": Queue("anyone", "Anyone", frozenset(Channel), {}, 0, timeout),
    }


# ---- the reference: decide before the indexes ----


def reference_decide(state: RoutingState, event: Event, now: datetime) -> list[Decision]:
    """``decide`` as first written: a scan of every agent or waiting contact per decision."""
    plan = _ScanPlan(state, now)
    match event:
        case ContactArrived(contact=contact):
            plan.enqueue(contact)
            plan.route_contact(contact.id)
        case PresenceRequested(agent_id=agent_id, presence=presence):
            plan.set_presence(state.agents[agent_id], presence)
            if presence is Presence.AVAILABLE:
                plan.fill_agent(agent_id)
        case OfferAccepted(offer_id=offer_id, agent_id=agent_id):
            offer = state.offers[offer_id]
            plan.close_offer(offer, OfferOutcome.ACCEPTED)
            plan.assign(offer)
        case OfferDeclined(offer_id=offer_id, agent_id=agent_id):
            offer = state.offers[offer_id]
            plan.close_offer(offer, OfferOutcome.DECLINED)
            plan.route_contact(offer.contact.id)
            plan.fill_agent(agent_id)
        case ClockTicked():
            expired = sorted((o for o in state.offers.values() if o.expires_at <= now), key=lambda o: o.expires_at)
            for offer in expired:
                plan.close_offer(offer, OfferOutcome.EXPIRED)
            for offer in expired:
                plan.route_contact(offer.contact.id)
                plan.fill_agent(offer.agent_id)
            # contacts whose wait after an agent turned them down is over, in their queues' order
            order = {contact_id: n for n, contact_id in enumerate(state.waiting)}
            for due in sorted(
                (w for w in state.waiting.values() if plan.wait_over(w)),
                key=lambda w: (-w.ref.priority, w.ref.enqueued_at, order[w.ref.id]),
            ):
                plan.route_contact(due.ref.id)
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
            assignment = state.assignments[assignment_id]
            plan.complete(assignment.id, assignment.contact, agent_id)
            plan.fill_agent(agent_id)
    return plan.decisions


class _ScanPlan:
    """Decisions so far, and the overlay of what they change, read as if already applied."""

    def __init__(self, state: RoutingState, now: datetime) -> None:
        self.state = state
        self.now = now
        self.decisions: list[Decision] = []
        self._new: dict[UUID, WaitingContact] = {}
        self._reserved: dict[UUID, bool] = {}
        self._declined: dict[UUID, set[str]] = {}
        self._offers_made: Counter[UUID] = Counter()
        self._load: Counter[tuple[str, Channel]] = Counter()
        self._presence: dict[str, Presence] = {}

    # -- reading through the overlay --

    def _waiting(self) -> Iterable[WaitingContact]:
        yield from self.state.waiting.values()
        yield from self._new.values()

    def _is_free(self, contact: WaitingContact) -> bool:
        return not self._reserved.get(contact.ref.id, contact.offer_id is not None)

    def _has_declined(self, contact: WaitingContact, agent_id: str) -> bool:
        """Turned down too recently to be offered it again."""
        if agent_id in self._declined.get(contact.ref.id, ()):
            return True
        return contact.turned_down(agent_id, self.now, self.state.queues[contact.ref.queue_id].reoffer_after)

    def _ever_declined(self, contact: WaitingContact, agent_id: str) -> bool:
        return agent_id in contact.declined_by or agent_id in self._declined.get(contact.ref.id, ())

    def wait_over(self, contact: WaitingContact) -> bool:
        """Whether some agent's wait to be offered the contact again is over by now."""
        after = self.state.queues[contact.ref.queue_id].reoffer_after
        return any(at + after <= self.now for at in contact.declined_by.values())

    def _free_slots(self, agent: Agent, channel: Channel) -> int:
        if self._presence.get(agent.id, agent.presence) is not Presence.AVAILABLE:
            return 0
        used = agent.load[channel] + self._load[agent.id, channel]
        return agent.capacity.get(channel, 0) - used

    def _contact(self, contact_id: UUID) -> WaitingContact:
        return self._new.get(contact_id) or self.state.waiting[contact_id]

    # -- planning --

    def enqueue(self, contact: ContactRef) -> None:
        self._new[contact.id] = WaitingContact(contact)
        self.decisions.append(Enqueued(contact))

    def set_presence(self, agent: Agent, presence: Presence) -> None:
        self._presence[agent.id] = presence
        self.decisions.append(PresenceSet(agent.id, presence, self.now))

    def close_offer(self, offer: Offer, outcome: OfferOutcome) -> None:
        self.decisions.append(OfferClosed(offer.id, offer.contact, offer.agent_id, outcome, self.now))
        if outcome is not OfferOutcome.ACCEPTED:
            self._reserved[offer.contact.id] = False
            self._declined.setdefault(offer.contact.id, set()).add(offer.agent_id)
            self._load[offer.agent_id, offer.contact.channel] -= 1

    def assign(self, offer: Offer) -> None:
        assignment_id = assignment_id_for(offer.id)
        self.decisions.append(Assigned(assignment_id, offer.id, offer.contact, offer.agent_id, self.now))

    def abandon(self, contact: ContactRef) -> None:
        self.decisions.append(Abandoned(contact, self.now))
        self._reserved[contact.id] = True  # gone: nobody may be offered it any more

    def complete(self, assignment_id: UUID, contact: ContactRef, agent_id: str) -> None:
        self.decisions.append(Completed(assignment_id, contact, agent_id, self.now))
        self._load[agent_id, contact.channel] -= 1

    def offer(self, contact: WaitingContact, agent: Agent) -> None:
        ref = contact.ref
        attempt = contact.offers_made + self._offers_made[ref.id]
        queue = self.state.queues[ref.queue_id]
        offer_id = offer_id_for(ref.id, attempt)
        self.decisions.append(Offered(offer_id, ref, agent.id, self.now, self.now + queue.offer_timeout))
        self._offers_made[ref.id] += 1
        self._reserved[ref.id] = True
        self._load[agent.id, ref.channel] += 1

    def route_contact(self, contact_id: UUID) -> None:
        """Offer the contact to the best eligible agent, if there is one."""
        contact = self._contact(contact_id)
        if not self._is_free(contact):
            return  # taken meanwhile: an expiry in the same tick let a freed agent pick it up first
        required = self.state.queues[contact.ref.queue_id].skills
        best: tuple[tuple[bool, datetime, int], Agent] | None = None
        for agent in self.state.agents.values():
            if self._free_slots(agent, contact.ref.channel) <= 0 or self._has_declined(contact, agent.id):
                continue
            proficiency = agent.proficiency(required)
            if proficiency is None:
                continue
            key = (self._ever_declined(contact, agent.id), agent.idle_since, -proficiency)  # who turned it down: last
            if best is None or key < best[0]:
                best = (key, agent)
        if best is not None:
            self.offer(contact, best[1])

    def fill_agent(self, agent_id: str) -> None:
        """Offer the agent the best contacts it may serve, while it has free slots."""
        agent = self.state.agents[agent_id]
        while True:
            best: tuple[tuple[int, datetime], WaitingContact] | None = None
            for contact in self._waiting():
                ref = contact.ref
                if not self._is_free(contact) or self._has_declined(contact, agent_id):
                    continue
                if self._free_slots(agent, ref.channel) <= 0:
                    continue
                if agent.proficiency(self.state.queues[ref.queue_id].skills) is None:
                    continue
                key = (-ref.priority, ref.enqueued_at)
                if best is None or key < best[0]:
                    best = (key, contact)
            if best is None:
                return
            self.offer(best[1], agent)


# ---- histories, drawn by Hypothesis or by a seeded generator ----


def _agent(agent_id: str, skills: dict[str, int], capacity: dict[Channel, int], idle: int, presence: Presence) -> Agent:
    return Agent(agent_id, agent_id, ("tier1",), skills, capacity, presence, T0 - timedelta(minutes=idle))


@st.composite
def histories(draw: st.DrawFn) -> tuple[RoutingState, list[tuple[str, int, int]]]:
    agents = [
        _agent(
            name,
            draw(st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 5), max_size=3)),
            draw(st.dictionaries(st.sampled_from(CHANNELS), st.integers(0, 3), max_size=3)),
            draw(st.integers(0, 3)),  # few distinct idle times: ties on idle_since are common
            draw(st.sampled_from(list(Presence))),
        )
        for name in AGENTS[: draw(st.integers(1, len(AGENTS)))]
    ]
    kinds = ["arrive", "arrive", "presence", "accept", "decline", "tick", "complete", "abandon", "rebuild"]
    steps = draw(st.lists(st.tuples(st.sampled_from(kinds), st.integers(0, 1000), st.integers(0, 30)), max_size=80))
    return RoutingState(queues=_queues(), agents={a.id: a for a in agents}), steps


def _event(state: RoutingState, kind: str, n: int, step: int, now: datetime) -> Event | None:
    agents = list(state.agents)
    match kind:
        case "arrive":
            queue = list(_queues())[n % 4]
            ref = ContactRef(uuid.UUID(int=step + 1), f"k{step}", CHANNELS[n % 3], queue, (n // 3) % 3 * 10, now)
            return ContactArrived(ref)
        case "presence":
            return PresenceRequested(agents[n % len(agents)], list(Presence)[n % 3])
        case _:
            return event_on_existing(state, kind, n)


def _rebuilt(state: RoutingState) -> RoutingState:
    """A copy built the way ``load_state`` builds one: plain dicts, no index yet."""
    return RoutingState(
        queues=state.queues,
        agents=dict(state.agents),
        waiting=dict(state.waiting),
        offers=dict(state.offers),
        assignments=dict(state.assignments),
    )


def _index_snapshot(state: RoutingState) -> list[object]:
    index = state.index()
    pairs = [(q, c) for q in state.queues for c in Channel]
    return [
        [list(index.agents_for(q, c)) for q, c in pairs],
        [list(index.contacts_for(q, c)) for q, c in pairs],
        list(index.expiring(T0 + timedelta(days=365))),
    ]


def _run(state: RoutingState, steps: Iterable[tuple[str, int, int]]) -> RoutingState:
    now = T0
    for step, (kind, n, seconds) in enumerate(steps):
        now += timedelta(seconds=seconds % 3 * 10)  # often 0: equal timestamps make ties
        if kind == "rebuild":
            state = _rebuilt(state)
            continue
        event = _event(state, kind, n, step, now)
        if event is None:
            continue
        before = _index_snapshot(state)
        decisions = decide(state, event, now)
        assert _index_snapshot(state) == before, "decide changed the indexes"
        routing = [d for d in decisions if not isinstance(d, TimersFired)]  # the index's own bookkeeping
        assert routing == reference_decide(state, event, now), f"step {step}: {event}"
        offered = Counter(d.contact.id for d in decisions if isinstance(d, Offered))
        assert all(n == 1 for n in offered.values()), "a contact offered twice by one event"
        apply(state, decisions)
    return state


def _assert_index_matches(state: RoutingState) -> None:
    """What the indexes hold is what a fresh build from the state holds."""
    fresh = _rebuilt(state)
    for queue_id in state.queues:
        for channel in Channel:
            live = [e for e in state.index().contacts_for(queue_id, channel) if state.index().free.get(e[3]) is e]
            assert [e[3] for e in sorted(live)] == [e[3] for e in fresh.index().contacts_for(queue_id, channel)]
            current = state.index().agent_version
            mine = {e[4] for e in state.index().agents_for(queue_id, channel) if current[e[4]] == e[3]}
            usable = {
                a.id
                for a in state.agents.values()
                if a.presence is Presence.AVAILABLE and a.load[channel] < a.capacity.get(channel, 0)
            }
            assert mine & usable == {e[4] for e in fresh.index().agents_for(queue_id, channel)}


@settings(max_examples=300, deadline=None)
@given(histories())
def test_indexed_decide_makes_the_reference_decisions(history: tuple[RoutingState, list[tuple[str, int, int]]]) -> None:
    state, steps = history
    state = _run(state, steps)
    _assert_index_matches(state)


def test_a_large_seeded_history_matches_the_reference() -> None:
    rng = random.Random(4)  # noqa: S311 - a reproducible history, not a secret
    agents = [
        _agent(
            f"agent{n}",
            {s: rng.randint(1, 5) for s in rng.sample(SKILLS, rng.randint(1, 3))},
            {c: rng.randint(0, 3) for c in rng.sample(CHANNELS, rng.randint(1, 3))},
            rng.randint(0, 20),
            rng.choice([Presence.AVAILABLE, Presence.AVAILABLE, Presence.AWAY]),
        )
        for n in range(40)
    ]
    kinds = ["arrive"] * 4 + ["presence", "accept", "accept", "decline", "tick", "complete", "complete", "abandon"]
    steps = [(rng.choice(kinds), rng.randint(0, 1000), rng.randint(0, 30)) for _ in range(1500)]
    state = _run(RoutingState(queues=_queues(), agents={a.id: a for a in agents}), steps)
    assert state.assignments, "the history should have assigned work"
    _assert_index_matches(state)


# ---- the indexes on their own ----


def test_lazy_heap_walks_in_order_without_popping() -> None:
    rng = random.Random(1)  # noqa: S311 - reproducible values, not a secret
    heap: LazyHeap[tuple[int, int]] = LazyHeap(lambda e: True)
    values = [(rng.randint(0, 50), i) for i in range(500)]
    for value in values:
        heap.push(value)
    walked = list(heap)
    assert walked == sorted(values)
    assert len(heap.items) == 500 and heap.items[0] == min(values)


def test_lazy_heap_drops_dead_entries_at_the_top_and_compacts_the_rest() -> None:
    dead: set[int] = set()
    heap: LazyHeap[tuple[int]] = LazyHeap(lambda e: e[0] not in dead)
    for n in range(1000):
        heap.push((n,))
        if n >= 10:
            dead.add(n)  # dies below a live top: only compaction can drop it
    dead.add(0)
    heap.settle()
    assert heap.items[0] == (1,)
    assert len(heap.items) <= 2 * 10 + 64 + 1, "dead entries piled up"
    assert [e for e in heap if e[0] not in dead] == [(n,) for n in range(1, 10)]


def test_the_index_is_rebuilt_when_the_state_changes_behind_apply() -> None:
    agent = _agent("a", {"presales": 2}, {Channel.WEBCHAT: 1}, 5, Presence.AVAILABLE)
    state = RoutingState(queues=_queues(), agents={})
    assert list(state.index().agents_for("presales", Channel.WEBCHAT)) == []
    state.agents["a"] = agent  # as load_state does
    ref = ContactRef(uuid.UUID(int=1), "k", Channel.WEBCHAT, "presales", 10, T0)
    decisions = decide(state, ContactArrived(ref), T0)
    assert [d.agent_id for d in decisions if isinstance(d, Offered)] == ["a"]


def test_ties_go_to_the_first_agent_then_the_first_contact_in_the_state() -> None:
    same = {"presales": 2}
    agents = {n: _agent(n, same, {Channel.WEBCHAT: 1}, 5, Presence.AVAILABLE) for n in ["b", "a", "c"]}
    state = RoutingState(queues=_queues(), agents=agents)
    first = ContactRef(uuid.UUID(int=9), "k9", Channel.WEBCHAT, "presales", 10, T0)
    offered = [d for d in decide(state, ContactArrived(first), T0) if isinstance(d, Offered)]
    assert [d.agent_id for d in offered] == ["b"]
    busy = RoutingState(queues=_queues(), agents={"b": _agent("b", same, {Channel.WEBCHAT: 1}, 5, Presence.AWAY)})
    for n in [7, 3, 5]:
        apply(
            busy,
            decide(
                busy, ContactArrived(ContactRef(uuid.UUID(int=n), f"k{n}", Channel.WEBCHAT, "presales", 10, T0)), T0
            ),
        )
    decisions = decide(busy, PresenceRequested("b", Presence.AVAILABLE), T0)
    assert [d.contact.id.int for d in decisions if isinstance(d, Offered)] == [7]


def test_two_offers_expiring_together_never_offer_one_contact_twice() -> None:
    chat = {Channel.WEBCHAT: 1}
    agents = {
        "a": _agent("a", {"presales": 2}, chat, 30, Presence.AVAILABLE),
        "b": _agent("b", {"presales": 2}, chat, 20, Presence.AVAILABLE),
        "c": _agent("c", {"presales": 2}, chat, 0, Presence.AWAY),
    }
    state = RoutingState(queues=_queues(), agents=agents)
    for n in (1, 2):
        apply(
            state,
            decide(state, ContactArrived(ContactRef(UUID(int=n), f"k{n}", Channel.WEBCHAT, "presales", 10, T0)), T0),
        )
    apply(state, decide(state, PresenceRequested("c", Presence.AVAILABLE), T0))
    assert {o.agent_id for o in state.offers.values()} == {"a", "b"}
    decisions = decide(state, ClockTicked(), T0 + timedelta(seconds=30))
    # both expire; b takes contact 1, the freed a takes contact 2 — which must then not go to c as well
    offered = [(d.contact.id.int, d.agent_id) for d in decisions if isinstance(d, Offered)]
    assert offered == [(1, "b"), (2, "a")]
    apply(state, decisions)
    assert sorted(o.contact.id.int for o in state.offers.values()) == [1, 2]
