"""Signed outbound notifications against a real HTTP receiver on loopback and a real PostgreSQL outbox."""

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from kefu import db
from services.escalation.adapters.notifier import Notifier, enqueue
from services.escalation.adapters.orm import notifications
from tests.integration.support import eventually, free_port, server_in_thread

pytestmark = pytest.mark.integration

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PAYLOAD = {"case_id": "c-1", "target": "oncall", "text": "客户威胁曝光 / threatens media exposure"}


@dataclass
class Received:
    at: float
    webhook_id: str
    body: bytes
    verified: bool
    answer: int | str


@dataclass
class Receiver:
    """A webhook receiver that answers from ``script`` (a status, "timeout" or "hang"), then ``default``."""

    port: int
    script: list[int | str] = field(default_factory=list)
    default: int = 200
    hang_seconds: float = 3.0
    requests: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def delivered(self) -> list[Received]:
        return [r for r in self.requests if isinstance(r.answer, int) and 200 <= r.answer < 300]

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            body = await request.body()
            try:
                Webhook(SECRET).verify(body, dict(request.headers))
                verified = True
            except WebhookVerificationError:
                verified = False
            answer = self.script.pop(0) if self.script else self.default
            self.requests.append(Received(time.monotonic(), request.headers["webhook-id"], body, verified, answer))
            if answer in ("timeout", "hang"):
                await asyncio.sleep(self.hang_seconds)
                return PlainTextResponse("too late")
            assert isinstance(answer, int)
            return PlainTextResponse("gone" if answer == 410 else "ok" if answer < 300 else "trouble", answer)

        return Starlette(routes=[Route("/hooks", receive, methods=["POST"])])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    fake = Receiver(port=free_port())
    with server_in_thread(fake.app(), fake.port, name="webhook-receiver"):
        yield fake


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


class _Ceiling(random.Random):
    """Jitter that always draws the top of the range, so the test knows each backoff delay."""

    def uniform(self, a: float, b: float) -> float:
        return b


# a deadline for what takes milliseconds on a quiet machine and may take seconds on a loaded one
SLOW = 60.0


def notifier(engine: AsyncEngine, http: httpx.AsyncClient, **options: Any) -> "Watched":
    # timeouts a loaded machine's answers keep well within (at 0.5 s, a 503 sometimes ended as a read timeout);
    # a test of timeouts sets its own, below the receiver's hang
    defaults: dict[str, Any] = {"base_delay": 0.05, "connect_timeout": 2.0, "read_timeout": 5.0, "lease": 10.0}
    return Watched(engine, http, {"oncall": SECRET}, **{**defaults, **options})


