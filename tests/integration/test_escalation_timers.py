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
from typing import Any

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


# a deadline for what takes milliseconds on a quiet machine and may take seconds on a loaded one, far below the hour a
# runner in these tests would sleep if it missed a due time or a wake-up
SLOW = 60.0


class Watched(TimerRunner):
    """A runner the test can watch: what each pass claimed, and each wait it computed before sleeping."""

    def __init__(self, engine: AsyncEngine, **options: Any) -> None:
        super().__init__(engine, **options)
        self.passes: list[int] = []
        self.waits: list[float] = []

    async def fire_due(self, handler: Handler) -> int:
        claimed = await super().fire_due(handler)
        self.passes.append(claimed)
        return claimed

    async def _seconds_to_next(self) -> float:
        wait = await super()._seconds_to_next()
        self.waits.append(wait)
        return wait


async def a_full_pass(*runners: Watched) -> None:
    """Return once each of ``runners`` has made a whole pass that began after this call: a timer it has not fired
    by then, it did not find due (instead of sleeping a while and hoping it looked meanwhile)."""
    seen = [len(runner.passes) for runner in runners]

    async def passed() -> bool:
        for runner in runners:
            runner.wake()  # a pass under way when called ends, then the next one begins after the call
        return all(len(runner.passes) >= n + 2 for runner, n in zip(runners, seen, strict=True))

    await eventually(passed, timeout=SLOW)


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
        await asyncio.wait_for(task, timeout=SLOW)


