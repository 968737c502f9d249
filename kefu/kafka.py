"""Kafka wiring: the producer every service publishes with, topic creation, and the consumer loop.

Delivery is at-least-once: ``consume`` hands each record to an idempotent handler and commits the
offset only after the handler's transaction. A record that cannot be parsed, or that its handler keeps
refusing for a reason of its own (not the database or the network being down), goes to the topic's
``.dlq`` sibling with the reason in a header, so it never blocks its partition.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError

from contracts.topics import dlq

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

DEFAULT_PARTITIONS = 6


def create_producer(bootstrap: str, *, request_timeout_ms: int = 10_000) -> AIOKafkaProducer:
    """Return an unstarted producer that waits for every in-sync replica (``acks=all``).

    The idempotent producer is off on purpose: Tansu does not implement InitProducerId, and
    duplicates are absorbed by idempotent consumers anyway.
    """
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=2,
        enable_idempotence=False,
        request_timeout_ms=request_timeout_ms,
        client_id="kefu",
    )


async def broker_reachable(producer: AIOKafkaProducer, *, timeout: float = 2.0) -> None:
    """Raise unless the broker answers a metadata request within ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        await producer.client.fetch_all_metadata()


async def ensure_topics(bootstrap: str, topics: Iterable[str], *, partitions: int = DEFAULT_PARTITIONS) -> None:
    """Create the topics that do not exist yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="kefu-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            await admin.create_topics([NewTopic(t, partitions, 1) for t in missing])
            log.info("created topics %s", missing)
    finally:
        await admin.close()


def create_consumer(bootstrap: str, topic: str, *, group_id: str) -> AIOKafkaConsumer:
    """Return an unstarted consumer that leaves offset commits to ``consume``."""
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id=group_id,
    )


Handler = Callable[[M], Awaitable[None]]


async def consume(
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    model: type[M],
    handler: Handler[M],
    *,
    retry_delay: float = 1.0,
    max_attempts: int = 5,
) -> None:
    """Apply every record of ``consumer`` with ``handler`` until cancelled.

    A record that does not parse as ``model`` goes to the dead-letter topic. A handler failure is retried from the
    same offset after ``retry_delay``: for as long as it takes when the failure is the infrastructure's (database
    or network down, a deadlock: see ``transient``), ``max_attempts`` times when it is not, then dead-lettered.
    """
    while True:
        batches = await consumer.getmany(timeout_ms=500, max_records=500)
        for tp, records in batches.items():
            for record in records:
                await _apply(record, producer, model, handler, retry_delay=retry_delay, max_attempts=max_attempts)
            await consumer.commit({tp: records[-1].offset + 1})


def transient(exc: BaseException) -> bool:
    """Whether a handler failure is the infrastructure's, so that the same record may well succeed later."""
    if isinstance(exc, OSError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        # 08 connection, 40 deadlock or serialization, 53 resources, 57 operator intervention, 58 system error
        return code is None or str(code)[:2] in {"08", "40", "53", "57", "58"}
    return False


async def _apply(
    record: ConsumerRecord[bytes, bytes],
    producer: AIOKafkaProducer,
    model: type[M],
    handler: Handler[M],
    *,
    retry_delay: float,
    max_attempts: int,
) -> None:
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    try:
        message = model.model_validate_json(record.value or b"")
    except ValidationError as exc:
        await _dead_letter(
            record, producer, f"{model.__name__} invalid: {exc.errors(include_url=False, include_input=False)}"
        )
        return
    attempts = 0
    while True:
        try:
            await handler(message)
            return
        except Exception as exc:
            attempts += 1
            if not transient(exc) and attempts >= max_attempts:
                log.exception("handler refused %s %d times; dead-lettering it", where, attempts)
                await _dead_letter(record, producer, f"handler failed {attempts} times: {type(exc).__name__}: {exc}")
                return
            log.exception("handler failed on %s (attempt %d); retrying", where, attempts)
        await asyncio.sleep(retry_delay)


async def _dead_letter(record: ConsumerRecord[bytes, bytes], producer: AIOKafkaProducer, reason: str) -> None:
    reason = reason[:4000]
    log.warning("dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
    await producer.send_and_wait(
        dlq(record.topic), record.value, key=record.key, headers=[("kefu-dlq-reason", reason.encode())]
    )
