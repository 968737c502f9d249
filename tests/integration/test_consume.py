"""The consumer loop on a real Tansu broker: a record its handler keeps refusing is dead-lettered and the partition
moves on; a record that fails because the infrastructure does is retried until it goes through."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from contracts import CONTACTS, ContactEvent, dlq
from kefu import kafka
from kefu.embedded import EmbeddedKafka
from tests.integration.support import contact_event, eventually, publish_contacts, read_topic

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def consuming(broker: EmbeddedKafka, handler: kafka.Handler[ContactEvent]) -> AsyncIterator[None]:
    """``kafka.consume`` on the contacts topic with ``handler``, three attempts for what the handler refuses."""
    consumer = kafka.create_consumer(broker.bootstrap, CONTACTS, group_id=f"test-{uuid.uuid4().hex[:8]}")
    producer = kafka.create_producer(broker.bootstrap)
    await consumer.start()
    await producer.start()
    task = asyncio.create_task(
        kafka.consume(consumer, producer, ContactEvent, handler, retry_delay=0.01, max_attempts=3)
    )
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()
        await producer.stop()


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
    reason = dict(dead.headers)["kefu-dlq-reason"].decode()
    assert reason == "handler failed 3 times: ValueError: this contact can never be applied"


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
