"""A consumer's backlog (issue 12: above capacity, work waits in Kafka and the wait is visible): the records on its
partitions it has not applied yet, as ``kafka.backlog_of`` and ``kefu_consumer_backlog`` report them."""

from typing import Any

import pytest
from aiokafka import TopicPartition
from prometheus_client import REGISTRY

from kefu import kafka
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration

TOPIC, GROUP = "kefu.backlog.v1", "kefu-backlog"


def reported() -> float | None:
    return REGISTRY.get_sample_value("kefu_consumer_backlog", {"group": GROUP, "topic": TOPIC})


async def test_the_backlog_is_what_is_not_applied_yet_and_falls_as_offsets_are_committed(
    broker: EmbeddedKafka,
) -> None:
    await kafka.ensure_topics(broker.bootstrap, [TOPIC], partitions=1)
    producer = kafka.create_producer(broker.bootstrap)
    consumer = kafka.create_consumer(broker.bootstrap, TOPIC, group_id=GROUP, session_timeout=2000)
    await kafka.start_all(producer)
    try:
        for n in range(30):
            await producer.send_and_wait(TOPIC, f"record {n}".encode(), key=b"k")
        # started once all 30 are there, so that every fetch reports the same high watermark (a fetch made before
        # the last record was in would report less until the next)
        await kafka.start_all(consumer)
        tp = TopicPartition(TOPIC, 0)
        fetched: list[Any] = []
        while len(fetched) < 10:
            fetched += (await consumer.getmany(tp, timeout_ms=1000, max_records=10 - len(fetched))).get(tp, [])
        assert kafka.backlog_of(consumer) == 30  # fetched, not applied: still to do
        assert reported() == 30
        await consumer.commit({tp: fetched[-1].offset + 1})
        assert kafka.backlog_of(consumer) == 20
        assert reported() == 20
        while fetched[-1].offset < 29:
            fetched += (await consumer.getmany(tp, timeout_ms=1000)).get(tp, [])
        await consumer.commit({tp: 30})
        assert kafka.backlog_of(consumer) == 0
        assert reported() == 0
    finally:
        await kafka.stop_all(producer, consumer)
