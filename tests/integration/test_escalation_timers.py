"""Durable escalation timers on a real PostgreSQL: due-time firing, idempotent scheduling, cancelling,
several runners, restarts and crashes, failing handlers. Every handler effect is a row written through
the runner's transaction, so counting rows counts committed firings."""

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kefu import db
from services.escalation.adapters.orm import timers
from services.escalation.adapters.timer_runner import Handler, TimerRunner
from services.escalation.adapters.timers import Timer, TimerStore
from tests.integration.support import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(
            text("CREATE TABLE effects (key text NOT NULL, runner text NOT NULL, at timestamptz NOT NULL)")
        )
    yield engine
    await engine.dispose()


def recorder(runner_name: str = "r") -> Handler:
    async def handle(timer: Timer, conn: AsyncConnection) -> None:
        await conn.execute(
            text("INSERT INTO effects (key, runner, at) VALUES (:key, :runner, clock_timestamp())"),
            {"key": timer.key, "runner": runner_name},
        )

    return handle


async def effects(engine: AsyncEngine) -> dict[str, int]:
    """How many committed firings each key has."""
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT key, count(*) FROM effects GROUP BY key"))
        return {key: count for key, count in rows}


async def fired_times(engine: AsyncEngine) -> dict[str, datetime]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT key, min(at) FROM effects GROUP BY key"))
        return {key: at for key, at in rows}


@contextlib.asynccontextmanager
async def running(runner: TimerRunner, handler: Handler) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(runner.run(handler))
    try:
        yield task
    finally:
        runner.stop()
        await asyncio.wait_for(task, timeout=5)


