"""The decision core's queue and agent options, one example each: aging, bullseye, overflow, business hours,
routing policies, auto-accept, wrap-up, missed offers, phone exclusivity, sticky preference, moves and transfers."""

import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import Channel
from services.router.domain.decide import apply, decide, is_due
from services.router.domain.decisions import (
    Assigned,
    AssignmentCompleted,
    ClockTicked,
    Closed,
    Completed,
    ContactArrived,
    ContactMoved,
    Event,
    HoursChanged,
    OfferAccepted,
    OfferClosed,
    Offered,
    OfferOutcome,
    PresenceRequested,
    PresenceSet,
    Requeued,
    offer_id_for,
)
from services.router.domain.model import (
    Agent,
    BullseyeStep,
    ContactRef,
    Presence,
    Queue,
    RoutingPolicy,
    RoutingState,
)
from services.router.exceptions import NotYours, UnknownContact, UnknownQueue
from tests.unit.histories import event_on_existing

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday
TIMEOUT = timedelta(seconds=30)
WEB, PHONE = Channel.WEBCHAT, Channel.PHONE


def queue(queue_id: str = "q", **options: Any) -> Queue:
    base = Queue(queue_id, queue_id, frozenset(Channel), {"s": 3}, 0, TIMEOUT)
    return replace(base, **options)


def agent(agent_id: str, *, skills: dict[str, int] | None = None, idle: int = 0, **options: Any) -> Agent:
    capacity = options.pop("capacity", {WEB: 2, PHONE: 1})
    groups = options.pop("groups", ("tier1",))
    made = Agent(
        agent_id,
        agent_id,
        groups,
        {"s": 3} if skills is None else skills,
        capacity,
        Presence.AVAILABLE,
        T0 - timedelta(minutes=idle),
    )
    return replace(made, **options)


def state(queues: list[Queue], agents: list[Agent]) -> RoutingState:
    return RoutingState(queues={q.id: q for q in queues}, agents={a.id: a for a in agents})


def contact(n: int, queue_id: str = "q", *, priority: int = 0, at: datetime = T0, channel: Channel = WEB) -> ContactRef:
    return ContactRef(uuid.UUID(int=n), f"c{n}", channel, queue_id, priority, at)


def step(routing: RoutingState, event: Event, now: datetime = T0) -> list[Any]:
    decisions = decide(routing, event, now)
    apply(routing, decisions)
    return list(decisions)


def offers(decisions: list[Any]) -> list[tuple[int, str]]:
    return [(d.contact.id.int, d.agent_id) for d in decisions if isinstance(d, Offered)]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# ---- aging ----


def test_aging_lets_a_long_wait_overtake_a_higher_base_priority() -> None:
    def first_offer(later_priority: int, now: datetime) -> list[tuple[int, str]]:
        routing = state([queue(aging_per_minute=1.0)], [agent("a", capacity={WEB: 1}, presence=Presence.AWAY)])
        step(routing, ContactArrived(contact(1, priority=0, at=T0)), T0)
        step(routing, ContactArrived(contact(2, priority=later_priority, at=at(240))), at(240))
        return offers(step(routing, PresenceRequested("a", Presence.AVAILABLE), now))

    # at 10 min the first has 0 + 10 = 10; the second, 6 min in, has 5 + 6 = 11 or 3 + 6 = 9
    assert first_offer(5, at(600)) == [(2, "a")]
    assert first_offer(3, at(600)) == [(1, "a")]


def test_aging_compares_across_queues_by_effective_priority() -> None:
    aging, flat = queue("aging", aging_per_minute=2.0), queue("flat")
    routing = state([aging, flat], [agent("a", capacity={WEB: 1}, presence=Presence.AWAY)])
    step(routing, ContactArrived(contact(1, "flat", priority=10, at=T0)), T0)
    step(routing, ContactArrived(contact(2, "aging", priority=0, at=T0)), T0)
    # after 6 minutes the aging contact has 12 > 10
    assert offers(step(routing, PresenceRequested("a", Presence.AVAILABLE), at(360))) == [(2, "a")]


