"""A contact no agent can ever serve (no agent, in any presence, has the skills, group and a slot on its channel)
is visible: counted per (queue, channel), in queue statistics, and estimated as an unknown wait rather than 0."""

import uuid
from datetime import UTC, datetime, timedelta

from contracts import Channel
from services.router.adapters import stats
from services.router.domain.decide import apply, decide
from services.router.domain.decisions import ContactArrived
from services.router.domain.model import Agent, ContactRef, Presence, Queue, RoutingState

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
WEB, WECHAT = Channel.WEBCHAT, Channel.WECHAT


def _state(*agents: Agent) -> RoutingState:
    queue = Queue("presales", "Presales", frozenset({WEB, WECHAT}), {"presales": 1}, 10, timedelta(seconds=30))
    return RoutingState(queues={queue.id: queue}, agents={a.id: a for a in agents})


def _agent(agent_id: str, capacity: dict[Channel, int], presence: Presence = Presence.AVAILABLE) -> Agent:
    return Agent(agent_id, agent_id, ("tier1",), {"presales": 3}, capacity, presence, T0)


def _arrive(state: RoutingState, n: int, channel: Channel) -> None:
    ref = ContactRef(uuid.UUID(int=n), f"{channel}:demo:{n}", channel, "presales", 10, T0)
    apply(state, decide(state, ContactArrived(ref), T0))


def test_contacts_on_a_channel_nobody_has_capacity_for_are_unservable() -> None:
    state = _state(_agent("alice", {WEB: 2}), _agent("bob", {WEB: 1}, Presence.OFFLINE))
    _arrive(state, 1, WECHAT)
    _arrive(state, 2, WECHAT)
    _arrive(state, 3, WEB)
    assert state.index().unservable() == {("presales", WECHAT): 2}
    assert not state.index().can_ever_serve("presales", WECHAT)
    assert state.index().can_ever_serve("presales", WEB)


def test_an_agent_away_or_busy_still_counts_as_able_to_serve() -> None:
    state = _state(_agent("alice", {WEB: 1, WECHAT: 1}, Presence.OFFLINE))
    _arrive(state, 1, WECHAT)
    assert state.index().unservable() == {}


def test_queue_stats_count_unservable_and_estimate_per_channel() -> None:
    state = _state(_agent("alice", {WEB: 2}))
    _arrive(state, 1, WECHAT)
    live = stats.live(state, state.queues["presales"], T0)
    assert live["unservable"] == 1
    assert live["free_slots"] == 2
    by_channel = live["channels"]
    assert by_channel["wechat"] == {
        "waiting": 1,
        "offered": 0,
        "unservable": 1,
        "agents_with_capacity": 0,
        "available_agents": 0,
        "free_slots": 0,
    }
    assert by_channel["webchat"]["free_slots"] == 2
    assert stats.estimated_wait(by_channel["webchat"], 60.0) == 0.0
    assert stats.estimated_wait(by_channel["wechat"], 60.0) is None  # nobody can: unknown, not 0
    assert stats.estimated_wait(live, 60.0) is None  # the queue as a whole: a channel of it has nobody


def test_the_estimate_counts_only_agents_of_the_contacts_channel() -> None:
    # alice's free web chat slots say nothing about the wait of a WeChat contact: bob, busy, is its only agent
    state = _state(_agent("alice", {WEB: 2}), _agent("bob", {WECHAT: 1}))
    _arrive(state, 1, WECHAT)  # offered to bob
    _arrive(state, 2, WECHAT)  # waits behind it
    live = stats.live(state, state.queues["presales"], T0)
    wechat = live["channels"]["wechat"]
    assert wechat["free_slots"] == 0 and wechat["available_agents"] == 1
    assert stats.estimated_wait(wechat, 60.0) == 120.0  # itself and one ahead, one agent
    assert stats.estimated_wait(live, 60.0) == 120.0  # the queue's estimate is its slowest channel's