def at(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def has(engine: AsyncEngine, count: int) -> Callable[[], Awaitable[dict[str, int] | None]]:
    async def probe() -> dict[str, int] | None:
        found = await effects(engine)
        return found if sum(found.values()) >= count else None

    return probe


async def test_timers_fire_at_their_due_time_not_before(engine: AsyncEngine) -> None:
    runner = TimerRunner(engine, max_idle=60)
    store = TimerStore(engine, wake=runner.wake)
    due = {"a": at(0.6), "b": at(1.2)}
    for key, due_at in due.items():
        await store.schedule(key, "sla.first_response.breach", due_at, payload={"queue": "presales"})
    async with running(runner, recorder()):
        await asyncio.sleep(0.4)
        assert await effects(engine) == {}
        await eventually(has(engine, 2), timeout=5)
    fired = await fired_times(engine)
    for key, due_at in due.items():
        assert due_at <= fired[key] < due_at + timedelta(seconds=0.5), (key, fired[key] - due_at)
    timer = await store.get("a")
    assert timer is not None and timer.fired_at is not None and timer.payload == {"queue": "presales"}
    assert await effects(engine) == {"a": 1, "b": 1}


async def test_wake_fires_an_earlier_timer_without_waiting_for_the_later_one(engine: AsyncEngine) -> None:
    runner = TimerRunner(engine, max_idle=60)
    store = TimerStore(engine, wake=runner.wake)
    await store.schedule("later", "ack.level2", at(3600))
    async with running(runner, recorder()):
        await asyncio.sleep(0.2)  # the runner now sleeps towards the one-hour timer
        scheduled = datetime.now(UTC)
        await store.schedule("sooner", "ack.level2", at(0.1))
        await eventually(has(engine, 1), timeout=5)
    fired = await fired_times(engine)
    assert list(fired) == ["sooner"]
    assert fired["sooner"] - scheduled < timedelta(seconds=0.6)


async def test_schedule_is_idempotent_by_key_and_keeps_the_first_due_time(engine: AsyncEngine) -> None:
    store = TimerStore(engine)
    contact = uuid.uuid4()
    first = at(0.3)
    assert await store.schedule("sla:c1", "sla.resolution.warn", first, contact_id=contact) is True
    assert await store.schedule("sla:c1", "sla.resolution.warn", at(100), contact_id=contact) is False
    async with engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM escalation.timers"))).scalar()
    timer = await store.get("sla:c1")
    assert count == 1 and timer is not None and timer.due_at == first and timer.contact_id == contact
    with pytest.raises(ValueError, match="timezone"):
        await store.schedule("naive", "x", datetime(2026, 1, 1))  # naive on purpose
    runner = TimerRunner(engine)
    async with running(runner, recorder()):
        await eventually(has(engine, 1), timeout=5)
        # scheduling a fired key again changes nothing either
        assert await store.schedule("sla:c1", "sla.resolution.warn", at(0)) is False
        runner.wake()
        await asyncio.sleep(0.3)
    assert await effects(engine) == {"sla:c1": 1}


async def test_cancelled_timers_never_fire(engine: AsyncEngine) -> None:
    store = TimerStore(engine)
    contact, other = uuid.uuid4(), uuid.uuid4()
    await store.schedule("one", "ack.level1", at(0.3))
    await store.schedule("sla-warn", "sla.first_response.warn", at(0.3), contact_id=contact)
    await store.schedule("sla-breach", "sla.first_response.breach", at(0.3), contact_id=contact)
    await store.schedule("keep", "key_account.hold", at(0.3), contact_id=contact)
    await store.schedule("other", "sla.first_response.warn", at(0.3), contact_id=other)
    assert await store.cancel("one") is True
    assert await store.cancel("one") is False
    assert await store.cancel("unknown") is False
    kinds = {"sla.first_response.warn", "sla.first_response.breach"}
    assert await store.cancel_for_contact(contact, kinds=kinds) == 2
    assert await store.cancel_for_contact(contact, kinds=kinds) == 0
    async with running(TimerRunner(engine), recorder()):
        await eventually(has(engine, 2), timeout=5)
        await asyncio.sleep(0.3)
    assert await effects(engine) == {"keep": 1, "other": 1}
    assert await store.cancel("keep") is False  # fired: too late to cancel
    cancelled = await store.get("one")
    assert cancelled is not None and cancelled.cancelled_at is not None and cancelled.fired_at is None


async def test_two_runners_fire_each_timer_exactly_once(engine: AsyncEngine) -> None:
    store = TimerStore(engine)
    keys = [f"t{n}" for n in range(400)]
    for n, key in enumerate(keys):
        await store.schedule(key, "sla.next_response.breach", at(0.2 + n / 1000))

    def slow(name: str) -> Handler:
        record = recorder(name)

        async def handle(timer: Timer, conn: AsyncConnection) -> None:
            await record(timer, conn)
            await asyncio.sleep(0.001)  # hold the rows long enough for the runners to overlap

        return handle

    async with running(TimerRunner(engine, batch=10), slow("a")), running(TimerRunner(engine, batch=10), slow("b")):
        await eventually(has(engine, len(keys)), timeout=20)
        await asyncio.sleep(0.3)
    assert await effects(engine) == dict.fromkeys(keys, 1)
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT runner, count(*) FROM effects GROUP BY runner"))
        by_runner = {runner: count for runner, count in rows}
    assert set(by_runner) == {"a", "b"}, by_runner  # both did share the work


async def test_timers_due_while_down_fire_once_immediately_after_restart(engine: AsyncEngine) -> None:
    store = TimerStore(engine)
    down = [f"down{n}" for n in range(50)]
    for key in down:  # not due while the first runner runs, however long these take under load
        await store.schedule(key, "ack.level1", at(3600))
    await store.schedule("after", "ack.level1", at(3600))
    await store.schedule("before", "ack.level1", at(0.2))

    async with running(TimerRunner(engine), recorder("first")):
        await eventually(has(engine, 1), timeout=5)
    assert await effects(engine) == {"before": 1}  # stopped before the others came due
    # down: the clock moves on, every "down" timer comes due, one after another; "after" is a second away
    async with engine.begin() as conn:
        for n, key in enumerate(down):
            due = func.now() - timedelta(seconds=1) + timedelta(seconds=n / 100)
            await conn.execute(update(timers).where(timers.c.key == key).values(due_at=due))
        await conn.execute(
            update(timers).where(timers.c.key == "after").values(due_at=func.now() + timedelta(seconds=1))
        )

    restarted = datetime.now(UTC)
    async with running(TimerRunner(engine), recorder("second")):
        await eventually(has(engine, 1 + len(down)), timeout=5)
        caught_up = datetime.now(UTC)
        await eventually(has(engine, 2 + len(down)), timeout=5)
    assert caught_up - restarted < timedelta(seconds=1)
    assert await effects(engine) == {"before": 1, "after": 1, **dict.fromkeys(down, 1)}


async def test_a_crash_before_commit_fires_again_and_only_once(engine: AsyncEngine) -> None:
    store = TimerStore(engine)
    await store.schedule("crash", "ack.level2", at(0))
    inside = asyncio.Event()

    async def hangs(timer: Timer, conn: AsyncConnection) -> None:
        await recorder("dies")(timer, conn)
        inside.set()
        await asyncio.Event().wait()  # killed here, after its write, before the commit

    task = asyncio.create_task(TimerRunner(engine).run(hangs))
    await asyncio.wait_for(inside.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await effects(engine) == {}
    pending = await store.get("crash")
    assert pending is not None and pending.fired_at is None

    async with running(TimerRunner(engine), recorder("survivor")):
        await eventually(has(engine, 1), timeout=5)
        await asyncio.sleep(0.3)
    assert await effects(engine) == {"crash": 1}


async def test_a_failing_handler_leaves_its_timer_pending_and_it_is_retried(engine: AsyncEngine) -> None:
    store = TimerStore(engine)
    for key in ("good1", "flaky", "good2"):
        await store.schedule(key, "sla.resolution.breach", at(0.1))
    record = recorder()
    failed_at: list[float] = []
    recovered = asyncio.Event()  # the target is down until the test says so: no race with the backoff

    async def handle(timer: Timer, conn: AsyncConnection) -> None:
        await record(timer, conn)  # written, then rolled back when the handler raises
        if timer.key == "flaky" and not recovered.is_set():
            failed_at.append(time.monotonic())
            raise RuntimeError("notification target down")

    async def retried_twice() -> bool:
        return len(failed_at) >= 4

    runner = TimerRunner(engine, retry_base=0.2)
    async with running(runner, handle):
        await eventually(retried_twice, timeout=10)  # the batch try, alone, 2 retries
        assert await effects(engine) == {"good1": 1, "good2": 1}
        flaky = await store.get("flaky")
        assert flaky is not None and flaky.fired_at is None and flaky.cancelled_at is None
        recovered.set()
        await eventually(has(engine, 3), timeout=10)
    assert await effects(engine) == {"good1": 1, "flaky": 1, "good2": 1}
    gaps = [later - earlier for earlier, later in itertools.pairwise(failed_at[1:])]
    assert gaps[0] >= 0.2 * 0.95 and gaps[1] >= 0.4 * 0.95, gaps  # retried alone, after a growing backoff


async def test_stop_and_cancel_end_the_runner_cleanly(engine: AsyncEngine) -> None:
    await TimerStore(engine).schedule("far", "ack.level1", at(3600))
    runner = TimerRunner(engine, max_idle=60)
    task = asyncio.create_task(runner.run(recorder()))
    await asyncio.sleep(0.2)
    runner.stop()
    await asyncio.wait_for(task, timeout=1)
    assert task.done() and task.exception() is None
    task = asyncio.create_task(runner.run(recorder()))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT 1"))).scalar() == 1  # the pool is still healthy