# ---- bullseye ----


def test_bullseye_widens_the_pool_after_the_wait() -> None:
    widening = queue(bullseye=(BullseyeStep(timedelta(seconds=60), {"s": 1}),))
    routing = state([widening], [agent("junior", skills={"s": 1})])
    assert offers(step(routing, ContactArrived(contact(1)), T0)) == []
    assert not is_due(routing, at(59))
    assert is_due(routing, at(60))
    assert offers(step(routing, ClockTicked(), at(60))) == [(1, "junior")]
    assert not is_due(routing, at(61))


def test_a_freed_agent_of_a_later_step_takes_only_contacts_that_waited_long_enough() -> None:
    widening = queue(bullseye=(BullseyeStep(timedelta(seconds=60), {"s": 1}),))
    routing = state([widening], [agent("junior", skills={"s": 1}, presence=Presence.AWAY)])
    step(routing, ContactArrived(contact(1, at=T0)), T0)
    step(routing, ContactArrived(contact(2, at=at(50))), at(50))
    # at 70 s only the first has waited 60 s
    assert offers(step(routing, PresenceRequested("junior", Presence.AVAILABLE), at(70))) == [(1, "junior")]


# ---- overflow ----


def test_overflow_after_a_wait_moves_the_contact_and_routes_it_there() -> None:
    primary = queue("primary", overflow_to="backup", overflow_after=timedelta(seconds=90))
    backup = queue("backup", skills={"b": 1})
    routing = state([primary, backup], [agent("b", skills={"b": 2})])
    assert offers(step(routing, ContactArrived(contact(1, "primary")), T0)) == []
    decisions = step(routing, ClockTicked(), at(90))
    moved = [d for d in decisions if isinstance(d, Requeued)]
    assert [(d.old.queue_id, d.new.queue_id) for d in moved] == [("primary", "backup")]
    assert offers(decisions) == [(1, "b")]
    assert routing.waiting[uuid.UUID(int=1)].ref.enqueued_at == T0  # its place in line is kept


def test_overflow_above_a_queue_length_sends_new_contacts_elsewhere() -> None:
    primary = queue("primary", overflow_to="backup", overflow_when_waiting_over=1)
    backup = queue("backup")
    routing = state([primary, backup], [])
    step(routing, ContactArrived(contact(1, "primary")), T0)
    step(routing, ContactArrived(contact(2, "primary")), T0)
    third = step(routing, ContactArrived(contact(3, "primary")), T0)
    assert [d.new.queue_id for d in third if isinstance(d, Requeued)] == ["backup"]
    assert routing.waiting[uuid.UUID(int=2)].ref.queue_id == "primary"


# ---- business hours ----


class NineToSix:
    """Open 09:00-18:00 UTC every day."""

    def is_open(self, when: datetime) -> bool:
        return 9 <= when.astimezone(UTC).hour < 18


def test_after_hours_hold_keeps_contacts_until_the_queue_opens() -> None:
    routing = state([queue(hours=NineToSix())], [agent("a")])
    night = T0.replace(hour=7)
    assert offers(step(routing, ContactArrived(contact(1, at=night)), night)) == []
    assert is_due(routing, night)  # the queue's hours were never seen: the tick records them
    assert [d for d in step(routing, ClockTicked(), night) if isinstance(d, HoursChanged)] == [
        HoursChanged("q", False, night)
    ]
    assert not is_due(routing, night + timedelta(hours=1))
    assert is_due(routing, T0)
    assert offers(step(routing, ClockTicked(), T0)) == [(1, "a")]


def test_after_hours_close_closes_new_contacts_with_the_message() -> None:
    routing = state([queue(hours=NineToSix(), after_hours="close", close_message="We open at 9.")], [agent("a")])
    night = T0.replace(hour=20)
    decisions = step(routing, ContactArrived(contact(1, at=night)), night)
    assert decisions == [Closed(contact(1, at=night), "We open at 9.", night)]
    assert not routing.waiting


