"""Issue 12: the records of one fetch in one transaction, each deciding on what the records before it did, on the
router's handlers and a real PostgreSQL without Kafka.

What must hold (``services.router.service``): whenever the service's lock is free, memory equals the committed
tables; nothing reaches desktops (the feed) or wakes the outbox relay before the commit; a failing record is
isolated as ``kefu.consume`` isolates it (``Stopped``), the records before it applied again, each exactly once;
never two offers of a contact, never an agent over capacity; a contact some available agent may serve is offered;
the open contact of each conversation is the one memory names.
Examples first, then the same as properties over generated histories of fetches and desktop actions.
"""

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any
from unittest import mock

import pytest
import sqlalchemy
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from contracts import ContactEvent, ContactEventKind
from kefu import db
from kefu.batch import Stopped
from services.router import commands, events
from services.router.adapters import state_store
from services.router.adapters.contact_store import OPEN_STATUSES
from services.router.adapters.feed import FeedItem
from services.router.adapters.orm import applied_events, contacts, messages, offers, outbox
from services.router.domain.model import Presence, RoutingState
from services.router.service import Changes, RoutingService
from tests.integration.support import contact_event
from tests.service.conftest import Clock, Router, start_router
from tools.embedded import EmbeddedPostgres

pytestmark = pytest.mark.service

POISON = "poison"  # fails before it is applied
LATE_POISON = "late poison"  # fails once applied: its contact decided (or its message appended), written, told

_open, _contact = events._open, events._contact


async def _failing(service: RoutingService, change: Any, event: ContactEvent) -> str:
    if event.message.text == POISON:
        raise ValueError("this record can never be applied")
    outcome = await _contact(service, change, event)
    if event.message.text == LATE_POISON:
        raise ValueError("this record fails after its decisions")
    return outcome


@contextlib.contextmanager
def poisonous() -> Iterator[None]:
    """Records whose text is ``POISON`` or ``LATE_POISON`` fail, every time."""
    with mock.patch.object(events, "_contact", _failing):
        yield


def picture(state: RoutingState) -> dict[str, Any]:
    """What of the routing state the tables hold: who waits (with their offer and how many were made), the offers,
    the assignments, and each agent's presence, load and missed offers."""
    return {
        "waiting": {i: (w.ref.queue_id, w.offer_id, w.offers_made) for i, w in state.waiting.items()},
        "offers": {i: (o.contact.id, o.agent_id) for i, o in state.offers.items()},
        "assignments": {i: (a.contact.id, a.agent_id) for i, a in state.assignments.items()},
        "agents": {
            i: (a.presence, {ch: n for ch, n in a.load.items() if n}, a.missed) for i, a in state.agents.items()
        },
    }


async def committed(service: RoutingService) -> dict[str, Any]:
    """The picture of the tables, as committed."""
    queues = {q.id: q.to_domain() for q in service.config.queues}
    async with service.engine.connect() as conn:
        return picture(await state_store.load_state(conn, queues, service.config.default_queue))


async def check(service: RoutingService) -> None:
    """The invariants, the lock free: memory is the tables; one pending offer a contact; no agent over capacity;
    no free contact an agent with a free slot could take (and never turned down)."""
    async with service.settled() as state:
        assert picture(state) == await committed(service)
        async with service.engine.connect() as conn:
            open_rows = await conn.execute(
                select(contacts.c.conversation_key, contacts.c.id).where(contacts.c.status.in_(OPEN_STATUSES))
            )
            for conversation, contact_id in open_rows.all():
                assert service.open_contact(conversation) == contact_id
            assigned = {a.contact.id for a in state.assignments.values()}
            for conversation in [f"webchat:shop:c{i}" for i in range(6)]:
                found = service.open_contact(conversation)
                assert found is None or found in state.waiting or found in assigned, conversation
            doubled = await conn.execute(
                select(offers.c.contact_id)
                .where(offers.c.status == "pending")
                .group_by(offers.c.contact_id)
                .having(func.count() > 1)
            )
            assert doubled.all() == []
        for agent in state.agents.values():
            for channel, used in agent.load.items():
                assert used <= agent.capacity.get(channel, 0), (agent.id, channel, used)
        eligible = state.index().eligible
        for waiting in state.waiting.values():
            ref = waiting.ref
            if waiting.offer_id is not None or waiting.declined_by:
                continue
            for agent in state.agents.values():
                free = agent.capacity.get(ref.channel, 0) - agent.load[ref.channel]
                serves = ref.queue_id in eligible.get(agent.id, {})
                assert not (agent.presence is Presence.AVAILABLE and free > 0 and serves), (ref.id, agent.id)


