"""The router's pure decision core: plain examples, then Hypothesis over random event sequences."""

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
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
from services.router.domain.model import Agent, ContactRef, Presence, Queue, RoutingState
from services.router.exceptions import NotYours, UnknownAgent, UnknownAssignment, UnknownOffer
from tests.unit.histories import event_on_existing

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
TIMEOUT = timedelta(seconds=30)


def _queues() -> dict[str, Queue]:
    return {
        "presales": Queue("presales", "Presales", frozenset(Channel), {"presales": 1}, 10, TIMEOUT),
        "returns": Queue("returns", "Returns", frozenset(Channel), {"returns": 3}, 20, TIMEOUT),
    }


def _agent(
    agent_id: str, *, skills: dict[str, int], chat: int = 2, idle: int = 0, presence: Presence = Presence.AVAILABLE
) -> Agent:
    return Agent(
        agent_id,
        agent_id,
        ("tier1",),
        skills,
        {Channel.WEBCHAT: chat, Channel.PHONE: 1},
        presence,
        T0 - timedelta(minutes=idle),
    )


def _state(*agents: Agent) -> RoutingState:
    return RoutingState(queues=_queues(), agents={a.id: a for a in agents})


def _contact(n: int, *, queue: str = "presales", at: datetime = T0, channel: Channel = Channel.WEBCHAT) -> ContactRef:
    return ContactRef(uuid.UUID(int=n), f"webchat:demo:{n}", channel, queue, _queues()[queue].priority, at)


def _step(state: RoutingState, event: Event, now: datetime = T0) -> list[object]:
    decisions = decide(state, event, now)
    apply(state, decisions)
    return list(decisions)


def test_a_contact_goes_to_the_longest_idle_skilled_agent() -> None:
    state = _state(
        _agent("fresh", skills={"presales": 5}, idle=1),
        _agent("idle", skills={"presales": 1}, idle=30),
        _agent("unskilled", skills={"returns": 5}, idle=60),
    )
    decisions = _step(state, ContactArrived(_contact(1)))
    assert isinstance(decisions[0], Enqueued)
    offered = decisions[1]
    assert isinstance(offered, Offered)
    assert offered.agent_id == "idle"
    assert offered.expires_at == T0 + TIMEOUT
    assert state.agents["idle"].load[Channel.WEBCHAT] == 1


def test_decide_does_not_change_the_state() -> None:
    state = _state(_agent("a", skills={"presales": 3}))
    before = repr(state)
    decide(state, ContactArrived(_contact(1)), T0)
    assert repr(state) == before


def test_no_agent_means_the_contact_waits() -> None:
    state = _state(_agent("away", skills={"presales": 3}, presence=Presence.AWAY))
    decisions = _step(state, ContactArrived(_contact(1)))
    assert [type(d) for d in decisions] == [Enqueued]
    assert state.waiting[uuid.UUID(int=1)].offer_id is None


def test_an_agent_becoming_available_takes_the_highest_priority_then_oldest() -> None:
    state = _state(_agent("a", skills={"presales": 3, "returns": 3}, chat=2, presence=Presence.AWAY))
    _step(state, ContactArrived(_contact(1, at=T0)))
    _step(state, ContactArrived(_contact(2, at=T0 + timedelta(seconds=1))))
    _step(state, ContactArrived(_contact(3, queue="returns", at=T0 + timedelta(seconds=2))))
    decisions = _step(state, PresenceRequested("a", Presence.AVAILABLE), T0 + timedelta(seconds=5))
    assert isinstance(decisions[0], PresenceSet)
    offered = [d.contact.id.int for d in decisions if isinstance(d, Offered)]
    assert offered == [3, 1], "returns (priority 20) first, then the oldest presales; capacity 2 stops there"


def test_accept_turns_the_offer_into_an_assignment() -> None:
    state = _state(_agent("a", skills={"presales": 3}))
    offer = next(d for d in _step(state, ContactArrived(_contact(1))) if isinstance(d, Offered))
    decisions = _step(state, OfferAccepted(offer.offer_id, "a"))
    assert [type(d) for d in decisions] == [OfferClosed, Assigned]
    assert not state.waiting and not state.offers
    assert state.agents["a"].load[Channel.WEBCHAT] == 1