def test_after_hours_overflow_follows_the_sun() -> None:
    local = queue("local", hours=NineToSix(), after_hours="overflow", overflow_to="global")
    routing = state([local, queue("global")], [agent("a")])
    night = T0.replace(hour=20)
    decisions = step(routing, ContactArrived(contact(1, "local", at=night)), night)
    assert [d.new.queue_id for d in decisions if isinstance(d, Requeued)] == ["global"]
    assert offers(decisions) == [(1, "a")]


# ---- policies ----


def test_most_proficient_prefers_skill_over_idle_time() -> None:
    routing = state(
        [queue(policy=RoutingPolicy.MOST_PROFICIENT)],
        [agent("idle", skills={"s": 3}, idle=60), agent("expert", skills={"s": 5}, idle=1)],
    )
    assert offers(step(routing, ContactArrived(contact(1)), T0)) == [(1, "expert")]


def test_least_occupied_spreads_chats() -> None:
    routing = state(
        [queue(policy=RoutingPolicy.LEAST_OCCUPIED)],
        [agent("a", idle=60, capacity={WEB: 3}), agent("b", idle=1, capacity={WEB: 3})],
    )
    first = offers(step(routing, ContactArrived(contact(1)), T0))
    second = offers(step(routing, ContactArrived(contact(2)), T0))
    third = offers(step(routing, ContactArrived(contact(3)), T0))
    assert [first, second, third] == [[(1, "a")], [(2, "b")], [(3, "a")]]


def test_round_robin_takes_turns() -> None:
    routing = state(
        [queue(policy=RoutingPolicy.ROUND_ROBIN)],
        [agent(name, capacity={WEB: 5}) for name in ("a", "b", "c")],
    )
    got = [offers(step(routing, ContactArrived(contact(n)), at(n)))[0][1] for n in range(1, 7)]
    assert got == ["a", "b", "c", "a", "b", "c"]


# ---- auto-accept, wrap-up, missed offers, exclusivity ----


def test_auto_accept_assigns_without_an_offer_to_accept() -> None:
    routing = state([queue(auto_accept=True)], [agent("a")])
    decisions = step(routing, ContactArrived(contact(1)), T0)
    kinds = [type(d) for d in decisions]
    assert kinds[-3:] == [Offered, OfferClosed, Assigned]
    assert not routing.offers and not routing.waiting and len(routing.assignments) == 1
    assert routing.agents["a"].load[WEB] == 1


def test_wrap_up_holds_new_work_until_it_ends() -> None:
    routing = state([queue()], [agent("a", capacity={WEB: 1}, wrap_up=timedelta(seconds=30))])
    offered = step(routing, ContactArrived(contact(1)), T0)
    offer_id = next(d.offer_id for d in offered if isinstance(d, Offered))
    assigned = next(d for d in step(routing, OfferAccepted(offer_id, "a"), T0) if isinstance(d, Assigned))
    step(routing, ContactArrived(contact(2)), at(1))
    done = step(routing, AssignmentCompleted(assigned.assignment_id, "a", "refund", True), at(10))
    assert PresenceSet("a", Presence.WRAP_UP, at(10), at(40)) in done
    assert offers(done) == []
    assert next(d for d in done if isinstance(d, Completed)).disposition == "refund"
    assert not is_due(routing, at(39))
    back = step(routing, ClockTicked(), at(40))
    assert PresenceSet("a", Presence.AVAILABLE, at(40)) in back
    assert offers(back) == [(2, "a")]


def test_missed_offers_set_the_agent_away() -> None:
    routing = state([queue()], [agent("a", max_missed=2), agent("b", presence=Presence.AWAY)])
    step(routing, ContactArrived(contact(1)), T0)
    step(routing, ContactArrived(contact(2)), T0)
    decisions = step(routing, ClockTicked(), at(30))
    assert any(isinstance(d, PresenceSet) and d.presence is Presence.AWAY for d in decisions)
    assert routing.agents["a"].presence is Presence.AWAY
    assert offers(decisions) == []  # nobody else is available: both wait, neither goes back to the absent agent


