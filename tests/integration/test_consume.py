"""The consumer loop on a real Tansu broker and a real PostgreSQL: what fails for the record's own reason is
dead-lettered at once with a reason that names no content, what fails for the infrastructure is retried with backoff,
anything else a few times; a record waiting for its retry holds up only its own partition."""

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from contracts import CONTACTS, ContactEvent, dlq
from kefu import consume, kafka
from tests.integration.support import contact_event, eventually, publish, publish_contacts, read_topic
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def consuming(
    broker: EmbeddedKafka, handler: kafka.Handler[ContactEvent], *, retry_delay: float = 0.01, max_attempts: int = 3
) -> AsyncIterator[None]:
    """``kafka.consume`` on the contacts topic with ``handler`` (three attempts for what the handler refuses)."""
    consumer = kafka.create_consumer(broker.bootstrap, CONTACTS, group_id=f"test-{uuid.uuid4().hex[:8]}")
    producer = kafka.create_producer(broker.bootstrap)
    await consumer.start()
    await producer.start()
    task = asyncio.create_task(
        kafka.consume(consumer, producer, ContactEvent, handler, retry_delay=retry_delay, max_attempts=max_attempts)
    )
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()
        await producer.stop()


async def publish_to(bootstrap: str, partition: int, *events: ContactEvent) -> None:
    """Publish ``events`` to one partition of the contacts topic, whatever their keys hash to."""
    producer = kafka.create_producer(bootstrap)
    await producer.start()
    try:
        for event in events:
            value, key = event.model_dump_json().encode(), event.conversation_key.encode()
            await producer.send_and_wait(CONTACTS, value, key=key, partition=partition)
    finally:
        await producer.stop()


def dead_lettered(reason: str) -> float:
    return REGISTRY.get_sample_value("kefu_dlq_records_total", {"topic": CONTACTS, "reason": reason}) or 0.0