def test_decline_requeues_to_another_agent_keeping_the_enqueue_time() -> None:
    state = _state(_agent("a", skills={"presales": 3}, idle=10), _agent("b", skills={"presales": 3}, idle=5))
    first = next(d for d in _step(state, ContactArrived(_contact(1))) if isinstance(d, Offered))
    assert first.agent_id == "a"
    decisions = _step(state, OfferDeclined(first.offer_id, "a"), T0 + timedelta(seconds=3))
    closed = decisions[0]
    assert isinstance(closed, OfferClosed) and closed.outcome is OfferOutcome.DECLINED
    second = next(d for d in decisions if isinstance(d, Offered))
    assert second.agent_id == "b"
    assert second.offer_id != first.offer_id
    assert second.contact.enqueued_at == T0
    assert state.agents["a"].load.total() == 0


def test_offers_expire_on_the_clock_and_the_contact_moves_on() -> None:
    state = _state(_agent("a", skills={"presales": 3}, idle=10), _agent("b", skills={"presales": 3}, idle=5))
    _step(state, ContactArrived(_contact(1)))
    assert _step(state, ClockTicked(), T0 + TIMEOUT - timedelta(seconds=1)) == []
    decisions = _step(state, ClockTicked(), T0 + TIMEOUT)
    closed = decisions[0]
    assert isinstance(closed, OfferClosed) and closed.outcome is OfferOutcome.EXPIRED
    assert [d.agent_id for d in decisions if isinstance(d, Offered)] == ["b"]


def test_completion_frees_the_slot_for_the_next_contact() -> None:
    state = _state(_agent("a", skills={"presales": 3}, chat=1))
    offer = next(d for d in _step(state, ContactArrived(_contact(1))) if isinstance(d, Offered))
    assigned = next(d for d in _step(state, OfferAccepted(offer.offer_id, "a")) if isinstance(d, Assigned))
    assert [type(d) for d in _step(state, ContactArrived(_contact(2)))] == [Enqueued]
    decisions = _step(state, AssignmentCompleted(assigned.assignment_id, "a"))
    assert isinstance(decisions[0], Completed)
    assert [d.contact.id.int for d in decisions if isinstance(d, Offered)] == [2]


def test_an_abandoned_contact_revokes_its_offer_and_frees_the_agent() -> None:
    state = _state(_agent("a", skills={"presales": 3}, chat=1))
    offer = next(d for d in _step(state, ContactArrived(_contact(1))) if isinstance(d, Offered))
    _step(state, ContactArrived(_contact(2, at=T0 + timedelta(seconds=1))))
    decisions = _step(state, ContactAbandoned(offer.contact.id), T0 + timedelta(seconds=5))
    closed, abandoned, next_offer = decisions
    assert isinstance(closed, OfferClosed) and closed.outcome is OfferOutcome.REVOKED
    assert isinstance(abandoned, Abandoned) and abandoned.contact.id == offer.contact.id
    assert isinstance(next_offer, Offered) and next_offer.contact.id.int == 2
    assert offer.contact.id not in state.waiting


def test_abandoning_an_assigned_or_unknown_contact_changes_nothing() -> None:
    state = _state(_agent("a", skills={"presales": 3}))
    offer = next(d for d in _step(state, ContactArrived(_contact(1))) if isinstance(d, Offered))
    _step(state, OfferAccepted(offer.offer_id, "a"))
    assert decide(state, ContactAbandoned(offer.contact.id), T0) == []
    assert decide(state, ContactAbandoned(uuid.uuid4()), T0) == []


def test_wrong_requests_raise_domain_errors() -> None:
    state = _state(_agent("a", skills={"presales": 3}), _agent("b", skills={"presales": 3}))
    offer = next(d for d in _step(state, ContactArrived(_contact(1))) if isinstance(d, Offered))
    other = "b" if offer.agent_id == "a" else "a"
    with pytest.raises(NotYours):
        decide(state, OfferAccepted(offer.offer_id, other), T0)
    with pytest.raises(UnknownOffer):
        decide(state, OfferAccepted(uuid.uuid4(), "a"), T0)
    with pytest.raises(UnknownAgent):
        decide(state, PresenceRequested("nobody", Presence.AVAILABLE), T0)
    with pytest.raises(UnknownAssignment):
        decide(state, AssignmentCompleted(uuid.uuid4(), "a"), T0)