def test_phone_is_exclusive_of_other_work() -> None:
    routing = state([queue()], [agent("a", phone_exclusive=True, capacity={WEB: 3, PHONE: 1})])
    assert offers(step(routing, ContactArrived(contact(1)), T0)) == [(1, "a")]
    assert offers(step(routing, ContactArrived(contact(2, channel=PHONE)), T0)) == []
    assert offers(step(routing, ContactArrived(contact(3)), T0)) == [(3, "a")]


# ---- sticky preference ----


def test_a_returning_customer_waits_for_the_last_agent_then_anyone() -> None:
    busy = state([queue()], [agent("last", capacity={WEB: 0}), agent("other", idle=60)])
    sticky = replace(contact(1), preferred_agent="last", prefer_until=at(60))
    assert offers(step(busy, ContactArrived(sticky), T0)) == []
    assert offers(step(busy, ClockTicked(), at(60))) == [(1, "other")]


def test_the_preferred_agent_gets_it_when_free() -> None:
    routing = state([queue()], [agent("last"), agent("other", idle=60)])
    sticky = replace(contact(1), preferred_agent="last", prefer_until=at(60))
    assert offers(step(routing, ContactArrived(sticky), T0)) == [(1, "last")]


# ---- moves and transfers ----


def _assigned(routing: RoutingState, n: int, agent_id: str) -> uuid.UUID:
    offered = step(routing, ContactArrived(contact(n)), T0)
    offer_id = next(d.offer_id for d in offered if isinstance(d, Offered) and d.agent_id == agent_id)
    return next(
        d for d in step(routing, OfferAccepted(offer_id, agent_id), T0) if isinstance(d, Assigned)
    ).assignment_id


def test_a_transfer_closes_the_assignment_and_requeues_with_the_history() -> None:
    routing = state([queue(), queue("tech", skills={"t": 1})], [agent("a", idle=60), agent("eng", skills={"t": 3})])
    _assigned(routing, 1, "a")
    accepted = next(iter(routing.assignments.values()))
    decisions = step(routing, ContactMoved(uuid.UUID(int=1), "tech", "needs an engineer", agent_id="a"), at(5))
    completed = next(d for d in decisions if isinstance(d, Completed))
    assert completed.transferred and completed.disposition == "transferred"
    assert offers(decisions) == [(1, "eng")]
    new_offer = next(d for d in decisions if isinstance(d, Offered))
    assert accepted.offers_made == 1
    assert new_offer.offer_id != offer_id_for(uuid.UUID(int=1), 0)  # a fresh id, not the first offer's again
    assert routing.agents["a"].load[WEB] == 0


def test_a_transfer_to_an_agent_waits_for_that_agent() -> None:
    routing = state([queue()], [agent("a", idle=60), agent("b", idle=30), agent("c", capacity={WEB: 0})])
    _assigned(routing, 1, "a")
    decisions = step(
        routing,
        ContactMoved(uuid.UUID(int=1), "q", "to c", agent_id="a", preferred_agent="c", prefer_until=at(60)),
        at(1),
    )
    assert offers(decisions) == []  # c has no slot: it waits for c, not b
    assert offers(step(routing, ClockTicked(), at(60))) == [(1, "b")]  # never back to a, who transferred it


def test_moves_are_refused_for_unknown_queues_contacts_and_other_agents() -> None:
    routing = state([queue()], [agent("a"), agent("b")])
    _assigned(routing, 1, "a")
    with pytest.raises(UnknownQueue):
        decide(routing, ContactMoved(uuid.UUID(int=1), "nowhere", "x"), T0)
    with pytest.raises(UnknownContact):
        decide(routing, ContactMoved(uuid.UUID(int=7), "q", "x"), T0)
    with pytest.raises(NotYours):
        decide(routing, ContactMoved(uuid.UUID(int=1), "q", "x", agent_id="b"), T0)


