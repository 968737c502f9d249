"""No contact is stranded: a decline or an expired offer makes the agent the contact's last choice, not no choice.

Examples first (each was a stranded customer before), then liveness as a property over generated histories: whenever
a contact waits and an agent who may serve it has a free slot, an offer is made within a bounded time.
"""

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from hypothesis import given, note, settings

from contracts import Channel
from services.router.domain.decide import apply, decide
from services.router.domain.decisions import (
    Assigned,
    ClockTicked,
    ContactArrived,
    ContactMoved,
    Event,
    OfferAccepted,
    OfferDeclined,
    Offered,
    PresenceRequested,
)
from services.router.domain.model import Presence, Queue, RoutingState, WaitingContact
from tests.unit.test_decide import T0, TIMEOUT, _agent, _check_invariants, _contact, _event, _state, _step, histories
from tests.unit.test_decide_features import _check, _featured_event, featured_histories

REOFFER = timedelta(seconds=15)  # the queues' default reoffer_after


def _offers(decisions: list[object]) -> list[tuple[int, str]]:
    return [(d.contact.id.int, d.agent_id) for d in decisions if isinstance(d, Offered)]


def test_an_expired_offer_comes_back_to_the_only_agent_after_the_reoffer_wait() -> None:
    state = _state(_agent("alice", skills={"presales": 3}))
    assert _offers(_step(state, ContactArrived(_contact(1)))) == [(1, "alice")]
    assert _offers(_step(state, ClockTicked(), T0 + TIMEOUT)) == []  # just let it expire: not straight back
    assert _offers(_step(state, ClockTicked(), T0 + TIMEOUT + REOFFER - timedelta(seconds=1))) == []
    assert _offers(_step(state, ClockTicked(), T0 + TIMEOUT + REOFFER)) == [(1, "alice")]


def test_a_declined_contact_comes_back_to_the_only_agent_after_the_reoffer_wait() -> None:
    state = _state(_agent("alice", skills={"presales": 3}))
    offer = next(d for d in _step(state, ContactArrived(_contact(1))) if isinstance(d, Offered))
    assert _offers(_step(state, OfferDeclined(offer.offer_id, "alice"), T0 + timedelta(seconds=2))) == []
    assert _offers(_step(state, ClockTicked(), T0 + timedelta(seconds=2) + REOFFER)) == [(1, "alice")]


def test_the_wait_is_the_queues_own() -> None:
    state = _state(_agent("alice", skills={"presales": 3}))
    state.queues["presales"] = replace(state.queues["presales"], reoffer_after=REOFFER * 2)
    state.reindex()
    _step(state, ContactArrived(_contact(1)))
    _step(state, ClockTicked(), T0 + TIMEOUT)
    assert _offers(_step(state, ClockTicked(), T0 + TIMEOUT + REOFFER)) == []
    assert _offers(_step(state, ClockTicked(), T0 + TIMEOUT + REOFFER * 2)) == [(1, "alice")]


def test_another_agent_who_frees_up_within_the_wait_takes_it_first() -> None:
    state = _state(_agent("alice", skills={"presales": 3}, idle=10), _agent("bob", skills={"presales": 3}))
    _step(state, PresenceRequested("bob", Presence.AWAY))
    offer = next(d for d in _step(state, ContactArrived(_contact(1))) if isinstance(d, Offered))
    _step(state, OfferDeclined(offer.offer_id, "alice"))
    assert _offers(_step(state, PresenceRequested("bob", Presence.AVAILABLE), T0 + timedelta(seconds=5))) == [
        (1, "bob")
    ]


def test_after_the_wait_an_agent_who_turned_it_down_comes_after_those_who_did_not() -> None:
    # alice (idle longest) declines contact 1, bob lets it expire; carol, busy with contact 2 until its offer also
    # expires at that tick, never turned contact 1 down: she gets it, though alice's wait is over and she ranks first
    state = _state(
        _agent("alice", skills={"presales": 3}, idle=30, chat=1),
        _agent("bob", skills={"presales": 3}, idle=20, chat=1),
        _agent("carol", skills={"presales": 3, "returns": 3}, idle=10, chat=1),
    )
    first = next(d for d in _step(state, ContactArrived(_contact(1))) if isinstance(d, Offered))
    assert _offers(_step(state, OfferDeclined(first.offer_id, "alice"))) == [(1, "bob")]
    assert _offers(_step(state, ContactArrived(_contact(2, queue="returns")))) == [(2, "carol")]
    decisions = _step(state, ClockTicked(), T0 + TIMEOUT)
    assert _offers(decisions)[0] == (1, "carol")


def test_an_agent_is_not_offered_the_same_contact_twice_in_a_row_while_another_could_take_it() -> None:
    state = _state(_agent("alice", skills={"presales": 3}, idle=10, chat=1), _agent("bob", skills={"presales": 3}))
    first = next(d for d in _step(state, ContactArrived(_contact(1))) if isinstance(d, Offered))
    assert first.agent_id == "alice"
    second = _offers(_step(state, OfferDeclined(first.offer_id, "alice")))
    assert second == [(1, "bob")]
    # bob lets it expire long after alice's wait is over: alice may have it again, bob (just missed) not
    assert _offers(_step(state, ClockTicked(), T0 + TIMEOUT)) == [(1, "alice")]