# ---- properties over random histories ----

AGENTS = ["a1", "a2", "a3"]


@st.composite
def histories(draw: st.DrawFn) -> tuple[RoutingState, list[tuple[str, int]]]:
    agents = [
        _agent(
            name,
            skills=draw(st.dictionaries(st.sampled_from(["presales", "returns"]), st.integers(1, 5), max_size=2)),
            chat=draw(st.integers(0, 3)),
            idle=draw(st.integers(0, 60)),
            presence=draw(st.sampled_from(list(Presence))),
        )
        for name in AGENTS
    ]
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["arrive", "presence", "accept", "decline", "tick", "complete", "abandon"]),
                st.integers(0, 1000),
            ),
            max_size=60,
        )
    )
    return _state(*agents), steps


def _event(state: RoutingState, kind: str, n: int, step: int, now: datetime) -> Event | None:
    match kind:
        case "arrive":
            queue = "presales" if n % 2 else "returns"
            channel = Channel.WEBCHAT if n % 5 else Channel.PHONE
            return ContactArrived(_contact(10_000 + step, queue=queue, at=now, channel=channel))
        case "presence":
            return PresenceRequested(AGENTS[n % 3], list(Presence)[n % 3])
        case _:
            return event_on_existing(state, kind, n)


def _check_invariants(state: RoutingState, decisions: list[object]) -> None:
    reserved = Counter(o.contact.id for o in state.offers.values())
    assert all(n == 1 for n in reserved.values()), "a contact is offered to two agents at once"
    for contact in state.waiting.values():
        assert (contact.offer_id is not None) == (contact.ref.id in reserved)
    for agent in state.agents.values():
        load: Counter[Channel] = Counter()
        for offer in state.offers.values():
            if offer.agent_id == agent.id:
                load[offer.contact.channel] += 1
        for assignment in state.assignments.values():
            if assignment.agent_id == agent.id:
                load[assignment.contact.channel] += 1
        assert +agent.load == +load, "the load counter drifted from the offers and assignments"
    for decision in decisions:
        if isinstance(decision, Offered):
            agent = state.agents[decision.agent_id]
            queue = state.queues[decision.contact.queue_id]
            assert agent.proficiency(queue.skills) is not None, "offered to an agent lacking a required skill"
            assert agent.presence is Presence.AVAILABLE
            assert agent.load[decision.contact.channel] <= agent.capacity.get(decision.contact.channel, 0)


@settings(max_examples=300, deadline=None)
@given(histories())
def test_invariants_hold_over_any_history(history: tuple[RoutingState, list[tuple[str, int]]]) -> None:
    state, steps = history
    now = T0
    for step, (kind, n) in enumerate(steps):
        now += timedelta(seconds=n % 20)
        event = _event(state, kind, n, step, now)
        if event is None:
            continue
        decisions = decide(state, event, now)
        apply(state, decisions)
        _check_invariants(state, list(decisions))


@settings(max_examples=200, deadline=None)
@given(histories())
def test_no_available_agent_idles_while_a_contact_it_can_serve_waits(
    history: tuple[RoutingState, list[tuple[str, int]]],
) -> None:
    state, steps = history
    now = T0
    for step, (kind, n) in enumerate(steps):
        now += timedelta(seconds=n % 20)
        event = _event(state, kind, n, step, now)
        if event is not None:
            apply(state, decide(state, event, now))
    for contact in state.waiting.values():
        if contact.offer_id is not None:
            continue
        for agent in state.agents.values():
            serveable = (
                agent.presence is Presence.AVAILABLE
                and agent.id not in contact.declined_by
                and agent.proficiency(state.queues[contact.ref.queue_id].skills) is not None
            )
            if serveable:
                assert agent.load[contact.ref.channel] >= agent.capacity.get(contact.ref.channel, 0), (
                    f"{agent.id} has a free {contact.ref.channel} slot while {contact.ref.id} waits"
                )