def test_a_supervisor_move_revokes_a_pending_offer() -> None:
    routing = state([queue(), queue("vip", skills={"v": 1})], [agent("a"), agent("v", skills={"v": 5})])
    step(routing, ContactArrived(contact(1)), T0)
    decisions = step(routing, ContactMoved(uuid.UUID(int=1), "vip", "VIP", priority=50), at(2))
    assert [d.outcome for d in decisions if isinstance(d, OfferClosed)] == [OfferOutcome.REVOKED]
    assert offers(decisions) == [(1, "v")]
    assert routing.offers[next(iter(routing.offers))].contact.priority == 50


def test_a_group_queue_is_served_only_by_its_group() -> None:
    crisis = queue("crisis", skills={}, group="crisis")
    routing = state([crisis], [agent("t1"), agent("cg", groups=("crisis",), idle=-5)])
    assert offers(step(routing, ContactArrived(contact(1, "crisis")), T0)) == [(1, "cg")]


# ---- every option at once, over random histories ----

QUEUE_IDS = ("q0", "q1", "q2")
AGENT_IDS = ("a0", "a1", "a2", "a3")


@st.composite
def featured_histories(draw: st.DrawFn) -> tuple[RoutingState, list[tuple[str, int]]]:
    queues = []
    for i, queue_id in enumerate(QUEUE_IDS):
        minimum = draw(st.integers(1, 5))
        relaxed = draw(st.integers(1, minimum))
        queues.append(
            queue(
                queue_id,
                skills={"s": minimum},
                priority=draw(st.integers(0, 5)),
                aging_per_minute=draw(st.sampled_from([0.0, 0.5, 2.0])),
                bullseye=(BullseyeStep(timedelta(seconds=draw(st.integers(1, 60))), {"s": relaxed}),)
                if draw(st.booleans())
                else (),
                overflow_to=QUEUE_IDS[i + 1] if i + 1 < len(QUEUE_IDS) and draw(st.booleans()) else None,
                overflow_after=timedelta(seconds=draw(st.integers(5, 90))),
                overflow_when_waiting_over=draw(st.sampled_from([None, 0, 2])),
                policy=draw(st.sampled_from(list(RoutingPolicy))),
                auto_accept=draw(st.booleans()),
                group=draw(st.sampled_from([None, None, "eng"])),
            )
        )
    agents = [
        agent(
            agent_id,
            skills={"s": draw(st.integers(1, 5))},
            idle=draw(st.integers(0, 60)),
            capacity={WEB: draw(st.integers(0, 3)), PHONE: draw(st.integers(0, 1))},
            groups=tuple(draw(st.sets(st.sampled_from(["tier1", "eng"])))),
            phone_exclusive=draw(st.booleans()),
            wrap_up=timedelta(seconds=draw(st.sampled_from([0, 0, 15]))),
            max_missed=draw(st.sampled_from([None, 1, 2])),
        )
        for agent_id in AGENT_IDS
    ]
    kinds = ["arrive", "presence", "accept", "decline", "tick", "complete", "abandon", "move", "transfer"]
    steps = draw(st.lists(st.tuples(st.sampled_from(kinds), st.integers(0, 1000)), max_size=60))
    return state(queues, agents), steps


def _featured_event(routing: RoutingState, kind: str, n: int, number: int, now: datetime) -> Event | None:
    match kind:
        case "arrive":
            ref = contact(10_000 + number, QUEUE_IDS[n % 3], priority=n % 7, at=now, channel=PHONE if n % 4 else WEB)
            if n % 5 == 0:
                ref = replace(ref, preferred_agent=AGENT_IDS[n % 4], prefer_until=now + timedelta(seconds=n % 40))
            return ContactArrived(ref)
        case "presence":
            return PresenceRequested(AGENT_IDS[n % 4], [Presence.AVAILABLE, Presence.AWAY, Presence.OFFLINE][n % 3])
        case "move" if routing.waiting:
            contact_id = sorted(routing.waiting)[n % len(routing.waiting)]
            return ContactMoved(contact_id, QUEUE_IDS[n % 3], "supervisor", priority=n % 9)
        case "transfer" if routing.assignments:
            assignment = sorted(routing.assignments.values(), key=lambda a: a.id)[n % len(routing.assignments)]
            preferred = AGENT_IDS[n % 4] if n % 2 else None
            until = now + timedelta(seconds=30) if preferred else None
            return ContactMoved(
                assignment.contact.id, QUEUE_IDS[n % 3], "transfer", None, assignment.agent_id, preferred, until
            )
    return event_on_existing(routing, kind, n)