def at(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def has(engine: AsyncEngine, count: int) -> Callable[[], Awaitable[dict[str, int] | None]]:
    async def probe() -> dict[str, int] | None:
        found = await effects(engine)
        return found if sum(found.values()) >= count else None

    return probe


async def test_timers_fire_at_their_due_time_not_before(engine: AsyncEngine) -> None:
    runner = TimerRunner(engine, max_idle=3600)
    store = TimerStore(engine, wake=runner.wake)
    due = {"a": at(0.6), "b": at(1.2)}
    for key, due_at in due.items():
        await store.schedule(key, "sla.first_response.breach", due_at, payload={"queue": "presales"})
    async with running(runner, recorder()):
        await eventually(has(engine, 2), timeout=SLOW)
    fired = await fired_times(engine)
    for key, due_at in due.items():
        # not before: one clock, the host's, read here by Python and in the handler by PostgreSQL (clock_timestamp)
        assert due_at <= fired[key], (key, fired[key] - due_at)
        # at the due time the runner computed, not on its idle poll, an hour away (how soon after is the machine's)
        assert fired[key] - due_at < timedelta(seconds=SLOW), (key, fired[key] - due_at)
    assert fired["a"] < fired["b"]
    timer = await store.get("a")
    assert timer is not None and timer.fired_at is not None and timer.payload == {"queue": "presales"}
    assert await effects(engine) == {"a": 1, "b": 1}


async def test_wake_fires_an_earlier_timer_without_waiting_for_the_later_one(engine: AsyncEngine) -> None:
    runner = Watched(engine, max_idle=7200)
    store = TimerStore(engine, wake=runner.wake)
    await store.schedule("later", "ack.level2", at(3600))
    async with running(runner, recorder()):

        async def asleep_for_the_hour() -> bool:
            return any(wait > 3000 for wait in runner.waits)

        await eventually(asleep_for_the_hour, timeout=SLOW)  # it looked, and now sleeps towards the one-hour timer
        scheduled = datetime.now(UTC)
        await store.schedule("sooner", "ack.level2", at(0.1))
        await eventually(has(engine, 1), timeout=SLOW)
    fired = await fired_times(engine)
    assert list(fired) == ["sooner"]
    # only the wake-up can end that sleep this soon (how soon is the machine's)
    assert fired["sooner"] - scheduled < timedelta(seconds=SLOW)


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
    runner = Watched(engine)
    async with running(runner, recorder()):
        await eventually(has(engine, 1), timeout=SLOW)
        # scheduling a fired key again changes nothing either
        assert await store.schedule("sla:c1", "sla.resolution.warn", at(0)) is False
        await a_full_pass(runner)
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
    runner = Watched(engine)
    async with running(runner, recorder()):
        await eventually(has(engine, 2), timeout=SLOW)
        await a_full_pass(runner)
    assert await effects(engine) == {"keep": 1, "other": 1}
    assert await store.cancel("keep") is False  # fired: too late to cancel
    cancelled = await store.get("one")
    assert cancelled is not None and cancelled.cancelled_at is not None and cancelled.fired_at is None


async def test_two_runners_fire_each_timer_exactly_once(engine: AsyncEngine) -> None:
    store = TimerStore(engine)
    keys = [f"t{n}" for n in range(400)]
    for n, key in enumerate(keys):
        await store.schedule(key, "sla.next_response.breach", at(0.2 + n / 1000))

    b_fires = asyncio.Event()

    def slow(name: str) -> Handler:
        record = recorder(name)

        async def handle(timer: Timer, conn: AsyncConnection) -> None:
            if name == "a":
                # a holds its rows until b fires some of its own: the two overlap, whichever of them starts first
                await b_fires.wait()
            await record(timer, conn)
            if name == "b":
                b_fires.set()
            await asyncio.sleep(0.001)  # hold the rows a little longer

        return handle

    first, second = Watched(engine, batch=10), Watched(engine, batch=10)
    async with running(first, slow("a")), running(second, slow("b")):
        await eventually(has(engine, len(keys)), timeout=60)
        await a_full_pass(first, second)
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
        await eventually(has(engine, 1), timeout=SLOW)
    assert await effects(engine) == {"before": 1}  # stopped before the others came due
    # down: the clock moves on, every "down" timer comes due, one after another; "after" is a second away
    async with engine.begin() as conn:
        for n, key in enumerate(down):
            due = func.now() - timedelta(seconds=1) + timedelta(seconds=n / 100)
            await conn.execute(update(timers).where(timers.c.key == key).values(due_at=due))
        await conn.execute(
            update(timers).where(timers.c.key == "after").values(due_at=func.now() + timedelta(seconds=1))
        )

    second = Watched(engine)
    record = recorder("second")
    slept_before: dict[str, int] = {}  # each key the second runner fired -> how many sleeps it had computed by then

    async def handle(timer: Timer, conn: AsyncConnection) -> None:
        await record(timer, conn)
        slept_before[timer.key] = len(second.waits)

    async with running(second, handle):
        await eventually(has(engine, 2 + len(down)), timeout=SLOW)
    # immediately: every timer that came due while it was down fired in its first passes, before it ever slept
    # (whereas how many seconds those passes take is the machine's)
    assert {key: slept_before[key] for key in down} == dict.fromkeys(down, 0)
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
    await asyncio.wait_for(inside.wait(), timeout=SLOW)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await effects(engine) == {}
    pending = await store.get("crash")
    assert pending is not None and pending.fired_at is None

    survivor = Watched(engine)
    async with running(survivor, recorder("survivor")):
        await eventually(has(engine, 1), timeout=SLOW)
        await a_full_pass(survivor)
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
        await eventually(retried_twice, timeout=SLOW)  # the batch try, alone, 2 retries
        assert await effects(engine) == {"good1": 1, "good2": 1}
        flaky = await store.get("flaky")
        assert flaky is not None and flaky.fired_at is None and flaky.cancelled_at is None
        recovered.set()
        await eventually(has(engine, 3), timeout=SLOW)
    assert await effects(engine) == {"good1": 1, "flaky": 1, "good2": 1}
    gaps = [later - earlier for earlier, later in itertools.pairwise(failed_at[1:])]
    assert gaps[0] >= 0.2 * 0.95 and gaps[1] >= 0.4 * 0.95, gaps  # retried alone, after a growing backoff


async def test_stop_and_cancel_end_the_runner_cleanly(engine: AsyncEngine) -> None:
    await TimerStore(engine).schedule("far", "ack.level1", at(3600))
    runner = TimerRunner(engine, max_idle=60)
    task = asyncio.create_task(runner.run(recorder()))
    await asyncio.sleep(0.2)
    runner.stop()
    await asyncio.wait_for(task, timeout=SLOW)  # once its pass under way, if any, is committed
    assert task.done() and task.exception() is None
    task = asyncio.create_task(runner.run(recorder()))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT 1"))).scalar() == 1  # the pool is still healthy


async def test_a_wake_looks_only_for_a_timer_due_before_the_next_look(engine: AsyncEngine) -> None:
    """A commit wakes the runner with the earliest due time it scheduled (``wake(due)``): one due after the look the
    runner has planned costs no look (issue 12: woken by every commit, it looked 33 times a second at 40 contacts/s);
    one due before it brings the look forward to its due time."""
    store = TimerStore(engine)
    await store.schedule("later", "sla.resolution.breach", at(SLOW / 2))
    runner = Watched(engine, max_idle=3600)

    async def looked() -> bool:
        return len(runner.waits) >= 1

    async with running(runner, recorder()):
        await eventually(looked, timeout=SLOW)
        for _ in range(50):
            runner.wake(at(SLOW))  # after "later": nothing to look for before then
        await asyncio.sleep(0.3)
        assert runner.passes == [0]
        sooner = at(0.3)
        await store.schedule("sooner", "sla.resolution.breach", sooner)
        runner.wake(sooner)
        await eventually(has(engine, 1), timeout=SLOW)
        await asyncio.sleep(0.3)
    assert await effects(engine) == {"sooner": 1}
    assert sooner <= (await fired_times(engine))["sooner"]
    assert runner.passes == [0, 1]  # no look but the first and the one at "sooner"'s due time