async def consume(service: RoutingService, records: Sequence[ContactEvent]) -> None:
    """Apply one fetch as ``kefu.consume``'s batch loop does: the records before a failing one again as a batch,
    then the failing one alone (dead-lettered when it fails again), then the rest."""
    while records:
        try:
            await events.on_contacts(service, records)
            return
        except Stopped as stopped:
            if stopped.at > stopped.applied:
                await consume(service, records[stopped.applied : stopped.at])
            with contextlib.suppress(ValueError):  # the poison fails alone too: dead-lettered
                await events.on_contact(service, records[stopped.at])
            records = records[stopped.at + 1 :]


async def _count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


# -- examples --


async def test_a_fetch_commits_once_and_each_contact_decides_on_those_before_it(router: Router) -> None:
    # alice (2 slots) is the only available agent of presales: two offers, the third contact waits
    with router.feed.subscribe("alice") as desktop:
        await events.on_contacts(router.service, [contact_event(f"c{i}") for i in range(3)])
        pushed = [await desktop.get() for _ in range(2)]
    assert len(router.commits) == 1  # one commit woke the relay
    assert all(isinstance(item, FeedItem) and item.name == "offer.created" for item in pushed)
    state = router.service.state
    assert state.agents["alice"].load.total() == 2
    assert sorted(w.offer_id is None for w in state.waiting.values()) == [False, False, True]
    await check(router.service)


async def test_a_fetch_marks_its_records_applied_in_one_statement_and_a_second_copy_is_a_duplicate(
    router: Router,
) -> None:
    first, more = contact_event("c1"), contact_event("c1", text="and another thing")
    marks: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO router.applied_events"):
            marks.append(statement)

    sqlalchemy.event.listen(router.engine.sync_engine, "before_cursor_execute", count)
    try:
        await events.on_contacts(router.service, [first, more, first])  # the first delivered twice in the fetch
        assert len(marks) == 1
        assert await _count(router.engine, contacts) == 1
        assert await _count(router.engine, messages) == 2  # the copy appended nothing
        assert await _count(router.engine, applied_events) == 2
        await events.on_contacts(router.service, [more])  # redelivered in a later fetch: still nothing
    finally:
        sqlalchemy.event.remove(router.engine.sync_engine, "before_cursor_execute", count)
    assert await _count(router.engine, messages) == 2
    assert len(marks) == 2 and marks[0] == marks[1]  # one text for 3 ids and for 1: prepared once
    await check(router.service)


async def test_nothing_reaches_desktops_or_the_relay_before_the_commit(router: Router) -> None:
    seen: list[tuple[int, int, int]] = []  # at each record: relay wake-ups, items pushed, outbox rows committed

    async def watching(service: RoutingService, change: Any, event: ContactEvent) -> None:
        async with router.engine.connect() as other:
            rows = int((await other.execute(select(func.count()).select_from(outbox))).scalar_one())
        seen.append((len(router.commits), router.feed.last_id, rows))
        await _open(service, change, event)

    with mock.patch.object(events, "_open", watching):
        await events.on_contacts(router.service, [contact_event(f"c{i}") for i in range(3)])
    assert seen == [(0, 0, 0)] * 3
    assert len(router.commits) == 1 and router.feed.last_id > 0
    assert await _count(router.engine, outbox) > 0


@pytest.mark.parametrize("poison", [POISON, LATE_POISON])
async def test_a_failing_record_rolls_the_fetch_back_and_memory_with_it(router: Router, poison: str) -> None:
    fetch = [contact_event("c1"), contact_event("c2"), contact_event("c3", text=poison), contact_event("c4")]
    with router.feed.subscribe("alice") as desktop, poisonous(), pytest.raises(Stopped) as stopped:
        await events.on_contacts(router.service, fetch)
    assert (stopped.value.applied, stopped.value.at) == (0, 2)  # the two before it go again, as a batch
    assert router.commits == [] and router.feed.last_id == 0
    assert desktop._queue.empty()
    assert router.service.state.waiting == {} and router.service.state.agents["alice"].load.total() == 0
    await check(router.service)
    with poisonous():
        await consume(router.service, fetch)
    assert await _count(router.engine, applied_events) == 3  # c1, c2 and c4, each once
    assert await _count(router.engine, messages) == 3
    assert len(router.service.state.waiting) == 3
    await check(router.service)