def _check(routing: RoutingState, decisions: list[Any], now: datetime) -> None:
    reserved = Counter(o.contact.id for o in routing.offers.values())
    assert all(count == 1 for count in reserved.values()), "a contact is offered to two agents at once"
    assert not (set(routing.waiting) & {a.contact.id for a in routing.assignments.values()})
    for member in routing.agents.values():
        load: Counter[Channel] = Counter(o.contact.channel for o in routing.offers.values() if o.agent_id == member.id)
        load += Counter(a.contact.channel for a in routing.assignments.values() if a.agent_id == member.id)
        assert +member.load == +load, "the load counter drifted from the offers and assignments"
        for channel, used in load.items():
            assert used <= member.capacity.get(channel, 0), "over capacity"
        if member.phone_exclusive and load[PHONE]:
            assert sum(load.values()) == load[PHONE], "a call alongside other work"
    for decision in decisions:
        if isinstance(decision, Offered):
            member, ref = routing.agents[decision.agent_id], decision.contact
            where = routing.queues[ref.queue_id]
            requirement = where.requirements()[where.step_after(now - ref.entered)]
            assert member.proficiency(requirement) is not None, "offered to an agent lacking a required skill"
            assert where.group is None or where.group in member.groups, "offered outside the queue's group"
    offer_ids = [d.offer_id for d in decisions if isinstance(d, Offered)]
    assert len(offer_ids) == len(set(offer_ids))


@settings(max_examples=300, deadline=None)
@given(featured_histories())
def test_invariants_hold_with_every_option(history: tuple[RoutingState, list[tuple[str, int]]]) -> None:
    routing, steps = history
    now = T0
    seen_offers: set[uuid.UUID] = set()
    for number, (kind, n) in enumerate(steps):
        now += timedelta(seconds=n % 25)
        event = _featured_event(routing, kind, n, number, now)
        if event is None:
            continue
        decisions = decide(routing, event, now)
        apply(routing, decisions)
        _check(routing, decisions, now)
        made = {d.offer_id for d in decisions if isinstance(d, Offered)}
        assert not (made & seen_offers), "an offer id was used twice"
        seen_offers |= made


@settings(max_examples=300, deadline=None)
@given(
    agings=st.tuples(st.sampled_from([0.0, 0.25, 1.0, 3.0]), st.sampled_from([0.0, 0.5, 2.0])),
    contacts=st.lists(st.tuples(st.integers(0, 1), st.integers(-5, 20), st.integers(0, 3600)), min_size=1, max_size=25),
    later=st.integers(0, 3600),
)
def test_a_freed_agent_takes_the_highest_effective_priority_then_the_oldest(
    agings: tuple[float, float], contacts: list[tuple[int, int, int]], later: int
) -> None:
    queues = [queue(f"q{i}", aging_per_minute=aging) for i, aging in enumerate(agings)]
    routing = state(queues, [agent("a", capacity={WEB: 1}, presence=Presence.AWAY)])
    arrivals = sorted(((seconds, n, which, priority) for n, (which, priority, seconds) in enumerate(contacts)))
    for seconds, n, which, priority in arrivals:
        step(routing, ContactArrived(contact(n + 1, f"q{which}", priority=priority, at=at(seconds))), at(seconds))
    now = at(3600 + later)
    taken = offers(step(routing, PresenceRequested("a", Presence.AVAILABLE), now))
    assert len(taken) == 1
    refs = [w.ref for w in routing.waiting.values()]

    def rank(ref: ContactRef) -> tuple[float, datetime]:
        effective = routing.queues[ref.queue_id].effective_priority(ref, now)
        return -round(effective, 6), ref.enqueued_at

    best = min(rank(ref) for ref in refs)
    chosen = next(ref for ref in refs if ref.id.int == taken[0][0])
    assert rank(chosen) == best