def test_a_transfer_offers_the_contact_back_to_the_transferring_agent_only_when_nobody_else_can_take_it() -> None:
    state = _state(_agent("alice", skills={"presales": 3, "returns": 3}))
    offer = next(d for d in _step(state, ContactArrived(_contact(1))) if isinstance(d, Offered))
    assigned = next(d for d in _step(state, OfferAccepted(offer.offer_id, "alice")) if isinstance(d, Assigned))
    assert _offers(_step(state, ContactMoved(assigned.contact.id, "returns", "transfer", agent_id="alice"))) == []
    assert _offers(_step(state, ClockTicked(), T0 + REOFFER)) == [(1, "alice")]


# ---- liveness as a property ----

# the longest a contact that some available agent can serve may wait unoffered: the wait after that agent turned it down
BOUND = REOFFER


def _servable_by(state: RoutingState, contact: WaitingContact, now: datetime) -> list[str]:
    """Agents who may serve the contact now, earlier declines aside: available, a free slot on its channel, the skills
    of its queue's bullseye step, in its group, the queue open, and the one it waits for while it prefers one."""
    ref = contact.ref
    queue, channel = state.queues[ref.queue_id], ref.channel
    if queue.hours is not None and not queue.hours.is_open(now):
        return []
    required = queue.requirements()[queue.step_after(now - ref.entered)]
    preferred = ref.preferred_agent
    if preferred is not None and ref.prefer_until is not None and now < ref.prefer_until:
        if preferred in contact.declined_by:  # a decline ends the preference
            return [a for a in state.agents if _may_serve(state, a, queue, channel, required)]
        return [preferred] if _may_serve(state, preferred, queue, channel, required) else []
    return [a for a in state.agents if _may_serve(state, a, queue, channel, required)]


def _may_serve(state: RoutingState, agent_id: str, queue: Queue, channel: Channel, required: dict[str, int]) -> bool:
    agent = state.agents.get(agent_id)
    return (
        agent is not None
        and agent.presence is Presence.AVAILABLE
        and agent.load[channel] < agent.capacity.get(channel, 0)
        and not agent.blocked(channel, agent.load)
        and agent.proficiency(required) is not None
        and (queue.group is None or queue.group in agent.groups)
    )


class _Liveness:
    """Runs a history the way the router does (its clock ticks whenever something comes due, and before each event),
    checking the safety invariants at every step and how long each servable contact has waited unoffered."""

    def __init__(self, state: RoutingState, check: Callable[[RoutingState, list[Any], datetime], None]) -> None:
        self.state = state
        self.check = check
        self.now = T0
        self.unserved_since: dict[UUID, datetime] = {}  # waiting unoffered while someone could serve it, since

    def run_until(self, until: datetime) -> None:
        while (due := self.state.index().due()) is not None and due <= until:
            self.step(ClockTicked(), max(due, self.now))
        self.now = until

    def step(self, event: Event, now: datetime) -> None:
        self.now = now
        decisions = decide(self.state, event, now)
        note(f"{now:%H:%M:%S} {event} -> {[type(d).__name__ for d in decisions]}")
        apply(self.state, decisions)
        self.check(self.state, list(decisions), now)
        for contact_id in {d.contact.id for d in decisions if isinstance(d, Offered)}:
            self.unserved_since.pop(contact_id, None)
        for contact_id in list(self.unserved_since):
            if contact_id not in self.state.waiting:
                del self.unserved_since[contact_id]
        for contact in self.state.waiting.values():
            if contact.offer_id is None and _servable_by(self.state, contact, now):
                self.unserved_since.setdefault(contact.ref.id, now)
            else:
                self.unserved_since.pop(contact.ref.id, None)
            if contact.offer_id is None:
                never_declined = [a for a in _servable_by(self.state, contact, now) if a not in contact.declined_by]
                assert not never_declined, f"{never_declined} idle beside {contact.ref.id}, which they never declined"
        late = {c: since for c, since in self.unserved_since.items() if now - since > BOUND}
        assert not late, f"waiting unoffered for longer than {BOUND} while an agent could serve them: {late}"


@settings(max_examples=300, deadline=None)
@given(histories())
def test_a_contact_an_available_agent_can_serve_is_offered_within_a_bounded_time(
    history: tuple[RoutingState, list[tuple[str, int]]],
) -> None:
    state, steps = history
    note(f"agents: {[(a.id, a.skills, dict(a.capacity), a.presence.value) for a in state.agents.values()]}")
    _run(_Liveness(state, lambda routing, decisions, _: _check_invariants(routing, decisions)), steps, _event, 20)


@settings(max_examples=300, deadline=None)
@given(featured_histories())
def test_liveness_holds_with_every_option(history: tuple[RoutingState, list[tuple[str, int]]]) -> None:
    # bullseye, overflow, groups, policies, auto-accept, wrap-up, missed offers, exclusivity, preferences, moves
    routing, steps = history
    _run(_Liveness(routing, _check), steps, _featured_event, 25)


def _run(
    run: _Liveness,
    steps: list[tuple[str, int]],
    event_for: Callable[[RoutingState, str, int, int, datetime], Event | None],
    seconds: int,
) -> None:
    for number, (kind, n) in enumerate(steps):
        now = run.now + timedelta(seconds=n % seconds)
        run.run_until(now)
        event = event_for(run.state, kind, n, number, now)
        if event is not None:
            run.step(event, now)
    run.run_until(run.now + BOUND + TIMEOUT)  # then nothing but time passes: no need outlives the bound
    assert all(run.now - since <= BOUND for since in run.unserved_since.values())