class Watched(Notifier):
    """A notifier the test can watch: each sleep it computed (None: nothing pending, its idle poll)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waits: list[float | None] = []

    async def _seconds_until_due(self) -> float | None:
        wait = await super()._seconds_until_due()
        self.waits.append(wait)
        return wait


async def a_full_pass(sender: Watched) -> None:
    """Return once ``sender`` has made a whole pass that began after this call: what it has not sent by then, it
    did not find due (instead of sleeping a while and hoping it looked meanwhile)."""
    seen = len(sender.waits)

    async def passed() -> bool:
        sender.wake()  # a pass under way when called ends, then the next one begins after the call
        return len(sender.waits) >= seen + 2

    await eventually(passed, timeout=SLOW)


@contextlib.asynccontextmanager
async def running(sender: Notifier) -> AsyncIterator[None]:
    task = asyncio.create_task(sender.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def add(engine: AsyncEngine, url: str, *, target: str = "oncall", message_id: str | None = None) -> str:
    async with engine.begin() as conn:
        return await enqueue(conn, target=target, url=url, payload=PAYLOAD, message_id=message_id)


async def row(engine: AsyncEngine, message_id: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(notifications).where(notifications.c.message_id == message_id))).one()


async def settled(engine: AsyncEngine, message_id: str) -> Any:
    """The row once it is delivered or dead."""

    async def probe() -> Any:
        found = await row(engine, message_id)
        return found if found.delivered_at is not None or found.dead_at is not None else None

    return await eventually(probe, timeout=SLOW)


async def test_retried_after_500_and_timeout_then_delivered_once_with_one_webhook_id(
    engine: AsyncEngine, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.script = [500, "timeout", 200]
    read_timeout = 1.5  # below the receiver's hang (3 s), above what its answers take under load
    sender = notifier(engine, http, base_delay=0.2, rng=_Ceiling(), read_timeout=read_timeout, idle_poll=3600)
    async with running(sender):
        message_id = await add(engine, receiver.url)
        sender.wake()
        done = await settled(engine, message_id)
        await a_full_pass(sender)  # nothing more is sent once delivered

    assert done.delivered_at is not None and done.dead_at is None
    assert done.attempts == 3
    assert "Timeout" in done.last_error  # the failure before the success stays on record
    assert [r.answer for r in receiver.requests] == [500, "timeout", 200]
    assert len(receiver.delivered()) == 1
    assert {r.webhook_id for r in receiver.requests} == {message_id}
    assert all(r.verified for r in receiver.requests)
    assert {r.body for r in receiver.requests} == {receiver.requests[0].body}
    assert json.loads(receiver.requests[0].body) == PAYLOAD
    first, second, third = (r.at for r in receiver.requests)
    # backoff with the jitter at its ceiling: 0.2 s after attempt 1 failed, 0.4 s after attempt 2 timed out; each
    # request is received after it was sent, so these lower bounds hold however slow the machine is
    assert second - first >= 0.2
    assert third - first >= 0.2 + read_timeout + 0.4
    # the upper bounds: it slept until the due time rather than its idle poll, an hour (how soon is the machine's)
    assert second - first < SLOW
    assert third - second < SLOW


async def test_a_receiver_that_always_fails_ends_in_a_dead_letter(
    engine: AsyncEngine, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.default = 503
    sender = notifier(engine, http, max_attempts=3)
    async with running(sender):
        message_id = await add(engine, receiver.url)
        sender.wake()  # as the service does on commit: its first scan may have come before the row (then 30 s idle)
        done = await settled(engine, message_id)
        await a_full_pass(sender)

    assert done.dead_at is not None and done.delivered_at is None
    assert done.attempts == 3
    assert done.last_error == "HTTP 503: trouble"
    assert [r.answer for r in receiver.requests] == [503, 503, 503]


async def test_gone_is_dead_at_once(engine: AsyncEngine, http: httpx.AsyncClient, receiver: Receiver) -> None:
    receiver.script = [410]
    sender = notifier(engine, http)
    async with running(sender):
        message_id = await add(engine, receiver.url)
        sender.wake()
        done = await settled(engine, message_id)
        await a_full_pass(sender)

    assert done.dead_at is not None
    assert done.attempts == 1
    assert done.last_error == "HTTP 410: gone"
    assert len(receiver.requests) == 1


async def test_a_target_without_a_secret_is_never_sent_unsigned(
    engine: AsyncEngine, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    sender = notifier(engine, http)
    async with running(sender):
        message_id = await add(engine, receiver.url, target="dingtalk")
        sender.wake()
        done = await settled(engine, message_id)

    assert done.dead_at is not None
    assert done.last_error == "no signing secret for target 'dingtalk'"
    assert receiver.requests == []


async def test_enqueue_commits_with_the_callers_transaction_and_once_per_message_id(
    engine: AsyncEngine, receiver: Receiver
) -> None:
    with pytest.raises(RuntimeError, match="case insert failed"):
        async with engine.begin() as conn:
            await enqueue(conn, target="oncall", url=receiver.url, payload=PAYLOAD, message_id="msg_rolled_back")
            raise RuntimeError("case insert failed")
    assert await add(engine, receiver.url, message_id="msg_case_1") == "msg_case_1"
    assert await add(engine, receiver.url, message_id="msg_case_1") == "msg_case_1"  # a replayed event

    async with engine.connect() as conn:
        ids = (await conn.execute(select(notifications.c.message_id))).scalars().all()
    assert ids == ["msg_case_1"]
    with pytest.raises(ValueError, match="must be http"):
        await add(engine, "ftp://example.com/hook")


async def test_restart_before_sending_loses_nothing(
    database_url: str, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    first = db.create_engine(database_url)
    message_id = await add(first, receiver.url)
    task = asyncio.create_task(notifier(first, http).run())
    task.cancel()  # stopped before it ran at all: the process died right after the commit
    await asyncio.gather(task, return_exceptions=True)
    await first.dispose()
    assert receiver.requests == []

    second = db.create_engine(database_url)
    try:
        async with running(notifier(second, http)):
            done = await settled(second, message_id)
    finally:
        await second.dispose()
    assert done.delivered_at is not None and done.attempts == 1
    assert [r.webhook_id for r in receiver.delivered()] == [message_id]


async def test_a_send_cut_off_by_a_crash_is_sent_again_after_the_lease(
    engine: AsyncEngine, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.script = ["hang"]
    crashing = notifier(engine, http, connect_timeout=1.0, read_timeout=2.0, lease=3.5)
    async with running(crashing):
        message_id = await add(engine, receiver.url)
        crashing.wake()
        await eventually(lambda: asyncio.sleep(0, result=receiver.requests))
    # the run is gone mid-request; its claim stays until the lease runs out
    leased = await row(engine, message_id)
    assert leased.attempts == 1 and leased.delivered_at is None

    async with running(notifier(engine, http)):
        done = await settled(engine, message_id)

    assert done.delivered_at is not None and done.attempts == 2
    # at-least-once: the receiver saw the message twice, under one webhook-id to deduplicate on
    assert [r.webhook_id for r in receiver.requests] == [message_id, message_id]
    assert receiver.requests[1].at - receiver.requests[0].at >= 2.0


async def test_two_notifiers_share_the_outbox_without_sending_anything_twice(
    engine: AsyncEngine, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    ids = [await add(engine, receiver.url) for _ in range(60)]
    async with running(notifier(engine, http, batch=4)), running(notifier(engine, http, batch=4)):

        async def all_delivered() -> bool:
            async with engine.connect() as conn:
                count = (
                    await conn.execute(select(func.count()).where(notifications.c.delivered_at.is_not(None)))
                ).scalar_one()
            return count == len(ids)

        await eventually(all_delivered)

    assert sorted(r.webhook_id for r in receiver.requests) == sorted(ids)


async def test_wake_sends_at_once_while_the_notifier_sleeps(
    engine: AsyncEngine, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    sender = notifier(engine, http, idle_poll=3600.0)
    async with running(sender):

        async def idle() -> bool:
            return None in sender.waits  # it looked, found nothing pending, and sleeps for up to an hour

        await eventually(idle, timeout=SLOW)
        started = time.monotonic()
        message_id = await add(engine, receiver.url)
        sender.wake()
        await settled(engine, message_id)
        latency = time.monotonic() - started
    assert latency < SLOW  # only the wake-up ends that sleep this soon (how soon is the machine's)
    assert [r.webhook_id for r in receiver.requests] == [message_id]
