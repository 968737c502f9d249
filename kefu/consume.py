"""The consumer loop: each record handed to an idempotent handler, its offset committed after the handler's
transaction; or, in batch mode, the records of one fetch applied in one transaction (issue 12).

Delivery is at-least-once. What a failure leads to is ``kefu.failures``' call:

* the infrastructure's (database or network down, a deadlock): the record is retried, with backoff, for as long as it
  lasts;
* the record's own (SQLSTATE 22/23, a validation error), or a record that does not parse: it goes to the topic's
  ``.dlq`` sibling at once (``kefu.dlq``: reason headers, ``kefu_dlq_records_total``);
* anything else: retried ``max_attempts`` times, then dead-lettered.

A record waiting for its next attempt holds up only its own partition: it and the records fetched behind it are kept,
and the partition paused, until the backoff is over; every other partition goes on.

``consume_batches`` hands the handler the parsed records of one fetch (each partition's in offset order), to be
applied in one transaction (``kefu.batch``), and commits their offsets after it. A record that fails there is applied
alone, with everything above, and the records behind it keep their order: the handler stops at it (``Stopped``), and
the loop goes on with the rest once it is done with, or parks its partition.
"""

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias, TypeVar
from uuid import UUID

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Histogram
from pydantic import BaseModel, ValidationError

from contracts.text import validate_json
from kefu import dlq
from kefu.batch import Stopped
from kefu.failures import PERMANENT_ATTEMPTS, permanent, summary, transient
from kefu.logs import fields_of, log_context

__all__ = ["BatchHandler", "Handler", "Stopped", "consume", "consume_batches"]

log = logging.getLogger("kefu.kafka")  # the consumer loop logs as it always has: in kefu.kafka

M = TypeVar("M", bound=BaseModel)

MAX_RECORDS = 500  # a fetch, and so a batch, holds at most this many records