async def test_a_failed_commit_leaves_memory_as_the_tables(router: Router) -> None:
    async def refused(self: Changes) -> None:
        raise ConnectionResetError("the database went away at the commit")

    with mock.patch.object(Changes, "commit", refused), pytest.raises(ConnectionResetError):
        await events.on_contacts(router.service, [contact_event("c1"), contact_event("c2")])
    assert router.commits == [] and router.feed.last_id == 0
    assert router.service.state.waiting == {}
    await check(router.service)


async def test_memory_the_database_could_not_rebuild_is_rebuilt_before_it_is_read(router: Router) -> None:
    async def away(*args: object, **kwargs: object) -> RoutingState:
        raise ConnectionRefusedError("the database is away")

    with poisonous(), mock.patch.object(state_store, "load_state", away), pytest.raises(Stopped):
        await events.on_contacts(router.service, [contact_event("c1"), contact_event("c2", text=POISON)])
    assert router.service.state.waiting  # rolled back, not rebuilt yet: nobody holds the lock to read it
    await check(router.service)  # settled: rebuilt first
    assert router.service.state.waiting == {}


# -- properties over generated histories --

ACTIONS = st.one_of(
    st.tuples(
        st.just("fetch"),
        st.lists(
            st.tuples(
                st.sampled_from(["message", "message", "message", "hang_up", POISON, LATE_POISON]),
                st.integers(0, 5),  # the conversation
            ),
            min_size=1,
            max_size=8,
        ),
    ),
    st.tuples(st.sampled_from(["accept", "decline", "complete", "presence"]), st.integers(0, 9)),
    st.tuples(st.just("tick"), st.sampled_from([0.5, 2, 20])),
)


async def act(router: Router, clock: Clock, action: tuple[str, Any], seen: set[uuid.UUID]) -> None:
    kind, arg = action
    service = router.service
    state = service.state
    if kind == "fetch":
        fetch = []
        for what, conversation in arg:
            text_ = what if what in (POISON, LATE_POISON) else "hello"
            event = contact_event(f"c{conversation}", text=text_)
            if what == "hang_up":
                event = event.model_copy(update={"kind": ContactEventKind.ABANDONED})
            fetch.append(event)
            if what not in (POISON, LATE_POISON):
                seen.add(event.event_id)
        fetch += fetch[: len(fetch) // 3]  # some delivered twice
        await consume(service, fetch)
    elif kind in ("accept", "decline") and state.offers:
        offer = sorted(state.offers.values(), key=lambda o: o.id)[arg % len(state.offers)]
        handler = commands.accept if kind == "accept" else commands.decline
        await handler(service, offer.id, offer.agent_id)
    elif kind == "complete" and state.assignments:
        assignment = sorted(state.assignments.values(), key=lambda a: a.id)[arg % len(state.assignments)]
        await commands.complete(service, assignment.id, assignment.agent_id)
    elif kind == "presence":
        agent = ("alice", "bob")[arg % 2]
        presence = Presence.AVAILABLE if arg % 3 else Presence.AWAY
        await commands.set_presence(service, agent, presence)
    elif kind == "tick":
        clock.advance(arg)
        await commands.tick(service)


@contextlib.asynccontextmanager
async def fresh_router(postgres: EmbeddedPostgres, template: str, config_path: Any) -> AsyncIterator[Router]:
    name = f"kefu_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    engine = db.create_engine(postgres.url(name))
    try:
        yield await start_router(engine, postgres.url(name), config_path, Clock())
    finally:
        await engine.dispose()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        await admin.dispose()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=st.lists(ACTIONS, min_size=1, max_size=12))
async def test_over_any_history_memory_is_the_tables_and_every_record_applies_once(
    postgres: EmbeddedPostgres, migrated_template: str, config_path: Any, history: list[tuple[str, Any]]
) -> None:
    seen: set[uuid.UUID] = set()
    async with fresh_router(postgres, migrated_template, config_path) as router:
        clock = router.service.clock
        assert isinstance(clock, Clock)
        with poisonous():
            for action in history:
                note(repr(action))
                await act(router, clock, action, seen)
                await check(router.service)
        async with router.engine.connect() as conn:
            applied = set((await conn.execute(select(applied_events.c.event_id))).scalars())
        assert applied == seen  # each once (a primary key), none lost, no poison