def headers_of(record: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


async def test_a_record_its_handler_keeps_refusing_is_dead_lettered_and_the_next_is_applied(
    broker: EmbeddedKafka,
) -> None:
    poison, good = contact_event("same", text="poison"), contact_event("same", text="fine")
    attempts: dict[str, int] = {}
    applied: list[str] = []

    async def handler(event: ContactEvent) -> None:
        attempts[event.message.text] = attempts.get(event.message.text, 0) + 1
        if event.message.text == "poison":
            raise ValueError("this contact can never be applied")
        applied.append(event.message.text)

    async with consuming(broker, handler):
        await publish_contacts(broker.bootstrap, poison, good)  # same conversation: one partition, in order

        async def done() -> list[str]:
            return applied

        assert await eventually(done) == ["fine"]
    assert attempts == {"poison": 3, "fine": 1}
    (dead,) = await read_topic(broker.bootstrap, dlq(CONTACTS), at_least=1)
    assert ContactEvent.model_validate_json(dead.value).message.text == "poison"
    assert dead.key == poison.conversation_key.encode()
    headers = headers_of(dead)
    assert headers["kefu-dlq-reason"] == "ValueError, 3 attempts"  # the class, never the message: it may quote data
    assert headers["kefu-dlq-class"] == "retries_exhausted"
    assert headers["kefu-dlq-topic"] == CONTACTS
    assert headers["kefu-dlq-event-id"] == str(poison.event_id)
    assert headers["kefu-dlq-attempts"] == "3"


async def test_a_record_that_fails_for_the_infrastructure_is_retried_until_it_goes_through(
    broker: EmbeddedKafka,
) -> None:
    failures = 6  # more than max_attempts: an outage is never a reason to dead-letter
    applied: list[str] = []

    async def handler(event: ContactEvent) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise ConnectionRefusedError("the database is restarting")
        applied.append(event.message.text)

    async with consuming(broker, handler):
        await publish_contacts(broker.bootstrap, contact_event("c", text="after the outage"))

        async def done() -> list[str]:
            return applied

        assert await eventually(done) == ["after the outage"]
    assert await read_topic(broker.bootstrap, dlq(CONTACTS), timeout=1) == []


REFUSALS = {  # what the handler does with a record -> the SQLSTATE and the dead-letter class it must get
    "not a number": ("SELECT CAST(CAST(:value AS text) AS integer)", "secret-4711", "22P02", "data_error"),
    "refused by asyncpg, quoting the value": ("SELECT CAST(:value AS integer)", "secret-4711", "22000", "data_error"),
    "NUL, as issue 10 saw": ("SELECT CAST(:value AS text)", "secret-4711\x00", "22021", "data_error"),
    "a lone surrogate": ("SELECT CAST(:value AS text)", "secret-4711\ud800", "22000", "data_error"),
    "a unique key taken": ("INSERT INTO seen VALUES (:value)", "secret-4711", "23505", "integrity_error"),
}


async def test_a_record_the_database_refuses_is_dead_lettered_at_once_without_its_data(
    broker: EmbeddedKafka, database_url: str
) -> None:
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE seen (value text PRIMARY KEY)"))
        await conn.execute(text("INSERT INTO seen VALUES ('secret-4711')"))
    attempts = dict.fromkeys(REFUSALS, 0)
    applied: list[str] = []
    before = {c: dead_lettered(c) for c in ("data_error", "integrity_error")}

    raced = False

    async def handler(event: ContactEvent) -> None:
        nonlocal raced
        if event.message.text in REFUSALS:
            attempts[event.message.text] += 1
            statement, value, _, _ = REFUSALS[event.message.text]
            async with engine.begin() as conn:  # data the handler derives itself, not the event's (that is clean)
                await conn.execute(text(statement), {"value": value})
        if event.message.text == "a race lost" and not raced:  # a check-then-insert another writer got in between
            raced = True
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO seen VALUES ('secret-4711')"))
        applied.append(event.message.text)

    refused = [contact_event("same", text=what) for what in REFUSALS]
    try:
        async with consuming(broker, handler, retry_delay=0.2, max_attempts=5):
            last = [contact_event("same", text="a race lost"), contact_event("same")]
            await publish_contacts(broker.bootstrap, *refused, *last)  # one partition, in order

            async def done() -> list[str]:
                return applied if len(applied) >= 2 else []  # not the first alone: the second may come in a later fetch

            assert await eventually(done) == ["a race lost", "你好"]  # applied on its second attempt
    finally:
        await engine.dispose()
    assert attempts == {**dict.fromkeys(REFUSALS, 1), "a unique key taken": 2}  # a race would be over by then
    letters = await read_topic(broker.bootstrap, dlq(CONTACTS), at_least=len(REFUSALS))
    assert [ContactEvent.model_validate_json(r.value) for r in letters] == refused
    for letter, (_, _, sqlstate, reason_class) in zip(letters, REFUSALS.values(), strict=True):
        headers = headers_of(letter)
        assert headers["kefu-dlq-class"] == reason_class
        assert f"SQLSTATE {sqlstate}" in headers["kefu-dlq-reason"]
        assert headers["kefu-dlq-attempts"] == ("2" if reason_class == "integrity_error" else "1")
        assert not any("secret" in v or "INSERT" in v or "SELECT" in v for v in headers.values()), headers
    assert dead_lettered("data_error") == before["data_error"] + 4
    assert dead_lettered("integrity_error") == before["integrity_error"] + 1


async def test_a_record_that_does_not_parse_is_dead_lettered_naming_fields_not_content(broker: EmbeddedKafka) -> None:
    event = contact_event("c").model_dump(mode="json")
    too_long = {**event, "message": {"text": "secret " * 10_000}, "metadata": {"phone 13800138000": 13800138000}}
    before = dead_lettered("unparseable")
    applied: list[str] = []

    async def handler(event: ContactEvent) -> None:
        applied.append(event.message.text)

    async with consuming(broker, handler):
        bad = [(json.dumps(too_long).encode(), b"c"), (b'{"event_id": "secret', b"c"), (b"", b"c")]
        await publish(broker.bootstrap, CONTACTS, *bad)
        letters = await read_topic(broker.bootstrap, dlq(CONTACTS), at_least=3)
    assert applied == []
    reasons = [headers_of(r)["kefu-dlq-reason"] for r in letters]
    assert reasons[0] == "ContactEvent invalid: message.text string_too_long; metadata.* string_type"
    assert reasons[1] == reasons[2] == "ContactEvent invalid: json_invalid"
    assert not any("secret" in r or "13800138000" in r for r in reasons)
    assert [headers_of(r)["kefu-dlq-class"] for r in letters] == ["unparseable"] * 3
    assert [r.value for r in letters] == [value for value, _ in bad]  # as it was, to be replayed after a fix
    assert dead_lettered("unparseable") == before + 3


async def test_a_record_waiting_for_its_retry_holds_up_only_its_own_partition(broker: EmbeddedKafka) -> None:
    """Issue 10: six poisoned messages delayed an ordinary contact on another partition by 25 s."""
    poisons = [contact_event(f"poison-{i}", text="poison") for i in range(6)]
    ordinary = contact_event("ordinary", text="ordinary")
    applied: dict[str, float] = {}
    failures = 0

    async def handler(event: ContactEvent) -> None:
        nonlocal failures
        if event.message.text == "poison" and not applied.get("fixed"):
            failures += 1
            raise RuntimeError("a bug, until fixed")
        applied[event.conversation_key] = time.monotonic()

    backoff = 60.0  # at least 48 s with its jitter: longer than the rest of the test takes on any machine
    async with consuming(broker, handler, retry_delay=backoff, max_attempts=3):
        await publish_to(broker.bootstrap, 0, *poisons)

        async def tried() -> int:
            return failures

        await eventually(tried)
        published = time.monotonic()
        await publish_to(broker.bootstrap, 1, ordinary)

        async def ordinary_applied() -> float | None:
            return applied.get(ordinary.conversation_key)

        # not after the backoff: applied while the first poison still waits for its retry (an order, not a
        # number of seconds; the bound only says the test did not take the backoff's minimum either)
        assert await eventually(ordinary_applied, timeout=30) - published < backoff * 0.8
        assert failures == 1  # the first poison waits for its retry; the five behind it were not tried
        applied["fixed"] = 1.0
    assert not any(p.conversation_key in applied for p in poisons)


async def test_the_backoff_of_an_outage_grows(broker: EmbeddedKafka, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[float] = []
    backoffs: list[float] = []  # each delay the loop chose, read where it parks the partition
    park = consume._Parked

    def parked(records: list[Any], due: float) -> Any:
        backoffs.append(due - asyncio.get_running_loop().time())
        return park(records, due)

    monkeypatch.setattr(consume, "_Parked", parked)

    async def handler(event: ContactEvent) -> None:
        attempts.append(time.monotonic())
        if len(attempts) < 6:
            raise ConnectionRefusedError("the database is restarting")

    async with consuming(broker, handler, retry_delay=0.05, max_attempts=2):
        await publish_contacts(broker.bootstrap, contact_event("c"))

        async def done() -> bool:
            return len(attempts) == 6

        await eventually(done)
    # 0.05, 0.1, 0.2, 0.4, 0.8 s, with jitter (as chosen, not as measured: a loaded machine adds to each gap)
    assert len(backoffs) >= 5
    for n, backoff in enumerate(backoffs[:5]):
        assert 0.05 * 2**n * 0.8 - 0.001 <= backoff <= 0.05 * 2**n, (n, backoffs)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert all(gap >= backoff for gap, backoff in zip(gaps, backoffs, strict=False)), (gaps, backoffs)  # waited out
    assert await read_topic(broker.bootstrap, dlq(CONTACTS), timeout=1) == []  # an outage never dead-letters