BATCH_SIZE = Histogram(
    "kefu_batch_size",
    "Records a batch handler was given to apply in one transaction (a record applied alone is a batch of one)",
    ["topic"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)

Record: TypeAlias = ConsumerRecord[bytes, bytes]


Handler = Callable[[M], Awaitable[None]]
BatchHandler = Callable[[Sequence[M]], Awaitable[None]]


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
        await loop.apply_fetch(await consumer.getmany(timeout_ms=loop.wait_ms(), max_records=MAX_RECORDS))
        await loop.apply_due()


async def consume_batches(
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    model: type[M],
    handler: BatchHandler[M],
    *,
    retry_delay: float = 1.0,
    max_retry_delay: float = 30.0,
    max_attempts: int = 5,
) -> None:
    """Apply the records of ``consumer`` a fetch at a time: ``handler`` applies the parsed records of one fetch (each
    partition's in offset order) in one transaction, or those before the first that fails (``Stopped``: that one is
    then applied alone, failing as ``consume``'s records fail), or none (each is then applied alone).
    """
    loop = _BatchLoop(consumer, producer, model, handler, retry_delay, max_retry_delay, max_attempts)
    while True:
        await loop.apply_fetch(await consumer.getmany(timeout_ms=loop.wait_ms(), max_records=MAX_RECORDS))
        await loop.apply_due()


@dataclass
class _Retry:
    offset: int  # the record that failed
    attempts: int


@dataclass
class _Parked:
    records: list[Record]  # the one that failed, then those behind it
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
        due = {tp: p.records for tp, p in self._parked.items() if p.due <= now}
        for tp in due:
            del self._parked[tp]
        # a partition no longer assigned: its new owner applies them from the committed offset
        await self.apply_fetch({tp: records for tp, records in due.items() if tp in self._consumer.assignment()})

    async def apply_fetch(self, fetched: dict[TopicPartition, list[Record]]) -> None:
        """Apply the records of one fetch, each partition's in offset order."""
        for tp, records in fetched.items():
            await self.apply(tp, records)

    async def apply(self, tp: TopicPartition, records: list[Record]) -> None:
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

    async def _apply(self, tp: TopicPartition, record: Record) -> bool:
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
        record: Record,
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
        record: Record,
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

    def _park(self, tp: TopicPartition, records: list[Record]) -> None:
        """Keep ``records`` until the backoff of the first is over; fetch nothing more from ``tp`` meanwhile."""
        if tp not in self._consumer.assignment():
            return  # revoked meanwhile: its new owner starts from the committed offset
        attempts = self._retries[tp].attempts
        delay = min(self._retry_delay * 2 ** (attempts - 1), self._max_retry_delay) * random.uniform(0.8, 1.0)  # noqa: S311  # jitter
        self._parked[tp] = _Parked(records, asyncio.get_running_loop().time() + delay)
        self._consumer.pause(tp)


@dataclass
class _Lane:
    """The records of one partition in a fetch not done with yet, each with its message (None: does not parse)."""

    tp: TopicPartition
    items: list[tuple[Record, BaseModel | None]] = field(default_factory=list)

    def done(self, count: int, offsets: dict[TopicPartition, int]) -> None:  # their offsets may be committed
        if count:
            offsets[self.tp] = self.items[count - 1][0].offset + 1
            del self.items[:count]

    def batchable(self) -> int:
        """How many records from the first on may go into a batch: up to one that does not parse."""
        return next((i for i, (_, message) in enumerate(self.items) if message is None), len(self.items))


class _BatchLoop(_Loop):
    """``consume_batches``: a ``_Loop`` whose records of one fetch go to the handler together."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        model: type[M],
        handler: BatchHandler[M],
        retry_delay: float,
        max_retry_delay: float,
        max_attempts: int,
    ) -> None:
        super().__init__(consumer, producer, model, self._alone, retry_delay, max_retry_delay, max_attempts)
        self._batch: BatchHandler[BaseModel] = handler  # type: ignore[assignment]  # model's instances only
        self._topic = next(iter(consumer.subscription()), "")

    async def _alone(self, message: BaseModel) -> None:
        """A record applied alone: a batch of one, failing with its own failure."""
        BATCH_SIZE.labels(self._topic).observe(1)
        try:
            await self._batch([message])
        except Stopped as stopped:
            raise stopped.cause from None

    async def apply_fetch(self, fetched: dict[TopicPartition, list[Record]]) -> None:
        """Apply the records of one fetch in as few batches as their failures allow; commit their offsets once."""
        lanes: list[_Lane] = []
        for tp, records in fetched.items():
            self._parked.pop(tp, None)  # fetched again: the partition was assigned anew, from its committed offset
            lanes.append(_Lane(tp, [(record, self._parse(record)) for record in records]))
        offsets: dict[TopicPartition, int] = {}
        while lanes := [lane for lane in lanes if lane.items]:
            for lane in lanes:
                await self._heads(lane, offsets)
            await self._apply_batch([lane for lane in lanes if lane.items], offsets)
        await self._commit(offsets)
        for tp in fetched:
            if tp not in self._parked and tp in self._consumer.paused():
                self._consumer.resume(tp)

    def _parse(self, record: Record) -> BaseModel | None:
        try:
            return validate_json(self._model, record.value or b"")
        except ValidationError:
            return None  # ``_apply`` dead-letters it, naming why

    async def _heads(self, lane: _Lane, offsets: dict[TopicPartition, int]) -> None:
        """Apply alone the records at the head of ``lane`` that go alone: one waiting for its next attempt, one that
        does not parse (dead-lettered). Park the lane at one that must wait."""
        while lane.items and (lane.items[0][1] is None or lane.items[0][0].offset == self._failed_at(lane.tp)):
            await self._alone_at_head(lane, offsets)

    def _failed_at(self, tp: TopicPartition) -> int | None:
        return retry.offset if (retry := self._retries.get(tp)) is not None else None

    async def _alone_at_head(self, lane: _Lane, offsets: dict[TopicPartition, int]) -> None:
        if await self._apply(lane.tp, lane.items[0][0]):
            lane.done(1, offsets)
        else:
            self._park(lane.tp, [record for record, _ in lane.items])
            lane.items.clear()

    async def _apply_batch(
        self, lanes: list[_Lane], offsets: dict[TopicPartition, int], limit: int = MAX_RECORDS
    ) -> None:
        """One batch: each lane's records up to one that does not parse (``limit`` in all), in one call of the
        handler."""
        taken = []
        for lane in lanes:
            taken.append((lane, min(lane.batchable(), limit)))
            limit -= taken[-1][1]
        messages = [message for lane, n in taken for _, message in lane.items[:n] if message is not None]
        if not messages:
            return
        BATCH_SIZE.labels(self._topic).observe(len(messages))
        try:
            await self._batch(messages)
        except Stopped as stopped:
            log.debug("a record failed in a batch (%s); applying it alone", summary(stopped.cause))
            await self._stopped(taken, stopped, offsets)
            return
        except Exception as exc:  # nothing of the batch committed: one record per transaction finds the failing one
            if not transient(exc):
                log.warning("a batch of %d failed (%s); applying its records one by one", len(messages), summary(exc))
            for lane, _ in taken:
                while lane.items:
                    await self._alone_at_head(lane, offsets)
            return
        for lane, n in taken:
            lane.done(n, offsets)

    async def _stopped(
        self, taken: list[tuple[_Lane, int]], stopped: Stopped, offsets: dict[TopicPartition, int]
    ) -> None:
        """The handler applied the first ``stopped.applied`` records of the batch, and the one at ``stopped.at``
        failed: mark those done, apply those rolled back with it as a batch again (it fails again at the head of the
        next), else apply it alone; the records after it go into the next batch."""
        applied = stopped.applied
        for lane, n in taken:
            if applied < n:
                lane.done(applied, offsets)
                break
            lane.done(n, offsets)
            applied -= n
        else:
            return
        if stopped.at > stopped.applied:
            await self._apply_batch([lane for lane, _ in taken if lane.items], offsets, stopped.at - stopped.applied)
        else:
            await self._alone_at_head(lane, offsets)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:  # a partition moved to another member: it applies them again, once
            log.warning("could not commit %s (%s); their records may be applied again", offsets, exc)


def _where(record: Record) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"
